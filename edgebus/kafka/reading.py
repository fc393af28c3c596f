"""Reading a topic from its beginning up to its current end (demo, tooling)."""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

__all__ = ["read_to_end", "wait_for_leaders"]


async def wait_for_leaders(
    consumer: AIOKafkaConsumer, tps: list[TopicPartition], timeout_s: float = 10.0
) -> None:
    """Wait (bounded) until the consumer's metadata names a leader for every partition.

    End offsets asked of a partition without a known leader (a topic created a moment
    ago) can come back short, so readers that stop at "the end" call this first.
    """
    deadline = time.monotonic() + timeout_s
    cluster = consumer._client.cluster
    while time.monotonic() < deadline:
        if all((cluster.leader_for_partition(tp) or -1) >= 0 for tp in tps):
            return
        await asyncio.sleep(0.1)
        await consumer._client.force_metadata_update()


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
        await wait_for_leaders(consumer, tps)
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
