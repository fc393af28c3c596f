"""Routed reads on real Kafka: when the only region that may hold a key is down, the
read fails with RegionUnavailable naming it, never "not found" from another region;
a key replicated everywhere is still read from another region."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from edgebus.errors import RegionUnavailable
from edgebus.sdk import EdgeBus, ReadResult, WriteReceipt
from edgebus.server.service import RegionService
from tests.integration.regions import Regions, eventually, make_regions


class Stopped:
    """Three embedded region services with a PII key (placed only in eu) and a public
    one (placed everywhere) written and applied, then eu's service stopped."""

    def __init__(self, regions: Regions, pii: WriteReceipt, public: WriteReceipt) -> None:
        self.regions = regions
        self.pii = pii
        self.public = public


async def _applied(bus: EdgeBus, receipt: WriteReceipt) -> None:
    async def visible() -> bool:
        rows = [await bus.read(receipt.key, r) for r in receipt.placement]
        return all(row.exists for row in rows)

    await eventually(visible, 60, f"{receipt.key} applied in {receipt.placement}")


@pytest.fixture
async def eu_stopped(kafka_bootstrap: str, tmp_path: Path) -> AsyncIterator[Stopped]:
    regions = make_regions(kafka_bootstrap, tmp_path)
    async with AsyncExitStack() as others:
        for region in (regions.us, regions.ap):
            await others.enter_async_context(
                RegionService(region, regions.config, store=regions.store_url(region))
            )
        eu = RegionService(regions.eu, regions.config, store=regions.store_url(regions.eu))
        async with eu, EdgeBus(regions.config, discovery=False) as bus:
            pii = await bus.write("user:42", {"name": "Ann"}, region=regions.eu,
                                  classification="pii")
            public = await bus.write("news:1", {"v": 1}, region=regions.us,
                                     replication_factor=3)
            assert pii.placement == (regions.eu,)
            assert set(public.placement) == set(regions.names)
            await _applied(bus, pii)
            await _applied(bus, public)
        yield Stopped(regions, pii, public)


def _names_eu(error: RegionUnavailable, regions: Regions) -> None:
    message = str(error)
    assert regions.eu in message and f"edgebus region run --region {regions.eu}" in message


async def _never_not_found(bus: EdgeBus, key: str, region: str | None) -> RegionUnavailable:
    try:
        got: ReadResult = await bus.read(key, region)
    except RegionUnavailable as e:
        return e
    raise AssertionError(f"read of {key} in {region} answered {got} instead of failing")


async def test_a_key_whose_only_region_is_down_fails_and_is_never_not_found(
    eu_stopped: Stopped,
) -> None:
    regions, key = eu_stopped.regions, eu_stopped.pii.key
    # a bus that knows nothing of the key: the region asked is down
    async with EdgeBus(regions.config, discovery=False) as bus:
        error = await _never_not_found(bus, key, regions.eu)
        _names_eu(error, regions)
        assert "does not count" in str(error)  # us and ap answered, and did not count
    # a bus that knows the key's placement (its write's receipt) asks no other region
    async with EdgeBus(regions.config, discovery=False) as bus:
        bus._session.remember_placement(key, eu_stopped.pii.placement)  # the write's receipt
        for region in (regions.eu, None):
            error = await _never_not_found(bus, key, region)
            _names_eu(error, regions)
            assert f"placement ({regions.eu})" in str(error)
    # with discovery: once eu is known down, a read with no region does not trust us
    async with EdgeBus(regions.config) as bus:
        assert bus.discovery is not None
        discovery = bus.discovery

        async def eu_down() -> bool:
            return not discovery.health()[regions.eu].readable

        await eventually(eu_down, 30, "discovery sees eu's service down")
        _names_eu(await _never_not_found(bus, key, None), regions)


async def test_a_key_placed_everywhere_is_still_read_from_another_region(
    eu_stopped: Stopped,
) -> None:
    regions, key = eu_stopped.regions, eu_stopped.public.key
    async with EdgeBus(regions.config, discovery=False) as bus:
        got = await bus.read(key, regions.eu)
        assert (got.exists, got.value, got.routed_from) == (True, {"v": 1}, regions.eu)
        assert got.region in (regions.us, regions.ap)
        # knowing the placement, a region of it may also say "not found"
        bus._session.remember_placement("never-written", eu_stopped.public.placement)
        missing = await bus.read("never-written", regions.eu)
        assert (missing.exists, missing.routed_from) == (False, regions.eu)


async def test_the_cli_read_of_a_down_region_exits_non_zero_naming_it(
    eu_stopped: Stopped,
) -> None:
    regions, key = eu_stopped.regions, eu_stopped.pii.key
    code, out, text = await asyncio.to_thread(
        regions.cli, "read", key, "--region", regions.eu, timeout_s=120.0
    )
    assert code == 1, text
    assert out["error"] == "RegionUnavailable"
    assert f"edgebus region run --region {regions.eu}" in out["message"]
    assert "exists" not in out
