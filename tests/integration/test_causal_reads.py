"""Causal consistency end to end, on recorded histories: region services run as their
own processes, sessions write and read across regions while replication into a region
is paused or slowed, and the causal history checker finds zero anomalies.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from edgebus import EdgeBus
from edgebus.errors import SessionNotCovered
from edgebus.kafka.reading import read_to_end
from edgebus.kafka.topics import events_topic
from edgebus.sdk.region_client import RegionClient
from edgebus.wire.watermark import is_watermark
from tests.checkers.causal_history import HistoryRecorder, check_causal, summarize
from tests.integration.regions import RegionProcess, Regions, make_regions
from tests.kafka_settings import KAFKA

KEYS = ("k0", "k1", "k2")


def _causal_regions(bootstrap: str, tmp_path: Path) -> Regions:
    regions = make_regions(bootstrap, tmp_path)
    regions.config["replication"] = {"watermark_interval_ms": 100}
    regions.config["reads"] = {"wait_ms": 8000, "fallback": "route"}
    regions.config["discovery"]["health_check_interval"] = 1.0
    regions.config_path.write_text(json.dumps(regions.config), encoding="utf-8")
    return regions


def _start(regions: Regions) -> list[RegionProcess]:
    procs = [RegionProcess(regions, r, regions.store_url(r)) for r in regions.names]
    try:
        for proc in procs:
            proc.start()
    except BaseException:
        for proc in procs:
            proc.stop()
        raise
    return procs


@pytest.fixture(scope="module")
def causal_regions(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Regions]:
    """Three region processes started once for this module; every test uses keys of its
    own (``shared``)."""
    regions = _causal_regions(kafka_bootstrap, tmp_path_factory.mktemp("causal-reads"))
    procs = _start(regions)
    try:
        yield regions
    finally:
        for proc in procs:
            proc.stop()


@pytest.fixture
async def shared(
    causal_regions: Regions,
) -> AsyncIterator[tuple[Regions, str]]:
    """(the module's regions, a key prefix of this test's own); replication into every
    region runs again afterwards, whatever the test paused."""
    yield causal_regions, f"{uuid.uuid4().hex[:8]}:"
    client = RegionClient(causal_regions.edge_config())
    try:
        await asyncio.gather(
            *(client.pause_replication(region, False) for region in causal_regions.names)
        )
    finally:
        await client.close()


def _value(result: Any) -> str | None:
    if not result.exists:
        return None
    return str(result.value["v"])


async def _session(
    regions: Regions, name: str, rec: HistoryRecorder, until: float, rng: random.Random,
    stats: dict[str, int], keys: tuple[str, ...] = KEYS,
) -> None:
    async with EdgeBus(regions.config, client_id=name, discovery=False) as bus:
        i = 0
        while time.monotonic() < until:
            key, region = rng.choice(keys), rng.choice(regions.names)
            i += 1
            if rng.random() < 0.4:
                value = f"{name}-{i}"
                t0 = time.monotonic()
                receipt = await bus.write(key, {"v": value}, region=region, replication_factor=3)
                rec.write(name, key, value, receipt.region, receipt.placement, t0,
                          time.monotonic(), "causal")
            else:
                t0 = time.monotonic()
                result = await bus.read(key, region, consistency="causal")
                rec.read(name, key, _value(result), result.region, t0, time.monotonic(),
                         "causal")
                stats["reads"] += 1
                if result.waited_ms > 20:
                    stats["waited"] += 1
                if result.routed_from is not None:
                    stats["routed"] += 1
            await asyncio.sleep(rng.random() * 0.02)


async def _observer(
    regions: Regions, region: str, rec: HistoryRecorder, until: float, rng: random.Random,
    keys: tuple[str, ...] = KEYS,
) -> None:
    """Eventual reads in one region: what anyone there sees (visibility check)."""
    async with EdgeBus(regions.config, client_id=f"obs-{region}", discovery=False) as bus:
        while time.monotonic() < until:
            key = rng.choice(keys)
            t0 = time.monotonic()
            result = await bus.read(key, region, fallback="raise")
            rec.read(f"observer-{region}-{rng.random()}", key, _value(result), result.region,
                     t0, time.monotonic(), "eventual")


async def _disturb(regions: Regions, mode: str, until: float) -> None:
    """Pause replication into eu for 2.5 s (mode paused), or flap it (mode slowed)."""
    client = RegionClient(regions.edge_config())
    try:
        await asyncio.sleep(1.0)
        if mode == "paused":
            await client.pause_replication(regions.eu, True)
            await asyncio.sleep(2.5)
            await client.pause_replication(regions.eu, False)
        else:
            while time.monotonic() < until - 1:
                await client.pause_replication(regions.ap, True)
                await asyncio.sleep(0.4)
                await client.pause_replication(regions.ap, False)
                await asyncio.sleep(0.2)
    finally:
        for region in (regions.eu, regions.ap):
            await client.pause_replication(region, False)
        await client.close()


@pytest.mark.parametrize("mode", ["paused", "slowed"])
async def test_concurrent_sessions_see_no_causal_anomaly_while_replication_is_disturbed(
    shared: tuple[Regions, str], mode: str
) -> None:
    regions, prefix = shared
    keys = tuple(prefix + k for k in KEYS)
    rec = HistoryRecorder()
    rng = random.Random(f"{mode}-{regions.us}")
    stats = {"reads": 0, "waited": 0, "routed": 0}
    until = time.monotonic() + 7.0
    await asyncio.gather(
        *(_session(regions, f"s{n}", rec, until, random.Random(rng.random()), stats,
                   keys)
          for n in range(4)),
        *(_observer(regions, r, rec, until, random.Random(rng.random()), keys)
          for r in regions.names),
        _disturb(regions, mode, until),
    )
    anomalies = check_causal(rec.ops)
    assert not anomalies, summarize(anomalies)
    writes = sum(1 for op in rec.ops if op.kind == "write")
    assert writes >= 20 and stats["reads"] >= 20, (writes, stats)
    # the disturbance mattered: some causal reads had to wait for a frontier
    assert stats["waited"] + stats["routed"] > 0, stats


async def test_chat_replies_never_appear_before_the_message_they_answer_in_any_region(
    kafka_bootstrap: str, shared: tuple[Regions, str]
) -> None:
    """The spec's chat thread: Ann posts in us; Bob reads it in eu and replies there.
    Replication from us into ap is paused meanwhile, so eu pushes the replies into ap
    before us pushes the messages they answer. Observers in every region read reply
    then message; a visible reply must find its message."""
    regions, prefix = shared
    client = RegionClient(regions.edge_config())
    try:
        rec = HistoryRecorder()
        threads = 12
        async with (
            EdgeBus(regions.config, client_id="ann", discovery=False) as ann,
            EdgeBus(regions.config, client_id="bob", discovery=False) as bob,
        ):
            await client.pause_replication(regions.ap, True, origins=[regions.us])
            for t in range(threads):
                msg, reply = f"{prefix}thread:{t}:msg", f"{prefix}thread:{t}:reply"
                t0 = time.monotonic()
                w = await ann.write(msg, {"v": f"m{t}", "message": "Hello"}, region=regions.us,
                                    consistency="causal", replication_factor=3)
                rec.write("ann", msg, f"m{t}", w.region, w.placement, t0, time.monotonic())
                t0 = time.monotonic()
                seen = await bob.read(msg, regions.eu, consistency="causal",
                                      session=w.session_token)
                rec.read("bob", msg, _value(seen), seen.region, t0, time.monotonic(), "causal")
                assert seen.exists and seen.region == regions.eu
                t0 = time.monotonic()
                r = await bob.write(reply, {"v": f"r{t}", "reply_to": msg}, region=regions.eu,
                                    consistency="causal", replication_factor=3)
                rec.write("bob", reply, f"r{t}", r.region, r.placement, t0, time.monotonic())

            stop = asyncio.Event()

            async def observe(region: str) -> None:
                async with EdgeBus(regions.config, client_id=f"o-{region}",
                                   discovery=False) as bus:
                    n = 0
                    while not stop.is_set():
                        for t in range(threads):
                            for key in (f"{prefix}thread:{t}:reply", f"{prefix}thread:{t}:msg"):
                                t0 = time.monotonic()
                                got = await bus.read(key, region, fallback="raise")
                                n += 1
                                rec.read(f"o-{region}-{n}", key, _value(got), got.region, t0,
                                         time.monotonic())

            watchers = [asyncio.ensure_future(observe(r)) for r in regions.names]
            await asyncio.sleep(0.5)
            await client.pause_replication(regions.ap, False, origins=[regions.us])
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # until ap shows every reply
                rows = [await bob.read(f"{prefix}thread:{t}:reply", regions.ap, fallback="raise")
                        for t in range(threads)]
                if all(row.exists for row in rows):
                    break
                await asyncio.sleep(0.2)
            await asyncio.sleep(0.5)
            stop.set()
            await asyncio.gather(*watchers)
        anomalies = check_causal(rec.ops)
        assert not anomalies, summarize(anomalies)
        # every reply reached ap, and there ap's topic holds a reply copied before its
        # message: the hazard was real, the causal gate kept it invisible
        ap_reads = [op for op in rec.ops if op.region == regions.ap and op.value]
        assert {op.value for op in ap_reads} >= {f"r{t}" for t in range(threads)}
        order = [
            r.key.decode()
            for r in await read_to_end(KAFKA, kafka_bootstrap, events_topic(regions.ap))
            if not is_watermark(r)
        ]
        assert any(
            order.index(f"{prefix}thread:{t}:reply") < order.index(f"{prefix}thread:{t}:msg")
            for t in range(threads)
        ), "no reply was copied into ap before its message: the test did not race"
    finally:
        await client.close()


async def test_a_causal_read_that_no_region_covers_in_time_raises_saying_what_is_missing(
    shared: tuple[Regions, str],
) -> None:
    regions, prefix = shared
    doc = f"{prefix}doc"
    client = RegionClient(regions.edge_config())
    try:
        async with EdgeBus(regions.config, discovery=False) as bus:
            await client.pause_replication(regions.eu, True)
            receipt = await bus.write(doc, {"v": "1"}, region=regions.us,
                                      replication_factor=3)
            with pytest.raises(SessionNotCovered) as caught:
                await bus.read(doc, regions.eu, consistency="causal", wait_ms=500,
                               fallback="raise")
            assert f"{regions.us}:{receipt.partition}" in caught.value.missing
            assert "fallback='route'" in str(caught.value)
            routed = await bus.read(doc, regions.eu, consistency="causal", wait_ms=300)
            assert routed.routed_from == regions.eu and routed.region != regions.eu
            assert routed.value == {"v": "1"}
            # another process's token: a fresh bus reading with it sees the write too
            async with EdgeBus(regions.config, discovery=False) as other:
                await client.pause_replication(regions.eu, False)
                seen = await other.read(doc, regions.eu, consistency="causal",
                                        session=receipt.session_token)
                assert seen.region == regions.eu and seen.value == {"v": "1"}
                assert seen.session.clock.covers(receipt.position)
    finally:
        await client.close()
