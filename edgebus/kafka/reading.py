"""Reading topics up to their current end (tail, demo, replay, tests)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable, Mapping

from aiokafka import ConsumerRecord, TopicPartition

from edgebus.config import KafkaConfig
from edgebus.errors import InfrastructureUnavailable
from edgebus.kafka.clients import Consumer, reader

__all__ = [
    "end_offsets",
    "read_to_end",
    "records_below",
    "seek_to_first",
    "seek_to_last",
    "topic_partitions",
    "wait_for_leaders",
]


async def wait_for_leaders(
    consumer: Consumer, tps: list[TopicPartition], timeout_s: float = 10.0
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


async def seek_to_first(consumer: Consumer, tps: Iterable[TopicPartition]) -> None:
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


async def seek_to_last(consumer: Consumer, tps: Iterable[TopicPartition]) -> None:
    """Position each partition at its end (the next offset to be written), explicitly,
    for the same reason as :func:`seek_to_first`: records appended from now on are read,
    none before."""
    tps = list(tps)
    if not tps:
        return
    for tp, offset in (await consumer.end_offsets(tps)).items():
        consumer.seek(tp, offset)


async def topic_partitions(
    consumer: Consumer, topics: Iterable[str]
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


async def end_offsets(
    kafka: KafkaConfig, bootstrap: str, topics: Iterable[str]
) -> dict[TopicPartition, int]:
    """The high watermark of every partition of those of ``topics`` that exist."""
    async with reader(kafka, bootstrap) as consumer:
        tps = await topic_partitions(consumer, topics)
        return dict(await consumer.end_offsets(tps)) if tps else {}


async def records_below(
    consumer: Consumer,
    ends: Mapping[TopicPartition, int],
    starts: Mapping[TopicPartition, int] | None = None,
    *,
    max_records: int = 5000,
    stall_s: float | None = None,
    bootstrap: str = "",
) -> AsyncIterator[ConsumerRecord[bytes, bytes]]:
    """Every record of each partition of ``ends`` from its start (``starts[tp]``, else
    its first offset) up to, not including, ``ends[tp]``: in offset order within a
    partition. The consumer is assigned exactly those partitions.

    With ``stall_s``, InfrastructureUnavailable (naming ``bootstrap``) if no partition
    yields a record for that long while some are not read to their end.
    """
    if starts is None:
        starts = await consumer.beginning_offsets(list(ends)) if ends else {}
    remaining = {tp: end for tp, end in ends.items() if starts.get(tp, 0) < end}
    if not remaining:
        return
    consumer.assign(list(remaining))
    for tp in remaining:
        consumer.seek(tp, starts.get(tp, 0))
    progress = time.monotonic()
    while remaining:
        batch = await consumer.getmany(timeout_ms=500, max_records=max_records)
        for tp, records in batch.items():
            end = remaining.get(tp)
            if end is None:
                continue
            for record in records:
                if record.offset >= end:
                    break
                yield record
            if records:
                progress = time.monotonic()
                if records[-1].offset + 1 >= end:
                    del remaining[tp]
        if remaining and stall_s is not None and time.monotonic() - progress > stall_s:
            raise InfrastructureUnavailable(
                f"reading stalled for {stall_s:.0f} s ({len(remaining)} partitions not "
                "read to their end)",
                [bootstrap] if bootstrap else [],
            )


async def read_to_end(
    kafka: KafkaConfig, bootstrap: str, topic: str
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of ``topic`` that exists now, in (partition, offset) order."""
    async with reader(kafka, bootstrap) as consumer:
        tps = await topic_partitions(consumer, [topic])
        if not tps:
            return []
        out = [r async for r in records_below(consumer, await consumer.end_offsets(tps))]
        out.sort(key=lambda r: (r.partition, r.offset))
        return out
