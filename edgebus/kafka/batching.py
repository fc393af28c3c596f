"""Per-partition batching on top of aiokafka's batch API.

``AIOKafkaProducer.send()`` costs a future, a partitioner call and an accumulator
insertion per message. Concurrent edgebus writes instead append to an open
:class:`aiokafka.producer.message_accumulator.BatchBuilder` of their partition and share
one future per batch. A flusher per partition hands the open batch to
``send_batch()`` as soon as the accumulator has room for it (aiokafka keeps one queued
batch per partition), so records pile into the next batch while the previous one is
on the wire: the busier the producer, the larger its batches.

Ordering: records of a partition are appended in call order and batches are sent in
order, so per-key order equals write order (the producer is idempotent, so retries
neither reorder nor duplicate). Offsets: a record's offset is its batch's base offset
plus its index in the batch.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2
from aiokafka.producer.message_accumulator import BatchBuilder

__all__ = ["BatchingProducer", "partition_for"]

_PARTITION_CACHE_MAX = 65_536


def partition_for(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner (murmur2, as the Java client): same key, same partition."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


@dataclass
class _OpenBatch:
    builder: BatchBuilder
    #: one future per record, resolved with the record's offset
    waiters: list[asyncio.Future[int]] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.waiters)

    def fail(self, error: BaseException) -> None:
        for waiter in self.waiters:
            if not waiter.done():
                waiter.set_exception(error)

    def succeed(self, base_offset: int) -> None:
        for index, waiter in enumerate(self.waiters):
            if not waiter.done():  # a cancelled writer leaves the others unaffected
                waiter.set_result(base_offset + index)


class BatchingProducer:
    """Appends records to per-partition batches of one started AIOKafkaProducer."""

    def __init__(
        self,
        producer: AIOKafkaProducer,
        on_ack: Callable[[str, int, int], None] | None = None,
    ) -> None:
        """``on_ack(topic, partition, last_offset)`` runs once per acknowledged batch,
        before any of its writers resumes."""
        self.producer = producer
        self._on_ack = on_ack
        # per partition, batches waiting to be handed to aiokafka, oldest first; only
        # the last one takes new records
        self._queues: dict[tuple[str, int], deque[_OpenBatch]] = {}
        self._flushers: dict[tuple[str, int], asyncio.Task[None]] = {}
        self._partitions: dict[bytes, int] = {}
        self._closed = False
        self._loop = asyncio.get_running_loop()

    def partition(self, key: bytes, partitions: int) -> int:
        """The partition of ``key`` among ``partitions`` (cached: keys repeat)."""
        cached = self._partitions.get(key)
        if cached is None:
            if len(self._partitions) >= _PARTITION_CACHE_MAX:
                self._partitions.clear()
            cached = self._partitions[key] = partition_for(key, partitions)
        return cached

    async def send(
        self,
        topic: str,
        partition: int,
        key: bytes,
        value: bytes,
        headers: Sequence[tuple[str, bytes]],
    ) -> int:
        """Append one record and return its offset once Kafka acknowledged it."""
        if self._closed:
            raise RuntimeError("BatchingProducer is closed")
        tp = (topic, partition)
        queue = self._queues.get(tp)
        if queue is None:
            queue = self._queues[tp] = deque()
        if not queue:
            queue.append(_OpenBatch(self.producer.create_batch()))
        batch = queue[-1]
        metadata = batch.builder.append(timestamp=None, key=key, value=value, headers=headers)
        if metadata is None and batch.count:  # full: this record opens the next batch
            batch = _OpenBatch(self.producer.create_batch())
            queue.append(batch)
            metadata = batch.builder.append(timestamp=None, key=key, value=value, headers=headers)
        if metadata is None:
            # larger than a whole batch: aiokafka's per-message path sizes a batch for it
            # (and raises MessageSizeTooLargeError past max_request_size)
            ack = await (
                await self.producer.send(
                    topic, value, key=key, partition=partition, headers=list(headers)
                )
            )
            return int(ack.offset)
        waiter: asyncio.Future[int] = self._loop.create_future()
        batch.waiters.append(waiter)
        flusher = self._flushers.get(tp)
        if flusher is None or flusher.done():
            self._flushers[tp] = asyncio.ensure_future(self._flush(tp))
        return await waiter

    async def _flush(self, tp: tuple[str, int]) -> None:
        topic, partition = tp
        queue = self._queues[tp]
        while queue and queue[0].count:
            batch = queue.popleft()
            try:
                batch.builder.close()  # nothing else (e.g. producer.send) may append now
                future = await self.producer.send_batch(batch.builder, topic, partition=partition)
            except BaseException as e:  # every writer of this batch must hear of it
                batch.fail(e)
                if isinstance(e, asyncio.CancelledError):
                    raise
                continue
            future.add_done_callback(_resolver(batch, tp, self._on_ack))

    async def flush(self) -> None:
        """Wait until every appended record has been acknowledged (or has failed)."""
        # A writer always leaves a flusher behind its record, and a flusher runs until
        # its partition has no open records, so once no flusher runs every record has
        # been handed to aiokafka, whose flush() waits for the acknowledgements.
        while tasks := [t for t in self._flushers.values() if not t.done()]:
            await asyncio.gather(*tasks, return_exceptions=True)
        await self.producer.flush()

    async def close(self) -> None:
        """Flush, then refuse further sends (the producer itself is stopped by its owner)."""
        await self.flush()
        self._closed = True


def _resolver(
    batch: _OpenBatch,
    tp: tuple[str, int],
    on_ack: Callable[[str, int, int], None] | None,
) -> Callable[[asyncio.Future[Any]], None]:
    def resolve(done: asyncio.Future[Any]) -> None:
        if done.cancelled():
            batch.fail(asyncio.CancelledError())
        elif (error := done.exception()) is not None:
            batch.fail(error)
        else:
            base = int(done.result().offset)
            if on_ack is not None:
                on_ack(tp[0], tp[1], base + batch.count - 1)
            batch.succeed(base)

    return resolve
