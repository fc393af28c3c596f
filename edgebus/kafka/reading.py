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
    "AlignedBatches",
    "end_offsets",
    "read_to_end",
    "records_below",
    "seek_to_first",
    "seek_to_last",
    "topic_partitions",
    "wait_for_leaders",
]


class AlignedBatches:
    """Batches of a consumer's records taken across its partitions and cut at a common
    timestamp, for a reader whose records depend on records of other partitions.

    A region's events depend on positions in its other partitions written a moment
    before them. ``getmany`` drains one partition's fetched records before the next,
    and a batch of one partition (or of equal counts from partitions that lag by
    different amounts) leaves most events waiting in the causal gate for records of
    later batches. Each batch here takes a share of every partition with fetched
    records, then keeps back, for the next batch, the records stamped after the
    *horizon*: the earliest last timestamp among the partitions that gave a full share
    (they may hold more records up to it). A partition that gave less is caught up and
    bounds nothing. A record is kept back once at most (so forged timestamps cannot
    starve a partition). Only what is buffered changes, never what is applied: the
    causal gate still orders every record.

    Records kept back were consumed from the consumer: :meth:`forget` them after a
    seek (they are read again from the new positions).
    """

    def __init__(self) -> None:
        self._held: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = {}

    def forget(self) -> None:
        """Drop the records kept back (after a seek or a new assignment)."""
        self._held = {}

    @property
    def held(self) -> int:
        """Records kept back for the next batch."""
        return sum(len(v) for v in self._held.values())

    async def fetch(
        self, consumer: Consumer, *, timeout_ms: int, max_records: int
    ) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
        """The next batch: at most about ``max_records`` records; waits up to
        ``timeout_ms`` only when nothing is kept back and nothing is fetched."""
        assigned = consumer.assignment()
        carried, self._held = {tp: v for tp, v in self._held.items() if tp in assigned}, {}
        batch = dict(carried)  # (a partition revoked since is dropped)
        share = max(1, max_records // max(1, len(assigned)))
        full: set[TopicPartition] = set()
        wait = timeout_ms if not batch else 0
        for tp in sorted(assigned, key=lambda t: (t.topic, t.partition)):
            have = batch.get(tp, [])
            if len(have) >= share:
                full.add(tp)
                continue
            more = await consumer.getmany(tp, timeout_ms=0, max_records=share - len(have))
            records = more.get(tp)
            if records:
                batch[tp] = [*have, *records] if have else records
                if len(batch[tp]) >= share:
                    full.add(tp)
        if not batch and wait:
            first: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = (
                await consumer.getmany(timeout_ms=wait, max_records=share)
            )
            return first
        return self._cut(batch, full, {tp: len(v) for tp, v in carried.items()})

    def _cut(
        self,
        batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]],
        full: set[TopicPartition],
        carried: dict[TopicPartition, int],
    ) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
        """Keep back the records stamped after the horizon (never a whole batch, never
        the ``carried[tp]`` first records of a partition, kept back last time)."""
        if len(batch) < 2 or not full:
            return batch
        horizon = min(batch[tp][-1].timestamp for tp in full if batch.get(tp))
        out: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = {}
        for tp, records in batch.items():
            if records[-1].timestamp <= horizon:
                out[tp] = records
                continue
            cut = max(carried.get(tp, 0), _first_after(records, horizon))
            if cut == len(records):
                out[tp] = records
                continue
            if cut:
                out[tp] = records[:cut]
            self._held[tp] = records[cut:]
        return out


def _first_after(records: list[ConsumerRecord[bytes, bytes]], horizon: int) -> int:
    """The index of the first record stamped after ``horizon`` (timestamps within a
    partition mostly rise; the first one past it ends the cut)."""
    for i, record in enumerate(records):
        if record.timestamp > horizon:
            return i
    return len(records)


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
