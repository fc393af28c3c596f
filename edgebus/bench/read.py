"""``edgebus bench read``: read latency per consistency level, against eventual.

One fresh region R on the broker. Its service runs embedded in the benchmark's process
(``RegionService(R, serve=False)``); an :class:`EdgeBus` writes K keys there
(:func:`~edgebus.bench.produce.sample_record` values) and the run waits until R has
applied them all, keeping the writer's session token. Then two modes, one after the
other, on the same store:

- local: the embedded service answers: ``EdgeBus.read`` -> ``RegionClient`` ->
  ``RegionService.read_at``, in this process, no HTTP;
- remote: the embedded service is stopped and ``edgebus region run --region R`` is
  started on the same store as a child process; reads go over HTTP to the endpoint
  it announces.

In each mode a reader :class:`EdgeBus` (not the writer) reads random keys, one read
in flight, the levels interleaved: rounds of one read per level, each round in a new
random order, so that drift of the machine's speed, and what a read meets after a
slow one, are shared by all levels alike:

- ``eventual``;
- ``causal`` with the writer's token (R covers it already: no wait);
- ``bounded_time``: ``bounded_staleness`` with ``staleness_threshold_ms`` (R is fresh:
  its heartbeats pass every ``replication.watermark_interval_ms``);
- ``bounded_versions``: the same plus ``max_versions_behind``, for which R asks Kafka
  for the end offsets of the key's streams on every read (reported separately).

Unmeasured warm-up reads come first. Every measured read is also checked: a causal
read must return the value written (version >= 1); a bounded read must carry a
``staleness_ms`` within the threshold (and ``versions_behind`` within the bound); a
read that raises counts too. Violations are counted and the first ones kept.

The figures are pure functions of the samples (:func:`summarize`, :func:`check_read`,
:func:`interleave`); the shell around them starts and stops the services.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

from edgebus.bench.children import (
    READY_TIMEOUT_S,
    cancelled_on_sigterm,
    config_file,
    region_process,
)
from edgebus.bench.figures import percentile
from edgebus.bench.materialize import fresh_region, scratch_config
from edgebus.bench.produce import sample_record
from edgebus.config import EdgeConfig
from edgebus.core.freshness import missing
from edgebus.core.session import SessionToken
from edgebus.errors import EdgebusError
from edgebus.kafka.batching import partition_for
from edgebus.kafka.clusters import resolve_clusters
from edgebus.sdk import EdgeBus, ReadResult
from edgebus.server.service import RegionService

__all__ = [
    "GOAL_RATIO",
    "LEVELS",
    "Level",
    "LevelFigures",
    "ReadBenchResult",
    "check_read",
    "interleave",
    "run_read_bench",
    "summarize",
]

#: causal and bounded_time reads should take at most this many times eventual's
GOAL_RATIO = 1.2
#: bounded-staleness threshold of the bounded levels
STALENESS_THRESHOLD_MS = 5000.0
#: version bound of the bounded_versions level
MAX_VERSIONS_BEHIND = 1000
#: the key choices and level orders are the same in every run and mode
SEED = 1
#: how many violations are kept verbatim
VIOLATION_EXAMPLES = 10
#: a read whose ``waited_ms`` reaches this waited for the region (below it, it only
#: checked: the check itself takes microseconds)
WAITED_MS = 1.0


class Level(NamedTuple):
    """One measured read level: its name, the consistency asked and its options."""

    name: str
    consistency: Literal["eventual", "causal", "bounded_staleness", "strong"]
    staleness_threshold_ms: float | None = None
    max_versions_behind: int | None = None
    #: whether the latency goal (GOAL_RATIO x eventual) applies to it
    goal: bool = False


LEVELS: tuple[Level, ...] = (
    Level("eventual", "eventual"),
    Level("causal", "causal", goal=True),
    Level("bounded_time", "bounded_staleness", STALENESS_THRESHOLD_MS, goal=True),
    Level("bounded_versions", "bounded_staleness", STALENESS_THRESHOLD_MS, MAX_VERSIONS_BEHIND),
)


@dataclass
class LevelFigures:
    """Latency of one level in one mode (milliseconds), and its checks."""

    mode: str
    level: str
    consistency: str
    reads: int
    p50_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    reads_per_s: float
    p50_ratio: float
    p99_ratio: float
    #: None where no goal applies (eventual itself, bounded_versions)
    goal_met: bool | None
    #: reads whose ``waited_ms`` (time in the region before reading the store, the
    #: end-offsets request of bounded_versions included) reached WAITED_MS
    waited: int
    mean_waited_ms: float
    violations: int


@dataclass
class ReadBenchResult:
    """Figures of one ``bench read`` run."""

    region: str
    bootstrap: str
    keys: int
    reads: int
    warmup: int
    staleness_threshold_ms: float
    max_versions_behind: int
    watermark_interval_ms: int
    goal_ratio: float
    setup_seconds: float
    rows: list[LevelFigures] = field(default_factory=list)
    violations: int = 0
    violation_examples: list[str] = field(default_factory=list)

    @property
    def goal_met(self) -> bool:
        """Whether every row the goal applies to met it."""
        return all(r.goal_met for r in self.rows if r.goal_met is not None)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready figures."""
        out = asdict(self)
        out["goal_met"] = self.goal_met
        return out


# --------------------------------------------------------------------------- pure core


def interleave(levels: Sequence[Level], rounds: int, rng: random.Random) -> Iterator[Level]:
    """Every level once per round, each round in a new random order.

    A fixed rotation (ABCD, BCDA, ...) would not do: it puts the same level right
    after a given one in most rounds, and a read right after a slow one is not like
    the others (with 100 ms reads in the rounds, eventual, placed after them in three
    rounds of four, came out 5-35 % slower than the other levels).
    """
    order = list(levels)
    for _ in range(rounds):
        rng.shuffle(order)
        yield from order


def check_read(level: Level, result: ReadResult, written: Any) -> str | None:
    """What is wrong with a read at ``level`` (``None``: nothing); ``written`` is the
    value the key was given in the setup."""
    if level.consistency == "causal" and (
        not result.exists or result.version < 1 or result.value != written
    ):
        return (
            f"causal read of {result.key} returned exists={result.exists} "
            f"version={result.version} value={result.value!r:.80}, not the written value"
        )
    if level.consistency == "bounded_staleness":
        threshold = level.staleness_threshold_ms
        assert threshold is not None
        stale = result.staleness_ms
        if stale is None or stale > threshold:
            return f"bounded read of {result.key} has staleness_ms={stale} (bound {threshold:g})"
        bound = level.max_versions_behind
        behind = result.versions_behind
        if bound is not None and (behind is None or behind > bound):
            return f"bounded read of {result.key} has versions_behind={behind} (bound {bound})"
    return None


def summarize(
    mode: str,
    samples: Mapping[str, list[float]],
    waited_ms: Mapping[str, list[float]],
    violations: Mapping[str, int],
    levels: Sequence[Level] = LEVELS,
    baseline: str = "eventual",
) -> list[LevelFigures]:
    """Per level: p50/p99/mean/max latency (ms), reads/s with one read in flight, the
    p50 and p99 ratios to ``baseline``'s, and how long the region waited
    (``waited_ms``, from the read results)."""
    base = samples[baseline]
    base50, base99 = percentile(base, 50), percentile(base, 99)
    rows = []
    for level in levels:
        ms = samples[level.name]
        p50, p99 = percentile(ms, 50), percentile(ms, 99)
        r50, r99 = p50 / base50, p99 / base99
        waits = waited_ms.get(level.name) or [0.0]
        rows.append(
            LevelFigures(
                mode=mode,
                level=level.name,
                consistency=level.consistency,
                reads=len(ms),
                p50_ms=round(p50, 3),
                p99_ms=round(p99, 3),
                mean_ms=round(statistics.fmean(ms), 3),
                max_ms=round(max(ms), 3),
                reads_per_s=round(len(ms) / (sum(ms) / 1000), 1),
                p50_ratio=round(r50, 3),
                p99_ratio=round(r99, 3),
                goal_met=(r50 <= GOAL_RATIO and r99 <= GOAL_RATIO) if level.goal else None,
                waited=sum(w >= WAITED_MS for w in waits),
                mean_waited_ms=round(statistics.fmean(waits), 3),
                violations=violations.get(level.name, 0),
            )
        )
    return rows


# --------------------------------------------------------------------------- the shell


@dataclass
class _Workload:
    """What the reads need: the keys and their values, the writer's token."""

    values: dict[str, Any]
    token: SessionToken

    @property
    def keys(self) -> list[str]:
        return list(self.values)


async def _read(reader: EdgeBus, region: str, level: Level, key: str,
                token: SessionToken, wait_ms: float | None = None) -> ReadResult:
    return await reader.read(
        key, region, consistency=level.consistency,
        session=token if level.consistency == "causal" else None,
        staleness_threshold_ms=level.staleness_threshold_ms,
        max_versions_behind=level.max_versions_behind,
        wait_ms=wait_ms,
    )


async def _until_fresh(reader: EdgeBus, region: str, work: _Workload, partitions: int) -> None:
    """Wait (unmeasured) until the region serves every level on every partition."""
    by_partition: dict[int, str] = {}
    for key in work.keys:
        by_partition.setdefault(partition_for(key.encode("utf-8"), partitions), key)
    for key in by_partition.values():
        for level in LEVELS:
            await _read(reader, region, level, key, work.token, wait_ms=READY_TIMEOUT_S * 1000)


async def _measure(
    mode: str, reader: EdgeBus, region: str, work: _Workload, reads: int, warmup: int,
    partitions: int, examples: list[str],
) -> list[LevelFigures]:
    """Warm up, then ``reads`` interleaved reads per level; their figures."""
    await _until_fresh(reader, region, work, partitions)
    rng = random.Random(SEED)
    keys = work.keys
    for level in interleave(LEVELS, warmup, rng):
        await _read(reader, region, level, rng.choice(keys), work.token)
    samples: dict[str, list[float]] = {level.name: [] for level in LEVELS}
    waited: dict[str, list[float]] = {level.name: [] for level in LEVELS}
    violations: dict[str, int] = {}
    clock = time.perf_counter
    for level in interleave(LEVELS, reads, rng):
        key = rng.choice(keys)
        problem: str | None
        started = clock()
        try:
            result = await _read(reader, region, level, key, work.token)
        except EdgebusError as e:
            elapsed = clock() - started
            problem = f"{level.name} read of {key} raised {type(e).__name__}: {e}"
        else:
            elapsed = clock() - started
            problem = check_read(level, result, work.values[key])
            waited[level.name].append(result.waited_ms)
        samples[level.name].append(elapsed * 1000)
        if problem is not None:
            violations[level.name] = violations.get(level.name, 0) + 1
            if len(examples) < VIOLATION_EXAMPLES:
                examples.append(f"{mode}: {problem}")
    return summarize(mode, samples, waited, violations)


async def _setup(
    config: EdgeConfig, region: str, service: RegionService, keys: int
) -> _Workload:
    """Write ``keys`` keys in ``region``; return once the service has applied them."""
    values = {f"read:{i}": sample_record(i) for i in range(keys)}
    async with EdgeBus(config, client_id="edgebus-bench-read-writer") as writer:
        await asyncio.gather(*(writer.write(k, v, region=region) for k, v in values.items()))
        token = writer.session
    deadline = time.monotonic() + READY_TIMEOUT_S
    while lacking := missing(token.clock, service.passed):
        if time.monotonic() > deadline:
            raise EdgebusError(
                f"region {region} did not apply the {keys} setup writes within "
                f"{READY_TIMEOUT_S:.0f} s (still lacks {lacking}): is the broker overloaded?"
            )
        await asyncio.sleep(0.05)
    return _Workload(values, token)


async def run_read_bench(
    config: EdgeConfig,
    reads: int = 2000,
    keys: int = 200,
    warmup: int = 100,
    store_dir: Path | None = None,
) -> ReadBenchResult:
    """Set up a fresh region, then measure every level locally and over HTTP."""
    region = fresh_region("read")
    config = scratch_config(config, [region])
    partitions = config.kafka.partitions
    result = ReadBenchResult(
        region=region,
        bootstrap=resolve_clusters(config)[region],
        keys=keys,
        reads=reads,
        warmup=warmup,
        staleness_threshold_ms=STALENESS_THRESHOLD_MS,
        max_versions_behind=MAX_VERSIONS_BEHIND,
        watermark_interval_ms=config.replication.watermark_interval_ms,
        goal_ratio=GOAL_RATIO,
        setup_seconds=0.0,
    )
    examples = result.violation_examples
    with cancelled_on_sigterm(), tempfile.TemporaryDirectory(
        prefix="edgebus-bench-", dir=store_dir
    ) as tmp:
        store = f"sqlite://{Path(tmp) / 'store.db'}"
        started = time.perf_counter()
        async with RegionService(region, config, store=store, serve=False) as service:
            work = await _setup(config, region, service, keys)
            result.setup_seconds = round(time.perf_counter() - started, 2)
            async with EdgeBus(config, client_id="edgebus-bench-read-local") as reader:
                result.rows += await _measure(
                    "local", reader, region, work, reads, warmup, partitions, examples
                )
        # the same store, now served by a process of its own
        config_path = config_file(config, Path(tmp) / "config.json")
        child = region_process(region, store, config_path, Path(tmp) / "region.log")
        try:
            await child.start()
            async with EdgeBus(config, client_id="edgebus-bench-read-remote") as reader:
                result.rows += await _measure(
                    "remote", reader, region, work, reads, warmup, partitions, examples
                )
        finally:
            await child.stop()
    result.violations = sum(r.violations for r in result.rows)
    return result
