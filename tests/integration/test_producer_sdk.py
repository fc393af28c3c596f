"""The producer SDK against a real broker: receipts, placement, refusals, batching."""

from __future__ import annotations

import asyncio
import socket
import uuid
from typing import Any

import pytest

from edgebus import EdgeBus, EdgeBusSync
from edgebus.core.session import SessionToken
from edgebus.core.vector_clock import Position
from edgebus.errors import (
    ComplianceViolation,
    InfrastructureUnavailable,
    InvalidInput,
    TopicLayoutMismatch,
    UnknownRegion,
)
from edgebus.kafka.reading import end_offsets, read_to_end
from edgebus.kafka.topics import ensure_topics, events_topic
from edgebus.wire.event_codec import decode_event
from tests.kafka_settings import KAFKA

REGIONS = ("us-east-1", "eu-west-1", "ap-south-1")


def config(bootstrap: str, **compliance: Any) -> dict[str, Any]:
    return {"kafka": {"bootstrap": bootstrap}, "compliance": compliance}


async def test_write_returns_the_kafka_position_of_the_stored_event(kafka_bootstrap: str) -> None:
    key = f"user:{uuid.uuid4()}"
    async with EdgeBus(config(kafka_bootstrap)) as bus:
        receipt = await bus.write(key, {"plan": "pro", "seats": 3}, region="us-east-1")
    assert receipt.topic == "edgebus.us-east-1.events"
    records = await read_to_end(KAFKA, kafka_bootstrap, receipt.topic)
    position = (receipt.partition, receipt.offset)
    [record] = [r for r in records if (r.partition, r.offset) == position]
    event = decode_event(record.value)
    assert record.key == key.encode()
    assert event.event_id == receipt.event_id
    assert event.payload == {"plan": "pro", "seats": 3}
    assert event.origin_region == "us-east-1"
    assert receipt.classification == ("public",)
    assert receipt.placement[0] == "us-east-1"
    assert set(receipt.placement) == set(REGIONS)


async def test_pii_is_placed_in_gdpr_regions_only(kafka_bootstrap: str) -> None:
    async with EdgeBus(config(kafka_bootstrap)) as bus:
        receipt = await bus.write(f"user:{uuid.uuid4()}", {"email": "ann@example.com"})
    assert receipt.classification == ("pii",)
    assert receipt.region == "eu-west-1"
    assert receipt.placement == ("eu-west-1",)


async def test_strict_refusal_writes_nothing_to_any_region_topic(kafka_bootstrap: str) -> None:
    topics = [events_topic(r) for r in REGIONS]
    key = f"refused:{uuid.uuid4()}"
    async with EdgeBus(config(kafka_bootstrap)) as bus:
        await bus.write("warm-up", {"x": 1})  # topics exist, so the check below is meaningful
        before = await end_offsets(KAFKA, kafka_bootstrap, topics)
        with pytest.raises(ComplianceViolation) as refused:
            await bus.write(key, {"email": "ann@example.com"}, region="us-east-1")
        with pytest.raises(ComplianceViolation):
            await bus.write(key, {"patient_name": "Ann", "diagnosis": "flu"}, region="ap-south-1")
        with pytest.raises(ComplianceViolation):
            await bus.write(key, {"email": "a@b.example"}, exclude_locations=["eu-west-1"])
    message = str(refused.value)
    assert message.startswith("Compliance violation: cannot place data")
    assert "pii" in message and "gdpr" in message and "us-east-1" in message
    assert await end_offsets(KAFKA, kafka_bootstrap, topics) == before
    for topic in topics:
        assert all(r.key != key.encode() for r in await read_to_end(KAFKA, kafka_bootstrap, topic))


async def test_non_strict_mode_reroutes_to_a_compliant_region(kafka_bootstrap: str) -> None:
    async with EdgeBus(config(kafka_bootstrap, strict_mode=False)) as bus:
        receipt = await bus.write(f"u:{uuid.uuid4()}", {"email": "a@b.example"}, region="us-east-1")
    assert receipt.rerouted is True
    assert receipt.region == "eu-west-1"
    assert receipt.placement == ("eu-west-1",)


async def test_many_concurrent_writes_share_one_producer_and_all_are_acknowledged(
    kafka_bootstrap: str,
) -> None:
    async with EdgeBus(config(kafka_bootstrap)) as bus:
        receipts = await asyncio.gather(
            *(bus.write(f"k{i % 37}", {"i": i}, region="ap-south-1") for i in range(500))
        )
        assert len(bus._writes._producers) == 1
    positions = {(r.partition, r.offset) for r in receipts}
    assert len(positions) == 500
    per_key_offsets: dict[str, list[int]] = {}
    for r in receipts:
        per_key_offsets.setdefault(r.key, []).append(r.offset)
    # one producer, one partition per key: a key's writes keep their submission order
    assert all(offsets == sorted(offsets) for offsets in per_key_offsets.values())


async def test_same_key_maps_to_the_same_partition_number_in_every_region(
    kafka_bootstrap: str,
) -> None:
    async with EdgeBus(config(kafka_bootstrap)) as bus:
        for n in range(20):
            key = f"entity-{n}"
            partitions = {(await bus.write(key, {"n": n}, region=r)).partition for r in REGIONS}
            assert len(partitions) == 1


async def test_every_regional_topic_gets_the_configured_partition_count(
    kafka_bootstrap: str,
) -> None:
    async with EdgeBus(config(kafka_bootstrap)) as bus:
        await bus.write("any", {"x": 1}, region="us-east-1")
    ends = await end_offsets(KAFKA, kafka_bootstrap, [events_topic(r) for r in REGIONS])
    for region in REGIONS:
        assert len([tp for tp in ends if tp.topic == events_topic(region)]) == 6


async def test_a_topic_with_another_partition_count_is_refused(kafka_bootstrap: str) -> None:
    region = f"odd-{uuid.uuid4().hex[:8]}"
    await ensure_topics(KAFKA, kafka_bootstrap, [events_topic(region)], partitions=2)
    cfg = {"kafka": {"bootstrap": kafka_bootstrap}, "discovery": {"locations": [region]}}
    with pytest.raises(TopicLayoutMismatch, match="has 2 partitions"):
        async with EdgeBus(cfg) as bus:
            await bus.write("k", {"x": 1})


async def test_receipt_session_token_covers_this_write_and_the_sessions_earlier_ones(
    kafka_bootstrap: str,
) -> None:
    async with EdgeBus(config(kafka_bootstrap)) as bus:
        first = await bus.write("thread:1", {"message": "Hello"}, region="us-east-1")
        second = await bus.write("thread:1:reply", {"message": "Hi"}, region="ap-south-1")
    token = SessionToken.decode(second.session_token)
    assert token.clock.covers(Position("us-east-1", first.partition, first.offset))
    assert token.clock.covers(Position("ap-south-1", second.partition, second.offset))
    [record] = [
        r for r in await read_to_end(KAFKA, kafka_bootstrap, second.topic)
        if (r.partition, r.offset) == (second.partition, second.offset)
    ]
    deps = decode_event(record.value).dependencies
    assert deps.covers(Position("us-east-1", first.partition, first.offset))


async def test_a_token_from_another_process_becomes_the_writes_dependencies(
    kafka_bootstrap: str,
) -> None:
    async with EdgeBus(config(kafka_bootstrap)) as writer:
        first = await writer.write("doc", {"v": 1}, region="us-east-1")
    async with EdgeBus(config(kafka_bootstrap)) as other:
        second = await other.write("doc-comment", {"v": 2}, session=first.session_token)
    [record] = [
        r for r in await read_to_end(KAFKA, kafka_bootstrap, second.topic)
        if (r.partition, r.offset) == (second.partition, second.offset)
    ]
    assert decode_event(record.value).dependencies.covers(first.position)


async def test_bad_input_is_refused_before_anything_is_written(kafka_bootstrap: str) -> None:
    topics = [events_topic(r) for r in REGIONS]
    async with EdgeBus(config(kafka_bootstrap)) as bus:
        await bus.write("warm-up", {"x": 1})
        before = await end_offsets(KAFKA, kafka_bootstrap, topics)
        with pytest.raises(UnknownRegion, match="did you mean 'eu-west-1'"):
            await bus.write("k", {"x": 1}, region="eu-west-2")
        with pytest.raises(InvalidInput, match="not JSON"):
            await bus.write("k", {"x": float("inf")})
        with pytest.raises(InvalidInput, match="key"):
            await bus.write("", {"x": 1})
        with pytest.raises(InvalidInput, match="increment"):
            await bus.write("k", "ten", operation="increment")
        with pytest.raises(InvalidInput, match="pi"):
            await bus.write("k", {"x": 1}, classification="pi")
        with pytest.raises(InvalidInput, match="write level"):
            await bus.write("k", {"x": 1}, consistency="bounded_staleness")
        with pytest.raises(InvalidInput, match="expected_version needs consistency='strong'"):
            await bus.write("k", {"x": 1}, expected_version=3)
        with pytest.raises(InvalidInput, match="expected_version must be"):
            await bus.write("k", {"x": 1}, consistency="strong", expected_version=-1)
        with pytest.raises(InvalidInput, match="int key 2"):
            await bus.write("k", {"a": [{"b": {2: "two"}}]})
        with pytest.raises(InvalidInput, match="classification must be"):
            await bus.write("k", {"x": 1}, classification=123)  # type: ignore[arg-type]
        with pytest.raises(ComplianceViolation, match="exclude_locations"):
            # a single name is one region, not a list of characters
            await bus.write("k", {"email": "a@b.example"}, exclude_locations="eu-west-1")
    assert await end_offsets(KAFKA, kafka_bootstrap, topics) == before


async def test_a_single_location_or_zone_name_counts_as_a_one_item_list(
    kafka_bootstrap: str,
) -> None:
    async with EdgeBus(config(kafka_bootstrap)) as bus:
        preferred = await bus.write("k", {"x": 1}, preferred_locations="ap-south-1")
        zoned = await bus.write("k", {"x": 1}, compliance_zones="gdpr")
    assert preferred.placement[0] == "ap-south-1"
    assert zoned.placement == ("eu-west-1",)


def test_sync_facade_writes_for_scripts(kafka_bootstrap: str) -> None:
    with EdgeBusSync(config(kafka_bootstrap)) as bus:
        receipt = bus.write("script", {"ok": True}, region="eu-west-1")
    assert receipt.offset >= 0
    assert receipt.region == "eu-west-1"


async def test_no_reachable_broker_says_no_edge_infrastructure_available() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"127.0.0.1:{port}"
    cfg = {"kafka": {"bootstrap": address, "connect_timeout_s": 3}}
    with pytest.raises(InfrastructureUnavailable) as raised:
        async with EdgeBus(cfg):
            pass
    message = str(raised.value)
    assert message.startswith("No edge infrastructure available")
    assert address in message
    assert "edgebus kafka up" in message
