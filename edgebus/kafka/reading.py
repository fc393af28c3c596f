"""Reading topics up to their current end (tail, demo, tests), with one consumer set-up."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaConnectionError, KafkaError

from edgebus.errors import InfrastructureUnavailable

__all__ = [
    "end_offsets",
    "read_to_end",
    "seek_to_first",
    "started_consumer",
    "topic_partitions",
    "wait_for_leaders",
]


@asynccontextmanager
async def started_consumer(
    bootstrap: str, timeout_s: float = 10.0
) -> AsyncIterator[AIOKafkaConsumer]:
    """A started consumer without a group (it assigns partitions itself), stopped after."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None
    )
    try:
        await asyncio.wait_for(consumer.start(), timeout_s)
    except (TimeoutError, KafkaConnectionError, KafkaError, OSError) as e:
        await asyncio.gather(consumer.stop(), return_exceptions=True)
        raise InfrastructureUnavailable(f"cannot reach Kafka: {e}", [bootstrap]) from e
    # let the consumer's background task start: aiokafka's stop() right after start()
    # otherwise re-raises that task's cancellation
    await asyncio.sleep(0)
    try:
        yield consumer
    finally:
        await consumer.stop()


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


async def seek_to_first(consumer: AIOKafkaConsumer, tps: Iterable[TopicPartition]) -> None:
    """Position each partition at its first offset, explicitly.

    ``seek_to_beginning`` only requests a reset and gives up silently after the request
    timeout, and can race with the consumer's own initial (``latest``) reset; asking
    the first offsets and seeking to them cannot.
    """
    tps = list(tps)
    if not tps:
        return
    for tp, offset in (await consumer.beginning_offsets(tps)).items():
        consumer.seek(tp, offset)


async def topic_partitions(
    consumer: AIOKafkaConsumer, topics: Iterable[str]
) -> list[TopicPartition]:
    """Every partition of those of ``topics`` that exist, once each has a leader."""
    await consumer._client.force_metadata_update()
    tps = [
        TopicPartition(topic, p)
        for topic in topics
        for p in sorted(consumer.partitions_for_topic(topic) or ())
    ]
    if tps:
        await wait_for_leaders(consumer, tps)
    return tps


async def end_offsets(bootstrap: str, topics: Iterable[str]) -> dict[TopicPartition, int]:
    """The high watermark of every partition of those of ``topics`` that exist."""
    async with started_consumer(bootstrap) as consumer:
        tps = await topic_partitions(consumer, topics)
        return dict(await consumer.end_offsets(tps)) if tps else {}


async def read_to_end(bootstrap: str, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of ``topic`` that exists now, in (partition, offset) order."""
    async with started_consumer(bootstrap) as consumer:
        tps = await topic_partitions(consumer, [topic])
        if not tps:
            return []
        ends = await consumer.end_offsets(tps)
        remaining = {tp: end for tp, end in ends.items() if end > 0}
        if not remaining:
            return []
        consumer.assign(list(remaining))
        await seek_to_first(consumer, remaining)
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
