"""The workflows ``edgebus demo`` runs (the quick start's sections as WorkflowBuilder
graphs) and a one-line description of what each node did."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from edgebus.workflow import Workflow, WorkflowBuilder, processing_node

__all__ = ["describe", "quick_start", "refused", "saga"]


@processing_node("demo_payment_gateway")
def _payment_gateway(input: Any = None) -> Any:
    """The demo's failing step: a payment provider that declines."""
    raise RuntimeError("the payment provider declined the card")


def quick_start(run: str) -> Workflow:
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


def refused(run: str) -> Workflow:
    """PII written from us-east-1, where strict mode may not put it (section 4)."""
    b = WorkflowBuilder()
    b.add_node("EdgeDataNode", "us_signup", {
        "key": f"demo-{run}:user:ann-us", "data": {"email": "ann@example.com"},
        "location_id": "us-east-1"})
    return b.build()


def saga(run: str) -> Workflow:
    """A strong write, then a failing step: the runtime undoes the write (section 5)."""
    b = WorkflowBuilder()
    b.add_node("EdgeDataNode", "debit", {
        "action": "write", "consistency": "strong", "key": f"demo-{run}:account:1",
        "data": {"balance": 900}, "compensate": True})
    b.add_node("demo_payment_gateway", "charge_card", {})
    b.add_connection("debit", "result", "charge_card", "input")
    return b.build()


def describe(node_id: str, type_name: str, result: Mapping[str, Any]) -> str:
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
