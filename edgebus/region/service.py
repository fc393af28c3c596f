"""The region service: materializer + replicators + query endpoint for one region.

Run it as its own process (``edgebus region run --region R``) or embedded::

    async with RegionService("eu-west-1", config) as service:
        row = await service.read("user:1")

On start it creates the region's topics if missing, opens its store (default
``sqlite:///$EDGEBUS_STATE_DIR/regions/<R>/store.db``), resumes the materializer from
the store's positions, starts one replicator per source cluster, serves the HTTP query
interface (``edgebus.region.query``) and announces that endpoint on the compacted
topic ``edgebus.<R>.service``, where clients in other processes find it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError

from connectors import Store, by_url
from edgebus.config import EdgeConfig, load_config
from edgebus.errors import InfrastructureUnavailable, UnknownRegion
from edgebus.kafka.clusters import resolve_clusters
from edgebus.kafka.launcher import default_state_dir
from edgebus.kafka.reading import end_offsets
from edgebus.kafka.topics import dlq_topic, ensure_topics, events_topic, service_topic
from edgebus.region.applier import state_row
from edgebus.region.materializer import Materializer
from edgebus.region.replicator import Replicator

__all__ = ["RegionService", "default_store_url", "embedded_service"]

log = logging.getLogger("edgebus.region")

_EMBEDDED: dict[str, RegionService] = {}


def embedded_service(region: str) -> RegionService | None:
    """The running region service for ``region`` in this process, if any."""
    return _EMBEDDED.get(region)


def default_store_url(region: str) -> str:
    """``sqlite:///<state dir>/regions/<region>/store.db``."""
    return f"sqlite://{default_state_dir() / 'regions' / region / 'store.db'}"


class RegionService:
    """One region's materializer, replicators and query endpoint."""

    def __init__(
        self,
        region: str,
        config: EdgeConfig | None = None,
        *,
        store: str | Store | None = None,
        listen: str = "127.0.0.1:0",
        advertise: str | None = None,
        replicate: bool = True,
        serve: bool = True,
    ) -> None:
        self.config = config if isinstance(config, EdgeConfig) else load_config(config)
        if region not in self.config.regions:
            raise UnknownRegion(region, self.config.regions)
        self.region = region
        self.clusters = resolve_clusters(self.config)
        self.bootstrap = self.clusters[region]
        self.store: Store = (
            store if isinstance(store, Store) else by_url(store or default_store_url(region))
        )
        self.listen = listen
        self.advertise = advertise
        self.replicate = replicate
        self.serve = serve
        self.url: str | None = None
        self.materializer: Materializer | None = None
        self.replicators: list[Replicator] = []
        self.started_at = time.time()
        self._producers: dict[str, AIOKafkaProducer] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._server: Any = None
        self._failure: BaseException | None = None

    async def __aenter__(self) -> RegionService:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Create topics, open the store, start consuming, serve and announce."""
        kafka = self.config.kafka
        by_cluster: dict[str, list[str]] = {}
        for r in self.config.regions:
            by_cluster.setdefault(self.clusters[r], []).append(r)
        for bootstrap, regions in by_cluster.items():
            topics = [events_topic(r) for r in regions]
            if bootstrap == self.bootstrap:
                topics += [dlq_topic(self.region)]
            topics += [dlq_topic(r) for r in regions if r != self.region]
            await ensure_topics(
                bootstrap, topics, kafka.partitions, kafka.topic_replication_factor,
                timeout_s=kafka.connect_timeout_s,
            )
        await ensure_topics(
            self.bootstrap, [service_topic(self.region)], 1, kafka.topic_replication_factor,
            timeout_s=kafka.connect_timeout_s, compacted=True,
        )
        await self.store.open()
        try:
            producer = await self._producer(self.bootstrap)
            self.materializer = Materializer(
                self.region, self.config, self.bootstrap, self.store, producer
            )
            await self.materializer.start()
            self._spawn(self.materializer.run(), "materializer")
            if self.replicate:
                for bootstrap, regions in by_cluster.items():
                    sources = [r for r in regions if r != self.region]
                    if not sources:
                        continue
                    replicator = Replicator(
                        self.region, sources, bootstrap, self.config, producer,
                        await self._producer(bootstrap),
                    )
                    await replicator.start()
                    self.replicators.append(replicator)
                    self._spawn(replicator.run(), f"replicator from {', '.join(sources)}")
            if self.serve:
                from edgebus.region.query import serve

                self._server, bound = await serve(self, self.listen)
                self.url = self.advertise or bound
                await self._announce()
        except BaseException:
            await self.stop()
            raise
        _EMBEDDED[self.region] = self
        log.info("%s: region service up (store %s, query %s)", self.region, self.store.url,
                 self.url)

    async def stop(self) -> None:
        """Stop consuming and serving; committed state stays in the store."""
        if _EMBEDDED.get(self.region) is self:
            del _EMBEDDED[self.region]
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.cleanup()
            self._server = None
        for replicator in self.replicators:
            await replicator.stop()
        self.replicators.clear()
        if self.materializer is not None:
            await self.materializer.stop()
        for producer in self._producers.values():
            with contextlib.suppress(Exception):
                await producer.stop()
        self._producers.clear()
        await self.store.close()

    async def wait(self) -> None:
        """Run until a component fails (its error is raised) or the task is cancelled."""
        while True:
            if self._failure is not None:
                raise self._failure
            await asyncio.sleep(0.5)

    async def read(self, key: str) -> dict[str, Any]:
        """The key's state in this region as a read result (``exists`` false if none)."""
        state = await self.store.get(key)
        if state is None:
            return {
                "key": key, "region": self.region, "exists": False, "value": None,
                "version": 0, "origin": None, "hlc": None, "event_id": None,
            }
        return state_row(state, self.region)

    async def status(self) -> dict[str, Any]:
        """Health, lag, positions and store size (what ``edgebus status`` prints)."""
        topic = events_topic(self.region)
        positions = await self.store.positions()
        applied = {p: o for (t, p), o in positions.items() if t == topic}
        try:
            ends = {
                tp.partition: o
                for tp, o in (await end_offsets(self.bootstrap, [topic])).items()
            }
            reachable = True
        except InfrastructureUnavailable:
            ends, reachable = {}, False
        lag = sum(max(0, ends.get(p, 0) - applied.get(p, 0)) for p in ends)
        stats = await self.store.stats()
        m = self.materializer
        healthy = reachable and self._failure is None and m is not None
        return {
            "region": self.region,
            "healthy": healthy,
            "broker": self.bootstrap,
            "broker_reachable": reachable,
            "failure": None if self._failure is None else repr(self._failure),
            "url": self.url,
            "pid": os.getpid(),
            "store": self.store.url,
            "store_bytes": stats.bytes,
            "keys": stats.keys,
            "tombstones": stats.tombstones,
            "retained_ops": stats.retained_ops,
            "lag": lag,
            "positions": {str(p): o for p, o in sorted(applied.items())},
            "end_offsets": {str(p): o for p, o in sorted(ends.items())},
            "frontier": {
                f"{r}:{p}": o for (r, p), o in sorted((await self.store.frontier()).items())
            },
            "materializer": m.stats.to_dict() if m else None,
            "replicators": [
                {"sources": list(r.sources), **r.stats.to_dict()} for r in self.replicators
            ],
            "uptime_s": round(time.time() - self.started_at, 1),
        }

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.ensure_future(coro)

        def done(t: asyncio.Task[None]) -> None:
            if not t.cancelled() and t.exception() is not None:
                self._failure = t.exception()
                log.error("%s: %s stopped: %r", self.region, name, t.exception())

        task.add_done_callback(done)
        self._tasks.append(task)

    async def _producer(self, bootstrap: str) -> AIOKafkaProducer:
        producer = self._producers.get(bootstrap)
        if producer is None:
            kafka = self.config.kafka
            producer = AIOKafkaProducer(
                bootstrap_servers=bootstrap,
                client_id=f"edgebus-region-{self.region}",
                enable_idempotence=True,
                acks="all",
                linger_ms=1,
                max_batch_size=kafka.max_batch_bytes,
            )
            try:
                await asyncio.wait_for(producer.start(), kafka.connect_timeout_s)
            except (TimeoutError, KafkaConnectionError, KafkaError, OSError) as e:
                await asyncio.gather(producer.stop(), return_exceptions=True)
                raise InfrastructureUnavailable(f"cannot reach Kafka: {e}", [bootstrap]) from e
            self._producers[bootstrap] = producer
        return producer

    async def _announce(self) -> None:
        producer = self._producers[self.bootstrap]
        record = {
            "region": self.region,
            "url": self.url,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "store": self.store.url,
            "started_ms": int(self.started_at * 1000),
        }
        await producer.send_and_wait(
            service_topic(self.region), orjson.dumps(record), key=b"query"
        )

