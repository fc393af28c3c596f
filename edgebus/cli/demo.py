"""``edgebus demo``: the quick start, end to end, on a local Kafka it starts itself.

It starts (or reuses) a local Kafka with one cluster per region, starts a region
service per region in this process (the workflow's bus embeds the strong-write
coordinator), runs the quick-start workflow (WorkflowBuilder -> LocalRuntime: writes
placed by compliance, a strong write, a state machine, a causal chat thread, a
bounded-staleness read, monitoring with an alert), a one-node workflow whose PII
placement strict mode refuses, a saga whose strong write is compensated, then reads
every region's topic back, and stops what it started.
"""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import typer
from rich.panel import Panel
from rich.table import Table

from edgebus.cli._output import console, fail, json_mode
from edgebus.config import EdgeConfig
from edgebus.errors import ComplianceViolation, EdgebusError
from edgebus.kafka.reading import read_to_end
from edgebus.kafka.topics import events_topic
from edgebus.localkafka import launcher
from edgebus.sdk import EdgeBus
from edgebus.server.service import RegionService
from edgebus.wire.event_codec import decode_event
from edgebus.wire.headers import H_ORIGIN_POS
from edgebus.wire.watermark import is_watermark
from edgebus.workflow import (
    EdgeInfrastructure,
    LocalRuntime,
    Workflow,
    WorkflowBuilder,
    WorkflowExecutionError,
    processing_node,
)
from edgebus.workflow.compensation import CompensatedExecutionError

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


@processing_node("demo_payment_gateway")
def _payment_gateway(input: Any = None) -> Any:
    """The demo's failing step: a payment provider that declines."""
    raise RuntimeError("the payment provider declined the card")


def _quick_start(run: str) -> Workflow:
    """The spec's sections as one workflow (section 3)."""
    k = f"demo-{run}:"
    b = WorkflowBuilder()
    b.add_node("EdgeDataNode", "page_view", {
        "key": f"{k}pageview:1", "data": {"event": "page_view"}, "location_id": "us-east-1"})
    b.add_node("EdgeDataNode", "gdpr_store", {  # PII, no location: a GDPR region
        "key": f"{k}user:ann", "data": {"email": "ann@example.com"}})
    b.add_node("EdgeDataNode", "patient", {
        "key": f"{k}patient:7", "data": {"patient_name": "Bob", "diagnosis": "influenza"}})
    b.add_node("EdgeDataNode", "critical_data", {
        "action": "write", "consistency": "strong", "key": f"{k}account:1",
        "data": {"balance": 1000}, "compensate": True})
    b.add_node("EdgeStateMachine", "cart", {
        "state_id": f"{k}cart", "operation": "increment", "key": "items",
        "location_id": "ap-south-1"})
    b.add_node("EdgeDataNode", "chat_hello", {
        "key": f"{k}thread:123:1", "data": {"message": "Hello", "thread_id": "123"},
        "location_id": "ap-south-1"})
    b.add_node("EdgeDataNode", "chat_reply", {
        "key": f"{k}thread:123:2", "data": {"message": "Hi!", "thread_id": "123"},
        "location_id": "us-east-1", "consistency": "causal"})
    b.add_node("EdgeDataNode", "chat_read", {
        "action": "sync", "key": f"{k}thread:123:1", "location_id": "eu-west-1"})
    b.add_node("EdgeDataNode", "fresh_read", {
        "action": "read", "consistency": "bounded_staleness", "key": f"{k}pageview:1",
        "location_id": "ap-south-1", "staleness_threshold_ms": 5000})
    b.add_node("EdgeMonitoringNode", "monitor", {
        "window_s": 300,
        # 1 ms is far below what a two-phase commit takes: this threshold alerts
        "alert_thresholds": {"latency_p99_ms": 1, "error_rate": 0.5,
                             "replication_lag_ms": 60_000}})
    b.add_connection("chat_hello", "session_token", "chat_reply", "session_token")
    b.add_connection("chat_reply", "session_token", "chat_read", "session_token")
    b.add_connection("critical_data", "result", "cart", "input")
    b.add_connection("fresh_read", "result", "monitor", "input")
    return b.build()


def _refused(run: str) -> Workflow:
    """PII written from us-east-1, where strict mode may not put it (section 4)."""
    b = WorkflowBuilder()
    b.add_node("EdgeDataNode", "us_signup", {
        "key": f"demo-{run}:user:ann-us", "data": {"email": "ann@example.com"},
        "location_id": "us-east-1"})
    return b.build()


def _saga(run: str) -> Workflow:
    """A strong write, then a failing step: the runtime undoes the write (section 5)."""
    b = WorkflowBuilder()
    b.add_node("EdgeDataNode", "debit", {
        "action": "write", "consistency": "strong", "key": f"demo-{run}:account:1",
        "data": {"balance": 900}, "compensate": True})
    b.add_node("demo_payment_gateway", "charge_card", {})
    b.add_connection("debit", "result", "charge_card", "input")
    return b.build()


def _describe(node_id: str, type_name: str, result: Mapping[str, Any]) -> str:
    r = dict(result.get("result") or {})
    short = str(r.get("key", "")).split(":", 1)[-1]
    if type_name == "EdgeStateMachine":
        field = f".{r['key']}" if r.get("key") else ""
        return (f"state {str(r.get('state_id')).split(':', 1)[-1]}{field} "
                f"{r.get('operation')} -> {json.dumps(r.get('value'))} "
                f"(owner {r.get('region')})")
    if type_name == "EdgeMonitoringNode":
        alerts = "; ".join(a["message"] for a in r.get("alerts", [])) or "none"
        lat = r.get("metrics", {}).get("latency", {})
        thr = r.get("metrics", {}).get("throughput", {})
        return (f"{lat.get('count')} ops, p99 {lat.get('p99_ms') or 0:.1f} ms, "
                f"{thr.get('ops_per_s') or 0:.1f} ops/s; alerts: {alerts}")
    if "txn_id" in r:
        return (f"{short} {r.get('outcome')} in {', '.join(r.get('placement', []))} "
                f"(version {r.get('version')}, decided by {r.get('decided_by')})")
    if "exists" in r:
        fresh = r.get("staleness_ms")
        fresh_s = "" if fresh is None else f", at most {fresh:.0f} ms old"
        routed = f", routed from {r['routed_from']}" if r.get("routed_from") else ""
        return (f"{short} read {r.get('consistency')} in {r.get('region')}: "
                f"{json.dumps(r.get('value'))}{fresh_s}{routed}")
    return (f"{short} -> {', '.join(r.get('placement', []))} "
            f"(class {','.join(r.get('classification', []))})")


async def _tour() -> None:
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

        console.rule("6. What each region's topic holds (read back from Kafka, decoded)")
        refused_key = f"demo-{run}:user:ann-us"
        found_refused = 0
        for region in config.regions:
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
            "An event is written to its origin region's topic; the replicators copy it to "
            "the other regions of its placement (with an eb-origin-pos header), and no other. "
            "Strong writes are decided on the saga log (`edgebus saga list`)."
        )


async def _workflows(
    runtime: LocalRuntime, run: str, regions: tuple[str, ...], bus: EdgeBus
) -> None:
    """Sections 3-5: the quick-start workflow, a refused placement, a compensated saga."""
    console.rule("3. The quick-start workflow (WorkflowBuilder -> LocalRuntime)")
    flow = _quick_start(run)
    console.print("  " + " -> ".join(flow.node_ids), highlight=False)
    began = time.monotonic()
    results, run_id = await runtime.execute_async(flow)
    console.print(f"  ran {len(results)} nodes in {time.monotonic() - began:.1f} s "
                  f"(run {run_id[:8]})", highlight=False)
    table = Table("node", "type", "what happened")
    for spec in flow.nodes:
        table.add_row(spec.node_id, spec.type_name,
                      _describe(spec.node_id, spec.type_name, results[spec.node_id]))
    console.print(table)
    monitor = results["monitor"]["result"]
    for alert in monitor["alerts"]:
        console.print(f"  [yellow]ALERT[/] {alert['message']}", highlight=False)
    lag = monitor["metrics"].get("replication_lag", {})
    console.print("  replication lag (worst staleness per region): " + ", ".join(
        f"{region} " + ("unknown" if row.get("staleness_ms") is None
                        else f"{row['staleness_ms']:.0f} ms")
        for region, row in lag.items()), highlight=False)

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

    console.rule("4. A refused placement: PII written from us-east-1 in strict mode")
    try:
        await runtime.execute_async(_refused(run))
        raise EdgebusError("strict mode accepted PII in us-east-1: this is a bug")
    except WorkflowExecutionError as e:
        if not isinstance(e.cause, ComplianceViolation):
            raise
        console.print(Panel(str(e.cause), title=f"node {e.node_id!r} refused",
                            border_style="red"))

    console.rule("5. A saga: a strong write, then a failing step; the write is undone")
    key = f"demo-{run}:account:1"
    try:
        await runtime.execute_async(_saga(run))
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
