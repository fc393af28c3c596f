"""The pure parts of a repair (``POST /v1/repair``, ``edgebus repair``, ``EdgeBus.sync``):
the request body's checks, where a catch-up starts, what the repaired region must reach,
and the reports."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka import ConsumerRecord

from edgebus.config import EdgeConfig
from edgebus.errors import InvalidInput
from edgebus.region.catch_up import (
    MAX_OFFSET,
    CatchUpReport,
    _chunks,
    check_repair,
    parse_repair_body,
    plan_starts,
)
from edgebus.sdk.repair import (
    OriginRepair,
    PeerChecksums,
    RepairReport,
    _reach,
    frontier_lacking,
    starts_from_frontier,
    unexamined,
)
from edgebus.server.query import _BODY_LIMITS, _MUTATING, _PARAMS, ROLES

CONFIG = EdgeConfig.from_mapping(
    {"discovery": {"locations": ["us", "eu", "ap"]}, "kafka": {"partitions": 3}}
)


# ------------------------------------------------------------------ the request body


def test_a_valid_body_names_the_target_and_a_start_per_partition() -> None:
    assert parse_repair_body({"into": "eu", "from": {"0": 5, "2": 0}}, "us", CONFIG) == (
        "eu", {0: 5, 2: 0})


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"from": {"0": 1}}, '"into" must be the name of the region'),
        ({"into": 3, "from": {"0": 1}}, '"into" must be the name of the region'),
        ({"into": "mars", "from": {"0": 1}}, "another configured region than us (eu, ap)"),
        ({"into": "us", "from": {"0": 1}}, "another configured region than us"),
        ({"into": "eu"}, '"from" must be an object of partition -> first offset'),
        ({"into": "eu", "from": [1, 2]}, '"from" must be an object'),
        ({"into": "eu", "from": {}}, '"from" names no partition'),
        ({"into": "eu", "from": {"a": 1}}, "partitions are numbers 0 to 2"),
        ({"into": "eu", "from": {"-1": 1}}, "partitions are numbers 0 to 2"),
        ({"into": "eu", "from": {"12345": 1}}, "partitions are numbers 0 to 2"),
        ({"into": "eu", "from": {"\u0663": 1}}, "partitions are numbers"),  # Arabic-Indic 3
        ({"into": "eu", "from": {"3": 1}}, "partition 3 does not exist"),
        ({"into": "eu", "from": {"1": 1, "01": 2}}, "names partition 1 twice"),
        ({"into": "eu", "from": {"0": -1}}, "offset -1 is out of range"),
        ({"into": "eu", "from": {"0": MAX_OFFSET + 1}}, "is out of range"),
        ({"into": "eu", "from": {"0": True}}, "offsets are integers"),
        ({"into": "eu", "from": {"0": 1.5}}, "offsets are integers"),
        ({"into": "eu", "from": {"0": "7"}}, "offsets are integers"),
        ({"into": "eu", "from": {"0": None}}, "offsets are integers"),
    ],
)
def test_a_bad_body_is_refused_saying_what_is_wrong(body: dict[str, Any], says: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_repair_body(body, "us", CONFIG)
    assert says in str(refused.value)


def test_an_embedded_caller_is_checked_like_the_endpoint() -> None:
    assert check_repair("us", "ap", {1: 0}, CONFIG) == {1: 0}
    with pytest.raises(InvalidInput, match="partition 7 does not exist"):
        check_repair("us", "ap", {7: 0}, CONFIG)


def test_repair_is_an_admin_route_taking_a_json_body_and_no_parameters() -> None:
    assert ROLES["repair"] == "admin"
    assert _PARAMS["repair"] == frozenset()
    assert '"into"' in _MUTATING["repair"] and '"from"' in _MUTATING["repair"]
    # an offset for each of the most partitions a config may have fits in the body
    body = '{"into": "eu-west-1", "from": {' + ", ".join(
        f'"{p}": {MAX_OFFSET}' for p in range(1000)) + "}}"
    assert len(body) > 4 * 1024 and len(body) <= _BODY_LIMITS["repair"]


# ------------------------------------------------------------------ where a catch-up starts


def test_a_start_is_lowered_to_what_the_replicator_committed_and_raised_to_the_log_start() -> None:
    assert plan_starts({0: 10, 1: 10, 2: 3}, {0: 4, 1: 50}, {0: 0, 1: 0, 2: 0}) == {
        0: 4, 1: 10, 2: 0}  # partition 2: no commit, the replicator starts at the start
    assert plan_starts({0: 2}, {0: 1}, {0: 7}) == {0: 7}  # retention deleted 0..6


def test_an_origin_starts_one_past_the_frontier_and_at_zero_where_nothing_passed() -> None:
    frontier = {"us:0": 4, "us:2": -1, "eu:1": 9}
    assert starts_from_frontier(frontier, "us", 3) == {0: 5, 1: 0, 2: 0}
    assert starts_from_frontier(frontier, "eu", 3) == {0: 0, 1: 10, 2: 0}


def test_what_the_region_still_lacks_is_each_stream_below_its_reach() -> None:
    frontier = {"us:0": 7, "us:1": 2}
    assert frontier_lacking(frontier, "us", {0: 7, 1: 5, 2: 0}) == {"us:1": 5, "us:2": 0}
    assert frontier_lacking(frontier, "us", {}) == {}


def test_a_reach_that_is_not_partition_to_offset_is_refused() -> None:
    assert _reach({"reach": {"0": 4, "2": 9}}) == {0: 4, 2: 9}
    for bad in ({}, {"reach": [1]}, {"reach": {"x": 1}}, {"reach": {"0": "1"}},
                {"reach": {"0": True}}):
        assert _reach(bad) is None


async def test_records_are_handed_to_the_copier_in_runs_of_one_partition_in_order() -> None:
    def rec(partition: int, offset: int) -> ConsumerRecord[bytes, bytes]:
        return ConsumerRecord("t", partition, offset, 0, 0, None, b"", None, 0, 0, [])

    async def read() -> AsyncIterator[ConsumerRecord[bytes, bytes]]:
        for p, o in [(0, 1), (0, 2), (1, 5), (0, 3), (1, 6), (1, 7)]:
            await asyncio.sleep(0)
            yield rec(p, o)

    runs = [(p, [r.offset for r in chunk]) async for p, chunk in _chunks(read())]
    assert runs == [(0, [1, 2]), (1, [5]), (0, [3]), (1, [6, 7])]


def test_an_origin_that_did_not_read_from_where_it_was_asked_proves_nothing() -> None:
    asked = {0: 5, 1: 0}
    covered = {"starts": {"0": 3, "1": 0}, "ends": {"0": 9, "1": 0}, "reach": {"0": 8}}
    assert unexamined(covered, asked) is None  # lowered to the replicator's commit: fine
    assert "did not read partition 1" in str(
        unexamined({**covered, "starts": {"0": 5}}, asked))
    assert "from offset 6, not from 5" in str(
        unexamined({**covered, "starts": {"0": 6, "1": 0}}, asked))
    assert "no valid starts and ends" in str(unexamined({"reach": {}}, asked))
    # asked past the origin's end: nothing to read from its end on; later is a gap
    assert unexamined({"starts": {"0": 9}, "ends": {"0": 9}}, {0: 20}) is None
    assert "from offset 20" in str(unexamined({"starts": {"0": 20}, "ends": {"0": 9}}, {0: 20}))


# ------------------------------------------------------------------ reports


def test_a_catch_up_report_names_partitions_as_strings() -> None:
    report = CatchUpReport("us", "eu", examined=5, copied=3, starts={1: 0, 0: 2},
                           ends={0: 9, 1: 4}, reach={0: 8})
    document = report.to_dict()
    assert document["starts"] == {"0": 2, "1": 0} and document["reach"] == {"0": 8}
    assert (document["origin"], document["target"], document["copied"]) == ("us", "eu", 3)


def test_a_repair_is_ok_only_when_every_origin_answered_and_was_applied() -> None:
    done = OriginRepair("us", True, copy={"copied": 4, "reach": {"0": 3}})
    lagging = OriginRepair("ap", True, copy={"copied": 1, "reach": {"1": 8}},
                           lacking={"ap:1": 8})
    silent = OriginRepair("ap", False, "does not answer")
    skipped = OriginRepair("ap", True, "it did not read partition 1", {"copied": 0})
    differ = PeerChecksums("us", True, None, 3, 256, [7])

    def report(*origins: OriginRepair) -> RepairReport:
        return RepairReport("eu", {}, {"us:0": 3}, list(origins), [differ])

    assert report(done).ok and report(done).copied == 4
    assert not report(done, lagging).ok and not report(done, silent).ok
    assert not report(done, skipped).ok
    document = report(done, silent).to_dict()
    assert document["ok"] is False and document["copied"] == 4
    assert [o["complete"] for o in document["origins"]] == [True, False]
    # buckets that differ do not decide: a key placed in one region only differs by design
    assert document["checksums"][0]["same"] is False and report(done).ok
