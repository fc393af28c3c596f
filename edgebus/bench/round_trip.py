"""A raw produce-to-consume round trip, the baseline of the strong and state
benchmarks: a record sent under a key, timed until a consumer assigned to the topic
(from its end, no group) has fetched it."""

from __future__ import annotations

import asyncio
import contextlib
import time

from edgebus.kafka.clients import Consumer, Producer
from edgebus.kafka.reading import seek_to_last, topic_partitions

__all__ = ["RoundTrip"]


class RoundTrip:
    """Round trips over ``topic`` with started clients (the caller owns them and
    stops them after :meth:`stop`)."""

    def __init__(self, producer: Producer, consumer: Consumer, topic: str, name: str) -> None:
        self.producer = producer
        self.consumer = consumer
        self.topic = topic
        self.name = name
        self._arrivals: dict[bytes, asyncio.Future[float]] = {}
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Assign the consumer to the topic from its end, and start reading."""
        tps = await topic_partitions(self.consumer, [self.topic])
        self.consumer.assign(tps)
        await seek_to_last(self.consumer, tps)
        self._reader = asyncio.create_task(self._read(), name=self.name)

    async def stop(self) -> None:
        """Stop reading."""
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader

    async def _read(self) -> None:
        while True:
            batch = await self.consumer.getmany(timeout_ms=500)
            now = time.perf_counter()
            for records in batch.values():
                for record in records:
                    waiting = self._arrivals.pop(record.key, None) if record.key else None
                    if waiting is not None and not waiting.done():
                        waiting.set_result(now)

    async def time(self, key: bytes, value: bytes, partition: int | None = None) -> float:
        """Send ``value`` under ``key`` (to ``partition``, or the producer's choice);
        ms until the consumer received it."""
        arrived: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._arrivals[key] = arrived
        started = time.perf_counter()
        acked = await self.producer.send(self.topic, value, key=key, partition=partition)
        received = await arrived
        await acked
        return (received - started) * 1000
