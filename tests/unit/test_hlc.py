"""Unit tests for edgebus.core.hlc: the HLC update rules, overflow, drift, encoding."""

from __future__ import annotations

import itertools

import pytest

from edgebus.core.hlc import (
    MAX_LOGICAL,
    MAX_WALL_MS,
    ClockDriftError,
    HLCTimestamp,
    HybridLogicalClock,
)
from edgebus.errors import DecodeError, EdgebusError, InvalidInput

T = HLCTimestamp


# -- now -------------------------------------------------------------------------------


def test_new_clock_starts_at_zero() -> None:
    assert HybridLogicalClock().last == T(0, 0)


def test_now_follows_physical_time_when_it_moves_forward() -> None:
    clock = HybridLogicalClock()
    assert clock.now(1_000) == T(1_000, 0)
    assert clock.now(1_005) == T(1_005, 0)
    assert clock.last == T(1_005, 0)


def test_now_counts_logically_within_the_same_millisecond() -> None:
    clock = HybridLogicalClock()
    assert [clock.now(1_000) for _ in range(3)] == [T(1_000, 0), T(1_000, 1), T(1_000, 2)]


def test_now_is_monotonic_when_physical_time_goes_backwards() -> None:
    clock = HybridLogicalClock()
    readings = [clock.now(pt) for pt in (5_000, 4_000, 3_000, 5_000, 4_999, 5_001)]
    assert readings == [
        T(5_000, 0),
        T(5_000, 1),
        T(5_000, 2),
        T(5_000, 3),
        T(5_000, 4),
        T(5_001, 0),
    ]
    assert all(a < b for a, b in itertools.pairwise(readings))


def test_clock_resumes_from_a_persisted_reading() -> None:
    clock = HybridLogicalClock(last=T(9_000, 7))
    assert clock.now(1_000) == T(9_000, 8)


# -- observe ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("last", "remote", "physical_ms", "expected"),
    [
        pytest.param(T(1_000, 5), T(2_000, 9), 1_500, T(2_000, 10),
                     id="remote-ahead-of-local-and-physical-takes-remote-plus-one"),
        pytest.param(T(1_000, 5), T(1_200, 9), 3_000, T(3_000, 0),
                     id="physical-ahead-of-both-resets-logical"),
        pytest.param(T(5_000, 5), T(4_000, 99), 4_500, T(5_000, 6),
                     id="local-ahead-of-both-increments-local-logical"),
        pytest.param(T(5_000, 5), T(5_000, 9), 4_000, T(5_000, 10),
                     id="same-wall-takes-max-logical-plus-one-remote-higher"),
        pytest.param(T(5_000, 12), T(5_000, 9), 5_000, T(5_000, 13),
                     id="same-wall-takes-max-logical-plus-one-local-higher"),
    ],
)
def test_observe_takes_the_latest_wall_time_and_a_logical_count_above_it(
    last: HLCTimestamp, remote: HLCTimestamp, physical_ms: int, expected: HLCTimestamp
) -> None:
    clock = HybridLogicalClock(last=last)
    assert clock.observe(remote, physical_ms=physical_ms) == expected


def test_observe_result_exceeds_both_local_and_remote() -> None:
    clock = HybridLogicalClock(last=T(5_000, 3))
    remote = T(5_000, 8)
    before = clock.last
    result = clock.observe(remote, physical_ms=100)
    assert result > remote and result > before


def test_observe_accepts_a_plain_tuple() -> None:
    clock = HybridLogicalClock()
    assert clock.observe((2_000, 1), physical_ms=2_000) == T(2_000, 2)  # type: ignore[arg-type]


# -- logical overflow ------------------------------------------------------------------


def test_now_logical_overflow_advances_wall_and_resets_logical() -> None:
    clock = HybridLogicalClock(last=T(1_000, MAX_LOGICAL - 1))
    assert clock.now(1_000) == T(1_000, MAX_LOGICAL)
    assert clock.now(1_000) == T(1_001, 0)
    assert clock.now(1_000) == T(1_001, 1)
    assert clock.now(1_001) == T(1_001, 2)
    assert clock.now(1_002) == T(1_002, 0)


def test_observe_logical_overflow_advances_wall_and_resets_logical() -> None:
    clock = HybridLogicalClock(last=T(1_000, 3))
    result = clock.observe(T(1_000, MAX_LOGICAL), physical_ms=1_000)
    assert result == T(1_001, 0)
    assert result > T(1_000, MAX_LOGICAL)
    assert result.encode() > T(1_000, MAX_LOGICAL).encode()


# -- drift -----------------------------------------------------------------------------


def test_drift_error_leaves_state_unchanged() -> None:
    clock = HybridLogicalClock(max_drift_ms=1_000, last=T(10_000, 4))
    with pytest.raises(ClockDriftError) as info:
        clock.observe(T(11_001, 0), physical_ms=10_000)
    assert clock.last == T(10_000, 4)
    assert clock.now(10_000) == T(10_000, 5)
    error = info.value
    assert error.retriable is True
    assert isinstance(error, EdgebusError)
    assert (error.remote, error.physical_ms, error.max_drift_ms) == (T(11_001, 0), 10_000, 1_000)


def test_drift_error_message_gives_both_times_and_says_to_check_ntp() -> None:
    clock = HybridLogicalClock(max_drift_ms=1_000)
    with pytest.raises(ClockDriftError) as info:
        clock.observe(T(75_000, 0), physical_ms=10_000)
    message = str(info.value)
    assert "75000 ms" in message and "10000 ms" in message and "65000 ms ahead" in message
    assert "NTP" in message


def test_remote_exactly_at_the_drift_limit_is_accepted() -> None:
    clock = HybridLogicalClock(max_drift_ms=1_000)
    assert clock.observe(T(11_000, 0), physical_ms=10_000) == T(11_000, 1)


def test_remote_behind_physical_time_is_never_drift() -> None:
    clock = HybridLogicalClock(max_drift_ms=0)
    assert clock.observe(T(1, 0), physical_ms=10_000) == T(10_000, 0)


# -- validation ------------------------------------------------------------------------


@pytest.mark.parametrize("physical", [-1, MAX_WALL_MS + 1, 1.5, True, "1"])
def test_invalid_physical_time_is_rejected_and_changes_nothing(physical: object) -> None:
    clock = HybridLogicalClock(last=T(5, 5))
    with pytest.raises(InvalidInput, match="physical time"):
        clock.now(physical)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="physical time"):
        clock.observe(T(1, 1), physical)  # type: ignore[arg-type]
    assert clock.last == T(5, 5)


@pytest.mark.parametrize("remote", [T(-1, 0), T(0, MAX_LOGICAL + 1), T(0, -1), (1, 2, 3), None])
def test_invalid_remote_timestamp_is_rejected(remote: object) -> None:
    clock = HybridLogicalClock()
    with pytest.raises(InvalidInput, match="remote"):
        clock.observe(remote, 1_000)  # type: ignore[arg-type]
    assert clock.last == T(0, 0)


@pytest.mark.parametrize("drift", [-1, 1.0, None])
def test_invalid_max_drift_is_rejected(drift: object) -> None:
    with pytest.raises(InvalidInput, match="max_drift_ms"):
        HybridLogicalClock(max_drift_ms=drift)  # type: ignore[arg-type]


def test_invalid_last_is_rejected() -> None:
    with pytest.raises(InvalidInput, match="last"):
        HybridLogicalClock(last=T(0, MAX_LOGICAL + 1))


# -- encoding --------------------------------------------------------------------------


def test_encode_golden_bytes() -> None:
    assert T(0, 0).encode() == bytes(8)
    assert T(1, 2).encode() == bytes.fromhex("0000000000010002")
    assert T(1_700_000_000_123, 7).encode() == (((1_700_000_000_123 << 16) | 7).to_bytes(8, "big"))
    assert T(MAX_WALL_MS, MAX_LOGICAL).encode() == b"\xff" * 8


def test_encode_decode_round_trip() -> None:
    for ts in (T(0, 0), T(1, MAX_LOGICAL), T(1_700_000_000_123, 42), T(MAX_WALL_MS, 0)):
        assert T.decode(ts.encode()) == ts
    assert T.decode(bytearray(T(5, 6).encode())) == T(5, 6)


def test_byte_order_matches_timestamp_order() -> None:
    ordered = [T(0, 1), T(0, MAX_LOGICAL), T(1, 0), T(256, 0), T(256, 1), T(65_536, 0)]
    encoded = [ts.encode() for ts in ordered]
    assert encoded == sorted(encoded)


@pytest.mark.parametrize("data", [b"", b"\x00" * 7, b"\x00" * 9])
def test_decode_rejects_wrong_length(data: bytes) -> None:
    with pytest.raises(DecodeError, match="exactly 8 bytes"):
        T.decode(data)


def test_decode_rejects_non_bytes() -> None:
    with pytest.raises(DecodeError, match="expected 8 bytes"):
        T.decode("12345678")  # type: ignore[arg-type]


@pytest.mark.parametrize("ts", [T(-1, 0), T(0, -1), T(0, MAX_LOGICAL + 1), T(MAX_WALL_MS + 1, 0)])
def test_encode_rejects_out_of_range_fields(ts: HLCTimestamp) -> None:
    with pytest.raises(InvalidInput):
        ts.encode()
