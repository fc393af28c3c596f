"""Eventual and causal writes: classify, place, stamp, encode, append.

A write is checked for size (its JSON within ``kafka.max_batch_bytes``, before it is
classified: a huge record costs one encoding, never a walk), classified (field names
and values; an explicit class only adds to what they find, unless the write
``declassify``-es, which the ``eb-declassified`` header records), placed (compliance
zones, preferred and excluded locations, replication factor, edge strategy), stamped
(event id, hybrid logical clock, the session's causal dependencies), encoded (Avro
single-object value plus routing headers) and appended to ``edgebus.<home>.events``
with an idempotent producer and ``acks=all``. Nothing touches Kafka before the write
is known to be valid and compliant: a refused write changes nothing.

Many concurrent writes share one producer per Kafka cluster and are batched by it
(:class:`~edgebus.kafka.batching.BatchingProducer`). This is the SDK's hot path:
``edgebus bench produce`` measures it against raw aiokafka sends of the same bytes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any, NamedTuple

from aiokafka.errors import KafkaError

from edgebus.config import EdgeConfig
from edgebus.core.classification import Classification, classify, combine
from edgebus.core.conflict import operation_for
from edgebus.core.envelope import MAX_KEY_BYTES, Operation, new_event_id
from edgebus.core.hlc import HLCTimestamp, HybridLogicalClock
from edgebus.core.placement import Fallback, Placement, PlacementRequest, Strategy, place
from edgebus.core.vector_clock import Position
from edgebus.errors import (
    ComplianceViolation,
    EdgebusError,
    InfrastructureUnavailable,
    InvalidInput,
    UnknownRegion,
    WriteFailed,
)
from edgebus.kafka.batching import BatchingProducer
from edgebus.kafka.clients import start_producer, stop_quietly
from edgebus.kafka.topics import ensure_topics, events_topic
from edgebus.sdk.declassification import declassified
from edgebus.sdk.discovery import Discovery
from edgebus.sdk.metrics import BusMetrics
from edgebus.sdk.options import NO_WRITE_OPTIONS, WriteOptions
from edgebus.sdk.results import PreparedWrite, WriteReceipt
from edgebus.sdk.sessions import BusSession
from edgebus.sdk.write_retry import once_header, resent_encoding, unacknowledged
from edgebus.tracing import SpanKind, Tracer, attributes, tracer_for, with_traceparent
from edgebus.wire.event_codec import (
    RouteEncoding,
    encode_fields,
    encode_payload,
    fast_path_available,
    route_encoding,
)

__all__ = ["Writer", "write_kind"]

log = logging.getLogger("edgebus.edge")

_OP_SET, _OP_DELETE, _OP_INCREMENT, _OP_MERGE = (
    Operation.SET,
    Operation.DELETE,
    Operation.INCREMENT,
    Operation.MERGE,
)
#: tuple.__new__: builds a NamedTuple from its fields without the Python-level
#: __new__ frame (hot path)
_tuple_new = tuple.__new__
#: the metrics kinds of the write levels, computed once (write() looks one up per call)
_WRITE_KINDS: dict[Any, str] = {c: f"write.{c or 'eventual'}" for c in (None, "eventual", "causal")}
#: routes kept at the most before the cache starts over
_ROUTES_MAX = 4096


def write_kind(consistency: Any) -> str:
    """The metrics kind of a non-strong write (``write.invalid`` for a level that is
    not one)."""
    if consistency is None or consistency.__class__ is str:
        kind = _WRITE_KINDS.get(consistency)
        if kind is not None:
            return kind
    return "write.invalid"


class Route(NamedTuple):
    """Where the writes of one (classes, caller, placement options) go."""

    placement: Placement
    classes: tuple[str, ...]  # sorted, as headers and the envelope carry them
    topic: str
    #: what every event of the route encodes alike (None: the newest Event schema is
    #: not the one the hot path writes, so events go through encode_fields)
    encoding: RouteEncoding | None


class Writer:
    """The write path of one EdgeBus: placement, encoding and one batching producer per
    Kafka cluster."""

    def __init__(
        self,
        config: EdgeConfig,
        client_id: str,
        clusters: dict[str, str],
        session: BusSession,
        metrics: BusMetrics | None,
    ) -> None:
        self.config = config
        self.client_id = client_id
        self.clusters = clusters
        self.session = session
        self.metrics = metrics
        #: health and latency of the regions (set while the bus runs with discovery)
        self.discovery: Discovery | None = None
        self.closed = False
        self._rules = config.compliance.rules()
        self._known_classes = frozenset({"public", *config.compliance.data_classifications})
        self._regions = frozenset(config.regions)
        self._producers: dict[str, BatchingProducer] = {}
        self._ready: dict[str, asyncio.Task[BatchingProducer]] = {}
        self._hlc = HybridLogicalClock()
        #: spans of writes (monitoring.trace_enabled), else None
        self._tracer = tracer_for(config, "edgebus-client")
        self._routes: dict[tuple[Any, ...], Route] = {}
        # headers and record framing take the rest of a batch
        self._max_event_bytes = config.kafka.max_batch_bytes - 1024
        self._max_field_name_chars = config.compliance.max_field_name_chars
        self._classifier_cache_bytes = config.compliance.classifier_cache_bytes

    # ------------------------------------------------------------------ lifecycle

    async def connect(self) -> list[BaseException]:
        """Connect to every region's cluster; the failures (all of them: none answers)."""
        bootstraps = sorted(set(self.clusters.values()))
        results = await asyncio.gather(
            *(self.producer(b) for b in bootstraps), return_exceptions=True
        )
        return [r for r in results if isinstance(r, BaseException)]

    async def close(self) -> None:
        """Flush pending writes and disconnect."""
        self.closed = True
        for task in self._ready.values():
            if not task.done():
                task.cancel()
        batchers, self._producers = list(self._producers.values()), {}
        self._ready.clear()
        # a write Kafka does not acknowledge fails after the delivery timeout, but
        # aiokafka's own flush and stop wait for it for ever (a broker that is gone)
        timeout_s = self.config.kafka.delivery_timeout_ms / 1000
        await asyncio.gather(
            *(asyncio.wait_for(b.close(), timeout_s) for b in batchers), return_exceptions=True
        )
        await asyncio.gather(*(stop_quietly(b.producer) for b in batchers))

    # ------------------------------------------------------------------ placement

    def plan(self, key: str, data: Any, options: WriteOptions) -> Route:
        """Classify and place without writing (data a write would refuse for its size
        is refused here too, before classification)."""
        self._check_target(key, options)
        payload_json = encode_payload(data)
        if payload_json is not None and len(payload_json) > self._max_event_bytes:
            raise self._too_large(key, len(payload_json), "data")
        return self._place(key, data, options)[0]

    def _check_target(self, key: str, options: WriteOptions) -> None:
        if not isinstance(key, str) or not key:
            raise InvalidInput("key must be a non-empty string")
        region = options.region
        if region is not None and region not in self._regions:
            raise UnknownRegion(region, self.config.regions)

    def _too_large(self, key: str, size: int, what: str) -> InvalidInput:
        return InvalidInput(
            f"{what} for key {key[:80]!r} is {size} bytes, over kafka.max_batch_bytes "
            f"({self.config.kafka.max_batch_bytes}): store large blobs elsewhere and "
            "write a reference, or raise kafka.max_batch_bytes (and the topics' "
            "max.message.bytes)"
        )

    def _place(self, key: str, data: Any, options: WriteOptions) -> tuple[Route, Classification]:
        """Classify (field names over compliance.max_field_name_chars refused) and
        place; the caller has checked the key, the region and the data's size.

        The classes placed are the explicit ones plus what detection found; with
        ``declassify`` (and a label that leaves out some of what detection found) the
        explicit ones alone."""
        found = classify(
            data,
            options.classification,
            default=self._rules.default_classification,
            known_classes=self._known_classes,
            max_field_name_chars=self._max_field_name_chars,
            cache_bytes=self._classifier_cache_bytes,
        )
        classes = found.classes
        lowered = options.declassify is not None and bool(found.uncovered)
        if lowered:
            classes = combine(found.labelled, ())
        try:
            route = self._route(key, classes, options)
        except ComplianceViolation as e:
            if found.uncovered and not lowered:
                raise _raised_by_detection(e, found) from None
            raise
        if self._debug:
            self._log_placement(key, found, route.placement)
        return route, found

    @property
    def _debug(self) -> bool:
        return self.config.debug or log.isEnabledFor(logging.DEBUG)

    def _log_placement(self, key: str, found: Classification, placement: Placement) -> None:
        log.debug(
            "placed key=%s classes=%s findings=%s zones=%s allowed=%s -> %s%s",
            key,
            sorted(placement.classes),
            [f"{f.path}:{f.rule}" for f in found.findings],
            placement.zones_required,
            placement.allowed,
            placement.regions,
            " (rerouted)" if placement.rerouted else "",
        )

    def _route(self, key: str, classes: frozenset[str], options: WriteOptions) -> Route:
        discovery = self.discovery
        version = discovery.version if discovery is not None else 0
        short: tuple[Any, ...] | None = None
        if options.placement is None and self.config.edge_strategy != "balanced":
            # the common call: no placement options, so the route depends only on
            # the classes, the caller's region and what discovery knows
            short = (classes, options.region, version)
            route = self._routes.get(short)
            if route is not None:
                return route
        strategy = options.edge_strategy or self.config.edge_strategy
        balanced_key = key if strategy == "balanced" else ""
        # place() is pure: the same inputs always get the same placement, and the key
        # matters only to the balanced strategy, so most writes hit this cache.
        cache_key = (classes, options.region, options.placement, strategy, balanced_key, version)
        route = self._routes.get(cache_key)
        if route is None:
            fallback: Fallback = options.fallback_strategy or "none"
            route = self._new_route(classes, options, strategy, fallback, balanced_key)
            if len(self._routes) >= _ROUTES_MAX:
                self._routes.clear()
            self._routes[cache_key] = route
        if short is not None:
            self._routes[short] = route
        return route

    def _request(
        self, classes: frozenset[str], options: WriteOptions, strategy: Strategy,
        fallback: Fallback, key: str, down: frozenset[str] = frozenset(),
    ) -> PlacementRequest:
        """The placement request of a write (``down``: regions counted unhealthy beside
        what discovery says)."""
        discovery = self.discovery
        return self.config.placement_request(
            classes,
            home=options.region,
            preferred=options.preferred_locations,
            excluded=options.exclude_locations,
            compliance_zones=options.compliance_zones,
            replication_factor=options.replication_factor,
            strategy=strategy,
            key=key,
            latencies_ms=discovery.latencies_ms() if discovery is not None else {},
            unhealthy=(discovery.unhealthy() if discovery is not None else frozenset()) | down,
            fallback=fallback,
            min_replicas=options.min_replicas,
        )

    def _new_route(
        self, classes: frozenset[str], options: WriteOptions, strategy: Strategy,
        fallback: Fallback,
        key: str,
    ) -> Route:
        placement = place(self._rules, self._request(classes, options, strategy, fallback, key))
        if placement.shortfall:
            log.warning("writes of data classified %s: %s", ", ".join(sorted(classes)) or
                        "unclassified", placement.shortfall)
        classes_sorted = tuple(sorted(placement.classes))
        encoding = (
            route_encoding(placement.home, placement.regions, classes_sorted, self.client_id)
            if fast_path_available()
            else None
        )
        return Route(placement, classes_sorted, events_topic(placement.home), encoding)

    # ------------------------------------------------------------------ preparing

    def _operation(self, data: Any, options: WriteOptions) -> Operation:
        """The operation a write makes: ``operation``, else what ``conflict_resolution``
        picks for the data, else set."""
        given = options.operation
        op = _OP_SET if given is None else given
        mode = options.conflict_resolution
        if mode is None:
            return op
        try:
            mode_op = operation_for(mode, data)
        except ValueError as e:
            raise InvalidInput(str(e)) from None
        if given is not None and op is not mode_op and op is not _OP_DELETE:
            raise InvalidInput(
                f"operation {op.value!r} contradicts conflict_resolution {mode!r} (which "
                f"writes {mode_op.value}): pass one of them"
            )
        return op if op is _OP_DELETE else mode_op

    def prepare(self, key: str, data: Any, options: WriteOptions) -> PreparedWrite:
        """Validate, classify, place, stamp and encode a write without sending it."""
        if self.closed:
            raise InvalidInput("this EdgeBus is closed: create a new one")
        op = (
            (options.operation or _OP_SET) if options.conflict_resolution is None
            else self._operation(data, options)
        )
        self._check_target(key, options)
        # the size first: a huge record is refused for one encoding, never walked
        payload_json = encode_payload(data)
        if payload_json is not None and len(payload_json) > self._max_event_bytes:
            raise self._too_large(key, len(payload_json), "data")
        (placement, classes, topic, encoding), found = self._place(key, data, options)
        deps = self.session.token
        if options.session is not None:
            deps = deps.merge(self.session.decode(options.session))
        # a str of n characters has at most 4n UTF-8 bytes: encode only long keys
        if len(key) > MAX_KEY_BYTES // 4 and len(key.encode("utf-8")) > MAX_KEY_BYTES:
            raise InvalidInput(f"key is longer than {MAX_KEY_BYTES} bytes of UTF-8")
        _check_data(op, data)
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
                event_id, key, op, payload_json, placement.home, placement.regions, classes,
                hlc, deps.clock, self.client_id,
            )
        if options.declassify is not None and found.uncovered:
            encoded = declassified(
                encoded, options, found, classes, now_ms, self.client_id,
                self.config.compliance,
            )
        if options.fallback_strategy == "any_available":  # may be sent again elsewhere
            encoded = encoded._replace(headers=[*encoded.headers, once_header(placement.home)])
        size = len(encoded.value) + len(encoded.key)
        if size > self._max_event_bytes:
            raise self._too_large(key, size, "event")
        return PreparedWrite(
            event_id, key, op, data, classes, hlc, encoded, topic, placement, deps, self.client_id
        )

    # ------------------------------------------------------------------ writing

    async def write(self, key: str, data: Any, keywords: Mapping[str, Any]) -> WriteReceipt:
        """Append one event to its home region's topic; Kafka's receipt. Records the
        call (latency, failure) in the bus's metrics."""
        # recorded here, in one coroutine: this is the hot path, and a coroutine less
        # per write is measurable (bench produce)
        started = time.perf_counter()
        try:
            options = NO_WRITE_OPTIONS
            if keywords:
                options = WriteOptions.of(keywords)
                if options.expected_version is not None or options.timeout_ms is not None:
                    name = "expected_version" if options.timeout_ms is None else "timeout_ms"
                    raise InvalidInput(
                        f"{name} needs consistency='strong' (a conditional write commits "
                        "through the commit coordinator): pass consistency='strong'"
                    )
                if options.session is not None:
                    await self.session.check(options.session)
            tracer = self._tracer
            if tracer is None:
                receipt = await self._send(key, data, options)
            else:
                receipt = await self._traced_send(tracer, key, data, options)
        except asyncio.CancelledError:
            raise
        except BaseException:
            if self.metrics is not None:
                self.metrics.record(
                    write_kind(keywords.get("consistency")),
                    (time.perf_counter() - started) * 1000,
                    False,
                )
            raise
        if self.metrics is not None:
            self.metrics.record(
                write_kind(options.consistency), (time.perf_counter() - started) * 1000
            )
        return receipt

    async def _traced_send(
        self, tracer: Tracer, key: str, data: Any, options: WriteOptions
    ) -> WriteReceipt:
        """:meth:`_send` in an ``edgebus.write`` span whose ``traceparent`` the event
        carries (edgebus.tracing)."""
        with tracer.start_as_current_span("edgebus.write", kind=SpanKind.PRODUCER) as span:
            receipt = await self._send(key, data, options, traced=True)
            span.set_attributes(
                attributes(
                    region=receipt.region,
                    topic=receipt.topic,
                    partition=receipt.partition,
                    offset=receipt.offset,
                    event_id=receipt.event_id,
                    placement=",".join(receipt.placement),
                    classification=",".join(receipt.classification),
                )
            )
            return receipt

    async def _send(
        self, key: str, data: Any, options: WriteOptions, traced: bool = False
    ) -> WriteReceipt:
        prepared = self.prepare(key, data, options)
        batcher = self._producers.get(self.clusters[prepared.placement.home])
        if batcher is None:  # the first write to this cluster
            prepared, batcher = await self._first_producer(prepared, key, data, options)
        home = prepared.placement.home
        encoded = prepared.encoded
        topic = prepared.topic
        partition = batcher.partition(encoded.key)
        try:
            headers = with_traceparent(list(encoded.headers)) if traced else encoded.headers
            offset = await batcher.send(topic, partition, encoded.key, encoded.value, headers)
        except KafkaError as e:
            if options.fallback_strategy != "any_available":
                raise self._unacknowledged(prepared, e) from e
            prepared, batcher = await self._elsewhere(prepared, options, e)
            home, encoded, topic = prepared.placement.home, prepared.encoded, prepared.topic
            partition = batcher.partition(encoded.key)
            headers = with_traceparent(list(encoded.headers)) if traced else encoded.headers
            try:
                offset = await batcher.send(topic, partition, encoded.key, encoded.value,
                                            headers)
            except KafkaError as again:
                raise self._unacknowledged(prepared, again) from again
        hlc = prepared.hlc
        packed = (hlc.wall_ms << 16) | hlc.logical
        session = self.session
        if packed > session.own_hlc:
            session.own_hlc = packed
        if options.session:  # another session's token joins this one
            session.merge(
                prepared.dependencies.after_write(Position(home, partition, offset), packed)
            )
        elif session.token.clock.get(home, partition) < offset:
            # usually covered already: _acknowledged() advanced the clock
            session.token = session.token.after_write(Position(home, partition, offset))
        placement = prepared.placement
        # reads of the key fall back only to where it was placed (sdk/reads.py)
        session.remember_placement(key, placement.regions, packed)
        receipt: WriteReceipt = _tuple_new(
            WriteReceipt,
            (
                prepared.event_id, key, home, topic, partition, offset, placement.regions,
                prepared.classification, hlc, prepared.dependencies, placement.rerouted,
                placement.degraded, placement.shortfall,
            ),
        )
        return receipt

    def _unacknowledged(
        self, prepared: PreparedWrite, e: KafkaError, note: str = ""
    ) -> WriteFailed:
        why = str(e) if str(e).startswith(type(e).__name__) else f"{type(e).__name__}: {e}"
        return unacknowledged(prepared, why, self.config.kafka.delivery_timeout_ms, note)

    async def _elsewhere(
        self, prepared: PreparedWrite, options: WriteOptions, error: KafkaError
    ) -> tuple[PreparedWrite, BatchingProducer]:
        """any_available, after a send its home never acknowledged: the same event
        placed again with the home counted unhealthy (edgebus.sdk.write_retry)."""
        failed = prepared.placement.home
        discovery = self.discovery
        if discovery is not None:
            discovery.broker_failed(failed)
        strategy = options.edge_strategy or self.config.edge_strategy
        try:
            placement = place(self._rules, self._request(
                frozenset(prepared.classification), options, strategy, "any_available",
                prepared.key if strategy == "balanced" else "", frozenset({failed}),
            ))
        except EdgebusError as e:
            raise self._unacknowledged(
                prepared, error, f" No other region could take it: {e}"
            ) from error
        if placement.home == failed:
            raise self._unacknowledged(prepared, error, " No other region could take it.")
        log.warning(
            "write of %s: %s did not acknowledge event %s (%s); sending it again to %s "
            "(the same event: applied once)", prepared.key[:80], failed, prepared.event_id,
            type(error).__name__, placement.home,
        )
        again = prepared._replace(
            encoded=resent_encoding(prepared, placement), placement=placement,
            topic=events_topic(placement.home),
        )
        bootstrap = self.clusters[placement.home]
        return again, self._producers.get(bootstrap) or await self.producer(bootstrap)

    async def _first_producer(
        self, prepared: PreparedWrite, key: str, data: Any, options: WriteOptions
    ) -> tuple[PreparedWrite, BatchingProducer]:
        """Connect to the home region's cluster; with ``fallback_strategy="any_available"``
        a cluster that does not answer is left out and the write placed again."""
        home = prepared.placement.home
        try:
            return prepared, await self.producer(self.clusters[home])
        except InfrastructureUnavailable:
            if self.discovery is not None:
                self.discovery.broker_failed(home)
            if options.fallback_strategy != "any_available":
                raise
            # nothing was sent: place again without the region that did not answer
            again = self.prepare(key, data, options)
            if again.placement.home == home:
                raise
            log.warning(
                "write of %s: %s does not answer, falling back to %s",
                key, home, again.placement.home,
            )
            bootstrap = self.clusters[again.placement.home]
            return again, self._producers.get(bootstrap) or await self.producer(bootstrap)

    async def producer(self, bootstrap: str) -> BatchingProducer:
        """The batching producer of the cluster at ``bootstrap``, connected once."""
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
        regions = [r for r, b in self.clusters.items() if b == bootstrap]
        await ensure_topics(kafka, bootstrap, [events_topic(r) for r in regions])
        producer = await start_producer(kafka, bootstrap, "events", client_id=self.client_id)
        return BatchingProducer(producer, kafka.partitions, on_ack=self._acknowledged,
                                delivery_timeout_s=kafka.delivery_timeout_ms / 1000)

    def _acknowledged(
        self, topic: str, partition: int, last_offset: int, latency_ms: float
    ) -> None:
        # Once per acknowledged batch: the session covers every write of the batch
        # (all are this bus's own). Discovery learns the region's produce latency once
        # per batch too (its first write's wait).
        region = self.session.acknowledged(topic, partition, last_offset)
        if region is not None and self.discovery is not None:
            self.discovery.observe_produce(region, latency_ms)


def _raised_by_detection(error: ComplianceViolation, found: Classification) -> ComplianceViolation:
    """``error`` saying that detection, not the label, made the classes."""
    where = sorted({f.path or "the value" for f in found.findings if f.rule != "explicit"})
    raised = ComplianceViolation(
        error.classification, error.zones_required, error.regions_considered,
        f"{error.reason}. The write was labelled {','.join(sorted(found.labelled))}, but "
        f"detection found {','.join(sorted(found.uncovered))} (in {', '.join(where[:5])}) "
        "and an explicit classification only adds to what detection finds; to write it "
        "as labelled, pass declassify='<why>' (recorded in the event)",
    )
    return raised


def _check_data(op: Operation, data: Any) -> None:
    """The data an operation needs: none for a delete, a number to increment by, an
    object of fields to merge."""
    if op is _OP_SET:
        return
    if op is _OP_DELETE and data is not None:
        raise InvalidInput("a delete carries no data: pass data=None")
    if op is _OP_INCREMENT and (isinstance(data, bool) or not isinstance(data, int | float)):
        raise InvalidInput(f"an increment's data must be a number, got {data!r}")
    if op is _OP_MERGE and not isinstance(data, Mapping):
        raise InvalidInput(
            f"a merge's data must be an object (the fields to set), got {data!r:.80}"
        )
