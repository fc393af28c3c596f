"""Store lineage: what a store was built from, and the reasons it no longer fits."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgebus.core.lineage import StoreLineage, lineage_mismatch
from edgebus.errors import StoreError

TOPIC = "edgebus.eu-west-1.events"
BUILT = StoreLineage(
    bootstrap="kafka-eu:9092",
    cluster_id="MkU3OEVBNTcwNTJENDM2Qg",
    topic=TOPIC,
    topic_id="x8KQ9W1bS2eYk3rZp0aF3w",
    partitions=3,
)
ENDS = {0: 100, 1: 200, 2: 631}


def test_json_round_trips() -> None:
    assert StoreLineage.from_json(BUILT.to_json()) == BUILT


def test_json_is_one_line_with_sorted_keys() -> None:
    text = BUILT.to_json()
    assert "\n" not in text
    assert text.startswith('{"bootstrap":"kafka-eu:9092","cluster_id":')


def test_from_json_ignores_keys_a_newer_edgebus_adds() -> None:
    text = BUILT.to_json()[:-1] + ',"new_field":1}'
    assert StoreLineage.from_json(text) == BUILT


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"bootstrap": "b"}', "cluster_id is missing"),
        (BUILT.to_json().replace('"partitions":3', '"partitions":0'), "not a positive"),
        (BUILT.to_json().replace('"partitions":3', '"partitions":true'), "not a positive"),
        (BUILT.to_json().replace('"topic":"', '"topic":7,"x":"'), "topic is missing"),
    ],
)
def test_an_unreadable_lineage_raises_store_error_saying_what_to_do(
    text: str, problem: str
) -> None:
    with pytest.raises(StoreError, match=problem) as raised:
        StoreLineage.from_json(text)
    assert "Remove the store" in str(raised.value)


def test_the_same_kafka_with_positions_within_the_ends_is_no_mismatch() -> None:
    assert lineage_mismatch(BUILT, BUILT, {0: 100, 1: 5}, ENDS) == []


def test_a_new_bootstrap_address_of_the_same_cluster_is_no_mismatch() -> None:
    moved = replace(BUILT, bootstrap="10.0.0.7:9093")
    assert lineage_mismatch(BUILT, moved, {0: 1}, ENDS) == []


def test_another_cluster_is_reported_without_blaming_the_topic_id() -> None:
    other = replace(BUILT, bootstrap="b2:9092", cluster_id="other", topic_id="y" * 22)
    assert lineage_mismatch(BUILT, other, {}, ENDS) == [
        "built from cluster MkU3OEVBNTcwNTJENDM2Qg, the broker at b2:9092 is cluster other"
    ]


def test_a_recreated_topic_is_reported_with_both_ids() -> None:
    recreated = replace(BUILT, topic_id="AAAAAAAAAAAAAAAAAAAAAQ")
    assert lineage_mismatch(BUILT, recreated, {}, ENDS) == [
        f"topic {TOPIC} was recreated (topic id x8KQ9W1bS2eYk3rZp0aF3w, "
        "now AAAAAAAAAAAAAAAAAAAAAQ)"
    ]


def test_another_topic_is_reported() -> None:
    other = replace(BUILT, topic="edgebus.us-east-1.events", topic_id="z" * 22)
    assert lineage_mismatch(BUILT, other, {}, ENDS) == [
        f"built from topic {TOPIC}, now reading edgebus.us-east-1.events"
    ]


def test_a_changed_partition_count_is_reported() -> None:
    grown = replace(BUILT, partitions=6)
    assert lineage_mismatch(BUILT, grown, {}, ENDS) == ["partition count 3, now 6"]


def test_a_position_past_the_end_is_reported() -> None:
    assert lineage_mismatch(BUILT, BUILT, {0: 100, 2: 3901}, ENDS) == [
        "partition 2: stored position 3901 is past the topic's end 631"
    ]


def test_a_position_of_a_partition_the_topic_lacks_is_reported() -> None:
    shrunk = replace(BUILT, partitions=2)
    assert lineage_mismatch(BUILT, shrunk, {2: 10}, {0: 5, 1: 5}) == [
        "partition count 3, now 2",
        f"partition 2: stored position 10, but topic {TOPIC} has no partition 2",
    ]


def test_a_partition_without_a_known_end_is_not_checked_against_one() -> None:
    assert lineage_mismatch(BUILT, BUILT, {1: 10**9}, {0: 5}) == []


def test_every_reason_is_reported_at_once() -> None:
    changed = replace(BUILT, topic_id="new-id", partitions=6)
    assert lineage_mismatch(BUILT, changed, {1: 500}, ENDS) == [
        f"topic {TOPIC} was recreated (topic id x8KQ9W1bS2eYk3rZp0aF3w, now new-id)",
        "partition count 3, now 6",
        "partition 1: stored position 500 is past the topic's end 200",
    ]


def test_a_store_from_before_lineage_is_checked_against_the_ends_only() -> None:
    assert lineage_mismatch(None, BUILT, {0: 100, 1: 200}, ENDS) == []
    assert lineage_mismatch(None, BUILT, {}, ENDS) == []
    assert lineage_mismatch(None, BUILT, {0: 101}, ENDS) == [
        "partition 0: stored position 101 is past the topic's end 100"
    ]


lineages = st.builds(
    StoreLineage,
    bootstrap=st.text(max_size=20),
    cluster_id=st.text(max_size=22),
    topic=st.text(min_size=1, max_size=30),
    topic_id=st.text(max_size=22),
    partitions=st.integers(min_value=1, max_value=12),
)


@st.composite
def lineage_positions_and_ends(
    draw: st.DrawFn,
) -> tuple[StoreLineage, dict[int, int], dict[int, int]]:
    """A lineage, the ends of its partitions and positions at or before them."""
    lineage = draw(lineages)
    ends = {
        p: draw(st.integers(min_value=0, max_value=2**62)) for p in range(lineage.partitions)
    }
    chosen = draw(st.sets(st.sampled_from(sorted(ends))))
    positions = {p: draw(st.integers(min_value=0, max_value=ends[p])) for p in chosen}
    return lineage, positions, ends


@given(lineage_positions_and_ends())
def test_identical_lineage_with_positions_within_the_ends_never_mismatches(
    case: tuple[StoreLineage, dict[int, int], dict[int, int]],
) -> None:
    lineage, positions, ends = case
    copy = StoreLineage.from_json(lineage.to_json())
    assert copy == lineage
    assert lineage_mismatch(copy, lineage, positions, ends) == []
    assert lineage_mismatch(None, lineage, positions, ends) == []
