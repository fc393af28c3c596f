"""``edgebus bench materialize``: events applied per second vs a raw aiokafka consume.

A fresh region's events topic is filled with N events written by edgebus, 256 at a
time (nine in ten are ``set`` writes spread over about N / 5 keys, one in ten an
``increment`` of one of 1,000 counters). Then rounds alternate raw, edgebus, raw,
edgebus...; each round reads the whole topic from the beginning to the end offsets
seen after the fill:

- raw: an aiokafka consumer without a group that touches ``record.value`` and does
  nothing else;
- edgebus: an identical consumer, fetching across the partitions as the region
  materializer does (:class:`~edgebus.kafka.reading.AlignedBatches`), feeding
  :meth:`Materializer.feed` (decode, dead-letter checks, duplicate skipping, conflict
  fold, one SQLite transaction per batch holding the new states and the positions,
  committed while the next batch is fetched and folded), exactly as the region
  service's materializer loop does, each round into a new store file.

Both sides use the materializer's consumer settings and batch size and are timed from
the started consumer until the last record has been handled (committed, for
edgebus). The edgebus side leaves out what belongs to the consumer group (joining it,
the informational offset commit per batch), so the ratio is the cost of applying.

The helpers the other region benchmarks share (scratch config with fresh regions, the
event mixture, the concurrent fill) live here too.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import TopicPartition

from connectors import by_url
from edgebus.bench.produce import sample_record
from edgebus.bench.rounds import drive
from edgebus.config import EdgeConfig, KafkaConfig
from edgebus.core.envelope import Operation
from edgebus.errors import InfrastructureUnavailable
from edgebus.kafka.clients import Consumer, Producer, start_consumer, start_producer
from edgebus.kafka.clusters import resolve_clusters
from edgebus.kafka.reading import AlignedBatches, end_offsets, seek_to_first
from edgebus.kafka.topics import events_topic
from edgebus.region.collector import tune_for_apply
from edgebus.region.materializer import MAX_BATCH_RECORDS, Materializer
from edgebus.sdk import EdgeBus

__all__ = [
    "MaterializeResult",
    "bench_event",
    "fill_region",
    "fresh_region",
    "remove_store",
    "run_materialize_bench",
    "scratch_config",
]

#: counters the mixture increments (one event in ten)
COUNTER_KEYS = 1000


def fresh_region(kind: str) -> str:
    """A region name no earlier run used: ``bench-<kind>-<6 hex>``."""
    return f"bench-{kind}-{uuid.uuid4().hex[:6]}"


def scratch_config(config: EdgeConfig, regions: Sequence[str]) -> EdgeConfig:
    """``config`` with ``regions`` as its only regions, all on the broker of the
    config's first region (compliance settings kept: the benchmarks write public
    data, which every region may hold)."""
    bootstrap = resolve_clusters(config)[config.regions[0]]
    data = config.model_dump(mode="json")
    data["discovery"]["locations"] = list(regions)
    data["kafka"]["clusters"] = {r: bootstrap for r in regions}
    data["kafka"]["bootstrap"] = None
    return EdgeConfig.from_mapping(data)


def bench_event(i: int) -> tuple[str, Any, Operation]:
    """Event ``i`` of the benchmarks' mixture: ``(key, data, operation)``.

    Nine in ten set a small record, one in ten increments one of 1,000 counters. The
    n-th set picks, scattered, one of the first ``n / 4`` item keys, so that the
    number of keys grows with the number of events (each key is set about four
    times) and any prefix of the sequence is a mixture of the same kind.
    """
    if i % 10 == 9:
        return f"counter:{(i // 10) % COUNTER_KEYS}", 1, Operation.INCREMENT
    nth_set = (i // 10) * 9 + i % 10
    return f"item:{(nth_set * 7919) % (nth_set // 4 + 1)}", sample_record(i), Operation.SET


async def fill_region(
    bus: EdgeBus, region: str, first: int, events: int, concurrency: int = 256
) -> float:
    """Write events ``first .. events-1`` of the mixture to ``region``; return writes/s."""

    async def write(_worker: int, i: int) -> None:
        key, data, op = bench_event(i)
        await bus.write(key, data, region=region, operation=op)

    elapsed = await drive(events, concurrency, write, first)
    return (events - first) / elapsed if elapsed > 0 else 0.0


async def topic_ends(
    kafka: KafkaConfig, bootstrap: str, topic: str
) -> dict[TopicPartition, int]:
    """The end offset of every partition of ``topic``."""
    ends = await end_offsets(kafka, bootstrap, [topic])
    if not ends:
        raise InfrastructureUnavailable(f"topic {topic} has no partitions", [bootstrap])
    return ends


@dataclass
class MaterializeResult:
    """Figures of one ``bench materialize`` run (rates are events per second)."""

    events: int
    rounds: int
    region: str
    bootstrap: str
    fill_writes_per_s: float
    keys: int
    edgebus_events_per_s: float
    raw_events_per_s: float
    ratio: float
    edgebus_rounds: list[float] = field(default_factory=list)
    raw_rounds: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready figures."""
        return asdict(self)


class _Reader:
    """Reads a topic from the beginning to fixed end offsets, one batch at a time."""

    def __init__(
        self, kafka: KafkaConfig, bootstrap: str, ends: dict[TopicPartition, int]
    ) -> None:
        self.kafka = kafka
        self.bootstrap = bootstrap
        self.ends = {tp: end for tp, end in ends.items() if end > 0}
        self.consumer: Consumer | None = None

    async def __aenter__(self) -> _Reader:
        # the region materializer's fetch settings, on both sides of every comparison
        self.consumer = await start_consumer(
            self.kafka, self.bootstrap, "region", client_id="edgebus-bench-reader"
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.consumer is not None:
            await self.consumer.stop()

    async def batches(self, balanced: bool = False) -> Any:
        """Yield lists of records in (partition, offset) order until the ends; with
        ``balanced``, fetched as the materializer fetches (across the partitions:
        :class:`~edgebus.kafka.reading.AlignedBatches`), else as plain ``getmany``."""
        consumer = self.consumer
        assert consumer is not None, "use the reader as an async context manager"
        remaining = dict(self.ends)
        aligned = AlignedBatches()
        consumer.assign(list(remaining))
        await seek_to_first(consumer, remaining)
        while remaining:
            if balanced:
                batch = await aligned.fetch(
                    consumer, timeout_ms=200, max_records=MAX_BATCH_RECORDS
                )
            else:
                batch = await consumer.getmany(timeout_ms=200, max_records=MAX_BATCH_RECORDS)
            records = []
            for tp in sorted(batch, key=lambda t: t.partition):
                end = remaining.get(tp)
                if end is None:
                    continue
                part = batch[tp]
                if part and part[-1].offset + 1 >= end:
                    del remaining[tp]
                    consumer.pause(tp)
                    part = [r for r in part if r.offset < end]
                records.extend(part)
            if records:
                yield records


async def _raw_round(
    kafka: KafkaConfig, bootstrap: str, ends: dict[TopicPartition, int]
) -> tuple[int, float]:
    async with _Reader(kafka, bootstrap, ends) as reader:
        count = 0
        touched = 0
        start = time.perf_counter()
        async for records in reader.batches():
            for record in records:
                touched += len(record.value or b"")
            count += len(records)
        elapsed = time.perf_counter() - start
    return count, elapsed


async def _edgebus_round(
    config: EdgeConfig,
    region: str,
    bootstrap: str,
    ends: dict[TopicPartition, int],
    store_url: str,
    producer: Producer,
) -> tuple[int, float, int]:
    store = by_url(store_url)
    async with store, _Reader(config.kafka, bootstrap, ends) as reader:
        materializer = Materializer(region, config, bootstrap, store, producer)
        start = time.perf_counter()
        async for records in reader.batches(balanced=True):
            await materializer.feed(records)
        await materializer.flush()
        elapsed = time.perf_counter() - start
        stats = materializer.stats
        if stats.dead_letters or stats.events != sum(reader.ends.values()):
            raise RuntimeError(
                f"materializer applied {stats.events} events with {stats.dead_letters} "
                f"dead letters; expected {sum(reader.ends.values())} and none"
            )
        keys = (await store.stats()).keys
    return stats.events, elapsed, keys


def remove_store(path: Path) -> None:
    """Delete a SQLite store file and its WAL companions (free the disk between rounds)."""
    for leftover in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with contextlib.suppress(OSError):
            os.remove(leftover)


async def run_materialize_bench(
    config: EdgeConfig,
    events: int = 100_000,
    rounds: int = 3,
    store_dir: Path | None = None,
) -> MaterializeResult:
    """Fill a fresh region, then alternate raw and edgebus rounds; medians and ratio."""
    region = fresh_region("mat")
    config = scratch_config(config, [region])
    bootstrap = resolve_clusters(config)[region]
    topic = events_topic(region)
    async with EdgeBus(config, client_id="edgebus-bench-fill") as bus:
        fill_rate = await fill_region(bus, region, 0, events)
    ends = await topic_ends(config.kafka, bootstrap, topic)
    total = sum(ends.values())
    # the materializer's dead-letter producer (none expected)
    producer = await start_producer(config.kafka, bootstrap, "service")
    tune_for_apply()  # as the region service's process does once started
    raw_rates: list[float] = []
    edgebus_rates: list[float] = []
    keys = 0
    try:
        with tempfile.TemporaryDirectory(prefix="edgebus-bench-", dir=store_dir) as tmp:
            for n in range(rounds):
                count, seconds = await _raw_round(config.kafka, bootstrap, ends)
                raw_rates.append(count / seconds)
                path = Path(tmp) / f"round-{n}.db"
                count, seconds, keys = await _edgebus_round(
                    config, region, bootstrap, ends, f"sqlite://{path}", producer
                )
                edgebus_rates.append(count / seconds)
                remove_store(path)
    finally:
        await producer.stop()
    edgebus = statistics.median(edgebus_rates)
    raw = statistics.median(raw_rates)
    return MaterializeResult(
        events=total,
        rounds=rounds,
        region=region,
        bootstrap=bootstrap,
        fill_writes_per_s=round(fill_rate, 1),
        keys=keys,
        edgebus_events_per_s=round(edgebus, 1),
        raw_events_per_s=round(raw, 1),
        ratio=round(edgebus / raw, 3),
        edgebus_rounds=[round(r, 1) for r in edgebus_rates],
        raw_rounds=[round(r, 1) for r in raw_rates],
    )
