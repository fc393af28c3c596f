"""The raw aiokafka baselines of ``edgebus bench state``: ``send_and_wait`` with the
state log writer's settings, and a produce-to-consume round trip whose consumer is
made as the state log's are."""

from __future__ import annotations

import contextlib
import time

from edgebus.bench.round_trip import RoundTrip
from edgebus.config import EdgeConfig
from edgebus.kafka import clients
from edgebus.kafka.clients import Consumer, Producer
from edgebus.kafka.topics import ensure_topics
from edgebus.state.log import start_consumer

__all__ = ["StateBaselines"]


class StateBaselines:
    """The raw aiokafka baselines: one producer (the state log writer's settings), and
    a consumer made as the state log's are for the round trip."""

    def __init__(self, config: EdgeConfig, bootstrap: str, tag: str, value: bytes) -> None:
        self.config = config
        self.bootstrap = bootstrap
        self.value = value
        self.send_topic = f"edgebus.bench.{tag}.state-send"
        self.rtt_topic = f"edgebus.bench.{tag}.state-rtt"
        self.producer: Producer | None = None
        self.consumer: Consumer | None = None
        self._round_trip: RoundTrip | None = None
        self._seq = 0

    async def create_topics(self) -> None:
        """Create the scratch topics (early: their leaders are elected by the time the
        clients start)."""
        kafka = self.config.kafka
        await ensure_topics(kafka, self.bootstrap, [self.send_topic, self.rtt_topic])

    async def start(self) -> None:
        self.producer = await clients.start_producer(
            self.config.kafka, self.bootstrap, "log", client_id="edgebus-bench-state-raw"
        )
        self.consumer = consumer = await start_consumer(self.config, self.bootstrap,
                                                        "edgebus-bench-state-raw")
        self._round_trip = RoundTrip(self.producer, consumer, self.rtt_topic,
                                     "bench state raw consumer")
        await self._round_trip.start()

    async def stop(self) -> None:
        if self._round_trip is not None:
            await self._round_trip.stop()
        for client in (self.consumer, self.producer):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.stop()

    async def send(self) -> float:
        """``send_and_wait`` of one record; ms."""
        assert self.producer is not None, "start() first"
        started = time.perf_counter()
        await self.producer.send_and_wait(self.send_topic, self.value, partition=0)
        return (time.perf_counter() - started) * 1000

    async def round_trip(self) -> float:
        """Send one record; ms until the consumer received it."""
        self._seq += 1
        assert self._round_trip is not None, "start() first"
        return await self._round_trip.time(str(self._seq).encode(), self.value, partition=0)
