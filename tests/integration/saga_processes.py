"""Helpers for strong-consistency tests (issue 5): saga coordinators as child processes,
a deployment of region and coordinator processes, the saga log as a test reads it, and
:func:`assert_atomic`, the checker every test of the two-phase commit ends with.

Isolation: each deployment gets its own region names (``make_regions``), so its events
topics, participant groups (``edgebus.<region>.participant``), stores, saga log
(``edgebus.<first region>.saga``) and coordinator group
(``edgebus.<first region>.coordinator``) are new, although every test shares one
broker. Tests that share a deployment use keys of their own (``<tag>:...``).
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import ConsumerRecord

from connectors import by_url
from edgebus.commit.log import commit_partition
from edgebus.commit.participant import txn_event_id
from edgebus.core.commit_log import PartitionLog, Txn
from edgebus.errors import DecodeError
from edgebus.kafka.reading import read_to_end
from edgebus.kafka.topics import commit_log_topic, events_topic
from edgebus.region.applied_once import txn_marker
from edgebus.sdk import EdgeBus
from edgebus.wire.commit_log import decode_saga_record
from edgebus.wire.event_reader import read_event
from edgebus.wire.headers import H_TXN
from tests.child_process import ChildProcess
from tests.conftest import edgebus_executable
from tests.integration.regions import RegionProcess, Regions, ServiceProcess, make_regions
from tests.kafka_settings import KAFKA

__all__ = [
    "FAILPOINTS",
    "KILLED",
    "PARTITIONS",
    "AtomicityReport",
    "CoordinatorProcess",
    "Deployment",
    "SagaLogView",
    "assert_atomic",
    "ensure_running",
    "expect_strong_reads",
    "keys_per_partition",
    "read_saga_log",
    "restart",
    "strong_reads",
    "strong_regions",
    "txn_events",
    "unique_tag",
    "wait_exit",
]

#: what a process killed by a failpoint (``os.kill(getpid(), SIGKILL)``) exits with
KILLED = -signal.SIGKILL
#: saga-log partitions: make_regions' default
PARTITIONS = 3
FAILPOINTS = "EDGEBUS_FAILPOINTS"


def strong_regions(bootstrap: str, tmp_path: Path, **strong: Any) -> Regions:
    """Fresh regions (``make_regions``) whose config has a ``strong`` section: no
    embedded coordinator (coordinators run as processes), plus ``strong``."""
    regions = make_regions(bootstrap, tmp_path)
    regions.config["strong"] = {"coordinator": "service", **strong}
    regions.config_path.write_text(json.dumps(regions.config), encoding="utf-8")
    return regions


@dataclass
class CoordinatorProcess(ServiceProcess):
    """``edgebus coordinator run`` as a child process (kill -9 able)."""

    regions: Regions
    instance_id: str | None = None
    #: timestamped INFO logs (partitions assigned, decisions retried) in the log file
    extra_env: dict[str, str] = field(default_factory=lambda: {"EDGEBUS_LOG_LEVEL": "INFO"})
    name: str | None = None  #: the coordinator's name (``decided_by`` of its decisions)
    child: ChildProcess | None = field(default=None, init=False, repr=False)

    @property
    def log_path(self) -> Path:
        return self.regions.tmp / f"coordinator-{self.instance_id or 'dynamic'}.log"

    def start(self, timeout_s: float = 90.0) -> str:
        """Start and wait for its ``started`` line; returns its name."""
        args = ["--instance-id", self.instance_id] if self.instance_id else []
        line = self._launch(
            [edgebus_executable(), "coordinator", "run", "--json", *args],
            {**self.regions.env, **self.extra_env},
            f"coordinator {self.instance_id or '(dynamic)'}", timeout_s,
        )
        started = json.loads(line)
        assert started["ok"] and started["event"] == "started", started
        self.name = str(started["coordinator"])
        return self.name


async def restart(proc: RegionProcess | CoordinatorProcess, failpoint: str | None = None) -> None:
    """Stop ``proc`` (SIGTERM) if it runs, then start it with ``failpoint`` armed (or
    none): ``EDGEBUS_FAILPOINTS`` in its environment."""
    await asyncio.to_thread(proc.stop)
    proc.extra_env.pop(FAILPOINTS, None)
    if failpoint:
        proc.extra_env[FAILPOINTS] = failpoint
    await asyncio.to_thread(proc.start)


async def ensure_running(
    proc: RegionProcess | CoordinatorProcess, failpoint: str | None = None
) -> None:
    """Make ``proc`` run with exactly ``failpoint`` armed (or none), restarting it only
    if it is dead or armed otherwise."""
    if not proc.alive() or proc.extra_env.get(FAILPOINTS) != failpoint:
        await restart(proc, failpoint)


async def wait_exit(proc: subprocess.Popen[bytes] | None, timeout_s: float = 60.0) -> int:
    """The return code of ``proc`` once it exits (polling); fails after ``timeout_s``."""
    assert proc is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            return code
        await asyncio.sleep(0.1)
    raise AssertionError(f"process {proc.pid} still running after {timeout_s:.0f} s")


@dataclass
class Deployment:
    """Three region processes and the coordinator processes of one test, class or
    module."""

    bootstrap: str
    regions: Regions
    region_procs: dict[str, RegionProcess]
    coordinators: list[CoordinatorProcess]

    @classmethod
    def create(
        cls, bootstrap: str, tmp_path: Path, *, coordinators: Sequence[str | None] = (None,),
        armed: Mapping[str, str] | None = None, **strong: Any,
    ) -> Deployment:
        """Not started yet: regions ``us``/``eu``/``ap`` with stores under ``tmp_path``,
        one coordinator per entry of ``coordinators`` (its instance id, or ``None``).
        ``armed``: failpoint to arm at the first start, by region suffix (``us``,
        ``eu``, ``ap``) or coordinator instance id. ``strong``: the config's
        ``strong`` section."""
        regions = strong_regions(bootstrap, tmp_path, **strong)
        procs = {r: RegionProcess(regions, r, regions.store_url(r)) for r in regions.names}
        coords = [CoordinatorProcess(regions, i) for i in coordinators]
        for name, failpoint in (armed or {}).items():
            region = getattr(regions, name, None)
            targets = [procs[region]] if region in procs else [
                c for c in coords if c.instance_id == name]
            assert targets, f"nothing named {name!r} to arm"
            for target in targets:
                target.extra_env[FAILPOINTS] = failpoint
        return cls(bootstrap, regions, procs, coords)

    @property
    def names(self) -> tuple[str, str, str]:
        return self.regions.names

    @property
    def store_urls(self) -> dict[str, str]:
        return {r: p.store for r, p in self.region_procs.items()}

    @property
    def log_region(self) -> str:
        """The region whose saga log this deployment uses."""
        return self.regions.edge_config().strong_log_region

    async def saga_log(self) -> SagaLogView:
        """This deployment's saga log, folded."""
        return await read_saga_log(self.bootstrap, self.log_region)

    async def assert_atomic(self, **options: Any) -> AtomicityReport:
        """:func:`assert_atomic` over this deployment's regions and stores."""
        return await assert_atomic(self.bootstrap, self.names, self.store_urls,
                                   log_region=self.log_region, **options)

    async def start(self) -> None:
        """Start every process, all at once (each start waits for its ready line)."""
        await asyncio.gather(
            *(asyncio.to_thread(p.start) for p in self.region_procs.values()),
            *(asyncio.to_thread(c.start) for c in self.coordinators),
        )

    def stop(self) -> None:
        """SIGTERM everything still running (coordinators first)."""
        for c in self.coordinators:
            c.stop()
        for p in self.region_procs.values():
            p.stop()

    def logs(self) -> str:
        """The tail of every process's log, for failure messages."""
        parts = [f"--- {c.log_path.name}\n{c.log_tail()}" for c in self.coordinators]
        parts += [f"--- {r}\n{p.log_tail()}" for r, p in self.region_procs.items()]
        return "\n".join(parts)


# --------------------------------------------------------------------------- the saga log


@dataclass
class SagaLogView:
    """A saga log folded as every reader folds it (one PartitionLog per partition, in
    offset order). ``undecodable``: (partition, offset) of the records that are not
    saga-log records (poison)."""

    txns: dict[str, Txn]
    records: dict[str, list[Any]]  #: txn id -> its records in log order (duplicates too)
    undecodable: list[tuple[int, int]]

    def for_key(self, key: str) -> list[Txn]:
        """The transactions on ``key``, in log order."""
        return [t for t in self.txns.values() if t.key == key]

    def kinds(self, txn_id: str) -> list[str]:
        """The kinds of the records of ``txn_id`` in log order (``BeginRecord`` ...)."""
        return [type(r).__name__ for r in self.records.get(txn_id, [])]


async def read_saga_log(bootstrap: str, log_region: str) -> SagaLogView:
    """Read the saga log of ``log_region`` (``strong.log_region``, by default the first
    region) to its end and fold each partition in offset order."""
    logs: dict[int, PartitionLog] = {}
    records: dict[str, list[Any]] = {}
    undecodable: list[tuple[int, int]] = []
    for record in await read_to_end(KAFKA, bootstrap, commit_log_topic(log_region)):
        try:
            decoded = decode_saga_record(record.value)
        except DecodeError:
            undecodable.append((record.partition, record.offset))
            continue
        logs.setdefault(record.partition, PartitionLog()).fold(record.offset, decoded)
        records.setdefault(decoded.txn_id, []).append(decoded)
    txns = {t.txn_id: t for plog in logs.values() for t in plog.txns.values()}
    return SagaLogView(txns, records, undecodable)


def _txn_header(record: ConsumerRecord[bytes, bytes]) -> str | None:
    for name, raw in record.headers or ():
        if name == H_TXN:
            return bytes(raw).decode("ascii")
    return None


async def txn_events(bootstrap: str, region: str) -> dict[str, list[ConsumerRecord[bytes, bytes]]]:
    """txn id -> the records of ``region``'s events topic with that ``eb-txn`` header."""
    out: dict[str, list[ConsumerRecord[bytes, bytes]]] = {}
    for record in await read_to_end(KAFKA, bootstrap, events_topic(region)):
        txn_id = _txn_header(record)
        if txn_id is not None:
            out.setdefault(txn_id, []).append(record)
    return out


async def _applied_markers(url: str, txn_ids: Iterable[str]) -> set[str]:
    """Which of ``txn_ids`` the store at ``url`` has applied (its applied-once marker)."""
    markers = {txn_marker(t.encode("ascii")): t for t in txn_ids}
    if not markers:
        return set()
    async with by_url(url) as store:
        done = await store.was_redriven(list(markers))
    return {markers[m] for m in done}


async def _versions(url: str) -> dict[str, int]:
    out: dict[str, int] = {}
    async with by_url(url) as store:
        async for state in store.scan():
            out[state.key] = state.version
    return out


@dataclass
class AtomicityReport:
    """What :func:`assert_atomic` checked."""

    committed: int
    aborted: int
    undecided: int
    log: SagaLogView


async def assert_atomic(
    bootstrap: str,
    regions: Sequence[str],
    store_urls: Mapping[str, str],
    *,
    log_region: str | None = None,
    strong_only: bool = True,
) -> AtomicityReport:
    """Check the saga log against every region's events topic and store: a strong
    write is applied in all regions of its placement or in none, and once.

    For each transaction in the saga log (the first vote per region and the first
    decision count, as for every reader):

    * COMMIT decision: in every region of its placement, the events topic holds its
      event (header ``eb-txn``; every copy with the transaction's event id, written in
      that region) and the store holds its applied-once marker;
    * ABORT decision, or none yet: no region's topic holds an event of it, no store
      its marker.

    No region outside a transaction's placement holds an event of it, and every
    ``eb-txn`` event in these topics belongs to a committed transaction. With
    ``strong_only`` (every write of these regions was a strong write) each key's
    version in each store equals the number of committed transactions on it placed
    there: each commit took effect exactly once, however often its event was written.

    The saga log is ``log_region``'s (default: the first of ``regions``, as
    ``strong.log_region`` defaults to the first configured region). Call it once the
    participants acknowledged (every committed transaction is applied by then), or
    after strong reads in every region (their barrier waits for the application);
    returns what was checked.
    """
    view = await read_saga_log(bootstrap, log_region or regions[0])
    events = {r: await txn_events(bootstrap, r) for r in regions}
    problems: list[str] = []
    committed = aborted = undecided = 0
    committed_ids = {
        t.txn_id for t in view.txns.values() if t.decision is not None and t.decision.committed
    }
    applied = {r: await _applied_markers(store_urls[r], view.txns) for r in regions}
    for txn in view.txns.values():
        if txn.begin is None:
            problems.append(f"txn {txn.txn_id} has records but no BEGIN: {view.kinds(txn.txn_id)}")
            continue
        placement = txn.begin.placement
        if txn.txn_id in committed_ids:
            committed += 1
            for region in placement:
                copies = events[region].get(txn.txn_id, [])
                if not copies:
                    problems.append(f"committed txn {txn.txn_id} ({txn.key}) has no event "
                                    f"in {region}")
                for record in copies:
                    event = read_event(record.value)
                    if (event.event_id, event.origin_region) != (
                        txn_event_id(txn.txn_id), region
                    ):
                        problems.append(f"txn {txn.txn_id} event in {region} is "
                                        f"{event.event_id} from {event.origin_region}")
                if txn.txn_id not in applied[region]:
                    problems.append(f"committed txn {txn.txn_id} ({txn.key}) not applied "
                                    f"in the store of {region}")
        else:
            if txn.decision is None:
                undecided += 1
            else:
                aborted += 1
            for region in regions:
                if txn.txn_id in events[region] or txn.txn_id in applied[region]:
                    problems.append(f"{'aborted' if txn.decision else 'undecided'} txn "
                                    f"{txn.txn_id} ({txn.key}) is in {region}")
        for region in regions:
            if region not in placement and txn.txn_id in events[region]:
                problems.append(f"txn {txn.txn_id} has an event in {region}, outside its "
                                f"placement {placement}")
    for region in regions:
        stray = set(events[region]) - committed_ids
        if stray:
            problems.append(f"{region} holds events of txns without a COMMIT: {sorted(stray)}")
    if strong_only:
        for region in regions:
            expected: dict[str, int] = {}
            for txn in view.txns.values():
                if txn.txn_id in committed_ids and region in txn.participants:
                    expected[txn.key] = expected.get(txn.key, 0) + 1
            found = await _versions(store_urls[region])
            if found != expected:
                problems.append(f"{region}: versions {found} != committed txns per key "
                                f"{expected}")
    assert not problems, "atomicity violated:\n  " + "\n  ".join(problems)
    return AtomicityReport(committed, aborted, undecided, view)


def unique_tag() -> str:
    """A prefix for this test's keys."""
    return "k" + uuid.uuid4().hex[:8]


def keys_per_partition(tag: str, per_partition: int = 2) -> list[str]:
    """Keys ``<tag>:k<i>`` covering every saga-log partition, ``per_partition`` each."""
    keys: dict[int, list[str]] = {p: [] for p in range(PARTITIONS)}
    i = 0
    while any(len(v) < per_partition for v in keys.values()):
        key = f"{tag}:k{i}"
        bucket = keys[commit_partition(key, PARTITIONS)]
        if len(bucket) < per_partition:
            bucket.append(key)
        i += 1
    return [k for v in keys.values() for k in v]


# --------------------------------------------------------------------------- strong reads


async def strong_reads(
    bus: EdgeBus, regions: Iterable[str], key: str
) -> dict[str, tuple[Any, ...]]:
    """region -> (exists, value, version) of a strong read of ``key`` in each region
    (each answered by that region, strongly)."""
    out = {}
    for region in regions:
        r = await bus.read(key, region, consistency="strong")
        assert (r.region, r.consistency) == (region, "strong"), r
        out[region] = (r.exists, r.value, r.version)
    return out


async def expect_strong_reads(
    bus: EdgeBus, regions: Iterable[str], key: str, expected: tuple[Any, ...]
) -> None:
    """A strong read of ``key`` in every one of ``regions`` gives ``expected``, the
    (exists, value, version) of the key."""
    regions = tuple(regions)
    assert await strong_reads(bus, regions, key) == dict.fromkeys(regions, expected)

