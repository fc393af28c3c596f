"""The causal buffer: events wait for their dependencies, the bound is reported with what
they wait for, and forged session tokens are refused before anything is written."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgebus import EdgeBus
from edgebus.core.session import SessionToken
from edgebus.core.vector_clock import VectorClock
from edgebus.errors import InvalidInput
from edgebus.kafka.reading import end_offsets
from edgebus.kafka.topics import events_topic
from edgebus.server.service import RegionService
from tests.integration.regions import eventually, make_regions
from tests.kafka_settings import KAFKA


async def test_events_wait_for_their_dependencies_and_a_full_buffer_says_what_it_waits_for(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    regions = make_regions(kafka_bootstrap, tmp_path)
    regions.config["replication"] = {"watermark_interval_ms": 100, "max_causal_buffer": 5}
    us, eu = regions.us, regions.eu
    async with (
        RegionService(us, regions.config, store=regions.store_url(us)) as us_service,
        RegionService(eu, regions.config, store=regions.store_url(eu)) as eu_service,
        EdgeBus(regions.config, discovery=False) as bus,
    ):
        eu_service.pause_replication(True, into=us)  # eu's events wait at eu
        origin = await bus.write("origin", {"n": 0}, region=eu, replication_factor=3)
        # these us writes depend on the eu write, which us cannot have yet
        for n in range(12):
            await bus.write(f"after:{n}", {"n": n}, region=us, replication_factor=3)

        async def full() -> bool:
            status = await us_service.status()
            return bool(status["causal_buffer"]["full"])

        await eventually(full, 30, "us's causal buffer to report full")
        status = await us_service.status()
        buffer = status["causal_buffer"]
        assert buffer["pending"] > 5 and buffer["bound"] == 5
        waits = {w for b in buffer["blocked"] for w in b["waits_for"]}
        assert f"{eu}:{origin.partition}" in waits
        for n in range(12):  # nothing that depends on the missing write is visible
            assert not (await bus.read(f"after:{n}", us)).exists

        async def eu_has_it() -> bool:  # eu has everything (once its replicator copied it)
            return (await bus.read("after:0", eu)).exists

        await eventually(eu_has_it, 30, "eu to apply after:0")

        eu_service.pause_replication(False, into=us)

        async def drained() -> bool:
            rows = [await bus.read(f"after:{n}", us) for n in range(12)]
            status = await us_service.status()
            return all(r.exists for r in rows) and status["causal_buffer"]["pending"] == 0

        await eventually(drained, 60, "us to apply everything once eu's write arrives")
        assert (await bus.read("origin", us)).exists
        assert not (await us_service.status())["causal_buffer"]["full"]
        assert us_service.materializer is not None
        assert us_service.materializer.stats.causal_buffer_full >= 1


async def test_a_forged_session_token_is_refused_and_nothing_is_written(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    regions = make_regions(kafka_bootstrap, tmp_path)
    async with EdgeBus(regions.config, discovery=False) as bus:
        real = await bus.write("a", 1, region=regions.us)
        before = await end_offsets(KAFKA, kafka_bootstrap, [events_topic(regions.us)])
        forged = SessionToken(VectorClock({(regions.eu, 0): 10**9}))
        with pytest.raises(InvalidInput, match="not issued by this deployment"):
            await bus.write("b", 2, region=regions.us, session=forged.encode())
        alien = SessionToken(VectorClock({("mars-1", 0): 1}))
        with pytest.raises(InvalidInput, match="mars-1"):
            await bus.write("b", 2, region=regions.us, session=alien)
        with pytest.raises(InvalidInput, match="mars-1"):
            await bus.read("a", regions.us, consistency="causal", session=alien)
        assert await end_offsets(KAFKA, kafka_bootstrap, [events_topic(regions.us)]) == before
        # a real token from another session is accepted
        async with EdgeBus(regions.config, discovery=False) as other:
            ok = await other.write("b", 2, region=regions.us, session=real.session_token)
            assert ok.dependencies.clock.covers(real.position)
