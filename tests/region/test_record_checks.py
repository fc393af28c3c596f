"""Control data is checked where it is read: forged origin positions, dependencies that
name no stream or are never met, heartbeats from the future, folds that raise. Each
is a dead letter with its reason, and nothing of it moves the frontier (no Kafka)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiokafka import ConsumerRecord

from connectors import by_url
from connectors.base import Store
from edgebus.config import load_config
from edgebus.core.envelope import Operation
from edgebus.core.vector_clock import VectorClock
from edgebus.region.applier import BatchApplier
from edgebus.region.record_checks import EndsOutdated, RecordChecks, SourceEnds
from edgebus.wire.headers import H_DEPS, H_ORIGIN_POS
from edgebus.wire.watermark import H_WATERMARK, HEARTBEAT, Watermark, encode_watermark
from tests.region.test_applier import AP, EU, RULES, US, apply_and_commit, copy_of, record

CONFIG = load_config({"discovery": {"locations": [US, EU, AP]}})
NOW_MS = 1_800_000_000_000


def applier(store: Store, ends: SourceEnds | None = None) -> BatchApplier:
    ends = ends if ends is not None else SourceEnds()
    return BatchApplier(EU, RULES, store, checks=RecordChecks.live(CONFIG, EU, ends))


async def apply_at(
    a: BatchApplier, store: Store, records: list[Any], now_ms: int = NOW_MS
) -> Any:
    result = await a.apply(records, now_ms=now_ms)
    await store.commit(result.changes)
    return result


@pytest.fixture
async def store(tmp_path: Path) -> Any:
    s = by_url(f"sqlite://{tmp_path / 'store.db'}")
    async with s:
        yield s


def forged(rec: ConsumerRecord[bytes, bytes], position: str, offset: int = 0,
           partition: int | None = None) -> ConsumerRecord[bytes, bytes]:
    headers = [*rec.headers, (H_ORIGIN_POS, position.encode())]
    return ConsumerRecord(
        f"edgebus.{EU}.events", rec.partition if partition is None else partition, offset,
        0, 0, rec.key, rec.value, None, 1, 1, headers,
    )


@pytest.mark.parametrize(
    ("writer", "position", "says"),
    [
        (US, f"{US}:0:9000000000000000000", "ends at offset 10"),
        (EU, f"{EU}:0:3", "names this region"),
        ("mars-1", "mars-1:0:3", "not a configured region"),
        (US, f"{US}:2:3", "keeps its partition"),
    ],
    ids=["past-the-end", "own-region", "unknown-region", "other-partition"],
)
async def test_a_forged_origin_position_is_a_dead_letter_and_the_frontier_stays(
    store: Store, writer: str, position: str, says: str
) -> None:
    ends = SourceEnds()
    ends.load(US, {0: 10, 1: 10, 2: 10})
    a = applier(store, ends)
    placement = (EU, US) if writer == EU else (writer, EU)
    bad = forged(record(writer, 0, "k", 1, origin=writer, placement=placement), position)
    origin = record(US, 0, "k", 1, origin=US)
    result = await apply_at(a, store, [bad])
    [dead] = result.dead
    assert says in dead.reason
    assert await store.frontier() == {}
    # the real copy of the same origin event is applied, not taken for a duplicate
    real = await apply_at(a, store, [copy_of(origin, EU, 1)])
    assert len(real.applied) == 1
    assert await store.frontier() == {(US, 0): 0}


async def test_origin_positions_of_a_region_whose_ends_are_unknown_are_not_refused(
    store: Store,
) -> None:
    origin = record(US, 5, "k", 1, origin=US)
    result = await apply_at(applier(store), store, [copy_of(origin, EU, 0)])
    assert len(result.applied) == 1 and not result.dead


class Origin:
    """A fake origin cluster: its topic's ends as a re-read would find them."""

    def __init__(self, ends: dict[int, int] | None, fails: bool = False) -> None:
        self.ends = ends or {}
        self.fails = fails
        self.reads = 0

    async def __call__(self, region: str) -> dict[int, int]:
        self.reads += 1
        if self.fails:
            raise TimeoutError(f"{region}'s cluster did not answer")
        return self.ends


async def refold(a: BatchApplier, store: Store, ends: SourceEnds, records: list[Any]) -> Any:
    """What the materializer does: fold; on EndsOutdated re-read and fold again."""
    ends.begin_batch()
    while True:
        checkpoint = a.checkpoint()
        try:
            return await apply_at(a, store, records)
        except EndsOutdated as outdated:
            a.rollback(checkpoint)
            await ends.refresh(outdated.region)


async def test_a_copy_past_the_known_end_has_the_end_read_again_then_applies(
    store: Store,
) -> None:
    origin = Origin({0: 10, 1: 10, 2: 10})
    ends = SourceEnds(reread=origin)
    ends.load(US, {0: 3, 1: 3, 2: 3})  # read at start; the origin pushed more since
    a = applier(store, ends)
    copy = copy_of(record(US, 7, "k", 1, origin=US), EU, 0)
    result = await refold(a, store, ends, [copy])
    assert len(result.applied) == 1 and not result.dead
    assert origin.reads == 1 and await store.frontier() == {(US, 0): 7}
    # below the end now known: no second read
    result = await refold(a, store, ends, [copy_of(record(US, 8, "j", 1, origin=US), EU, 1)])
    assert len(result.applied) == 1 and origin.reads == 1


async def test_a_position_past_the_end_read_again_is_forged_and_read_once_per_batch(
    store: Store,
) -> None:
    origin = Origin({0: 10, 1: 10, 2: 10})
    ends = SourceEnds(reread=origin)
    a = applier(store, ends)
    forged_ = [copy_of(record(US, 50 + n, f"k{n}", 1, origin=US), EU, n) for n in range(3)]
    result = await refold(a, store, ends, forged_)
    assert [("ends at offset 10" in d.reason) for d in result.dead] == [True] * 3
    assert origin.reads == 1 and await store.frontier() == {}


async def test_an_origin_that_cannot_be_read_again_leaves_its_positions_unchecked_for_a_while(
    store: Store,
) -> None:
    origin = Origin(None, fails=True)  # e.g. its broker restarts
    ends = SourceEnds(reread=origin)
    ends.load(US, {0: 3, 1: 3, 2: 3})  # stale by now: not a proof of forgery
    a = applier(store, ends)
    copy = copy_of(record(US, 7, "k", 1, origin=US), EU, 0)
    result = await refold(a, store, ends, [copy])
    assert len(result.applied) == 1 and origin.reads == 1
    await refold(a, store, ends, [copy_of(record(US, 8, "j", 1, origin=US), EU, 1)])
    assert origin.reads == 1  # not again before RETRY_REREAD_S


def with_deps(rec: ConsumerRecord[bytes, bytes], deps: dict[tuple[str, int], int],
              offset: int) -> ConsumerRecord[bytes, bytes]:
    headers = [(k, v) for k, v in rec.headers if k != H_DEPS]
    headers.append((H_DEPS, VectorClock(deps).encode()))
    return ConsumerRecord(rec.topic, rec.partition, offset, 0, 0, rec.key, rec.value, None,
                          1, 1, headers)


@pytest.mark.parametrize(
    ("deps", "says"),
    [({("mars-1", 0): 3}, "names no configured region"),
     ({(US, 4000): 3}, "partitions")],
    ids=["unknown-region", "missing-partition"],
)
async def test_a_dependency_on_a_stream_that_cannot_exist_is_a_dead_letter_at_once(
    store: Store, deps: dict[tuple[str, int], int], says: str
) -> None:
    result = await apply_at(applier(store), store, [with_deps(record(EU, 0, "k", 1), deps, 0)])
    [dead] = result.dead
    assert says in dead.reason
    assert await store.get("k") is None


async def test_an_event_whose_dependency_never_comes_is_dead_lettered_after_the_timeout(
    store: Store,
) -> None:
    a = applier(store)
    timeout = CONFIG.replication.dependency_timeout_ms
    stuck = with_deps(record(EU, 0, "k", 1), {(AP, 3): 2**62}, 0)
    after = record(EU, 1, "j", 2)
    first = await apply_at(a, store, [stuck, after])
    assert (first.dead, first.applied) == ([], [])  # both wait: the stream is FIFO
    assert await store.positions() == {(f"edgebus.{EU}.events", 0): 0}
    still = await apply_at(a, store, [], NOW_MS + timeout - 1)
    assert still.dead == []
    later = await apply_at(a, store, [], NOW_MS + timeout)
    [dead] = later.dead
    assert dead.record is stuck and "dependency timeout" in dead.reason
    assert f"{AP}:3>={2**62}" in dead.reason
    assert [e.key for e in later.applied] == ["j"]
    assert await store.positions() == {(f"edgebus.{EU}.events", 0): 2}


def heartbeat(origin_ms: int, offset: int) -> ConsumerRecord[bytes, bytes]:
    value = encode_watermark(Watermark(EU, 0, origin_ms, HEARTBEAT))
    headers = [(H_WATERMARK, HEARTBEAT.encode()), ("eb-origin", EU.encode())]
    return ConsumerRecord(f"edgebus.{EU}.events", 0, offset, 0, 0, None, value, None, 0,
                          len(value), headers)


async def test_a_heartbeat_from_the_future_is_a_dead_letter_and_freshness_stays(
    store: Store,
) -> None:
    a = applier(store)
    drift = CONFIG.replication.max_clock_drift_ms
    ok = await apply_at(a, store, [heartbeat(NOW_MS + drift, 0)])
    assert ok.dead == []
    future = await apply_at(a, store, [heartbeat(NOW_MS + 300 * 365 * 86_400_000, 1)])
    [dead] = future.dead
    assert "clock drift" in dead.reason and "max_clock_drift_ms" in dead.reason
    gate = a.current_gate
    assert gate is not None and gate.fresh_ms == {(EU, 0): NOW_MS + drift}


async def test_a_record_whose_fold_raises_is_a_dead_letter_and_the_batch_applies(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgebus.core.conflict import apply as real_apply

    def fold(state: Any, key: str, op: Any) -> Any:
        if key == "boom":
            raise RuntimeError("a fold bug")
        return real_apply(state, key, op)

    monkeypatch.setattr("edgebus.region.applier.apply", fold)
    result = await apply_and_commit(
        BatchApplier(EU, RULES, store), store,
        [record(EU, 0, "boom", 1), record(EU, 1, "k", 2, op=Operation.SET)],
    )
    [dead] = result.dead
    assert "cannot apply to 'boom'" in dead.reason and "a fold bug" in dead.reason
    assert (await store.get("k")).value == 2  # type: ignore[union-attr]


async def test_the_causal_buffer_counts_the_bytes_of_what_it_holds(store: Store) -> None:
    a = applier(store)
    rec = with_deps(record(EU, 0, "k", "x" * 5000), {(AP, 3): 7}, 0)
    await apply_at(a, store, [rec])
    gate = a.current_gate
    assert gate is not None and gate.pending == 1
    assert gate.pending_bytes >= 5000


async def test_an_increment_that_overflows_a_float_is_a_dead_letter_and_the_value_stays(
    store: Store,
) -> None:
    result = await apply_and_commit(BatchApplier(EU, RULES, store), store, [
        record(EU, 0, "f", 1.7e308, op=Operation.INCREMENT),
        record(EU, 1, "f", 1.7e308, op=Operation.INCREMENT),
    ])
    [dead] = result.dead
    assert dead.record.offset == 1 and "which JSON cannot hold" in dead.reason
    assert (await store.get("f")).value == 1.7e308  # type: ignore[union-attr]
