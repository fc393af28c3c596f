"""The binary wire format of a vector clock: its entries to bytes and back.

:class:`~edgebus.core.vector_clock.VectorClock` encodes and decodes itself with this
module; the codec works on the plain entries ``{(region, partition): offset}``.

Wire format, version 1
----------------------
Every integer below is an unsigned LEB128 varint: seven bits per byte, least
significant group first, the high bit (0x80) set on every byte except the last.
Only the shortest form is valid (a multi-byte varint never ends in 0x00) and a
varint is at most 9 bytes long (values below 2**63)::

    clock        = version region_count region{region_count}
    version      = 0x01                     one byte
    region_count = varint                   number of regions that follow
    region       = name_len name entry_count entry{entry_count}
    name_len     = varint                   length of name in bytes, at least 1
    name         = the region name in UTF-8
    entry_count  = varint                   at least 1
    entry        = partition offset
    partition    = varint                   0 .. 2**31 - 1 (a Kafka int32)
    offset       = varint                   0 .. 2**63 - 1 (a Kafka int64)

Regions appear in strictly increasing order of their UTF-8 bytes (the same as the
code-point order of the names); within a region, entries appear in strictly
increasing partition order; a region appears only if it has at least one entry.
Hence equal clocks encode to equal bytes, and :func:`decode_entries` accepts exactly
this canonical form and nothing after it (so ``decode(b).encode() == b``). The empty
clock is ``01 00``. For example the clock
``{("eu-west-1", 0): 7, ("us-east-1", 0): 42, ("us-east-1", 3): 300}`` is::

    01                              version 1
    02                              2 regions
    09 65 75 2d 77 65 73 74 2d 31   "eu-west-1"
    01                              1 entry
    00 07                           partition 0, offset 7
    09 75 73 2d 65 61 73 74 2d 31   "us-east-1"
    02                              2 entries
    00 2a                           partition 0, offset 42
    03 ac 02                        partition 3, offset 300

Encoding and decoding are on the hot paths (every write carries its dependencies,
every replayed event is decoded): the common cases (one-byte counts and partitions,
offsets up to three or four bytes) are unrolled inline, the rare ones go through
:func:`_append_varint` / :func:`_read_varint`.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final

from edgebus.errors import DecodeError

__all__ = [
    "EMPTY_BYTES",
    "MAX_OFFSET",
    "MAX_PARTITION",
    "WIRE_VERSION",
    "decode_entries",
    "encode_entries",
]

#: The version byte that starts every encoded clock.
WIRE_VERSION: Final = 1
#: Largest partition number a clock accepts (Kafka partitions are int32).
MAX_PARTITION: Final = 2**31 - 1
#: Largest offset a clock accepts (Kafka offsets are int64).
MAX_OFFSET: Final = 2**63 - 1
#: The encoding of the empty clock.
EMPTY_BYTES: Final = b"\x01\x00"

_Key = tuple[str, int]

# ------------------------------------------------------------------------------ encoding


def encode_entries(entries: Mapping[_Key, int]) -> bytes:
    """The canonical version-1 bytes of ``{(region, partition): offset}`` (entries
    already checked: non-empty UTF-8 regions, partitions and offsets in range)."""
    if not entries:
        return EMPTY_BYTES
    # Built as a list of byte values: list.append is the cheapest per-byte step in
    # CPython. Counts are written into a one-byte slot, widened in the rare case
    # (>= 128 regions or partitions in a region) that they need more.
    out: list[int] = [WIRE_VERSION, 0]
    append = out.append
    regions = 0
    region = ""
    count_at = 0
    count = 0
    for key in sorted(entries):
        if key[0] != region:
            if count:
                _set_count(out, count_at, count)
            region = key[0]
            out += _HEADS.get(region) or _region_head(region)
            count_at = len(out)
            append(0)
            count = 0
            regions += 1
        partition = key[1]
        if partition < 0x80:
            append(partition)
        else:
            _append_varint(append, partition)
        offset = entries[key]
        # The offset varint, unrolled up to 4 bytes (the encoder's hot path).
        if offset < 0x80:
            append(offset)
        elif offset < 0x4000:
            append(offset & 0x7F | 0x80)
            append(offset >> 7)
        elif offset < 0x200000:
            append(offset & 0x7F | 0x80)
            append(offset >> 7 & 0x7F | 0x80)
            append(offset >> 14)
        elif offset < 0x10000000:
            append(offset & 0x7F | 0x80)
            append(offset >> 7 & 0x7F | 0x80)
            append(offset >> 14 & 0x7F | 0x80)
            append(offset >> 21)
        else:
            _append_varint(append, offset)
        count += 1
    _set_count(out, count_at, count)
    _set_count(out, 1, regions)
    return bytes(out)


#: the start of each region's part of a clock: its name's length and its name, by name
_HEADS: dict[str, bytes] = {}
_HEADS_LIMIT = 1024


def _region_head(region: str) -> bytes:
    """A region's ``name_len name`` bytes (remembered for the next clock)."""
    name = region.encode()
    head: list[int] = []
    _append_varint(head.append, len(name))
    head += name
    if len(_HEADS) >= _HEADS_LIMIT:
        _HEADS.clear()
    found = _HEADS[region] = bytes(head)
    return found


def _append_varint(append: Callable[[int], None], value: int) -> None:
    while value >= 0x80:
        append((value & 0x7F) | 0x80)
        value >>= 7
    append(value)


def _set_count(out: list[int], at: int, count: int) -> None:
    """Write ``count`` into the one-byte slot at ``at``, widening it if needed."""
    if count < 0x80:
        out[at] = count
    else:
        wide: list[int] = []
        _append_varint(wide.append, count)
        out[at : at + 1] = wide


# ------------------------------------------------------------------------------ decoding

#: region names seen on the wire, by their bytes: decoded and checked once, and every
#: clock then holds the same str (its hash computed once)
_NAMES: dict[bytes, str] = {}
_NAMES_LIMIT = 1024
#: the longest name remembered (a region name is part of topic names, at most 249
#: characters): hostile clocks full of long names cannot make the cache hold much
_NAME_BYTES_LIMIT = 255


def decode_entries(data: bytes) -> dict[_Key, int]:
    """Parse the bytes :func:`encode_entries` produced into a new dict.

    Raises :class:`~edgebus.errors.DecodeError` with the reason and byte position
    for anything else: empty or truncated input, an unknown version, trailing
    bytes, bad UTF-8, an empty region name, regions or partitions out of order or
    repeated, a region with no entries, a non-minimal or over-long varint, or a
    partition or offset out of range.
    """
    size = len(data)
    if size < 2 or data[0] != WIRE_VERSION:
        raise _header_error(data)
    entries: dict[_Key, int] = {}
    try:
        regions = data[1]
        if regions < 0x80:
            pos = 2
        else:
            regions, pos = _read_varint(data, 1)
        previous = b""
        for _ in range(regions):
            start = pos
            value = data[pos]
            if value < 0x80:
                pos += 1
            else:
                value, pos = _read_varint(data, pos)
            if value == 0:
                raise _error("empty region name", start, size)
            end = pos + value
            if end > size:
                raise _error("truncated input inside a region name", size, size)
            raw = data[pos:end]
            if raw <= previous:
                reason = "repeated region" if raw == previous else "regions out of order"
                raise _error(f"{reason} {raw!r}", pos, size)
            region = _NAMES.get(raw)
            if region is None:
                region = _region_name(raw, pos, size)
            previous = raw
            pos = _read_region_entries(data, end, region, entries)
    except IndexError:
        raise _error("truncated input", size, size) from None
    if pos != size:
        raise _error(f"{size - pos} trailing byte(s) after the clock", pos, size)
    return entries


def _header_error(data: bytes) -> DecodeError:
    """Why input shorter than two bytes, or with another version byte, is no clock."""
    if not data:
        return DecodeError("Cannot decode vector clock: the input is empty.")
    if data[0] != WIRE_VERSION:
        return _bad_version(data[0])
    return _error("truncated input: missing the region count", 1, len(data))


def _region_name(raw: bytes, pos: int, size: int) -> str:
    """A region name's bytes as text (remembered for the next clock), or DecodeError."""
    try:
        region = raw.decode()
    except UnicodeDecodeError as exc:
        reason = f"region name is not valid UTF-8 ({exc.reason})"
        raise _error(reason, pos, size) from None
    if len(raw) <= _NAME_BYTES_LIMIT:
        if len(_NAMES) >= _NAMES_LIMIT:
            _NAMES.clear()
        _NAMES[raw] = region
    return region


def _read_region_entries(data: bytes, pos: int, region: str, entries: dict[_Key, int]) -> int:
    """Read a region's entry count and entries at ``pos`` into ``entries``; return the
    position after them. IndexError if the input is cut."""
    start = pos
    count = data[pos]
    if count < 0x80:
        pos += 1
    else:
        count, pos = _read_varint(data, pos)
    if count == 0:
        raise _error(f"region {region!r} has no entries", start, len(data))
    last_partition = -1
    for _ in range(count):
        partition = data[pos]
        if partition < 0x80:
            if partition <= last_partition:
                raise _partition_order_error(partition, last_partition, region, pos, data)
            pos += 1
        else:
            partition, pos = _read_partition(data, pos, last_partition, region)
        # The offset varint, unrolled up to 3 bytes: offsets are the bulk of a clock,
        # and this loop is the decoder's hot path.
        offset = data[pos]
        if offset < 0x80:
            pos += 1
        else:
            byte = data[pos + 1]
            if byte < 0x80:
                if byte == 0:
                    raise _error("non-minimal varint", pos, len(data))
                offset = (offset & 0x7F) | byte << 7
                pos += 2
            else:
                offset = (offset & 0x7F) | (byte & 0x7F) << 7
                byte = data[pos + 2]
                if byte < 0x80:
                    if byte == 0:
                        raise _error("non-minimal varint", pos, len(data))
                    offset |= byte << 14
                    pos += 3
                else:
                    offset, pos = _read_varint(data, pos)
        entries[(region, partition)] = offset
        last_partition = partition
    return pos


def _read_partition(
    data: bytes, pos: int, last_partition: int, region: str
) -> tuple[int, int]:
    """Read a partition longer than one byte at ``pos``, after ``last_partition``;
    return ``(partition, next position)``."""
    partition, end = _read_varint(data, pos)
    if partition > MAX_PARTITION:
        raise _error(f"partition {partition} is out of range", pos, len(data))
    if partition <= last_partition:
        raise _partition_order_error(partition, last_partition, region, pos, data)
    return partition, end


def _partition_order_error(
    partition: int, last_partition: int, region: str, pos: int, data: bytes
) -> DecodeError:
    reason = "repeated" if partition == last_partition else "out of order"
    return _error(f"partition {partition} of region {region!r} is {reason}", pos, len(data))


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """Read a varint at ``pos``; return ``(value, next position)``. IndexError if cut."""
    start = pos
    result = 0
    shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            if byte == 0 and shift:
                raise _error("non-minimal varint", start, len(data))
            return result, pos
        shift += 7
        if shift >= 63:
            raise _error("varint longer than 9 bytes", start, len(data))


def _error(reason: str, pos: int, size: int) -> DecodeError:
    return DecodeError(
        f"Cannot decode vector clock: {reason} (at byte {pos} of {size}). "
        "Pass the bytes produced by VectorClock.encode(), whole and unchanged."
    )


def _bad_version(version: int) -> DecodeError:
    return DecodeError(
        f"Cannot decode vector clock: unsupported version byte 0x{version:02x} "
        f"(this edgebus reads version 0x{WIRE_VERSION:02x}). "
        "The data was written by a newer edgebus or is not a vector clock."
    )
