"""The producer SDK: ``async with EdgeBus(config) as bus: await bus.write(key, data)``.

A write is classified (explicit class, field names, values), placed (compliance zones,
preferred and excluded locations, replication factor, edge strategy), stamped (event
id, hybrid logical clock, the session's causal dependencies), encoded (Avro
single-object value plus routing headers) and appended to ``edgebus.<home>.events``
with an idempotent producer and ``acks=all``. Nothing touches Kafka before the write is
known to be valid and compliant: a refused write changes nothing.

Many concurrent writes share one producer per Kafka cluster and are batched by it.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from edgebus.config import EdgeConfig, load_config
from edgebus.core.classification import Classification, classify
from edgebus.core.commit_log import BeginRecord
from edgebus.core.commit_vote import VersionConflict
from edgebus.core.conflict import operation_for
from edgebus.core.envelope import (
    CURRENT_SCHEMA_VERSION,
    MAX_KEY_BYTES,
    EventEnvelope,
    Operation,
    new_event_id,
)
from edgebus.core.hlc import HLCTimestamp, HybridLogicalClock
from edgebus.core.placement import FALLBACKS, Placement, PlacementRequest, place
from edgebus.core.session import SessionToken
from edgebus.core.vector_clock import Position, VectorClock
from edgebus.errors import (
    EdgebusError,
    InfrastructureUnavailable,
    InvalidInput,
    RegionUnavailable,
    SessionNotCovered,
    StalenessBoundExceeded,
    StrongReadUnavailable,
    UnknownRegion,
    UnsupportedConsistency,
    WriteFailed,
)
from edgebus.kafka.batching import BatchingProducer
from edgebus.kafka.clients import start_producer
from edgebus.kafka.clusters import resolve_clusters
from edgebus.kafka.reading import end_offsets
from edgebus.kafka.topics import ensure_topics, events_topic
from edgebus.sdk.discovery import Discovery
from edgebus.sdk.metrics import BusMetrics, recorded
from edgebus.wire.event_codec import (
    EncodedEvent,
    RouteEncoding,
    encode_fields,
    encode_payload,
    fast_path_available,
    route_encoding,
)

__all__ = ["EdgeBus", "EdgeBusSync", "PreparedWrite", "ReadResult", "WriteReceipt"]

log = logging.getLogger("edgebus.edge")
T = TypeVar("T")


class WriteReceipt(NamedTuple):
    """What Kafka acknowledged for one write (immutable).

    ``session_token`` covers this write and everything the writer's session had seen:
    pass it to a later read or write (any process) for read-your-writes.
    """

    event_id: str
    key: str
    region: str
    topic: str
    partition: int
    offset: int
    placement: tuple[str, ...]
    classification: tuple[str, ...]
    hlc: HLCTimestamp
    dependencies: SessionToken
    rerouted: bool
    #: compliant regions left out of the placement because they were unhealthy
    degraded: tuple[str, ...] = ()

    @property
    def replicas(self) -> dict[str, str]:
        """Region -> ``written`` (the home: Kafka acknowledged it), ``pending`` (placed
        there, replication under way) or ``failed`` (left out: unhealthy). Ask
        :meth:`EdgeBus.replication_status` for where it has been applied since."""
        out = {r: "pending" for r in self.placement}
        out[self.region] = "written"
        out.update((r, "failed") for r in self.degraded)
        return out

    @property
    def session(self) -> SessionToken:
        """The writer's session after this write: its dependencies plus this event."""
        hlc = (self.hlc.wall_ms << 16) | self.hlc.logical
        return self.dependencies.after_write(self.position, hlc)

    @property
    def session_token(self) -> str:
        """The session token as a string, to pass to another process or service."""
        return self.session.encode()

    @property
    def position(self) -> Position:
        """Where the event sits in its origin topic."""
        return Position(self.region, self.partition, self.offset)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready form."""
        return {
            "event_id": self.event_id,
            "key": self.key,
            "region": self.region,
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "placement": list(self.placement),
            "classification": list(self.classification),
            "hlc": {"wall_ms": self.hlc.wall_ms, "logical": self.hlc.logical},
            "session_token": self.session_token,
            "rerouted": self.rerouted,
            "replicas": self.replicas,
        }


class CommitResult(NamedTuple):
    """The outcome of a strong write (two-phase commit across its placement).

    ``committed``: applied in every placement region (each applies it, then
    acknowledges; a strong read anywhere sees it from now on). Otherwise nothing was
    applied anywhere: ``reason`` says why, and ``conflict`` is set when
    ``expected_version`` did not match (a lost race: read again and retry).
    ``version``: the key's version after the commit.
    """

    txn_id: str
    key: str
    committed: bool
    reason: str | None
    conflict: VersionConflict | None
    version: int | None
    placement: tuple[str, ...]
    classification: tuple[str, ...]
    hlc: HLCTimestamp
    session_token: str
    decided_by: str

    @property
    def outcome(self) -> str:
        """``committed``, ``conflict`` or ``aborted``."""
        if self.committed:
            return "committed"
        return "conflict" if self.conflict is not None else "aborted"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        out = self._asdict()
        out["outcome"] = self.outcome
        out["placement"] = list(self.placement)
        out["classification"] = list(self.classification)
        out["hlc"] = self.hlc._asdict()
        out["conflict"] = None if self.conflict is None else {
            "region": self.conflict.region, "expected": self.conflict.expected,
            "found": self.conflict.found,
        }
        return out


class ReadResult(NamedTuple):
    """A key's value as one region holds it (immutable).

    ``exists`` is false when the region has no value (never written there, or
    deleted). ``version`` counts the events applied to the key in that region;
    ``origin`` and ``hlc`` are those of the newest of them (the one that decided the
    value under last-write-wins). ``session_token`` covers what this read saw (pass it
    to later reads and writes, in any process); ``staleness_ms`` is the measured bound
    on the answer's age (``None`` when the region cannot prove one); ``routed_from`` is
    the region asked first when another one served the read.
    """

    key: str
    region: str
    exists: bool
    value: Any
    version: int
    origin: str | None
    hlc: HLCTimestamp | None
    event_id: str | None
    consistency: str = "eventual"
    session_token: str | None = None
    staleness_ms: float | None = None
    waited_ms: float = 0.0
    routed_from: str | None = None
    versions_behind: int | None = None

    @property
    def session(self) -> SessionToken:
        """The session after this read, as a token object."""
        if self.session_token is None:
            return SessionToken.empty()
        return SessionToken.decode(self.session_token)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        out = self._asdict()
        out["hlc"] = None if self.hlc is None else self.hlc._asdict()
        return out

    @classmethod
    def from_row(
        cls, row: Mapping[str, Any], consistency: str = "eventual", routed_from: str | None = None
    ) -> ReadResult:
        """From a region query answer."""
        hlc = row.get("hlc")
        return cls(
            key=row["key"],
            region=row["region"],
            exists=bool(row["exists"]),
            value=row.get("value"),
            version=int(row.get("version") or 0),
            origin=row.get("origin"),
            hlc=None if not hlc else HLCTimestamp(hlc["wall_ms"], hlc["logical"]),
            event_id=row.get("event_id"),
            consistency=row.get("consistency", consistency),
            session_token=row.get("session_token"),
            staleness_ms=row.get("staleness_ms"),
            waited_ms=float(row.get("waited_ms") or 0.0),
            routed_from=routed_from,
            versions_behind=row.get("versions_behind"),
        )


class PreparedWrite(NamedTuple):
    """A write that passed every check, encoded and ready to send (immutable)."""

    event_id: str
    key: str
    operation: Operation
    payload: Any
    classification: tuple[str, ...]
    hlc: HLCTimestamp
    encoded: EncodedEvent
    topic: str
    placement: Placement
    dependencies: SessionToken
    writer: str | None

    @property
    def event(self) -> EventEnvelope:
        """The envelope of this write (built on demand: every field was checked already)."""
        return EventEnvelope.model_construct(
            event_id=self.event_id,
            key=self.key,
            operation=self.operation,
            payload=self.payload,
            origin_region=self.placement.home,
            placement=self.placement.regions,
            classification=self.classification,
            hlc=self.hlc,
            dependencies=self.dependencies.clock,
            schema_version=CURRENT_SCHEMA_VERSION,
            writer=self.writer,
        )


def _names(value: str | Sequence[str], what: str) -> tuple[str, ...]:
    """A list of names; a single string is one name (not a list of characters)."""
    if value == () and value.__class__ is tuple:  # the default: most calls
        return ()
    if isinstance(value, str):
        return (value,) if value else ()
    try:
        names = tuple(value)
    except TypeError:
        raise InvalidInput(
            f"{what} must be a name or a list of names, got {value!r}"
        ) from None
    if not all(isinstance(n, str) for n in names):
        raise InvalidInput(f"{what} must be a name or a list of names, got {value!r}")
    return names


def _describe_verdict(verdict: Mapping[str, Any]) -> str:
    if verdict.get("reason") == "session_not_covered":
        lacking = verdict.get("missing") or {}
        shown = ", ".join(f"{s}>={o}" for s, o in list(lacking.items())[:4])
        return f"lacks {shown}"
    stale = verdict.get("staleness_ms")
    behind = verdict.get("versions_behind")
    parts = ["staleness unknown" if stale is None else f"{stale:.0f} ms stale"]
    if behind is not None:
        parts.append(f"up to {behind} versions behind")
    return ", ".join(parts)


def _kind(call: str, consistency: Any) -> str | None:
    """The metrics kind of a write or read (None: a strong write, recorded by commit)."""
    consistency = consistency or "eventual"
    if call == "write" and consistency == "strong":
        return None
    if consistency in ("eventual", "causal", "bounded_staleness", "strong"):
        return f"{call}.{consistency}"
    return f"{call}.invalid"


#: the kinds of the write levels, computed once (write() looks one up per call)
_WRITE_KINDS: dict[str | None, str] = {
    c: f"write.{c or 'eventual'}" for c in (None, "eventual", "causal")
}


def _write_kind(consistency: Any) -> str:
    """The metrics kind of a non-strong write: ``_kind("write", consistency)``."""
    if consistency is None or consistency.__class__ is str:
        kind = _WRITE_KINDS.get(consistency)
        if kind is not None:
            return kind
    return _kind("write", consistency) or "write.invalid"


_OP_SET, _OP_DELETE, _OP_INCREMENT, _OP_MERGE = (
    Operation.SET,
    Operation.DELETE,
    Operation.INCREMENT,
    Operation.MERGE,
)
#: tuple.__new__: builds a NamedTuple from its fields without the Python-level
#: __new__ frame (hot path)
_tuple_new = tuple.__new__


class _Route(NamedTuple):
    placement: Placement
    classes: tuple[str, ...]  # sorted, as headers and the envelope carry them
    topic: str
    #: what every event of the route encodes alike (None: the newest Event schema is
    #: not the one the hot path writes, so events go through encode_fields)
    encoding: RouteEncoding | None


class EdgeBus:
    """Asynchronous producer SDK. Use as ``async with EdgeBus(config) as bus``."""

    def __init__(
        self,
        config: EdgeConfig | Mapping[str, Any] | str | Path | None = None,
        *,
        client_id: str | None = None,
        discovery: bool = True,
    ) -> None:
        """``discovery=False`` skips health probing (one-shot tools): placement then
        knows only what failed writes teach it."""
        self.config = load_config(config)
        self.client_id = client_id or f"edgebus-{new_event_id()[:8]}"
        self._discover = discovery
        self.discovery: Discovery | None = None
        self._checked_tokens: set[SessionToken] = set()
        self._rules = self.config.compliance.rules()
        self._known_classes = frozenset(
            {"public", *self.config.compliance.data_classifications}
        )
        self._clusters = resolve_clusters(self.config)
        self._producers: dict[str, BatchingProducer] = {}
        self._ready: dict[str, asyncio.Task[BatchingProducer]] = {}
        self._hlc = HybridLogicalClock()
        self._session = SessionToken.empty()
        #: the newest HLC reading of this bus's own acknowledged writes, kept apart from
        #: _session so that a write need not build a new token (see the session property)
        self._own_hlc = 0
        self._routes: dict[tuple[Any, ...], _Route] = {}
        self._regions = frozenset(self.config.regions)
        # headers and record framing take the rest of a batch
        self._max_event_bytes = self.config.kafka.max_batch_bytes - 1024
        self._topic_regions = {events_topic(r): r for r in self.config.regions}
        self._closed = False
        self._reader: Any = None
        self._strong_client: Any = None
        self._coordinator: Any = None
        self._strong_ready: asyncio.Task[Any] | None = None
        self._state_client: Any = None
        self._state_host: Any = None
        self._state_ready: asyncio.Future[Any] | None = None
        #: latency / throughput / errors of write, commit, read and state calls (see
        #: edgebus.sdk.metrics); None when monitoring.metrics_enabled is false
        self.metrics: BusMetrics | None = (
            BusMetrics() if self.config.monitoring.metrics_enabled else None
        )

    @property
    def regions(self) -> tuple[str, ...]:
        """Configured regions, in order."""
        return self.config.regions

    @property
    def clusters(self) -> Mapping[str, str]:
        """Region -> Kafka bootstrap address."""
        return dict(self._clusters)

    @property
    def session(self) -> SessionToken:
        """Everything this bus has written: its session token."""
        return self._session.with_hlc(self._own_hlc)

    async def __aenter__(self) -> EdgeBus:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Connect to every region's cluster (fail only if none answers) and start
        discovery's health probes in the background."""
        if self._discover and self.discovery is None:
            self.discovery = Discovery(self.config, self._region_client())
            self.discovery.start()
        bootstraps = sorted(set(self._clusters.values()))
        results = await asyncio.gather(
            *(self._producer(b) for b in bootstraps), return_exceptions=True
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        if len(failures) == len(results):
            # nothing answers: stop discovery and its HTTP session, as close() would
            await self.close()
            self._closed = False  # the caller may start() again once Kafka is up
            first = failures[0]
            if isinstance(first, EdgebusError):
                raise first
            raise InfrastructureUnavailable(str(first), bootstraps) from first

    async def close(self) -> None:
        """Flush pending writes and disconnect."""
        self._closed = True
        for task in self._ready.values():
            if not task.done():
                task.cancel()
        batchers, self._producers = list(self._producers.values()), {}
        self._ready.clear()
        await asyncio.gather(*(b.close() for b in batchers), return_exceptions=True)
        await asyncio.gather(*(b.producer.stop() for b in batchers), return_exceptions=True)
        if self.discovery is not None:
            await self.discovery.close()
            self.discovery = None
        if self._reader is not None:
            await self._reader.close()
            self._reader = None
        if self._strong_ready is not None and not self._strong_ready.done():
            self._strong_ready.cancel()
        self._strong_ready = None
        for part in (self._strong_client, self._coordinator):
            if part is not None:
                with contextlib.suppress(Exception):
                    await part.stop()
        self._strong_client = self._coordinator = None
        if self._state_ready is not None and not self._state_ready.done():
            self._state_ready.cancel()
        self._state_ready = None
        for part in (self._state_client, self._state_host):
            if part is not None:
                with contextlib.suppress(Exception):
                    await part.stop()
        self._state_client = self._state_host = None

    @recorded(lambda kw: _kind("read", kw.get("consistency", "eventual")))
    async def read(
        self,
        key: str,
        region: str | None = None,
        *,
        consistency: str = "eventual",
        session: SessionToken | str | None = None,
        staleness_threshold_ms: float | None = None,
        max_versions_behind: int | None = None,
        wait_ms: float | None = None,
        fallback: str | None = None,
        exclude_locations: Sequence[str] = (),
    ) -> ReadResult:
        """The key's value as a region holds it, at the consistency asked.

        Served by the region's service: the one embedded in this process if any
        (``RegionService``), else the one announced on ``edgebus.<region>.service``
        (``edgebus region run``), over its HTTP query endpoint. ``region`` defaults to
        the best-ranked healthy region (``edge_strategy`` over measured latency).

        * ``eventual``: what the region has applied so far.
        * ``causal``: the region first covers this bus's session plus ``session`` (a
          token from any process): read-your-writes, monotonic reads,
          writes-follow-reads.
        * ``bounded_staleness``: the answer is provably at most
          ``staleness_threshold_ms`` old (default ``reads.staleness_threshold_ms``)
          and, with ``max_versions_behind=K``, lacks at most K writes of its partition.

        When the region is not fresh enough it waits up to ``wait_ms`` (default
        ``reads.wait_ms``), then ``fallback`` (default ``reads.fallback``): ``route``
        serves from another region that is fresh enough, ``raise`` raises
        :class:`~edgebus.errors.SessionNotCovered` /
        :class:`~edgebus.errors.StalenessBoundExceeded`. Nothing staler than asked is
        ever returned. The result carries the session token after this read.
        """
        if consistency == "strong":
            return await self._read_strong(key, region, wait_ms, exclude_locations)
        if consistency not in ("eventual", "causal", "bounded_staleness"):
            raise InvalidInput(
                f"consistency {consistency!r} is not one of eventual, causal, "
                "bounded_staleness, strong"
            )
        if not isinstance(key, str) or not key:
            raise InvalidInput(f"key must be a non-empty string, got {key!r:.80}")
        if region is not None and region not in self._regions:
            raise UnknownRegion(region, self.config.regions)
        reads = self.config.reads
        wait = reads.wait_ms if wait_ms is None else float(wait_ms)
        if wait < 0:
            raise InvalidInput("wait_ms must be 0 or more")
        mode = reads.fallback if fallback is None else fallback
        if mode not in ("route", "raise"):
            raise InvalidInput(f"fallback {mode!r} is not one of route, raise")
        if staleness_threshold_ms is not None and (
            isinstance(staleness_threshold_ms, bool)
            or not isinstance(staleness_threshold_ms, int | float)
            or staleness_threshold_ms <= 0
        ):
            raise InvalidInput(
                f"staleness_threshold_ms must be a positive number, got {staleness_threshold_ms!r}"
            )
        if max_versions_behind is not None and (
            isinstance(max_versions_behind, bool)
            or not isinstance(max_versions_behind, int)
            or max_versions_behind < 0
        ):
            raise InvalidInput(
                f"max_versions_behind must be an int >= 0, got {max_versions_behind!r}"
            )
        token = self.session
        if session is not None:
            token = token.merge(self._token(session))
        excluded = set(_names(exclude_locations, "exclude_locations"))
        order = self._read_order(region, excluded, key)
        reader = self._region_client()
        first = order[0]
        verdicts: list[tuple[str, Mapping[str, Any]]] = []
        unavailable: list[str] = []
        for i, target in enumerate(order):
            if i and mode == "raise":
                break
            started = time.perf_counter()
            try:
                row = await reader.read_at(
                    key, target, consistency, session=token,
                    staleness_threshold_ms=staleness_threshold_ms,
                    max_versions_behind=max_versions_behind,
                    wait_ms=wait if i == 0 else 0.0,
                )
            except RegionUnavailable as e:
                unavailable.append(f"{target}: {e}")
                self._observe_read(target, None)
                if mode == "raise" or (region is not None and len(order) == 1):
                    raise
                continue
            self._observe_read(target, (time.perf_counter() - started) * 1000)
            if row.get("served", True):
                result = ReadResult.from_row(row, consistency, first if target != first else None)
                if result.session_token:
                    self._session = self._session.merge(result.session)
                if self._debug:
                    log.debug(
                        "read key=%s consistency=%s served by %s%s staleness_ms=%s waited_ms=%s",
                        key, consistency, target,
                        f" (routed from {first})" if target != first else "",
                        result.staleness_ms, result.waited_ms,
                    )
                return result
            verdicts.append((target, row))
        raise self._not_fresh(key, consistency, verdicts, unavailable, wait, mode)

    async def _read_strong(
        self, key: str, region: str | None, wait_ms: float | None,
        exclude_locations: Sequence[str],
    ) -> ReadResult:
        """A linearizable read: the first region (``region``, then the best ranked)
        whose participant passes the saga-log read barrier serves it."""
        if not isinstance(key, str) or not key:
            raise InvalidInput(f"key must be a non-empty string, got {key!r:.80}")
        if region is not None and region not in self._regions:
            raise UnknownRegion(region, self.config.regions)
        wait = self.config.strong.read_wait_ms if wait_ms is None else float(wait_ms)
        if wait < 0:
            raise InvalidInput("wait_ms must be 0 or more")
        excluded = set(_names(exclude_locations, "exclude_locations"))
        order = self._read_order(region, excluded, key)
        reader = self._region_client()
        problems: list[str] = []
        tried: set[str] = set()
        while order:
            target = order.pop(0)
            if target in tried:
                continue
            tried.add(target)
            started = time.perf_counter()
            try:
                row = await reader.read_at(key, target, "strong", wait_ms=wait)
            except RegionUnavailable as e:
                problems.append(f"{target}: {e}")
                self._observe_read(target, None)
                continue
            self._observe_read(target, (time.perf_counter() - started) * 1000)
            if row.get("served", True):
                result = ReadResult.from_row(row, "strong", None)
                if result.hlc is not None:
                    packed = (result.hlc.wall_ms << 16) | result.hlc.logical
                    self._session = self._session.with_hlc(max(packed, self._session.hlc))
                return result
            if row.get("reason") == "not_placed_here":
                placed = [r for r in row.get("placement", ()) if r not in tried]
                order = placed + [r for r in order if r not in placed]
                problems.append(f"{target}: not placed there")
            else:
                problems.append(f"{target}: {row.get('reason')} ({row.get('behind')} behind)")
        raise StrongReadUnavailable(
            f"no region could serve a strong read of {key!r:.80} within {wait:.0f} ms: "
            f"{'; '.join(problems) or 'no region to ask'}. Check `edgebus status` (saga "
            "participant positions), retry, or read at a weaker consistency."
        )

    def _read_order(self, region: str | None, excluded: set[str], key: str) -> list[str]:
        """Regions to ask, best first: ``region`` (if given), then by health/latency."""
        ranked = [r for r in self._rank_regions(key) if r not in excluded]
        if region is not None:
            return [region, *(r for r in ranked if r != region)]
        if not ranked:
            raise InvalidInput("exclude_locations removed every configured region")
        return ranked

    def _rank_regions(self, key: str = "") -> list[str]:
        if self.discovery is None:
            return list(self.config.regions)
        return list(self.discovery.rank_for_reads(self.config.edge_strategy, key=key))

    def _observe_read(self, region: str, ms: float | None) -> None:
        if self.discovery is not None:
            self.discovery.observe_read(region, ms)

    def _not_fresh(
        self,
        key: str,
        consistency: str,
        verdicts: list[tuple[str, Mapping[str, Any]]],
        unavailable: list[str],
        wait_ms: float,
        mode: str,
    ) -> EdgebusError:
        if not verdicts:
            return RegionUnavailable(
                "No region service answered the read: " + " ".join(unavailable)
            )
        asked = ", ".join(f"{r} ({_describe_verdict(v)})" for r, v in verdicts)
        down = f"; unavailable: {'; '.join(unavailable)}" if unavailable else ""
        advice = (
            "Retry later, raise wait_ms, or read with fallback='route'"
            if mode == "raise"
            else "Retry later or raise wait_ms; check `edgebus status` for paused or "
            "stopped regions"
        )
        if consistency == "causal":
            lacking: dict[str, int] = {}
            for _, v in verdicts:
                for stream, offset in (v.get("missing") or {}).items():
                    lacking[stream] = max(lacking.get(stream, -1), offset)
            return SessionNotCovered(
                f"No region covers the session for a causal read of {key!r:.80} after "
                f"waiting {wait_ms:g} ms: asked {asked}{down}. {advice}.",
                lacking,
            )
        known = [v["staleness_ms"] for _, v in verdicts if v.get("staleness_ms") is not None]
        behind = [v["versions_behind"] for _, v in verdicts if v.get("versions_behind") is not None]
        return StalenessBoundExceeded(
            f"No region can prove a fresh enough answer for {key!r:.80} after waiting "
            f"{wait_ms:g} ms: asked {asked}{down}. {advice}.",
            min(known) if known else None,
            min(behind) if behind else None,
        )

    def plan(
        self,
        key: str,
        data: Any,
        *,
        region: str | None = None,
        classification: str | Sequence[str] | None = None,
        replication_factor: int | None = None,
        preferred_locations: Sequence[str] = (),
        exclude_locations: Sequence[str] = (),
        compliance_zones: Sequence[str] = (),
        edge_strategy: str | None = None,
        fallback_strategy: str | None = None,
        min_replicas: int | None = None,
    ) -> Placement:
        """Classify and place without writing: where would this write go?"""
        return self._plan(
            key,
            data,
            region,
            classification,
            replication_factor,
            preferred_locations,
            exclude_locations,
            compliance_zones,
            edge_strategy,
            fallback_strategy,
            min_replicas,
        ).placement

    def _plan(
        self,
        key: str,
        data: Any,
        region: str | None,
        classification: str | Sequence[str] | None,
        replication_factor: int | None,
        preferred_locations: Sequence[str],
        exclude_locations: Sequence[str],
        compliance_zones: Sequence[str],
        edge_strategy: str | None,
        fallback_strategy: str | None = None,
        min_replicas: int | None = None,
    ) -> _Route:
        if not isinstance(key, str) or not key:
            raise InvalidInput("key must be a non-empty string")
        if region is not None and region not in self._regions:
            raise UnknownRegion(region, self.config.regions)
        if classification is not None and not isinstance(classification, str):
            _names(classification, "classification")  # a list of class names, or refuse
        found = classify(
            data,
            classification,
            default=self._rules.default_classification,
            known_classes=self._known_classes,
        )
        route = self._route(
            key,
            found.classes,
            region,
            replication_factor,
            preferred_locations,
            exclude_locations,
            compliance_zones,
            edge_strategy,
            fallback_strategy,
            min_replicas,
        )
        if self._debug:
            self._log_placement(key, found, route.placement)
        return route

    @property
    def _debug(self) -> bool:
        return self.config.debug or log.isEnabledFor(logging.DEBUG)

    def _log_placement(self, key: str, found: Classification, placement: Placement) -> None:
        log.debug(
            "placed key=%s classes=%s findings=%s zones=%s allowed=%s -> %s%s",
            key,
            sorted(found.classes),
            [f"{f.path}:{f.rule}" for f in found.findings],
            placement.zones_required,
            placement.allowed,
            placement.regions,
            " (rerouted)" if placement.rerouted else "",
        )

    def _route(
        self,
        key: str,
        classes: frozenset[str],
        region: str | None,
        replication_factor: int | None,
        preferred_locations: Sequence[str],
        exclude_locations: Sequence[str],
        compliance_zones: Sequence[str],
        edge_strategy: str | None,
        fallback_strategy: str | None = None,
        min_replicas: int | None = None,
    ) -> _Route:
        discovery = self.discovery
        short: tuple[Any, ...] | None = None
        if (
            replication_factor is None
            and edge_strategy is None
            and fallback_strategy is None
            and min_replicas is None
            and preferred_locations == ()
            and exclude_locations == ()
            and compliance_zones == ()
            and self.config.edge_strategy != "balanced"
        ):
            # the common call: no placement options, so the route depends only on
            # the classes, the caller's region and what discovery knows
            short = (classes, region, discovery.version if discovery is not None else 0)
            route = self._routes.get(short)
            if route is not None:
                return route
        strategy = edge_strategy or self.config.edge_strategy
        fallback = fallback_strategy or "none"
        if fallback not in FALLBACKS:
            raise InvalidInput(
                f"fallback_strategy {fallback!r} is not one of {', '.join(FALLBACKS)}"
            )
        # place() is pure: the same inputs always get the same placement, and the key
        # matters only to the balanced strategy, so most writes hit this cache.
        cache_key = (
            classes,
            region,
            _names(preferred_locations, "preferred_locations"),
            _names(exclude_locations, "exclude_locations"),
            _names(compliance_zones, "compliance_zones"),
            replication_factor,
            strategy,
            key if strategy == "balanced" else "",
            fallback,
            min_replicas,
            discovery.version if discovery is not None else 0,
        )
        route = self._routes.get(cache_key)
        if route is not None:
            if short is not None:
                self._routes[short] = route
            return route
        if strategy not in ("lowest_latency", "balanced", "compliance_first"):
            raise InvalidInput(
                f"edge_strategy {strategy!r} is not one of lowest_latency, balanced, "
                "compliance_first"
            )
        placement = place(
            self._rules,
            PlacementRequest(
                regions=self.config.regions,
                classes=classes,
                home=region,
                preferred=cache_key[2],
                excluded=cache_key[3],
                compliance_zones=cache_key[4],
                replication_factor=replication_factor,
                strategy=strategy,  # type: ignore[arg-type]
                key=cache_key[7],
                latencies_ms=discovery.latencies_ms() if discovery is not None else {},
                unhealthy=discovery.unhealthy() if discovery is not None else frozenset(),
                fallback=fallback,  # type: ignore[arg-type,unused-ignore]
                min_replicas=min_replicas,
            ),
        )
        classes_sorted = tuple(sorted(placement.classes))
        encoding = (
            route_encoding(placement.home, placement.regions, classes_sorted, self.client_id)
            if fast_path_available()
            else None
        )
        route = _Route(placement, classes_sorted, events_topic(placement.home), encoding)
        if len(self._routes) >= 4096:
            self._routes.clear()
        self._routes[cache_key] = route
        if short is not None:
            self._routes[short] = route
        return route

    def prepare_write(
        self,
        key: str,
        data: Any,
        *,
        region: str | None = None,
        classification: str | Sequence[str] | None = None,
        operation: str | Operation | None = None,
        conflict_resolution: str | None = None,
        consistency: str = "eventual",
        replication_factor: int | None = None,
        preferred_locations: Sequence[str] = (),
        exclude_locations: Sequence[str] = (),
        compliance_zones: Sequence[str] = (),
        edge_strategy: str | None = None,
        session: SessionToken | str | None = None,
        fallback_strategy: str | None = None,
        min_replicas: int | None = None,
    ) -> PreparedWrite:
        """Validate, classify, place, stamp and encode a write without sending it.

        Raises every error a write can raise before touching Kafka; :meth:`write`
        is this plus the send.
        """
        if self._closed:
            raise InvalidInput("this EdgeBus is closed: create a new one")
        if consistency != "eventual" and consistency != "causal" and consistency != "strong":
            raise UnsupportedConsistency(
                f"consistency {consistency!r} is not a write level: use 'eventual' or "
                "'causal' (append to the home region; 'causal' orders the write after the "
                "session token) or 'strong' (two-phase commit across the placement). "
                "bounded_staleness is a read level."
            )
        if operation is None:
            op = _OP_SET
        elif operation.__class__ is Operation:
            op = operation  # type: ignore[assignment]
        else:
            try:
                op = Operation(operation)
            except ValueError:
                choices = ", ".join(o.value for o in Operation)
                raise InvalidInput(f"operation {operation!r} is not one of {choices}") from None
        if conflict_resolution is not None:
            try:
                mode_op = operation_for(conflict_resolution, data)
            except ValueError as e:
                raise InvalidInput(str(e)) from None
            if operation is not None and op is not mode_op and op is not _OP_DELETE:
                raise InvalidInput(
                    f"operation {op.value!r} contradicts conflict_resolution "
                    f"{conflict_resolution!r} (which writes {mode_op.value}): pass one of them"
                )
            if op is not _OP_DELETE:
                op = mode_op
        placement, classes, topic, encoding = self._plan(
            key,
            data,
            region,
            classification,
            replication_factor,
            preferred_locations,
            exclude_locations,
            compliance_zones,
            edge_strategy,
            fallback_strategy,
            min_replicas,
        )
        payload_json = encode_payload(data)
        deps = self._session
        if session is not None:
            deps = deps.merge(self._token(session))
        # a str of n characters has at most 4n UTF-8 bytes: encode only long keys
        if len(key) > MAX_KEY_BYTES // 4 and len(key.encode("utf-8")) > MAX_KEY_BYTES:
            raise InvalidInput(f"key is longer than {MAX_KEY_BYTES} bytes of UTF-8")
        if op is _OP_DELETE and data is not None:
            raise InvalidInput("a delete carries no data: pass data=None")
        if op is _OP_INCREMENT and (
            isinstance(data, bool) or not isinstance(data, int | float)
        ):
            raise InvalidInput(f"an increment's data must be a number, got {data!r}")
        if op is _OP_MERGE and not isinstance(data, Mapping):
            raise InvalidInput(
                f"a merge's data must be an object (the fields to set), got {data!r:.80}"
            )
        event_id = new_event_id()
        now_ms = time.time_ns() // 1_000_000
        last = self._hlc.last
        if deps.hlc > ((last.wall_ms << 16) | last.logical):
            # stamp after everything the session saw: LWW never lets this write lose
            # to one it causally follows, whatever the other writer's clock said
            hlc = self._hlc.observe(HLCTimestamp(deps.hlc >> 16, deps.hlc & 0xFFFF), now_ms)
        else:
            hlc = self._hlc.now(now_ms)
        if encoding is not None:
            encoded = encoding.encode(event_id, key, op, payload_json, hlc, deps.clock)
        else:
            encoded = encode_fields(
                event_id,
                key,
                op,
                payload_json,
                placement.home,
                placement.regions,
                classes,
                hlc,
                deps.clock,
                self.client_id,
            )
        size = len(encoded.value) + len(encoded.key)
        if size > self._max_event_bytes:
            raise InvalidInput(
                f"event for key {key[:80]!r} is {size} bytes, over kafka.max_batch_bytes "
                f"({self.config.kafka.max_batch_bytes}): store large blobs elsewhere and "
                "write a reference, or raise kafka.max_batch_bytes (and the topics' "
                "max.message.bytes)"
            )
        return PreparedWrite(
            event_id, key, op, data, classes, hlc, encoded, topic, placement, deps, self.client_id
        )

    async def write(self, key: str, data: Any, **options: Any) -> WriteReceipt:
        """Append one event to its home region's topic and return Kafka's receipt.

        Options (all keyword): ``region`` (the caller's location_id), ``classification``,
        ``operation`` (set|delete|increment|append|merge), ``conflict_resolution``
        (last_write_wins|counter|append|merge: the spec's parameter, which picks the
        operation: a counter adds, append appends, merge sets fields), ``consistency``
        (eventual|causal), ``replication_factor``, ``preferred_locations``,
        ``exclude_locations``, ``compliance_zones``, ``edge_strategy``, ``session``.
        In strict mode a region the data may not live in is refused with
        ComplianceViolation; otherwise the write is rerouted to a compliant region
        (``receipt.rerouted``). ``session`` makes this write causally follow
        everything that token covers.

        ``consistency="strong"`` is :meth:`commit` (two-phase commit across the
        placement; ``expected_version`` and ``timeout_ms`` allowed) and returns its
        :class:`CommitResult` instead of a receipt.
        """
        if options.get("consistency") == "strong":  # commit() records itself
            options = {k: v for k, v in options.items() if k != "consistency"}
            return await self.commit(key, data, **options)  # type: ignore[return-value]
        # recorded here rather than by @recorded, and in one coroutine: this is the
        # hot path, and a coroutine less per write is measurable (bench produce)
        started = time.perf_counter()
        try:
            if options:
                if options.get("expected_version") is not None:
                    raise InvalidInput(
                        "expected_version needs consistency='strong' (a conditional write "
                        "commits through the saga coordinator): pass consistency='strong'"
                    )
                options.pop("expected_version", None)
                if options.get("session") is not None:
                    await self._check_token(options["session"])
            prepared = self.prepare_write(key, data, **options)
            batcher = self._producers.get(self._clusters[prepared.placement.home])
            if batcher is None:  # the first write to this cluster
                prepared, batcher = await self._first_producer(prepared, key, data, options)
            home = prepared.placement.home
            encoded = prepared.encoded
            topic = prepared.topic
            partition = batcher.partition(encoded.key)
            try:
                offset = await batcher.send(
                    topic, partition, encoded.key, encoded.value, encoded.headers
                )
            except KafkaError as e:
                raise WriteFailed(
                    f"Kafka did not acknowledge event {prepared.event_id} on {topic}: {e}. "
                    "The event may or may not be stored; retrying writes a new event."
                ) from e
            hlc = prepared.hlc
            packed = (hlc.wall_ms << 16) | hlc.logical
            if packed > self._own_hlc:
                self._own_hlc = packed
            if options.get("session"):  # another session's token joins this one
                self._session = self._session.merge(
                    prepared.dependencies.after_write(Position(home, partition, offset), packed)
                )
            elif self._session.clock.get(home, partition) < offset:
                # usually covered already: _acknowledged() advanced the clock
                self._session = self._session.after_write(Position(home, partition, offset))
            placement = prepared.placement
            receipt = _tuple_new(
                WriteReceipt,
                (
                    prepared.event_id,
                    key,
                    home,
                    topic,
                    partition,
                    offset,
                    placement.regions,
                    prepared.classification,
                    hlc,
                    prepared.dependencies,
                    placement.rerouted,
                    placement.degraded,
                ),
            )
        except asyncio.CancelledError:
            raise
        except BaseException:
            if self.metrics is not None:
                self.metrics.record(
                    _write_kind(options.get("consistency")),
                    (time.perf_counter() - started) * 1000,
                    False,
                )
            raise
        if self.metrics is not None:
            self.metrics.record(
                _write_kind(options.get("consistency")), (time.perf_counter() - started) * 1000
            )
        return receipt

    async def _first_producer(
        self, prepared: PreparedWrite, key: str, data: Any, options: dict[str, Any]
    ) -> tuple[PreparedWrite, BatchingProducer]:
        """Connect to the home region's cluster; with ``fallback_strategy="any_available"``
        a cluster that does not answer is left out and the write placed again."""
        home = prepared.placement.home
        try:
            return prepared, await self._producer(self._clusters[home])
        except InfrastructureUnavailable:
            if self.discovery is not None:
                self.discovery.broker_failed(home)
            if options.get("fallback_strategy") != "any_available":
                raise
            # nothing was sent: place again without the region that did not answer
            again = self.prepare_write(key, data, **options)
            if again.placement.home == home:
                raise
            log.warning(
                "write of %s: %s does not answer, falling back to %s",
                key, home, again.placement.home,
            )
            bootstrap = self._clusters[again.placement.home]
            return again, self._producers.get(bootstrap) or await self._producer(bootstrap)

    @recorded(lambda kw: "write.strong")
    async def commit(
        self,
        key: str,
        data: Any,
        *,
        expected_version: int | None = None,
        timeout_ms: int | None = None,
        **options: Any,
    ) -> CommitResult:
        """A strong write: two-phase commit across every region of its placement.

        Same options as :meth:`write` (classification, operation, placement options),
        plus ``expected_version`` (commit only if the key's version is this in every
        participant: compare-and-set; ``0`` means "does not exist yet") and
        ``timeout_ms`` (default ``strong.timeout_ms``: undecided by then, it aborts).
        The compliance filter places it first: in strict mode, data no region may hold
        is refused with ComplianceViolation before anything is logged. Returns a
        :class:`CommitResult`; a lost race is ``outcome == "conflict"``, not an
        exception. Raises StrongOutcomeUnknown when no decision arrives (no
        coordinator running).
        """
        if expected_version is not None and (
            isinstance(expected_version, bool) or not isinstance(expected_version, int)
            or expected_version < 0
        ):
            raise InvalidInput(f"expected_version must be an int >= 0, got {expected_version!r}")
        timeout = self.config.strong.timeout_ms if timeout_ms is None else timeout_ms
        if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout <= 0:
            raise InvalidInput(f"timeout_ms must be a positive int, got {timeout_ms!r}")
        if options.get("session") is not None:
            await self._check_token(options["session"])
        options.pop("consistency", None)
        prepared = self.prepare_write(key, data, **options)
        client = await self._strong()
        now_ms = time.time_ns() // 1_000_000
        hlc = prepared.hlc
        begin = BeginRecord(
            txn_id=new_event_id(),
            key=key,
            operation=prepared.operation.value,
            payload=encode_payload(data) if prepared.operation is not Operation.DELETE else None,
            placement=prepared.placement.regions,
            classification=prepared.classification,
            expected_version=expected_version,
            deadline_ms=now_ms + timeout,
            hlc=(hlc.wall_ms << 16) | hlc.logical,
            writer=self.client_id,
            time_ms=now_ms,
        )
        decision = await client.commit(begin)
        outcome = decision.outcome
        committed = decision.committed
        if committed:
            self._session = self._session.with_hlc(max(decision.hlc, self._session.hlc))
        return CommitResult(
            txn_id=begin.txn_id,
            key=key,
            committed=committed,
            reason=outcome.reason,
            conflict=outcome.conflict,
            version=decision.version,
            placement=begin.placement,
            classification=begin.classification,
            hlc=HLCTimestamp(decision.hlc >> 16, decision.hlc & 0xFFFF),
            session_token=self.session.encode(),
            decided_by=decision.writer,
        )

    @recorded(lambda kw: "state")
    async def state(
        self,
        state_id: str,
        operation: str = "get",
        *,
        key: str | None = None,
        value: Any = None,
        update_fn: str | Callable[[Any], Any] | None = None,
        increment: float = 1,
        lock_name: str | None = None,
        holder: str | None = None,
        timeout_ms: int | None = None,
        lease_duration_ms: int | None = None,
        enable_persistence: bool = True,
        enable_replication: bool = True,
        enable_migration: bool = False,
        classification: str | None = None,
        region: str | None = None,
        req_id: str | None = None,
    ) -> Any:
        """Run ``operation`` on state machine ``state_id`` (a durable object) at its owner.

        Operations: ``get | set | update | delete | increment | append | lock |
        unlock``; ``key`` names a field (none: the whole state). ``update_fn`` is a
        function name registered at the owner (:func:`edgebus.state.register_update_fn`)
        or a callable (registered here, so it runs when this process owns the state).
        ``lock``/``unlock`` take ``lock_name`` and ``holder`` (default this bus's client
        id); a lock lasts ``lease_duration_ms`` unless renewed (lock again) or unlocked,
        and waits up to ``timeout_ms`` for the lock. ``lease_duration_ms`` is also the
        owner's lease when this call makes a region claim the state. ``classification``
        is the state's class (its jurisdiction: which regions may own or copy it;
        default the configured default class). ``region`` is where the call comes from
        (default ``state.host_region`` or the first region): ownership migrates toward
        it with ``enable_migration``. ``req_id`` makes a retry safe: a request id runs at
        most once.

        Returns :class:`~edgebus.state.client.StateResult` (value, version, where it ran,
        owner epoch, forwarded, forward_ms). Raises StateOperationRefused (the owner
        refused: state unchanged), ComplianceViolation, StateOperationTimeout (no owner
        answered: no region service hosting the class is running), InvalidInput.
        """
        from edgebus.core.state_machine import OPERATIONS, StateRequest
        from edgebus.state.functions import register_update_fn, update_fn_name

        if not isinstance(state_id, str) or not state_id:
            raise InvalidInput(f"state_id must be a non-empty string, got {state_id!r}")
        if operation not in OPERATIONS:
            near = difflib.get_close_matches(str(operation), OPERATIONS, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else "."
            raise InvalidInput(f"unknown state operation {operation!r}{hint} Use one of "
                               f"{', '.join(OPERATIONS)}.")
        if not enable_persistence or not enable_replication:
            raise InvalidInput(
                "edgebus states are always persisted (their log, and snapshots at every "
                "host) and replicated to standbys in the regions their class allows: that "
                "is how a fail-over keeps every acknowledged operation. Leave "
                "enable_persistence and enable_replication true."
            )
        origin = region or self.config.state.host_region or self.config.regions[0]
        if origin not in self._regions:
            raise UnknownRegion(origin, self.config.regions)
        fn_name: str | None
        if callable(update_fn):
            fn_name = update_fn_name(update_fn)
            register_update_fn(fn_name)(update_fn)
        else:
            fn_name = update_fn
        for name, number in (("timeout_ms", timeout_ms), ("lease_duration_ms", lease_duration_ms)):
            if number is not None and (isinstance(number, bool) or not isinstance(number, int)
                                       or number <= 0):
                raise InvalidInput(f"{name} must be a positive int (ms), got {number!r}")
        client = await self._state()
        data_class = client.data_class(classification)
        request = StateRequest(
            state_id=state_id, req_id=req_id or new_event_id(), operation=operation,
            from_region=origin, holder=holder or self.client_id, key=key, value=value,
            increment=increment, update_fn=fn_name, lock_name=lock_name,
            lease_ms=lease_duration_ms or self.config.state.lease_ms,
            timeout_ms=timeout_ms or self.config.state.timeout_ms,
            enable_migration=enable_migration,
        )
        return await client.call(request, data_class)

    async def _state(self) -> Any:
        """The state client (and the embedded state host), started once."""
        if self._state_client is not None:
            return self._state_client
        if self._state_ready is None or (
            self._state_ready.done() and self._state_ready.exception() is not None
        ):
            self._state_ready = asyncio.ensure_future(self._start_state())
        return await asyncio.shield(self._state_ready)

    async def _start_state(self) -> Any:
        from edgebus.state.client import StateClient
        from edgebus.state.host import StateHost

        region = self.config.state.host_region or self.config.regions[0]
        host = None
        if self.config.state.embedded_host:
            # in memory: this process's folds are rebuilt from the log when it starts
            # (a file would be shared with other processes hosting the same region)
            host = StateHost(self.config, region, db_path=":memory:")
            await host.start()
            self._state_host = host
        self._state_client = StateClient(self.config, self.client_id, region, host)
        return self._state_client

    async def _strong(self) -> Any:
        """The strong client (and the embedded coordinator), started once."""
        if self._strong_client is not None:
            return self._strong_client
        if self._strong_ready is None or (
            self._strong_ready.done() and self._strong_ready.exception() is not None
        ):
            self._strong_ready = asyncio.ensure_future(self._start_strong())
        return await asyncio.shield(self._strong_ready)

    async def _start_strong(self) -> Any:
        from edgebus.commit.client import StrongClient
        from edgebus.commit.coordinator import Coordinator

        bootstrap = self._clusters[self.config.strong_log_region]
        client = StrongClient(self.config, bootstrap, self.client_id)
        await client.start()
        if self.config.strong.embedded_coordinator and self._coordinator is None:
            coordinator = Coordinator(self.config, bootstrap)
            try:
                await coordinator.start()
            except BaseException:
                await client.stop()
                raise
            self._coordinator = coordinator
        self._strong_client = client
        return client

    def _token(self, session: SessionToken | str) -> SessionToken:
        """A token passed in, decoded, naming only configured regions."""
        token = session if isinstance(session, SessionToken) else SessionToken.decode(session)
        unknown = sorted({r for r, _ in token.clock.entries()} - self._regions)
        if unknown:
            raise InvalidInput(
                f"The session token names region(s) {', '.join(unknown)}, which this "
                f"configuration does not have ({', '.join(self.config.regions)}): pass a "
                "token issued by this deployment."
            )
        return token

    async def _check_token(self, session: SessionToken | str) -> None:
        """Refuse a token naming positions that do not exist (forged, or from another
        deployment): a write depending on them could never be applied anywhere."""
        token = self._token(session)
        if not token.clock or token in self._checked_tokens:
            return
        wanted: dict[str, dict[tuple[str, int], int]] = {}
        for (region, partition), offset in token.clock.entries().items():
            wanted.setdefault(self._clusters[region], {})[(region, partition)] = offset
        for bootstrap, entries in wanted.items():
            ends = await end_offsets(
                self.config.kafka, bootstrap, {events_topic(r) for r, _ in entries}
            )
            for (region, partition), offset in entries.items():
                end = ends.get(TopicPartition(events_topic(region), partition), 0)
                if offset >= end:
                    raise InvalidInput(
                        f"The session token names {region}:{partition}:{offset}, beyond the "
                        f"end of {events_topic(region)} partition {partition} (next offset "
                        f"{end}): it was not issued by this deployment (or the topic was "
                        "recreated). Pass a token from a write or read made here."
                    )
        if len(self._checked_tokens) >= 1024:
            self._checked_tokens.clear()
        self._checked_tokens.add(token)

    async def replication_status(
        self, receipt: WriteReceipt, *, wait_ms: float = 0.0
    ) -> dict[str, str]:
        """Where the write is now: region -> ``completed`` (applied there),
        ``pending`` (placed there, not applied yet), ``failed`` (its region service
        does not answer, or the region was left out because it was unhealthy).

        ``wait_ms`` waits (concurrently, per region) for each placement region to
        apply it.
        """
        token = SessionToken(VectorClock({(receipt.region, receipt.partition): receipt.offset}))
        reader = self._region_client()

        async def one(region: str) -> str:
            try:
                row = await reader.read_at(
                    receipt.key, region, "causal", session=token, wait_ms=wait_ms
                )
            except RegionUnavailable:
                return "failed"
            return "completed" if row.get("served") else "pending"

        states = await asyncio.gather(*(one(r) for r in receipt.placement))
        out = dict(zip(receipt.placement, states, strict=True))
        for region in receipt.degraded:
            out[region] = "failed"
        return out

    def _region_client(self) -> Any:
        if self._reader is None:
            from edgebus.sdk.region_client import RegionClient

            self._reader = RegionClient(self.config, self.config.kafka.connect_timeout_s)
        return self._reader

    async def _producer(self, bootstrap: str) -> BatchingProducer:
        producer = self._producers.get(bootstrap)
        if producer is not None:
            return producer
        task = self._ready.get(bootstrap)
        if task is None or (task.done() and task.exception() is not None):
            task = asyncio.ensure_future(self._connect(bootstrap))
            self._ready[bootstrap] = task
        producer = await asyncio.shield(task)
        self._producers[bootstrap] = producer
        return producer

    async def _connect(self, bootstrap: str) -> BatchingProducer:
        kafka = self.config.kafka
        regions = [r for r, b in self._clusters.items() if b == bootstrap]
        await ensure_topics(kafka, bootstrap, [events_topic(r) for r in regions])
        producer = await start_producer(kafka, bootstrap, "events", client_id=self.client_id)
        return BatchingProducer(producer, kafka.partitions, on_ack=self._acknowledged)

    def _acknowledged(
        self, topic: str, partition: int, last_offset: int, latency_ms: float
    ) -> None:
        # Once per acknowledged batch: the session covers every write of the batch
        # (all are this bus's own), and the writes prepared until the next batch
        # share one session clock, whose encodings are computed once. Discovery learns
        # the region's produce latency once per batch too (its first write's wait).
        region = self._topic_regions.get(topic)
        if region is not None:
            self._session = self._session.after_write(Position(region, partition, last_offset))
            if self.discovery is not None:
                self.discovery.observe_produce(region, latency_ms)


class EdgeBusSync:
    """Blocking facade over :class:`EdgeBus` for scripts: ``with EdgeBusSync() as bus``.

    Runs an event loop on a private thread; every method blocks until done.
    """

    def __init__(
        self,
        config: EdgeConfig | Mapping[str, Any] | str | Path | None = None,
        *,
        client_id: str | None = None,
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="edgebus-sync", daemon=True
        )
        self._thread.start()
        try:
            self._bus = self._call(_make_bus(config, client_id))
        except BaseException:
            self._stop_loop()
            raise

    def __enter__(self) -> EdgeBusSync:
        try:
            self._call(self._bus.start())
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def bus(self) -> EdgeBus:
        """The asynchronous bus underneath."""
        return self._bus

    def write(self, key: str, data: Any, **options: Any) -> WriteReceipt:
        """Blocking :meth:`EdgeBus.write`."""
        return self._call(self._bus.write(key, data, **options))

    def read(self, key: str, region: str | None = None, **options: Any) -> ReadResult:
        """Blocking :meth:`EdgeBus.read`."""
        return self._call(self._bus.read(key, region, **options))

    def state(self, state_id: str, operation: str = "get", **options: Any) -> Any:
        """Blocking :meth:`EdgeBus.state`."""
        return self._call(self._bus.state(state_id, operation, **options))

    def close(self) -> None:
        """Flush, disconnect and stop the private loop (idempotent)."""
        if self._loop.is_closed():
            return
        try:
            self._call(self._bus.close())
        finally:
            self._stop_loop()

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


async def _make_bus(config: Any, client_id: str | None) -> EdgeBus:
    return EdgeBus(config, client_id=client_id)
