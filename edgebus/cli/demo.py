"""``edgebus demo``: the quick start, end to end, on a local Kafka it starts itself."""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import typer
from rich.panel import Panel
from rich.table import Table

from edgebus.bus import EdgeBus, WriteReceipt
from edgebus.cli._output import console, fail, json_mode
from edgebus.config import EdgeConfig
from edgebus.errors import ComplianceViolation, EdgebusError
from edgebus.kafka import launcher
from edgebus.kafka.reading import read_to_end
from edgebus.kafka.topics import events_topic
from edgebus.region.service import RegionService
from edgebus.wire.event_codec import decode_event
from edgebus.wire.headers import H_ORIGIN_POS
from edgebus.wire.watermark import is_watermark

__all__ = ["demo"]


def demo(
    ctx: typer.Context,
    keep_kafka: bool = typer.Option(
        False, "--keep-kafka", help="Leave the Kafka this demo started running."
    ),
) -> None:
    """Start Kafka (one cluster per region), write across regions, show where data landed."""
    as_json = json_mode(ctx)
    # aiokafka logs (and retries) the moments a freshly created topic has no leader or
    # group coordinator yet; in a demo they are noise, and real failures still raise
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    started_here = False
    try:
        report = launcher.status()
        if report.healthy:
            console.print(f"Using the running local Kafka: {report.message}")
        else:
            console.rule("1. Local Kafka: three single-node KRaft clusters, one per region")
            began = time.monotonic()
            result = launcher.up(clusters=3)
            started_here = result.started
            for cluster in result.state.clusters:
                regions = ", ".join(result.state.regions_of(cluster.index))
                console.print(f"  cluster {cluster.index}: {cluster.bootstrap}  <- {regions}")
            console.print(f"  ready in {time.monotonic() - began:.1f} s")
        asyncio.run(_tour())
    except EdgebusError as e:
        raise fail(as_json, e) from None
    finally:
        if started_here and not keep_kafka:
            launcher.down(wipe=True)
            console.print("Stopped the Kafka this demo started (edgebus kafka down --wipe).")


async def _tour() -> None:
    run = uuid.uuid4().hex[:6]
    config = EdgeConfig()  # zero-config: the README lists what it means
    async with EdgeBus(config, client_id=f"demo-{run}") as bus:
        console.rule("2. Writes: each is classified, placed by compliance, then appended")
        receipts: list[tuple[str, WriteReceipt]] = []

        async def write(label: str, key: str, data: Any, **options: Any) -> WriteReceipt:
            receipt = await bus.write(f"demo-{run}:{key}", data, **options)
            receipts.append((label, receipt))
            return receipt

        await write("page view (public)", "pageview:1", {"event": "page_view"}, region="us-east-1")
        await write("page view (public)", "pageview:2", {"event": "page_view"}, region="ap-south-1")
        await write("PII, no location given", "user:ann", {"email": "ann@example.com"})
        await write("PHI", "patient:7", {"patient_name": "Bob", "diagnosis": "influenza"})
        await write("financial (IBAN)", "acct:9", {"iban": "GB82WEST12345698765432", "amount": 120})
        hello = await write(
            "chat message", "thread:123:1", {"message": "Hello", "thread_id": "123"},
            region="ap-south-1",
        )
        await write("reply (causal)", "thread:123:2", {"message": "Hi!", "thread_id": "123"},
                    region="us-east-1", consistency="causal", session=hello.session_token)
        table = Table("write", "key", "class", "placement (home first)", "topic@partition:offset")
        for label, r in receipts:
            table.add_row(label, r.key.split(":", 1)[1], ",".join(r.classification),
                          ", ".join(r.placement), f"{r.topic}@{r.partition}:{r.offset}")
        console.print(table)

        refused_key = f"demo-{run}:user:ann-us"
        try:
            await bus.write(refused_key, {"email": "ann@example.com"}, region="us-east-1")
            raise EdgebusError("strict mode accepted PII in us-east-1: this is a bug")
        except ComplianceViolation as e:
            console.print(Panel(str(e), title="PII written from us-east-1: refused in strict mode",
                                border_style="red"))

        console.rule("3. Region services materialize and replicate; reads per region")
        with tempfile.TemporaryDirectory(prefix="edgebus-demo-") as tmp:
            services = [
                RegionService(region, config, store=f"sqlite://{Path(tmp) / region}.db")
                for region in config.regions
            ]
            for service in services:
                await service.start()
            try:
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    reads = {
                        (r.key, region): await bus.read(r.key, region)
                        for _, r in receipts for region in config.regions
                    }
                    if all(reads[(r.key, p)].exists for _, r in receipts for p in r.placement):
                        break
                    await asyncio.sleep(0.2)
                grid = Table("key", *config.regions, title="bus.read(key, region)")
                for _, r in receipts:
                    grid.add_row(r.key.split(":", 1)[1], *(
                        json.dumps(reads[(r.key, region)].value)
                        if reads[(r.key, region)].exists else "[dim]-[/]"
                        for region in config.regions
                    ))
                console.print(grid)
                console.print(
                    "Each value is in exactly the regions of its placement: copied there by "
                    "the region services' replicators, materialized into SQLite, and nowhere "
                    "else."
                )
                await _strong(bus, run, config.regions)
                await _state_machine(bus, run, config.regions)
            finally:
                for service in services:
                    await service.stop()

        console.rule("4. What each region's topic holds (read back from Kafka, decoded)")
        found_refused = 0
        for region in config.regions:
            records = await read_to_end(bus.clusters[region], events_topic(region))
            mine = [
                r for r in records
                if not is_watermark(r) and r.key and r.key.decode().startswith(f"demo-{run}:")
            ]
            found_refused += sum(1 for r in records if r.key == refused_key.encode())
            console.print(f"[bold]{events_topic(region)}[/] ({len(mine)} events of this demo)")
            for record in mine:
                event = decode_event(record.value)
                copied = dict(record.headers or ()).get(H_ORIGIN_POS)
                source = f"copy of {copied.decode()}" if copied else "written here"
                deps = event.dependencies.to_json()
                console.print(
                    f"  {event.key.split(':', 1)[1]:<14} {json.dumps(event.payload):<60} "
                    f"class={','.join(event.classification):<10} "
                    f"deps={deps if deps else '{}'} ({source})",
                    highlight=False, soft_wrap=True,
                )
        console.print(
            f"The refused write exists in {found_refused} topics "
            "(strict mode wrote nothing anywhere)."
        )
        console.print(
            "An event is written to its origin region's topic; the replicators copy it to "
            "the other regions of its placement (with an eb-origin-pos header), and no other."
        )


async def _strong(bus: EdgeBus, run: str, regions: tuple[str, ...]) -> None:
    """Section 3b: a strong write (two-phase commit), a lost compare-and-set, strong reads."""
    console.rule("3b. Strong consistency: two-phase commit on the saga log")
    key = f"demo-{run}:account:1"
    first = await bus.write(key, {"balance": 1000}, consistency="strong")
    console.print(
        f"write {{'balance': 1000}} consistency=strong -> {first.outcome} in "
        f"{', '.join(first.placement)} (version {first.version}, txn {first.txn_id[:8]}, "
        f"decided by {first.decided_by})", highlight=False,
    )
    stale = await bus.commit(key, {"balance": 0}, expected_version=0)
    console.print(f"compare-and-set expecting version 0 -> {stale.outcome}: {stale.reason}",
                  highlight=False)
    moved = await bus.commit(key, {"balance": 900}, expected_version=first.version)
    console.print(f"compare-and-set expecting version {first.version} -> {moved.outcome}",
                  highlight=False)
    for region in regions:
        r = await bus.read(key, region, consistency="strong")
        where = "" if r.region == region else f" (not placed there: served by {r.region})"
        console.print(f"  strong read asked in {region}: {json.dumps(r.value)} "
                      f"(version {r.version}){where}", highlight=False)
    console.print("Every region of the placement applied each commit, or none did; "
                  "`edgebus saga list` shows the votes and decisions.")


async def _state_machine(bus: EdgeBus, run: str, regions: tuple[str, ...]) -> None:
    """Section 3c: a state machine (durable object): one owner, calls from every region."""
    console.rule("3c. State machines: one owner per state, calls forwarded to it")
    state_id = f"demo-{run}:cart"
    results = await asyncio.gather(*(
        bus.state(state_id, "increment", key="items", region=region)
        for region in regions for _ in range(3)
    ))
    owner = results[0]
    console.print(
        f"{len(results)} concurrent increments from {', '.join(regions)} -> owner "
        f"{owner.region} (epoch {owner.epoch}); totals returned: "
        f"{sorted(r.value for r in results)}", highlight=False,
    )
    lock = await bus.state(state_id, "lock", lock_name="checkout", holder="worker-1",
                           lease_duration_ms=5000)
    busy = await bus.state(state_id, "lock", lock_name="checkout", holder="worker-2",
                           timeout_ms=300)
    console.print(f"lock by worker-1 -> {lock.outcome}; lock by worker-2 while held -> "
                  f"{busy.outcome} (held by {busy.value['holder']})", highlight=False)
    await bus.state(state_id, "unlock", lock_name="checkout", holder="worker-1")
    profile = await bus.state(f"demo-{run}:profile", "set", key="email",
                              value="ann@example.com", classification="pii",
                              region=regions[0])
    console.print(f"a pii state called from {regions[0]} is owned in {profile.region} "
                  f"(forwarded: {profile.forwarded}, {profile.forward_ms:.0f} ms)",
                  highlight=False)
    final = await bus.state(state_id, "get")
    console.print(f"state {state_id.split(':', 1)[1]} = {json.dumps(final.value)} (version "
                  f"{final.version}); `edgebus state get {state_id}` shows owner, lease "
                  "and locks", highlight=False)
