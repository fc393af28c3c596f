"""A (re)assignment's seek that lands while the materializer fetches a batch across
its partitions: the batch is dropped (part of it was read before the seek) and the
partitions are read again from the stored positions, so every event is applied once,
none lost to records the dropped batch had read after the seek."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from pathlib import Path
from typing import Any

import pytest

from connectors.sqlite import SQLiteStore
from edgebus import EdgeBus
from edgebus.config import load_config
from edgebus.kafka.clients import start_producer
from edgebus.kafka.topics import dlq_topic, ensure_topics
from edgebus.region import materializer as materializer_module
from edgebus.region.materializer import Materializer
from tests.integration.regions import eventually

EVENTS = 3_000


async def test_a_seek_in_the_middle_of_a_fetch_loses_and_repeats_no_event(
    kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(materializer_module, "MAX_BATCH_RECORDS", 300)  # many batches
    region = f"t{uuid.uuid4().hex[:6]}-us"
    config = load_config({"discovery": {"locations": [region]},
                          "kafka": {"bootstrap": kafka_bootstrap, "partitions": 3}})
    await ensure_topics(config.kafka, kafka_bootstrap, [dlq_topic(region)])
    async with EdgeBus(config, discovery=False) as bus:
        await asyncio.gather(*(bus.write(f"k{i}", {"n": i}, region=region)
                               for i in range(EVENTS)))
    store = SQLiteStore(tmp_path / "store.db")
    await store.open()
    producer = await start_producer(config.kafka, kafka_bootstrap, "service")
    m = Materializer(region, config, kafka_bootstrap, store, producer)
    await m.start()
    consumer: Any = m._consumer
    real_getmany = consumer.getmany
    seeks: list[int] = []

    async def getmany(*args: Any, **kwargs: Any) -> Any:
        # once some events are applied: a seek back to the stored positions lands
        # between two partitions' reads of one aligned fetch
        if args and not seeks and m.stats.batches >= 2:
            seeks.append(m.stats.events)
            await m._seek(sorted(consumer.assignment(), key=lambda tp: tp.partition))
            await asyncio.sleep(0.5)  # the consumer fetches from the new positions
        return await real_getmany(*args, **kwargs)

    consumer.getmany = getmany
    task = asyncio.ensure_future(m.run())
    try:
        async def applied_all() -> bool:
            if task.done():
                task.result()
            return (await store.stats()).keys >= EVENTS and m.stats.events >= EVENTS

        await eventually(applied_all, 60, f"{EVENTS} events applied")
        await asyncio.sleep(0.5)  # nothing more arrives
        assert seeks, "the seek was never injected"
        assert (await store.stats()).keys == EVENTS
        versions = {(await store.get(f"k{i}")).version for i in range(EVENTS)}  # type: ignore[union-attr]
        assert versions == {1}, "an event was applied twice"
        ends = {p: o for (_, p), o in (await store.positions()).items()}
        assert sum(ends.values()) == EVENTS
    finally:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        await m.stop()
        await producer.stop()
        await store.close()
