"""``edgebus bench strong``: strong-commit latency and rate against Kafka's own baselines.

Three fresh regions on one broker, each served by ``edgebus region run`` as a child
process (a fresh store each; every region service runs a commit participant), and one
``edgebus coordinator run`` child process. The benchmark's own :class:`EdgeBus` runs
with ``strong.coordinator`` ``"service"``, so a strong write takes the
multi-process path: the BEGIN appended to the commit log, each participant's vote, the
coordinator's decision, the client reading it. A warm-up strong write must commit
before anything is measured (every participant ready, the coordinator assigned).

Four modes, measured in the same run on the same broker, each at every concurrency
(N workers, each doing its operations one after the other, until the batch's count is
done):

- ``raw_rtt``: raw produce-to-consume round trip: an ``Producer``
  (idempotent, ``acks=all``, ``linger_ms=0``: the commit log writer's settings) sends
  a record; an ``Consumer`` assigned to the topic's partitions (no group, the
  saga consumers' ``fetch_max_wait_ms``) receives it. Latency: send to receipt;
- ``kafka_txn``: a Kafka transactional-producer commit: begin, send one record,
  commit (one transactional producer per worker);
- ``eventual``: ``EdgeBus.write`` of the same record with the same placement (all
  three regions), until Kafka acknowledges;
- ``strong``: ``EdgeBus.commit`` of a new key placed in all three regions, until the
  decision is back (a commit that does not commit is counted and reported).

Rounds interleave: in each round every (concurrency, mode) batch runs once, in a new
random order, so that drift of the machine's speed hits every mode alike. After each
batch the run waits until the region services have finished the work it left them
(eventual writes replicated to every region, strong commits applied and acknowledged
by every participant), so that no batch pays for the one before. Per batch: p50,
p99, operations per second (the batch's count over its wall time); the figures are
the medians over the rounds. Per concurrency: strong's p50 over raw_rtt's p50 at
the same concurrency (goal: at most :data:`GOAL_RATIO`), and strong against
kafka_txn and eventual.

Afterwards the commit log is read back and each measured commit broken into stages by
its records' ``time_ms`` (when the writer built the record: for a vote and a decision,
when the batch holding the record it answers was fetched) and Kafka timestamps
(``CreateTime``: when the record was handed to the producer), see :func:`stages_of`.

Each process's CPU time and run-queue wait while the batches ran (Linux
``/proc/PID/task/*/schedstat``) are reported too: on a shared machine they tell how
much of a latency was waiting for a CPU.

The figures are pure functions of the samples (:func:`schedule`, :func:`summarize`,
:func:`compare`, :func:`stages_of`, :func:`median_stages`; the result types and these
functions are in :mod:`edgebus.bench.strong_figures`, the schedule in
:mod:`edgebus.bench.rounds`); the shell around them starts and stops the broker (when
none answers, :mod:`edgebus.bench.broker`), the processes and the clients (the raw
ones in :mod:`edgebus.bench.strong_baselines`, the commit log's reader in
:mod:`edgebus.bench.strong_log`).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from edgebus.bench import strong_figures
from edgebus.bench.broker import bench_broker
from edgebus.bench.children import (
    READY_TIMEOUT_S,
    ChildCommand,
    cancelled_on_sigterm,
    config_file,
    region_process,
)
from edgebus.bench.figures import stages_by_concurrency
from edgebus.bench.machine import ProcessClock, ProcessTime, load_average
from edgebus.bench.materialize import scratch_config
from edgebus.bench.produce import sample_record
from edgebus.bench.rounds import counted_batch, schedule
from edgebus.bench.strong_baselines import StrongBaselines
from edgebus.bench.strong_figures import *  # noqa: F403  (its names are importable from here too)
from edgebus.bench.strong_figures import (
    GOAL_RATIO,
    MODES,
    LoggedRecord,
    StageFigures,
    StrongBenchResult,
    compare,
    median_stages,
    stages_of,
    summarize,
)
from edgebus.bench.strong_log import AckWatch, read_commit_log
from edgebus.config import EdgeConfig
from edgebus.errors import EdgebusError
from edgebus.sdk import EdgeBus

__all__ = ["DEFAULT_CONCURRENCY", "ProcessTime", "run_strong_bench", "schedule"]
__all__ += strong_figures.__all__

DEFAULT_CONCURRENCY: tuple[int, ...] = (1, 16, 64)
#: how long one batch may take before the run gives up
BATCH_TIMEOUT_S = 300.0
#: how long the region services may take to finish a batch's work after it
DRAIN_TIMEOUT_S = 120.0
#: the batch order is the same in every run
SEED = 1
#: the regions are named ``bench-strong-<6 hex>-<name>``
REGION_NAMES = ("us", "eu", "ap")
#: how many failed commits are kept verbatim
FAILURE_EXAMPLES = 10


@dataclass
class _Commit:
    """A measured strong commit: when it ran (wall ms) and at which concurrency."""

    concurrency: int
    started_ms: int
    ended_ms: int


def _bench_config(config: EdgeConfig, bootstrap: str, regions: Sequence[str]) -> EdgeConfig:
    """Fresh ``regions`` on ``bootstrap``; strong writes decided by the coordinator
    process, not by one embedded in the benchmark's EdgeBus."""
    data = config.model_dump(mode="json")
    data["kafka"]["bootstrap"] = bootstrap
    data["kafka"]["clusters"] = {}
    data["strong"]["coordinator"] = "service"
    return scratch_config(EdgeConfig.from_mapping(data), regions)


def _children(config: EdgeConfig, regions: Sequence[str], tmp: Path) -> list[ChildCommand]:
    """A region service per region (a fresh store each) and a coordinator."""
    config_path = config_file(config, tmp / "config.json")
    children = [
        region_process(r, f"sqlite://{tmp / f'{r}.db'}", config_path, tmp / f"{r}.log")
        for r in regions
    ]
    children.append(ChildCommand(
        "coordinator", ["coordinator", "run", "--config", str(config_path), "--json"],
        tmp / "coordinator.log",
    ))
    return children


async def _warm_up(bus: EdgeBus, regions: Sequence[str]) -> None:
    """Until one strong write commits: every participant votes, the coordinator decides.

    A participant that is still catching up, or a coordinator not yet assigned its
    partitions, makes the write time out (aborted); it is retried."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    attempt = 0
    while True:
        attempt += 1
        try:
            result = await bus.commit(f"warm-up:{attempt}", sample_record(attempt),
                                      replication_factor=len(regions), timeout_ms=10_000)
        except EdgebusError as e:
            reason = f"{type(e).__name__}: {e}"
        else:
            if result.committed:
                return
            reason = str(result.reason)
        if time.monotonic() > deadline:
            raise EdgebusError(
                f"no strong write committed within {READY_TIMEOUT_S:.0f} s of starting the "
                f"region services and the coordinator (last: {reason})"
            )
        await asyncio.sleep(0.2)


async def _drain(bus: EdgeBus, regions: Sequence[str], acks: AckWatch) -> None:
    """Until every region service has finished what the batches so far left it to do:
    applied every eventual write (all are placed in every region: a causal read with
    the writer's token waits for them) and applied and acknowledged every committed
    strong write, so that no batch pays for the previous one. The part of a commit's
    work that overlaps the following commits of its own batch is measured."""
    for region in regions:
        await bus.read("drain", region, consistency="causal", wait_ms=DRAIN_TIMEOUT_S * 1000,
                       fallback="raise")
    await acks.wait(regions, DRAIN_TIMEOUT_S)


def _wall_ms() -> int:
    """Wall-clock milliseconds, truncated as the commit log's ``time_ms`` are."""
    return time.time_ns() // 1_000_000


class _Operations:
    """The operation of each mode, timed by itself, and what the measured strong
    commits left: the committed ones (for their stages), the failures (counted in the
    result), the ACKs to wait for between batches."""

    def __init__(
        self, bus: EdgeBus, baselines: StrongBaselines, acks: AckWatch,
        result: StrongBenchResult, regions: Sequence[str],
    ) -> None:
        self.bus = bus
        self.baselines = baselines
        self.acks = acks
        self.result = result
        self.regions = regions
        self.factor = len(regions)
        self.value = json.dumps(sample_record(0)).encode()
        self.committed: dict[str, _Commit] = {}

    def op(self, tag: str, c: int, mode: str, record: bool
           ) -> Callable[[int, int], Awaitable[float]]:
        """Operation ``i`` of worker ``worker`` of a batch of ``mode`` at concurrency
        ``c``, on key ``tag:i``; its latency (ms). ``record``: a measured batch."""

        async def one(worker: int, i: int) -> float:
            key = f"{tag}:{i}"
            if mode == "raw_rtt":
                return await self.baselines.round_trip(key.encode(), self.value)
            if mode == "kafka_txn":
                return await self.baselines.transaction(worker, key.encode(), self.value)
            return await self._edgebus(key, i, c, mode, record)

        return one

    async def _edgebus(self, key: str, i: int, c: int, mode: str, record: bool) -> float:
        """An eventual write (until Kafka acknowledged it) or a strong commit (until
        the decision is back); ms."""
        started, wall = time.perf_counter(), _wall_ms()
        if mode == "eventual":
            await self.bus.write(key, sample_record(i), replication_factor=self.factor)
            return (time.perf_counter() - started) * 1000
        try:
            outcome = await self.bus.commit(key, sample_record(i), replication_factor=self.factor)
        except EdgebusError as e:
            problem: str | None = f"commit of {key} raised {type(e).__name__}: {e}"
        else:
            problem = None if outcome.committed else \
                f"commit of {key}: {outcome.outcome}: {outcome.reason}"
            if outcome.committed:
                self.acks.expected.add(outcome.txn_id)
            if record and outcome.committed:
                self.committed[outcome.txn_id] = _Commit(c, wall, _wall_ms())
        elapsed = (time.perf_counter() - started) * 1000
        if problem is not None and record:
            self.result.failed += 1
            if len(self.result.failure_examples) < FAILURE_EXAMPLES:
                self.result.failure_examples.append(problem)
        return elapsed

    async def drain(self) -> None:
        """Until the region services finished the batch's work (:func:`_drain`),
        counted in ``result.drain_seconds``."""
        started = time.perf_counter()
        await _drain(self.bus, self.regions, self.acks)
        self.result.drain_seconds += time.perf_counter() - started


async def _measure(
    bus: EdgeBus, baselines: StrongBaselines, result: StrongBenchResult,
    regions: Sequence[str], bootstrap: str,
) -> dict[str, _Commit]:
    """The interleaved rounds (after an unmeasured warm-up batch of each pair); fills
    ``result.rows``, ``comparisons`` and failures; returns the committed txns."""
    levels = result.concurrency
    acks = AckWatch(bus.config, bootstrap)
    ops = _Operations(bus, baselines, acks, result, regions)
    await acks.start()
    try:
        for c in levels:  # warm-up: connections, transactional producers, caches
            for mode in MODES:
                await counted_batch(min(result.commits, 2 * c), c,
                                    ops.op(f"warm-{mode}-{c}", c, mode, False), BATCH_TIMEOUT_S)
                await ops.drain()
        samples: dict[tuple[int, str], list[tuple[list[float], float]]] = {}
        for n, c, mode in schedule(levels, MODES, result.rounds, random.Random(SEED)):
            batch = await counted_batch(result.commits, c,
                                        ops.op(f"{mode}-{n}-{c}", c, mode, True), BATCH_TIMEOUT_S)
            samples.setdefault((c, mode), []).append(batch)
            await ops.drain()
    finally:
        await acks.stop()
    result.drain_seconds = round(result.drain_seconds, 2)
    result.rows = [summarize(c, m, samples[(c, m)]) for c in levels for m in MODES]
    result.comparisons = compare(result.rows)
    return ops.committed


async def _run(
    config: EdgeConfig, result: StrongBenchResult, tag: str, tmp: Path, began: float
) -> tuple[dict[str, _Commit], dict[str, list[LoggedRecord]]]:
    """Start the processes and the clients, warm up, measure (with each process's
    share of the machine), stop; the measured commits and the commit log read back."""
    children = _children(config, result.regions, tmp)
    baselines = StrongBaselines(config.kafka, result.bootstrap, tag)
    try:
        await baselines.create_topics()
        await asyncio.gather(*(child.start() for child in children))
        async with EdgeBus(config, client_id=f"edgebus-bench-strong-{tag}") as bus:
            await _warm_up(bus, result.regions)
            await baselines.start(max(result.concurrency))
            result.setup_seconds = round(time.perf_counter() - began, 2)
            pids = {child.name: child.pid for child in children}
            pids["benchmark"] = os.getpid()
            clock = ProcessClock(pids)
            started = time.perf_counter()
            measured = await _measure(bus, baselines, result, result.regions, result.bootstrap)
            result.measure_seconds = round(time.perf_counter() - started, 2)
            result.processes = clock.read()
        logged = await read_commit_log(config, result.bootstrap)
    finally:
        await baselines.stop()
        await asyncio.gather(*(child.stop() for child in children))
    return measured, logged


def _stage_figures(
    levels: Sequence[int], measured: dict[str, _Commit], logged: dict[str, list[LoggedRecord]]
) -> list[StageFigures]:
    """The median stages of the measured commits found in the log, per concurrency."""
    per_level = stages_by_concurrency(levels, (
        (commit.concurrency, stages_of(commit.started_ms, commit.ended_ms,
                                       logged.get(txn_id, [])))
        for txn_id, commit in measured.items()
    ))
    return [median_stages(c, s) for c, s in per_level.items() if s]


async def run_strong_bench(
    config: EdgeConfig,
    rounds: int = 3,
    commits: int = 96,
    concurrency: Sequence[int] = DEFAULT_CONCURRENCY,
    bootstrap: str | None = None,
    store_dir: Path | None = None,
) -> StrongBenchResult:
    """Start the region services and the coordinator, warm up, then measure every
    mode at every concurrency in interleaved rounds."""
    began = time.perf_counter()
    tag = uuid.uuid4().hex[:6]
    regions = [f"bench-strong-{tag}-{name}" for name in REGION_NAMES]
    levels = sorted(set(concurrency))
    with cancelled_on_sigterm(), tempfile.TemporaryDirectory(
        prefix="edgebus-bench-", dir=store_dir
    ) as tmp_name:
        tmp = Path(tmp_name)
        async with bench_broker(config, bootstrap, tmp) as (address, how):
            cfg = _bench_config(config, address, regions)
            result = StrongBenchResult(
                bootstrap=address, broker=how, regions=regions, rounds=rounds,
                commits=commits, concurrency=levels, goal_ratio=GOAL_RATIO,
                load_average_start=load_average(),
            )
            measured, logged = await _run(cfg, result, tag, tmp, began)
    result.stages = _stage_figures(levels, measured, logged)
    result.seconds = round(time.perf_counter() - began, 2)
    result.load_average = load_average()
    return result
