"""``edgebus bench replicate``: lag from a write in region A to readable in region B.

Two fresh regions A and B on one broker. A's region service runs as a child process,
as deployed (``edgebus region run``): its replicator pushes A's events into B's topic.
B's service runs embedded (no query endpoint); its materializer applies them, and an
``on_applied`` listener records ``time.perf_counter()`` when each key's event is
committed to B's store. An :class:`EdgeBus` writes public events in A with
``replication_factor=2`` (placement A, B) at a steady rate, each on a new key; the lag
of a write is from just before ``bus.write()`` is called to the commit in B: the SDK's
write and acknowledgement, A's replicator's fetch and copy into B's topic, B's fetch,
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
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgebus.bench.children import config_file, region_process
from edgebus.bench.figures import percentile
from edgebus.bench.materialize import fresh_region, scratch_config
from edgebus.bench.produce import sample_record
from edgebus.config import EdgeConfig, KafkaConfig
from edgebus.errors import EdgebusError
from edgebus.kafka.clients import Consumer, Producer, start_consumer, start_producer
from edgebus.kafka.clusters import resolve_clusters
from edgebus.kafka.reading import seek_to_first, topic_partitions
from edgebus.kafka.topics import ensure_topics
from edgebus.region.applier import AppliedEvent
from edgebus.region.collector import tune_for_apply
from edgebus.sdk import EdgeBus
from edgebus.server.service import RegionService

__all__ = ["ReplicateResult", "percentile", "run_replicate_bench"]

#: how long to wait for the last events of a phase to arrive before giving up
ARRIVAL_TIMEOUT_S = 120.0


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
    #: every measured write's lag (ms), for ``--plot``; not in :meth:`to_dict`
    edgebus_lags_ms: list[float] = field(default_factory=list, repr=False)
    raw_lags_ms: list[float] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready figures (the lag samples left out: the percentiles summarize them)."""
        out = asdict(self)
        del out["edgebus_lags_ms"], out["raw_lags_ms"]
        return out


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


async def _phase(
    tag: str,
    n: int,
    pace: float,
    send: Callable[[str, int], Awaitable[None]],
    seen: dict[bytes, float],
) -> list[float]:
    """``n`` writes ``send(tag, i)`` at ``pace`` per second; their lags (ms) once each
    key was ``seen``."""
    sent: dict[bytes, float] = {}
    await _paced(n, pace, lambda i: send(tag, i), sent, lambda i: f"{tag}:{i}".encode())
    keys = list(sent)
    await _arrived(keys, seen, f"{tag} events")
    return _lags(keys, sent, seen)


class _Edgebus:
    """The measured side: writes in the source region placed in both, and when each
    key's event was committed to the target's store (its materializer's listener)."""

    def __init__(self, bus: EdgeBus, source: str, target: str) -> None:
        self.bus = bus
        self.source = source
        self.target = target
        self.applied_at: dict[bytes, float] = {}

    def on_applied(self, events: list[AppliedEvent]) -> None:
        now = time.perf_counter()
        for event in events:
            self.applied_at.setdefault(event.key.encode(), now)

    async def write(self, tag: str, i: int) -> None:
        receipt = await self.bus.write(
            f"{tag}:{i}", sample_record(i), region=self.source, replication_factor=2
        )
        if receipt.placement != (self.source, self.target):
            raise EdgebusError(
                f"placed in {receipt.placement}, not {self.source, self.target}")


class _RawHop:
    """The baseline: a raw producer (the SDK's settings) sending the same record bytes
    to a scratch topic, and a raw consumer without a group (the materializer's fetch
    settings) noting when each key arrived."""

    def __init__(self, kafka: KafkaConfig, bootstrap: str, topic: str, value: bytes) -> None:
        self.kafka = kafka
        self.bootstrap = bootstrap
        self.topic = topic
        self.value = value
        self.arrived_at: dict[bytes, float] = {}
        self._producer: Producer | None = None
        self._consumer: Consumer | None = None
        self._reader: asyncio.Future[None] | None = None

    async def __aenter__(self) -> _RawHop:
        """Start the clients and the consumer's reader, then assign it to the topic from
        its first offsets."""
        self._producer = await start_producer(
            self.kafka, self.bootstrap, "events", client_id="edgebus-bench-raw"
        )
        self._consumer = await start_consumer(
            self.kafka, self.bootstrap, "region", client_id="edgebus-bench-raw"
        )
        self._reader = asyncio.ensure_future(self._consume(self._consumer))
        try:
            tps = await topic_partitions(self._consumer, [self.topic])
            self._consumer.assign(tps)
            await seek_to_first(self._consumer, tps)
        except BaseException:
            await self.__aexit__()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._reader is not None
        assert self._consumer is not None and self._producer is not None
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self._consumer.stop()
        await self._producer.stop()

    async def _consume(self, consumer: Consumer) -> None:
        while True:
            batch = await consumer.getmany(timeout_ms=200)
            now = time.perf_counter()
            for records in batch.values():
                for record in records:
                    if record.value is not None and record.key is not None:
                        self.arrived_at.setdefault(record.key, now)

    async def send(self, tag: str, i: int) -> None:
        assert self._producer is not None
        await (await self._producer.send(self.topic, self.value, key=f"{tag}:{i}".encode()))


async def _measure(
    edgebus: _Edgebus, raw: _RawHop, count: int, rate: float, rounds: int
) -> tuple[list[float], list[float]]:
    """A warm-up phase of each side, then ``rounds`` of raw and edgebus phases:
    ``(raw lags, edgebus lags)`` in ms."""
    # warm-up: group joins, connections, metadata; not measured
    await _phase("warm-edgebus", 50, 100, edgebus.write, edgebus.applied_at)
    await _phase("warm-raw", 50, 100, raw.send, raw.arrived_at)
    raw_lags: list[float] = []
    edgebus_lags: list[float] = []
    for n in range(rounds):
        raw_lags += await _phase(f"raw{n}", count, rate, raw.send, raw.arrived_at)
        edgebus_lags += await _phase(f"eb{n}", count, rate, edgebus.write, edgebus.applied_at)
    return raw_lags, edgebus_lags


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
    raw_topic = f"edgebus.bench.{uuid.uuid4().hex[:6]}.latency"
    await ensure_topics(config.kafka, bootstrap, [raw_topic])
    count = max(1, int(rate * seconds))
    with tempfile.TemporaryDirectory(prefix="edgebus-bench-", dir=store_dir) as tmp:
        store = f"sqlite://{Path(tmp) / 'target.db'}"
        # A's service, in a process of its own as deployed, pushes A's events into B's
        # topic (and materializes A's own)
        origin = region_process(
            source, f"sqlite://{Path(tmp) / 'source.db'}",
            config_file(config, Path(tmp) / "config.json"), Path(tmp) / "source.log",
        )
        await origin.start()
        try:
            return await _run(config, source, target, store, bootstrap, raw_topic, count,
                              rate, seconds, rounds)
        finally:
            await origin.stop()


async def _run(
    config: EdgeConfig, source: str, target: str, store: str, bootstrap: str,
    raw_topic: str, count: int, rate: float, seconds: float, rounds: int,
) -> ReplicateResult:
    """B's service and the writer in this process, A's service running elsewhere."""
    async with (
        RegionService(target, config, store=store, serve=False) as service,
        EdgeBus(config, client_id="edgebus-bench-writer") as bus,
    ):
        assert service.materializer is not None
        tune_for_apply()  # B's service runs here, as in its own process (both sides alike)
        edgebus = _Edgebus(bus, source, target)
        service.materializer.on_applied(edgebus.on_applied)
        value = bus.prepare_write(
            "bench:lag", sample_record(0), region=source, replication_factor=2
        ).encoded.value
        # the SDK's producer settings and the materializer's fetch settings
        async with _RawHop(config.kafka, bootstrap, raw_topic, value) as raw:
            raw_lags, edgebus_lags = await _measure(edgebus, raw, count, rate, rounds)
    return ReplicateResult(
        rate=rate, seconds=seconds, rounds=rounds, writes=count, source_region=source,
        target_region=target, bootstrap=bootstrap, **_lag_figures(edgebus_lags, raw_lags),
        edgebus_lags_ms=edgebus_lags, raw_lags_ms=raw_lags,
    )


def _lag_figures(edgebus_lags: list[float], raw_lags: list[float]) -> dict[str, float]:
    """Both sides' p50, p99 and max (ms), and the ratios of their percentiles."""
    eb50, eb99 = percentile(edgebus_lags, 50), percentile(edgebus_lags, 99)
    raw50, raw99 = percentile(raw_lags, 50), percentile(raw_lags, 99)
    return {
        "edgebus_p50_ms": round(eb50, 2),
        "edgebus_p99_ms": round(eb99, 2),
        "edgebus_max_ms": round(max(edgebus_lags), 2),
        "raw_p50_ms": round(raw50, 2),
        "raw_p99_ms": round(raw99, 2),
        "raw_max_ms": round(max(raw_lags), 2),
        "p50_ratio": round(eb50 / raw50, 3),
        "p99_ratio": round(eb99 / raw99, 3),
    }
