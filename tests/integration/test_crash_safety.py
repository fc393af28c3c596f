"""Crash safety of the regional materializer (issue 3): kill -9 the region process at
random points while it applies, many times; after restart the store equals a fresh
replay of the topic, no event is applied twice and none is missed.

One ``edgebus region run`` process materializes region ``us``. The test process keeps
writing a known stream to ``us`` only (``replication_factor=1``): increments of +1 to
a few counter keys, appends of unique tokens to one list key, and sets. Each time the
restarted process has committed a batch, it is killed with SIGKILL after a random
0.05-1.5 s (seeded: the seed is printed; ``EDGEBUS_TEST_SEED`` replays one), while the
writer keeps writing, so most kills land while it works through a backlog.

The positions committed in the same SQLite transaction as the state are what make this
hold: a batch is either wholly in the store with its next offsets, or not at all.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from edgebus.core.conflict import Stamp
from edgebus.region.replay import replay
from edgebus.sdk import EdgeBus, WriteReceipt
from tests.integration.regions import (
    RegionProcess,
    eventually,
    make_regions,
    service_status,
    store_rows,
)

KILLS = 10
COUNTERS = tuple(f"crash:counter:{i}" for i in range(4))
LOG_KEY = "crash:log"
SETS = tuple(f"crash:set:{i}" for i in range(2))
BATCH = 15  #: writes in flight together
PAUSE_S = 0.1  #: between batches: a steady stream of about 100 events/s


def _seed() -> int:
    given = os.environ.get("EDGEBUS_TEST_SEED")
    seed = int(given) if given else random.SystemRandom().randrange(2**32)
    print(f"EDGEBUS_TEST_SEED={seed}")
    return seed


class Written:
    """Every acknowledged write, by key: (operation, payload, receipt)."""

    def __init__(self) -> None:
        self.by_key: dict[str, list[tuple[str, Any, WriteReceipt]]] = {}

    def add(self, key: str, operation: str, payload: Any, receipt: WriteReceipt) -> None:
        self.by_key.setdefault(key, []).append((operation, payload, receipt))

    @property
    def total(self) -> int:
        return sum(len(v) for v in self.by_key.values())


def _stamp(receipt: WriteReceipt) -> Stamp:
    return Stamp.of(receipt.hlc, receipt.region, receipt.event_id)


async def _write_stream(
    bus: EdgeBus, region: str, rng: random.Random, stop: asyncio.Event, written: Written
) -> None:
    """Write batches until ``stop``; every write must be acknowledged."""
    n = 0

    async def one(key: str, data: Any, operation: str) -> None:
        receipt = await bus.write(
            key,
            data,
            region=region,
            operation=operation,
            replication_factor=1,
            classification="public",
        )
        assert receipt.placement == (region,), receipt
        written.add(key, operation, data, receipt)

    while not stop.is_set():
        ops = []
        for _ in range(BATCH):
            n += 1
            roll = rng.random()
            if roll < 0.8:
                ops.append(one(rng.choice(COUNTERS), 1, "increment"))
            elif roll < 0.9:
                ops.append(one(LOG_KEY, f"token-{n}", "append"))
            else:
                ops.append(one(rng.choice(SETS), {"n": n}, "set"))
        await asyncio.gather(*ops)
        await asyncio.sleep(PAUSE_S)


def _applying(http: aiohttp.ClientSession, proc: RegionProcess) -> Callable[[], Any]:
    async def check() -> bool:
        status = await service_status(http, proc.url)
        return bool(status and status["materializer"] and status["materializer"]["batches"])

    return check


def _caught_up(
    http: aiohttp.ClientSession, proc: RegionProcess, written: Written
) -> Callable[[], Any]:
    """Every acknowledged write is below the region's committed positions (heartbeat
    watermarks keep arriving, so the end offsets themselves keep moving)."""
    last: dict[int, int] = {}
    for writes in written.by_key.values():
        for _, _, receipt in writes:
            last[receipt.partition] = max(last.get(receipt.partition, -1), receipt.offset)

    async def check() -> bool:
        status = await service_status(http, proc.url)
        if not status:
            return False
        positions = {int(p): o for p, o in status["positions"].items()}
        return all(positions.get(p, 0) > offset for p, offset in last.items())

    return check


async def test_region_process_killed_mid_apply_neither_loses_nor_doubles_events(
    kafka_bootstrap: str, tmp_path: Path, cli: Any
) -> None:
    seed = _seed()
    rng = random.Random(seed)
    regions = make_regions(kafka_bootstrap, tmp_path)
    us = regions.us
    live_url = regions.store_url(us)
    proc = RegionProcess(regions, us, live_url)
    await asyncio.to_thread(proc.start)
    written = Written()
    stop = asyncio.Event()
    kills_with_backlog = 0
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
            EdgeBus(regions.config) as bus,
        ):
            writer = asyncio.create_task(
                _write_stream(bus, us, random.Random(rng.random()), stop, written)
            )
            try:
                for _ in range(KILLS):
                    await eventually(_applying(http, proc), 60, "the region process applying")
                    await asyncio.sleep(rng.uniform(0.05, 1.5))
                    status = await service_status(http, proc.url)
                    if status and status["lag"]:
                        kills_with_backlog += 1
                    assert proc.alive(), f"the region process died on its own: {proc.log_tail()}"
                    proc.kill()
                    await asyncio.to_thread(proc.start)
            finally:
                stop.set()
                await writer
            print(
                f"{KILLS} kills ({kills_with_backlog} seen with a backlog just before), "
                f"{written.total} acknowledged writes"
            )
            await eventually(
                _caught_up(http, proc, written),
                60,
                f"the restarted region to apply all {written.total} events",
            )
    finally:
        proc.stop()
    assert proc.proc is not None and proc.proc.returncode == 0, proc.log_tail()

    live = await store_rows(live_url)

    # each increment applied exactly once: value and version equal the count written
    for key in COUNTERS:
        count = len(written.by_key[key])
        assert live[key] == (True, count, count), key
    # each token exactly once, in the order of the HLC stamps
    log = sorted(written.by_key[LOG_KEY], key=lambda w: _stamp(w[2]))
    tokens = [payload for _, payload, _ in log]
    assert live[LOG_KEY] == (True, tokens, len(tokens))
    # sets: the newest by stamp wins; every one counted
    for key in SETS:
        sets = written.by_key.get(key, [])
        if sets:
            newest = max(sets, key=lambda w: _stamp(w[2]))
            assert live[key] == (True, newest[1], len(sets)), key
    assert set(live) == set(written.by_key)

    # the live store equals a replay: `edgebus verify` (its own process), and a replay
    # into a fresh store compared row by row (both at once: they are independent)
    replay_url = regions.store_url(us, "-replay")
    (rc, report, out, err), summary = await asyncio.gather(
        asyncio.to_thread(
            cli, ["verify", "--region", us, "--store", live_url, "--json"], regions.env
        ),
        replay(regions.edge_config(), us, replay_url),
    )
    assert rc == 0 and report and report["ok"], (rc, out, err)
    assert (summary.events, summary.duplicates, summary.dead_letters) == (written.total, 0, 0)
    assert await store_rows(replay_url) == live
    counts = Counter(op for ws in written.by_key.values() for op, _, _ in ws)
    print(f"seed {seed}: {dict(counts)} all applied exactly once after {KILLS} kills")
