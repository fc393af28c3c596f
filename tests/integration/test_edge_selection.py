"""Discovery and edge selection end to end: measured latency picks the region, a
stopped regional broker moves writes to a healthy compliant region (never outside the
compliance zones), and the region catches up when its broker returns."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from pathlib import Path
from typing import Any

import pytest

from edgebus import EdgeBus
from edgebus.errors import InfrastructureUnavailable
from edgebus.kafka.reading import read_to_end
from edgebus.kafka.topics import events_topic
from edgebus.localkafka import launcher
from edgebus.sdk.region_client import RegionClient
from tests.integration.regions import RegionProcess, Regions, eventually, make_regions
from tests.kafka_settings import KAFKA


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class DelayProxy:
    """A TCP proxy that delays every chunk the server sends back by ``delay`` seconds."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.delay = 0.0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, slow: bool) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    if slow and self.delay:
                        await asyncio.sleep(self.delay)
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer, False), pipe(up_reader, writer, True))


def _configure(regions: Regions, **discovery: Any) -> None:
    regions.config["discovery"].update(discovery)
    regions.config["replication"] = {"watermark_interval_ms": 100}
    regions.config["edge_strategy"] = "lowest_latency"
    regions.config_path.write_text(json.dumps(regions.config), encoding="utf-8")


async def test_lowest_latency_picks_the_region_measured_fastest(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    regions = make_regions(kafka_bootstrap, tmp_path)
    _configure(regions, health_check_interval=0.1, probe_timeout_ms=3000)
    proxies: dict[str, DelayProxy] = {}
    procs: list[RegionProcess] = []
    try:
        for region in regions.names:
            listen = _free_port()
            proxy = proxies[region] = DelayProxy(listen)
            await proxy.start()
            procs.append(RegionProcess(
                regions, region, regions.store_url(region),
                extra_args=["--listen", f"127.0.0.1:{listen}",
                            "--advertise", f"http://127.0.0.1:{proxy.port}"],
            ))
            procs[-1].start()

        async def pick(slow: set[str]) -> tuple[str, str, dict[str, float]]:
            for region, proxy in proxies.items():
                proxy.delay = 0.15 if region in slow else 0.0
            async with EdgeBus(regions.config) as bus:
                assert bus.discovery is not None
                discovery = bus.discovery

                async def measured() -> bool:
                    report = discovery.report()
                    return all(report[r]["read_ms"]["samples"] >= 5 for r in regions.names)

                await eventually(measured, 60, "five latency samples per region")
                placement = bus.plan("item:1", {"n": 1})
                await bus.write("item:1", {"n": 1}, replication_factor=3)
                got = await bus.read("item:1")
                return placement.home, got.region, discovery.latencies_ms()

        home, served, latencies = await pick({regions.us})
        assert home != regions.us and served != regions.us, latencies
        assert latencies[regions.us] > max(latencies[regions.eu], latencies[regions.ap])
        assert home == min(latencies, key=latencies.__getitem__)

        home, served, latencies = await pick({regions.eu, regions.ap})
        assert home == regions.us and served == regions.us, latencies
    finally:
        for proc in procs:
            proc.stop()
        for proxy in proxies.values():
            await proxy.close()


async def test_a_stopped_regional_broker_moves_writes_within_the_zones_and_the_region_catches_up(
    tmp_path: Path,
) -> None:
    states = {s: tmp_path / f"kafka-{s}" for s in ("us", "eu", "ap")}
    procs: dict[str, RegionProcess] = {}
    try:
        ups = {s: launcher.up(1, state=states[s]) for s in states}
        clusters = {s: ups[s].state.clusters[0].bootstrap for s in states}
        regions = make_regions(clusters, tmp_path)
        _configure(regions, health_check_interval=0.5, max_probe_failures=1,
                   probe_timeout_ms=1500)
        for region in regions.names:
            procs[region] = RegionProcess(regions, region, regions.store_url(region))
            procs[region].start()
        us, eu, ap = regions.names
        client = RegionClient(regions.edge_config())
        async with EdgeBus(regions.config) as bus:
            assert bus.discovery is not None
            discovery = bus.discovery

            async def all_healthy() -> bool:
                return discovery.rounds >= 2 and not discovery.unhealthy()

            await eventually(all_healthy, 60, "every region healthy")
            # a send to eu in flight when its broker stops: sent again elsewhere, once
            mid_config = json.loads(json.dumps(regions.config))
            mid_config["kafka"]["delivery_timeout_ms"] = 5_000
            async with EdgeBus(mid_config, discovery=False) as mid_bus:
                await mid_bus.write("cart:0", {"items": 1}, region=eu)  # connected to eu
                launcher.down(state=states["eu"])  # eu's broker stops; its data stays
                resent = await mid_bus.write("cart:mid", {"items": 5}, region=eu,
                                             fallback_strategy="any_available")
            assert resent.region != eu and resent.rerouted and eu not in resent.placement

            async def eu_down() -> bool:
                return eu in discovery.unhealthy()

            await eventually(eu_down, 30, "discovery to see eu's broker down")

            # graceful degradation: another healthy compliant region takes the write
            moved = await bus.write("cart:1", {"items": 2}, region=eu,
                                    fallback_strategy="any_available")
            assert moved.region != eu and moved.rerouted
            # without fallback, strict mode refuses rather than reroute
            with pytest.raises(InfrastructureUnavailable, match="unhealthy"):
                await bus.write("cart:2", {"items": 1}, region=eu)
            # PII may only live in the GDPR zone (eu alone here): refused, never misplaced
            with pytest.raises(InfrastructureUnavailable, match="gdpr"):
                await bus.write("user:1", {"email": "ann@example.com"}, region=eu,
                                fallback_strategy="any_available")
            # replicas: eu is left out and the receipt says so
            news = await bus.write("news:1", {"title": "hi"}, region=us, replication_factor=3)
            assert eu not in news.placement and news.replicas[eu] == "failed"
            assert news.replicas[us] == "written"
            where = await bus.replication_status(news, wait_ms=20_000)
            assert where == {us: "completed", ap: "completed", eu: "failed"}, where
            for region in (us, ap):
                keys = [r.key for r in await read_to_end(KAFKA, clusters[region[-2:]],
                                                         events_topic(region))]
                assert b"user:1" not in keys

            # eu's broker returns: the region catches up and its frontiers advance
            launcher.up(1, state=states["eu"])
            if not procs[eu].alive():
                procs[eu].start()

            async def caught_up() -> bool:
                try:
                    status = await client.status(eu)
                except Exception:
                    return False
                frontier = status["frontier"]
                stale = status["staleness_ms"]
                return (
                    frontier.get(f"{us}:{news.partition}", -1) >= news.offset
                    and stale.get(us) is not None and stale[us] < 3000
                    and stale.get(ap) is not None and stale[ap] < 3000
                )

            await eventually(caught_up, 90, "eu's frontier to pass the writes made meanwhile")
            mid = await bus.read("cart:mid", resent.region, consistency="causal",
                                 session=resent.session_token)
            assert (mid.value, mid.version, mid.origin) == ({"items": 5}, 1, eu), mid

            async def healthy_again() -> bool:
                return eu not in discovery.unhealthy()

            await eventually(healthy_again, 30, "discovery to see eu healthy again")
            back = await bus.write("cart:3", {"items": 3}, region=eu)
            assert back.region == eu and not back.rerouted
        await client.close()
    finally:
        for proc in procs.values():
            proc.stop()
        for state in states.values():
            with contextlib.suppress(Exception):
                launcher.down(wipe=True, state=state)
