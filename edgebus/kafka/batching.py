"""Per-partition batching on top of aiokafka's batch API.

``Producer.send()`` costs a future, a partitioner call and an accumulator
insertion per message. Concurrent edgebus writes instead append to the open
:class:`~aiokafka.producer.message_accumulator.BatchBuilder` of their partition. A
flusher per partition closes the open batch and hands it to aiokafka (``send_batch``),
which takes it as soon as the partition's previous batch has been drained into a
request; meanwhile new writes fill the next batch. The busier the producer, the
larger its batches.

A batch is closed before it is handed over, never appended to afterwards: the
idempotent producer assigns a batch its sequence numbers when it drains it, from its
record count at that moment, so a record appended later would break the sequence
(the broker answers OutOfOrderSequenceNumber).

Ordering: a partition's records are appended in call order and its batches handed
over in creation order, so per-key order equals write order (the producer is
idempotent: retries neither reorder nor duplicate). Offsets: only this class appends
to its builders, so a record's offset is its batch's base offset plus its index.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka.errors import KafkaTimeoutError
from aiokafka.partitioner import murmur2
from aiokafka.producer.message_accumulator import BatchBuilder

from edgebus.errors import InvalidInput
from edgebus.kafka.clients import Producer

__all__ = ["BatchingProducer", "partition_for"]

_PARTITION_CACHE_MAX = 65_536


def partition_for(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner (murmur2, as the Java client): same key, same partition."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


@dataclass
class _Batch:
    builder: BatchBuilder
    #: one future per record, resolved with the record's offset
    waiters: list[asyncio.Future[int]] = field(default_factory=list)
    #: perf_counter() when the batch took its first record
    opened: float = field(default_factory=time.perf_counter)

    def fail(self, error: BaseException) -> None:
        self.builder.close()
        for waiter in self.waiters:
            if not waiter.done():
                waiter.set_exception(error)

    def succeed(self, base_offset: int) -> None:
        for index, waiter in enumerate(self.waiters):
            if not waiter.done():  # a cancelled writer leaves the others unaffected
                waiter.set_result(base_offset + index)


class BatchingProducer:
    """Appends records to per-partition batches of one started Producer."""

    def __init__(
        self,
        producer: Producer,
        partitions: int,
        on_ack: Callable[[str, int, int, float], None] | None = None,
        delivery_timeout_s: float | None = None,
    ) -> None:
        """``partitions`` is the partition count of every topic written through this
        producer (edgebus gives all regional topics one count). ``on_ack(topic,
        partition, last_offset, latency_ms)`` runs once per acknowledged batch, before
        any of its writers resumes; ``latency_ms`` runs from the batch's first record
        to its acknowledgement (the wait its first writer saw).

        ``delivery_timeout_s`` bounds a batch's wait for its acknowledgement once
        aiokafka took it: its idempotent producer retries a sent batch for ever, so
        past the bound the batch's writers get KafkaTimeoutError (the records may still
        be stored: Kafka's ``delivery.timeout.ms`` semantics)."""
        self.producer = producer
        self._delivery_timeout_s = delivery_timeout_s
        self.partitions = partitions
        self._on_ack = on_ack
        self._loop = asyncio.get_running_loop()
        # batches not yet handed to aiokafka, oldest first; only the last takes records
        self._queues: dict[tuple[str, int], deque[_Batch]] = {}
        self._flushers: dict[tuple[str, int], asyncio.Task[None]] = {}
        self._partitions: dict[bytes, int] = {}
        self._closed = False

    def partition(self, key: bytes) -> int:
        """The partition of ``key`` (cached: keys repeat)."""
        cached = self._partitions.get(key)
        if cached is None:
            if len(self._partitions) >= _PARTITION_CACHE_MAX:
                self._partitions.clear()
            cached = self._partitions[key] = partition_for(key, self.partitions)
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
            queue.append(_Batch(self.producer.create_batch()))
        batch = queue[-1]
        appended = batch.builder.append(timestamp=None, key=key, value=value, headers=headers)
        if appended is None and batch.waiters:  # full: this record opens the next batch
            batch = _Batch(self.producer.create_batch())
            queue.append(batch)
            appended = batch.builder.append(timestamp=None, key=key, value=value, headers=headers)
        if appended is None:
            raise InvalidInput(
                f"event of {len(value)} bytes (key {len(key)}) does not fit in a Kafka batch "
                "of kafka.max_batch_bytes: send smaller events or raise that limit"
            )
        waiter: asyncio.Future[int] = self._loop.create_future()
        batch.waiters.append(waiter)
        flusher = self._flushers.get(tp)
        if flusher is None or flusher.done():
            self._flushers[tp] = asyncio.ensure_future(self._flush(tp))
        return await waiter

    async def _flush(self, tp: tuple[str, int]) -> None:
        topic, partition = tp
        queue = self._queues[tp]
        while queue and queue[0].waiters:
            batch = queue.popleft()
            batch.builder.close()  # from here on its record count is final
            try:
                future = await self.producer.send_batch(batch.builder, topic, partition=partition)
            except BaseException as e:  # every writer of this batch must hear of it
                batch.fail(e)
                if isinstance(e, asyncio.CancelledError):
                    raise
                continue
            future.add_done_callback(_resolver(batch, tp, self._on_ack))
            if self._delivery_timeout_s is not None and not future.done():
                timer = self._loop.call_later(
                    self._delivery_timeout_s, _expire, batch, self._delivery_timeout_s
                )
                future.add_done_callback(lambda _, timer=timer: timer.cancel())

    async def flush(self) -> None:
        """Wait until every appended record has been acknowledged (or has failed)."""
        # every batch is in a hand-off queue until its flusher gave it to aiokafka,
        # whose flush() then waits for the acknowledgements
        while tasks := [t for t in self._flushers.values() if not t.done()]:
            await asyncio.gather(*tasks, return_exceptions=True)
        await self.producer.flush()

    async def close(self) -> None:
        """Flush, then refuse further sends (the producer itself is stopped by its owner)."""
        self._closed = True
        await self.flush()


def _expire(batch: _Batch, timeout_s: float) -> None:
    """The batch's writers stop waiting: Kafka did not acknowledge it in time."""
    batch.fail(KafkaTimeoutError(
        f"no acknowledgement within the delivery timeout ({timeout_s * 1000:.0f} ms)"
    ))


def _resolver(
    batch: _Batch,
    tp: tuple[str, int],
    on_ack: Callable[[str, int, int, float], None] | None,
) -> Callable[[asyncio.Future[Any]], None]:
    def resolve(done: asyncio.Future[Any]) -> None:
        if done.cancelled():
            batch.fail(asyncio.CancelledError())
        elif (error := done.exception()) is not None:
            batch.fail(error)
        else:
            base = int(done.result().offset)
            if on_ack is not None:
                latency_ms = (time.perf_counter() - batch.opened) * 1000
                on_ack(tp[0], tp[1], base + len(batch.waiters) - 1, latency_ms)
            batch.succeed(base)

    return resolve
