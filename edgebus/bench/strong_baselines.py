"""The raw aiokafka baselines of ``edgebus bench strong``: a produce-to-consume round
trip with the commit log's client settings, and a Kafka transactional-producer commit
(one transactional producer per worker)."""

from __future__ import annotations

import asyncio
import time

from edgebus.bench.round_trip import RoundTrip
from edgebus.config import KafkaConfig
from edgebus.kafka.clients import (
    Consumer,
    Producer,
    start_consumer,
    start_producer,
    start_transactional_producer,
    stop_quietly,
)
from edgebus.kafka.topics import ensure_topics

__all__ = ["StrongBaselines"]


class StrongBaselines:
    """The raw aiokafka clients: a producer and a consumer for the round trip, one
    transactional producer per worker."""

    def __init__(self, kafka: KafkaConfig, bootstrap: str, tag: str) -> None:
        self.kafka = kafka
        self.bootstrap = bootstrap
        self.tag = tag
        self.rtt_topic = f"edgebus.bench.{tag}.rtt"
        self.txn_topic = f"edgebus.bench.{tag}.txn"
        self._producer: Producer | None = None
        self._consumer: Consumer | None = None
        self.txn_producers: list[Producer] = []
        self._round_trip: RoundTrip | None = None

    async def create_topics(self) -> None:
        """Create the scratch topics (early: their leaders are elected by the time the
        clients start)."""
        await ensure_topics(self.kafka, self.bootstrap, [self.rtt_topic, self.txn_topic])

    @property
    def producer(self) -> Producer:
        """The started producer of the round trip (the commit log writer's settings)."""
        assert self._producer is not None, "start() first"
        return self._producer

    @property
    def consumer(self) -> Consumer:
        """The started consumer of the round trip (the commit log readers' settings)."""
        assert self._consumer is not None, "start() first"
        return self._consumer

    async def start(self, workers: int) -> None:
        self._producer = await start_producer(
            self.kafka, self.bootstrap, "log", client_id="edgebus-bench-strong-raw"
        )
        self._consumer = await start_consumer(
            self.kafka, self.bootstrap, "log", client_id="edgebus-bench-strong-raw"
        )
        self._round_trip = RoundTrip(self.producer, self.consumer, self.rtt_topic,
                                     "bench strong raw consumer")
        await self._round_trip.start()
        self.txn_producers = list(await asyncio.gather(*(
            start_transactional_producer(
                self.kafka, self.bootstrap, f"edgebus-bench-strong-{self.tag}-{i}"
            )
            for i in range(workers)
        )))

    async def stop(self) -> None:
        if self._round_trip is not None:
            await self._round_trip.stop()
        for client in (self._consumer, self._producer, *self.txn_producers):
            if client is not None:
                await stop_quietly(client)

    async def round_trip(self, key: bytes, value: bytes) -> float:
        """Send ``value`` under ``key``; ms until the consumer received it."""
        assert self._round_trip is not None, "start() first"
        return await self._round_trip.time(key, value)

    async def transaction(self, worker: int, key: bytes, value: bytes) -> float:
        """Begin, send one record, commit; ms."""
        producer = self.txn_producers[worker]
        started = time.perf_counter()
        async with producer.transaction():
            await producer.send(self.txn_topic, value, key=key)
        return (time.perf_counter() - started) * 1000
