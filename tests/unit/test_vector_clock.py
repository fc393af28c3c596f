"""Unit tests for edgebus.core.vector_clock: algebra, wire format, JSON form."""

from __future__ import annotations

import copy
import pickle

import pytest

from edgebus.core.vector_clock import (
    MAX_OFFSET,
    MAX_PARTITION,
    Ordering,
    Position,
    VectorClock,
)
from edgebus.errors import DecodeError, InvalidInput

US = "us-east-1"
EU = "eu-west-1"

SMALL = VectorClock({(EU, 0): 7, (US, 0): 42, (US, 3): 300})
# The wire format is a contract (schemas/README.md quotes it): these bytes must not
# change without a new version byte.
SMALL_BYTES = bytes.fromhex(
    "01"  # version 1
    "02"  # 2 regions
    "09" + b"eu-west-1".hex() + "01"  # "eu-west-1", 1 entry
    "0007"  # partition 0, offset 7
    "09" + b"us-east-1".hex() + "02"  # "us-east-1", 2 entries
    "002a"  # partition 0, offset 42
    "03ac02"  # partition 3, offset 300
)


def vc(**entries: int) -> VectorClock:
    """vc(a_0=3, b_1=4) == VectorClock({("a", 0): 3, ("b", 1): 4})."""
    parsed = {}
    for name, offset in entries.items():
        region, _, partition = name.rpartition("_")
        parsed[(region, int(partition))] = offset
    return VectorClock(parsed)


# -- construction and reading --------------------------------------------------------


def test_get_returns_offset_or_minus_one_when_absent() -> None:
    assert SMALL.get(US, 3) == 300
    assert SMALL.get(US, 1) == -1
    assert SMALL.get("ap-south-1", 0) == -1


def test_empty_clock_is_falsy_and_has_no_entries() -> None:
    assert not VectorClock.empty()
    assert len(VectorClock.empty()) == 0
    assert VectorClock() == VectorClock.empty() == VectorClock({})
    assert SMALL and len(SMALL) == 3


def test_entries_view_is_read_only() -> None:
    view = SMALL.entries()
    assert dict(view) == {(EU, 0): 7, (US, 0): 42, (US, 3): 300}
    with pytest.raises(TypeError):
        view[(US, 0)] = 1  # type: ignore[index]


def test_constructor_copies_its_input() -> None:
    source = {(US, 0): 1}
    clock = VectorClock(source)
    source[(US, 0)] = 99
    assert clock.get(US, 0) == 1


def test_clock_is_immutable() -> None:
    with pytest.raises(AttributeError):
        SMALL._entries = {}
    with pytest.raises(AttributeError):
        SMALL.anything = 1


def test_equal_clocks_are_equal_and_hash_alike() -> None:
    a = VectorClock({(US, 0): 1, (EU, 2): 5})
    b = VectorClock({(EU, 2): 5, (US, 0): 1})
    assert a == b and hash(a) == hash(b)
    assert len({a, b}) == 1
    assert a != VectorClock({(US, 0): 1})
    assert a != {(US, 0): 1, (EU, 2): 5}


def test_repr_is_sorted_and_readable() -> None:
    assert repr(SMALL) == (
        "VectorClock({('eu-west-1', 0): 7, ('us-east-1', 0): 42, ('us-east-1', 3): 300})"
    )


def test_pickle_and_copy_keep_the_value() -> None:
    assert pickle.loads(pickle.dumps(SMALL)) == SMALL
    assert copy.copy(SMALL) is SMALL
    assert copy.deepcopy(SMALL) is SMALL


@pytest.mark.parametrize(
    "entries",
    [
        {("", 0): 1},
        {(1, 0): 1},
        {(US, -1): 1},
        {(US, MAX_PARTITION + 1): 1},
        {(US, True): 1},
        {(US, 0): -1},
        {(US, 0): MAX_OFFSET + 1},
        {(US, 0): 1.0},
        {(US, 0): False},
        {US: 1},
        {(US, 0, 1): 1},
        {("\udc80", 0): 1},
    ],
)
def test_constructor_rejects_invalid_entries(entries: dict[object, object]) -> None:
    with pytest.raises(InvalidInput):
        VectorClock(entries)  # type: ignore[arg-type]


def test_constructor_rejects_non_mapping() -> None:
    with pytest.raises(InvalidInput, match="mapping"):
        VectorClock([((US, 0), 1)])  # type: ignore[arg-type]


def test_constructor_accepts_the_largest_partition_and_offset() -> None:
    clock = VectorClock({(US, MAX_PARTITION): MAX_OFFSET})
    assert VectorClock.decode(clock.encode()) == clock


# -- compare ---------------------------------------------------------------------------


def test_compare_equal() -> None:
    assert vc(a_0=1, b_0=2).compare(vc(b_0=2, a_0=1)) is Ordering.EQUAL
    assert VectorClock.empty().compare(VectorClock()) is Ordering.EQUAL


def test_compare_before_when_other_is_ahead_or_has_more_entries() -> None:
    assert vc(a_0=1).compare(vc(a_0=2)) is Ordering.BEFORE
    assert vc(a_0=1).compare(vc(a_0=1, b_0=0)) is Ordering.BEFORE
    assert VectorClock.empty().compare(vc(a_0=0)) is Ordering.BEFORE


def test_compare_after_when_self_is_ahead_or_has_more_entries() -> None:
    assert vc(a_0=2, b_0=1).compare(vc(a_0=2, b_0=0)) is Ordering.AFTER
    assert vc(a_0=1, a_1=0).compare(vc(a_0=1)) is Ordering.AFTER
    assert vc(a_0=0).compare(VectorClock.empty()) is Ordering.AFTER


def test_compare_concurrent_when_each_has_something_the_other_lacks() -> None:
    assert vc(a_0=2, b_0=1).compare(vc(a_0=1, b_0=2)) is Ordering.CONCURRENT
    assert vc(a_0=1).compare(vc(b_0=1)) is Ordering.CONCURRENT
    assert vc(a_0=5).compare(vc(a_0=1, b_0=0)) is Ordering.CONCURRENT


def test_dominates_is_greater_or_equal_pointwise() -> None:
    assert vc(a_0=2, b_0=1).dominates(vc(a_0=2))
    assert vc(a_0=2).dominates(vc(a_0=2))
    assert vc(a_0=2).dominates(VectorClock.empty())
    assert not vc(a_0=2).dominates(vc(a_0=2, b_0=0))
    assert not vc(a_0=1).dominates(vc(a_0=2))


# -- advance, merge, covers, missing -------------------------------------------------


def test_advance_includes_the_position() -> None:
    clock = VectorClock.empty().advance(Position(US, 1, 10))
    assert clock.get(US, 1) == 10
    assert clock.covers(Position(US, 1, 10))
    assert clock.covers(Position(US, 1, 3))
    assert not clock.covers(Position(US, 1, 11))
    assert not clock.covers(Position(US, 0, 0))


def test_advance_never_moves_an_entry_backwards() -> None:
    clock = vc(a_0=10)
    assert clock.advance(Position("a", 0, 3)) is clock
    assert clock.advance(Position("a", 0, 10)) is clock
    assert clock.advance(Position("a", 0, 11)) == vc(a_0=11)
    assert clock == vc(a_0=10)  # unchanged


def test_advance_validates_a_new_position() -> None:
    with pytest.raises(InvalidInput):
        VectorClock.empty().advance(Position("", 0, 1))
    with pytest.raises(InvalidInput):
        VectorClock.empty().advance(Position(US, -2, 1))


def test_merge_takes_pointwise_max() -> None:
    merged = vc(a_0=3, b_0=1).merge(vc(a_0=1, b_0=4, c_2=0))
    assert merged == vc(a_0=3, b_0=4, c_2=0)


def test_merge_returns_the_dominating_clock_without_copying() -> None:
    big = vc(a_0=3, b_0=1)
    small = vc(a_0=2)
    assert big.merge(small) is big
    assert small.merge(big) is big
    assert big.merge(VectorClock.empty()) is big
    same = vc(a_0=3, b_0=1)
    assert big.merge(same) in (big, same)


def test_missing_lists_what_a_reader_still_waits_for() -> None:
    frontier = vc(a_0=5, b_0=2)
    required = vc(a_0=3, b_0=4, c_0=0)
    assert frontier.missing(required) == vc(b_0=4, c_0=0)
    assert frontier.missing(vc(a_0=5)) == VectorClock.empty()
    assert VectorClock.empty().missing(required) is required


# -- wire format -----------------------------------------------------------------------


def test_encode_golden_bytes() -> None:
    assert SMALL.encode() == SMALL_BYTES


def test_encode_empty_clock() -> None:
    assert VectorClock.empty().encode() == b"\x01\x00"
    assert VectorClock({}).encode() == b"\x01\x00"


def test_encode_is_independent_of_insertion_order() -> None:
    other = VectorClock({(US, 3): 300, (US, 0): 42, (EU, 0): 7})
    assert other.encode() == SMALL_BYTES


def test_decode_golden_bytes() -> None:
    assert VectorClock.decode(SMALL_BYTES) == SMALL
    assert VectorClock.decode(bytearray(SMALL_BYTES)) == SMALL
    assert VectorClock.decode(memoryview(SMALL_BYTES)) == SMALL
    assert VectorClock.decode(b"\x01\x00") is VectorClock.empty()


def test_encode_widens_counts_of_128_or_more() -> None:
    wide = VectorClock({(US, p): p * 1000 for p in range(200)})
    data = wide.encode()
    assert data[:2] == b"\x01\x01"
    assert data[2 + 1 + 9 : 2 + 1 + 9 + 2] == bytes([0xC8, 0x01])  # 200 entries
    assert VectorClock.decode(data) == wide
    many = VectorClock({(f"r{i:03d}", 0): i for i in range(130)})
    assert many.encode()[:3] == bytes([0x01, 0x82, 0x01])
    assert VectorClock.decode(many.encode()) == many


@pytest.mark.parametrize(
    "offset", [0, 127, 128, 16383, 16384, 2**21 - 1, 2**21, 2**28 - 1, 2**28, 2**35, MAX_OFFSET]
)
def test_varint_boundaries_round_trip(offset: int) -> None:
    clock = VectorClock({(US, 128): offset})
    assert VectorClock.decode(clock.encode()) == clock


def test_decode_non_ascii_region_names() -> None:
    clock = VectorClock({("zürich", 0): 1, ("東京", 1): 2})
    assert VectorClock.decode(clock.encode()) == clock


@pytest.mark.parametrize("cut", range(1, len(SMALL_BYTES)))
def test_decode_rejects_truncated_input(cut: int) -> None:
    with pytest.raises(DecodeError, match="Cannot decode vector clock"):
        VectorClock.decode(SMALL_BYTES[:cut])


def test_decode_rejects_empty_input() -> None:
    with pytest.raises(DecodeError, match="empty"):
        VectorClock.decode(b"")


@pytest.mark.parametrize(
    "data", [b"\x00\x00", b"\x02\x00", b"\xff", SMALL_BYTES.replace(b"\x01", b"\x02", 1)]
)
def test_decode_rejects_wrong_version(data: bytes) -> None:
    with pytest.raises(DecodeError, match="unsupported version byte"):
        VectorClock.decode(data)


@pytest.mark.parametrize("extra", [b"\x00", b"\x01\x00", b"garbage"])
def test_decode_rejects_trailing_bytes(extra: bytes) -> None:
    with pytest.raises(DecodeError, match="trailing byte"):
        VectorClock.decode(SMALL_BYTES + extra)
    with pytest.raises(DecodeError, match="trailing byte"):
        VectorClock.decode(b"\x01\x00" + extra)


def test_decode_rejects_bad_utf8() -> None:
    data = b"\x01\x01\x02\xc3\x28\x01\x00\x01"
    with pytest.raises(DecodeError, match="UTF-8"):
        VectorClock.decode(data)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x01\x01\x00\x01\x00\x01", "empty region name"),
        (b"\x01\x01\x01a\x00", "no entries"),
        (b"\x01\x02\x01b\x01\x00\x01\x01a\x01\x00\x01", "out of order"),
        (b"\x01\x02\x01a\x01\x00\x01\x01a\x01\x00\x01", "repeated region"),
        (b"\x01\x01\x01a\x02\x01\x01\x00\x01", "out of order"),
        (b"\x01\x01\x01a\x02\x01\x01\x01\x01", "repeated"),
        (b"\x01\x01\x01a\x01\x00\x81\x00", "non-minimal varint"),
        (b"\x01\x01\x01a\x01\x00\x81\x80\x00", "non-minimal varint"),
        (b"\x01\x01\x01a\x01\x00\x81\x80\x80\x00", "non-minimal varint"),
        (b"\x01\x81\x00", "non-minimal varint"),
        (b"\x01\x01\x01a\x01\x00" + b"\xff" * 9 + b"\x01", "longer than 9 bytes"),
        (b"\x01\x01\x01a\x01\x80\x80\x80\x80\x08\x00", "out of range"),
        (b"\x01\x01\x05ab", "truncated"),
    ],
)
def test_decode_rejects_non_canonical_or_invalid_bodies(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        VectorClock.decode(data)


def test_decode_error_says_where_and_what_to_do() -> None:
    with pytest.raises(DecodeError) as info:
        VectorClock.decode(SMALL_BYTES[:-1])
    message = str(info.value)
    assert "truncated" in message
    assert f"of {len(SMALL_BYTES) - 1}" in message
    assert "VectorClock.encode()" in message


def test_decode_rejects_non_bytes() -> None:
    with pytest.raises(DecodeError, match="expected bytes"):
        VectorClock.decode("\x01\x00")  # type: ignore[arg-type]


def test_decoded_clock_re_encodes_to_the_same_bytes() -> None:
    assert VectorClock.decode(SMALL_BYTES).encode() == SMALL_BYTES


# -- JSON ------------------------------------------------------------------------------


def test_to_json_uses_region_colon_partition_keys() -> None:
    assert SMALL.to_json() == {"eu-west-1:0": 7, "us-east-1:0": 42, "us-east-1:3": 300}
    assert VectorClock.empty().to_json() == {}


def test_json_round_trip_including_colons_in_region_names() -> None:
    clock = VectorClock({("edge:lab", 2): 9, (US, 0): 1})
    assert VectorClock.from_json(clock.to_json()) == clock


@pytest.mark.parametrize(
    "data",
    [
        {"us-east-1": 1},
        {":0": 1},
        {"us-east-1:-1": 1},
        {"us-east-1:01": 1},
        {"us-east-1:+1": 1},
        {"us-east-1:١": 1},
        {"us-east-1:0": "1"},
        {"us-east-1:0": -1},
        {"us-east-1:0": True},
        {3: 1},
    ],
)
def test_from_json_rejects_malformed_objects(data: dict[object, object]) -> None:
    with pytest.raises(InvalidInput):
        VectorClock.from_json(data)  # type: ignore[arg-type]


def test_from_json_rejects_non_objects() -> None:
    with pytest.raises(InvalidInput, match="object"):
        VectorClock.from_json([["us-east-1:0", 1]])  # type: ignore[arg-type]
