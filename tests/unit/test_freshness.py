"""Freshness decisions for reads: session coverage, staleness, versions behind."""

from __future__ import annotations

from edgebus.core.freshness import key_streams, missing, staleness_ms, versions_behind
from edgebus.core.vector_clock import VectorClock

PASSED = {("us", 1): 10, ("eu", 1): 4}


def passed(stream: tuple[str, int]) -> int:
    return PASSED.get(stream, -1)


def test_a_key_can_be_written_by_every_origin_in_its_partition() -> None:
    assert key_streams(["us", "eu"], 3) == [("us", 3), ("eu", 3)]


def test_a_token_is_covered_when_every_entry_is_passed() -> None:
    assert missing(VectorClock({("us", 1): 10, ("eu", 1): 4}), passed) == {}
    assert missing(VectorClock({("us", 1): 11, ("ap", 0): 0}), passed) == {
        ("us", 1): 11, ("ap", 0): 0,
    }


def test_staleness_is_the_age_of_the_oldest_origin_heartbeat() -> None:
    fresh = {("us", 1): 9_000, ("eu", 1): 9_500}
    assert staleness_ms([("us", 1), ("eu", 1)], fresh, 10_000) == 1_000


def test_staleness_is_unknown_when_an_origin_has_no_heartbeat_yet() -> None:
    assert staleness_ms([("us", 1), ("ap", 1)], {("us", 1): 9_000}, 10_000) is None


def test_staleness_never_goes_negative_under_clock_skew() -> None:
    assert staleness_ms([("us", 1)], {("us", 1): 10_050}, 10_000) == 0.0


def test_versions_behind_counts_every_record_the_region_may_lack() -> None:
    # us head 13: offsets 11 and 12 are not passed; eu head 5: nothing missing
    assert versions_behind({("us", 1): 13, ("eu", 1): 5}, passed) == 2
    assert versions_behind({("ap", 1): 3}, passed) == 3
