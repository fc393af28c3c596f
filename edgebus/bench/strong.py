"""``edgebus bench strong``: strong-commit latency and rate against Kafka's own baselines.

Three fresh regions on one broker, each served by ``edgebus region run`` as a child
process (a fresh store each; every region service runs a commit participant), and one
``edgebus coordinator run`` child process. The benchmark's own :class:`EdgeBus` runs
with ``strong.embedded_coordinator`` false, so a strong write takes the
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
:func:`compare`, :func:`stages_of`, :func:`median_stages`); the shell around them
starts and stops the broker (when none answers), the processes and the clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import TopicPartition

from edgebus.bench.children import READY_TIMEOUT_S, ChildCommand, cancelled_on_sigterm
from edgebus.bench.materialize import scratch_config
from edgebus.bench.produce import sample_record
from edgebus.bench.rounds import round_figures
from edgebus.config import EdgeConfig, KafkaConfig
from edgebus.core.commit_log import AckRecord, BeginRecord, DecisionRecord, LogRecord, VoteRecord
from edgebus.errors import DecodeError, EdgebusError, InfrastructureUnavailable
from edgebus.kafka.clients import (
    Consumer,
    Producer,
    start_consumer,
    start_producer,
    start_transactional_producer,
    stop_quietly,
)
from edgebus.kafka.clusters import ENV_BOOTSTRAP, resolve_clusters
from edgebus.kafka.reading import seek_to_first, seek_to_last, topic_partitions
from edgebus.kafka.topics import commit_log_topic, ensure_topics
from edgebus.sdk import EdgeBus
from edgebus.wire.commit_log import H_SAGA, decode_saga_record

__all__ = [
    "DEFAULT_CONCURRENCY",
    "GOAL_RATIO",
    "MODES",
    "STAGES",
    "Comparison",
    "LoggedRecord",
    "ModeFigures",
    "ProcessTime",
    "StageFigures",
    "StrongBenchResult",
    "compare",
    "median_stages",
    "run_strong_bench",
    "schedule",
    "stages_of",
    "summarize",
]

#: strong p50 should be at most this many times the raw round trip's p50
GOAL_RATIO = 3.0
DEFAULT_CONCURRENCY: tuple[int, ...] = (1, 16, 64)
#: the measured modes, the baseline first
MODES: tuple[str, ...] = ("raw_rtt", "kafka_txn", "eventual", "strong")
#: how long the broker, the processes and the warm-up commit may take
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
#: the stages of a strong commit, in order (their sum is the commit's latency)
STAGES: tuple[tuple[str, str], ...] = (
    ("prepare", "commit() called -> BEGIN built (placement, encoding)"),
    ("begin_send", "BEGIN built -> handed to the producer"),
    ("begin_hop", "BEGIN handed over -> fetched by the last participant"),
    ("vote", "fetched -> vote handed to the producer (the slowest participant)"),
    ("vote_hop", "last vote handed over -> fetched by the coordinator"),
    ("decide", "fetched -> decision handed to the producer"),
    ("decision_hop", "decision handed over -> commit() returned"),
)


@dataclass
class ModeFigures:
    """One mode at one concurrency: medians over the rounds (milliseconds, ops/s)."""

    concurrency: int
    mode: str
    ops: int
    p50_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    per_s: float
    rounds_p50_ms: list[float] = field(default_factory=list)
    rounds_p99_ms: list[float] = field(default_factory=list)
    rounds_per_s: list[float] = field(default_factory=list)


@dataclass
class Comparison:
    """Strong against the baselines at one concurrency."""

    concurrency: int
    strong_p50_ms: float
    raw_rtt_p50_ms: float
    #: strong p50 / raw round-trip p50: the goal's ratio
    p50_vs_raw_rtt: float
    p99_vs_raw_rtt: float
    p50_vs_kafka_txn: float
    p50_vs_eventual: float
    per_s_vs_kafka_txn: float
    per_s_vs_eventual: float
    goal_met: bool


@dataclass
class StageFigures:
    """Median time (ms) of each stage of the measured strong commits at one concurrency."""

    concurrency: int
    commits: int
    stages_ms: dict[str, float]
    total_ms: float
    #: decision handed over -> the last participant's ACK handed over (applied
    #: everywhere; after commit() returned, not part of its latency)
    applied_ms: float | None


@dataclass
class ProcessTime:
    """What one process of the run got from the machine while the batches ran:
    seconds on a CPU, and seconds runnable but waiting for one (Linux schedstat, all
    its threads). Waiting many times its CPU time means the machine was the limit."""

    process: str
    cpu_s: float
    runqueue_wait_s: float


@dataclass
class StrongBenchResult:
    """Figures of one ``bench strong`` run."""

    bootstrap: str
    broker: str
    regions: list[str]
    rounds: int
    commits: int
    concurrency: list[int]
    goal_ratio: float
    setup_seconds: float = 0.0
    #: time spent between batches waiting for the region services to finish the
    #: previous batch's work (replication, applying commits)
    drain_seconds: float = 0.0
    seconds: float = 0.0
    #: the machine's 1, 5 and 15 minute load averages when the run began and ended
    load_average_start: list[float] = field(default_factory=list)
    load_average: list[float] = field(default_factory=list)
    rows: list[ModeFigures] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)
    stages: list[StageFigures] = field(default_factory=list)
    #: wall seconds of the batches (warm-up and drains included) and each process's share
    measure_seconds: float = 0.0
    processes: list[ProcessTime] = field(default_factory=list)
    failed: int = 0
    failure_examples: list[str] = field(default_factory=list)

    @property
    def goal_met(self) -> bool:
        """Whether strong's p50 met the goal at every concurrency."""
        return all(c.goal_met for c in self.comparisons)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready figures."""
        out = asdict(self)
        out["goal_met"] = self.goal_met
        out["stage_names"] = dict(STAGES)
        return out


# --------------------------------------------------------------------------- pure core


def schedule(
    concurrencies: Sequence[int], modes: Sequence[str], rounds: int, rng: random.Random
) -> Iterator[tuple[int, int, str]]:
    """``(round, concurrency, mode)`` of every batch: each round holds every
    (concurrency, mode) pair once, in a new random order."""
    pairs = [(c, m) for c in concurrencies for m in modes]
    for n in range(rounds):
        rng.shuffle(pairs)
        for c, m in pairs:
            yield n, c, m


def summarize(
    concurrency: int, mode: str, batches: Sequence[tuple[list[float], float]]
) -> ModeFigures:
    """The figures of one mode at one concurrency from its batches, one per round
    (:func:`~edgebus.bench.rounds.round_figures`)."""
    return ModeFigures(concurrency=concurrency, mode=mode, **round_figures(batches))

def compare(rows: Sequence[ModeFigures], goal_ratio: float = GOAL_RATIO) -> list[Comparison]:
    """Per concurrency: strong against raw_rtt (the goal), kafka_txn and eventual."""
    by = {(r.concurrency, r.mode): r for r in rows}
    out = []
    for c in sorted({r.concurrency for r in rows}):
        strong, raw = by[(c, "strong")], by[(c, "raw_rtt")]
        txn, eventual = by[(c, "kafka_txn")], by[(c, "eventual")]
        ratio = strong.p50_ms / raw.p50_ms
        out.append(Comparison(
            concurrency=c,
            strong_p50_ms=strong.p50_ms,
            raw_rtt_p50_ms=raw.p50_ms,
            p50_vs_raw_rtt=round(ratio, 3),
            p99_vs_raw_rtt=round(strong.p99_ms / raw.p99_ms, 3),
            p50_vs_kafka_txn=round(strong.p50_ms / txn.p50_ms, 3),
            p50_vs_eventual=round(strong.p50_ms / eventual.p50_ms, 3),
            per_s_vs_kafka_txn=round(strong.per_s / txn.per_s, 3),
            per_s_vs_eventual=round(strong.per_s / eventual.per_s, 3),
            goal_met=ratio <= goal_ratio,
        ))
    return out


@dataclass
class LoggedRecord:
    """One commit-log record as read back: the record and its Kafka timestamp (ms)."""

    record: LogRecord
    timestamp_ms: int


def stages_of(
    started_ms: float, ended_ms: float, records: Sequence[LoggedRecord]
) -> dict[str, float] | None:
    """The stages (:data:`STAGES`, ms) of one strong commit that committed, from its
    wall-clock start and end (ms) and its commit-log records; ``None`` when a record is
    missing (a BEGIN, a vote of every participant, a decision).

    The stages telescope: their sum is ``ended_ms - started_ms``. Vote and decision
    ``time_ms`` are taken when the participant (coordinator) got the batch holding
    the record it answers, so ``*_hop`` is a produce plus a fetch, and ``vote`` /
    ``decide`` the work (and queueing) in that process. Also ``"applied"``: decision
    handed over -> the last ACK handed over, when every participant acknowledged.
    """
    begin = next((r for r in records if isinstance(r.record, BeginRecord)), None)
    decision = next((r for r in records if isinstance(r.record, DecisionRecord)), None)
    if begin is None or decision is None:
        return None
    assert isinstance(begin.record, BeginRecord)
    participants = begin.record.placement
    votes: dict[str, LoggedRecord] = {}
    acks: dict[str, LoggedRecord] = {}
    for r in records:
        if isinstance(r.record, VoteRecord):
            votes.setdefault(r.record.vote.region, r)
        elif isinstance(r.record, AckRecord):
            acks.setdefault(r.record.region, r)
    if any(p not in votes for p in participants) or not participants:
        return None
    vote_fetched = max(votes[p].record.time_ms for p in participants)
    vote_sent = max(votes[p].timestamp_ms for p in participants)
    marks = [
        started_ms, begin.record.time_ms, begin.timestamp_ms, vote_fetched, vote_sent,
        decision.record.time_ms, decision.timestamp_ms, ended_ms,
    ]
    out = {name: marks[i + 1] - marks[i] for i, (name, _) in enumerate(STAGES)}
    if all(p in acks for p in participants):
        out["applied"] = max(acks[p].timestamp_ms for p in participants) - decision.timestamp_ms
    return out


def median_stages(concurrency: int, per_commit: Sequence[dict[str, float]]) -> StageFigures:
    """Median of each stage over the commits of one concurrency."""
    names = [name for name, _ in STAGES]
    applied = [s["applied"] for s in per_commit if "applied" in s]
    return StageFigures(
        concurrency=concurrency,
        commits=len(per_commit),
        stages_ms={n: round(statistics.median(s[n] for s in per_commit), 2) for n in names},
        total_ms=round(statistics.median(sum(s[n] for n in names) for s in per_commit), 2),
        applied_ms=round(statistics.median(applied), 2) if applied else None,
    )


# --------------------------------------------------------------------------- the shell


@dataclass
class _Commit:
    """A measured strong commit: when it ran (wall ms) and at which concurrency."""

    concurrency: int
    started_ms: int
    ended_ms: int


async def _answers(bootstrap: str, timeout_s: float = 3.0) -> bool:
    """Whether the first address of ``bootstrap`` accepts a TCP connection."""
    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(host.strip("[]") or "127.0.0.1", int(port)), timeout_s
        )
    except (OSError, ValueError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()
    return True


@contextlib.asynccontextmanager
async def _broker(
    config: EdgeConfig, bootstrap: str | None, tmp: Path
) -> AsyncIterator[tuple[str, str]]:
    """Yield ``(bootstrap, how)``: the given address, the configured one, or a private
    broker started for this run (when nothing was named and nothing answers at the
    resolved address) and wiped afterwards."""
    first = config.regions[0]
    named = bootstrap or config.kafka.clusters.get(first) or config.kafka.bootstrap \
        or os.environ.get(ENV_BOOTSTRAP)
    address = bootstrap or resolve_clusters(config)[first]
    if await _answers(address):
        yield address, "given" if bootstrap else "configured"
        return
    if named:
        raise InfrastructureUnavailable(
            f"no Kafka answers at {address}: start it, or name none (no --bootstrap, "
            f"kafka.bootstrap or {ENV_BOOTSTRAP}) and the benchmark starts a broker of its own",
            [address],
        )
    from edgebus.localkafka import launcher

    state = tmp / "kafka"
    try:
        up = await asyncio.to_thread(launcher.up, 1, state=state, timeout_s=READY_TIMEOUT_S)
        yield up.state.clusters[0].bootstrap, "started"
    finally:
        with contextlib.suppress(EdgebusError):
            await asyncio.to_thread(launcher.down, True, state=state)


def _bench_config(config: EdgeConfig, bootstrap: str, regions: Sequence[str]) -> EdgeConfig:
    """Fresh ``regions`` on ``bootstrap``; strong writes decided by the coordinator
    process, not by one embedded in the benchmark's EdgeBus."""
    data = config.model_dump(mode="json")
    data["kafka"]["bootstrap"] = bootstrap
    data["kafka"]["clusters"] = {}
    data["strong"]["embedded_coordinator"] = False
    return scratch_config(EdgeConfig.from_mapping(data), regions)


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


async def _batch(
    count: int, concurrency: int, one: Callable[[int, int], Awaitable[float]]
) -> tuple[list[float], float]:
    """``one(worker, i)`` for i < count by ``concurrency`` workers, each one at a time;
    ``(latencies in ms, wall seconds)``. ``one`` returns its own latency (ms)."""
    next_index = 0
    latencies: list[float] = []

    async def worker(w: int) -> None:
        nonlocal next_index
        while next_index < count:
            i = next_index
            next_index += 1
            latencies.append(await one(w, i))

    started = time.perf_counter()
    await asyncio.wait_for(
        asyncio.gather(*(worker(w) for w in range(concurrency))), BATCH_TIMEOUT_S
    )
    return latencies, time.perf_counter() - started


class _AckWatch:
    """Reads the ACKs of the commit log between batches (paused while one runs): which
    participants have applied which transactions."""

    def __init__(self, config: EdgeConfig, bootstrap: str) -> None:
        self.config = config
        self.bootstrap = bootstrap
        self.topic = commit_log_topic(config.strong_log_region)
        self.partitions = config.kafka.partitions
        self._consumer: Consumer | None = None
        self.expected: set[str] = set()  #: committed txns not yet acknowledged by all
        self._acked: dict[str, set[str]] = {}

    async def start(self) -> None:
        """From the log's current end, paused."""
        self._consumer = await start_consumer(
            self.config.kafka, self.bootstrap, "log", client_id="edgebus-bench-strong-acks"
        )
        tps = [TopicPartition(self.topic, p) for p in range(self.partitions)]
        self.consumer.assign(tps)
        await seek_to_last(self.consumer, tps)
        self.consumer.pause(*tps)

    @property
    def consumer(self) -> Consumer:
        """The started consumer of the commit log."""
        assert self._consumer is not None, "start() first"
        return self._consumer

    async def stop(self) -> None:
        if self._consumer is not None:
            await stop_quietly(self._consumer)

    async def wait(self, participants: Sequence[str], timeout_s: float) -> None:
        """Until every participant acknowledged every expected transaction."""
        tps = self.consumer.assignment()
        self.consumer.resume(*tps)
        deadline = time.monotonic() + timeout_s
        try:
            while self.expected:
                if time.monotonic() > deadline:
                    raise EdgebusError(
                        f"{len(self.expected)} committed strong writes were not applied by "
                        f"every region {timeout_s:.0f} s after the batch: are the region "
                        "services overloaded?"
                    )
                batch = await self.consumer.getmany(timeout_ms=200, max_records=10_000)
                for records in batch.values():
                    for record in records:
                        if (H_SAGA, b"ack") not in (record.headers or ()):
                            continue
                        with contextlib.suppress(DecodeError):
                            ack = decode_saga_record(record.value)
                            if isinstance(ack, AckRecord):
                                self._acked.setdefault(ack.txn_id, set()).add(ack.region)
                done = {t for t in self.expected
                        if all(p in self._acked.get(t, ()) for p in participants)}
                self.expected -= done
                for t in done:
                    self._acked.pop(t, None)
        finally:
            self.consumer.pause(*tps)


async def _drain(bus: EdgeBus, regions: Sequence[str], acks: _AckWatch) -> None:
    """Until every region service has finished what the batches so far left it to do:
    applied every eventual write (all are placed in every region: a causal read with
    the writer's token waits for them) and applied and acknowledged every committed
    strong write, so that no batch pays for the previous one. The part of a commit's
    work that overlaps the following commits of its own batch is measured."""
    for region in regions:
        await bus.read("drain", region, consistency="causal", wait_ms=DRAIN_TIMEOUT_S * 1000,
                       fallback="raise")
    await acks.wait(regions, DRAIN_TIMEOUT_S)


class _Baselines:
    """The raw aiokafka clients: a producer and a consumer for the round trip, one
    transactional producer per worker."""

    def __init__(self, kafka: KafkaConfig, bootstrap: str, tag: str) -> None:
        self.kafka = kafka
        self.bootstrap = bootstrap
        self.tag = tag
        self.rtt_topic = f"edgebus.bench.{tag}.rtt"
        self.txn_topic = f"edgebus.bench.{tag}.txn"
        self._producer: Producer | None = None
        self._consumer: Consumer | None = None
        self.txn_producers: list[Producer] = []
        self._arrivals: dict[bytes, asyncio.Future[float]] = {}
        self._reader: asyncio.Task[None] | None = None

    async def create_topics(self) -> None:
        """Create the scratch topics (early: their leaders are elected by the time the
        clients start)."""
        await ensure_topics(self.kafka, self.bootstrap, [self.rtt_topic, self.txn_topic])

    @property
    def producer(self) -> Producer:
        """The started producer of the round trip (the commit log writer's settings)."""
        assert self._producer is not None, "start() first"
        return self._producer

    @property
    def consumer(self) -> Consumer:
        """The started consumer of the round trip (the commit log readers' settings)."""
        assert self._consumer is not None, "start() first"
        return self._consumer

    async def start(self, workers: int) -> None:
        self._producer = await start_producer(
            self.kafka, self.bootstrap, "log", client_id="edgebus-bench-strong-raw"
        )
        self._consumer = await start_consumer(
            self.kafka, self.bootstrap, "log", client_id="edgebus-bench-strong-raw"
        )
        tps = await topic_partitions(self.consumer, [self.rtt_topic])
        self.consumer.assign(tps)
        await seek_to_last(self.consumer, tps)
        self._reader = asyncio.create_task(self._read(), name="bench strong raw consumer")
        self.txn_producers = list(await asyncio.gather(*(
            start_transactional_producer(
                self.kafka, self.bootstrap, f"edgebus-bench-strong-{self.tag}-{i}"
            )
            for i in range(workers)
        )))

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        for client in (self._consumer, self._producer, *self.txn_producers):
            if client is not None:
                await stop_quietly(client)

    async def _read(self) -> None:
        while True:
            batch = await self.consumer.getmany(timeout_ms=500)
            now = time.perf_counter()
            for records in batch.values():
                for record in records:
                    waiting = self._arrivals.pop(record.key, None) if record.key else None
                    if waiting is not None and not waiting.done():
                        waiting.set_result(now)

    async def round_trip(self, key: bytes, value: bytes) -> float:
        """Send ``value`` under ``key``; ms until the consumer received it."""
        arrived: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._arrivals[key] = arrived
        started = time.perf_counter()
        acked = await self.producer.send(self.rtt_topic, value, key=key)
        received = await arrived
        await acked
        return (received - started) * 1000

    async def transaction(self, worker: int, key: bytes, value: bytes) -> float:
        """Begin, send one record, commit; ms."""
        producer = self.txn_producers[worker]
        started = time.perf_counter()
        async with producer.transaction():
            await producer.send(self.txn_topic, value, key=key)
        return (time.perf_counter() - started) * 1000


async def _read_commit_log(config: EdgeConfig, bootstrap: str) -> dict[str, list[LoggedRecord]]:
    """Every record of the commit log, by transaction id (in log order)."""
    consumer = await start_consumer(config.kafka, bootstrap, "reader")
    out: dict[str, list[LoggedRecord]] = {}
    try:
        tps = [TopicPartition(commit_log_topic(config.strong_log_region), p)
               for p in range(config.kafka.partitions)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await seek_to_first(consumer, tps)
        remaining = {tp for tp in tps if ends[tp] > 0}
        deadline = time.monotonic() + READY_TIMEOUT_S
        while remaining and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
            for tp, records in batch.items():
                for record in records:
                    with contextlib.suppress(DecodeError):
                        decoded = decode_saga_record(record.value)
                        out.setdefault(decoded.txn_id, []).append(
                            LoggedRecord(decoded, record.timestamp))
                    if record.offset + 1 >= ends[tp]:
                        remaining.discard(tp)
    finally:
        await consumer.stop()
    return out


def _schedstat(pid: int) -> tuple[float, float] | None:
    """Seconds on a CPU and waiting in a run queue, summed over ``pid``'s threads
    (``None`` where /proc/PID/task/*/schedstat cannot be read: not Linux)."""
    cpu = wait = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat", encoding="ascii") as f:
                fields = f.read().split()
        except OSError:
            continue  # a thread that ended meanwhile
        cpu += int(fields[0])
        wait += int(fields[1])
    return cpu / 1e9, wait / 1e9


def _process_times(
    before: dict[str, tuple[float, float] | None], after: dict[str, tuple[float, float] | None]
) -> list[ProcessTime]:
    out = []
    for name, end in after.items():
        start = before.get(name)
        if start is not None and end is not None:
            out.append(ProcessTime(name, round(end[0] - start[0], 2),
                                   round(end[1] - start[1], 2)))
    return out


def _wall_ms() -> int:
    """Wall-clock milliseconds, truncated as the commit log's ``time_ms`` are."""
    return time.time_ns() // 1_000_000


def _load_average() -> list[float]:
    with contextlib.suppress(OSError):
        return [round(x, 2) for x in os.getloadavg()]
    return []


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
        async with _broker(config, bootstrap, tmp) as (address, how):
            cfg = _bench_config(config, address, regions)
            result = StrongBenchResult(
                bootstrap=address, broker=how, regions=regions, rounds=rounds,
                commits=commits, concurrency=levels, goal_ratio=GOAL_RATIO,
                load_average_start=_load_average(),
            )
            config_path = tmp / "config.json"
            config_path.write_text(json.dumps(cfg.model_dump(mode="json")), encoding="utf-8")
            common = ["--config", str(config_path), "--json"]
            children = [
                ChildCommand(f"region {r}", ["region", "run", "--region", r,
                                       "--store", f"sqlite://{tmp / f'{r}.db'}", *common],
                       tmp / f"{r}.log")
                for r in regions
            ]
            children.append(ChildCommand("coordinator", ["coordinator", "run", *common],
                                   tmp / "coordinator.log"))
            baselines = _Baselines(cfg.kafka, address, tag)
            try:
                await baselines.create_topics()
                await asyncio.gather(*(child.start() for child in children))
                async with EdgeBus(cfg, client_id=f"edgebus-bench-strong-{tag}") as bus:
                    await _warm_up(bus, regions)
                    await baselines.start(max(levels))
                    result.setup_seconds = round(time.perf_counter() - began, 2)
                    pids = {child.name: child.pid for child in children}
                    pids["benchmark"] = os.getpid()
                    before = {name: _schedstat(pid) for name, pid in pids.items()}
                    started = time.perf_counter()
                    measured = await _measure(bus, baselines, result, regions, address)
                    result.measure_seconds = round(time.perf_counter() - started, 2)
                    result.processes = _process_times(
                        before, {name: _schedstat(pid) for name, pid in pids.items()})
                logged = await _read_commit_log(cfg, address)
            finally:
                await baselines.stop()
                await asyncio.gather(*(child.stop() for child in children))
    per_level: dict[int, list[dict[str, float]]] = {c: [] for c in levels}
    for txn_id, commit in measured.items():
        stages = stages_of(commit.started_ms, commit.ended_ms, logged.get(txn_id, []))
        if stages is not None:
            per_level[commit.concurrency].append(stages)
    result.stages = [median_stages(c, s) for c, s in per_level.items() if s]
    result.seconds = round(time.perf_counter() - began, 2)
    result.load_average = _load_average()
    return result


async def _measure(
    bus: EdgeBus, baselines: _Baselines, result: StrongBenchResult, regions: Sequence[str],
    bootstrap: str,
) -> dict[str, _Commit]:
    """The interleaved rounds (after an unmeasured warm-up batch of each pair); fills
    ``result.rows``, ``comparisons`` and failures; returns the committed txns."""
    factor = len(regions)
    value = json.dumps(sample_record(0)).encode()
    committed: dict[str, _Commit] = {}
    examples = result.failure_examples

    def op(tag: str, c: int, mode: str, record: bool) -> Callable[[int, int], Awaitable[float]]:
        async def one(worker: int, i: int) -> float:
            key = f"{tag}:{i}"
            if mode == "raw_rtt":
                return await baselines.round_trip(key.encode(), value)
            if mode == "kafka_txn":
                return await baselines.transaction(worker, key.encode(), value)
            started, wall = time.perf_counter(), _wall_ms()
            if mode == "eventual":
                await bus.write(key, sample_record(i), replication_factor=factor)
                return (time.perf_counter() - started) * 1000
            try:
                outcome = await bus.commit(key, sample_record(i), replication_factor=factor)
            except EdgebusError as e:
                problem: str | None = f"commit of {key} raised {type(e).__name__}: {e}"
            else:
                problem = None if outcome.committed else \
                    f"commit of {key}: {outcome.outcome}: {outcome.reason}"
                if outcome.committed:
                    acks.expected.add(outcome.txn_id)
                if record and outcome.committed:
                    committed[outcome.txn_id] = _Commit(c, wall, _wall_ms())
            elapsed = (time.perf_counter() - started) * 1000
            if problem is not None and record:
                result.failed += 1
                if len(examples) < FAILURE_EXAMPLES:
                    examples.append(problem)
            return elapsed

        return one

    async def drain() -> None:
        started = time.perf_counter()
        await _drain(bus, regions, acks)
        result.drain_seconds += time.perf_counter() - started

    levels = result.concurrency
    acks = _AckWatch(bus.config, bootstrap)
    await acks.start()
    try:
        for c in levels:  # warm-up: connections, transactional producers, caches
            for mode in MODES:
                await _batch(min(result.commits, 2 * c), c,
                             op(f"warm-{mode}-{c}", c, mode, False))
                await drain()
        samples: dict[tuple[int, str], list[tuple[list[float], float]]] = {}
        for n, c, mode in schedule(levels, MODES, result.rounds, random.Random(SEED)):
            batch = await _batch(result.commits, c, op(f"{mode}-{n}-{c}", c, mode, True))
            samples.setdefault((c, mode), []).append(batch)
            await drain()
    finally:
        await acks.stop()
    result.drain_seconds = round(result.drain_seconds, 2)
    result.rows = [summarize(c, m, samples[(c, m)]) for c in levels for m in MODES]
    result.comparisons = compare(result.rows)
    return committed


