"""RegionClient's endpoint cache and its reading of announcements (no Kafka: the
announcement reader is replaced)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
import pytest
from aiokafka import ConsumerRecord

import edgebus.sdk.region_client as client_module
from edgebus.config import load_config
from edgebus.errors import RegionUnavailable
from edgebus.sdk.region_client import ENDPOINT_TTL_S, RegionClient
from edgebus.wire.announcement import Announcement, encode_announcement


def announcement(url: str, region: str = "us-east-1") -> bytes:
    return encode_announcement(Announcement(region, url, 4242, "node-1", "sqlite:///x.db", 1))


def record(topic: str, offset: int, value: bytes | None, key: bytes = b"query") -> Any:
    return ConsumerRecord(topic, 0, offset, 0, 0, key, value, None, 5, len(value or b""), [])


async def test_an_expired_endpoint_is_used_while_it_is_read_again_in_the_background(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lookups: list[str] = []
    release = asyncio.Event()

    async def announcements(kafka: Any, bootstrap: str, topic: str) -> list[Any]:
        lookups.append(topic)
        if len(lookups) > 1:
            await release.wait()  # the second read of the topic hangs until released
        return [record(topic, 0, announcement(f"http://127.0.0.1:{8700 + len(lookups)}"))]

    monkeypatch.setattr(client_module, "read_to_end", announcements)
    client = RegionClient(load_config(None))
    try:
        assert await client.endpoint("us-east-1") == "http://127.0.0.1:8701"
        url, _ = client._endpoints["us-east-1"]
        client._endpoints["us-east-1"] = (url, time.monotonic() - ENDPOINT_TTL_S - 1)
        # expired: answered from the cache while the refresh is still hanging
        assert await client.endpoint("us-east-1") == "http://127.0.0.1:8701"
        await asyncio.sleep(0)
        assert len(lookups) == 2 and not release.is_set()
        release.set()
        for _ in range(100):
            await asyncio.sleep(0.01)
            if client._endpoints["us-east-1"][0] != url:
                break
        assert await client.endpoint("us-east-1") == "http://127.0.0.1:8702"
        assert len(lookups) == 2  # one refresh, not one per read
    finally:
        await client.close()


@pytest.mark.parametrize(
    "hostile",
    [
        b"not json",
        b"[1, 2]",
        orjson.dumps({"url": 5}),
        orjson.dumps({"region": "us-east-1", "url": "javascript:alert(1)", "pid": 1,
                      "host": "h", "store": "s", "started_ms": 1}),
        announcement("http://127.0.0.1:9999", region="eu-west-1"),  # another region's
        b"{" * 100_000,
    ],
    ids=["not-json", "a-list", "no-fields", "not-http", "other-region", "deep"],
)
async def test_a_hostile_announcement_is_skipped_with_a_warning_and_the_last_good_one_used(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, hostile: bytes
) -> None:
    async def announcements(kafka: Any, bootstrap: str, topic: str) -> list[Any]:
        return [record(topic, 0, announcement("http://127.0.0.1:8701")),
                record(topic, 1, hostile)]

    monkeypatch.setattr(client_module, "read_to_end", announcements)
    client = RegionClient(load_config(None))
    try:
        with caplog.at_level(logging.WARNING, logger="edgebus.edge"):
            assert await client.endpoint("us-east-1") == "http://127.0.0.1:8701"
        assert "skipped the service announcement at partition 0 offset 1" in caplog.text
    finally:
        await client.close()


async def test_a_topic_of_only_hostile_announcements_is_no_endpoint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def announcements(kafka: Any, bootstrap: str, topic: str) -> list[Any]:
        return [record(topic, 0, b"\xff" * 10), record(topic, 1, None)]

    monkeypatch.setattr(client_module, "read_to_end", announcements)
    client = RegionClient(load_config(None))
    try:
        with pytest.raises(RegionUnavailable, match="No region service has announced itself"):
            await client.endpoint("us-east-1")
    finally:
        await client.close()
