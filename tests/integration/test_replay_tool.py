"""``edgebus replay`` and ``edgebus verify`` against a region that really ran.

One region service (embedded) applies two batches of writes, some written in that
region and some replicated into it from another; the live store is snapshotted between
them. A replay to the time (or the positions) of the snapshot rebuilds exactly that
snapshot, a full replay rebuilds the final store, and verify tells a faithful store
from a tampered one.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from connectors import by_url, path_of
from edgebus.kafka.reading import read_to_end
from edgebus.kafka.topics import events_topic
from edgebus.sdk import EdgeBus, WriteReceipt
from edgebus.server.service import RegionService
from tests.integration.regions import Regions, eventually, make_regions, store_rows
from tests.kafka_settings import KAFKA

Rows = dict[str, tuple[bool, Any, int]]


@dataclass
class History:
    """A region's store as it stood between two batches and at the end."""

    regions: Regions
    region: str
    live: str  #: the live store's URL (the service has stopped)
    mid_rows: Rows  #: the live store after batch A
    mid_time_ms: int  #: a time after batch A and before batch B
    mid_positions: dict[int, int]  #: the live store's positions after batch A
    final_rows: Rows
    final_positions: dict[int, int]


async def store_positions(url: str, topic: str) -> dict[int, int]:
    async with by_url(url) as store:
        return {p: o for (t, p), o in (await store.positions()).items() if t == topic}


async def all_applied(url: str, region: str, receipts: Sequence[WriteReceipt]) -> bool:
    """Whether the store at ``url`` holds every receipt's event (own or replicated)."""
    async with by_url(url) as store:
        positions = await store.positions()
        frontier = await store.frontier()
    topic = events_topic(region)
    return all(
        positions.get((topic, r.partition), 0) > r.offset
        if r.region == region
        else frontier.get((r.region, r.partition), -1) >= r.offset
        for r in receipts
    )


async def batch(bus: EdgeBus, us: str, eu: str, round_: str) -> list[WriteReceipt]:
    """Sets, increments, appends, merges and deletes on the same keys; some written in
    ``eu`` with a placement that includes ``us`` (they reach us by replication)."""
    local = {"region": us, "replication_factor": 1}
    both = {"region": eu, "replication_factor": 2, "preferred_locations": [us]}
    writes: list[tuple[str, Any, dict[str, Any]]] = [
        ("lww", f"{round_}-1", local),
        ("lww", f"{round_}-2", both),
        ("counter", 1, {**local, "operation": "increment"}),
        ("counter", 5, {**both, "operation": "increment"}),
        ("counter", -2, {**local, "operation": "increment"}),
        ("list", f"{round_}-x", {**local, "operation": "append"}),
        ("list", f"{round_}-y", {**both, "operation": "append"}),
        ("doc", {round_: True}, {**both, "operation": "merge"}),
        ("gone", round_, local),
        ("gone", None, {**local, "operation": "delete"}),
        (f"only-in-{round_}", [round_], local),
    ]
    receipts = []
    for key, data, options in writes:
        receipt = await bus.write(key, data, **options)
        assert us in receipt.placement, receipt
        receipts.append(receipt)
    return receipts


@pytest.fixture(scope="module")
async def history(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[History]:
    regions = make_regions(kafka_bootstrap, tmp_path_factory.mktemp("replay"))
    us, eu = regions.us, regions.eu
    live = regions.store_url(us)
    topic = events_topic(us)
    async with (
        RegionService(us, regions.edge_config(), store=live, serve=False),
        # eu's service pushes eu's writes placed in us too
        RegionService(eu, regions.edge_config(), store=regions.store_url(eu), serve=False),
        EdgeBus(regions.config) as bus,
    ):
        first = await batch(bus, us, eu, "a")
        await eventually(lambda: all_applied(live, us, first), 60, "batch A to be applied")
        mid_rows = await store_rows(live)  # beside the running service (WAL)
        mid_positions = await store_positions(live, topic)
        # record timestamps of batch A are before mid_time_ms, those of batch B after
        await asyncio.sleep(0.03)
        mid_time_ms = int(time.time() * 1000)
        await asyncio.sleep(0.03)
        second = await batch(bus, us, eu, "b")
        await eventually(lambda: all_applied(live, us, second), 60, "batch B to be applied")
    final_rows = await store_rows(live)
    assert final_rows != mid_rows
    assert mid_rows["gone"][0] is False and mid_rows["counter"][1] == 4
    yield History(
        regions,
        us,
        live,
        mid_rows,
        mid_time_ms,
        mid_positions,
        final_rows,
        await store_positions(live, topic),
    )


def new_store(history: History, name: str) -> str:
    return f"sqlite://{history.regions.tmp / name}"


async def test_replay_to_a_point_in_time_equals_the_live_state_as_of_that_time(
    history: History,
) -> None:
    by_time = new_store(history, "until-time.db")
    code, summary, out = history.regions.cli(
        "replay",
        "--region",
        history.region,
        "--to",
        by_time,
        "--until",
        str(history.mid_time_ms),
    )
    assert code == 0, out
    assert await store_rows(by_time) == history.mid_rows
    # Replay stops each partition at its first record stamped after mid_time (else at
    # its end), as Kafka's offsets_for_times finds it. The region service's heartbeats
    # go on meanwhile, so that cut can lie past the live store's positions read a
    # moment before mid_time (by watermarks only: the rows are the same).
    cut: dict[int, int] = {}
    later: set[int] = set()
    bootstrap = history.regions.config["kafka"]["bootstrap"]
    for record in await read_to_end(KAFKA, bootstrap, events_topic(history.region)):
        if record.partition in later:
            continue
        if record.timestamp > history.mid_time_ms:
            later.add(record.partition)
        cut[record.partition] = record.offset + (record.timestamp <= history.mid_time_ms)
    replayed = {int(p): o for p, o in summary["positions"].items()}
    assert {p: o for p, o in replayed.items() if o} == {p: o for p, o in cut.items() if o}
    assert all(replayed[p] >= o for p, o in history.mid_positions.items())

    by_offsets = new_store(history, "until-offsets.db")
    offsets = ",".join(f"{p}:{o}" for p, o in sorted(history.mid_positions.items()))
    code, _, out = history.regions.cli(
        "replay",
        "--region",
        history.region,
        "--to",
        by_offsets,
        "--until-offsets",
        offsets,
    )
    assert code == 0, out
    assert await store_rows(by_offsets) == history.mid_rows

    full = new_store(history, "full.db")
    code, summary, out = history.regions.cli("replay", "--region", history.region, "--to", full)
    assert code == 0, out
    assert await store_rows(full) == history.final_rows
    assert {int(p): o for p, o in summary["positions"].items()} == history.final_positions


async def test_replay_of_one_key_rebuilds_that_key_alone(history: History) -> None:
    one = new_store(history, "one-key.db")
    code, _, out = history.regions.cli(
        "replay", "--region", history.region, "--to", one, "--key", "counter"
    )
    assert code == 0, out
    assert await store_rows(one) == {"counter": history.final_rows["counter"]}


async def test_a_jsonl_export_holds_the_same_rows_as_a_sqlite_replay(history: History) -> None:
    sqlite_url = new_store(history, "export.db")
    jsonl_url = f"jsonl://{history.regions.tmp / 'export.jsonl'}"
    for url in (sqlite_url, jsonl_url):
        code, _, out = history.regions.cli("replay", "--region", history.region, "--to", url)
        assert code == 0, out
    assert path_of(jsonl_url).stat().st_size > 0
    exported = await store_rows(jsonl_url)
    assert exported == await store_rows(sqlite_url)
    assert exported == history.final_rows


async def test_verify_accepts_the_live_store_and_names_a_tampered_key(history: History) -> None:
    code, report, out = history.regions.cli(
        "verify", "--region", history.region, "--store", history.live
    )
    assert code == 0, out
    assert report["ok"] is True and report["differences"] == []

    tampered = history.regions.tmp / "tampered.db"
    with sqlite3.connect(path_of(history.live)) as src, sqlite3.connect(tampered) as dst:
        src.backup(dst)
    with sqlite3.connect(tampered) as db:
        changed = db.execute(
            "UPDATE key_states SET value = ? WHERE key = ?", ('"tampered"', "lww")
        ).rowcount
    assert changed == 1
    code, report, out = history.regions.cli(
        "verify", "--region", history.region, "--store", f"sqlite://{tampered}"
    )
    assert code == 1, out
    assert report["ok"] is False
    assert [d["key"] for d in report["differences"]] == ["lww"], report


async def test_replay_refuses_a_bad_url_and_a_store_that_holds_state_with_exit_2(
    history: History,
) -> None:
    for bad in ("postgres://db/edgebus", f"sqlite://somehost{history.regions.tmp}/x.db"):
        code, result, out = history.regions.cli("replay", "--region", history.region, "--to", bad)
        assert code == 2, (bad, out)
        assert result["ok"] is False and "Use one of" in result["message"], result

    used = new_store(history, "used.db")
    code, _, out = history.regions.cli("replay", "--region", history.region, "--to", used)
    assert code == 0, out
    before = await store_rows(used)
    code, result, out = history.regions.cli("replay", "--region", history.region, "--to", used)
    assert result["ok"] is False and "Choose a new path" in result["message"], result
    assert await store_rows(used) == before
    assert code == 2, out
