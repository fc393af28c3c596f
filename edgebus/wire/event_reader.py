"""A fast reader for the fields consumers need, specialized for ``io.edgebus.Event`` v2.

The mirror of :mod:`edgebus.wire.event_writer`: region services decode every record
they apply or copy, and fastavro's generic reader plus pydantic validation of
:class:`~edgebus.core.envelope.EventEnvelope` cost several times more than the rest of
the work. :func:`read_event` walks the Avro binary body of the current schema directly
and checks the envelope's invariants itself (UUID event id, key size, placement starting
with the origin and without repeats); records of any other known schema version go
through the generic path (:func:`~edgebus.wire.event_codec.decode_event`). The
dependencies are skipped, not decoded: nothing on the apply path needs them.

Both paths give the same :class:`ReadEvent` for the same record
(``tests/unit/test_event_reader.py`` checks that on generated events). The optional C
module reads the common case (a well-formed v2 record that passes every check) in one
call and hands everything else to the pure-Python reader, which is the reference: the
same event, or the DecodeError with its reason.
"""

from __future__ import annotations

import re
import uuid
from typing import Any, NamedTuple

import orjson

from edgebus.core.clock_codec import MAX_OFFSET, MAX_PARTITION
from edgebus.core.envelope import MAX_KEY_BYTES, Operation
from edgebus.core.hlc import HLCTimestamp
from edgebus.core.speedups import NATIVE
from edgebus.errors import DecodeError
from edgebus.wire.event_writer import IMPLEMENTED_FINGERPRINT
from edgebus.wire.payload_depth import MAX_PAYLOAD_DEPTH, too_deep

__all__ = ["EVENT_V2_PREFIX", "READ_OPERATIONS", "ReadEvent", "read_event"]

_OPERATIONS = tuple(Operation[name] for name in ("SET", "DELETE", "INCREMENT", "APPEND", "MERGE"))
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_MAGIC = b"\xc3\x01"
_FP_BYTES = IMPLEMENTED_FINGERPRINT.to_bytes(8, "little")
#: the first bytes of every io.edgebus.Event v2 record: single-object magic, fingerprint
EVENT_V2_PREFIX = _MAGIC + _FP_BYTES
_PREFIX = EVENT_V2_PREFIX
#: the operations in the order of the schema's enum symbols
READ_OPERATIONS = _OPERATIONS
#: the C reader of the common case (edgebus._speedups), when compiled
_native_read: Any = getattr(NATIVE, "read_event", None)


class ReadEvent(NamedTuple):
    """The fields of an event that materializing and copying need."""

    event_id: str
    key: str
    operation: Operation
    payload: Any
    origin_region: str
    placement: tuple[str, ...]
    classification: tuple[str, ...]
    hlc: HLCTimestamp
    schema_version: int
    writer: str | None


class _Corrupt(Exception):
    pass


def _long(data: bytes, pos: int) -> tuple[int, int]:
    b = data[pos]
    if b < 0x80:  # one byte: most lengths, counts and small numbers
        return (b >> 1) ^ -(b & 1), pos + 1
    pos += 1
    n = b & 0x7F
    shift = 7
    while b & 0x80:
        b = data[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if shift > 70:
            raise _Corrupt("varint too long")
    if n >> 64:
        raise _Corrupt("varint beyond 64 bits")
    return (n >> 1) ^ -(n & 1), pos


def _string(data: bytes, pos: int) -> tuple[str, int]:
    b = data[pos]
    if b < 0x80:
        length, pos = b >> 1, pos + 1
        if b & 1:
            raise _Corrupt("negative string length")
    else:
        length, pos = _long(data, pos)
    end = pos + length
    if length < 0 or end > len(data):
        raise _Corrupt("string runs past the end")
    return data[pos:end].decode("utf-8"), end


# Every length, count and block size is checked against the bytes that remain, so each
# step moves forward and a corrupt or hostile record is a DecodeError in time linear in
# its size (a negative block size once sent the reader backwards for ever).


def _block_count(data: bytes, pos: int) -> tuple[int, int, int]:
    """An array block's header: ``(count, block size or -1, position after it)``; a
    count of 0 ends the array. Each item takes at least one byte."""
    count, pos = _long(data, pos)
    size = -1
    if count < 0:
        count = -count
        size, pos = _long(data, pos)
        if size < 0 or pos + size > len(data):
            raise _Corrupt("array block size runs past the end")
    if count > len(data) - pos:
        raise _Corrupt("array block count is larger than the bytes left")
    return count, size, pos


def _string_array(data: bytes, pos: int) -> tuple[tuple[str, ...], int]:
    items: list[str] = []
    while True:
        count, _, pos = _block_count(data, pos)
        if count == 0:
            return tuple(items), pos
        for _ in range(count):
            item, pos = _string(data, pos)
            items.append(item)


def _skip_dependencies(data: bytes, pos: int) -> int:
    while True:
        count, size, pos = _block_count(data, pos)
        if count == 0:
            return pos
        if size >= 0:
            pos += size  # checked against the end above
            continue
        for _ in range(count):
            # checked as the generic decoder's vector clock checks each entry
            length, pos = _long(data, pos)
            end = pos + length
            if length <= 0 or end > len(data):
                raise _Corrupt("dependency region is empty or runs past the end")
            data[pos:end].decode("utf-8")
            partition, pos = _long(data, end)
            offset, pos = _long(data, pos)
            if not (0 <= partition <= MAX_PARTITION and 0 <= offset <= MAX_OFFSET):
                raise _Corrupt(f"dependency position {partition}:{offset} is out of range")


def read_event(value: bytes | None) -> ReadEvent:
    """The event in a record value (any known schema version); DecodeError otherwise."""
    if _native_read is not None and type(value) is bytes:
        event = _native_read(value, _PREFIX, _OPERATIONS, ReadEvent, HLCTimestamp, orjson.loads)
        if event is not None:  # the common case; anything else is decided below
            return event  # type: ignore[no-any-return]
    return _read_event(value)


def _read_event(value: bytes | None) -> ReadEvent:
    """:func:`read_event` in pure Python (the C reader's reference)."""
    if value is None:
        raise DecodeError("Empty record value (a tombstone is not an edgebus event)")
    if value[:2] != _MAGIC or value[2:10] != _FP_BYTES:
        return _generic(value)
    try:
        pos = 10
        event_id, pos = _string(value, pos)
        key, pos = _string(value, pos)
        op_index, pos = _long(value, pos)
        branch, pos = _long(value, pos)
        payload: Any = None
        if branch == 1:
            length, pos = _long(value, pos)
            end = pos + length
            if length < 0 or end > len(value):
                raise _Corrupt("payload runs past the end")
            payload = orjson.loads(value[pos:end])
            if too_deep(payload, length):
                raise _Corrupt(f"payload nests deeper than {MAX_PAYLOAD_DEPTH} levels")
            pos = end
        elif branch != 0:
            raise _Corrupt(f"payload_json union branch {branch}")
        origin, pos = _string(value, pos)
        placement, pos = _string_array(value, pos)
        classification, pos = _string_array(value, pos)
        wall_ms, pos = _long(value, pos)
        logical, pos = _long(value, pos)
        pos = _skip_dependencies(value, pos)
        schema_version, pos = _long(value, pos)
        if not -(2**31) <= schema_version < 2**31:
            raise _Corrupt(f"schema_version {schema_version} is not a 32-bit int")
        branch, pos = _long(value, pos)
        writer = None
        if branch == 1:
            writer, pos = _string(value, pos)
        elif branch != 0:
            raise _Corrupt(f"writer union branch {branch}")
        if not 0 <= op_index < len(_OPERATIONS):
            raise _Corrupt(f"operation index {op_index}")
        operation = _OPERATIONS[op_index]
    except (_Corrupt, IndexError, UnicodeDecodeError, orjson.JSONDecodeError) as e:
        raise DecodeError(f"Corrupt Avro body for schema io.edgebus.Event v2: {e}") from None
    if pos != len(value):
        raise DecodeError(
            f"Corrupt Avro body for schema io.edgebus.Event v2: {len(value) - pos} bytes "
            "after the record"
        )
    if _UUID.fullmatch(event_id) is None:
        event_id = _normalized_uuid(event_id)
    _check(key, origin, placement, wall_ms, logical)
    if operation is Operation.DELETE and payload is not None:
        raise DecodeError("Record decodes as Avro but is not a valid edgebus event: "
                          "a delete carries no payload")
    if operation is Operation.INCREMENT and (
        type(payload) is bool or not isinstance(payload, int | float)
    ):
        raise DecodeError("Record decodes as Avro but is not a valid edgebus event: "
                          f"an increment's payload must be a number, got {payload!r:.80}")
    return ReadEvent(
        event_id, key, operation, payload, origin, placement, classification,
        HLCTimestamp(wall_ms, logical), schema_version, writer,
    )


def _normalized_uuid(event_id: str) -> str:
    try:
        return str(uuid.UUID(event_id))
    except ValueError:
        raise DecodeError(
            "Record decodes as Avro but is not a valid edgebus event: "
            f"event_id {event_id!r:.60} is not a UUID"
        ) from None


def _check(
    key: str, origin: str, placement: tuple[str, ...], wall_ms: int, logical: int
) -> None:
    problem = None
    if not key:
        problem = "key is empty"
    elif len(key) > MAX_KEY_BYTES // 4 and len(key.encode("utf-8")) > MAX_KEY_BYTES:
        problem = f"key is longer than {MAX_KEY_BYTES} bytes of UTF-8"
    elif not origin or not placement or placement[0] != origin:
        problem = f"placement {list(placement)} must start with the origin region {origin!r}"
    elif len(set(placement)) != len(placement):
        problem = f"placement {list(placement)} repeats a region"
    elif not (0 <= logical <= 0xFFFF and 0 <= wall_ms < 2**48):
        problem = f"HLC ({wall_ms}, {logical}) is out of range"
    if problem is not None:
        raise DecodeError(f"Record decodes as Avro but is not a valid edgebus event: {problem}")


def _generic(value: bytes) -> ReadEvent:
    from edgebus.wire.event_codec import decode_event

    e = decode_event(value)
    _check(e.key, e.origin_region, e.placement, e.hlc.wall_ms, e.hlc.logical)
    return ReadEvent(
        e.event_id, e.key, e.operation, e.payload, e.origin_region, e.placement,
        e.classification, e.hlc, e.schema_version, e.writer,
    )
