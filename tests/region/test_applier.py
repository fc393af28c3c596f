"""The batch applier and the replicator's copy decision, on crafted records (no Kafka).

The applier is what both the live materializer and replay run, so these tests pin its
decisions: dead letters, duplicate copies, redrives applied once, late events folded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiokafka import ConsumerRecord

from connectors import by_url
from connectors.base import Store
from edgebus.core.envelope import Operation, new_event_id
from edgebus.core.hlc import HLCTimestamp
from edgebus.core.placement import ComplianceRules
from edgebus.core.vector_clock import VectorClock
from edgebus.kafka.dead_letters import H_REDRIVE_OF
from edgebus.region.applier import BatchApplier
from edgebus.region.replicator import copy_decision
from edgebus.wire.event_codec import encode_fields, encode_payload
from edgebus.wire.headers import H_ONCE, H_ORIGIN_POS, H_TXN

EU, US, AP = "eu-west-1", "us-east-1", "ap-south-1"
RULES = ComplianceRules.from_mappings()


def record(
    region: str,
    offset: int,
    key: str,
    payload: Any,
    *,
    op: Operation = Operation.SET,
    origin: str | None = None,
    placement: tuple[str, ...] | None = None,
    classes: tuple[str, ...] = ("public",),
    wall_ms: int = 1_000,
    partition: int = 0,
    extra_headers: list[tuple[str, bytes]] | None = None,
    value: bytes | None = None,
    record_key: bytes | None = None,
) -> ConsumerRecord[bytes, bytes]:
    origin = origin or region
    encoded = encode_fields(
        new_event_id(), key, op, encode_payload(payload), origin,
        placement or (origin, *(r for r in (EU, US, AP) if r != origin)), classes,
        HLCTimestamp(wall_ms, 0), VectorClock.empty(), "test",
    )
    headers = list(encoded.headers) + (extra_headers or [])
    body = encoded.value if value is None else value
    k = encoded.key if record_key is None else record_key
    return ConsumerRecord(
        f"edgebus.{region}.events", partition, offset, 0, 0, k, body, None, len(k),
        len(body), headers,
    )


def copy_of(rec: ConsumerRecord[bytes, bytes], target: str, offset: int) -> ConsumerRecord:
    origin = rec.topic.split(".")[1]
    headers = [*rec.headers, (H_ORIGIN_POS, f"{origin}:{rec.partition}:{rec.offset}".encode())]
    return ConsumerRecord(
        f"edgebus.{target}.events", rec.partition, offset, 0, 0, rec.key, rec.value, None,
        rec.serialized_key_size, rec.serialized_value_size, headers,
    )


@pytest.fixture
async def store(tmp_path: Path) -> Any:
    s = by_url(f"sqlite://{tmp_path / 'store.db'}")
    async with s:
        yield s


async def apply_and_commit(applier: BatchApplier, store: Store, records: list) -> Any:
    result = await applier.apply(records)
    await store.commit(result.changes)
    return result


async def test_undecodable_record_is_a_dead_letter_and_the_rest_of_the_batch_applies(
    store: Store,
) -> None:
    applier = BatchApplier(EU, RULES, store)
    good = record(EU, 1, "k", 1)
    bad = record(EU, 0, "x", 1, value=b"not avro at all")
    result = await apply_and_commit(applier, store, [bad, good])
    [dead] = result.dead
    assert dead.record is bad and "single-object" in dead.reason
    assert (await store.get("k")).value == 1  # type: ignore[union-attr]
    assert await store.positions() == {(f"edgebus.{EU}.events", 0): 2}


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"record_key": b"other"}, "differs from the event's key"),
        (
            {"origin": US, "placement": (US, AP),
             "extra_headers": [(H_ORIGIN_POS, f"{US}:0:3".encode())]},
            "not in eu-west-1",
        ),
        ({"origin": US}, "no eb-origin-pos header"),
        ({"classes": ("phi",)}, "compliance no longer allows phi"),
        ({"op": Operation.MERGE, "payload": [1]}, "must be a JSON object"),
    ],
)
async def test_record_that_must_not_apply_here_is_a_dead_letter_with_its_reason(
    store: Store, kwargs: dict[str, Any], reason: str
) -> None:
    payload = kwargs.pop("payload", {"v": 1})
    rec = record(EU, 0, "k", payload, **kwargs)
    result = await apply_and_commit(BatchApplier(EU, RULES, store), store, [rec])
    [dead] = result.dead
    assert reason in dead.reason
    assert await store.get("k") is None


async def test_second_copy_of_a_replicated_event_is_skipped_by_origin_position(
    store: Store,
) -> None:
    origin = record(US, 7, "k", 1, op=Operation.INCREMENT)
    applier = BatchApplier(EU, RULES, store)
    first = await apply_and_commit(applier, store, [copy_of(origin, EU, 0)])
    again = await apply_and_commit(applier, store, [copy_of(origin, EU, 1)])
    fresh = await apply_and_commit(BatchApplier(EU, RULES, store), store,
                                   [copy_of(origin, EU, 2)])  # after a restart too
    assert (len(first.applied), again.duplicates, fresh.duplicates) == (1, 1, 1)
    state = await store.get("k")
    assert state is not None and (state.value, state.version) == (1, 1)
    assert await store.frontier() == {(US, 0): 7}


async def test_redriven_record_applies_once_however_often_it_is_redriven(store: Store) -> None:
    rec = record(EU, 5, "k", 1, op=Operation.INCREMENT)
    redriven = [
        ConsumerRecord(rec.topic, 0, offset, 0, 0, rec.key, rec.value, None, 1, 1,
                       [*rec.headers, (H_REDRIVE_OF, b"2:9")])
        for offset in (10, 11)
    ]
    applier = BatchApplier(EU, RULES, store)
    await apply_and_commit(applier, store, redriven[:1])
    result = await apply_and_commit(applier, store, redriven[1:])
    assert result.duplicates == 1
    assert (await store.get("k")).value == 1  # type: ignore[union-attr]
    assert await store.was_redriven([(2, 9), (2, 8)]) == {(2, 9)}


def _strong_event(
    offset: int, key: str, event_id: str, deps: VectorClock, txn: bytes = b"txn-1"
) -> ConsumerRecord:
    """A strong commit's event in EU's topic (a participant's append, marked by its txn)."""
    encoded = encode_fields(
        event_id, key, Operation.INCREMENT, encode_payload(1), EU, (EU,), ("public",),
        HLCTimestamp(1_000 + offset, 0), deps, "test",
    )
    headers = [*encoded.headers, (H_TXN, txn)]
    return ConsumerRecord(f"edgebus.{EU}.events", 0, offset, 0, 0, encoded.key,
                          encoded.value, None, len(encoded.key), len(encoded.value), headers)


async def test_a_strong_commit_written_twice_applies_once_even_when_its_copy_waited_in_the_buffer(
    store: Store,
) -> None:
    # a participant killed before its ACK appends the same commit's event again; the
    # second copy waits in the causal buffer behind an event of another stream
    event_id = new_event_id()
    first = _strong_event(1, "strong", event_id, VectorClock.empty())
    blocked = _strong_event(2, "other", new_event_id(), VectorClock({(US, 0): 5}), b"txn-2")
    again = _strong_event(3, "strong", event_id, VectorClock.empty())
    dependency = copy_of(record(US, 5, "dep", 1), EU, 4)
    applier = BatchApplier(EU, RULES, store)
    for batch in ([first], [blocked, again], [dependency]):
        await apply_and_commit(applier, store, batch)
    state = await store.get("strong")
    assert state is not None and (state.value, state.version) == (1, 1)
    assert (await store.get("other")) is not None  # released once its dependency came


async def test_a_forged_origin_position_past_64_bits_is_a_dead_letter_and_the_batch_commits(
    store: Store,
) -> None:
    # stored, an offset of 2**70 failed the SQLite commit: the service exited and read
    # the same record again on restart, for ever
    forged = record(US, 7, "k", 1)
    forged = ConsumerRecord(
        f"edgebus.{EU}.events", 0, 3, 0, 0, forged.key, forged.value, None,
        forged.serialized_key_size, forged.serialized_value_size,
        [*forged.headers, (H_ORIGIN_POS, f"{US}:0:{2**70}".encode())],
    )
    good = record(EU, 4, "good", 1)
    applier = BatchApplier(EU, RULES, store)
    result = await apply_and_commit(applier, store, [forged, good])
    assert [d.record.offset for d in result.dead] == [3]
    assert "eb-origin-pos" in result.dead[0].reason
    assert (await store.get("good")) is not None
    assert all(o < 2**63 for o in (await store.frontier()).values())


async def test_late_append_is_folded_in_stamp_order_across_batches(store: Store) -> None:
    applier = BatchApplier(EU, RULES, store)
    await apply_and_commit(applier, store, [record(EU, 0, "l", "b", op=Operation.APPEND,
                                                   wall_ms=2_000)])
    await apply_and_commit(applier, store, [
        copy_of(record(US, 0, "l", "a", op=Operation.APPEND, wall_ms=1_000), EU, 1),
        copy_of(record(AP, 0, "l", "c", op=Operation.APPEND, wall_ms=3_000), EU, 2),
    ])
    state = await store.get("l")
    assert state is not None and state.value == ["a", "b", "c"]


async def test_set_in_the_same_batch_drops_earlier_retained_ops(store: Store) -> None:
    applier = BatchApplier(EU, RULES, store)
    await apply_and_commit(applier, store, [
        record(EU, 0, "c", 1, op=Operation.INCREMENT, wall_ms=1_000),
        record(EU, 1, "c", 10, wall_ms=2_000),
        record(EU, 2, "c", 5, op=Operation.INCREMENT, wall_ms=3_000),
    ])
    state = await store.get("c")
    assert state is not None and (state.value, state.n_ops) == (15, 1)
    assert [op.payload for op in await store.load_ops("c")] == [5]


def test_replicator_copies_origin_events_placed_in_the_target_only() -> None:
    placed = record(US, 0, "k", 1, placement=(US, EU))
    assert copy_decision(placed, US, EU, RULES) == (True, None)
    assert copy_decision(placed, US, AP, RULES) == (False, None)
    assert copy_decision(copy_of(placed, AP, 0), AP, EU, RULES) == (False, None)


def test_replicator_refuses_a_copy_compliance_forbids_even_if_placement_names_it() -> None:
    pii = record(EU, 0, "k", {"email": "a@example.com"}, placement=(EU, US), classes=("pii",))
    copy, refusal = copy_decision(pii, EU, US, RULES)
    assert copy is False
    assert refusal is not None and "compliance does not allow pii" in refusal


def test_replicator_refuses_headers_that_disagree_with_the_body() -> None:
    rec = record(US, 0, "k", 1, placement=(US,))
    forged = ConsumerRecord(
        rec.topic, 0, 0, 0, 0, rec.key, rec.value, None, 1, 1,
        [(k, v) if k != "eb-placement" else (k, f"{US},{EU}".encode()) for k, v in rec.headers],
    )
    copy, refusal = copy_decision(forged, US, EU, RULES)
    assert copy is False and refusal is not None and "body does not" in refusal


async def test_increment_beyond_64_bit_integers_is_a_dead_letter_and_the_counter_stays(
    store: Store,
) -> None:
    applier = BatchApplier(EU, RULES, store)
    result = await apply_and_commit(applier, store, [
        record(EU, 0, "c", 2**63 - 2, op=Operation.INCREMENT, wall_ms=1_000),
        record(EU, 1, "c", 5, op=Operation.INCREMENT, wall_ms=2_000),
        record(EU, 2, "c", -1, op=Operation.INCREMENT, wall_ms=3_000),
    ])
    [dead] = result.dead
    assert dead.record.offset == 1 and "beyond 64-bit integers" in dead.reason
    state = await store.get("c")
    assert state is not None and state.value == 2**63 - 3


class _Sent:
    def __init__(self) -> None:
        self.records: list[tuple[str, int, dict[str, bytes]]] = []

    async def send(self, topic: str, value: Any = None, key: Any = None, partition: int = 0,
                   headers: Any = None) -> Any:
        import asyncio

        self.records.append((topic, partition, dict(headers or ())))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


async def _copy(batch_records: list[ConsumerRecord[bytes, bytes]]) -> list[dict[str, bytes]]:
    from aiokafka import TopicPartition

    from edgebus.config import load_config
    from edgebus.region.replicator import Replicator

    sent = _Sent()
    replicator = Replicator(US, EU, "unused:9092", load_config(None), sent, sent)  # type: ignore[arg-type]
    tp = TopicPartition(f"edgebus.{US}.events", 0)
    await replicator.copy_batch({tp: batch_records})
    return [h for _, _, h in sent.records]


async def test_the_replicator_passes_origin_events_placed_elsewhere_with_a_watermark() -> None:
    from edgebus.wire.watermark import H_WATERMARK

    placed = record(US, 0, "a", 1)
    elsewhere = record(US, 1, "b", 2, placement=(US, AP))
    headers = await _copy([placed, elsewhere])
    assert [H_WATERMARK in h for h in headers] == [False, True]
    assert headers[1][H_ORIGIN_POS] == f"{US}:0:1".encode()


async def test_the_replicator_sends_no_watermark_for_copies_of_third_regions() -> None:
    from edgebus.wire.watermark import H_WATERMARK

    third = copy_of(record(AP, 3, "c", 3), US, 2)  # an ap event copied into us's topic
    headers = await _copy([record(US, 0, "a", 1), third])
    assert [H_WATERMARK in h for h in headers] == [False]  # the copy, and nothing after
    assert await _copy([third]) == []


def test_replicator_does_not_copy_a_redriven_dead_letter() -> None:
    redriven = record(US, 5, "k", 1, op=Operation.INCREMENT, placement=(US, EU),
                      extra_headers=[(H_REDRIVE_OF, b"0:3")])
    assert copy_decision(redriven, US, EU, RULES) == (False, None)


def _attempt(origin: str, offset: int, event_id: str, first_home: str | bytes) -> Any:
    """One attempt of an any_available write: an event of ``origin`` (same id, HLC and
    data as the other attempt) with ``eb-once`` naming the region first tried."""
    encoded = encode_fields(
        event_id, "visits", Operation.INCREMENT, encode_payload(5), origin, (origin, EU),
        ("public",), HLCTimestamp(1_000, 7), VectorClock.empty(), "test",
    )
    once = first_home.encode() if isinstance(first_home, str) else first_home
    return ConsumerRecord(
        f"edgebus.{origin}.events", 0, offset, 0, 0, encoded.key, encoded.value, None,
        len(encoded.key), len(encoded.value), [*encoded.headers, (H_ONCE, once)],
    )


@pytest.mark.parametrize("order", ["first attempt first", "retry first", "one batch"])
async def test_a_write_sent_twice_by_any_available_applies_once_with_one_stamp(
    store: Store, order: str
) -> None:
    """The send to us failed mid-flight and was sent again to ap: eu reads both
    copies; whichever comes first is applied, once, stamped with us as its origin."""
    event_id = new_event_id()
    first = copy_of(_attempt(US, 3, event_id, US), EU, 0)
    retry = copy_of(_attempt(AP, 9, event_id, US), EU, 1)
    applier = BatchApplier(EU, RULES, store)
    batches = {"first attempt first": [[first], [retry]], "retry first": [[retry], [first]],
               "one batch": [[first, retry]]}[order]
    results = [await apply_and_commit(applier, store, batch) for batch in batches]
    assert sum(len(r.applied) for r in results) == 1
    assert sum(r.duplicates for r in results) == 1
    state = await store.get("visits")
    assert state is not None and (state.value, state.version) == (5, 1)
    assert (state.top.origin, state.top.event_id) == (US, event_id)
    # both origins' streams passed: nothing waits for the skipped attempt
    assert await store.frontier() == {(US, 0): 3, (AP, 0): 9}


@pytest.mark.parametrize("once", [b"", b"\xff", b"no region here!", b"x" * 200])
async def test_an_eb_once_that_names_no_region_is_a_dead_letter(store: Store, once: bytes) -> None:
    rec = copy_of(_attempt(US, 3, new_event_id(), once), EU, 0)
    result = await apply_and_commit(BatchApplier(EU, RULES, store), store, [rec])
    [dead] = result.dead
    assert "Bad eb-once header" in dead.reason
    assert await store.get("visits") is None
