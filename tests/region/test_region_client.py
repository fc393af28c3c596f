"""RegionClient's endpoint cache (no Kafka: the announcement reader is replaced)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest
from aiokafka import ConsumerRecord

import edgebus.sdk.region_client as client_module
from edgebus.config import load_config
from edgebus.sdk.region_client import ENDPOINT_TTL_S, RegionClient


async def test_an_expired_endpoint_is_used_while_it_is_read_again_in_the_background(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lookups: list[str] = []
    release = asyncio.Event()

    async def announcements(kafka: Any, bootstrap: str, topic: str) -> list[Any]:
        lookups.append(topic)
        if len(lookups) > 1:
            await release.wait()  # the second read of the topic hangs until released
        value = orjson.dumps({"url": f"http://127.0.0.1:{8700 + len(lookups)}"})
        return [ConsumerRecord(topic, 0, 0, 0, 0, b"query", value, None, 5, len(value), [])]

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
