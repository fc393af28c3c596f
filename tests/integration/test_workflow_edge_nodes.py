"""EdgeDataNode and EdgeStateMachine in a workflow on real Kafka (issue 7).

Three region services run in this process (their own region names, see
:func:`make_regions`: participants of strong writes, hosts of states, materializers);
``LocalRuntime(edge_config).execute_async`` runs one workflow twice on the test's loop:

* a PII write (``{"email": ...}``) lands in the GDPR region only: the placement says so;
* a strong write commits (two-phase commit through the bus's embedded coordinator);
* an EdgeStateMachine increment, connected after the strong write, counts the runs;
* a causal read of the PII key (connected to the PII write: its result names the key)
  sees the value; a replicate waits until every region applied it; a sync repairs
  another region from its peers, then reads it causally there.

Then a third workflow writes PII with ``compliance_zones=["hipaa"]``, which has nowhere
to go: the run stops at that node with WorkflowExecutionError (cause
ComplianceViolation), the node after it not run.

Deadlines are generous (a loaded machine); outcomes are asserted, never durations.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from edgebus.errors import ComplianceViolation
from edgebus.workflow import (
    EdgeInfrastructure,
    LocalRuntime,
    Workflow,
    WorkflowBuilder,
    WorkflowExecutionError,
)
from tests.integration.regions import make_regions


def workflow(tag: str, eu: str, ap: str) -> Workflow:
    builder = WorkflowBuilder()
    builder.add_node("EdgeDataNode", "gdpr_store", {
        "action": "write",
        "key": f"{tag}:user",
        "data": {"email": "ann@example.com"},
    })
    builder.add_node("EdgeDataNode", "critical_data", {
        "action": "write",
        "consistency": "strong",
        "key": f"{tag}:account",
        "data": {"balance": 1000},
    })
    builder.add_node("EdgeStateMachine", "runs", {
        "state_id": f"{tag}:runs",
        "operation": "increment",
        "key": "count",
    })
    builder.add_node("EdgeDataNode", "reader", {
        "action": "read",
        "consistency": "causal",
        "location_id": eu,
    })
    builder.add_node("EdgeDataNode", "global_data", {
        "action": "replicate",
        "key": f"{tag}:news",
        "replication_factor": 3,
        "data": {"content": "global_update"},
    })
    builder.add_node("EdgeDataNode", "synced", {
        "action": "sync",
        "location_id": ap,
    })
    builder.add_connection("critical_data", "result", "runs", "input")
    builder.add_connection("gdpr_store", "result", "reader", "input")
    builder.add_connection("global_data", "result", "synced", "input")
    builder.add_connection("global_data", "session_token", "synced", "session_token")
    return builder.build()


def misplaced(tag: str) -> Workflow:
    """PII may live in GDPR regions only, which the HIPAA zone does not include."""
    builder = WorkflowBuilder()
    builder.add_node("Passthrough", "first", {})
    builder.add_node("EdgeDataNode", "phi_store", {
        "key": f"{tag}:refused",
        "compliance_zones": ["hipaa"],
        "data": {"email": "ann@example.com"},
    })
    builder.add_node("EdgeDataNode", "after", {"action": "read"})
    builder.add_connection("phi_store", "result", "after", "input")
    return builder.build()


async def test_a_workflow_of_edge_nodes_places_commits_counts_and_reads(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    regions = make_regions(kafka_bootstrap, tmp_path)
    config: dict[str, Any] = {
        **regions.config,
        "strong": {"timeout_ms": 30_000, "read_wait_ms": 30_000},
        "state": {"stagger_ms": 100, "timeout_ms": 30_000},
        "reads": {"wait_ms": 30_000},
    }
    tag = uuid.uuid4().hex[:8]
    flow = workflow(tag, regions.eu, regions.ap)
    assert set(flow.edge_node_ids) == set(flow.node_ids)
    runtime = LocalRuntime(config)
    try:
        async with regions.services(config):
            first, _ = await runtime.execute_async(flow)
            second, _ = await runtime.execute_async(flow)
            with pytest.raises(WorkflowExecutionError) as refused:
                await runtime.execute_async(misplaced(tag))
    finally:
        await EdgeInfrastructure.close_all()

    for results in (first, second):
        pii = results["gdpr_store"]["result"]
        assert pii["success"] is True
        assert (pii["key"], pii["region"], pii["placement"]) == (
            f"{tag}:user", regions.eu, [regions.eu])
        assert "pii" in pii["classification"]
        assert pii["replicas"] == {regions.eu: "written"}
        assert results["gdpr_store"]["session_token"] == pii["session_token"]

        strong = results["critical_data"]["result"]
        assert (strong["success"], strong["committed"], strong["outcome"]) == (
            True, True, "committed"), strong
        assert strong["key"] == f"{tag}:account"
        assert set(strong["placement"]) <= set(regions.names)

        read = results["reader"]["result"]
        assert read["success"] is True
        assert (read["key"], read["region"], read["exists"], read["value"]) == (
            f"{tag}:user", regions.eu, True, {"email": "ann@example.com"})
        assert read["consistency"] == "causal"

        news = results["global_data"]["result"]
        assert news["success"] is True
        assert set(news["placement"]) == set(regions.names)
        assert news["replication"] == {r: "completed" for r in news["placement"]}

        synced = results["synced"]["result"]
        assert (synced["key"], synced["region"], synced["value"]) == (
            f"{tag}:news", regions.ap, {"content": "global_update"})
        # the sync repaired ap from its peers first: nothing placed there is missing
        assert synced["success"] is True and synced["sync"]["ok"] is True, synced["sync"]
        assert synced["sync"]["region"] == regions.ap
        assert {o["origin"] for o in synced["sync"]["origins"]} == {regions.us, regions.eu}

    error = refused.value
    assert isinstance(error.cause, ComplianceViolation), error
    assert (error.node_id, error.type_name) == ("phi_store", "EdgeDataNode")
    assert list(error.results) == ["first"] and error.not_run == ("after",)

    one, two = first["runs"]["result"], second["runs"]["result"]
    assert (one["success"], one["ok"], one["operation"], one["value"]) == (
        True, True, "increment", 1), one
    assert (two["success"], two["value"], two["state_id"]) == (True, 2, f"{tag}:runs"), two
    assert two["version"] > one["version"]
    assert second["critical_data"]["result"]["version"] == first["critical_data"]["result"][
        "version"] + 1
