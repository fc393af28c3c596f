"""The vector clock's wire codec (edgebus.core.clock_codec) on plain entries."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgebus.core import clock_codec, vector_clock
from edgebus.core.clock_codec import (
    EMPTY_BYTES,
    MAX_OFFSET,
    MAX_PARTITION,
    decode_entries,
    encode_entries,
)
from edgebus.errors import DecodeError

GOLDEN = {("eu-west-1", 0): 7, ("us-east-1", 0): 42, ("us-east-1", 3): 300}
GOLDEN_BYTES = bytes.fromhex(
    "0102" "09" + b"eu-west-1".hex() + "01" "0007" "09" + b"us-east-1".hex() + "02" "002a" "03ac02"
)  # fmt: skip

entries_strategy = st.dictionaries(
    st.tuples(
        st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=12),
        st.integers(0, MAX_PARTITION),
    ),
    st.integers(0, MAX_OFFSET),
    max_size=20,
)


def test_names_stay_importable_from_vector_clock() -> None:
    for name in vector_clock.__all__:
        assert hasattr(vector_clock, name), name
    assert vector_clock.WIRE_VERSION == clock_codec.WIRE_VERSION == 1
    assert (vector_clock.MAX_PARTITION, vector_clock.MAX_OFFSET) == (2**31 - 1, 2**63 - 1)


def test_golden_bytes_both_ways() -> None:
    assert encode_entries(GOLDEN) == GOLDEN_BYTES
    assert decode_entries(GOLDEN_BYTES) == GOLDEN
    assert encode_entries({}) == EMPTY_BYTES == b"\x01\x00"
    assert decode_entries(EMPTY_BYTES) == {}


@given(entries_strategy)
def test_round_trip(entries: dict[tuple[str, int], int]) -> None:
    data = encode_entries(entries)
    assert decode_entries(data) == entries
    assert encode_entries(decode_entries(data)) == data


def test_remembered_region_names_do_not_change_results(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clock_codec, "_NAMES_LIMIT", 3)
    monkeypatch.setattr(clock_codec, "_HEADS_LIMIT", 3)
    for i in range(10):  # more names than the memos hold
        entries = {(f"region-{i}", 0): i, (f"region-{i + 1}", 5): 2**40 + i}
        assert decode_entries(encode_entries(entries)) == entries
        assert decode_entries(encode_entries(entries)) == entries
    assert len(clock_codec._NAMES) <= 3
    assert len(clock_codec._HEADS) <= 3


def test_invalid_utf8_is_refused_every_time() -> None:
    data = b"\x01\x01\x02\xc3\x28\x01\x00\x01"
    for _ in range(2):
        with pytest.raises(DecodeError, match="not valid UTF-8"):
            decode_entries(data)


@pytest.mark.parametrize(
    ("data", "reason"),
    [(b"", "the input is empty"), (b"\x02\x00", "unsupported version byte 0x02"),
     (b"\x01", "missing the region count (at byte 1 of 1)"),
     (b"\x01\x01\x01a\x02\x01\x00\x00\x00", "partition 0 of region 'a' is out of order (at byte 7"),
     (b"\x01\x01\x01a\x02\x01\x00\x01\x00", "partition 1 of region 'a' is repeated"),
     (b"\x01\x01\x01a\x02\x81\x01\x00\x81\x01\x00", "partition 129 of region 'a' is repeated"),
     (b"\x01\x01\x01a\x01\x80\x80\x80\x80\x08\x00", "partition 2147483648 is out of range"),
     (b"\x01\x01\x01a\x01\x00\x80\x00", "non-minimal varint (at byte 6 of 8)"),
     (b"\x01\x01\x01a\x01\x00\x80\x80\x00", "non-minimal varint (at byte 6 of 9)"),
     (b"\x01\x01\x01a\x00", "region 'a' has no entries (at byte 4 of 5)"),
     (b"\x01\x01\x01a\x01\x00\x80", "truncated input (at byte 7 of 7)")],
)  # fmt: skip
def test_decode_errors_name_the_reason_and_the_byte(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as caught:
        decode_entries(data)
    assert reason in str(caught.value)
