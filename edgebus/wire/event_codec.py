"""EventEnvelope <-> Kafka record (key, single-object Avro value, headers)."""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any, NamedTuple

import orjson
from pydantic import ValidationError

from edgebus.core.envelope import EventEnvelope, Operation
from edgebus.core.hlc import HLCTimestamp
from edgebus.core.speedups import NATIVE
from edgebus.core.vector_clock import VectorClock
from edgebus.errors import DecodeError, InvalidInput
from edgebus.wire.event_writer import (
    IMPLEMENTED_FINGERPRINT,
    OPERATION_INDEX,
    encode_dependencies,
    event_v2_value,
    record_tail,
    route_chunk,
)
from edgebus.wire.headers import (
    H_CLASS,
    H_DEPS,
    H_EVENT_ID,
    H_HLC,
    H_OP,
    H_ORIGIN,
    H_PLACEMENT,
    H_SCHEMA,
)
from edgebus.wire.payload_depth import MAX_PAYLOAD_DEPTH, too_deep
from edgebus.wire.schema_registry import RegisteredSchema, default_registry
from edgebus.wire.single_object import MAGIC, decode_single_object, encode_single_object

__all__ = [
    "EVENT_SCHEMA",
    "EncodedEvent",
    "RouteEncoding",
    "decode_event",
    "encode_event",
    "encode_fields",
    "encode_payload",
    "to_avro_record",
]

EVENT_SCHEMA = "io.edgebus.Event"
# datetimes and dataclasses are refused like the standard library does (they would come
# back as strings or dicts); str/int/dict/list subclasses and enums are written as JSON
_JSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


class EncodedEvent(NamedTuple):
    """What goes to Kafka for one event."""

    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


def encode_payload(payload: Any) -> bytes | None:
    """The payload as compact UTF-8 JSON, or InvalidInput saying what is wrong.

    JSON as any consumer reads it: object keys are strings, numbers are finite and
    integers fit in 64 bits; a value that JSON would change (an int key turned into a
    string) is refused rather than rewritten.
    """
    if payload is None:
        return None
    try:
        encoded = orjson.dumps(payload, option=_JSON_OPTIONS)
    except (TypeError, ValueError) as e:
        _check_keys(payload)  # name the offending key, when that is the problem
        raise InvalidInput(
            f"data is not JSON: {e}. Pass dicts with string keys, lists, strings, finite "
            "numbers (integers within 64 bits), booleans and None only."
        ) from e
    if too_deep(payload, len(encoded)):
        raise InvalidInput(
            f"data nests deeper than {MAX_PAYLOAD_DEPTH} levels (lists and objects within "
            "each other): flatten it"
        )
    # orjson writes NaN and infinities as null: look for them only when a null appears
    if b"null" in encoded and _has_non_finite(payload):
        raise InvalidInput(
            "data is not JSON: it holds NaN or an infinity, which JSON cannot represent. "
            "Pass finite numbers (or None)."
        )
    return encoded


def _check_keys(value: Any) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if key.__class__ is not str:
                raise InvalidInput(
                    f"data has a {type(key).__name__} key {key!r}: JSON object keys are "
                    "strings, so it would come back changed. Use string keys."
                )
            _check_keys(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _check_keys(item)


def _has_non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_has_non_finite(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_has_non_finite(v) for v in value)
    return False


def encode_event(
    event: EventEnvelope, payload_json: bytes | None = None, schema: RegisteredSchema | None = None
) -> EncodedEvent:
    """Encode an envelope; pass ``payload_json`` when the caller already serialized it."""
    return encode_fields(
        event_id=event.event_id,
        key=event.key,
        operation=event.operation,
        payload_json=encode_payload(event.payload) if payload_json is None else payload_json,
        origin_region=event.origin_region,
        placement=event.placement,
        classification=event.classification,
        hlc=event.hlc,
        dependencies=event.dependencies,
        writer=event.writer,
        schema=schema,
    )


def encode_fields(
    event_id: str,
    key: str,
    operation: Operation,
    payload_json: bytes | None,
    origin_region: str,
    placement: tuple[str, ...],
    classification: tuple[str, ...],
    hlc: HLCTimestamp,
    dependencies: VectorClock,
    writer: str | None,
    schema: RegisteredSchema | None = None,
) -> EncodedEvent:
    """Encode an event from its fields (the producer's hot path: no envelope object)."""
    schema = schema or _latest_event_schema()
    if schema.fingerprint == IMPLEMENTED_FINGERPRINT:
        return route_encoding(origin_region, placement, classification, writer).encode(
            event_id, key, operation, payload_json, hlc, dependencies
        )
    envelope = EventEnvelope.model_construct(
        event_id=event_id,
        key=key,
        operation=operation,
        origin_region=origin_region,
        placement=placement,
        classification=classification,
        hlc=hlc,
        dependencies=dependencies,
        writer=writer,
    )
    value = encode_single_object(
        schema, to_avro_record(envelope, payload_json, schema.version)
    )
    headers = [
        *_route_headers(schema.fingerprint_bytes, origin_region, placement, classification),
        (H_EVENT_ID, event_id.encode("ascii")),
        (H_OP, _OP_BYTES[operation]),
        (H_HLC, hlc.encode()),
        (H_DEPS, dependencies.encode()),
    ]
    return EncodedEvent(key.encode("utf-8"), value, headers)


_latest: tuple[object, RegisteredSchema | None] = (None, None)


def _latest_event_schema() -> RegisteredSchema:
    # the newest Event schema of the default registry, looked up once per registry
    global _latest
    registry = default_registry()
    cached_for, schema = _latest
    if cached_for is not registry or schema is None:
        schema = registry.latest(EVENT_SCHEMA)
        _latest = (registry, schema)
    return schema


_OP_BYTES = {op: op.value.encode("ascii") for op in Operation}
_OP_NAMES = {op: op.name for op in Operation}
#: the Avro enum byte of each operation (its symbol index, zig-zag)
_OP_AVRO = {op: bytes((OPERATION_INDEX[op.name] << 1,)) for op in Operation}
_HEADER_NAMES = (H_EVENT_ID, H_OP, H_HLC, H_DEPS)

#: the compiled accelerator (edgebus._speedups), or None
_native: Any = NATIVE


class RouteEncoding:
    """Everything encoded once per route (origin, placement, classes, writer) that
    every event of the route repeats: the producer's hot path encodes the rest.

    Valid while the newest Event schema is the one :mod:`edgebus.wire.event_writer`
    implements; :func:`route_encoding` returns None otherwise.
    """

    __slots__ = ("chunk", "headers", "tail")

    def __init__(
        self,
        origin_region: str,
        placement: tuple[str, ...],
        classification: tuple[str, ...],
        writer: str | None,
    ) -> None:
        self.chunk = route_chunk(origin_region, placement, classification)
        self.tail = record_tail(_latest_event_schema().version, writer)
        self.headers = _route_headers(
            _latest_event_schema().fingerprint_bytes, origin_region, placement, classification
        )

    def encode(
        self,
        event_id: str,
        key: str,
        operation: Operation,
        payload_json: bytes | None,
        hlc: HLCTimestamp,
        dependencies: VectorClock,
    ) -> EncodedEvent:
        """One event of this route: same result as :func:`encode_fields`."""
        wall_ms, logical = hlc
        if logical > 0xFFFF or not 0 <= wall_ms < 1 << 48:
            hlc.encode()  # raises InvalidInput naming the bad timestamp
        if _native is None:
            return self.encode_python(event_id, key, operation, payload_json, hlc, dependencies)
        return _native.encode_event(  # type: ignore[no-any-return]
            EncodedEvent,
            _HEADER_NAMES,
            self.headers,
            _PREFIX,
            event_id,
            key,
            _OP_AVRO[operation],
            _OP_BYTES[operation],
            payload_json,
            self.chunk,
            wall_ms,
            logical,
            encode_dependencies(dependencies),
            dependencies.encode(),
            self.tail,
        )

    def encode_python(
        self,
        event_id: str,
        key: str,
        operation: Operation,
        payload_json: bytes | None,
        hlc: HLCTimestamp,
        dependencies: VectorClock,
    ) -> EncodedEvent:
        """:meth:`encode` in pure Python (used without the C module)."""
        event_id_bytes = event_id.encode("utf-8")  # as the C module writes it
        key_bytes = key.encode("utf-8")
        wall_ms, logical = hlc
        value = event_v2_value(
            event_id_bytes,
            key_bytes,
            _OP_NAMES[operation],
            payload_json,
            self.chunk,
            wall_ms,
            logical,
            dependencies,
            self.tail,
        )
        headers = [
            *self.headers,
            (H_EVENT_ID, event_id_bytes),
            (H_OP, _OP_BYTES[operation]),
            (H_HLC, ((wall_ms << 16) | logical).to_bytes(8, "big")),
            (H_DEPS, dependencies.encode()),
        ]
        return EncodedEvent(key_bytes, value, headers)


_PREFIX = MAGIC + IMPLEMENTED_FINGERPRINT.to_bytes(8, "little")


@lru_cache(maxsize=1024)
def route_encoding(
    origin_region: str,
    placement: tuple[str, ...],
    classification: tuple[str, ...],
    writer: str | None,
) -> RouteEncoding:
    """The :class:`RouteEncoding` of a route (cached)."""
    return RouteEncoding(origin_region, placement, classification, writer)


def fast_path_available() -> bool:
    """True while the newest Event schema is the one the hot path writes."""
    return _latest_event_schema().fingerprint == IMPLEMENTED_FINGERPRINT


@lru_cache(maxsize=1024)
def _route_headers(
    fingerprint: bytes, origin: str, placement: tuple[str, ...], classes: tuple[str, ...]
) -> tuple[tuple[str, bytes], ...]:
    # the headers every write of one route shares
    return (
        (H_SCHEMA, fingerprint),
        (H_ORIGIN, origin.encode("ascii")),
        (H_PLACEMENT, ",".join(placement).encode("ascii")),
        (H_CLASS, ",".join(classes).encode("ascii")),
    )


def to_avro_record(
    event: EventEnvelope, payload_json: bytes | None, schema_version: int
) -> dict[str, Any]:
    """The envelope as the dict fastavro writes (field names of the Event schema)."""
    return {
        "event_id": event.event_id,
        "key": event.key,
        "operation": event.operation.name,
        "payload_json": None if payload_json is None else payload_json.decode("utf-8"),
        "origin_region": event.origin_region,
        "placement": list(event.placement),
        "classification": list(event.classification),
        "hlc": {"wall_ms": event.hlc.wall_ms, "logical": event.hlc.logical},
        "dependencies": [
            {"region": r, "partition": p, "offset": o}
            for (r, p), o in sorted(event.dependencies.entries().items())
        ],
        "schema_version": schema_version,
        "writer": event.writer,
    }


def decode_event(value: bytes | None) -> EventEnvelope:
    """An envelope from a record value of any known Event schema version."""
    if value is None:
        raise DecodeError("Empty record value (a tombstone is not an edgebus event)")
    registry = default_registry()
    _, record = decode_single_object(value, registry, registry.latest(EVENT_SCHEMA))
    try:
        payload_json = record["payload_json"]
        payload = None if payload_json is None else orjson.loads(payload_json)
        if too_deep(payload, len(payload_json or "")):
            raise ValueError(f"payload nests deeper than {MAX_PAYLOAD_DEPTH} levels")
        return EventEnvelope(
            event_id=record["event_id"],
            key=record["key"],
            operation=Operation[record["operation"]],
            payload=payload,
            origin_region=record["origin_region"],
            placement=tuple(record["placement"]),
            classification=tuple(record["classification"]),
            hlc=HLCTimestamp(record["hlc"]["wall_ms"], record["hlc"]["logical"]),
            dependencies=VectorClock(
                {(d["region"], d["partition"]): d["offset"] for d in record["dependencies"]}
            ),
            schema_version=record["schema_version"],
            writer=record.get("writer"),
        )
    except (KeyError, ValueError, ValidationError, InvalidInput) as e:
        raise DecodeError(f"Record decodes as Avro but is not a valid edgebus event: {e}") from e
