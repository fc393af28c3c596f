"""Dead letters, as a running region process meets them.

A record the region cannot apply (not Avro, a body whose key disagrees with the record
key, an event placed elsewhere, a schema the region does not know yet) goes to
``edgebus.<R>.dlq`` with reason headers, and the region keeps applying what follows.
Once the cause is fixed (here: the region learns the newer schema), ``edgebus dlq
redrive`` applies the record, and only once however often it is redriven.
"""

from __future__ import annotations

import copy
import json
import time
from io import BytesIO
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from fastavro import parse_schema, schemaless_writer
from fastavro.schema import to_parsing_canonical_form

from connectors import by_url
from edgebus.core.envelope import Operation, new_event_id
from edgebus.core.hlc import HLCTimestamp
from edgebus.core.vector_clock import VectorClock
from edgebus.kafka.batching import partition_for
from edgebus.kafka.dead_letters import dead_letter_headers
from edgebus.kafka.reading import end_offsets, read_to_end
from edgebus.kafka.topics import dlq_topic, ensure_topics, events_topic
from edgebus.sdk import EdgeBus
from edgebus.wire.event_codec import EncodedEvent, encode_fields
from edgebus.wire.fingerprint import crc64_avro
from edgebus.wire.headers import H_ORIGIN_POS, H_SCHEMA
from edgebus.wire.schema_registry import schemas_dir
from edgebus.wire.single_object import MAGIC
from tests.integration.regions import RegionProcess, Regions, eventually, make_regions
from tests.kafka_settings import KAFKA

PARTITIONS = 3


def crafted_event(key: str, origin: str, placement: tuple[str, ...]) -> EncodedEvent:
    """An edgebus event written by hand (as another producer might)."""
    return encode_fields(
        event_id=new_event_id(),
        key=key,
        operation=Operation.SET,
        payload_json=b'"poison"',
        origin_region=origin,
        placement=placement,
        classification=("public",),
        hlc=HLCTimestamp(int(time.time() * 1000), 0),
        dependencies=VectorClock(),
        writer="test-dead-letters",
    )


def key_on_partition(prefix: str, partition: int) -> str:
    """A key that edgebus's partitioner puts on ``partition``."""
    for i in range(1000):
        key = f"{prefix}:{i}"
        if partition_for(key.encode("utf-8"), PARTITIONS) == partition:
            return key
    raise AssertionError(f"no key for partition {partition}")


async def events_end(regions: Regions, bootstrap: str) -> dict[int, int]:
    topic = events_topic(regions.us)
    return {tp.partition: o for tp, o in (await end_offsets(KAFKA, bootstrap, [topic])).items()}


async def test_poison_records_are_dead_lettered_with_reasons_and_the_region_keeps_applying(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    regions = make_regions(kafka_bootstrap, tmp_path, partitions=PARTITIONS)
    us, eu = regions.us, regions.eu
    topic = events_topic(us)
    region = RegionProcess(regions, us, regions.store_url(us))
    region.start()
    try:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        try:
            # all on partition 0, ahead of the normal write below
            garbage = await producer.send_and_wait(
                topic, b"garbage, not Avro", key=b"poison:garbage", partition=0
            )
            body = crafted_event("poison:body-key", us, (us,))
            mismatched = await producer.send_and_wait(
                topic, body.value, key=b"poison:record-key", headers=body.headers, partition=0
            )
            # a copy of an eu-only event, as a faulty replicator would make it
            elsewhere = crafted_event("poison:placed-elsewhere", eu, (eu,))
            misplaced = await producer.send_and_wait(
                topic,
                elsewhere.value,
                key=elsewhere.key,
                partition=0,
                headers=[*elsewhere.headers, (H_ORIGIN_POS, f"{eu}:0:0".encode("ascii"))],
            )
        finally:
            await producer.stop()

        after_key = key_on_partition("after-poison", 0)
        async with EdgeBus(regions.config) as bus:
            receipt = await bus.write(after_key, {"n": 1}, region=us, replication_factor=1)
            assert receipt.partition == 0

            async def after_applied() -> bool:
                return (await bus.read(after_key, us)).exists

            await eventually(after_applied, 60, "the write after the poison records")
            assert (await bus.read(after_key, us)).value == {"n": 1}
            for key in (
                "poison:garbage",
                "poison:body-key",
                "poison:record-key",
                "poison:placed-elsewhere",
            ):
                assert not (await bus.read(key, us)).exists, key
        assert region.alive(), region.log_tail()

        # the batch that applied the normal write was committed after its dead letters
        code, listing, out = regions.cli("dlq", "list", "--region", us)
        assert code == 0, out
        letters = {d["source"]: d for d in listing["dead_letters"]}
        expected = {
            garbage: ("poison:garbage", "Not an Avro single-object encoded value"),
            mismatched: ("poison:record-key", "differs from the event's key"),
            misplaced: ("poison:placed-elsewhere", f"placed in {eu}, not in {us}"),
        }
        assert len(letters) == len(expected), listing
        for meta, (key, reason) in expected.items():
            letter = letters[f"{topic}:{meta.partition}:{meta.offset}"]
            assert letter["key"] == key
            assert reason in letter["reason"], letter
            assert letter["stage"] == "materialize"
            assert letter["refused_by"] == us
            assert letter["time_ms"] > 0
    finally:
        region.stop()


def schema_v3(directory: Path) -> tuple[dict[str, Any], int]:
    """``event.v3.avsc``: version 2 plus an optional ``note`` (a compatible change)."""
    raw = json.loads((schemas_dir() / "event.v2.avsc").read_text(encoding="utf-8"))
    v3 = copy.deepcopy(raw)
    v3["doc"] = "Version 3 (test only): adds `note`."
    v3["fields"].append({"name": "note", "type": ["null", "string"], "default": None})
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "event.v3.avsc").write_text(json.dumps(v3, indent=2), encoding="utf-8")
    fingerprint = crc64_avro(to_parsing_canonical_form(v3).encode("utf-8"))
    return v3, fingerprint


def encode_v3(
    v3: dict[str, Any], fingerprint: int, key: str, origin: str, value: Any
) -> EncodedEvent:
    """A SET event written with schema v3, single-object encoded, with edgebus headers."""
    event_id = new_event_id()
    hlc = HLCTimestamp(int(time.time() * 1000), 0)
    record = {
        "event_id": event_id,
        "key": key,
        "operation": "SET",
        "payload_json": orjson.dumps(value).decode("utf-8"),
        "origin_region": origin,
        "placement": [origin],
        "classification": ["public"],
        "hlc": {"wall_ms": hlc.wall_ms, "logical": hlc.logical},
        "dependencies": [],
        "schema_version": 3,
        "writer": "test-dead-letters",
        "note": "written by a newer edgebus",
    }
    buf = BytesIO()
    schemaless_writer(buf, parse_schema(v3), record)
    fp = fingerprint.to_bytes(8, "little")
    headers = [
        (name, fp if name == H_SCHEMA else raw)
        for name, raw in encode_fields(
            event_id,
            key,
            Operation.SET,
            orjson.dumps(value),
            origin,
            (origin,),
            ("public",),
            hlc,
            VectorClock(),
            "test-dead-letters",
        ).headers
    ]
    return EncodedEvent(key.encode("utf-8"), MAGIC + fp + buf.getvalue(), headers)


async def stored_position(store_url: str, topic: str, partition: int) -> int:
    async with by_url(store_url) as store:
        return (await store.positions()).get((topic, partition), 0)


async def test_an_unknown_schema_record_applies_once_after_the_fix_however_often_redriven(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    regions = make_regions(kafka_bootstrap, tmp_path, partitions=PARTITIONS)
    us = regions.us
    topic = events_topic(us)
    store = regions.store_url(us)
    schema_dir = tmp_path / "newer-schemas"
    v3, fingerprint = schema_v3(schema_dir)
    fixed_env = {"EDGEBUS_SCHEMA_PATH": str(schema_dir)}
    key = "from-a-newer-writer"
    value = {"colour": "blue"}

    region = RegionProcess(regions, us, store)
    region.start()
    try:
        encoded = encode_v3(v3, fingerprint, key, us, value)
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        try:
            original = await producer.send_and_wait(
                topic,
                encoded.value,
                key=encoded.key,
                headers=encoded.headers,
                partition=partition_for(encoded.key, PARTITIONS),
            )
        finally:
            await producer.stop()

        async def dead_lettered() -> bool:
            return await stored_position(store, topic, original.partition) > original.offset

        await eventually(dead_lettered, 60, "the region to consume the v3 record")
        code, listing, out = regions.cli("dlq", "list", "--region", us)
        assert code == 0, out
        assert len(listing["dead_letters"]) == 1, listing
        [letter] = listing["dead_letters"]
        assert letter["source"] == f"{topic}:{original.partition}:{original.offset}"
        assert "Unknown writer schema fingerprint" in letter["reason"], letter
        assert region.alive()

        # the fix: the region learns schema v3
        region.stop()
        region = RegionProcess(regions, us, store, extra_env=fixed_env)
        region.start()

        async with EdgeBus(regions.config) as bus:
            assert not (await bus.read(key, us)).exists
            code, result, out = regions.cli("dlq", "redrive", "--region", us, "--all")
            assert code == 0, out
            [first] = result["results"]
            assert first["redriven"] is True, first

            async def applied() -> bool:
                return (await bus.read(key, us)).exists

            await eventually(applied, 60, "the redriven record to be applied")
            row = await bus.read(key, us)
            assert (row.value, row.version) == (value, 1)

            code, result, out = regions.cli("dlq", "redrive", "--region", us, "--all")
            assert code == 0, out
            [second] = result["results"]
            assert second["redriven"] is True, second
            _, partition, offset = second["to"].rsplit(":", 2)

            async def consumed() -> bool:
                return await stored_position(store, topic, int(partition)) > int(offset)

            await eventually(consumed, 60, "the region to consume the second redrive")
            row = await bus.read(key, us)
            assert (row.value, row.version) == (value, 1), "a redriven record applied twice"
        # applied, not dead-lettered again
        assert len(await read_to_end(KAFKA, kafka_bootstrap, dlq_topic(us))) == 1
        assert region.alive(), region.log_tail()

        # the log holds the original (decodable now) and two redriven copies: a replay
        # with the same schemas must apply the record once, as the live region did
        code, report, out = regions.cli("verify", "--region", us, "--store", store, env=fixed_env)
        assert code == 0 and report["ok"], out
    finally:
        region.stop()


async def test_redrive_without_a_selector_or_with_a_bad_offset_exits_2_and_sends_nothing(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    regions = make_regions(kafka_bootstrap, tmp_path, partitions=PARTITIONS)
    us = regions.us
    await ensure_topics(KAFKA, kafka_bootstrap, [events_topic(us), dlq_topic(us)], PARTITIONS)
    # one dead letter, as a region would have written it
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        poison = await producer.send_and_wait(events_topic(us), b"garbage", key=b"k", partition=1)
        [record] = await read_to_end(KAFKA, kafka_bootstrap, events_topic(us))
        letter = await producer.send_and_wait(
            dlq_topic(us),
            record.value,
            key=record.key,
            partition=1,
            headers=dead_letter_headers(record, "not Avro", "materialize", us),
        )
    finally:
        await producer.stop()
    before = await events_end(regions, kafka_bootstrap)
    assert before[poison.partition] == poison.offset + 1

    cases = [
        ((), "give --all or one or more --offset"),
        (
            ("--all", "--offset", f"{letter.partition}:{letter.offset}"),
            "give --all or one or more --offset",
        ),
        (("--offset", "one:two"), "is not PARTITION:OFFSET"),
        (("--offset", f"{letter.partition}:{letter.offset + 41}"), "no dead letter at"),
    ]
    for args, message in cases:
        code, result, out = regions.cli("dlq", "redrive", "--region", us, *args)
        assert code == 2, (args, out)
        assert result["ok"] is False and message in result["message"], (args, result)
    assert await events_end(regions, kafka_bootstrap) == before, "a refused redrive sent records"
