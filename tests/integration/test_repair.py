"""``edgebus repair`` and ``EdgeBus.sync`` on real Kafka (issue 19): regions whose
replication was paused while writes happened are repaired from their peers; then every
key reads back there once, their frontiers cover what the origins held, ``edgebus
verify`` is clean and their checksums equal their peers'; once replication resumes, the
replicators' second copies are dropped, never applied twice.

Three in-process region services (their own region names, see :func:`make_regions`).
Replication into eu and into ap is paused; 10 keys are written in us and 10 in ap (two
writers, so that no write depends on another region's), each placed in all three
regions. eu lacks all 20, ap lacks us's 10 (us has all 20: nothing into us is paused).
eu is repaired with the CLI (over the query endpoints, as an operator runs it), ap with
the SDK (the services called in-process).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp

from edgebus import EdgeBus
from edgebus.kafka.clusters import resolve_clusters
from edgebus.kafka.reading import end_offsets, read_to_end
from edgebus.kafka.topics import events_topic
from edgebus.sdk.region_client import RegionClient
from edgebus.wire.headers import H_ORIGIN, H_ORIGIN_POS
from tests.integration.regions import Regions, eventually, make_regions

KEYS_PER_ORIGIN = 10


def _regions(bootstrap: str, tmp_path: Path) -> Regions:
    regions = make_regions(bootstrap, tmp_path)
    regions.config["replication"] = {"watermark_interval_ms": 200}
    regions.config_path.write_text(json.dumps(regions.config), encoding="utf-8")
    return regions


async def _values(client: RegionClient, region: str, keys: list[str]) -> dict[str, Any]:
    """key -> (exists, value, version) in ``region``."""
    rows = [await client.read(k, region) for k in keys]
    return {r["key"]: (r["exists"], r["value"], r["version"]) for r in rows}


async def _write(regions: Regions, origin: str, tag: str) -> dict[str, dict[str, int]]:
    """KEYS_PER_ORIGIN keys written in ``origin`` (a writer of its own), placed in every
    region: key -> value."""
    written: dict[str, dict[str, int]] = {}
    async with EdgeBus(regions.config, discovery=False) as bus:
        for i in range(KEYS_PER_ORIGIN):
            key = f"{tag}:{origin}:{i}"
            receipt = await bus.write(key, {"n": i}, region=origin, replication_factor=3)
            assert set(receipt.placement) == set(regions.names)
            written[key] = {"n": i}
    return written


async def _post_repair(url: str, body: bytes) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.post(
        url + "/v1/repair", data=body, headers={"Content-Type": "application/json"}
    ) as response:
        return response.status, await response.json()


async def _origin_heads(regions: Regions, origin: str, ends: dict[str, int]) -> dict[str, int]:
    """Per partition, the offset of the last record of ``origin``'s own stream (its
    events and heartbeats, not copies of other regions') below ``ends``: what a
    repaired region's frontier must cover."""
    kafka = regions.edge_config().kafka
    heads: dict[str, int] = {}
    for record in await read_to_end(kafka, _bootstrap(regions, origin), events_topic(origin)):
        headers = dict(record.headers or ())
        own = headers.get(H_ORIGIN) == origin.encode() and H_ORIGIN_POS not in headers
        if own and record.offset < ends.get(str(record.partition), 0):
            heads[f"{origin}:{record.partition}"] = record.offset
    return heads


async def _duplicates(client: RegionClient, region: str) -> int:
    return int((await client.status(region))["materializer"]["duplicates"])


async def _ends(regions: Regions, origin: str) -> dict[int, int]:
    """The end offset of each partition of ``origin``'s topic now."""
    found = await end_offsets(regions.edge_config().kafka, _bootstrap(regions, origin),
                              [events_topic(origin)])
    return {tp.partition: end for tp, end in found.items()}


def _bootstrap(regions: Regions, region: str) -> str:
    return resolve_clusters(regions.edge_config())[region]


async def test_a_paused_region_is_repaired_from_its_peers_and_nothing_applies_twice(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    regions = _regions(kafka_bootstrap, tmp_path)
    us, eu, ap = regions.names
    tag = regions.us.split("-")[0]
    client = RegionClient(regions.edge_config())
    try:
        async with regions.services(regions.config):
            await client.pause_replication(eu, True)
            await client.pause_replication(ap, True)
            written = {**await _write(regions, us, tag), **await _write(regions, ap, tag)}
            keys = sorted(written)
            expected = {k: (True, v, 1) for k, v in written.items()}
            ours = [k for k in keys if f":{us}:" in k]

            async def us_has_all() -> bool:
                return await _values(client, us, keys) == expected

            await eventually(us_has_all, 60, "every key applied in us")
            await asyncio.sleep(1.0)  # what replication would have brought by now
            assert {v[0] for v in (await _values(client, eu, keys)).values()} == {False}
            assert {v[0] for k, v in (await _values(client, ap, ours)).items()} == {False}

            # hostile or wrong requests are refused and change nothing
            url = await client.endpoint(us)
            for body, says in [
                (b'{"into": "nowhere", "from": {"0": 0}}', "another configured region"),
                (f'{{"into": "{eu}", "from": {{"9": 0}}}}'.encode(), "does not exist"),
                (f'{{"into": "{eu}", "from": {{"0": -5}}}}'.encode(), "out of range"),
                (f'{{"into": "{eu}", "from": {{"0": 0}}, "x": 1}}'.encode(), "holds x"),
            ]:
                status, answer = await _post_repair(url, body)
                assert status == 400 and says in answer["error"], (status, answer)
            assert {v[0] for v in (await _values(client, eu, keys)).values()} == {False}

            # eu: the CLI, over the query endpoints
            code, report, out = await asyncio.to_thread(
                regions.cli, "repair", "--region", eu, "--timeout", "120")
            assert code == 0 and report["ok"] is True, out
            by_origin = {o["origin"]: o for o in report["origins"]}
            assert set(by_origin) == {us, ap}
            for origin in (us, ap):
                copy = by_origin[origin]["copy"]
                assert by_origin[origin]["complete"] and copy["copied"] >= KEYS_PER_ORIGIN
                heads = await _origin_heads(regions, origin, copy["ends"])
                after = report["frontier_after"]
                assert heads and all(after[s] >= o for s, o in heads.items()), (heads, after)
            assert await _values(client, eu, keys) == expected
            assert [(c["peer"], c["same"]) for c in report["checksums"]] == [
                (us, True), (ap, False)]  # ap still lacks us's keys: repaired next

            # ap: the SDK
            async with EdgeBus(regions.config, discovery=False) as bus:
                synced = await bus.sync(ap, timeout_s=120)
            assert synced.ok, synced.to_dict()
            assert {o.origin: o.answered for o in synced.origins} == {us: True, eu: True}
            assert await _values(client, ap, keys) == expected
            assert [(c.peer, c.same) for c in synced.checksums] == [(us, True), (eu, True)]

            for region in (eu, ap):
                code, verified, out = await asyncio.to_thread(
                    regions.cli, "verify", "--region", region)
                assert code == 0 and verified["ok"] is True, out

            # replication resumes: the replicators copy the same events again, and the
            # repaired regions drop every second copy
            before = {r: await _duplicates(client, r) for r in (eu, ap)}
            await client.pause_replication(eu, False)
            await client.pause_replication(ap, False)
            ends = {o: await _ends(regions, o) for o in (us, ap)}

            async def copied_again_past_the_ends() -> bool:
                # a stream's frontier passes its origin's end only once every earlier
                # copy of the resumed replicator (the second copies) was read
                for region, origins in ((eu, (us, ap)), (ap, (us,))):
                    frontier = (await client.status(region))["frontier"]
                    if any(frontier.get(f"{o}:{p}", -1) < end
                           for o in origins for p, end in ends[o].items()):
                        return False
                return True

            await eventually(copied_again_past_the_ends, 60, "the resumed replicators")
            assert await _duplicates(client, eu) - before[eu] >= 2 * KEYS_PER_ORIGIN
            assert await _duplicates(client, ap) - before[ap] >= KEYS_PER_ORIGIN
            for region in regions.names:
                assert await _values(client, region, keys) == expected, region
            sums = [await client.checksums(r) for r in regions.names]
            assert sums[0]["buckets"] == sums[1]["buckets"] == sums[2]["buckets"]
    finally:
        await client.close()
