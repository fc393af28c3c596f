"""The sections of ``edgebus demo`` after Kafka is up (2 to 6): region services, the
quick-start workflow, a refused placement, a compensated saga, a state machine, and
each region's topic read back."""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from rich.panel import Panel
from rich.table import Table

from edgebus.cli._demo_workflows import describe, quick_start, refused, saga
from edgebus.cli._output import console
from edgebus.config import EdgeConfig
from edgebus.errors import ComplianceViolation, EdgebusError
from edgebus.kafka.reading import read_to_end
from edgebus.kafka.topics import events_topic
from edgebus.sdk import EdgeBus
from edgebus.server.service import RegionService
from edgebus.wire.event_codec import decode_event
from edgebus.wire.headers import H_ORIGIN_POS
from edgebus.wire.watermark import is_watermark
from edgebus.workflow import EdgeInfrastructure, LocalRuntime, WorkflowExecutionError
from edgebus.workflow.compensation import CompensatedExecutionError

__all__ = ["tour"]


async def tour() -> None:
    """Sections 2 to 6, on the zero-config regions (Kafka must be up)."""
    run = uuid.uuid4().hex[:6]
    config = EdgeConfig()  # zero-config: the README lists what it means
    runtime = LocalRuntime(config)
    async with EdgeBus(config, client_id=f"demo-{run}") as bus:
        console.rule("2. Region services (one per region) and the strong-write coordinator")
        with tempfile.TemporaryDirectory(prefix="edgebus-demo-") as tmp:
            services = [
                RegionService(region, config, store=f"sqlite://{Path(tmp) / region}.db")
                for region in config.regions
            ]
            for service in services:
                await service.start()
            console.print(f"  {', '.join(config.regions)}: materialize into SQLite, replicate, "
                          "serve reads, take part in two-phase commits, host states; the "
                          "workflow's bus embeds the coordinator")
            try:
                await _workflows(runtime, run, config.regions, bus)
                await _state_machine(bus, run, config.regions)
            finally:
                await EdgeInfrastructure.close_all()
                for service in services:
                    await service.stop()
        await _topics(bus, run, config.regions)


async def _workflows(
    runtime: LocalRuntime, run: str, regions: tuple[str, ...], bus: EdgeBus
) -> None:
    """Sections 3-5: the quick-start workflow, a refused placement, a compensated saga."""
    results = await _quick_start(runtime, run)
    await _replicated(bus, results, regions)
    await _refused(runtime, run)
    await _saga(runtime, run, bus)


async def _quick_start(runtime: LocalRuntime, run: str) -> dict[str, Any]:
    """Section 3: the quick-start workflow, what each node did, its alerts and lag."""
    console.rule("3. The quick-start workflow (WorkflowBuilder -> LocalRuntime)")
    flow = quick_start(run)
    console.print("  " + " -> ".join(flow.node_ids), highlight=False)
    began = time.monotonic()
    results, run_id = await runtime.execute_async(flow)
    console.print(f"  ran {len(results)} nodes in {time.monotonic() - began:.1f} s "
                  f"(run {run_id[:8]})", highlight=False)
    table = Table("node", "type", "what happened")
    for spec in flow.nodes:
        table.add_row(spec.node_id, spec.type_name,
                      describe(spec.node_id, spec.type_name, results[spec.node_id]))
    console.print(table)
    monitor = results["monitor"]["result"]
    for alert in monitor["alerts"]:
        console.print(f"  [yellow]ALERT[/] {alert['message']}", highlight=False)
    lag = monitor["metrics"].get("replication_lag", {})
    console.print("  replication lag (worst staleness per region): " + ", ".join(
        f"{region} " + ("unknown" if row.get("staleness_ms") is None
                        else f"{row['staleness_ms']:.0f} ms")
        for region, row in lag.items()), highlight=False)
    out: dict[str, Any] = results
    return out


async def _replicated(bus: EdgeBus, results: dict[str, Any], regions: tuple[str, ...]) -> None:
    """Section 3, continued: each write read back in every region once replicated."""
    writes = [(n, results[n]["result"]) for n in ("page_view", "gdpr_store", "patient",
                                                  "chat_hello", "chat_reply")]
    deadline = time.monotonic() + 60
    reads: dict[tuple[str, str], Any] = {}
    while time.monotonic() < deadline:
        reads = {(r["key"], region): await bus.read(r["key"], region)
                 for _, r in writes for region in regions}
        if all(reads[(r["key"], p)].exists for _, r in writes for p in r["placement"]):
            break
        await asyncio.sleep(0.2)
    grid = Table("node", "key", *regions, title="bus.read(key, region) after replication")
    for node_id, r in writes:
        grid.add_row(node_id, r["key"].split(":", 1)[1], *(
            json.dumps(reads[(r["key"], region)].value)
            if reads[(r["key"], region)].exists else "[dim]-[/]" for region in regions
        ))
    console.print(grid)
    console.print("Each value is in exactly the regions of its placement: PII in the GDPR "
                  "region, PHI in the HIPAA one, public data everywhere.")


async def _refused(runtime: LocalRuntime, run: str) -> None:
    """Section 4: strict mode refuses to place PII in us-east-1."""
    console.rule("4. A refused placement: PII written from us-east-1 in strict mode")
    try:
        await runtime.execute_async(refused(run))
        raise EdgebusError("strict mode accepted PII in us-east-1: this is a bug")
    except WorkflowExecutionError as e:
        if not isinstance(e.cause, ComplianceViolation):
            raise
        console.print(Panel(str(e.cause), title=f"node {e.node_id!r} refused",
                            border_style="red"))


async def _saga(runtime: LocalRuntime, run: str, bus: EdgeBus) -> None:
    """Section 5: a strong write, then a failing step: the runtime undoes the write."""
    console.rule("5. A saga: a strong write, then a failing step; the write is undone")
    key = f"demo-{run}:account:1"
    try:
        await runtime.execute_async(saga(run))
        raise EdgebusError("the failing payment step did not fail: this is a bug")
    except CompensatedExecutionError as e:
        console.print(f"  {e.node_id} failed: {e.cause}", highlight=False)
        for c in e.compensations:
            console.print(f"  compensation {c.describe()}", highlight=False)
    after = await bus.read(key, consistency="strong")
    console.print(f"  strong read of account:1 -> {json.dumps(after.value)} "
                  f"(version {after.version})", highlight=False)


async def _state_machine(bus: EdgeBus, run: str, regions: tuple[str, ...]) -> None:
    """Section 5b: a state machine (durable object): one owner, calls from every region."""
    console.rule("5b. State machines (bus API): one owner per state, calls forwarded to it")
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


async def _topics(bus: EdgeBus, run: str, regions: tuple[str, ...]) -> None:
    """Section 6: every region's topic read back from Kafka, this demo's events decoded."""
    console.rule("6. What each region's topic holds (read back from Kafka, decoded)")
    refused_key = f"demo-{run}:user:ann-us"
    found_refused = 0
    for region in regions:
        records = await read_to_end(
            bus.config.kafka, bus.clusters[region], events_topic(region)
        )
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
        "An event is written to its origin region's topic; the origin's replicators push "
        "it to the other regions of its placement (with an eb-origin-pos header), and no "
        "other: no region ever receives what it may not hold. Strong writes are decided "
        "on the commit log (`edgebus saga list`), which holds no data."
    )
