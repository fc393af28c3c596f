"""What the decoder fuzz suites share: a per-call time limit, Avro's and LEB128's varints,
hostile numbers to rewrite lengths and counts with, and mutations of real records.

A decoder on hostile bytes may return a value or raise DecodeError, nothing else, and
must return within :data:`LIMIT_S`: :func:`decoded` runs one call under an interval
timer (``SIGALRM``), so a decoder that loops raises :class:`Hang` instead of stopping
the suite, and any other exception fails the test.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from hypothesis import strategies as st

from edgebus.errors import DecodeError

__all__ = [
    "LIMIT_S",
    "Hang",
    "decoded",
    "hostile_longs",
    "hostile_unsigned",
    "leb128",
    "mutated",
    "time_limit",
    "zigzag",
]

#: seconds one decode may take (a valid record takes microseconds)
LIMIT_S = 2.0


class Hang(Exception):
    """A decode did not return within LIMIT_S."""


@contextmanager
def time_limit(seconds: float = LIMIT_S) -> Iterator[None]:
    def expire(signum: int, frame: Any) -> None:
        raise Hang(f"did not return within {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def decoded(decode: Callable[[Any], Any], value: Any) -> Any:
    """``decode(value)`` or the DecodeError it raised, under the per-call time limit; any
    other exception (or :class:`Hang`) propagates and fails the test."""
    with time_limit(LIMIT_S):
        try:
            return decode(value)
        except DecodeError as e:
            return e


def zigzag(n: int) -> bytes:
    """Avro's long encoding of ``n``."""
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        byte = z & 0x7F
        z >>= 7
        if z:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def leb128(n: int) -> bytes:
    """The unsigned LEB128 varint of ``n >= 0`` (the vector clock's integers)."""
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


hostile_longs = st.sampled_from([-1, -2, -(2**62), 2**62, 2**63 - 1, -(2**63), 0, 1, 127, 10**9])
#: for unsigned varints: huge, past 63 and 64 bits, and the edges of one and two bytes
hostile_unsigned = st.sampled_from([0, 1, 127, 128, 2**31, 2**62, 2**63 - 1, 2**63, 2**64, 2**70])

_VARINT_STYLES = ("zigzag", "leb128", "overlong")


@st.composite
def mutated(draw: st.DrawFn, records: st.SearchStrategy[bytes], start: int = 0) -> bytes:
    """A record of ``records`` with 1 to 4 changes at or after byte ``start`` (the
    single-object header is 10 bytes): a bit flipped, a byte set, bytes inserted or
    deleted, the rest cut, or a byte replaced by a hostile varint (Avro's zig-zag,
    LEB128, or 11 continuation bytes)."""
    value = bytearray(draw(records))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "varint", "cut"]))
        at = draw(st.integers(start, max(start, len(value) - 1)))
        if kind == "flip" and at < len(value):
            value[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and at < len(value):
            value[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            value[at:at] = draw(st.binary(min_size=1, max_size=4))
        elif kind == "delete":
            del value[at:at + draw(st.integers(1, 4))]
        elif kind == "varint":
            style = draw(st.sampled_from(_VARINT_STYLES))
            if style == "zigzag":
                varint = zigzag(draw(hostile_longs))
            elif style == "leb128":
                varint = leb128(draw(hostile_unsigned))
            else:
                varint = b"\xff" * 11 + b"\x01"
            value[at:at + 1] = varint
        elif kind == "cut":
            del value[at:]
    return bytes(value)
