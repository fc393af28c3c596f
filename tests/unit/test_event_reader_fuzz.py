"""Hostile input for the fast Event reader: any bytes decode or raise DecodeError, in
bounded time, and the fast reader never accepts what the generic decoder refuses.

Inputs: real encoded events mutated (bytes flipped, replaced, inserted, deleted,
truncated, lengths and counts rewritten with hostile varints), and arbitrary bytes
behind the event schema's single-object header. Each call runs under a per-call time
limit (an interval timer): a reader that loops raises ``Hang`` instead of stopping the
suite.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgebus.core.envelope import Operation
from edgebus.core.hlc import HLCTimestamp
from edgebus.core.vector_clock import VectorClock
from edgebus.errors import DecodeError
from edgebus.wire.event_codec import encode_fields, encode_payload
from edgebus.wire.event_reader import read_event
from tests.unit.fuzzing import LIMIT_S, hostile_longs, time_limit, zigzag
from tests.unit.test_event_reader import encoded_events, generic


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    value = bytearray(draw(encoded_events()))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "varint", "cut"]))
        at = draw(st.integers(10, max(10, len(value) - 1)))
        if kind == "flip" and at < len(value):
            value[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and at < len(value):
            value[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            value[at:at] = draw(st.binary(min_size=1, max_size=4))
        elif kind == "delete":
            del value[at:at + draw(st.integers(1, 4))]
        elif kind == "varint":
            value[at:at + 1] = zigzag(draw(hostile_longs))
        elif kind == "cut":
            del value[at:]
    return bytes(value)


def decode_both(value: bytes) -> tuple[Any, Any]:
    """(fast result or DecodeError, generic result or DecodeError), each time-limited;
    any other exception fails the test."""
    results = []
    for decode in (read_event, generic):
        with time_limit(LIMIT_S):
            try:
                results.append(decode(value))
            except DecodeError as e:
                results.append(e)
    return results[0], results[1]


def check(value: bytes) -> None:
    fast, slow = decode_both(value)
    if not isinstance(fast, DecodeError):
        assert not isinstance(slow, DecodeError), f"fast accepted what generic refused: {slow}"
        assert fast == slow


@settings(max_examples=2000, deadline=None)
@given(mutated())
def test_a_mutated_event_decodes_or_is_a_decode_error_in_bounded_time(value: bytes) -> None:
    check(value)


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_behind_the_event_header_are_a_decode_error_in_bounded_time(
    body: bytes,
) -> None:
    header = encoded_events_header()
    check(header + body)


def encoded_events_header() -> bytes:
    """The single-object header (magic and fingerprint) of Event v2 records."""
    from edgebus.wire import event_reader

    return bytes(event_reader._MAGIC) + bytes(event_reader._FP_BYTES)


def test_a_negative_dependency_block_size_is_a_decode_error_not_a_hang() -> None:
    # the example: a dependency count of -1 with a block size of -2
    value = encode_fields(
        "0b7e4f2e-5b8f-4b0e-9d55-0c1c7a1c2f3a", "k", Operation.SET, encode_payload(1),
        "eu-west-1", ("eu-west-1",), ("public",), HLCTimestamp(1, 0), VectorClock.empty(),
        None,
    ).value
    # the empty dependency array is the byte before schema_version (2) and writer (0)
    assert value[-3:] == b"\x00\x04\x00"
    forged = value[:-3] + zigzag(-1) + zigzag(-2) + value[-2:]
    fast, slow = decode_both(forged)
    assert isinstance(fast, DecodeError) and isinstance(slow, DecodeError)


def test_an_operation_index_out_of_range_is_a_decode_error() -> None:
    value = encode_fields(
        "0b7e4f2e-5b8f-4b0e-9d55-0c1c7a1c2f3a", "k", Operation.SET, encode_payload(1),
        "eu-west-1", ("eu-west-1",), ("public",), HLCTimestamp(1, 0), VectorClock.empty(),
        None,
    ).value
    # after the header: event_id (1 + 36 bytes), key (1 + 1), then the operation index
    at = 10 + 37 + 2
    assert value[at] == 0  # SET
    forged = value[:at] + zigzag(-1) + value[at + 1:]
    fast, _ = decode_both(forged)
    # (fastavro's generic reader indexes the enum's symbols with it, so -1 is the last
    # one, MERGE; the fast reader, which reads every Event v2 record, refuses it)
    assert isinstance(fast, DecodeError) and "operation index -1" in str(fast)


@pytest.mark.parametrize("forged_operation", [Operation.DELETE, Operation.INCREMENT])
def test_an_operation_its_payload_cannot_have_is_refused_by_both_readers(
    forged_operation: Operation,
) -> None:
    value = encode_fields(
        "0b7e4f2e-5b8f-4b0e-9d55-0c1c7a1c2f3a", "k", Operation.SET,
        encode_payload({"note": "x"}), "eu-west-1", ("eu-west-1",), ("public",),
        HLCTimestamp(1, 0), VectorClock.empty(), None,
    ).value
    at = 10 + 37 + 2
    index = list(Operation).index(forged_operation)
    forged = value[:at] + zigzag(index) + value[at + 1:]
    fast, slow = decode_both(forged)
    assert isinstance(fast, DecodeError) and isinstance(slow, DecodeError)


def test_a_varint_beyond_64_bits_and_a_schema_version_beyond_32_are_decode_errors() -> None:
    value = encode_fields(
        "0b7e4f2e-5b8f-4b0e-9d55-0c1c7a1c2f3a", "k", Operation.SET, encode_payload(1),
        "eu-west-1", ("eu-west-1",), ("public",), HLCTimestamp(1, 0), VectorClock.empty(),
        None,
    ).value
    # the tail is: dependencies (0), schema_version (2 -> 0x04), writer (0)
    assert value[-3:] == b"\x00\x04\x00"
    seventy_bits = b"\xff" * 9 + b"\x7f"
    for forged_version in (zigzag(2**31), seventy_bits):
        forged = value[:-2] + forged_version + value[-1:]
        with pytest.raises(DecodeError):
            read_event(forged)
