"""Chaos: kill -9 of the Kafka broker under a steady write load, restarted within 10 s.

The test runs its own one-broker cluster (``edgebus kafka up`` into a temporary state
dir), three region services as child processes and, in this process, 32 SDK writers.
Each writer appends its sequence numbers 0, 1, 2, ... to a key of its own (an
``append`` write, placed in all three regions, homes rotating over the regions), so
the list a region holds for a key shows every write applied there, each exactly once,
in order. Mid-load the broker is killed with SIGKILL and started again after a random
2-8 s (seeded: ``EDGEBUS_TEST_SEED`` replays one run).

What must hold afterwards:

* no write failed: an outage shorter than ``kafka.delivery_timeout_ms`` costs
  latency, not errors;
* every region service is still running (nobody restarted one by hand);
* in every region, every key's list is exactly its acknowledged writes, in order:
  nothing lost, nothing applied twice.

And an outage longer than the delivery timeout fails a write with a message naming
the setting, after about that long.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from edgebus.errors import WriteFailed
from edgebus.localkafka import launcher
from edgebus.sdk import EdgeBus
from tests.integration.regions import RegionProcess, eventually, make_regions

WRITERS = 32
BEFORE_KILL_S = 6.0  #: load before the broker is killed
AFTER_RESTART_S = 8.0  #: load once the broker is back


def _seed() -> int:
    given = os.environ.get("EDGEBUS_TEST_SEED")
    seed = int(given) if given else random.SystemRandom().randrange(2**32)
    print(f"EDGEBUS_TEST_SEED={seed}")
    return seed


class Load:
    """The writers' record: acknowledged sequence numbers per key, failures."""

    def __init__(self, homes: tuple[str, ...]) -> None:
        self.homes = homes
        self.acked: dict[str, list[int]] = {f"chaos:w{w}": [] for w in range(WRITERS)}
        self.failed: list[str] = []
        self.slowest_ms = 0.0
        self.stop = asyncio.Event()

    async def writer(self, bus: EdgeBus, w: int) -> None:
        key = f"chaos:w{w}"
        i = 0
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                await bus.write(key, i, region=self.homes[w % len(self.homes)],
                                operation="append", classification="public",
                                replication_factor=3)
            except Exception as e:  # every failure is counted and shown
                self.failed.append(f"{key}#{i}: {type(e).__name__}: {e}")
                return  # the key's order would be unknowable after a failure
            self.acked[key].append(i)
            self.slowest_ms = max(self.slowest_ms, (time.monotonic() - started) * 1000)
            i += 1
            await asyncio.sleep(0.01)

    @property
    def total(self) -> int:
        return sum(len(v) for v in self.acked.values())


async def _lists_in(bus: EdgeBus, region: str, keys: list[str]) -> dict[str, Any]:
    results = await asyncio.gather(*(bus.read(k, region=region) for k in keys))
    return {k: r.value for k, r in zip(keys, results, strict=True)}


async def test_a_broker_killed_and_restarted_under_load_loses_and_fails_nothing(
    tmp_path: Path,
) -> None:
    rng = random.Random(_seed())
    state = tmp_path / "kafka"
    procs: list[RegionProcess] = []
    try:
        up = launcher.up(1, state=state)
        cluster = up.state.clusters[0]
        regions = make_regions(cluster.bootstrap, tmp_path)
        for region in regions.names:
            procs.append(RegionProcess(regions, region, regions.store_url(region)))
            procs[-1].start()
        load = Load(regions.names)
        async with EdgeBus(regions.config) as bus:
            writers = [asyncio.ensure_future(load.writer(bus, w)) for w in range(WRITERS)]
            await asyncio.sleep(BEFORE_KILL_S)
            before_kill = load.total
            os.kill(cluster.pid, signal.SIGKILL)
            down_s = rng.uniform(2.0, 8.0)
            await asyncio.sleep(down_s)
            restarted = await asyncio.to_thread(launcher.up, 1, state=state)
            assert restarted.state.clusters[0].bootstrap == cluster.bootstrap
            at_restart = load.total
            await asyncio.sleep(AFTER_RESTART_S)
            load.stop.set()
            await asyncio.gather(*writers)
            print(f"writes acknowledged: {load.total} ({before_kill} before the kill, "
                  f"{at_restart - before_kill} during the {down_s:.1f} s outage and the "
                  f"restart); failed: {len(load.failed)}; slowest write "
                  f"{load.slowest_ms:.0f} ms; broker kills: 1, restarts: 1")
            assert not load.failed, load.failed[:5]
            assert load.total > before_kill > 0
            for proc in procs:
                assert proc.alive(), f"{proc.region} stopped:\n{proc.log_tail()}"

            keys = sorted(load.acked)
            for region in regions.names:
                seen: dict[str, Any] = {}

                async def complete(region: str = region, seen: dict[str, Any] = seen) -> bool:
                    seen.update(await _lists_in(bus, region, keys))
                    return all(seen[k] == load.acked[k] for k in keys)

                await eventually(complete, 120, f"{region} to hold every acknowledged write")
            print(f"applied exactly once, in order, in each of {len(regions.names)} regions: "
                  f"{load.total} writes")
        for proc in procs:
            assert proc.alive(), f"{proc.region} stopped:\n{proc.log_tail()}"
    finally:
        for proc in procs:
            proc.stop()
        launcher.down(wipe=True, state=state)


async def test_a_write_through_an_outage_longer_than_the_delivery_timeout_fails_saying_so(
    tmp_path: Path,
) -> None:
    state = tmp_path / "kafka"
    try:
        up = launcher.up(1, state=state)
        regions = make_regions(up.state.clusters[0].bootstrap, tmp_path)
        regions.config["kafka"]["delivery_timeout_ms"] = 3000
        async with EdgeBus(regions.config) as bus:
            await bus.write("before", 1, region=regions.us, replication_factor=1)
            os.kill(up.state.clusters[0].pid, signal.SIGKILL)
            started = time.monotonic()
            with pytest.raises(WriteFailed, match="delivery_timeout_ms=3000") as failed:
                await bus.write("during", 2, region=regions.us, replication_factor=1)
            waited = time.monotonic() - started
        assert 2.5 <= waited <= 30, waited
        assert "may or may not be stored" in str(failed.value)
    finally:
        launcher.down(wipe=True, state=state)
