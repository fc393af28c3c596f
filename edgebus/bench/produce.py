"""``edgebus bench produce``: SDK writes per second vs raw aiokafka sends.

Both sides send the same record bytes (edgebus-encoded value, key and headers) to the
same broker with the same producer settings (idempotent, ``acks=all``, same linger),
with the same number of writes in flight, each awaiting its acknowledgement. The SDK
side pays for everything a write does (validation, classification, placement, HLC,
envelope, Avro encoding, headers); the raw side only sends prepared bytes. Rounds
alternate SDK, raw, SDK, raw... and the medians are compared, so drift in the
machine's speed hits both sides alike.
"""

from __future__ import annotations

import gc
import statistics
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from edgebus.bench.rounds import drive
from edgebus.config import EdgeConfig
from edgebus.kafka.clients import start_producer
from edgebus.kafka.topics import ensure_topics
from edgebus.sdk import EdgeBus

__all__ = ["ProduceResult", "run_produce_bench", "sample_record"]

RAW_TOPIC = "edgebus.bench.raw"


def sample_record(i: int) -> dict[str, Any]:
    """A typical small analytics event (public data, about 130 bytes of JSON)."""
    return {
        "event": "page_view",
        "page": f"/products/{i % 500}",
        "referrer": "search",
        "duration_ms": 1200 + i % 300,
        "session_id": f"s-{i % 9973:05d}",
    }


@dataclass
class ProduceResult:
    """Figures of one benchmark run (rates are events per second)."""

    events: int
    concurrency: int
    rounds: int
    region: str
    bootstrap: str
    value_bytes: int
    sdk_writes_per_s: float
    raw_sends_per_s: float
    ratio: float
    sdk_rounds: list[float] = field(default_factory=list)
    raw_rounds: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready figures."""
        return asdict(self)


async def _drive(total: int, concurrency: int, one: Callable[[int, int], Awaitable[Any]]) -> float:
    """Run ``one(worker, i)`` for i < total with ``concurrency`` in flight; return events/s."""
    return total / await drive(total, concurrency, one)


async def run_produce_bench(
    config: EdgeConfig,
    events: int = 20_000,
    concurrency: int = 256,
    rounds: int = 5,
    region: str | None = None,
) -> ProduceResult:
    """Run alternating rounds; return the medians and their ratio (SDK / raw)."""
    region = region or config.regions[0]
    async with EdgeBus(config, client_id="edgebus-bench") as bus:
        bootstrap = bus.clusters[region]
        await ensure_topics(config.kafka, bootstrap, [RAW_TOPIC])
        records = [(f"bench:{i % 1000}", sample_record(i)) for i in range(events)]
        prepared = [bus.prepare_write(k, data, region=region).encoded for k, data in records]
        # the SDK's own producer settings (clients.PRODUCER_ROLES["events"])
        raw = await start_producer(config.kafka, bootstrap, "events", client_id="edgebus-bench-raw")
        try:

            async def sdk_one(_worker: int, i: int) -> None:
                key, data = records[i]
                await bus.write(key, data, region=region)

            async def raw_one(_worker: int, i: int) -> None:
                rec = prepared[i]
                await (await raw.send(RAW_TOPIC, rec.value, key=rec.key, headers=rec.headers))

            # The prepared records are the benchmark's own data, hundreds of thousands
            # of objects: frozen, the collector never scans them, so neither side pays
            # for them (unfrozen, a full collection landing in a round costs it up
            # to a tenth of a second).
            gc.collect()
            gc.freeze()
            # warm-up: connections, metadata, JIT-free but cache-warm paths
            await _drive(min(2000, events), concurrency, sdk_one)
            await _drive(min(2000, events), concurrency, raw_one)
            sdk_rates: list[float] = []
            raw_rates: list[float] = []
            for _ in range(rounds):
                sdk_rates.append(await _drive(events, concurrency, sdk_one))
                raw_rates.append(await _drive(events, concurrency, raw_one))
        finally:
            gc.unfreeze()
            await raw.stop()
    sdk = statistics.median(sdk_rates)
    base = statistics.median(raw_rates)
    return ProduceResult(
        events=events,
        concurrency=concurrency,
        rounds=rounds,
        region=region,
        bootstrap=bootstrap,
        value_bytes=len(prepared[0].value),
        sdk_writes_per_s=round(sdk, 1),
        raw_sends_per_s=round(base, 1),
        ratio=round(sdk / base, 3),
        sdk_rounds=[round(r, 1) for r in sdk_rates],
        raw_rounds=[round(r, 1) for r in raw_rates],
    )
