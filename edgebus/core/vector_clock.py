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

The binary wire format (version 1: LEB128 varints, regions and partitions in
canonical order, so equal clocks encode to equal bytes) is specified and implemented
in :mod:`edgebus.core.clock_codec`; :meth:`VectorClock.encode` and
:meth:`VectorClock.decode` use it, and ``decode(b).encode() == b``.

The JSON form (:meth:`VectorClock.to_json`) is an object mapping
``"<region>:<partition>"`` to the offset, e.g. ``{"us-east-1:0": 42}``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Final, NamedTuple, final

from edgebus.core.clock_codec import (
    EMPTY_BYTES,
    MAX_OFFSET,
    MAX_PARTITION,
    WIRE_VERSION,
    decode_entries,
    encode_entries,
)
from edgebus.errors import DecodeError, InvalidInput

__all__ = [
    "MAX_OFFSET",
    "MAX_PARTITION",
    "WIRE_VERSION",
    "Ordering",
    "Position",
    "VectorClock",
]

_Key = tuple[str, int]


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
        clock: VectorClock = _new(cls)
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
            _set_hash(self, cached)
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
        """The canonical version-1 bytes of this clock (see
        :mod:`edgebus.core.clock_codec`).

        The result is cached on the clock (a decoded clock starts with its input).
        """
        cached = self._encoded
        if cached is not None:
            return cached
        encoded = encode_entries(self._entries)
        _set_encoded(self, encoded)
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
        entries = decode_entries(data)
        if not entries:
            return _EMPTY
        clock: VectorClock = _new(VectorClock)
        _init(clock, entries, data)
        return clock

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


def _slot_setter(name: str) -> Callable[[VectorClock, Any], None]:
    """The setter of one of VectorClock's slots, past its ``__setattr__`` (which
    refuses): about half the cost of ``object.__setattr__`` on the hot paths."""
    setter: Callable[[VectorClock, Any], None] = VectorClock.__dict__[name].__set__
    return setter


_new: Final = object.__new__
_set_entries: Final = _slot_setter("_entries")
_set_encoded: Final = _slot_setter("_encoded")
_set_hash: Final = _slot_setter("_hash")


def _init(clock: VectorClock, entries: dict[_Key, int], encoded: bytes | None) -> None:
    _set_entries(clock, entries)
    _set_encoded(clock, encoded)
    _set_hash(clock, None)


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


_EMPTY: Final = VectorClock._trusted({}, EMPTY_BYTES)
