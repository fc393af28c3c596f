"""Hybrid logical clock (Kulkarni, Demirbas et al., "Logical Physical Clocks", 2014).

An HLC timestamp ``(wall_ms, logical)`` stays close to physical time (``wall_ms`` is
the largest physical time, in milliseconds, the clock has heard of) yet respects
causality like a Lamport clock: a timestamp taken after receiving a message is
greater than the message's. Timestamps are totally ordered by ``(wall_ms, logical)``;
edgebus breaks the remaining ties with the origin region (last-write-wins by
``(HLC, origin)``).

The clock is pure: physical time is passed in by the caller (the adapter that reads
the system clock), so tests can drive it with any sequence of times, even decreasing
ones. With ``l`` the clock's wall part, ``c`` its logical part, ``pt`` the physical
time and ``m`` a received timestamp:

- :meth:`HybridLogicalClock.now` (a local or send event):
  ``l' = max(l, pt)``; ``c' = c + 1`` if ``l' == l`` else ``0``.
- :meth:`HybridLogicalClock.observe` (a receive event):
  ``l' = max(l, m.l, pt)``; ``c' = max(c, m.c) + 1`` if ``l' == l == m.l``,
  ``c + 1`` if only ``l' == l``, ``m.c + 1`` if only ``l' == m.l``, else ``0``.

``logical`` is 16 bits. If it would reach 65536, the clock instead moves ``wall_ms``
forward by 1 ms and sets ``logical`` to 0: the result is still greater than every
timestamp before it, at the price of running 1 ms ahead of physical time until
physical time catches up. (65536 events within one millisecond, or a remote clock
doing the same, is the only way to get there.)

A remote timestamp more than ``max_drift_ms`` ahead of the local physical time is
refused with :class:`ClockDriftError` and leaves the clock unchanged: accepting it
would drag this clock, and everything it stamps, into the future.

Wire format: :meth:`HLCTimestamp.encode` gives 8 bytes, the big-endian unsigned
64-bit integer ``(wall_ms << 16) | logical``; so comparing encodings bytewise orders
them exactly as the timestamps. ``wall_ms`` must be below ``2**48`` (the year 10889).
"""

from __future__ import annotations

from typing import Final, NamedTuple

from edgebus.errors import DecodeError, EdgebusError, InvalidInput

__all__ = [
    "MAX_LOGICAL",
    "MAX_WALL_MS",
    "ClockDriftError",
    "HLCTimestamp",
    "HybridLogicalClock",
]

#: Largest ``logical`` value (16 bits).
MAX_LOGICAL: Final = 0xFFFF
#: Largest ``wall_ms`` value (48 bits).
MAX_WALL_MS: Final = 2**48 - 1

_LOGICAL_BITS: Final = 16


class ClockDriftError(EdgebusError):
    """A remote HLC timestamp is further ahead of local physical time than allowed.

    Retriable: once the clocks agree again (or local time catches up) the same event
    is accepted. The clock that raised it is unchanged.
    """

    retriable = True

    def __init__(self, remote: HLCTimestamp, physical_ms: int, max_drift_ms: int) -> None:
        self.remote = remote
        self.physical_ms = physical_ms
        self.max_drift_ms = max_drift_ms
        ahead = remote.wall_ms - physical_ms
        super().__init__(
            f"Clock drift: a remote timestamp at {remote.wall_ms} ms is {ahead} ms ahead "
            f"of local physical time {physical_ms} ms (max_drift_ms={max_drift_ms}). "
            "Check that NTP (or chrony) keeps the clocks of both hosts in sync; the "
            "event is accepted on retry once they agree."
        )


class HLCTimestamp(NamedTuple):
    """A hybrid logical clock reading; ordered as the tuple ``(wall_ms, logical)``."""

    wall_ms: int
    logical: int

    def encode(self) -> bytes:
        """8 bytes, big-endian ``(wall_ms << 16) | logical``: byte order == time order.

        Raises :class:`~edgebus.errors.InvalidInput` if ``wall_ms`` is outside
        ``0 .. 2**48 - 1`` or ``logical`` outside ``0 .. 65535``.
        """
        wall_ms, logical = self
        if not 0 <= logical <= MAX_LOGICAL or not 0 <= wall_ms <= MAX_WALL_MS:
            raise InvalidInput(
                f"Cannot encode HLC timestamp {tuple(self)!r}: wall_ms must be in "
                f"0..{MAX_WALL_MS} and logical in 0..{MAX_LOGICAL}."
            )
        return ((wall_ms << _LOGICAL_BITS) | logical).to_bytes(8, "big")

    @classmethod
    def decode(cls, data: bytes | bytearray | memoryview) -> HLCTimestamp:
        """Parse :meth:`encode`'s 8 bytes; :class:`~edgebus.errors.DecodeError` otherwise
        (any 8 bytes are a timestamp: ``wall_ms`` below ``2**48``, ``logical`` 16 bits)."""
        if type(data) is not bytes:
            if not isinstance(data, bytes | bytearray | memoryview):
                raise DecodeError(
                    f"Cannot decode HLC timestamp: expected 8 bytes, got {type(data).__name__}."
                )
            data = bytes(data)  # (the length of a memoryview counts its items, not bytes)
        if len(data) != 8:
            raise DecodeError(
                f"Cannot decode HLC timestamp: expected exactly 8 bytes, got {len(data)}. "
                "Pass the bytes produced by HLCTimestamp.encode(), whole and unchanged."
            )
        value = int.from_bytes(data, "big")
        return cls(value >> _LOGICAL_BITS, value & MAX_LOGICAL)


_ZERO: Final = HLCTimestamp(0, 0)


class HybridLogicalClock:
    """A mutable hybrid logical clock; every reading is greater than the one before.

    Not thread-safe: give each writer its own clock or guard it with a lock. No I/O:
    the caller passes physical time in milliseconds.
    """

    __slots__ = ("_last", "_max_drift_ms")

    def __init__(self, max_drift_ms: int = 60_000, last: HLCTimestamp | None = None) -> None:
        """Start a clock; ``last`` resumes from a persisted reading.

        ``max_drift_ms`` is how far ahead of local physical time a remote timestamp
        may be before :meth:`observe` refuses it.
        """
        if type(max_drift_ms) is not int or max_drift_ms < 0:
            raise InvalidInput(
                f"Invalid max_drift_ms {max_drift_ms!r}: use a non-negative int (milliseconds)."
            )
        if last is None:
            last = _ZERO
        else:
            _check_timestamp(last, "last")
            last = HLCTimestamp(last[0], last[1])
        self._max_drift_ms = max_drift_ms
        self._last = last

    @property
    def last(self) -> HLCTimestamp:
        """The most recent timestamp this clock produced (``(0, 0)`` before any)."""
        return self._last

    @property
    def max_drift_ms(self) -> int:
        """How far ahead of physical time a remote timestamp may be, in milliseconds."""
        return self._max_drift_ms

    def now(self, physical_ms: int) -> HLCTimestamp:
        """Stamp a local or send event at physical time ``physical_ms``."""
        _check_physical(physical_ms)
        wall, logical = self._last
        if physical_ms > wall:
            result = HLCTimestamp(physical_ms, 0)
        elif logical < MAX_LOGICAL:
            result = HLCTimestamp(wall, logical + 1)
        else:
            result = HLCTimestamp(wall + 1, 0)
        self._last = result
        return result

    def observe(self, remote: HLCTimestamp, physical_ms: int) -> HLCTimestamp:
        """Stamp the receipt of an event stamped ``remote`` at ``physical_ms``.

        The result is greater than both ``remote`` and every earlier reading. Raises
        :class:`ClockDriftError` (and changes nothing) if ``remote`` is more than
        ``max_drift_ms`` ahead of ``physical_ms``.
        """
        _check_physical(physical_ms)
        _check_timestamp(remote, "remote")
        remote_wall, remote_logical = remote
        if remote_wall - physical_ms > self._max_drift_ms:
            raise ClockDriftError(
                HLCTimestamp(remote_wall, remote_logical), physical_ms, self._max_drift_ms
            )
        wall, logical = self._last
        new_wall = max(wall, remote_wall, physical_ms)
        if new_wall == wall:
            if new_wall == remote_wall:
                new_logical = max(logical, remote_logical) + 1
            else:
                new_logical = logical + 1
        elif new_wall == remote_wall:
            new_logical = remote_logical + 1
        else:
            new_logical = 0
        if new_logical > MAX_LOGICAL:
            result = HLCTimestamp(new_wall + 1, 0)
        else:
            result = HLCTimestamp(new_wall, new_logical)
        self._last = result
        return result

    def __repr__(self) -> str:
        return (
            f"HybridLogicalClock(max_drift_ms={self._max_drift_ms}, "
            f"last=HLCTimestamp(wall_ms={self._last[0]}, logical={self._last[1]}))"
        )


def _check_physical(physical_ms: int) -> None:
    if type(physical_ms) is not int or not 0 <= physical_ms <= MAX_WALL_MS:
        raise InvalidInput(
            f"Invalid physical time {physical_ms!r}: pass milliseconds since the Unix "
            f"epoch as an int in 0..{MAX_WALL_MS}."
        )


def _check_timestamp(value: object, what: str) -> None:
    if not isinstance(value, tuple) or len(value) != 2:
        raise InvalidInput(f"Invalid HLC timestamp {what}={value!r}: use an HLCTimestamp.")
    wall, logical = value
    if (
        type(wall) is not int
        or type(logical) is not int
        or not 0 <= wall <= MAX_WALL_MS
        or not 0 <= logical <= MAX_LOGICAL
    ):
        raise InvalidInput(
            f"Invalid HLC timestamp {what}={value!r}: wall_ms must be an int in "
            f"0..{MAX_WALL_MS} and logical an int in 0..{MAX_LOGICAL}."
        )
