"""Reading a topic from its beginning up to its current end (demo, tooling)."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

__all__ = ["read_to_end"]


async def read_to_end(bootstrap: str, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of ``topic`` that exists now, in (partition, offset) order."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    # let the consumer's background task start: aiokafka's stop() right after start()
    # otherwise re-raises that task's cancellation
    await asyncio.sleep(0)
    try:
        await consumer._client.force_metadata_update()
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not tps:
            return []
        ends = await consumer.end_offsets(tps)
        remaining = {tp: end for tp, end in ends.items() if end > 0}
        if not remaining:
            return []
        consumer.assign(list(remaining))
        await consumer.seek_to_beginning(*remaining)
        out: list[ConsumerRecord[bytes, bytes]] = []
        while remaining:
            batch = await consumer.getmany(timeout_ms=1000)
            for tp, records in batch.items():
                end = remaining.get(tp)
                if end is None:
                    continue
                out.extend(r for r in records if r.offset < end)
                if records and records[-1].offset + 1 >= end:
                    del remaining[tp]
        out.sort(key=lambda r: (r.partition, r.offset))
        return out
    finally:
        await consumer.stop()
