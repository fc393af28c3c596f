"""Vector clocks over Kafka positions.

Kafka already sequences every partition, so an event's position is
``(origin region, partition, offset)`` in its origin topic. A :class:`VectorClock`
maps ``(region, partition)`` to the highest offset it includes; every offset at or
below it in that partition is included too (replication keeps per-partition FIFO
order, and watermarks move frontiers past events that compliance filters out). A
partition that is absent contributes nothing; :meth:`VectorClock.get` returns ``-1``
for it, so "absent" and "offset -1" compare the same way.

Clocks are immutable, hashable and compared by content. Operations that would not
change a clock return the same object instead of a copy (``advance`` of a covered
position, ``merge`` with a dominated clock), which keeps the hot paths cheap.

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
Hence equal clocks encode to equal bytes, and :meth:`VectorClock.decode` accepts
exactly this canonical form and nothing after it (so ``decode(b).encode() == b``).
The empty clock is ``01 00``. For example the clock
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

The JSON form (:meth:`VectorClock.to_json`) is an object mapping
``"<region>:<partition>"`` to the offset, e.g. ``{"us-east-1:0": 42}``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Final, NamedTuple, final

from edgebus.errors import DecodeError, InvalidInput

__all__ = [
    "MAX_OFFSET",
    "MAX_PARTITION",
    "WIRE_VERSION",
    "Ordering",
    "Position",
    "VectorClock",
]

#: The version byte that starts every encoded clock.
WIRE_VERSION: Final = 1
#: Largest partition number a clock accepts (Kafka partitions are int32).
MAX_PARTITION: Final = 2**31 - 1
#: Largest offset a clock accepts (Kafka offsets are int64).
MAX_OFFSET: Final = 2**63 - 1

_Key = tuple[str, int]
_EMPTY_BYTES: Final = b"\x01\x00"


class Position(NamedTuple):
    """Where an event sits: its origin region, the partition and the offset there."""

    region: str
    partition: int
    offset: int


class Ordering(enum.Enum):
    """How two vector clocks relate (the result of :meth:`VectorClock.compare`)."""

    #: every entry of the left clock is <= the right one's and the clocks differ
    BEFORE = "before"
    #: every entry of the left clock is >= the right one's and the clocks differ
    AFTER = "after"
    #: the clocks are equal
    EQUAL = "equal"
    #: each clock has an entry the other lacks: neither happened before the other
    CONCURRENT = "concurrent"


@final
class VectorClock:
    """An immutable map ``(region, partition) -> highest included offset``.

    Equality and hashing are by content. ``bool(clock)`` is false for the empty clock.
    """

    __slots__ = ("_encoded", "_entries", "_hash")

    _entries: dict[_Key, int]
    _encoded: bytes | None
    _hash: int | None

    def __init__(self, entries: Mapping[tuple[str, int], int] | None = None) -> None:
        """Build a clock from ``{(region, partition): offset}``.

        Raises :class:`~edgebus.errors.InvalidInput` unless every region is a
        non-empty string, every partition is an int in ``0 .. 2**31 - 1`` and every
        offset an int in ``0 .. 2**63 - 1``.
        """
        checked: dict[_Key, int] = {}
        if entries is not None:
            if not isinstance(entries, Mapping):
                raise InvalidInput(
                    "A vector clock is built from a mapping {(region, partition): offset}, "
                    f"not {type(entries).__name__}."
                )
            for key, offset in entries.items():
                if not isinstance(key, tuple) or len(key) != 2:
                    raise InvalidInput(
                        f"Invalid vector clock key {key!r}: use a (region, partition) tuple."
                    )
                region, partition = key
                _check_entry(region, partition, offset)
                checked[(region, partition)] = offset
        _init(self, checked, None)

    @classmethod
    def empty(cls) -> VectorClock:
        """The clock that includes nothing."""
        return _EMPTY

    @classmethod
    def _trusted(cls, entries: dict[_Key, int], encoded: bytes | None = None) -> VectorClock:
        """Wrap an already validated dict without copying it; the caller gives it up."""
        clock: VectorClock = object.__new__(cls)
        _init(clock, entries, encoded)
        return clock

    # -- reading -------------------------------------------------------------------

    def get(self, region: str, partition: int) -> int:
        """The highest offset included for ``(region, partition)``, or ``-1``."""
        return self._entries.get((region, partition), -1)

    def entries(self) -> Mapping[tuple[str, int], int]:
        """A read-only view of ``{(region, partition): offset}``."""
        return MappingProxyType(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __bool__(self) -> bool:
        return bool(self._entries)

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, VectorClock):
            return NotImplemented
        return self._entries == other._entries

    def __hash__(self) -> int:
        cached = self._hash
        if cached is None:
            cached = hash(frozenset(self._entries.items()))
            object.__setattr__(self, "_hash", cached)
        return cached

    def __repr__(self) -> str:
        body = ", ".join(f"({r!r}, {p}): {o}" for (r, p), o in sorted(self._entries.items()))
        return f"VectorClock({{{body}}})"

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"VectorClock is immutable; cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"VectorClock is immutable; cannot delete {name!r}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (VectorClock, (self._entries,))

    def __copy__(self) -> VectorClock:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> VectorClock:
        return self

    # -- algebra -------------------------------------------------------------------

    def advance(self, position: Position) -> VectorClock:
        """This clock with ``position`` included (pointwise max); ``self`` if covered."""
        region, partition, offset = position
        key = (region, partition)
        if self._entries.get(key, -1) >= offset:
            return self
        _check_entry(region, partition, offset)
        entries = self._entries.copy()
        entries[key] = offset
        return VectorClock._trusted(entries)

    def merge(self, other: VectorClock) -> VectorClock:
        """The pointwise max of both clocks (their least upper bound).

        Returns ``self`` or ``other`` unchanged when one already dominates the other.
        """
        mine = self._entries
        theirs = other._entries
        if len(theirs) > len(mine):
            # Walk the smaller clock: fewer lookups, and the result starts as the
            # larger clock's copy.
            mine, theirs = theirs, mine
            base, rest = other, self
        else:
            base, rest = self, other
        merged: dict[_Key, int] | None = None
        for key, offset in theirs.items():
            if offset > mine.get(key, -1):
                if merged is None:
                    merged = mine.copy()
                merged[key] = offset
        if merged is None:
            return base
        if len(merged) == len(theirs) and _dominated_by(mine, theirs):
            return rest
        return VectorClock._trusted(merged)

    def compare(self, other: VectorClock) -> Ordering:
        """How this clock relates to ``other``: BEFORE, AFTER, EQUAL or CONCURRENT."""
        mine = self._entries
        theirs = other._entries
        ahead = False  # self has an entry above other's
        behind = False  # other has an entry above self's
        shared = 0
        for key, offset in mine.items():
            their_offset = theirs.get(key)
            if their_offset is None:
                ahead = True
            else:
                shared += 1
                if offset > their_offset:
                    ahead = True
                elif offset < their_offset:
                    behind = True
            if ahead and behind:
                return Ordering.CONCURRENT
        if shared < len(theirs):  # other has keys self lacks (offsets are >= 0 > -1)
            behind = True
        if ahead:
            return Ordering.CONCURRENT if behind else Ordering.AFTER
        return Ordering.BEFORE if behind else Ordering.EQUAL

    def dominates(self, other: VectorClock) -> bool:
        """True if this clock is ``>=`` ``other`` in every entry (it includes ``other``)."""
        return _dominated_by(other._entries, self._entries)

    def covers(self, position: Position) -> bool:
        """True if this clock includes the event at ``position``."""
        return self._entries.get((position[0], position[1]), -1) >= position[2]

    def missing(self, required: VectorClock) -> VectorClock:
        """The entries of ``required`` that this clock does not cover yet.

        This is what a reader waits for: the result is empty once ``self`` dominates
        ``required``. Each entry keeps ``required``'s offset.
        """
        mine = self._entries
        lacking: dict[_Key, int] | None = None
        for key, offset in required._entries.items():
            if mine.get(key, -1) < offset:
                if lacking is None:
                    lacking = {}
                lacking[key] = offset
        if lacking is None:
            return _EMPTY
        if len(lacking) == len(required._entries):
            return required
        return VectorClock._trusted(lacking)

    # -- wire format ---------------------------------------------------------------

    def encode(self) -> bytes:
        """The canonical version-1 bytes of this clock (see the module docstring).

        The result is cached on the clock (a decoded clock starts with its input).
        """
        cached = self._encoded
        if cached is not None:
            return cached
        entries = self._entries
        if not entries:
            return _EMPTY_BYTES
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
                name = region.encode()
                size = len(name)
                if size < 0x80:
                    append(size)
                else:
                    _append_varint(append, size)
                out += name
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
        encoded = bytes(out)
        object.__setattr__(self, "_encoded", encoded)
        return encoded

    @classmethod
    def decode(cls, data: bytes | bytearray | memoryview) -> VectorClock:
        """Parse the bytes :meth:`encode` produced.

        Raises :class:`~edgebus.errors.DecodeError` with the reason and byte position
        for anything else: empty or truncated input, an unknown version, trailing
        bytes, bad UTF-8, an empty region name, regions or partitions out of order or
        repeated, a region with no entries, a non-minimal or over-long varint, or a
        partition or offset out of range.
        """
        if type(data) is not bytes:
            if not isinstance(data, bytes | bytearray | memoryview):
                raise DecodeError(
                    f"Cannot decode vector clock: expected bytes, got {type(data).__name__}."
                )
            data = bytes(data)
        size = len(data)
        if size < 2:
            if size == 0:
                raise DecodeError("Cannot decode vector clock: the input is empty.")
            if data[0] != WIRE_VERSION:
                raise _bad_version(data[0])
            raise _error("truncated input: missing the region count", 1, size)
        if data[0] != WIRE_VERSION:
            raise _bad_version(data[0])
        if data == _EMPTY_BYTES:
            return _EMPTY
        entries: dict[_Key, int] = {}
        pos = 1
        try:
            value = data[pos]
            if value < 0x80:
                pos += 1
            else:
                value, pos = _read_varint(data, pos)
            previous = b""
            for _ in range(value):
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
                try:
                    region = raw.decode()
                except UnicodeDecodeError as exc:
                    reason = f"region name is not valid UTF-8 ({exc.reason})"
                    raise _error(reason, pos, size) from None
                previous = raw
                pos = end
                start = pos
                value = data[pos]
                if value < 0x80:
                    pos += 1
                else:
                    value, pos = _read_varint(data, pos)
                if value == 0:
                    raise _error(f"region {region!r} has no entries", start, size)
                last_partition = -1
                for _ in range(value):
                    start = pos
                    partition = data[pos]
                    if partition < 0x80:
                        pos += 1
                    else:
                        partition, pos = _read_varint(data, pos)
                        if partition > MAX_PARTITION:
                            raise _error(f"partition {partition} is out of range", start, size)
                    if partition <= last_partition:
                        reason = "repeated" if partition == last_partition else "out of order"
                        raise _error(
                            f"partition {partition} of region {region!r} is {reason}",
                            start,
                            size,
                        )
                    # The offset varint, unrolled up to 4 bytes: offsets are the bulk
                    # of a clock, and this loop is the decoder's hot path.
                    offset = data[pos]
                    if offset < 0x80:
                        pos += 1
                    else:
                        byte = data[pos + 1]
                        if byte < 0x80:
                            if byte == 0:
                                raise _error("non-minimal varint", pos, size)
                            offset = (offset & 0x7F) | byte << 7
                            pos += 2
                        else:
                            offset = (offset & 0x7F) | (byte & 0x7F) << 7
                            byte = data[pos + 2]
                            if byte < 0x80:
                                if byte == 0:
                                    raise _error("non-minimal varint", pos, size)
                                offset |= byte << 14
                                pos += 3
                            else:
                                offset, pos = _read_varint(data, pos)
                    entries[(region, partition)] = offset
                    last_partition = partition
        except IndexError:
            raise _error("truncated input", size, size) from None
        if pos != size:
            raise _error(f"{size - pos} trailing byte(s) after the clock", pos, size)
        return VectorClock._trusted(entries, data)

    # -- JSON ----------------------------------------------------------------------

    def to_json(self) -> dict[str, int]:
        """``{"<region>:<partition>": offset}``, keys sorted, ready for ``json.dumps``."""
        return {f"{r}:{p}": o for (r, p), o in sorted(self._entries.items())}

    @classmethod
    def from_json(cls, data: Mapping[str, int]) -> VectorClock:
        """Parse :meth:`to_json`'s output.

        Raises :class:`~edgebus.errors.InvalidInput` if a key is not
        ``"<region>:<partition>"`` with a plain decimal partition (no sign, no
        leading zeros) or an entry fails the constructor's checks.
        """
        if not isinstance(data, Mapping):
            raise InvalidInput(
                'A vector clock in JSON is an object {"<region>:<partition>": offset}, '
                f"not {type(data).__name__}."
            )
        entries: dict[_Key, int] = {}
        for key, offset in data.items():
            if not isinstance(key, str):
                raise InvalidInput(f"Invalid vector clock JSON key {key!r}: expected a string.")
            region, sep, digits = key.rpartition(":")
            if (
                not sep
                or not digits.isascii()
                or not digits.isdigit()
                or (len(digits) > 1 and digits[0] == "0")
            ):
                raise InvalidInput(
                    f"Invalid vector clock JSON key {key!r}: "
                    'expected "<region>:<partition>", e.g. "us-east-1:0".'
                )
            partition = int(digits)
            _check_entry(region, partition, offset)
            entries[(region, partition)] = offset
        return VectorClock._trusted(entries) if entries else _EMPTY


def _init(clock: VectorClock, entries: dict[_Key, int], encoded: bytes | None) -> None:
    object.__setattr__(clock, "_entries", entries)
    object.__setattr__(clock, "_encoded", encoded)
    object.__setattr__(clock, "_hash", None)


def _check_entry(region: object, partition: object, offset: object) -> None:
    if not isinstance(region, str) or not region:
        raise InvalidInput(f"Invalid vector clock region {region!r}: use a non-empty string.")
    try:
        region.encode()
    except UnicodeEncodeError:
        raise InvalidInput(
            f"Invalid vector clock region {region!r}: it cannot be encoded as UTF-8."
        ) from None
    if type(partition) is not int or not 0 <= partition <= MAX_PARTITION:
        raise InvalidInput(
            f"Invalid partition {partition!r} for region {region!r}: "
            f"use an int from 0 to {MAX_PARTITION}."
        )
    if type(offset) is not int or not 0 <= offset <= MAX_OFFSET:
        raise InvalidInput(
            f"Invalid offset {offset!r} for ({region!r}, {partition}): "
            f"use an int from 0 to {MAX_OFFSET}."
        )


def _dominated_by(low: dict[_Key, int], high: dict[_Key, int]) -> bool:
    """True if every entry of ``low`` is <= the same entry of ``high``."""
    if len(low) > len(high):
        return False  # low has a key high lacks
    # A plain loop, not all(<generator>): about twice as fast on this hot path.
    for key, offset in low.items():  # noqa: SIM110
        if high.get(key, -1) < offset:
            return False
    return True


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


_EMPTY: Final = VectorClock._trusted({}, _EMPTY_BYTES)
