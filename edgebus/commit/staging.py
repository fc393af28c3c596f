"""The writer's side of staged strong writes: the payload goes to every participant
region's own topic before the BEGIN goes to the commit log.

:class:`StagedWriter` appends one :class:`~edgebus.core.staged_write.StagedWrite`
record to ``edgebus.R.staged`` on R's cluster for every participant region R (keyed by
the transaction id, on that id's partition, timestamped with the BEGIN's ``time_ms``),
all at once, and returns when Kafka acknowledged every one (idempotent producer,
``acks=all``, no linger: one producer per cluster, started at its first use, after
the staged topics of the cluster's regions are created if missing, as the SDK does for
events topics). Only then does the client append the BEGIN: a participant that reads
the BEGIN finds the payload below its staged partition's end offset. A write whose
staging fails appends no BEGIN: nothing was begun, and what was staged is forgotten by
the participants at its deadline and by Kafka at the topic's retention.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence

from aiokafka.errors import KafkaError

from edgebus.config import EdgeConfig
from edgebus.core.staged_write import StagedWrite
from edgebus.errors import InfrastructureUnavailable
from edgebus.kafka import clients
from edgebus.kafka.batching import partition_for
from edgebus.kafka.clients import Producer
from edgebus.kafka.clusters import resolve_clusters
from edgebus.kafka.topics import ensure_topics, staged_topic
from edgebus.wire.staged_write import encode_staged_write

__all__ = ["StagedWriter"]


class StagedWriter:
    """Stages strong-write payloads in the participants' own regions."""

    def __init__(
        self, config: EdgeConfig, client_id: str, clusters: Mapping[str, str] | None = None
    ) -> None:
        self.config = config
        self.client_id = client_id
        self.clusters = dict(clusters) if clusters is not None else resolve_clusters(config)
        self._producers: dict[str, asyncio.Task[Producer]] = {}

    async def stage(self, staged: StagedWrite, regions: Sequence[str]) -> None:
        """Append ``staged`` to the staged topic of each of ``regions`` and wait until
        Kafka acknowledged them all; InfrastructureUnavailable naming the cluster that
        did not (nothing is begun then)."""
        value = encode_staged_write(staged)
        key = staged.txn_id.encode("utf-8")
        partition = partition_for(key, self.config.kafka.partitions)
        await asyncio.gather(
            *(
                self._send(region, key, value, partition, staged.time_ms)
                for region in dict.fromkeys(regions)
            )
        )

    async def _send(
        self, region: str, key: bytes, value: bytes, partition: int, time_ms: int
    ) -> None:
        bootstrap = self.clusters[region]
        producer = await self._producer(bootstrap)
        try:
            future = await producer.send(
                staged_topic(region), value, key=key, partition=partition, timestamp_ms=time_ms
            )
            await future
        except KafkaError as e:
            raise InfrastructureUnavailable(
                f"{region}'s Kafka did not acknowledge the staged payload of a strong write "
                f"({type(e).__name__}: {e}); nothing was begun: retry the write",
                [bootstrap],
            ) from e

    async def _producer(self, bootstrap: str) -> Producer:
        task = self._producers.get(bootstrap)
        if task is None or (task.done() and task.exception() is not None):
            task = self._producers[bootstrap] = asyncio.ensure_future(self._start(bootstrap))
        return await asyncio.shield(task)

    async def _start(self, bootstrap: str) -> Producer:
        kafka = self.config.kafka
        regions = [r for r, b in self.clusters.items() if b == bootstrap]
        await ensure_topics(kafka, bootstrap, [staged_topic(r) for r in regions])
        return await clients.start_producer(
            kafka,
            bootstrap,
            "log",
            client_id=f"{self.client_id}-staged",
            what=f"the Kafka of {', '.join(regions)}",
        )

    async def stop(self) -> None:
        """Flush and disconnect."""
        tasks, self._producers = list(self._producers.values()), {}
        for task in tasks:
            if not task.done():
                task.cancel()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                producer = await task
                await clients.stop_quietly(producer)
