"""Kafka record headers that edgebus writes: what routing needs without decoding a body.

Every value is bytes; text values are ASCII, except ``eb-declassified`` (UTF-8 JSON).
``schemas/README.md`` documents each.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from edgebus.core.hlc import HLCTimestamp
from edgebus.core.vector_clock import MAX_OFFSET, MAX_PARTITION, Position, VectorClock
from edgebus.errors import DecodeError

__all__ = [
    "H_CLASS",
    "H_DECLASSIFIED",
    "H_DEPS",
    "H_EVENT_ID",
    "H_HLC",
    "H_ONCE",
    "H_OP",
    "H_ORIGIN",
    "H_ORIGIN_POS",
    "H_PLACEMENT",
    "H_SCHEMA",
    "H_TXN",
    "MAX_DECLASSIFIED_BY_CHARS",
    "MAX_DECLASSIFIED_REASON_CHARS",
    "Declassified",
    "decode_headers",
    "encode_declassified",
    "format_position",
    "parse_declassified",
    "parse_position",
]

H_SCHEMA = "eb-schema"
H_EVENT_ID = "eb-event-id"
H_ORIGIN = "eb-origin"
H_OP = "eb-op"
H_PLACEMENT = "eb-placement"
H_CLASS = "eb-class"
H_HLC = "eb-hlc"
H_DEPS = "eb-deps"
H_ORIGIN_POS = "eb-origin-pos"
#: on an event a participant wrote for a committed strong write: the transaction id
#: (every participant writes its own; replicators do not copy it; applied once)
H_TXN = "eb-txn"
#: on an event its writer declassified: who lowered the classes detection found, when
#: and why (UTF-8 JSON, :class:`Declassified`); it travels with every copy
H_DECLASSIFIED = "eb-declassified"
#: on an event written with ``fallback_strategy="any_available"``: ASCII, the region
#: its writer first sent it to. A send that fails mid-flight is sent again, same event
#: id and HLC, to another region; every region applies the event id once, stamped with
#: this region as its origin, whichever attempt it reads first (copies keep it)
H_ONCE = "eb-once"


def format_position(position: Position) -> bytes:
    """``region:partition:offset`` as ASCII (region names never hold ':')."""
    return f"{position.region}:{position.partition}:{position.offset}".encode("ascii")


#: the headers edgebus writes, each always with a value
_OWN = frozenset(
    (H_SCHEMA, H_EVENT_ID, H_ORIGIN, H_OP, H_PLACEMENT, H_CLASS, H_HLC, H_DEPS, H_ORIGIN_POS,
     H_TXN, H_DECLASSIFIED, H_ONCE)
)

#: the longest ``reason`` and ``by`` of a declassification
MAX_DECLASSIFIED_REASON_CHARS = 1_000
MAX_DECLASSIFIED_BY_CHARS = 200
#: the longest ``eb-declassified`` header read
_MAX_DECLASSIFIED_BYTES = 8_192
_DECLASSIFIED_FIELDS = ("by", "at_ms", "reason", "detected", "written_as")


class Declassified(NamedTuple):
    """A declassification, as the ``eb-declassified`` header records it: ``by`` (who),
    ``at_ms`` (when, ms since the epoch), ``reason`` (why), ``detected`` (the classes
    detection found) and ``written_as`` (the classes the event was written with)."""

    by: str
    at_ms: int
    reason: str
    detected: tuple[str, ...]
    written_as: tuple[str, ...]


def encode_declassified(record: Declassified) -> bytes:
    """The header value: compact UTF-8 JSON, classes sorted."""
    return json.dumps(
        {"by": record.by, "at_ms": record.at_ms, "reason": record.reason,
         "detected": sorted(record.detected), "written_as": sorted(record.written_as)},
        ensure_ascii=False, separators=(",", ":"),
    ).encode("utf-8")


def parse_declassified(raw: bytes) -> Declassified:
    """Inverse of :func:`encode_declassified`; DecodeError for anything else: over
    8 KiB, not UTF-8 JSON, not an object, a field missing or of the wrong type, an
    empty or too long ``by`` or ``reason``, ``at_ms`` outside 0..2**48-1. Other
    fields are ignored."""
    try:
        if len(raw) > _MAX_DECLASSIFIED_BYTES:
            raise ValueError(f"longer than {_MAX_DECLASSIFIED_BYTES} bytes")
        data = json.loads(raw.decode("utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        missing = [f for f in _DECLASSIFIED_FIELDS if f not in data]
        if missing:
            raise ValueError(f"no {', '.join(missing)}")
        by, at_ms, reason = data["by"], data["at_ms"], data["reason"]
        if not (isinstance(by, str) and 0 < len(by.strip()) <= MAX_DECLASSIFIED_BY_CHARS):
            raise ValueError(f"by must be text of 1 to {MAX_DECLASSIFIED_BY_CHARS} characters")
        if not (isinstance(reason, str)
                and 0 < len(reason.strip()) <= MAX_DECLASSIFIED_REASON_CHARS):
            raise ValueError(
                f"reason must be text of 1 to {MAX_DECLASSIFIED_REASON_CHARS} characters")
        if type(at_ms) is not int or not 0 <= at_ms < 1 << 48:
            raise ValueError("at_ms must be milliseconds since the epoch")
        return Declassified(by, at_ms, reason, _classes(data, "detected"),
                            _classes(data, "written_as"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise DecodeError(f"Bad {H_DECLASSIFIED} header {_preview(raw)}: {e}") from None


def _classes(data: dict[str, Any], name: str) -> tuple[str, ...]:
    value = data[name]
    if not (isinstance(value, list) and len(value) <= 64
            and all(isinstance(c, str) and 0 < len(c) <= 64 for c in value)):
        raise ValueError(f"{name} must be a list of class names")
    return tuple(sorted(value))


#: the longest ``eb-origin-pos`` header read (a region name, a partition, an offset)
_MAX_POSITION_BYTES = 300


def parse_position(raw: bytes) -> Position:
    """Inverse of :func:`format_position`; DecodeError for anything else: a partition
    or offset that is not plain decimal digits, a partition outside 0..2**31-1 or an
    offset outside Kafka's 0..2**63-1 (stored, it would fail every commit), an empty or
    non-ASCII region, over 300 bytes, or no bytes at all."""
    try:
        if len(raw) > _MAX_POSITION_BYTES:
            raise ValueError(f"longer than {_MAX_POSITION_BYTES} bytes")
        region, partition_text, offset_text = raw.rsplit(b":", 2)
        # int() alone would also take signs, spaces and underscores
        if not (partition_text.isdigit() and offset_text.isdigit()):
            raise ValueError("partition and offset must be decimal digits")
        partition, offset = int(partition_text), int(offset_text)
        if not region or partition > MAX_PARTITION or offset > MAX_OFFSET:
            raise ValueError("region empty, or partition or offset out of Kafka's range")
        return Position(region.decode("ascii"), partition, offset)
    except (TypeError, AttributeError, UnicodeDecodeError, ValueError) as e:
        raise DecodeError(f"Bad {H_ORIGIN_POS} header {_preview(raw)}: {e}") from e


def decode_headers(headers: Iterable[tuple[str, bytes | None]] | None) -> dict[str, Any]:
    """Headers as plain values: lists for sets, dicts for clocks, ints for fingerprints.

    DecodeError naming the header if one of edgebus's own does not hold what edgebus
    writes there; any other header's value is shown as text (``None`` if it has none).
    """
    out: dict[str, Any] = {}
    for name, raw in headers or ():
        value: Any
        if type(raw) is not bytes:
            if raw is not None and not isinstance(raw, bytes | bytearray | memoryview):
                raise DecodeError(f"Bad {name!r:.80} header: its value is a "
                                  f"{type(raw).__name__}, not bytes")
            if raw is None and name in _OWN:
                raise DecodeError(f"Bad {name} header: it has no value")
            raw = None if raw is None else bytes(raw)
        try:
            if raw is None:
                value = None
            elif name == H_SCHEMA:
                value = raw[::-1].hex()
            elif name == H_HLC:
                ts = HLCTimestamp.decode(raw)
                value = {"wall_ms": ts.wall_ms, "logical": ts.logical}
            elif name == H_DEPS:
                value = VectorClock.decode(raw).to_json()
            elif name in (H_PLACEMENT, H_CLASS):
                value = _split(raw)
            elif name == H_ORIGIN_POS:
                value = parse_position(raw)._asdict()
            elif name == H_DECLASSIFIED:
                record = parse_declassified(raw)
                value = {**record._asdict(), "detected": list(record.detected),
                         "written_as": list(record.written_as)}
            else:
                value = raw.decode("utf-8", "backslashreplace")
        except DecodeError as e:
            if name in (H_ORIGIN_POS, H_DECLASSIFIED):
                raise
            raise DecodeError(f"Bad {name} header: {e}") from None
        out[name] = value
    return out


def _split(raw: bytes) -> Sequence[str]:
    text = raw.decode("ascii", "backslashreplace")
    return text.split(",") if text else []


def _preview(raw: object) -> str:
    """The start of a header value, for an error message."""
    if isinstance(raw, bytes | bytearray):
        return repr(bytes(raw[:80]))
    return f"of type {type(raw).__name__}"
