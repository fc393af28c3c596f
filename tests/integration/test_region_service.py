"""Region services on real Kafka: embedded and as processes, reads from another
process, replication to the placement, one cluster per region, status."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from edgebus.errors import RegionUnavailable
from edgebus.kafka.reading import end_offsets
from edgebus.kafka.topics import events_topic
from edgebus.localkafka import launcher
from edgebus.sdk import EdgeBus
from tests.integration.regions import RegionProcess, Regions, eventually, make_regions
from tests.kafka_settings import KAFKA


@contextmanager
def _region_process(regions: Regions, region: str) -> Iterator[RegionProcess]:
    """``edgebus region run`` for ``region`` with its own store, started; stopped on
    exit."""
    proc = RegionProcess(regions, region, regions.store_url(region))
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


async def test_embedded_region_serves_reads_of_its_own_writes(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    regions = make_regions(kafka_bootstrap, tmp_path)
    async with regions.services(regions.config, regions.eu), EdgeBus(regions.config) as bus:
        receipt = await bus.write("user:1", {"name": "Ann"}, region=regions.eu)
        await bus.write("visits", 2, region=regions.eu, operation="increment")
        await bus.write("visits", 3, region=regions.eu, operation="increment")

        async def applied() -> bool:
            return (await bus.read("visits", regions.eu)).version == 2

        await eventually(applied, 30, "both increments applied")
        user = await bus.read("user:1", regions.eu)
        assert (user.exists, user.value, user.version) == (True, {"name": "Ann"}, 1)
        assert (user.origin, user.hlc, user.event_id) == (
            regions.eu, receipt.hlc, receipt.event_id
        )
        assert (await bus.read("visits", regions.eu)).value == 5
        missing = await bus.read("never-written", regions.eu)
        assert (missing.exists, missing.value, missing.version) == (False, None, 0)


async def test_region_process_answers_reads_from_another_process(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    regions = make_regions(kafka_bootstrap, tmp_path)
    with _region_process(regions, regions.us):
        async with EdgeBus(regions.config) as bus:
            await bus.write("order:9", {"total": 12.5}, region=regions.us)

            async def visible() -> bool:
                return (await bus.read("order:9", regions.us)).exists

            await eventually(visible, 30, "order:9 readable through the region's endpoint")
        code, out, _ = regions.cli("read", "order:9", "--region", regions.us)
        assert code == 0, out
        assert (out["value"], out["version"], out["origin"]) == ({"total": 12.5}, 1, regions.us)
        code, status, _ = regions.cli("status", "--region", regions.us)
        assert code == 0, status
        [row] = status["regions"]
        assert row["healthy"] is True
        # heartbeat watermarks keep arriving: at most a few rounds are unconsumed
        assert row["lag"] <= 4 * 6  # 6 partitions (the default)
        assert row["keys"] == 1
        assert row["store_bytes"] > 0
        assert sum(row["positions"].values()) > 1  # the write and heartbeats
        assert row["staleness_ms"][regions.us] is not None
        assert row["health"] == "healthy"
        # every region: eu's and ap's services are not running, so status exits 1
        code, everywhere, _ = regions.cli("status")
        assert code == 1 and everywhere["ok"] is False, everywhere
        health = {r["region"]: r["health"] for r in everywhere["regions"]}
        assert health == {regions.us: "healthy", regions.eu: "down", regions.ap: "down"}


async def test_read_of_a_region_without_a_service_says_how_to_start_one(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    regions = make_regions(kafka_bootstrap, tmp_path)
    async with EdgeBus(regions.config) as bus:
        with pytest.raises(RegionUnavailable, match="edgebus region run --region"):
            await bus.read("k", regions.ap)
    code, out, _ = regions.cli("read", "k", "--region", "nowhere-1")
    assert code == 2
    assert "Unknown region" in out["message"]


async def test_public_write_reaches_exactly_the_regions_of_its_placement(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    regions = make_regions(kafka_bootstrap, tmp_path)
    async with regions.services(regions.config), EdgeBus(regions.config) as bus:
        everywhere = await bus.write("news", {"v": 1}, region=regions.ap, replication_factor=3)
        two = await bus.write("pair", {"v": 2}, region=regions.us, replication_factor=2)
        assert set(everywhere.placement) == set(regions.names)
        assert len(two.placement) == 2

        async def replicated() -> bool:
            news = [await bus.read("news", r) for r in regions.names]
            pair = [await bus.read("pair", r) for r in two.placement]
            return all(r.exists for r in news + pair)

        await eventually(replicated, 30, "replication to every placement region")
        [outside] = set(regions.names) - set(two.placement)
        # the outsider's replicator has read everything the others hold: no copy will come
        ends = await end_offsets(KAFKA,
            kafka_bootstrap, [events_topic(r) for r in regions.names if r != outside]
        )

        async def drained() -> bool:
            status = await _status(outside)
            return sum(r["seen"] for r in status["replicators"]) >= sum(ends.values())

        await eventually(drained, 30, f"{outside}'s replicator caught up")
        assert not (await bus.read("pair", outside)).exists
        for region in regions.names:
            news = await bus.read("news", region)
            assert (news.value, news.version, news.origin) == ({"v": 1}, 1, regions.ap)


async def _status(region: str) -> dict:  # type: ignore[type-arg]
    from edgebus.server.registry import embedded

    service = embedded(region)
    assert service is not None
    return await service.status()


async def test_replication_across_three_clusters_one_per_region(tmp_path: Path) -> None:
    state = tmp_path / "three-clusters"
    result = launcher.up(3, state=state)
    try:
        names = ("us", "eu", "ap")
        clusters = {s: result.state.clusters[i].bootstrap for i, s in enumerate(names)}
        regions = make_regions(clusters, tmp_path)
        async with regions.services(regions.config), EdgeBus(regions.config) as bus:
            for region in regions.names:
                await bus.write(f"from:{region}", region, region=region, replication_factor=3)
            await bus.write("eu-only", {"email": "ann@example.com"}, region=regions.eu)

            async def everywhere() -> bool:
                rows = [await bus.read(f"from:{o}", r) for o in regions.names
                        for r in regions.names]
                return all(row.exists for row in rows)

            await eventually(everywhere, 60, "every region's write in every region")
            # each cluster holds only its own region's events topic
            for suffix, region in zip(("us", "eu", "ap"), regions.names, strict=True):
                ends = await end_offsets(KAFKA, clusters[suffix], [events_topic(r)
                                                            for r in regions.names])
                assert {tp.topic for tp in ends} == {events_topic(region)}
            for region in (regions.us, regions.ap):
                assert not (await bus.read("eu-only", region)).exists
            assert (await bus.read("eu-only", regions.eu)).exists
    finally:
        launcher.down(wipe=True, state=state)


async def test_second_service_for_a_region_takes_over_and_the_first_stops_saying_why(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    import asyncio

    regions = make_regions(kafka_bootstrap, tmp_path)
    first = RegionProcess(regions, regions.us, regions.store_url(regions.us))
    second = RegionProcess(regions, regions.us, regions.store_url(regions.us, "-second"))
    first.start()
    try:
        second.start()
        for _ in range(150):
            if not first.alive():
                break
            await asyncio.sleep(0.2)
        assert not first.alive(), "the first service kept running beside the second"
        assert first.proc is not None and first.proc.returncode == 1
        assert "another service for this region took over" in first.log_tail()
        async with EdgeBus(regions.config) as bus:
            await bus.write("after-takeover", 1, region=regions.us)

            async def served() -> bool:
                return (await bus.read("after-takeover", regions.us)).exists

            await eventually(served, 30, "the second service applying new writes")
        assert second.alive()
    finally:
        first.stop()
        second.stop()


async def test_discover_reports_health_latency_and_why_a_region_is_not_readable(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    regions = make_regions(kafka_bootstrap, tmp_path)
    with _region_process(regions, regions.us):
        code, out, text = regions.cli("discover", "--rounds", "2")
        assert code == 0, text
        report = out["regions"]
        assert set(report) == set(regions.names)
        us, eu = report[regions.us], report[regions.eu]
        assert us["healthy"] and us["readable"] and us["broker_reachable"]
        assert us["probe_ms"]["samples"] == 2 and us["latency_ms"] > 0
        assert us["lag_events"] is not None
        # no service for eu: writes may still go there (Kafka answers), reads go elsewhere
        assert eu["healthy"] and not eu["readable"]
        assert any("region service unreachable" in r for r in eu["reasons"])
        assert out["read_order"][0] == regions.us
