"""Dead letters on a real broker: size-safe, untrusted, applied once per record.

* A poison record near Kafka's size limit cannot go to the dead-letter topic whole (the
  reason headers push it over): a reference letter goes instead, the region keeps
  applying, ``dlq list`` shows the reference and ``dlq redrive`` refuses it, saying
  where the original is.
* A dead-letter topic holding forged letters (a time that is not a number, a reason
  that is not UTF-8, a malformed source, an unknown stage, null headers) is listed by
  the CLI with those fields invalid, and redrive sends none of them: never a traceback.
* Redrive republishes no edgebus control header from a letter: a forged
  ``eb-redrive-of`` is replaced by the record's marker, a forged origin position is
  refused; and two letters of one record apply it once, whichever is redriven.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from edgebus.core.envelope import Operation, new_event_id
from edgebus.core.hlc import HLCTimestamp
from edgebus.core.vector_clock import VectorClock
from edgebus.kafka.batching import partition_for
from edgebus.kafka.dead_letters import dead_letter_headers
from edgebus.kafka.reading import read_to_end
from edgebus.kafka.topics import dlq_topic, ensure_topics, events_topic
from edgebus.sdk import EdgeBus
from edgebus.wire.event_codec import encode_fields
from tests.integration.regions import RegionProcess, eventually, make_regions
from tests.integration.test_dead_letters import (
    PARTITIONS,
    encode_v3,
    key_on_partition,
    schema_v3,
    stored_position,
)
from tests.kafka_settings import KAFKA

#: aiokafka's default max_request_size: the largest record a default producer sends
MAX_REQUEST = 1_048_576


async def test_a_poison_record_near_the_size_limit_is_dead_lettered_as_a_reference(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    regions = make_regions(kafka_bootstrap, tmp_path, partitions=PARTITIONS)
    us = regions.us
    topic = events_topic(us)
    store = regions.store_url(us)
    region = RegionProcess(regions, us, store)
    region.start()
    try:
        key, headers = b"poison:big", [("x-note", b"n" * 200)]
        # as large as a default producer sends: the letter's reason headers do not fit
        size = MAX_REQUEST - 50 - DefaultRecordBatchBuilder.estimate_size_in_bytes(
            key, b"", headers)
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        try:
            big = await producer.send_and_wait(topic, b"\x00" * size, key=key, partition=0,
                                               headers=headers)
            # a whole letter still fits for a record well below the limit
            small = await producer.send_and_wait(topic, b"\x00" * 600_000,
                                                 key=b"poison:smaller", partition=0)
        finally:
            await producer.stop()

        after_key = key_on_partition("after-big-poison", 0)
        async with EdgeBus(regions.config) as bus:
            await bus.write(after_key, {"n": 1}, region=us, replication_factor=1)

            async def after_applied() -> bool:
                return (await bus.read(after_key, us)).exists

            await eventually(after_applied, 60, "the write after the oversized poison record")
        assert region.alive(), region.log_tail()

        code, listing, out = regions.cli("dlq", "list", "--region", us)
        assert code == 0, out
        letters = {d["source"]: d for d in listing["dead_letters"]}
        reference = letters[f"{topic}:0:{big.offset}"]
        assert reference["reference"] is True and reference["value_bytes"] == 0, reference
        assert reference["original_bytes"] == size and len(reference["digest"]) == 64
        assert reference["key"] == "poison:big" and "Avro" in reference["reason"]
        whole = letters[f"{topic}:0:{small.offset}"]
        assert whole["reference"] is False and whole["value_bytes"] == 600_000, whole

        code, result, out = regions.cli("dlq", "redrive", "--region", us, "--all")
        assert code == 0, out
        refused = {r["source"]: r for r in result["results"]}[f"{topic}:0:{big.offset}"]
        assert refused["redriven"] is False and "reference letter" in refused["why"]
        assert f"{topic}:0:{big.offset}" in refused["why"], refused
        code, _, out = regions.cli("dlq", "list", "--region", us, "--json")
        assert code == 0 and "Traceback" not in out
    finally:
        region.stop()


FORGED: list[list[tuple[str, bytes | None]]] = [
    [("eb-dlq-time", b"yesterday"), ("eb-dlq-stage", b"materialize"),
     ("eb-dlq-reason", b"\xff\xfe not UTF-8 \x1b[2J"), ("eb-dlq-source", b"::")],
    [("eb-dlq-time", b"9" * 400), ("eb-dlq-stage", b"compost"), ("eb-dlq-region", None)],
    [("eb-dlq-time", b"-5"), ("eb-dlq-source", b"edgebus.x.events:99999999999:1")],
    [],
]


async def test_forged_letters_are_listed_invalid_and_never_redriven(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    regions = make_regions(kafka_bootstrap, tmp_path, partitions=PARTITIONS)
    us = regions.us
    await ensure_topics(KAFKA, kafka_bootstrap, [events_topic(us), dlq_topic(us)], PARTITIONS)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for headers in FORGED:
            await producer.send_and_wait(dlq_topic(us), b"v", key=b"forged\x1b[31m",
                                         partition=0, headers=headers)
    finally:
        await producer.stop()

    from tests.conftest import run_cli

    code, _, out, err = run_cli(["dlq", "list", "--region", us], regions.env, 120)
    assert code == 0, (out, err)
    assert "Traceback" not in out + err and "(invalid)" in out and "\x1b" not in out
    code, listing, out = regions.cli("dlq", "list", "--region", us)
    assert code == 0, out
    shown = listing["dead_letters"]
    assert len(shown) == len(FORGED)
    assert all(d["time_ms"] is None and "eb-dlq-time" in d["invalid"] for d in shown), shown
    assert "eb-dlq-reason" in shown[0]["invalid"] and shown[0]["source"] is None
    assert shown[1]["stage"] is None and shown[1]["refused_by"] is None

    before = len(await read_to_end(KAFKA, kafka_bootstrap, events_topic(us)))
    code, result, out = regions.cli("dlq", "redrive", "--region", us, "--all")
    assert code == 0, out
    assert not any(r["redriven"] for r in result["results"]), result
    assert len(await read_to_end(KAFKA, kafka_bootstrap, events_topic(us))) == before


def event_record(key: str, origin: str) -> Any:
    return encode_fields(
        new_event_id(), key, Operation.SET, b'"v"', origin, (origin,), ("public",),
        HLCTimestamp(int(time.time() * 1000), 0), VectorClock(), "test-dead-letter-safety",
    )


async def test_redrive_replaces_forged_control_headers_and_refuses_forged_origins(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    regions = make_regions(kafka_bootstrap, tmp_path, partitions=PARTITIONS)
    us, eu = regions.us, regions.eu
    topics = [events_topic(us), dlq_topic(us), events_topic(eu)]
    await ensure_topics(KAFKA, kafka_bootstrap, topics, PARTITIONS)
    plain, copy = event_record("plain", us), event_record("copy", eu)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        # a writer's record imitating edgebus's control headers, and a "copy" whose
        # origin position lies beyond the end of eu's topic
        forged = [*plain.headers, ("eb-redrive-of", b"2:0"), ("eb-dlq-time", b"1"),
                  ("eb-saga", b"x"), ("x-user", b"kept")]
        partition = partition_for(plain.key, PARTITIONS)
        first = await producer.send_and_wait(events_topic(us), plain.value, key=plain.key,
                                             partition=partition, headers=forged)
        copy_partition = partition_for(copy.key, PARTITIONS)
        second = await producer.send_and_wait(
            events_topic(us), copy.value, key=copy.key, partition=copy_partition,
            headers=[*copy.headers, ("eb-origin-pos", f"{eu}:{copy_partition}:99".encode())])
        records = await read_to_end(KAFKA, kafka_bootstrap, events_topic(us))
        by_offset = {(r.partition, r.offset): r for r in records}
        letters = []
        for meta in (first, second):
            original = by_offset[(meta.partition, meta.offset)]
            letters.append(await producer.send_and_wait(
                dlq_topic(us), original.value, key=original.key, partition=1,
                headers=dead_letter_headers(original, "refused", "materialize", us)))
    finally:
        await producer.stop()

    code, result, out = regions.cli("dlq", "redrive", "--region", us, "--all")
    assert code == 0, out
    outcome = {(r["partition"], r["offset"]): r for r in result["results"]}
    sent = outcome[(1, letters[0].offset)]
    assert sent["redriven"] is True and sent["marker"] == f"1:{letters[0].offset}", sent
    refused = outcome[(1, letters[1].offset)]
    assert refused["redriven"] is False and "beyond the end" in refused["why"], refused

    _, to_partition, to_offset = sent["to"].rsplit(":", 2)
    [redriven] = [r for r in await read_to_end(KAFKA, kafka_bootstrap, events_topic(us))
                  if (r.partition, r.offset) == (int(to_partition), int(to_offset))]
    names = [k for k, _ in redriven.headers]
    assert not any(k.startswith("eb-dlq-") for k in names) and "eb-saga" not in names
    assert [v for k, v in redriven.headers if k == "eb-redrive-of"] == [
        f"1:{letters[0].offset}".encode()]
    assert ("x-user", b"kept") in redriven.headers
    assert redriven.partition == first.partition


async def test_two_letters_of_one_record_apply_it_once_whichever_is_redriven(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """A region that crashed between dead-lettering and committing refuses the same
    record again: two letters. Redriving the second, then the first, then all, applies
    the record once (each letter's own marker would apply it twice)."""
    regions = make_regions(kafka_bootstrap, tmp_path, partitions=PARTITIONS)
    us = regions.us
    topic = events_topic(us)
    store = regions.store_url(us)
    schema_dir = tmp_path / "newer-schemas"
    v3, fingerprint = schema_v3(schema_dir)
    key = "twice-refused"
    region = RegionProcess(regions, us, store)
    region.start()
    try:
        encoded = encode_v3(v3, fingerprint, key, us, {"n": 1})
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        try:
            original = await producer.send_and_wait(
                topic, encoded.value, key=encoded.key, headers=encoded.headers,
                partition=partition_for(encoded.key, PARTITIONS))

            async def dead_lettered() -> bool:
                return await stored_position(store, topic, original.partition) > original.offset

            await eventually(dead_lettered, 60, "the region to dead-letter the v3 record")
            [letter] = await read_to_end(KAFKA, kafka_bootstrap, dlq_topic(us))
            [record] = [r for r in await read_to_end(KAFKA, kafka_bootstrap, topic)
                        if (r.partition, r.offset) == (original.partition, original.offset)]
            # the second refusal of the same record, as after a crash
            duplicate = await producer.send_and_wait(
                dlq_topic(us), record.value, key=record.key, partition=letter.partition,
                headers=dead_letter_headers(record, "refused again", "materialize", us))
        finally:
            await producer.stop()
        region.stop()
        region = RegionProcess(regions, us, store,
                               extra_env={"EDGEBUS_SCHEMA_PATH": str(schema_dir)})
        region.start()

        async with EdgeBus(regions.config) as bus:
            for args in (("--offset", f"{duplicate.partition}:{duplicate.offset}"),
                         ("--offset", f"{letter.partition}:{letter.offset}"), ("--all",)):
                code, result, out = regions.cli("dlq", "redrive", "--region", us, *args)
                assert code == 0, out
                [sent] = [r for r in result["results"] if r["redriven"]]
                assert sent["marker"] == f"{letter.partition}:{letter.offset}", sent
                _, partition, offset = sent["to"].rsplit(":", 2)

                async def consumed(p: int = int(partition), o: int = int(offset)) -> bool:
                    return await stored_position(store, topic, p) > o

                await eventually(consumed, 60, "the region to consume the redriven record")
                row = await bus.read(key, us)
                assert (row.exists, row.version) == (True, 1), (args, row)
        assert region.alive(), region.log_tail()
    finally:
        region.stop()
