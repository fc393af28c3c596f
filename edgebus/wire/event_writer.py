"""A specialized Avro binary writer for ``io.edgebus.Event`` v2: the producer's hot path.

fastavro's generic writer walks the schema for every record; this writer is the same
encoding unrolled for one schema, about five times faster on small events. It is used
only while the newest Event schema is exactly the one it implements (checked by
fingerprint; otherwise the codec falls back to fastavro), and the test suite checks
that both produce identical bytes for arbitrary events.

Avro binary encoding, as used here: int/long are zig-zag varints; a string is its
UTF-8 length (long) then the bytes; an enum is its symbol index (int); a union is the
branch index (long) then the value; an array is one block (count, items) then 0.
"""

from __future__ import annotations

from functools import lru_cache

from edgebus.core.vector_clock import VectorClock

__all__ = [
    "IMPLEMENTED_FINGERPRINT",
    "OPERATION_INDEX",
    "encode_dependencies",
    "event_v2_value",
    "record_tail",
    "route_chunk",
]

#: fingerprint (CRC-64-AVRO of the Parsing Canonical Form) of schemas/event.v2.avsc
IMPLEMENTED_FINGERPRINT = 0x3BFC492E43D4CC8A
OPERATION_INDEX = {"SET": 0, "DELETE": 1, "INCREMENT": 2, "APPEND": 3, "MERGE": 4}


def _long(n: int) -> bytes:
    z = (n << 1) ^ (n >> 63)
    if z < 0x80:
        return _SMALL[z]
    if z < 0x4000:  # two bytes: payload lengths, mostly
        return bytes(((z & 0x7F) | 0x80, z >> 7))
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


_SMALL = tuple(bytes([i]) for i in range(0x80))


def _string(text: str) -> bytes:
    raw = text.encode("utf-8")
    return _long(len(raw)) + raw


@lru_cache(maxsize=4096)
def _cached_string(text: str) -> bytes:
    return _string(text)


@lru_cache(maxsize=1024)
def _string_array(items: tuple[str, ...]) -> bytes:
    if not items:
        return b"\x00"
    return _long(len(items)) + b"".join(_string(i) for i in items) + b"\x00"


def _wall(wall_ms: int) -> bytes:
    # many writes share a millisecond: reuse its 6-byte varint
    global _last_wall
    if _last_wall[0] != wall_ms:
        _last_wall = (wall_ms, _long(wall_ms))
    return _last_wall[1]


_last_wall: tuple[int, bytes] = (-1, b"")


@lru_cache(maxsize=65_536)
def _position(region: str, partition: int, offset: int) -> bytes:
    # one Position record; a session's clock changes one entry per write, so the
    # other entries of the next write's dependencies come from this cache
    return _cached_string(region) + _long(partition) + _long(offset)


def encode_dependencies(clock: VectorClock) -> bytes:
    """A clock as the Event record's ``dependencies`` array (cached for the last clock:
    writes between two acknowledgements share their session's clock)."""
    global _last_dependencies
    last_clock, last_bytes = _last_dependencies
    if clock is last_clock:  # writes between two acks share their session's clock
        return last_bytes
    entries = clock.entries()
    if not entries:
        return b"\x00"
    parts = [_long(len(entries))]
    parts += [_position(r, p, entries[r, p]) for r, p in sorted(entries)]
    parts.append(b"\x00")
    encoded = b"".join(parts)
    _last_dependencies = (clock, encoded)
    return encoded


_last_dependencies: tuple[object, bytes] = (None, b"")


#: single-object header of the implemented schema: magic, then the fingerprint
_PREFIX_V2 = b"\xc3\x01" + IMPLEMENTED_FINGERPRINT.to_bytes(8, "little")
_OPERATION_BYTES = {name: _SMALL[index << 1] for name, index in OPERATION_INDEX.items()}
#: a 36-character event id (every id new_event_id makes): its length, as Avro writes it
_UUID_LENGTH = _long(36)


def route_chunk(origin_region: str, placement: tuple[str, ...], classes: tuple[str, ...]) -> bytes:
    """Origin, placement and classification as Avro writes them: they follow each
    other in the record and are the same for every write of one route."""
    return _cached_string(origin_region) + _string_array(placement) + _string_array(classes)


def record_tail(schema_version: int, writer: str | None) -> bytes:
    """The last two fields (schema version, writer): the same for every write of a bus."""
    return _long(schema_version) + (b"\x00" if writer is None else b"\x02" + _string(writer))


def event_v2_value(
    event_id: bytes,
    key: bytes,
    operation: str,
    payload_json: bytes | None,
    route: bytes,
    wall_ms: int,
    logical: int,
    dependencies: VectorClock,
    tail: bytes,
) -> bytes:
    """The whole record value of one Event v2 (single-object header and body): the
    producer's hot path. ``event_id`` and ``key`` are UTF-8, ``route`` is
    :func:`route_chunk` and ``tail`` :func:`record_tail`. Same bytes as the header
    followed by :func:`write_event_v2`."""
    n = len(key)
    return b"".join(
        (
            _PREFIX_V2,
            _UUID_LENGTH if len(event_id) == 36 else _long(len(event_id)),
            event_id,
            _SMALL[n << 1] if n < 0x40 else _long(n),
            key,
            _OPERATION_BYTES[operation],
            b"\x00" if payload_json is None else b"\x02" + _long(len(payload_json)),
            payload_json or b"",
            route,
            _wall(wall_ms),
            _SMALL[logical << 1] if logical < 0x40 else _long(logical),
            encode_dependencies(dependencies),
            tail,
        )
    )
