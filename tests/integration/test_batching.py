"""Batching producer: every receipt names the exact Kafka position of its own event."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from edgebus import EdgeBus
from edgebus.core.envelope import EventEnvelope
from edgebus.errors import InvalidInput
from edgebus.kafka.reading import end_offsets, read_to_end
from edgebus.kafka.topics import events_topic
from edgebus.wire.event_codec import decode_event
from tests.kafka_settings import KAFKA


async def events_by_position(
    bootstrap: str, region: str
) -> dict[tuple[int, int], EventEnvelope]:
    records = await read_to_end(KAFKA, bootstrap, events_topic(region))
    return {(r.partition, r.offset): decode_event(r.value) for r in records}


async def assert_receipts_point_at_their_events(
    bootstrap: str, region: str, receipts: list[Any]
) -> dict[tuple[int, int], EventEnvelope]:
    """Each receipt names the (partition, offset) of its own event in the region's
    events topic; returns every event of the topic by position."""
    records = await events_by_position(bootstrap, region)
    for receipt in receipts:
        assert records[(receipt.partition, receipt.offset)].event_id == receipt.event_id
    return records


def small_batches(bootstrap: str, region: str) -> dict[str, Any]:
    return {
        "kafka": {"bootstrap": bootstrap, "max_batch_bytes": 16 * 1024},
        "discovery": {"locations": [region]},
    }


async def test_each_receipt_points_at_its_own_event_across_many_full_batches(
    kafka_bootstrap: str,
) -> None:
    region = f"batch-{uuid.uuid4().hex[:8]}"
    async with EdgeBus(small_batches(kafka_bootstrap, region)) as bus:
        receipts = await asyncio.gather(
            *(bus.write(f"k{i % 50}", {"i": i, "pad": "x" * 700}) for i in range(1500))
        )
    records = await assert_receipts_point_at_their_events(kafka_bootstrap, region, receipts)
    assert len(records) == 1500


async def test_a_cancelled_writer_does_not_disturb_the_others_in_its_batch(
    kafka_bootstrap: str,
) -> None:
    region = f"cancel-{uuid.uuid4().hex[:8]}"
    async with EdgeBus(small_batches(kafka_bootstrap, region)) as bus:
        tasks = [asyncio.ensure_future(bus.write(f"k{i}", {"i": i})) for i in range(200)]
        await asyncio.sleep(0)
        tasks[7].cancel()
        done = await asyncio.gather(*tasks, return_exceptions=True)
    receipts = [r for r in done if not isinstance(r, BaseException)]
    assert len(receipts) == 199
    await assert_receipts_point_at_their_events(kafka_bootstrap, region, receipts)


async def test_an_event_larger_than_a_batch_is_refused_and_nothing_is_written(
    kafka_bootstrap: str,
) -> None:
    region = f"big-{uuid.uuid4().hex[:8]}"
    async with EdgeBus(small_batches(kafka_bootstrap, region)) as bus:
        await bus.write("small", {"x": 1})
        before = await end_offsets(KAFKA, kafka_bootstrap, [events_topic(region)])
        with pytest.raises(InvalidInput, match="max_batch_bytes"):
            await bus.write("big", {"blob": "x" * 40_000})
        after_refusal = await bus.write("small-again", {"x": 2})
    assert sum((await end_offsets(KAFKA, kafka_bootstrap, [events_topic(region)])).values()) == (
        sum(before.values()) + 1
    )
    assert after_refusal.offset >= 0


async def test_steady_load_with_a_few_writes_in_flight_keeps_idempotent_sequences_valid(
    kafka_bootstrap: str,
) -> None:
    # A batch appended to after aiokafka drained it breaks the idempotent producer's
    # sequence numbers (OutOfOrderSequenceNumber). Batches must close at hand-off.
    region = f"steady-{uuid.uuid4().hex[:8]}"
    receipts = []
    async with EdgeBus(small_batches(kafka_bootstrap, region)) as bus:

        async def worker(w: int) -> None:
            for n in range(60):
                receipts.append(await bus.write(f"w{w}-{n % 7}", {"w": w, "n": n}))

        await asyncio.gather(*(worker(w) for w in range(64)))
    records = await assert_receipts_point_at_their_events(kafka_bootstrap, region, receipts)
    assert len(records) == len(receipts) == 64 * 60
