"""AlignedBatches: batches across partitions, cut at a common timestamp, nothing lost.

The consumer here is a stand-in that hands out crafted records the way aiokafka's
``getmany`` does (per partition, in offset order, up to ``max_records``): what is under
test is the batching, not Kafka (the materializer and replay use it against real
Kafka in the integration tests).
"""

from __future__ import annotations

from typing import Any

from aiokafka import ConsumerRecord, TopicPartition
from hypothesis import given, settings
from hypothesis import strategies as st

from edgebus.kafka.reading import AlignedBatches

TOPIC = "edgebus.r.events"


class Fetched:
    """Records already fetched, per partition (what getmany drains)."""

    def __init__(self, records: dict[int, list[int]]) -> None:
        self.left = {
            TopicPartition(TOPIC, p): [
                ConsumerRecord(TOPIC, p, i, ts, 0, b"k", b"v", None, 1, 1, [])
                for i, ts in enumerate(stamps)
            ]
            for p, stamps in records.items()
        }
        self.assigned = set(self.left)

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    async def getmany(self, *tps: TopicPartition, timeout_ms: int = 0,
                      max_records: int | None = None) -> dict[TopicPartition, list[Any]]:
        out: dict[TopicPartition, list[Any]] = {}
        budget = max_records or 10**9
        for tp in tps or sorted(self.left, key=lambda t: t.partition):
            take = self.left.get(tp, [])[:budget]
            if take and tp in self.assigned:
                out[tp] = take
                self.left[tp] = self.left[tp][len(take):]
                budget -= len(take)
            if not budget:
                break
        return out


async def drain(batches: AlignedBatches, fetched: Fetched, max_records: int) -> list[list[Any]]:
    out = []
    for _ in range(1000):
        batch = await batches.fetch(fetched, timeout_ms=0, max_records=max_records)  # type: ignore[arg-type]
        if not batch and not batches.held:
            return out
        out.append([r for tp in sorted(batch, key=lambda t: t.partition) for r in batch[tp]])
    raise AssertionError("never drained")


async def test_a_batch_takes_every_partition_up_to_the_earliest_full_partitions_last_stamp(
) -> None:
    fetched = Fetched({0: [10, 20, 30, 40], 1: [5, 6, 7, 8], 2: [35]})
    batches = AlignedBatches()
    first = await batches.fetch(fetched, timeout_ms=0, max_records=9)  # type: ignore[arg-type]
    # shares of 3: partitions 0 (up to 30) and 1 (up to 7) gave full shares, so the
    # horizon is 7; partition 0's 10, 20, 30 and partition 2's 35 wait for the next batch
    assert {tp.partition: [r.timestamp for r in rs] for tp, rs in first.items()} == {
        1: [5, 6, 7]}
    assert batches.held == 4


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.integers(0, 3), st.lists(st.integers(0, 50), max_size=12),
                       max_size=4), st.integers(1, 10))
async def test_every_record_comes_once_in_partition_order_and_none_is_kept_back_twice(
    stamps: dict[int, list[int]], max_records: int
) -> None:
    fetched = Fetched(stamps)
    batches = AlignedBatches()
    out = await drain(batches, fetched, max_records)
    seen = [(r.partition, r.offset) for batch in out for r in batch]
    assert sorted(seen) == sorted((p, i) for p, s in stamps.items() for i in range(len(s)))
    for p in stamps:
        mine = [o for q, o in seen if q == p]
        assert mine == sorted(mine)


async def test_records_kept_back_come_in_the_next_batch_whatever_their_stamps() -> None:
    # partition 1's records carry forged old stamps: the horizon stays low, yet
    # partition 0's records kept back once are handed over in the very next batch
    fetched = Fetched({0: [100, 101, 102, 103, 104, 105], 1: [1] * 12})
    batches = AlignedBatches()
    first = await batches.fetch(fetched, timeout_ms=0, max_records=4)  # type: ignore[arg-type]
    assert TopicPartition(TOPIC, 0) not in first and batches.held == 2
    second = await batches.fetch(fetched, timeout_ms=0, max_records=4)  # type: ignore[arg-type]
    assert [r.offset for r in second[TopicPartition(TOPIC, 0)]] == [0, 1]


async def test_records_kept_back_of_a_revoked_partition_or_before_a_seek_are_dropped() -> None:
    fetched = Fetched({0: [100, 101, 102], 1: [1, 2, 3]})
    batches = AlignedBatches()
    await batches.fetch(fetched, timeout_ms=0, max_records=4)  # type: ignore[arg-type]
    assert batches.held
    fetched.assigned.discard(TopicPartition(TOPIC, 0))
    again = await batches.fetch(fetched, timeout_ms=0, max_records=4)  # type: ignore[arg-type]
    assert TopicPartition(TOPIC, 0) not in again
    fetched.assigned.add(TopicPartition(TOPIC, 0))
    fetched.left[TopicPartition(TOPIC, 0)] = [
        ConsumerRecord(TOPIC, 0, 0, 100, 0, b"k", b"v", None, 1, 1, [])]
    fetched.left[TopicPartition(TOPIC, 1)] = [
        ConsumerRecord(TOPIC, 1, 3, 1, 0, b"k", b"v", None, 1, 1, [])] * 3
    await batches.fetch(fetched, timeout_ms=0, max_records=2)  # type: ignore[arg-type]
    batches.forget()
    assert batches.held == 0
