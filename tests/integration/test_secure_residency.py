"""Residency on a secured deployment, checked as an auditor would: raw bytes.

Three Kafka clusters (one per region) from ``edgebus kafka up --secure``: SASL_SSL,
SCRAM users and the authorizer; ``edgebus kafka init`` made the topics and ``edgebus
kafka acls --apply`` installed the least-privilege ACLs. Each region service runs as
its own principal (``region-<R>``) in a process of its own; the workload runs in this
process as the ``writer``: eventual writes of PII, PHI, financial and public data from
every home region in strict and non-strict mode, strong commits (two-phase, through
the commit log on us's cluster), state-machine calls on a PII state and a public one,
and a poison record (a dead letter). Every value carries a marker.

Then every topic of every cluster (events, dead letters, service announcements, the
commit log, staged strong-write payloads, saga progress, state logs) is read to its
end as the admin, and every SQLite file of every region (stores, state snapshots, and
their write-ahead logs) is read as bytes: no marker is anywhere outside the regions
its data may be in, and every marker is found where it must be (the scan is not
blind). The us cluster holds the commit log of every strong write, so a payload in a
BEGIN record would show there.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from aiokafka import AIOKafkaProducer

from edgebus.config import load_config
from edgebus.errors import ComplianceViolation
from edgebus.kafka.clients import admin_client
from edgebus.kafka.reading import read_to_end
from edgebus.kafka.topics import events_topic
from edgebus.sdk import EdgeBus
from tests.integration.regions import RegionProcess, Regions, eventually, store_rows
from tests.integration.secure_kafka import sasl_ssl, secure_security
from tests.integration.test_kafka_launcher import Cli, cli_ok, launcher_env, stop_leftovers

pytestmark = pytest.mark.kafka

US, EU, AP = "us-east-1", "eu-west-1", "ap-south-1"
REGIONS = (US, EU, AP)
ZONES = {"gdpr": [EU], "hipaa": [US], "sox": [US, EU]}


class Deployment(NamedTuple):
    """The secure clusters: state dir, environment, bootstraps by region, admin settings."""

    state: Path
    env: dict[str, str]
    clusters: dict[str, str]
    security: dict[str, str]

    def config(self, principal: str, **extra: Any) -> dict[str, Any]:
        """The edgebus config of a process running as ``principal``."""
        return {
            "discovery": {"locations": list(REGIONS)},
            "compliance": {"zones": ZONES},
            "kafka": {
                "clusters": self.clusters, "partitions": 3, "connect_timeout_s": 30,
                "security": secure_security(self.security, principal),
            },
            **extra,
        }


@pytest.fixture(scope="module")
def deployment(cli: Cli, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """Three secure clusters, their topics made and their ACLs applied."""
    state = tmp_path_factory.mktemp("secure-residency")
    env = launcher_env(state)
    try:
        doc = cli_ok(cli, ["kafka", "up", "--secure", "--clusters", "3", "--regions",
                           ",".join(REGIONS), "--json"], env)
        clusters = {r: doc["regions"][r] for r in REGIONS}
        security = dict(doc["clusters"][0]["security"])
        admin = Deployment(state, env, clusters, security)
        path = state / "admin.json"
        path.write_text(json.dumps(admin.config("admin")), encoding="utf-8")
        admin_env = {**env, "EDGEBUS_CONFIG": str(path)}
        cli_ok(cli, ["kafka", "init", "--json"], admin_env)
        applied = cli_ok(cli, ["kafka", "acls", "--apply", "--json"], admin_env)
        assert applied["ok"], applied
        yield admin
    finally:
        stop_leftovers(cli, env, state)


class Placed(NamedTuple):
    """A marker, the key it was written under, and the regions whose clusters and
    stores may hold it (``exact``: and must, each of them)."""

    marker: str
    key: str
    regions: frozenset[str]
    exact: bool = True


def kinds(marker: str) -> dict[str, tuple[dict[str, Any], frozenset[str], dict[str, Any]]]:
    """kind -> (data holding ``marker``, the regions it may be in, write options)."""
    return {
        "pii": ({"email": f"{marker}@example.com"}, frozenset({EU}), {}),
        "phi": ({"diagnosis": "influenza", "ref": marker}, frozenset({US}), {}),
        "financial": ({"iban": "DE89370400440532013000", "ref": marker},
                      frozenset({US, EU}), {}),
        "labelled-public": ({"contact": f"{marker}@example.com"}, frozenset({EU}),
                            {"classification": "public"}),
        "public": ({"city": "Lisbon", "ref": marker}, frozenset(REGIONS),
                   {"replication_factor": 3}),
    }


async def eventual_writes(bus: EdgeBus, lenient: EdgeBus) -> list[Placed]:
    """Every kind from every home, strict and not (keys hold no marker: the commit log
    and the state logs are keyed, and a key is an identifier, not the data)."""
    placed: list[Placed] = []
    for mode, writer in (("strict", bus), ("lenient", lenient)):
        for home in REGIONS:
            for kind in kinds(""):
                marker = f"ev-{kind}-{home}-{mode}"
                key = f"k{len(placed)}"
                data, allowed, options = kinds(marker)[kind]
                if mode == "strict" and home not in allowed:
                    with pytest.raises(ComplianceViolation):
                        await writer.write(key, data, region=home, **options)
                    placed.append(Placed(marker, key, frozenset()))
                    continue
                receipt = await writer.write(key, data, region=home, **options)
                assert set(receipt.placement) <= allowed, (kind, receipt)
                placed.append(Placed(marker, key, frozenset(receipt.placement)))
    return placed


async def strong_writes(bus: EdgeBus) -> list[Placed]:
    """Two-phase commits whose commit log lives on us's cluster."""
    placed = []
    for n in range(3):
        marker, key = f"strong-pii-{n}", f"s{n}"
        receipt = await bus.write(key, {"email": f"{marker}@example.com"}, region=EU,
                                  consistency="strong")
        assert set(receipt.placement) == {EU}, receipt
        placed.append(Placed(marker, key, frozenset({EU})))
    receipt = await bus.write("s-public", {"ref": "strong-public"}, region=US,
                              consistency="strong", replication_factor=3)
    placed.append(Placed("strong-public", "s-public", frozenset(receipt.placement)))
    return placed


async def state_calls(bus: EdgeBus) -> list[Placed]:
    """A PII state called from us and ap (owned in eu), and a public one."""
    marker = "state-pii"
    await bus.state("profile-1", "set", value={"email": f"{marker}@example.com"},
                    classification="pii", region=US)
    await bus.state("profile-1", "increment", key="visits", classification="pii", region=AP)
    got = await bus.state("profile-1", "get", classification="pii", region=US)
    assert got.region == EU and marker in json.dumps(got.value), got
    await bus.state("counter-1", "set", value={"ref": "state-public"}, region=AP)
    return [Placed(marker, "profile-1", frozenset({EU})),
            Placed("state-public", "counter-1", frozenset(REGIONS), exact=False)]


async def poison_record(deployment: Deployment) -> Placed:
    """A record eu cannot decode, written to eu's topic as the writer: a dead letter."""
    marker = "poison-pii"
    producer = AIOKafkaProducer(bootstrap_servers=deployment.clusters[EU],
                                **sasl_ssl(deployment.security, "writer"))
    await producer.start()
    try:
        await producer.send_and_wait(events_topic(EU), f"{marker}@example.com".encode(),
                                     key=b"poison")
    finally:
        await producer.stop()
    return Placed(marker, "poison", frozenset({EU}))


async def cluster_bytes(deployment: Deployment, region: str) -> dict[str, bytes]:
    """topic -> the raw bytes (keys, values, header names and values) of every record
    of every topic of ``region``'s cluster, read as the admin."""
    kafka = load_config(deployment.config("admin")).kafka
    bootstrap = deployment.clusters[region]
    async with admin_client(kafka, bootstrap) as admin:
        topics = sorted(t for t in await admin.list_topics() if not t.startswith("__"))
    out = {}
    for topic in topics:
        parts = []
        for record in await read_to_end(kafka, bootstrap, topic):
            parts += [record.key or b"", record.value or b""]
            parts += [name.encode() + value for name, value in record.headers or ()]
        out[topic] = b"".join(parts)
    return out


def files_bytes(directory: Path) -> dict[str, bytes]:
    """name -> bytes of every SQLite file under ``directory`` (with -wal and -shm)."""
    return {str(p.relative_to(directory)): p.read_bytes()
            for p in sorted(directory.rglob("*.db*")) if p.is_file()}


def misplaced(placed: list[Placed], region: str, where: Mapping[str, bytes]) -> list[str]:
    """Where a marker lies that ``region`` may not hold."""
    return [f"{m.marker} in {name}" for m in placed if region not in m.regions
            for name, raw in where.items() if m.marker.encode() in raw]


async def test_after_a_mixed_secure_run_no_topic_or_file_holds_data_outside_its_placement(
    deployment: Deployment, tmp_path: Path
) -> None:
    configs = {}
    for name, principal, extra in [
        ("writer", "writer", {}),
        ("lenient", "writer", {"compliance": {"zones": ZONES, "strict_mode": False}}),
        *((r, f"region-{r}", {}) for r in REGIONS),
    ]:
        config = {**deployment.config(principal), **extra}
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(config), encoding="utf-8")
        configs[name] = (config, path)
    processes = []
    for region in REGIONS:
        config, path = configs[region]
        env = {**deployment.env, "EDGEBUS_CONFIG": str(path)}
        regions = Regions(US, EU, AP, config, path, env, tmp_path / region)
        regions.tmp.mkdir()
        processes.append(RegionProcess(regions, region, regions.store_url(region)))
    try:
        for process in processes:
            process.start(timeout_s=120)
        async with (
            EdgeBus(configs["writer"][0], client_id="residency-writer") as bus,
            EdgeBus(configs["lenient"][0], client_id="residency-lenient") as lenient,
        ):
            placed = await eventual_writes(bus, lenient)
            placed += await strong_writes(bus)
            placed += await state_calls(bus)
        placed.append(await poison_record(deployment))
        expected = {
            r: {p.key for p in placed if r in p.regions and p.key[0] in "ks"} for r in REGIONS
        }

        async def replicated() -> bool:
            for process in processes:
                rows = await store_rows(process.store)
                if not expected[process.region] <= set(rows):
                    return False
            return True

        await eventually(replicated, 120, "every store to hold every key placed in it")
        async with EdgeBus(configs["writer"][0], client_id="residency-reader") as reader:
            for p in placed:  # the SDK reads back over the query plane, in each region
                if p.key[0] == "k" and p.regions:
                    for region in p.regions:
                        got = await reader.read(p.key, region, fallback="raise")
                        assert got.exists and p.marker in json.dumps(got.value), (p, got)
        for process in processes:
            assert process.alive(), process.log_tail()
            assert "Authorization" not in process.log_tail(200), process.log_tail(200)
    finally:
        for process in processes:
            process.stop()

    found: dict[str, set[str]] = {p.marker: set() for p in placed}
    for region, process in zip(REGIONS, processes, strict=True):
        topics = await cluster_bytes(deployment, region)
        files = files_bytes(process.regions.tmp)
        assert any(name.endswith(".db-wal") or name.endswith(".db") for name in files)
        wrong = misplaced(placed, region, topics) + misplaced(placed, region, files)
        assert not wrong, f"{region} holds data it may not: {wrong[:20]}"
        everything = b"".join([*topics.values(), *files.values()])
        for p in placed:
            if p.marker.encode() in everything:
                found[p.marker].add(region)
    # the scan sees: every marker is found in each region it was placed in, and the
    # strictly refused ones nowhere
    for p in placed:
        if p.exact:
            assert found[p.marker] == set(p.regions), (p, found[p.marker])
