"""The region service: materializer + replicators + query endpoint for one region.

Run it as its own process (``edgebus region run --region R``) or embedded::

    async with RegionService("eu-west-1", config) as service:
        row = await service.read("user:1")

On start it creates the region's topics if missing, opens its store (default
``sqlite:///$EDGEBUS_STATE_DIR/regions/<R>/store.db``), resumes the materializer from
the store's positions, starts one replicator per source cluster, writes heartbeat
watermarks into every partition of its topic (``replication.watermark_interval_ms``),
serves the HTTP query interface (``edgebus.server.query``) and announces that
endpoint on the compacted topic ``edgebus.<R>.service``, where clients in other
processes find it.

Reads (:meth:`RegionService.read_at`) are served at eventual, causal and
bounded-staleness consistency from the region's frontier and heartbeat times
(:mod:`edgebus.core.freshness`); ``docs/consistency.md`` states the guarantees.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiokafka import TopicPartition

from connectors import Store, by_url
from edgebus.commit.participant import Participant
from edgebus.config import EdgeConfig, default_state_dir, load_config
from edgebus.core.freshness import (
    ReadRequest,
    key_streams,
    missing,
    staleness_ms,
    versions_behind,
)
from edgebus.core.lifecycle import Lifecycle
from edgebus.core.session import SessionToken
from edgebus.core.vector_clock import VectorClock
from edgebus.errors import InvalidInput, UnknownRegion
from edgebus.kafka import log_noise
from edgebus.kafka.batching import partition_for
from edgebus.kafka.clients import Consumer, Producer, reader, start_producer
from edgebus.kafka.clusters import resolve_clusters
from edgebus.kafka.topics import dlq_topic, ensure_topics, events_topic, service_topic
from edgebus.region.applier import state_row
from edgebus.region.catch_up import check_repair, copy_missing
from edgebus.region.materializer import Materializer
from edgebus.region.record_checks import SourceEnds
from edgebus.region.replicator import Replicator
from edgebus.region.store_check import ON_STORE_MISMATCH, OnStoreMismatch
from edgebus.server import registry
from edgebus.server.query import serve
from edgebus.server.status import service_status
from edgebus.state.host import StateHost, default_state_db
from edgebus.state.log import hosted_classes
from edgebus.wire.announcement import ANNOUNCEMENT_KEY, Announcement, encode_announcement
from edgebus.wire.headers import H_ORIGIN
from edgebus.wire.watermark import H_WATERMARK, HEARTBEAT, Watermark, encode_watermark

__all__ = ["CONSISTENCY_LEVELS", "RegionService", "default_store_url"]

#: the read consistency levels a region service serves (strong goes through the
#: commit coordinator)
CONSISTENCY_LEVELS = ("eventual", "causal", "bounded_staleness", "strong")

#: how long the materializer waits to read an origin's end offsets again
REREAD_TIMEOUT_S = 5.0

log = logging.getLogger("edgebus.region")

def default_store_url(region: str) -> str:
    """``sqlite:///<state dir>/regions/<region>/store.db``."""
    return f"sqlite://{default_state_dir() / 'regions' / region / 'store.db'}"


class _Bound:
    """What a read at ``consistency`` must prove: its staleness threshold and, with
    ``versions``, how many writes of its partition it may lack (``heads``: the origin
    topics' end offsets when the read started)."""

    def __init__(
        self, consistency: str, staleness_ms: float | None, versions: int | None,
        config: EdgeConfig,
    ) -> None:
        if consistency == "bounded_staleness":
            if staleness_ms is None:
                staleness_ms = config.reads.staleness_threshold_ms
            if staleness_ms <= 0:
                raise InvalidInput("staleness_threshold_ms must be a positive number of ms")
        if versions is not None and versions < 0:
            raise InvalidInput("max_versions_behind must be 0 or more")
        self.consistency = consistency
        self.staleness_ms = staleness_ms if staleness_ms is not None else 0.0
        self.versions = versions if consistency == "bounded_staleness" else None
        self.heads: dict[tuple[str, int], int] | None = None


class RegionService(Lifecycle):
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
        participate: bool = True,
        host_states: bool = True,
        on_store_mismatch: OnStoreMismatch = "rebuild",
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
        self.participate = participate
        self.participant: Participant | None = None
        self.host_states = host_states
        if on_store_mismatch not in ON_STORE_MISMATCH:
            raise InvalidInput(
                f"on_store_mismatch={on_store_mismatch!r}: choose one of "
                f"{', '.join(ON_STORE_MISMATCH)}"
            )
        self.on_store_mismatch: OnStoreMismatch = on_store_mismatch
        self.state_host: StateHost | None = None
        self.url: str | None = None
        self.materializer: Materializer | None = None
        self.replicators: list[Replicator] = []
        self.started_at = time.time()
        self.loop: asyncio.AbstractEventLoop | None = None
        self._producers: dict[str, Producer] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._server: Any = None
        self._failure: BaseException | None = None
        self._topic_region = {events_topic(r): r for r in self.config.regions}
        self._offset_consumers: dict[str, Consumer] = {}
        self._exit = contextlib.AsyncExitStack()  # the consumers above
        #: other regions' topic ends: what origin positions are checked against, read
        #: when the first copy of a region's event comes and whenever one lies past them
        self.source_ends = SourceEnds(reread=self._reread_ends)

    async def start(self) -> None:
        """Create topics, open the store, start consuming, serve and announce."""
        log_noise.install()  # a broker restart is an episode in the log, not a stream
        kafka = self.config.kafka
        by_cluster: dict[str, list[str]] = {}
        for r in self.config.regions:
            by_cluster.setdefault(self.clusters[r], []).append(r)
        for bootstrap, regions in by_cluster.items():
            # every events topic (this region pushes copies into the others'), and
            # its own dead letters; with ACLs the admin made them (`edgebus kafka init`)
            topics = [events_topic(r) for r in regions]
            if bootstrap == self.bootstrap:
                topics += [dlq_topic(self.region)]
            await ensure_topics(kafka, bootstrap, topics)
        await ensure_topics(kafka, self.bootstrap, [service_topic(self.region)], 1, compacted=True)
        await self.store.open()
        try:
            producer = await self._producer(self.bootstrap)
            self.materializer = Materializer(
                self.region, self.config, self.bootstrap, self.store, producer,
                self.on_store_mismatch, self.source_ends,
            )
            await self.materializer.start()
            self._spawn(self.materializer.run(), "materializer")
            self._spawn(self._heartbeats(producer), "heartbeats")
            if self.participate:
                self.participant = Participant(self, self.clusters[self.config.strong_log_region])
                await self.participant.start()
                self._spawn(self.participant.run(), "commit participant")
            if self.host_states and hosted_classes(self.config, self.region):
                self.state_host = StateHost(
                    self.config, self.region, db_path=self._state_db_path(),
                )
                await self.state_host.start()
                self._spawn(self.state_host.wait(), "state host")
            if self.replicate:  # push: one replicator per other region
                for target in self.config.regions:
                    if target == self.region:
                        continue
                    replicator = Replicator(
                        self.region, target, self.bootstrap, self.config,
                        await self._producer(self.clusters[target]), producer,
                    )
                    await replicator.start()
                    self.replicators.append(replicator)
                    self._spawn(replicator.run(), f"replicator to {target}")
            if self.serve:
                self._server, bound = await serve(self, self.listen)
                self.url = self.advertise or bound
                await self._announce()
        except BaseException:
            await self.stop()
            raise
        self.loop = asyncio.get_running_loop()
        registry.register(self)
        log.info("%s: region service up (store %s, query %s)", self.region, self.store.url,
                 self.url)

    async def stop(self) -> None:
        """Stop consuming and serving; committed state stays in the store."""
        registry.unregister(self)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.cleanup()
            self._server = None
        if self.state_host is not None:
            await self.state_host.stop()
            self.state_host = None
        if self.participant is not None:
            await self.participant.stop()
        # the exclusive members at once: a fenced member's consumer may take its bounded
        # time (10 s) to stop, and a fenced service should exit soon
        members: list[Any] = [*self.replicators, self.materializer]
        await asyncio.gather(*(m.stop() for m in members if m is not None),
                             return_exceptions=True)
        self.replicators.clear()
        for producer in self._producers.values():
            with contextlib.suppress(Exception):
                await producer.stop()
        self._producers.clear()
        self._offset_consumers.clear()
        with contextlib.suppress(Exception):
            await self._exit.aclose()
        await self.store.close()

    def _state_db_path(self) -> Path:
        """The state host's SQLite file: ``states-<region>.db`` beside the store's file
        (stores of several regions may share a directory), else the default."""
        path = getattr(self.store, "path", None)
        if isinstance(path, Path) and path.name != ":memory:":
            return path.with_name(f"states-{self.region}.db")
        return default_state_db(self.region)

    async def wait(self) -> None:
        """Run until a component fails (its error is raised) or the task is cancelled."""
        while True:
            if self._failure is not None:
                raise self._failure
            await asyncio.sleep(0.5)

    @property
    def failure(self) -> BaseException | None:
        """Why one of the service's tasks stopped (it then stops), if one did."""
        return self._failure

    @property
    def replication_paused(self) -> bool:
        """True while an operator has paused pushing this region's events somewhere."""
        return any(r.paused for r in self.replicators)

    @property
    def paused_targets(self) -> list[str]:
        """The regions this region's events are not pushed to while paused."""
        return sorted(r.target for r in self.replicators if r.paused)

    def pause_replication(self, paused: bool = True, into: str | None = None) -> None:
        """Stop (or resume) pushing this region's events and heartbeats into ``into``
        (every other region if None).

        For maintenance and fault drills: pausing replication *into* a region R is
        this call with ``into=R`` on every other region's service
        (:meth:`RegionClient.pause_replication
        <edgebus.sdk.region_client.RegionClient.pause_replication>` does that): R's
        frontiers and heartbeat times for the other origins stop moving, so causal and
        bounded reads there wait or go elsewhere.
        """
        if into is not None and into not in self.config.regions:
            raise InvalidInput(
                f"into={into!r:.60} is not a configured region "
                f"({', '.join(self.config.regions)})"
            )
        for replicator in self.replicators:
            if into is None or replicator.target == into:
                replicator.paused = paused
        log.warning("%s: replication to %s %s", self.region, into or "every region",
                    "paused" if paused else "resumed")

    async def repair_into(self, into: str, starts: Mapping[int, int]) -> dict[str, Any]:
        """Copy into region ``into`` what it may hold of this region's events, from
        ``starts`` (partition -> first offset) to the topic's end now, as the
        replicator would, even while replication there is paused (``POST /v1/repair``;
        :func:`~edgebus.region.catch_up.copy_missing`). Returns the catch-up's report;
        InvalidInput for an unknown region, partition or offset."""
        checked = check_repair(self.region, into, starts, self.config)
        report = await copy_missing(
            self.config, self.region, into, self.bootstrap, checked,
            await self._producer(self.clusters[into]), await self._producer(self.bootstrap),
        )
        log.warning("%s: repair into %s copied %d of %d records examined (%d refused)",
                    self.region, into, report.copied, report.examined, report.refused)
        return report.to_dict()

    def passed(self, stream: tuple[str, int]) -> int:
        """Highest offset of an origin stream this region has passed and committed
        (-1: none)."""
        return -1 if self.materializer is None else self.materializer.view.passed(stream)

    def fresh_ms(self) -> Mapping[tuple[str, int], int]:
        """Newest heartbeat origin time passed and committed, per origin stream."""
        return {} if self.materializer is None else self.materializer.view.fresh_ms

    def partition_of(self, key: str) -> int:
        """The partition of ``key`` (the same in every region's topic)."""
        return partition_for(key.encode("utf-8"), self.config.kafka.partitions)

    async def read_at(self, request: ReadRequest) -> dict[str, Any]:
        """Read ``request.key`` at its consistency level, waiting up to
        ``request.wait_ms`` to be fresh enough.

        Returns the read result (``state_row`` fields) plus ``consistency``,
        ``session_token`` (the session's token covering what this read saw),
        ``staleness_ms`` (measured bound on the answer's age, ``None`` if unknown),
        ``waited_ms`` and ``served``. When the region cannot serve in time, ``served`` is
        false and ``reason`` is ``session_not_covered`` (with ``missing``) or
        ``staleness_bound_exceeded`` (with ``staleness_ms`` and ``versions_behind``);
        nothing stale is returned.
        """
        key, consistency, session = request.key, request.consistency, request.session
        if consistency not in CONSISTENCY_LEVELS:
            raise InvalidInput(
                f"consistency {consistency!r} is not one a region serves: use one of "
                f"{', '.join(CONSISTENCY_LEVELS)}"
            )
        if consistency == "strong":
            return await self._read_strong(key, session, request.wait_ms)
        bound = _Bound(
            consistency, request.staleness_threshold_ms, request.max_versions_behind, self.config
        )
        streams = key_streams(self.config.regions, self.partition_of(key))
        token = session or SessionToken.empty()
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + max(0.0, request.wait_ms) / 1000
        if bound.versions is not None:
            bound.heads = await self._heads(streams)
        while True:
            stale = staleness_ms(streams, self.fresh_ms(), time.time() * 1000)
            verdict = self._verdict(bound, token, stale)
            remaining = deadline - loop.time()
            if verdict is None or remaining <= 0 or self.materializer is None:
                break
            await self.materializer.frontier_moved(min(remaining, 0.05))
        waited = round((loop.time() - started) * 1000, 3)
        if verdict is not None:
            return {
                "key": key, "region": self.region, "consistency": consistency,
                "served": False, "staleness_ms": stale, "waited_ms": waited, **verdict,
            }
        row = await self.read(key)
        seen = VectorClock({s: o for s in streams if (o := self.passed(s)) >= 0})
        out = token.merge(SessionToken(seen))
        hlc = row.get("hlc")
        if hlc:
            out = out.with_hlc((hlc["wall_ms"] << 16) | hlc["logical"])
        row.update(
            consistency=consistency, served=True, session_token=out.encode(),
            staleness_ms=stale, waited_ms=waited,
        )
        if bound.heads is not None:
            row["versions_behind"] = versions_behind(bound.heads, self.passed)
        return row

    def _verdict(
        self, bound: _Bound, token: SessionToken, stale: float | None
    ) -> dict[str, Any] | None:
        """Why the region cannot serve the read now (None: it can)."""
        if bound.consistency == "causal":
            lacking = missing(token.clock, self.passed)
            if not lacking:
                return None
            return {
                "reason": "session_not_covered",
                "missing": {f"{r}:{p}": o for (r, p), o in lacking.items()},
            }
        if bound.consistency != "bounded_staleness":
            return None
        behind = None if bound.heads is None else versions_behind(bound.heads, self.passed)
        too_old = stale is None or stale > bound.staleness_ms
        too_far = behind is not None and behind > (bound.versions or 0)
        if too_old or too_far:
            return {"reason": "staleness_bound_exceeded", "versions_behind": behind}
        return None

    async def _read_strong(
        self, key: str, session: SessionToken | None, wait_ms: float
    ) -> dict[str, Any]:
        """A linearizable read: the commit-log read barrier, then the store.

        The barrier is the commit log's end offset of the key's partition when the read
        starts: once this region's participant has processed every record before it and
        applied every commit of the key so far, the store holds every strong write of
        the key committed before the read began (see docs/consistency.md).
        """
        loop = asyncio.get_running_loop()
        started = loop.time()
        if self.participant is None:
            raise InvalidInput(
                f"{self.region}'s service runs without a commit participant: it cannot serve "
                "strong reads (start it with participate=True)"
            )
        timeout_s = max(0.0, wait_ms or self.config.strong.read_wait_ms) / 1000
        verdict = await self.participant.barrier(key, timeout_s)
        waited = round((loop.time() - started) * 1000, 3)
        if not verdict.pop("served"):
            return {"key": key, "region": self.region, "consistency": "strong",
                    "served": False, "waited_ms": waited, "staleness_ms": None, **verdict}
        row = await self.read(key)
        out = session or SessionToken.empty()
        hlc = row.get("hlc")
        if hlc:
            out = out.with_hlc((hlc["wall_ms"] << 16) | hlc["logical"])
        row.update(consistency="strong", served=True, session_token=out.encode(),
                   staleness_ms=0.0, waited_ms=waited, **verdict)
        return row

    async def _heads(self, streams: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """End offsets of the streams' origin topics, read now (for versions behind)."""
        heads: dict[tuple[str, int], int] = {}
        by_cluster: dict[str, list[TopicPartition]] = {}
        for region, partition in streams:
            by_cluster.setdefault(self.clusters[region], []).append(
                TopicPartition(events_topic(region), partition)
            )
        for bootstrap, tps in by_cluster.items():
            # a consumer of its own: the service's consumers keep a fetch long-poll in
            # flight, and a broker answers one connection's requests in order
            consumer = await self._offsets_consumer(bootstrap)
            ends = await consumer.end_offsets(tps)
            for tp in tps:
                heads[(self._topic_region[tp.topic], tp.partition)] = ends.get(tp, 0)
        return heads

    async def _offsets_consumer(self, bootstrap: str) -> Consumer:
        consumer = self._offset_consumers.get(bootstrap)
        if consumer is None:
            consumer = await self._exit.enter_async_context(
                reader(self.config.kafka, bootstrap)
            )
            self._offset_consumers[bootstrap] = consumer
        return consumer

    async def _reread_ends(self, region: str) -> dict[int, int]:
        """The end offsets of ``region``'s topic, read now from its cluster (a
        Describe: this region never reads another region's records)."""
        consumer = await self._offsets_consumer(self.clusters[region])
        partitions = range(self.config.kafka.partitions)
        tps = [TopicPartition(events_topic(region), p) for p in partitions]
        # bounded: the materializer waits for it (a slow origin is read again later)
        timeout = min(self.config.kafka.connect_timeout_s, REREAD_TIMEOUT_S)
        ends = await asyncio.wait_for(consumer.end_offsets(tps), timeout)
        return {tp.partition: offset for tp, offset in ends.items()}

    async def _heartbeats(self, producer: Producer) -> None:
        """Write a heartbeat watermark into every partition, every interval, forever."""
        topic = events_topic(self.region)
        interval = self.config.replication.watermark_interval_ms / 1000
        headers = [(H_WATERMARK, HEARTBEAT.encode("ascii")), (H_ORIGIN, self.region.encode())]
        previous: list[asyncio.Future[Any]] = []
        while True:
            # read the clock first: every write acknowledged before it precedes the mark
            now_ms = int(time.time() * 1000)
            sent = [
                await producer.send(
                    topic,
                    value=encode_watermark(Watermark(self.region, p, now_ms, HEARTBEAT)),
                    key=None,
                    partition=p,
                    headers=headers,
                )
                for p in range(self.config.kafka.partitions)
            ]
            for result in await asyncio.gather(*previous, return_exceptions=True):
                if isinstance(result, BaseException):
                    log.warning("%s: a heartbeat was not acknowledged: %r", self.region, result)
            previous = sent
            await asyncio.sleep(interval)

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
        return await service_status(self)

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.ensure_future(coro)

        def done(t: asyncio.Task[None]) -> None:
            if not t.cancelled() and t.exception() is not None:
                self._failure = t.exception()
                log.error("%s: %s stopped: %r", self.region, name, t.exception())

        task.add_done_callback(done)
        self._tasks.append(task)

    async def _producer(self, bootstrap: str) -> Producer:
        producer = self._producers.get(bootstrap)
        if producer is None:
            producer = await start_producer(
                self.config.kafka, bootstrap, "service", client_id=f"edgebus-region-{self.region}"
            )
            self._producers[bootstrap] = producer
        return producer

    async def append_event(
        self, key: bytes, value: bytes, partition: int, headers: list[tuple[str, bytes]]
    ) -> int:
        """Append a record to this region's events topic (the strong-commit
        participant's events); its offset once Kafka acknowledged it."""
        producer = await self._producer(self.bootstrap)
        meta = await producer.send_and_wait(
            events_topic(self.region), value, key=key, partition=partition, headers=headers
        )
        return int(meta.offset)

    async def wait_applied(self, partition: int, offset: int, timeout_s: float) -> None:
        """Until the materializer applied ``offset`` of ``partition`` (TimeoutError after
        ``timeout_s``)."""
        if self.materializer is None:
            raise InvalidInput(f"{self.region}'s service is not started")
        await self.materializer.wait_for_positions({partition: offset + 1}, timeout_s)

    async def _announce(self) -> None:
        producer = self._producers[self.bootstrap]
        announcement = Announcement(
            region=self.region,
            url=self.url or "",
            pid=os.getpid(),
            host=socket.gethostname(),
            store=self.store.url,
            started_ms=int(self.started_at * 1000),
        )
        await producer.send_and_wait(
            service_topic(self.region), encode_announcement(announcement), key=ANNOUNCEMENT_KEY
        )

