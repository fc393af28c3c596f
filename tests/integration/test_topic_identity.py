"""Topic identities against a real broker: cluster id, topic id, partition count."""

from __future__ import annotations

import asyncio
import re
import socket
import uuid

import pytest

from edgebus.config import KafkaConfig
from edgebus.errors import InfrastructureUnavailable
from edgebus.kafka.clients import admin_client
from edgebus.kafka.identity import TopicIdentity, topic_identities
from edgebus.kafka.topics import ensure_topics
from tests.kafka_settings import KAFKA

#: Kafka's Uuid.toString(): 16 bytes in base64url without padding
KAFKA_UUID = re.compile(r"[A-Za-z0-9_-]{22}")


def unique_topic(what: str) -> str:
    return f"edgebus.test-identity.{what}.{uuid.uuid4().hex[:12]}"


async def identity_of(bootstrap: str, topic: str) -> TopicIdentity:
    found = await topic_identities(KAFKA, bootstrap, [topic])
    assert topic in found, f"{topic} has no identity: {found}"
    return found[topic]


async def delete_and_wait_until_gone(bootstrap: str, topic: str) -> None:
    async with admin_client(KAFKA, bootstrap) as admin:
        await admin.delete_topics([topic])
    for _ in range(200):
        if topic not in await topic_identities(KAFKA, bootstrap, [topic]):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{topic} was not deleted")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_topic_has_its_partition_count_and_a_stable_topic_id(
    kafka_bootstrap: str,
) -> None:
    topic = unique_topic("stable")
    await ensure_topics(KAFKA, kafka_bootstrap, [topic], partitions=3)
    first = await identity_of(kafka_bootstrap, topic)
    second = await identity_of(kafka_bootstrap, topic)
    assert first.partitions == 3
    assert KAFKA_UUID.fullmatch(first.topic_id), first.topic_id
    assert first.topic_id != "A" * 22  # Kafka's zero UUID: no id
    assert first.cluster_id
    assert second == first


async def test_a_recreated_topic_has_a_new_topic_id(kafka_bootstrap: str) -> None:
    topic = unique_topic("recreated")
    await ensure_topics(KAFKA, kafka_bootstrap, [topic], partitions=2)
    before = await identity_of(kafka_bootstrap, topic)
    await delete_and_wait_until_gone(kafka_bootstrap, topic)
    await ensure_topics(KAFKA, kafka_bootstrap, [topic], partitions=4)
    after = await identity_of(kafka_bootstrap, topic)
    assert after.topic_id != before.topic_id
    assert after.cluster_id == before.cluster_id
    assert (before.partitions, after.partitions) == (2, 4)


async def test_topics_of_one_cluster_share_its_cluster_id(kafka_bootstrap: str) -> None:
    a, b = unique_topic("a"), unique_topic("b")
    await ensure_topics(KAFKA, kafka_bootstrap, [a, b], partitions=1)
    found = await topic_identities(KAFKA, kafka_bootstrap, [a, b, a])
    assert set(found) == {a, b}
    assert found[a].cluster_id == found[b].cluster_id
    assert found[a].topic_id != found[b].topic_id


async def test_a_missing_topic_is_absent_and_not_created(kafka_bootstrap: str) -> None:
    present, missing = unique_topic("present"), unique_topic("missing")
    await ensure_topics(KAFKA, kafka_bootstrap, [present], partitions=1)
    found = await topic_identities(KAFKA, kafka_bootstrap, [present, missing])
    assert set(found) == {present}
    assert await topic_identities(KAFKA, kafka_bootstrap, [missing]) == {}
    assert await topic_identities(KAFKA, kafka_bootstrap, []) == {}


async def test_an_unreachable_cluster_raises_infrastructure_unavailable() -> None:
    bootstrap = f"127.0.0.1:{free_port()}"
    kafka = KafkaConfig(connect_timeout_s=3)
    with pytest.raises(InfrastructureUnavailable, match="No edge infrastructure") as raised:
        await topic_identities(kafka, bootstrap, ["edgebus.eu.events"])
    assert raised.value.addresses == (bootstrap,)
