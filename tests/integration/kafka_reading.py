"""Reading topics the plain way (raw aiokafka) to check what edgebus wrote."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from edgebus.kafka.reading import wait_for_leaders


async def end_offsets(bootstrap: str, topics: Iterable[str]) -> dict[TopicPartition, int]:
    """High watermark of every partition of the topics that exist."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    # let the consumer's background task start: aiokafka's stop() right after start()
    # otherwise re-raises that task's cancellation
    await asyncio.sleep(0)
    try:
        await consumer._client.force_metadata_update()
        tps = [
            TopicPartition(t, p)
            for t in topics
            for p in sorted(consumer.partitions_for_topic(t) or ())
        ]
        if not tps:
            return {}
        await wait_for_leaders(consumer, tps)
        return dict(await consumer.end_offsets(tps))
    finally:
        await consumer.stop()


async def read_all(bootstrap: str, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of ``topic`` from the beginning to the current end."""
    ends = await end_offsets(bootstrap, [topic])
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    # let the consumer's background task start: aiokafka's stop() right after start()
    # otherwise re-raises that task's cancellation
    await asyncio.sleep(0)
    try:
        tps = [tp for tp, end in ends.items() if end > 0]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        out: list[ConsumerRecord[bytes, bytes]] = []
        remaining = {tp: ends[tp] for tp in tps}
        while remaining:
            batch = await consumer.getmany(timeout_ms=1000)
            for tp, records in batch.items():
                out.extend(records)
                if records and records[-1].offset + 1 >= remaining.get(tp, 0):
                    remaining.pop(tp, None)
        return out
    finally:
        await consumer.stop()
