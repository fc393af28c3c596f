"""Coordinators that tolerate a fleet (issue 15): eight ``EdgeBus`` clients, each its
own process (:mod:`tests.integration.fleet_worker`), doing strong commits for a minute
(``EDGEBUS_FLEET_SECONDS``, default 60) against three region services, twice:

* zero-config (``strong.coordinator`` left at ``auto``, no coordinator service): the
  clients keep one coordinator among them in the coordinator group;
* beside one ``edgebus coordinator run``: no client joins the group at all.

Each run requires every commit decided (none unknown, none failed; the commit log
holds a decision for each BEGIN, and :func:`assert_atomic` checks the regions against
it), each client's stderr empty (no rebalance noise, no AssertionError escaping from a
rebalance), and the group calm. Its rebalances are counted twice: exactly, as the
generations Kafka wrote for the group to ``__consumer_offsets`` during the run (one per
rebalance: :func:`group_generations`), and by an observer that describes the group
every :data:`LOOK_S` (its state and members, with the time of each change).
Zero-config, the clients settle who coordinates within :data:`SETTLE_S` of the first
one joining the group, which does not rebalance after that; beside the service, the
group is the service alone throughout.

Liveness: when the client that coordinates is killed (SIGKILL), another takes over
once Kafka dropped the dead member, and every commit of the others is decided.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition

from edgebus.commit.coordinator import describe_coordinator_group, member_kind
from edgebus.kafka.clients import admin_client, reader
from edgebus.kafka.topics import coordinator_group
from tests.child_process import ChildProcess
from tests.integration.regions import RegionProcess, Regions, make_regions
from tests.integration.saga_processes import (
    CoordinatorProcess,
    assert_atomic,
    read_saga_log,
    unique_tag,
)
from tests.kafka_settings import KAFKA

CLIENTS = 8
SECONDS = float(os.environ.get("EDGEBUS_FLEET_SECONDS", "60"))
#: zero-config, the clients have this long from the first coordinator's join to
#: settle who coordinates
SETTLE_S = 10.0
LOOK_S = 0.2
#: rebalances while the clients settle: each client that found the group empty may
#: have joined it (and left again); far fewer than a storm's one per heartbeat
MAX_SETTLING_REBALANCES = 4 * CLIENTS
REPO = Path(__file__).resolve().parents[2]
#: deadlines a loaded test machine meets (outcomes are asserted, never durations)
STRONG = {"timeout_ms": 10_000}


@dataclass
class GroupObserver:
    """Describes the coordinator group every LOOK_S: its rebalances, by time."""

    regions: Regions
    #: (seconds since start, state, members) at each change
    changes: list[tuple[float, str, tuple[str, ...]]] = field(default_factory=list)
    rebalances: list[float] = field(default_factory=list)  #: when each began
    members_seen: set[str] = field(default_factory=set)

    async def run(self, seconds: float) -> None:
        """Look every LOOK_S for ``seconds``."""
        config = self.regions.edge_config()
        bootstrap = config.kafka.bootstrap
        assert bootstrap is not None
        start = time.monotonic()
        last: tuple[str, tuple[str, ...]] | None = None
        while (now := time.monotonic() - start) < seconds:
            view = await describe_coordinator_group(config, bootstrap)
            if (view.state, view.members) != last:
                self.changes.append((round(now, 1), view.state, view.members))
                if _rebalanced(last, view.state, view.members):
                    self.rebalances.append(round(now, 1))
                self.members_seen.update(view.members)
                last = (view.state, view.members)
            await asyncio.sleep(LOOK_S)


REBALANCING = ("PreparingRebalance", "CompletingRebalance")


def _rebalanced(
    last: tuple[str, tuple[str, ...]] | None, state: str, members: tuple[str, ...]
) -> bool:
    """Whether the group began a rebalance since the ``last`` look: it entered one,
    or its members changed between two looks outside one (a rebalance too quick to
    see)."""
    if last is None or last[0] in REBALANCING:
        return last is None and state in REBALANCING
    return state in REBALANCING or members != last[1]


def _java_string_hash(text: str) -> int:
    h = 0
    for unit in text.encode("utf-16-be").hex(" ", 2).split():
        h = (31 * h + int(unit, 16)) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def _generation(value: bytes) -> int:
    """The generation in a GroupMetadataValue (versions 0-3: int16-length strings; 4
    and up, flexible: unsigned-varint lengths)."""
    version = int.from_bytes(value[:2], "big")
    pos = 2
    if version >= 4:
        length = shift = 0
        while True:
            byte = value[pos]
            pos += 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        pos += max(length - 1, 0)
    else:
        pos += 2 + int.from_bytes(value[pos:pos + 2], "big", signed=True)
    return int.from_bytes(value[pos:pos + 4], "big", signed=True)


async def group_generations(
    bootstrap: str, group: str, since_ms: int, until_ms: int
) -> list[int]:
    """The generations Kafka recorded for ``group`` from ``since_ms`` to ``until_ms``:
    its group metadata records (key version 2) in its ``__consumer_offsets``
    partition."""
    async with admin_client(KAFKA, bootstrap) as admin:
        [described] = await admin.describe_topics(["__consumer_offsets"])
    h = _java_string_hash(group)  # Kafka's partition of a group: abs(hashCode) % count
    partition = (0 if h == -(1 << 31) else abs(h)) % len(described["partitions"])
    tp = TopicPartition("__consumer_offsets", partition)
    async with reader(KAFKA, bootstrap) as consumer:
        consumer.assign([tp])
        start = (await consumer.offsets_for_times({tp: since_ms}))[tp]
        end = (await consumer.end_offsets([tp]))[tp]
        consumer.seek(tp, start.offset if start is not None else end)
        generations: list[int] = []
        while await consumer.position(tp) < end:
            for record in (await consumer.getmany(tp, timeout_ms=1000)).get(tp, []):
                key = record.key or b""
                name_len = int.from_bytes(key[2:4], "big")
                if key[:2] != b"\x00\x02" or key[4:4 + name_len].decode() != group:
                    continue
                if record.value and record.timestamp <= until_ms:  # not a tombstone
                    generations.append(_generation(record.value))
    return sorted(set(generations))


def _worker(
    regions: Regions, tag: str, index: int, seconds: float = SECONDS
) -> ChildProcess:
    return ChildProcess(
        [sys.executable, "-m", "tests.integration.fleet_worker", str(regions.config_path),
         tag, str(index), str(seconds)],
        log=regions.tmp / f"client-{index}.stderr", stdout=regions.tmp / f"client-{index}.out",
        env=regions.env, cwd=REPO, name=f"fleet client {index}",
    )


@pytest.fixture
async def regions(kafka_bootstrap: str, tmp_path: Path) -> AsyncIterator[Regions]:
    """Three region services (processes) on fresh region names; ``strong`` left at its
    defaults (``coordinator = "auto"``) but for the deadline."""
    regions = make_regions(kafka_bootstrap, tmp_path)
    regions.config["strong"] = dict(STRONG)
    regions.config_path.write_text(json.dumps(regions.config), encoding="utf-8")
    procs = [RegionProcess(regions, r, regions.store_url(r)) for r in regions.names]
    try:
        await asyncio.gather(*(asyncio.to_thread(p.start) for p in procs))
        yield regions
    finally:
        for p in procs:
            p.stop()


@dataclass
class FleetRun:
    """What the clients reported, and what the observer saw."""

    reports: list[dict[str, Any]]
    stderr: dict[int, str]
    observer: GroupObserver
    #: the group's generations during the run: one per rebalance
    generations: list[int]

    def total(self, what: str) -> int:
        """The sum of one count over the clients' reports."""
        return sum(int(r.get(what, 0)) for r in self.reports)

    def summary(self) -> str:
        """Everything counted, for the output and failure messages."""
        return (f"commits {self.total('commits')}, committed {self.total('committed')}, "
                f"aborted {self.total('aborted')}, unknown {self.total('unknown')}, "
                f"failed {self.total('error_count')}; rebalances (generations) "
                f"{len(self.generations)}: {self.generations}; rebalances observed "
                f"{len(self.observer.rebalances)} at {self.observer.rebalances} s; "
                f"stderr bytes {sum(len(e) for e in self.stderr.values())}; "
                f"group changes {self.observer.changes}")


async def _run_fleet(regions: Regions, tag: str) -> FleetRun:
    observer = GroupObserver(regions)
    workers = [_worker(regions, tag, i) for i in range(CLIENTS)]
    since_ms = time.time_ns() // 1_000_000
    try:
        for w in workers:
            w.start()
        await observer.run(SECONDS)
        until_ms = time.time_ns() // 1_000_000
        codes = [await asyncio.to_thread(w.wait, 120.0) for w in workers]
    finally:
        for w in workers:
            w.kill()
    assert codes == [0] * CLIENTS, "\n".join(w.describe() for w in workers)
    reports = [json.loads(w.stdout_lines()[-1]) for w in workers]
    stderr = {i: w.log.read_text(encoding="utf-8", errors="replace")
              for i, w in enumerate(workers)}
    config = regions.edge_config()
    assert config.kafka.bootstrap is not None
    generations = await group_generations(
        config.kafka.bootstrap, coordinator_group(config.strong_log_region), since_ms, until_ms)
    run = FleetRun(reports, stderr, observer, generations)
    print(run.summary())
    return run


async def _assert_every_commit_decided(regions: Regions, tag: str, run: FleetRun) -> None:
    assert run.total("unknown") == 0 and run.total("error_count") == 0, (
        run.summary(), [r["errors"] for r in run.reports])
    assert run.total("committed") > 0, run.summary()
    config = regions.edge_config()
    assert config.kafka.bootstrap is not None
    view = await read_saga_log(config.kafka.bootstrap, config.strong_log_region)
    mine = [t for t in view.txns.values() if t.key.startswith(f"{tag}:")]
    assert len(mine) == run.total("commits"), run.summary()
    assert all(t.decision is not None for t in mine), run.summary()
    committed = sum(1 for t in mine if t.decision is not None and t.decision.committed)
    assert committed == run.total("committed"), run.summary()
    report = await assert_atomic(
        config.kafka.bootstrap, regions.names,
        {r: regions.store_url(r) for r in regions.names}, log_region=config.strong_log_region,
    )
    assert report.undecided == 0, report


def _assert_quiet(run: FleetRun) -> None:
    noisy = {i: e for i, e in run.stderr.items() if e}
    assert not noisy, f"clients wrote on stderr: {noisy}"
    assert not any("AssertionError" in json.dumps(r) for r in run.reports), run.summary()


async def test_a_zero_config_fleet_keeps_one_coordinator_and_a_calm_group(
    regions: Regions,
) -> None:
    """No coordinator service: the clients' ``auto`` coordinators settle on one of
    them; the group stops rebalancing once they settled; every commit is decided."""
    tag = unique_tag()
    run = await _run_fleet(regions, tag)
    _assert_quiet(run)
    await _assert_every_commit_decided(regions, tag, run)
    assert len(run.generations) <= MAX_SETTLING_REBALANCES, run.summary()
    rebalances = run.observer.rebalances
    first_join = min(t for t, _, members in run.observer.changes if members)
    assert not [t for t in rebalances if t > first_join + SETTLE_S], run.summary()
    # ended with one coordinator, an auto one, and it decided every commit since
    final = run.observer.changes[-1]
    assert final[1] == "Stable" and len(final[2]) == 1, run.summary()
    assert member_kind(final[2][0]) == "auto", run.summary()
    seated = sum(int((r.get("seat") or {}).get("seated_times", 0)) for r in run.reports)
    assert 1 <= seated <= MAX_SETTLING_REBALANCES, run.summary()


async def test_a_fleet_beside_a_coordinator_service_never_joins_its_group(
    regions: Regions,
) -> None:
    """One ``edgebus coordinator run``: no client joins the group (it is the service
    alone, without a rebalance, for the whole run); the service decides every commit."""
    service = CoordinatorProcess(regions, "fleet-c1")
    await asyncio.to_thread(service.start)
    try:
        tag = unique_tag()
        run = await _run_fleet(regions, tag)
    finally:
        service.stop()
    _assert_quiet(run)
    await _assert_every_commit_decided(regions, tag, run)
    assert run.generations == [] and run.observer.rebalances == [], run.summary()
    assert {member_kind(m) for m in run.observer.members_seen} == {"service"}, run.summary()
    assert all(not (r.get("seat") or {}).get("seated_times") for r in run.reports), (
        run.summary())
    deciders = {d for r in run.reports for d in r["deciders"]}
    assert deciders == {service.name}, run.summary()


async def _seated(regions: Regions, *, not_: str = "", timeout_s: float = 90.0) -> str:
    """The client id of the one coordinator in the group (other than ``not_``), once
    there is one."""
    config = regions.edge_config()
    assert config.kafka.bootstrap is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        view = await describe_coordinator_group(config, config.kafka.bootstrap)
        if view.state == "Stable" and len(view.members) == 1 and view.members[0] != not_:
            return view.members[0]
        await asyncio.sleep(LOOK_S)
    raise AssertionError(f"no single coordinator in the group within {timeout_s:.0f} s")


async def test_when_the_coordinating_client_is_killed_another_client_takes_over(
    regions: Regions,
) -> None:
    """Three zero-config clients; the one that coordinates is killed (SIGKILL) while
    all of them commit: once Kafka drops it from the group (its session timeout),
    a client whose commit waits takes the seat, and every commit of the survivors is
    decided, by the dead client's coordinator before and the new one's after."""
    tag = unique_tag()
    workers = [_worker(regions, tag, i, seconds=40.0) for i in range(3)]
    try:
        for w in workers:
            w.start()
        holder = await _seated(regions)
        pid = int(holder.rsplit("-", 2)[-2])  # edgebus-coordinator.auto.auto-HOST-PID-HEX
        [victim] = [w for w in workers if w.pid == pid]
        await asyncio.sleep(3)  # it decides some commits of the others first
        victim.kill()
        killed_at = time.monotonic()
        successor = await _seated(regions, not_=holder)
        took_over_s = time.monotonic() - killed_at
        survivors = [w for w in workers if w is not victim]
        codes = [await asyncio.to_thread(w.wait, 150.0) for w in survivors]
    finally:
        for w in workers:
            w.kill()
    assert codes == [0, 0], "\n".join(w.describe() for w in survivors)
    reports = [json.loads(w.stdout_lines()[-1]) for w in survivors]
    assert not [w.log.read_text() for w in survivors if w.log.read_text()]
    assert all(r.get("unknown", 0) == 0 and r["error_count"] == 0 for r in reports), reports
    deciders = {d for r in reports for d in r["deciders"]}
    dead = holder.removeprefix("edgebus-coordinator.auto.")
    assert dead in deciders and len(deciders) >= 2, (holder, reports)
    assert member_kind(successor) == "auto", successor
    print(f"killed {holder}; {successor} took over after {took_over_s:.1f} s; "
          f"survivors: {reports}")
    config = regions.edge_config()
    assert config.kafka.bootstrap is not None
    report = await assert_atomic(
        config.kafka.bootstrap, regions.names,
        {r: regions.store_url(r) for r in regions.names}, log_region=config.strong_log_region,
    )
    assert report.undecided == 0, report
