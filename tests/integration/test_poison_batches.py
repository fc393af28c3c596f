"""A batch the store refuses as a whole is applied again in halves: the one record at
fault is dead-lettered (on real Kafka) with the store's reason and every other record
of the batch is applied, also when the refusal comes while the next batch is folded
(the pipeline); a store that refuses everything stops the materializer instead of
dead-lettering the topic away."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from connectors.base import BatchChanges
from connectors.sqlite import SQLiteStore
from edgebus.config import load_config
from edgebus.core.envelope import Operation
from edgebus.errors import StoreError
from edgebus.kafka.clients import start_producer
from edgebus.kafka.reading import read_to_end
from edgebus.kafka.topics import dlq_topic, ensure_topics
from edgebus.region.materializer import Materializer
from tests.kafka_settings import KAFKA
from tests.region.test_applier import record


class RefusingStore(SQLiteStore):
    """A SQLite store whose commits fail while they hold a key it refuses (as a value
    the database cannot hold would), or always (a full disk)."""

    def __init__(self, path: Path, refuse: str | None) -> None:
        super().__init__(path)
        self.refuse = refuse
        self.commits = 0

    async def commit(self, changes: BatchChanges) -> None:
        self.commits += 1
        if self.refuse == "*" or self.refuse in changes.states:
            raise StoreError(f"Store {self.url}: cannot hold {self.refuse!r} (injected)")
        await super().commit(changes)


async def materializer(
    bootstrap: str, tmp_path: Path, refuse: str | None
) -> tuple[Materializer, RefusingStore, Any, str]:
    region = f"t{uuid.uuid4().hex[:6]}-eu"
    config = load_config({"discovery": {"locations": [region]},
                          "kafka": {"bootstrap": bootstrap, "partitions": 1}})
    await ensure_topics(config.kafka, bootstrap, [dlq_topic(region)])
    store = RefusingStore(tmp_path / "store.db", refuse)
    await store.open()
    producer = await start_producer(config.kafka, bootstrap, "service")
    return Materializer(region, config, bootstrap, store, producer), store, producer, region


async def test_halving_finds_the_record_the_store_refuses_and_applies_the_rest(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    m, store, producer, region = await materializer(kafka_bootstrap, tmp_path, "k6")
    try:
        records = [record(region, i, f"k{i}", i) for i in range(10)]
        await m.apply_batch(records)
        states = {k: (await store.get(k)) for k in (f"k{i}" for i in range(10))}
        assert [k for k, s in states.items() if s is None] == ["k6"]
        assert await store.positions() == {(records[0].topic, 0): 10}
        assert m.stats.poison_batches >= 1 and m.stats.dead_letters == 1
        letters = await read_to_end(KAFKA, kafka_bootstrap, dlq_topic(region))
        [letter] = letters
        headers = dict(letter.headers)
        assert letter.key == b"k6"
        assert b"the store refused it" in headers["eb-dlq-reason"]
        assert b"cannot hold 'k6'" in headers["eb-dlq-reason"]
    finally:
        await producer.stop()
        await store.close()


async def test_a_store_that_refuses_every_batch_stops_the_materializer(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    m, store, producer, region = await materializer(kafka_bootstrap, tmp_path, "*")
    try:
        records = [record(region, i, f"k{i}", i) for i in range(8)]
        with pytest.raises(StoreError, match="injected"):
            await m.apply_batch(records)
        assert await store.positions() == {}
        # it stopped at the first single record whose dead-letter commit failed too
        letters = await read_to_end(KAFKA, kafka_bootstrap, dlq_topic(region))
        assert len(letters) <= 1
    finally:
        await producer.stop()
        await store.close()


async def test_a_batch_refused_while_the_next_one_folds_is_halved_and_the_next_applied_once(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    m, store, producer, region = await materializer(kafka_bootstrap, tmp_path, "k6")
    try:
        first = [record(region, i, f"k{i}", i) for i in range(10)]
        second = [record(region, 10 + i, "n", 1, op=Operation.INCREMENT) for i in range(5)]
        await m.feed(first)  # its commit is refused while the second batch folds
        await m.feed(second)
        await m.flush()
        states = {k: (await store.get(k)) for k in (f"k{i}" for i in range(10))}
        assert [k for k, s in states.items() if s is None] == ["k6"]
        counter = await store.get("n")
        assert counter is not None and (counter.value, counter.version) == (5, 5)
        assert await store.positions() == {(first[0].topic, 0): 15}
        assert m.stats.dead_letters == 1 and m.positions == {0: 15}
    finally:
        await producer.stop()
        await store.close()


async def test_a_failure_after_a_batch_is_stored_is_raised_and_nothing_is_applied_twice(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    m, store, producer, region = await materializer(kafka_bootstrap, tmp_path, None)

    def broken_listener(events: list[Any]) -> None:
        raise RuntimeError("a listener failed")

    m.on_applied(broken_listener)
    try:
        batch = [record(region, i, "n", 1, op=Operation.INCREMENT) for i in range(4)]
        await m.feed(batch)
        with pytest.raises(RuntimeError, match="a listener failed"):
            await m.flush()
        counter = await store.get("n")
        assert counter is not None and counter.value == 4  # stored once, not halved again
        assert await store.positions() == {(batch[0].topic, 0): 4}
    finally:
        await producer.stop()
        await store.close()
