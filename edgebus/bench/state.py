"""``edgebus bench state``: operations per second on one state machine and their p50/p99,
local and forwarded, against raw aiokafka on the same broker in the same run.

One region R (default: a fresh ``bench-state-<6 hex>``, the run's only region, on the
broker of the config's first region; ``region``: that region, with the config's
regions as they are when it is one of them). Each phase increments one field of a
fresh state (``bench-<tag>-local`` / ``bench-<tag>-forwarded``, class ``public``), N
workers each doing one increment after the other:

- ``local``: the benchmark's own :class:`EdgeBus` runs with ``state.embedded_host``
  (``host_region`` R). Its first call claims the state for that host (no other host
  is running), so every later call runs in this process: the owner appends the state
  event and answers once Kafka acknowledged it (``StateResult.forwarded`` false). No
  other process takes part.
- ``forwarded``: the owner is ``edgebus region run --region R`` as a child process (a
  fresh store; its state host claims the state at the first request, being the only
  host); the benchmark's :class:`EdgeBus` has no host, so every call is forwarded:
  the request appended to the state log, fetched by the owner, run, its event
  appended, fetched by the caller (``forwarded`` true).

In each phase two raw aiokafka baselines run too, in the same process:

- ``raw_send``: ``Producer.send_and_wait`` (idempotent, ``acks=all``,
  ``linger_ms=0``: the state log writer's settings) of a record of the size of an
  increment request, to one partition (a state's records are in one partition);
- ``raw_rtt``: the same send, until a consumer made by the state log's own
  :func:`~edgebus.state.log.start_consumer` (assigned to every partition, no group)
  received it: one hop of the log, which a forwarded call makes twice.

Each phase runs, after an unmeasured warm-up batch of every (concurrency, mode) pair,
``rounds`` rounds; a round runs every pair once for ``seconds``, in a new random order
(so that drift of the machine's speed hits every mode alike). Per batch: p50, p99 and
operations per second (answered calls over the batch's wall time); the figures are the
medians over the rounds. Ratios compare each phase's state calls with the baselines
measured in that phase.

Every answer is checked: an increment returns the field's new value, so the answers
of a phase must be exactly 1..n, each once, and the final ``get`` must return n (no
lost or doubled increment); every measured call of the local phase must have run in
this process (``forwarded`` false), every one of the forwarded phase in the owner's
(``forwarded`` true).

Afterwards the state log is read back and every measured call split into stages by
the append times of its records (the log uses ``LogAppendTime``) and the caller's wall
clock (:data:`STAGES`, :func:`stages_of`). Each process's CPU time and run-queue wait
per phase are reported too (Linux schedstat).

The figures are pure functions of the samples (:func:`summarize`, :func:`compare`,
:func:`check_phase`, :func:`stages_of`, :func:`median_stages`); the shell around them
starts and stops the host, the child process and the clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import TopicPartition

from edgebus.bench.children import READY_TIMEOUT_S, ChildCommand, cancelled_on_sigterm
from edgebus.bench.materialize import fresh_region, scratch_config
from edgebus.bench.rounds import round_figures
from edgebus.bench.strong import (
    ProcessTime,
    _load_average,
    _process_times,
    _schedstat,
    schedule,
)
from edgebus.config import EdgeConfig
from edgebus.core.state_machine import StateOp, StateRequest
from edgebus.errors import DecodeError, EdgebusError
from edgebus.kafka import clients
from edgebus.kafka.clients import Consumer, Producer
from edgebus.kafka.clusters import resolve_clusters
from edgebus.kafka.reading import seek_to_last, topic_partitions
from edgebus.kafka.topics import ensure_topics
from edgebus.sdk import EdgeBus
from edgebus.state.host import default_state_db
from edgebus.state.log import start_consumer, state_partition, state_topic
from edgebus.wire.state_log import decode_state_record, encode_state_record

__all__ = [
    "DEFAULT_CONCURRENCY",
    "MODES",
    "PHASES",
    "STAGES",
    "Comparison",
    "ModeFigures",
    "PhaseCheck",
    "StageFigures",
    "StateBenchResult",
    "check_phase",
    "compare",
    "median_stages",
    "run_state_bench",
    "stages_of",
    "summarize",
]

#: the workers of the second load (the first is one worker)
DEFAULT_CONCURRENCY = 16
#: where the owner runs: in the benchmark's process, or in a region service
PHASES: tuple[str, ...] = ("local", "forwarded")
#: the measured modes of each phase: the state calls, then the baselines
MODES: tuple[str, ...] = ("state", "raw_send", "raw_rtt")
#: the states' class (every region may hold it) and the field incremented
DATA_CLASS = "public"
FIELD = "n"
#: the batch order is the same in every run
SEED = 1
#: the unmeasured warm-up batch of each pair lasts at most this long
WARM_UP_S = 0.5
#: a batch may overrun its duration by this much (its last calls) before the run gives up
BATCH_GRACE_S = 120.0
#: how many failed calls are kept verbatim
ERROR_EXAMPLES = 10
#: the stages of a call in each phase, in order (their sum is the call's latency)
STAGES: dict[str, tuple[tuple[str, str], ...]] = {
    "local": (
        ("append", "call -> the state event appended to the log (queue, run, produce)"),
        ("acknowledge", "event appended -> call returned (produce response, lease check)"),
    ),
    "forwarded": (
        ("request", "call -> the request appended to the log"),
        ("owner", "request appended -> the state event appended (the owner's fetch of "
                  "the request, run, produce)"),
        ("answer", "event appended -> call returned (the caller's fetch of the event)"),
    ),
}


@dataclass
class ModeFigures:
    """One mode of one phase at one concurrency: medians over the rounds (ms, ops/s)."""

    phase: str
    mode: str
    concurrency: int
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
    """A phase's state calls against the baselines measured in that phase."""

    phase: str
    concurrency: int
    p50_ms: float
    p99_ms: float
    per_s: float
    raw_send_p50_ms: float
    raw_send_per_s: float
    raw_rtt_p50_ms: float
    p50_vs_raw_send: float
    p99_vs_raw_send: float
    per_s_vs_raw_send: float
    p50_vs_raw_rtt: float


@dataclass
class PhaseCheck:
    """Whether a phase's answers add up: every increment counted once, each call on the
    expected path."""

    phase: str
    state_id: str
    #: the hosts that answered (one expected: the owner)
    hosts: list[str]
    #: increments answered, warm-up included, and of those measured
    increments: int
    measured: int
    final_value: float | None
    #: the answers are exactly 1..increments, each once, and the final value matches
    exact: bool
    #: measured calls not on the phase's path (local: forwarded; forwarded: local)
    wrong_path: int
    #: answers to a re-sent request (the caller waited longer than state.resend_ms)
    duplicates: int
    errors: int
    error_examples: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Exact, every call on its path, no error."""
        return self.exact and self.wrong_path == 0 and self.errors == 0


@dataclass
class StageFigures:
    """Median time (ms) of each stage of a phase's measured calls at one concurrency."""

    phase: str
    concurrency: int
    calls: int
    stages_ms: dict[str, float]
    total_ms: float


@dataclass
class StateBenchResult:
    """Figures of one ``bench state`` run."""

    region: str
    #: whether the region is the run's own (a scratch config) or a configured one
    fresh_region: bool
    bootstrap: str
    seconds: float
    rounds: int
    concurrency: list[int]
    value_bytes: int
    state_ids: dict[str, str] = field(default_factory=dict)
    setup_seconds: float = 0.0
    total_seconds: float = 0.0
    phase_seconds: dict[str, float] = field(default_factory=dict)
    #: the machine's 1, 5 and 15 minute load averages when the run began and ended
    load_average_start: list[float] = field(default_factory=list)
    load_average: list[float] = field(default_factory=list)
    rows: list[ModeFigures] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)
    #: per concurrency: forwarded p50 / local p50 and local ops/s / forwarded ops/s
    forwarded_vs_local: list[dict[str, float]] = field(default_factory=list)
    checks: list[PhaseCheck] = field(default_factory=list)
    stages: list[StageFigures] = field(default_factory=list)
    #: CPU and run-queue wait of each process while a phase's batches ran
    processes: list[ProcessTime] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Whether every phase's checks passed."""
        return bool(self.checks) and all(c.passed for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready figures."""
        out = asdict(self)
        for check, data in zip(self.checks, out["checks"], strict=True):
            data["passed"] = check.passed
        out["passed"] = self.passed
        out["stage_names"] = {phase: dict(stages) for phase, stages in STAGES.items()}
        return out


# --------------------------------------------------------------------------- pure core


def summarize(
    phase: str, mode: str, concurrency: int, batches: Sequence[tuple[list[float], float]]
) -> ModeFigures:
    """The figures of one mode at one concurrency from its batches, one per round
    (:func:`~edgebus.bench.rounds.round_figures`)."""
    return ModeFigures(phase=phase, mode=mode, concurrency=concurrency, **round_figures(batches))

def compare(rows: Sequence[ModeFigures]) -> list[Comparison]:
    """Per phase and concurrency: the state calls against that phase's baselines."""
    by = {(r.phase, r.mode, r.concurrency): r for r in rows}
    out = []
    for phase, c in sorted({(r.phase, r.concurrency) for r in rows},
                           key=lambda pc: (PHASES.index(pc[0]), pc[1])):
        state, send, rtt = (by[(phase, m, c)] for m in MODES)
        out.append(Comparison(
            phase=phase,
            concurrency=c,
            p50_ms=state.p50_ms,
            p99_ms=state.p99_ms,
            per_s=state.per_s,
            raw_send_p50_ms=send.p50_ms,
            raw_send_per_s=send.per_s,
            raw_rtt_p50_ms=rtt.p50_ms,
            p50_vs_raw_send=round(state.p50_ms / send.p50_ms, 3),
            p99_vs_raw_send=round(state.p99_ms / send.p99_ms, 3),
            per_s_vs_raw_send=round(state.per_s / send.per_s, 3),
            p50_vs_raw_rtt=round(state.p50_ms / rtt.p50_ms, 3),
        ))
    return out


def forwarded_vs_local(rows: Sequence[ModeFigures]) -> list[dict[str, float]]:
    """Per concurrency measured in both phases: what forwarding costs."""
    by = {(r.phase, r.concurrency): r for r in rows if r.mode == "state"}
    out: list[dict[str, float]] = []
    for c in sorted({c for _, c in by}):
        local, forwarded = by.get(("local", c)), by.get(("forwarded", c))
        if local is None or forwarded is None:
            continue
        out.append({"concurrency": c,
                    "p50_ratio": round(forwarded.p50_ms / local.p50_ms, 3),
                    "per_s_ratio": round(local.per_s / forwarded.per_s, 3)})
    return out


def check_phase(
    phase: str,
    state_id: str,
    answers: Sequence[float],
    final_value: float | None,
    *,
    hosts: Sequence[str] = (),
    measured: int = 0,
    wrong_path: int = 0,
    duplicates: int = 0,
    errors: Sequence[str] = (),
) -> PhaseCheck:
    """The check of one phase from the values its increments returned (each the
    field's value after it) and the final ``get``."""
    n = len(answers)
    exact = sorted(answers) == list(range(1, n + 1)) and final_value == n
    return PhaseCheck(
        phase=phase, state_id=state_id, hosts=sorted(set(hosts)), increments=n,
        measured=measured, final_value=final_value, exact=exact, wrong_path=wrong_path,
        duplicates=duplicates, errors=len(errors),
        error_examples=list(errors[:ERROR_EXAMPLES]),
    )


def stages_of(
    phase: str, started_ms: float, ended_ms: float, logged: Mapping[str, int]
) -> dict[str, float] | None:
    """The stages (:data:`STAGES`, ms) of one call from its wall-clock start and end
    (ms) and the append times of its records (``logged``: ``request`` for a forwarded
    call, ``op``: the state event); ``None`` when one is missing. They telescope: the
    sum is ``ended_ms - started_ms``."""
    kinds = ("op",) if phase == "local" else ("request", "op")
    if any(k not in logged for k in kinds):
        return None
    marks = [started_ms, *(float(logged[k]) for k in kinds), ended_ms]
    return {name: marks[i + 1] - marks[i] for i, (name, _) in enumerate(STAGES[phase])}


def median_stages(
    phase: str, concurrency: int, per_call: Sequence[dict[str, float]]
) -> StageFigures:
    """Median of each stage over the calls of one phase at one concurrency."""
    names = [name for name, _ in STAGES[phase]]
    return StageFigures(
        phase=phase,
        concurrency=concurrency,
        calls=len(per_call),
        stages_ms={n: round(statistics.median(s[n] for s in per_call), 2) for n in names},
        total_ms=round(statistics.median(sum(s[n] for n in names) for s in per_call), 2),
    )


# --------------------------------------------------------------------------- the shell


@dataclass
class _Call:
    """A measured call: its request id, concurrency and wall-clock start and end (ms)."""

    concurrency: int
    req_id: str
    started_ms: float
    ended_ms: float


class _Phase:
    """The increments of one phase on its state, and what their answers said."""

    def __init__(self, name: str, bus: EdgeBus, state_id: str, region: str) -> None:
        self.name = name
        self.bus = bus
        self.state_id = state_id
        self.region = region
        self.expect_forwarded = name == "forwarded"
        self.values: list[float] = []
        self.hosts: set[str] = set()
        self.calls: list[_Call] = []
        self.wrong_path = 0
        self.duplicates = 0
        self.errors: list[str] = []

    async def call(self, operation: str, req_id: str | None = None) -> Any:
        return await self.bus.state(self.state_id, operation, key=FIELD,
                                    classification=DATA_CLASS, region=self.region,
                                    req_id=req_id)

    async def increment(self, concurrency: int | None) -> tuple[float, Any]:
        """One increment (measured at ``concurrency``; ``None``: warm-up): its latency
        (ms) and result (``None`` when it raised: counted)."""
        req_id = uuid.uuid4().hex
        wall = time.time() * 1000
        started = time.perf_counter()
        try:
            result = await self.call("increment", req_id)
        except EdgebusError as e:
            elapsed = (time.perf_counter() - started) * 1000
            self.errors.append(f"increment {req_id} raised {type(e).__name__}: {e}")
            return elapsed, None
        elapsed = (time.perf_counter() - started) * 1000
        self.values.append(result.value)
        self.hosts.add(result.host)
        if result.duplicate:
            self.duplicates += 1
        if concurrency is not None:
            if result.forwarded != self.expect_forwarded:
                self.wrong_path += 1
            self.calls.append(_Call(concurrency, req_id, wall, time.time() * 1000))
        return elapsed, result

    async def settle(self) -> None:
        """Until a call takes the phase's path: the owner has claimed the state (its
        first call waits for that) and, locally, this process's host owns it. A call
        that raised is made again with its request id (it runs at most once)."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        req_id = uuid.uuid4().hex
        while True:
            try:
                result = await self.call("increment", req_id)
            except EdgebusError as e:
                last = f"{type(e).__name__}: {e}"
            else:
                req_id = uuid.uuid4().hex
                self.values.append(result.value)
                self.hosts.add(result.host)
                if result.forwarded == self.expect_forwarded:
                    return
                last = f"answered by {result.host}, forwarded={result.forwarded}"
            if time.monotonic() > deadline:
                where = ("the benchmark's embedded state host did not become the owner "
                         if not self.expect_forwarded else "no owner answered ")
                raise EdgebusError(
                    f"{where}of state {self.state_id} in region {self.region} within "
                    f"{READY_TIMEOUT_S:.0f} s (last: {last}): is another state host of the "
                    "region running? Run the benchmark without region services, or name a "
                    "fresh region (--region)"
                )

    async def check(self) -> PhaseCheck:
        final: float | None = None
        try:
            final = (await self.call("get")).value
        except EdgebusError as e:
            self.errors.append(f"the final get raised {type(e).__name__}: {e}")
        return check_phase(
            self.name, self.state_id, self.values, final, hosts=sorted(self.hosts),
            measured=len(self.calls), wrong_path=self.wrong_path,
            duplicates=self.duplicates, errors=self.errors,
        )


class _Raw:
    """The raw aiokafka baselines: one producer (the state log writer's settings), and
    a consumer made as the state log's are for the round trip."""

    def __init__(self, config: EdgeConfig, bootstrap: str, tag: str, value: bytes) -> None:
        self.config = config
        self.bootstrap = bootstrap
        self.value = value
        self.send_topic = f"edgebus.bench.{tag}.state-send"
        self.rtt_topic = f"edgebus.bench.{tag}.state-rtt"
        self.producer: Producer | None = None
        self.consumer: Consumer | None = None
        self._arrivals: dict[bytes, asyncio.Future[float]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._seq = 0

    async def create_topics(self) -> None:
        """Create the scratch topics (early: their leaders are elected by the time the
        clients start)."""
        kafka = self.config.kafka
        await ensure_topics(kafka, self.bootstrap, [self.send_topic, self.rtt_topic])

    async def start(self) -> None:
        self.producer = await clients.start_producer(
            self.config.kafka, self.bootstrap, "log", client_id="edgebus-bench-state-raw"
        )
        self.consumer = consumer = await start_consumer(self.config, self.bootstrap,
                                                        "edgebus-bench-state-raw")
        tps = await topic_partitions(consumer, [self.rtt_topic])
        consumer.assign(tps)
        await seek_to_last(consumer, tps)
        self._reader = asyncio.create_task(self._read(), name="bench state raw consumer")

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        for client in (self.consumer, self.producer):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.stop()

    async def _read(self) -> None:
        assert self.consumer is not None
        while True:
            batch = await self.consumer.getmany(timeout_ms=500)
            now = time.perf_counter()
            for records in batch.values():
                for record in records:
                    waiting = self._arrivals.pop(record.key, None) if record.key else None
                    if waiting is not None and not waiting.done():
                        waiting.set_result(now)

    async def send(self) -> float:
        """``send_and_wait`` of one record; ms."""
        assert self.producer is not None, "start() first"
        started = time.perf_counter()
        await self.producer.send_and_wait(self.send_topic, self.value, partition=0)
        return (time.perf_counter() - started) * 1000

    async def round_trip(self) -> float:
        """Send one record; ms until the consumer received it."""
        self._seq += 1
        key = str(self._seq).encode()
        arrived: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._arrivals[key] = arrived
        assert self.producer is not None, "start() first"
        started = time.perf_counter()
        acked = await self.producer.send(self.rtt_topic, self.value, key=key, partition=0)
        received = await arrived
        await acked
        return (received - started) * 1000


async def _timed_batch(
    seconds: float, concurrency: int, one: Callable[[], Awaitable[float]]
) -> tuple[list[float], float]:
    """``concurrency`` workers, each calling ``one()`` one after the other until
    ``seconds`` have passed; ``(latencies in ms, wall seconds)``."""
    latencies: list[float] = []
    started = time.perf_counter()
    deadline = started + seconds

    async def worker() -> None:
        while time.perf_counter() < deadline:
            latencies.append(await one())

    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))),
                           seconds + BATCH_GRACE_S)
    return latencies, time.perf_counter() - started


async def _measure(
    phase: _Phase, raw: _Raw, levels: Sequence[int], seconds: float, rounds: int
) -> list[ModeFigures]:
    """A warm-up batch of every pair, then the interleaved rounds of the phase."""

    def op(mode: str, c: int, measured: bool) -> Callable[[], Awaitable[float]]:
        if mode == "raw_send":
            return raw.send
        if mode == "raw_rtt":
            return raw.round_trip

        async def one() -> float:
            elapsed, _ = await phase.increment(c if measured else None)
            return elapsed

        return one

    for c in levels:
        for mode in MODES:
            await _timed_batch(min(seconds, WARM_UP_S), c, op(mode, c, False))
    samples: dict[tuple[int, str], list[tuple[list[float], float]]] = {}
    for _, c, mode in schedule(levels, MODES, rounds, random.Random(SEED)):
        samples.setdefault((c, mode), []).append(
            await _timed_batch(seconds, c, op(mode, c, True)))
    return [summarize(phase.name, m, c, samples[(c, m)]) for c in levels for m in MODES]


def _bench_config(config: EdgeConfig, region: str | None) -> tuple[EdgeConfig, str, bool]:
    """``(config, region, fresh)``: a configured region with the config as it is, else
    the named (or a fresh) region as the only one, on the first region's broker."""
    if region is not None and region in config.regions:
        return config, region, False
    name = region or fresh_region("state")
    return scratch_config(config, [name]), name, True


def _with_host(config: EdgeConfig, region: str, embedded: bool) -> EdgeConfig:
    data = config.model_dump(mode="json")
    data["state"]["embedded_host"] = embedded
    data["state"]["host_region"] = region
    return EdgeConfig.from_mapping(data)


async def _read_log(
    config: EdgeConfig, bootstrap: str, state_ids: Sequence[str], since_ms: int
) -> dict[str, dict[str, int]]:
    """Append times of the first request and the first state event (not a repeat) of
    every request on ``state_ids`` appended since ``since_ms``: ``{req_id: {"request":
    ms, "op": ms}}``."""
    topic = state_topic(config, DATA_CLASS)
    tps = sorted({TopicPartition(topic, state_partition(s, config.kafka.partitions))
                  for s in state_ids})
    consumer = await start_consumer(config, bootstrap, "edgebus-bench-state-log")
    out: dict[str, dict[str, int]] = {}
    wanted = set(state_ids)
    try:
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        found = await consumer.offsets_for_times({tp: since_ms for tp in tps})
        for tp in tps:
            at = found.get(tp)
            consumer.seek(tp, at.offset if at is not None else ends[tp])
        remaining = {tp for tp in tps if await consumer.position(tp) < ends[tp]}
        deadline = time.monotonic() + READY_TIMEOUT_S
        while remaining and time.monotonic() < deadline:
            batch = await consumer.getmany(*remaining, timeout_ms=500, max_records=10_000)
            for tp, records in batch.items():
                for record in records:
                    with contextlib.suppress(DecodeError):
                        state_id, rec = decode_state_record(record.value)
                        if state_id in wanted and isinstance(rec, StateRequest):
                            out.setdefault(rec.req_id, {}).setdefault("request",
                                                                      record.timestamp)
                        elif (state_id in wanted and isinstance(rec, StateOp)
                              and not rec.duplicate):
                            out.setdefault(rec.req_id, {}).setdefault("op", record.timestamp)
                    if record.offset + 1 >= ends[tp]:
                        remaining.discard(tp)
    finally:
        await consumer.stop()
    return out


def _remove_state_db(region: str) -> None:
    """The embedded host's snapshots of a region of the run's own."""
    with contextlib.suppress(OSError):
        shutil.rmtree(default_state_db(region).parent)


async def run_state_bench(
    config: EdgeConfig,
    seconds: float = 2.0,
    concurrency: int = DEFAULT_CONCURRENCY,
    rounds: int = 3,
    region: str | None = None,
    store_dir: Path | None = None,
) -> StateBenchResult:
    """The local phase (an embedded host in this process), then the forwarded phase (a
    region service as a child process), each with its baselines."""
    began = time.perf_counter()
    began_ms = int(time.time() * 1000)
    tag = uuid.uuid4().hex[:6]
    cfg, region, fresh = _bench_config(config, region)
    levels = sorted({1, concurrency})
    bootstrap = resolve_clusters(cfg)[region]
    state_ids = {phase: f"bench-{tag}-{phase}" for phase in PHASES}
    value = encode_state_record(state_ids["forwarded"], StateRequest(
        state_ids["forwarded"], uuid.uuid4().hex, "increment", region, key=FIELD))
    result = StateBenchResult(
        region=region, fresh_region=fresh, bootstrap=bootstrap, seconds=seconds,
        rounds=rounds, concurrency=levels, value_bytes=len(value), state_ids=state_ids,
        load_average_start=_load_average(),
    )
    calls: dict[str, list[_Call]] = {}
    with cancelled_on_sigterm(), tempfile.TemporaryDirectory(
        prefix="edgebus-bench-", dir=store_dir
    ) as tmp_name:
        tmp = Path(tmp_name)
        config_path = tmp / "config.json"
        config_path.write_text(json.dumps(cfg.model_dump(mode="json")), encoding="utf-8")
        child = ChildCommand(
            f"region {region}",
            ["region", "run", "--region", region, "--store", f"sqlite://{tmp / 'region.db'}",
             "--config", str(config_path), "--json"],
            tmp / "region.log",
        )
        raw = _Raw(cfg, bootstrap, tag, value)
        try:
            await raw.create_topics()
            setup = time.perf_counter() - began
            for name in PHASES:
                local = name == "local"
                phase_began = time.perf_counter()
                if not local:
                    await child.start()
                async with EdgeBus(_with_host(cfg, region, local),
                                   client_id=f"edgebus-bench-state-{tag}-{name}") as bus:
                    phase = _Phase(name, bus, state_ids[name], region)
                    await phase.settle()
                    if local:
                        await raw.start()
                    setup += time.perf_counter() - phase_began
                    result.setup_seconds = round(setup, 2)
                    pids = {f"benchmark ({name})": os.getpid()}
                    if not local:
                        pids[f"{child.name} ({name})"] = child.pid
                    before = {p: _schedstat(pid) for p, pid in pids.items()}
                    started = time.perf_counter()
                    result.rows += await _measure(phase, raw, levels, seconds, rounds)
                    result.phase_seconds[name] = round(time.perf_counter() - started, 2)
                    result.processes += _process_times(
                        before, {p: _schedstat(pid) for p, pid in pids.items()})
                    result.checks.append(await phase.check())
                    calls[name] = phase.calls
                if local and fresh:
                    _remove_state_db(region)
            logged = await _read_log(cfg, bootstrap, list(state_ids.values()), began_ms)
        finally:
            await raw.stop()
            await child.stop()
            if fresh:
                _remove_state_db(region)
    result.comparisons = compare(result.rows)
    result.forwarded_vs_local = forwarded_vs_local(result.rows)
    for name, measured in calls.items():
        per_level: dict[int, list[dict[str, float]]] = {c: [] for c in levels}
        for call in measured:
            stages = stages_of(name, call.started_ms, call.ended_ms, logged.get(call.req_id, {}))
            if stages is not None:
                per_level[call.concurrency].append(stages)
        result.stages += [median_stages(name, c, s) for c, s in per_level.items() if s]
    result.total_seconds = round(time.perf_counter() - began, 2)
    result.load_average = _load_average()
    return result
