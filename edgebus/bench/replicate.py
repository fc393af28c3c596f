"""``edgebus bench replicate``: lag from a write in region A to readable in region B.

Two fresh regions A and B on one broker. Region B's service runs embedded (its
materializer and its replicator, which pulls from A's topic; no query endpoint); an
``on_applied`` listener records ``time.perf_counter()`` when each key's event is
committed to B's store. An :class:`EdgeBus` writes public events in A with
``replication_factor=2`` (placement A, B) at a steady rate, each on a new key; the lag
of a write is from just before ``bus.write()`` is called to the commit in B: the SDK's
write and acknowledgement, the replicator's fetch and copy into B's topic, B's fetch,
fold and SQLite commit.

The baseline, measured in the same run at the same rate with the same record bytes:
a raw ``Producer`` (the SDK's settings: idempotent, ``acks=all``, the
configured ``linger_ms``) sends to a scratch topic and a raw ``Consumer``
without a group (the region consumers' fetch settings) notes each record's arrival:
one produce-to-consume hop. Phases alternate raw, edgebus, raw...; the samples of
each side are pooled and their p50 and p99 compared.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgebus.bench.materialize import fresh_region, scratch_config
from edgebus.bench.produce import sample_record
from edgebus.config import EdgeConfig
from edgebus.errors import EdgebusError
from edgebus.kafka.clients import Consumer, start_consumer, start_producer
from edgebus.kafka.clusters import resolve_clusters
from edgebus.kafka.reading import seek_to_first, topic_partitions
from edgebus.kafka.topics import ensure_topics
from edgebus.region.applier import AppliedEvent
from edgebus.sdk import EdgeBus
from edgebus.server.service import RegionService

__all__ = ["ReplicateResult", "percentile", "run_replicate_bench"]

#: how long to wait for the last events of a phase to arrive before giving up
ARRIVAL_TIMEOUT_S = 120.0


def percentile(samples: list[float], p: float) -> float:
    """Nearest-rank percentile of ``samples`` (``p`` in 0..100)."""
    ordered = sorted(samples)
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class ReplicateResult:
    """Figures of one ``bench replicate`` run (latencies in milliseconds)."""

    rate: float
    seconds: float
    rounds: int
    writes: int
    source_region: str
    target_region: str
    bootstrap: str
    edgebus_p50_ms: float
    edgebus_p99_ms: float
    edgebus_max_ms: float
    raw_p50_ms: float
    raw_p99_ms: float
    raw_max_ms: float
    p50_ratio: float
    p99_ratio: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready figures."""
        return asdict(self)


async def _paced(
    count: int,
    rate: float,
    send: Callable[[int], Awaitable[Any]],
    sent: dict[bytes, float],
    key_of: Callable[[int], bytes],
) -> None:
    """Start ``send(i)`` at ``start + i / rate`` (each as its own task), noting the time."""
    tasks: list[asyncio.Future[Any]] = []
    start = time.perf_counter()
    for i in range(count):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        sent[key_of(i)] = time.perf_counter()
        tasks.append(asyncio.ensure_future(send(i)))
    await asyncio.gather(*tasks)


async def _arrived(wanted: list[bytes], seen: dict[bytes, float], what: str) -> None:
    deadline = time.monotonic() + ARRIVAL_TIMEOUT_S
    while any(k not in seen for k in wanted):
        if time.monotonic() > deadline:
            missing = sum(k not in seen for k in wanted)
            raise EdgebusError(
                f"{missing} of {len(wanted)} {what} did not arrive within "
                f"{ARRIVAL_TIMEOUT_S:.0f} s: is the broker overloaded?"
            )
        await asyncio.sleep(0.05)


def _lags(keys: list[bytes], sent: dict[bytes, float], seen: dict[bytes, float]) -> list[float]:
    return [(seen[k] - sent[k]) * 1000 for k in keys]


async def run_replicate_bench(
    config: EdgeConfig,
    rate: float = 500.0,
    seconds: float = 10.0,
    rounds: int = 1,
    store_dir: Path | None = None,
) -> ReplicateResult:
    """Alternate raw and edgebus phases at ``rate`` writes/s for ``seconds`` each."""
    source, target = fresh_region("repa"), fresh_region("repb")
    config = scratch_config(config, [source, target])
    bootstrap = resolve_clusters(config)[source]
    kafka = config.kafka
    raw_topic = f"edgebus.bench.{uuid.uuid4().hex[:6]}.latency"
    await ensure_topics(kafka, bootstrap, [raw_topic])
    count = max(1, int(rate * seconds))
    applied_at: dict[bytes, float] = {}
    arrived_at: dict[bytes, float] = {}

    def on_applied(events: list[AppliedEvent]) -> None:
        now = time.perf_counter()
        for event in events:
            applied_at.setdefault(event.key.encode(), now)

    async def consume_raw(raw_consumer: Consumer) -> None:
        while True:
            batch = await raw_consumer.getmany(timeout_ms=200)
            now = time.perf_counter()
            for records in batch.values():
                for record in records:
                    if record.value is not None and record.key is not None:
                        arrived_at.setdefault(record.key, now)

    with tempfile.TemporaryDirectory(prefix="edgebus-bench-", dir=store_dir) as tmp:
        store = f"sqlite://{Path(tmp) / 'target.db'}"
        async with (
            RegionService(target, config, store=store, serve=False) as service,
            EdgeBus(config, client_id="edgebus-bench-writer") as bus,
        ):
            assert service.materializer is not None
            service.materializer.on_applied(on_applied)
            # the SDK's producer settings and the materializer's fetch settings
            raw_producer = await start_producer(
                kafka, bootstrap, "events", client_id="edgebus-bench-raw"
            )
            raw_consumer = await start_consumer(
                kafka, bootstrap, "region", client_id="edgebus-bench-raw"
            )
            reader = asyncio.ensure_future(consume_raw(raw_consumer))
            try:
                tps = await topic_partitions(raw_consumer, [raw_topic])
                raw_consumer.assign(tps)
                await seek_to_first(raw_consumer, tps)
                value = bus.prepare_write(
                    "bench:lag", sample_record(0), region=source, replication_factor=2
                ).encoded.value

                async def edgebus_write(tag: str, i: int) -> None:
                    receipt = await bus.write(
                        f"{tag}:{i}", sample_record(i), region=source, replication_factor=2
                    )
                    if receipt.placement != (source, target):
                        raise EdgebusError(f"placed in {receipt.placement}, not {source, target}")

                async def raw_send(tag: str, i: int) -> None:
                    await (await raw_producer.send(raw_topic, value, key=f"{tag}:{i}".encode()))

                async def phase(
                    tag: str,
                    n: int,
                    pace: float,
                    send: Callable[[str, int], Awaitable[None]],
                    seen: dict[bytes, float],
                ) -> list[float]:
                    sent: dict[bytes, float] = {}
                    await _paced(
                        n, pace, lambda i: send(tag, i), sent, lambda i: f"{tag}:{i}".encode()
                    )
                    keys = list(sent)
                    await _arrived(keys, seen, f"{tag} events")
                    return _lags(keys, sent, seen)

                # warm-up: group joins, connections, metadata; not measured
                await phase("warm-edgebus", 50, 100, edgebus_write, applied_at)
                await phase("warm-raw", 50, 100, raw_send, arrived_at)
                raw_lags: list[float] = []
                edgebus_lags: list[float] = []
                for n in range(rounds):
                    raw_lags += await phase(f"raw{n}", count, rate, raw_send, arrived_at)
                    edgebus_lags += await phase(f"eb{n}", count, rate, edgebus_write, applied_at)
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
                await raw_consumer.stop()
                await raw_producer.stop()
    eb50, eb99 = percentile(edgebus_lags, 50), percentile(edgebus_lags, 99)
    raw50, raw99 = percentile(raw_lags, 50), percentile(raw_lags, 99)
    return ReplicateResult(
        rate=rate,
        seconds=seconds,
        rounds=rounds,
        writes=count,
        source_region=source,
        target_region=target,
        bootstrap=bootstrap,
        edgebus_p50_ms=round(eb50, 2),
        edgebus_p99_ms=round(eb99, 2),
        edgebus_max_ms=round(max(edgebus_lags), 2),
        raw_p50_ms=round(raw50, 2),
        raw_p99_ms=round(raw99, 2),
        raw_max_ms=round(max(raw_lags), 2),
        p50_ratio=round(eb50 / raw50, 3),
        p99_ratio=round(eb99 / raw99, 3),
    )
