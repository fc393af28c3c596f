"""``fallback_strategy="any_available"`` when a send fails mid-flight (no Kafka: the
clusters are scripted): the same event (id, HLC, data, ``eb-once``) goes to another
healthy compliant region, placed again without the first; never outside the zones;
without any_available the error is raised as before."""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError

from edgebus.errors import WriteFailed
from edgebus.sdk import EdgeBus
from edgebus.wire.headers import H_ONCE

US, EU, AP = "us-east-1", "eu-west-1", "ap-south-1"


class ScriptedCluster:
    """A cluster's batching producer that acknowledges, or fails like a dead broker."""

    def __init__(self, region: str, down: bool) -> None:
        self.region = region
        self.down = down
        self.sent: list[tuple[str, bytes, dict[str, bytes]]] = []

    def partition(self, key: bytes) -> int:
        return 0

    async def send(self, topic: str, partition: int, key: bytes, value: bytes,
                   headers: Any) -> int:
        if self.down:
            raise KafkaTimeoutError("Batch for edgebus.x.events-0 expired")
        self.sent.append((topic, value, dict(headers)))
        return len(self.sent) - 1


def bus_with(down: set[str]) -> tuple[EdgeBus, dict[str, ScriptedCluster]]:
    config = {"discovery": {"locations": [US, EU, AP]},
              "kafka": {"clusters": {US: "us:9092", EU: "eu:9092", AP: "ap:9092"}}}
    bus = EdgeBus(config, discovery=False)
    clusters = {r: ScriptedCluster(r, r in down) for r in (US, EU, AP)}
    writer: Any = bus._writes
    writer.closed = False
    writer._producers = {writer.clusters[r]: c for r, c in clusters.items()}
    return bus, clusters


async def test_a_send_that_fails_mid_flight_goes_to_another_region_as_the_same_event() -> None:
    bus, clusters = bus_with(down={US})
    receipt = await bus.write("cart:1", {"items": 2}, region=US,
                              fallback_strategy="any_available", replication_factor=2)
    assert receipt.region != US and receipt.rerouted and US not in receipt.placement
    [(topic, _, headers)] = clusters[receipt.region].sent
    assert topic == f"edgebus.{receipt.region}.events"
    assert headers[H_ONCE] == US.encode()  # names the region first tried
    assert headers["eb-event-id"] == receipt.event_id.encode()


async def test_every_any_available_write_carries_eb_once_from_its_first_send() -> None:
    bus, clusters = bus_with(down=set())
    receipt = await bus.write("cart:2", {"items": 1}, region=US,
                              fallback_strategy="any_available")
    [(_, _, headers)] = clusters[US].sent
    assert receipt.region == US and headers[H_ONCE] == US.encode()
    plain = await bus.write("cart:3", {"items": 1}, region=US)
    assert plain.region == US and H_ONCE not in clusters[US].sent[-1][2]


async def test_without_any_available_a_failed_send_raises_saying_it_may_be_stored() -> None:
    bus, clusters = bus_with(down={US})
    with pytest.raises(WriteFailed, match="may or may not be stored"):
        await bus.write("cart:4", {"items": 1}, region=US)
    assert not any(c.sent for c in clusters.values())


async def test_pii_whose_only_region_fails_is_never_sent_outside_its_zone() -> None:
    bus, clusters = bus_with(down={EU})
    with pytest.raises(WriteFailed, match="No other region could take it"):
        await bus.write("user:1", {"email": "ann@example.com"}, region=EU,
                        fallback_strategy="any_available")
    assert not clusters[US].sent and not clusters[AP].sent
