"""``edgebus kafka init`` and ``edgebus kafka acls --apply`` on a secure local Kafka.

One ``kafka up --secure`` cluster for the module (all three default regions on it),
made ready as an admin would: ``init`` creates the layout, ``acls --apply`` replaces the
permissive defaults with the least-privilege plan. Then each principal is tried with
raw aiokafka clients (and the SDK's writer through the CLI): what the plan grants
works, what it does not is refused by the broker, most of all the read that pull
replication used to do (ap-south-1's principal reading eu-west-1's events).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import TopicAuthorizationFailedError

from edgebus.config import EdgeConfig, KafkaConfig, KafkaSecurityConfig
from edgebus.errors import InfrastructureUnavailable
from edgebus.kafka.acl_plan import acl_plan, topic_layout
from edgebus.kafka.acls import KafkaAcl, describe_acls
from edgebus.kafka.identity import topic_identities
from edgebus.kafka.topics import TopicsMissing, ensure_topics
from edgebus.localkafka.default_acls import default_bindings
from tests.integration.secure_kafka import Secure, sasl_ssl, secure_security
from tests.integration.test_kafka_launcher import Cli, cli_ok

EU_EVENTS = "edgebus.eu-west-1.events"
AP_EVENTS = "edgebus.ap-south-1.events"
EU_DLQ = "edgebus.eu-west-1.dlq"
PLAN_PRINCIPALS = {
    "User:region-us-east-1", "User:region-eu-west-1", "User:region-ap-south-1",
    "User:coordinator", "User:writer",
}  # fmt: skip


class Ready(NamedTuple):
    """The module's secure cluster after `kafka init` and `kafka acls --apply`."""

    secure: Secure
    init: dict[str, Any]
    applied: dict[str, Any]

    @property
    def bootstrap(self) -> str:
        return self.secure.bootstrap

    def kafka_as(self, user: str) -> KafkaConfig:
        """edgebus client settings as ``user``."""
        settings = secure_security(self.secure.security, user)
        return KafkaConfig(security=KafkaSecurityConfig.model_validate(settings))


@pytest.fixture(scope="module")
def ready(secure: Secure, cli: Cli) -> Ready:
    """`kafka init` then `kafka acls --apply`, as the recorded admin, without flags."""
    init = cli_ok(cli, ["kafka", "init", "--json"], secure.env)
    applied = cli_ok(cli, ["kafka", "acls", "--apply", "--json"], secure.env)
    return Ready(secure, init, applied)


def plan_acls(bootstrap: str) -> frozenset[KafkaAcl]:
    """The ACLs the plan gives the default config's principals on ``bootstrap``."""
    config = EdgeConfig()
    plan = acl_plan(config, {r: bootstrap for r in config.regions})
    return frozenset(KafkaAcl.allowing(b) for b in plan.cluster(bootstrap).bindings())


async def managed_acls(ready: Ready) -> frozenset[KafkaAcl]:
    """The ACLs of the plan's principals on the cluster now (read as admin)."""
    every = await describe_acls(ready.kafka_as("admin"), ready.bootstrap)
    return frozenset(a for a in every if a.principal in PLAN_PRINCIPALS)


async def produce(ready: Ready, user: str, topic: str, value: bytes) -> int:
    """Send one record as ``user`` (idempotent, acks=all); its offset."""
    producer = AIOKafkaProducer(
        bootstrap_servers=ready.bootstrap, enable_idempotence=True, request_timeout_ms=10000,
        **sasl_ssl(ready.secure.security, user),
    )  # fmt: skip
    await producer.start()
    try:
        sent = await producer.send_and_wait(topic, value, key=b"acl-test", partition=0)
    finally:
        await producer.stop()
    return int(sent.offset)


async def fetch(ready: Ready, user: str, topic: str, offset: int) -> list[bytes]:
    """Read partition 0 of ``topic`` from ``offset`` as ``user`` (no group), for up to
    a few seconds; the values read."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=ready.bootstrap, enable_auto_commit=False,
        **sasl_ssl(ready.secure.security, user),
    )  # fmt: skip
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek(tp, offset)
        batch = await asyncio.wait_for(consumer.getmany(tp, timeout_ms=3000), 20)
        return [r.value for r in batch.get(tp, [])]
    finally:
        await consumer.stop()


# --------------------------------------------------------------------------- init


def test_init_created_the_whole_layout_and_a_second_run_creates_nothing(
    ready: Ready, cli: Cli
) -> None:
    config = EdgeConfig()
    layout = topic_layout(config, {r: ready.bootstrap for r in config.regions})
    names = sorted(s.name for s in layout[ready.bootstrap])
    [cluster] = ready.init["clusters"]
    assert sorted(cluster["created"] + cluster["existing"]) == names
    assert {"edgebus.eu-west-1.staged", "edgebus.us-east-1.saga", "edgebus.us-east-1.sagas",
            "edgebus.eu-west-1.state.pii"} <= set(names)  # fmt: skip
    again = cli_ok(cli, ["kafka", "init", "--json"], ready.secure.env)
    assert again["clusters"] == [{"bootstrap": ready.bootstrap, "created": [], "existing": names}]


async def test_the_layout_has_the_configured_partition_counts(ready: Ready) -> None:
    found = await topic_identities(
        ready.kafka_as("admin"), ready.bootstrap,
        [EU_EVENTS, "edgebus.eu-west-1.service", "edgebus.us-east-1.state.public"],
    )  # fmt: skip
    partitions = {t: i.partitions for t, i in found.items()}
    assert partitions == {
        EU_EVENTS: 6,
        "edgebus.eu-west-1.service": 1,
        "edgebus.us-east-1.state.public": 6,
    }


# --------------------------------------------------------------------------- acls


def test_acls_without_apply_prints_the_plan_and_changes_nothing(ready: Ready, cli: Cli) -> None:
    doc = cli_ok(cli, ["kafka", "acls", "--json"], ready.secure.env)
    assert doc["applied"] is False and "changes" not in doc
    assert set(doc["principals"]) == {p.removeprefix("User:") for p in PLAN_PRINCIPALS}
    [cluster] = doc["clusters"]
    rows = {(g["principal"], g["name"]): g["operations"] for g in cluster["grants"]}
    assert rows[("region-ap-south-1", EU_EVENTS)] == ["write", "describe"]
    assert rows[("region-eu-west-1", EU_EVENTS)] == ["read", "write", "describe"]
    assert ("writer", EU_DLQ) not in rows
    code, _, out, err = cli(["kafka", "acls"], {**ready.secure.env, "COLUMNS": "200"})
    assert code == 0, out + err
    assert "region-ap-south-1" in out and "acls --apply" in out


async def test_apply_replaced_the_defaults_with_the_plan_and_a_second_apply_changes_nothing(
    ready: Ready, cli: Cli
) -> None:
    [first] = ready.applied["changes"]
    # the permissive defaults of `up --secure` are gone, the plan is in
    defaults = default_bindings([p.removeprefix("User:") for p in PLAN_PRINCIPALS])
    assert first["deleted"] == len(defaults)
    before = await managed_acls(ready)
    assert before == plan_acls(ready.bootstrap) and first["acls"] == len(before)
    assert not [a for a in before if a.operation == 5]  # Create: nobody but admin
    again = cli_ok(cli, ["kafka", "acls", "--apply", "--json"], ready.secure.env)
    assert again["changes"] == [
        {"bootstrap": ready.bootstrap, "created": 0, "deleted": 0, "acls": len(before)}
    ]
    assert await managed_acls(ready) == before


async def test_the_ap_south_1_principal_is_denied_reading_eu_west_1_events(
    ready: Ready,
) -> None:
    offset = await produce(ready, "writer", EU_EVENTS, b"eu only")
    with pytest.raises(TopicAuthorizationFailedError):
        await fetch(ready, "region-ap-south-1", EU_EVENTS, offset)
    # the record is there: eu-west-1's own principal reads it
    assert await fetch(ready, "region-eu-west-1", EU_EVENTS, offset) == [b"eu only"]


async def test_a_region_principal_produces_to_its_own_and_to_another_regions_events(
    ready: Ready,
) -> None:
    tag = uuid.uuid4().hex.encode()
    own = await produce(ready, "region-ap-south-1", AP_EVENTS, b"own " + tag)
    pushed = await produce(ready, "region-ap-south-1", EU_EVENTS, b"push " + tag)
    assert await fetch(ready, "region-ap-south-1", AP_EVENTS, own) == [b"own " + tag]
    assert await fetch(ready, "region-eu-west-1", EU_EVENTS, pushed) == [b"push " + tag]


async def test_the_writer_writes_events_but_cannot_read_another_regions_dlq(
    ready: Ready,
) -> None:
    for topic in (EU_EVENTS, AP_EVENTS, "edgebus.us-east-1.events"):
        assert await produce(ready, "writer", topic, b"written") >= 0
    letter = await produce(ready, "region-eu-west-1", EU_DLQ, b"a dead letter")
    assert await fetch(ready, "region-eu-west-1", EU_DLQ, letter) == [b"a dead letter"]
    # without Describe the topic does not even exist for the writer: no metadata, no
    # offsets, no records
    with pytest.raises(InfrastructureUnavailable, match="TopicAuthorizationFailed"):
        await topic_identities(ready.kafka_as("writer"), ready.bootstrap, [EU_DLQ])
    assert await fetch(ready, "writer", EU_DLQ, letter) == []
    with pytest.raises(TopicAuthorizationFailedError):
        await produce(ready, "writer", EU_DLQ, b"forged letter")


async def test_ensure_topics_needs_no_create_right_and_names_init_when_one_is_missing(
    ready: Ready,
) -> None:
    kafka = ready.kafka_as("region-eu-west-1")
    assert await ensure_topics(kafka, ready.bootstrap, [EU_EVENTS, AP_EVENTS]) == []
    missing = f"edgebus.eu-west-1.missing-{uuid.uuid4().hex[:6]}"
    with pytest.raises(TopicsMissing, match="edgebus kafka init") as refused:
        await ensure_topics(kafka, ready.bootstrap, [EU_EVENTS, missing])
    assert refused.value.topics == (missing,) and refused.value.bootstrap == ready.bootstrap
    assert missing not in await topic_identities(ready.kafka_as("admin"), ready.bootstrap,
                                                 [missing])  # fmt: skip


def test_the_sdk_writes_as_the_writer_principal(ready: Ready, cli: Cli, tmp_path: Path) -> None:
    config = tmp_path / "edge.json"
    writer = secure_security(ready.secure.security, "writer")
    config.write_text(json.dumps({"kafka": {"security": writer}}))
    receipt = cli_ok(
        cli, ["write", "--key", "user:acl", "--data", '{"email": "ann@example.com"}',
              "--region", "eu-west-1", "--config", str(config), "--json"], ready.secure.env,
    )  # fmt: skip
    assert receipt["topic"] == EU_EVENTS


# --------------------------------------------------------------------------- not secure


def test_acls_apply_on_a_plaintext_cluster_is_refused_saying_what_to_do(
    cli: Cli, cli_env: dict[str, str]
) -> None:
    code, doc, out, err = cli(["kafka", "acls", "--apply", "--json"], cli_env)
    assert code == 2, out + err
    assert doc["error"] == "AclsUnavailable"
    assert "PLAINTEXT" in doc["message"] and "edgebus kafka up --secure" in doc["message"]
