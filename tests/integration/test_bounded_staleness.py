"""Bounded staleness end to end: with replication into a region paused, once the bound
has passed its reads wait, route or raise as configured, and never return data older
than the bound (nor, with max_versions_behind=K, more than K versions behind)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from edgebus import EdgeBus
from edgebus.errors import StalenessBoundExceeded
from edgebus.sdk.region_client import RegionClient
from tests.integration.regions import RegionProcess, Regions, eventually, make_regions

BOUND_MS = 1500.0


def _regions(bootstrap: str, tmp_path: Path) -> Regions:
    regions = make_regions(bootstrap, tmp_path)
    regions.config["replication"] = {"watermark_interval_ms": 100}
    regions.config["reads"] = {"wait_ms": 0, "fallback": "raise"}
    regions.config_path.write_text(json.dumps(regions.config), encoding="utf-8")
    return regions


@pytest.fixture(scope="module")
def region_processes(  # type: ignore[no-untyped-def]
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
):
    """Three region processes, started once for this module (each test uses a key of
    its own and pauses eu itself)."""
    regions = _regions(kafka_bootstrap, tmp_path_factory.mktemp("bounded-staleness"))
    procs = [RegionProcess(regions, r, regions.store_url(r)) for r in regions.names]
    try:
        for proc in procs:
            proc.start()
        yield regions
    finally:
        for proc in procs:
            proc.stop()


@pytest.fixture
async def paused_eu(  # type: ignore[no-untyped-def]
    region_processes: Regions, request: pytest.FixtureRequest
):
    """On the module's three region processes: ``key`` = 1 everywhere, then eu's
    replication paused and ``key`` = 2 written in us. Yields (regions, client, time of
    the pause, key); resumes eu's replication afterwards."""
    regions = region_processes
    key = f"doc-{request.node.name}"
    client = RegionClient(regions.edge_config())
    try:
        await client.pause_replication(regions.eu, False)
        async with EdgeBus(regions.config, discovery=False) as bus:
            await bus.write(key, {"n": 1}, region=regions.us, replication_factor=3)

            async def fresh_everywhere() -> bool:
                for r in regions.names:
                    got = await bus.read(key, r, consistency="bounded_staleness",
                                         staleness_threshold_ms=BOUND_MS, wait_ms=2000)
                    if got.value != {"n": 1}:
                        return False
                return True

            await eventually(fresh_everywhere, 60, f"{key}=1 fresh in every region")
            await client.pause_replication(regions.eu, True)
            paused_at = time.time() * 1000
            await bus.write(key, {"n": 2}, region=regions.us, replication_factor=3)
        yield regions, client, paused_at, key
    finally:
        try:
            await client.pause_replication(regions.eu, False)
        finally:
            await client.close()


async def test_after_the_bound_a_paused_region_raises_instead_of_answering_stale(
    paused_eu: tuple[Regions, RegionClient, float, str],
) -> None:
    regions, _, paused_at, key = paused_eu
    async with EdgeBus(regions.config, discovery=False) as bus:
        # within the bound eu may answer: then its answer is at most BOUND_MS old
        answers = 0
        while time.time() * 1000 - paused_at < BOUND_MS + 1500:
            try:
                got = await bus.read(key, regions.eu, consistency="bounded_staleness",
                                     staleness_threshold_ms=BOUND_MS)
            except StalenessBoundExceeded as e:
                assert e.staleness_ms is None or e.staleness_ms > BOUND_MS
                continue
            answers += 1
            assert got.region == regions.eu and got.staleness_ms is not None
            assert got.staleness_ms <= BOUND_MS
            # an answer without doc=2 is from before the pause: not older than the bound
            assert got.value == {"n": 2} or time.time() * 1000 - paused_at <= BOUND_MS + 100
            await asyncio.sleep(0.05)
        with pytest.raises(StalenessBoundExceeded) as caught:
            await bus.read(key, regions.eu, consistency="bounded_staleness",
                           staleness_threshold_ms=BOUND_MS)
        assert caught.value.staleness_ms is not None and caught.value.staleness_ms > BOUND_MS
        assert "fallback='route'" in str(caught.value)
        # eventual reads are still served, and say how stale they are
        stale = await bus.read(key, regions.eu)
        assert stale.value == {"n": 1} and stale.staleness_ms is not None
        assert stale.staleness_ms > BOUND_MS


async def test_after_the_bound_a_read_routes_to_a_fresh_region(
    paused_eu: tuple[Regions, RegionClient, float, str],
) -> None:
    regions, _, paused_at, key = paused_eu
    await asyncio.sleep(max(0.0, (paused_at + BOUND_MS + 300) / 1000 - time.time()))
    async with EdgeBus(regions.config, discovery=False) as bus:
        got = await bus.read(key, regions.eu, consistency="bounded_staleness",
                             staleness_threshold_ms=BOUND_MS, fallback="route")
        assert got.routed_from == regions.eu and got.region != regions.eu
        assert got.value == {"n": 2}
        assert got.staleness_ms is not None and got.staleness_ms <= BOUND_MS


async def test_a_read_that_waits_is_served_by_the_region_once_it_catches_up(
    paused_eu: tuple[Regions, RegionClient, float, str],
) -> None:
    regions, client, paused_at, key = paused_eu
    await asyncio.sleep(max(0.0, (paused_at + BOUND_MS + 300) / 1000 - time.time()))

    read_started = asyncio.Event()
    resumed_at: list[float] = []

    async def resume_once_the_read_waits() -> None:
        await read_started.wait()
        await asyncio.sleep(0.5)
        await client.pause_replication(regions.eu, False)
        resumed_at.append(time.monotonic())

    resumer = asyncio.ensure_future(resume_once_the_read_waits())
    async with EdgeBus(regions.config, discovery=False) as bus:
        read_started.set()
        started = time.monotonic()
        got = await bus.read(key, regions.eu, consistency="bounded_staleness",
                             staleness_threshold_ms=BOUND_MS, wait_ms=15_000)
        returned = time.monotonic()
    await resumer
    # eu itself answered, after replication resumed, with the fresh value
    assert got.region == regions.eu and got.routed_from is None
    assert got.value == {"n": 2}
    assert started < resumed_at[0] < returned and got.waited_ms > 0
    assert got.staleness_ms is not None and got.staleness_ms <= BOUND_MS


async def test_max_versions_behind_refuses_a_region_more_than_k_writes_behind(
    paused_eu: tuple[Regions, RegionClient, float, str],
) -> None:
    regions, _, _, key = paused_eu
    k = 10
    async with EdgeBus(regions.config, discovery=False) as bus:
        for n in range(3, 3 + k + 2):  # k + 2 more versions in us
            await bus.write(key, {"n": n}, region=regions.us, replication_factor=3)
        latest = {"n": 2 + k + 2}
        with pytest.raises(StalenessBoundExceeded) as caught:
            await bus.read(key, regions.eu, consistency="bounded_staleness",
                           staleness_threshold_ms=600_000, max_versions_behind=k)
        assert caught.value.versions_behind is not None and caught.value.versions_behind > k

        async def served_fresh() -> bool:
            got = await bus.read(key, regions.eu, consistency="bounded_staleness",
                                 staleness_threshold_ms=600_000, max_versions_behind=k,
                                 fallback="route")
            assert got.versions_behind is not None and got.versions_behind <= k
            # never more than k versions behind the newest write
            assert got.value["n"] >= latest["n"] - k
            return got.value == latest

        await eventually(served_fresh, 30, "a region within k versions serves the read")
