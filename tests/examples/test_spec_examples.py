"""Every code example of the spec ``edge-computing-workflowbuilder.md`` on real Kafka.

Each test is named after the spec section of its code block and runs the block's
code verbatim except import paths (``kailash.workflow.builder``,
``kailash.runtime.local`` and ``kailash.nodes.edge.base`` -> ``edgebus.workflow``;
``dataflow`` -> ``edgebus.dataflow``; loggers ``kailash.*`` -> ``edgebus.*``), then
asserts on its results. What each test adds around the code (the test broker merged
into the example's edge_config, the run of a fragment, run-time data for writes that
name none) is listed in docs/spec-examples.md.

One deployment serves every test (see conftest.py): region services of us-east-1,
eu-west-1 and ap-south-1 in this process. Outcomes are asserted, never durations.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

import edgebus.workflow
from edgebus.errors import ComplianceViolation, InfrastructureUnavailable
from edgebus.workflow import (
    EdgeInfrastructure,
    EdgeNode,
    LocalRuntime,
    Node,
    WorkflowBuilder,
    WorkflowExecutionError,
    register_node,
)
from edgebus.workflow import registry as registry_module
from tests.examples.conftest import REGIONS, Deployment

GDPR = {"eu-west-1", "eu-central-1"}
SOX = {"us-east-1", "eu-west-1"}


async def run(
    workflow: WorkflowBuilder,
    edge_config: Any,
    parameters: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, dict[str, Any]]:
    """The embedding of a fragment: ``LocalRuntime(edge_config).execute_async(...)``."""
    results, run_id = await LocalRuntime(edge_config).execute_async(workflow.build(), parameters)
    assert run_id
    return results


@register_node("SpecExampleInfraProbe")
class InfraProbe(EdgeNode):
    """Test-only edge node: returns the infrastructure the runtime injected."""

    async def async_run(self, **inputs: Any) -> Mapping[str, Any]:
        return {"result": self.infrastructure}


# -- Quick Start -----------------------------------------------------------------------


async def test_quick_start(deployment: Deployment) -> None:
    def quick_start() -> tuple[dict[str, Any], dict[str, dict[str, Any]], str]:
        from edgebus.workflow import WorkflowBuilder  # noqa: I001 - the spec's own two imports
        from edgebus.workflow import LocalRuntime

        # Configure edge infrastructure
        edge_config = {
            "discovery": {
                "locations": ["us-east-1", "eu-west-1", "ap-south-1"],
                "refresh_interval": 300
            },
            "compliance": {
                "strict_mode": True,
                "default_classification": "pii"
            }
        }

        # Create workflow with edge support
        workflow = WorkflowBuilder()
        # Edge config passed to runtime

        # Add edge nodes - infrastructure is automatically injected
        workflow.add_node("EdgeDataNode", "writer", {
            "location_id": "us-east-1",
            "action": "write",
            "consistency": "strong"
        })

        workflow.add_node("EdgeStateMachine", "state", {
            "state_id": "user_session_123",
            "operation": "set"
        })

        # Execute workflow
        runtime = LocalRuntime()
        results, run_id = runtime.execute(workflow.build())
        return edge_config, results, run_id

    # added: the block blocks (runtime.execute), so it runs on a thread while this
    # loop keeps serving the in-process region services
    edge_config, results, run_id = await asyncio.to_thread(quick_start)

    # the block defines edge_config but runs zero-config (its comment says the config
    # is passed to the runtime); the broker comes from EDGEBUS_BOOTSTRAP
    assert edge_config["compliance"]["strict_mode"] is True
    assert run_id
    written = results["writer"]["result"]
    assert written["success"] is True and written["committed"] is True
    assert written["placement"][0] == "us-east-1"  # the node's location is the home
    state = results["state"]["result"]
    assert state["success"] is True and state["state_id"] == "user_session_123"
    assert state["operation"] == "set" and state["value"] == {}


# -- Architecture ----------------------------------------------------------------------


async def test_architecture_edge_infrastructure_singleton(deployment: Deployment) -> None:
    edge_config = deployment.config({
        "discovery": {"locations": ["us-east-1", "eu-west-1", "ap-south-1"]},
    })
    # Automatically created and managed by WorkflowBuilder
    edge_infrastructure = EdgeInfrastructure(edge_config)

    # Provides shared services: discovery, the compliance router, one Kafka producer
    try:
        await edge_infrastructure.start()
        assert edge_infrastructure.started
        assert edge_infrastructure.config.regions == ("us-east-1", "eu-west-1", "ap-south-1")
        assert edge_infrastructure.discovery is not None
        assert edge_infrastructure.rules.allowed_regions(
            edge_infrastructure.config.regions, ["pii"]) == ("eu-west-1",)
        written = await edge_infrastructure.bus.write("spec:singleton", {"n": 1})
        assert written.placement
        # what the runtime uses is the shared one: one per distinct config
        assert EdgeInfrastructure.shared(edge_config) is EdgeInfrastructure.shared(
            dict(edge_config))
    finally:
        await edge_infrastructure.close()



async def test_architecture_automatic_edge_detection(deployment: Deployment) -> None:
    @register_node("MyCustomEdgeNode")
    class MyCustomEdgeNode(Node):
        def run(self, **inputs: Any) -> Mapping[str, Any]:
            return {"result": "custom"}

    @register_node("DataProcessor")
    class DataProcessor(Node):
        def run(self, **inputs: Any) -> Mapping[str, Any]:
            return {"result": "processed"}

    workflow = WorkflowBuilder()
    # These are automatically detected as edge nodes:
    # (the block's "..." arguments are filled with node ids)
    workflow.add_node("EdgeDataNode", "data", {"action": "write"})      # ✅ Contains "Edge"
    workflow.add_node("EdgeStateMachine", "state", {"state_id": "detected"})  # ✅ Contains "Edge"
    workflow.add_node("MyCustomEdgeNode", "custom", {})  # ✅ Contains "Edge"
    workflow.add_node("DataProcessor", "processor", {})     # ❌ Not an edge node

    flow = workflow.build()
    assert set(flow.edge_node_ids) == {"data", "state", "custom"}
    results = await run(workflow, deployment.config(), {"data": {"input": {"n": 1}}})
    assert results["data"]["result"]["success"] is True
    assert results["state"]["result"]["success"] is True
    assert results["custom"]["result"] == "custom"
    assert results["processor"]["result"] == "processed"


# -- Edge Node Types -------------------------------------------------------------------


async def test_edge_node_types_edge_data_node(deployment: Deployment) -> None:
    workflow = WorkflowBuilder()
    workflow.add_node("EdgeDataNode", "data_store", {
        "action": "write",              # write|read|replicate|sync
        "consistency": "eventual",      # strong|eventual|causal|bounded_staleness
        "replication_factor": 3,
        "conflict_resolution": "last_write_wins"
    })
    results = await run(workflow, deployment.config(), {"data_store": {"input": {"n": 1}}})
    written = results["data_store"]["result"]
    assert written["success"] is True
    assert written["key"] == "data_store"
    assert set(written["placement"]) == set(REGIONS)
    assert results["data_store"]["session_token"] == written["session_token"]


async def test_edge_node_types_edge_state_machine(deployment: Deployment) -> None:
    workflow = WorkflowBuilder()
    workflow.add_node("EdgeStateMachine", "user_state", {
        "state_id": "session_xyz",      # Globally unique ID
        "operation": "set",             # get|set|update|delete|increment|append|lock|unlock
        "enable_persistence": True,
        "enable_replication": True
    })
    # added: the value to set (the block sets none), as run-time input
    results = await run(workflow, deployment.config(), {"user_state": {"input": {"user": "ann"}}})
    state = results["user_state"]["result"]
    assert (state["success"], state["ok"], state["outcome"]) == (True, True, "ok"), state
    assert (state["state_id"], state["operation"]) == ("session_xyz", "set")
    assert state["host"].split("/")[0] in REGIONS  # "<region>/<host id>"


async def test_edge_node_types_edge_node_base(deployment: Deployment) -> None:
    from edgebus.workflow import EdgeNode

    # the spec's block uses register_node without importing it: imported above
    @register_node()
    class CustomEdgeProcessor(EdgeNode):
        async def async_run(self, **kwargs):
            # Your edge logic here
            await self.ensure_compliance(kwargs.get("data"))
            return {"processed": True}

    workflow = WorkflowBuilder()
    workflow.add_node("CustomEdgeProcessor", "custom", {})
    assert list(workflow.build().edge_node_ids) == ["custom"]  # an EdgeNode subclass
    results = await run(workflow, deployment.config())
    assert results["custom"] == {"processed": True}


# -- Compliance and Data Routing -------------------------------------------------------


async def test_compliance_automatic_compliance_checking(deployment: Deployment) -> None:
    edge_config = {
        "compliance": {
            "strict_mode": True,
            "zones": {
                "gdpr": ["eu-west-1", "eu-central-1"],
                "hipaa": ["us-east-1", "us-west-2"],
                "sox": ["us-east-1", "eu-west-1"]
            },
            "data_classifications": {
                "pii": ["gdpr"],
                "phi": ["hipaa"],
                "financial": ["sox"]
            }
        }
    }

    workflow = WorkflowBuilder()
    # Edge config passed to runtime

    # Data is automatically routed to compliant edges
    workflow.add_node("EdgeDataNode", "gdpr_store", {
        "action": "write",
        "data": {"email": "user@example.com"},  # Classified as PII
        # Automatically routes to GDPR-compliant edges only
    })

    results = await run(workflow, deployment.config(edge_config))
    written = results["gdpr_store"]["result"]
    assert written["success"] is True
    assert "pii" in written["classification"]
    # eu-central-1 is a GDPR region but not one of the (default) discovered locations
    assert written["placement"] == ["eu-west-1"]
    assert set(written["placement"]) <= GDPR
    assert written["replicas"] == {"eu-west-1": "written"}


async def test_compliance_edge_selection_strategies(deployment: Deployment) -> None:
    workflow = WorkflowBuilder()
    workflow.add_node("EdgeDataNode", "optimized_store", {
        "edge_strategy": "lowest_latency",  # lowest_latency|balanced|compliance_first
        "preferred_locations": ["us-east-1", "us-west-2"],
        "exclude_locations": ["ap-south-1"]
    })
    results = await run(
        workflow, deployment.config(), {"optimized_store": {"input": {"n": 1}}}
    )
    written = results["optimized_store"]["result"]
    assert written["success"] is True
    assert written["region"] == "us-east-1"  # the first preferred location that exists
    assert "ap-south-1" not in written["placement"]


# -- Consistency Models ----------------------------------------------------------------


async def test_consistency_strong_2pc(deployment: Deployment) -> None:
    workflow = WorkflowBuilder()
    workflow.add_node("EdgeDataNode", "critical_data", {
        "action": "write",
        "consistency": "strong",  # Uses two-phase commit
        "data": {"balance": 1000}
    })
    results = await run(workflow, deployment.config())
    commit = results["critical_data"]["result"]
    assert (commit["success"], commit["committed"], commit["outcome"]) == (
        True, True, "committed"), commit
    assert commit["key"] == "critical_data"
    assert set(commit["placement"]) <= set(REGIONS)


async def test_consistency_eventual(deployment: Deployment) -> None:
    workflow = WorkflowBuilder()
    workflow.add_node("EdgeDataNode", "analytics_data", {
        "action": "write",
        "consistency": "eventual",  # Async replication
        "data": {"event": "page_view"}
    })
    results = await run(workflow, deployment.config())
    written = results["analytics_data"]["result"]
    assert written["success"] is True
    assert written["key"] == "analytics_data"
    assert set(written["replicas"]) == set(written["placement"])
    assert set(written["replicas"].values()) <= {"written", "pending"}


async def test_consistency_causal(deployment: Deployment) -> None:
    workflow = WorkflowBuilder()
    workflow.add_node("EdgeDataNode", "chat_messages", {
        "action": "write",
        "consistency": "causal",  # Preserves causality
        "data": {"message": "Hello", "thread_id": "123"}
    })
    # added: a causal read of what the example wrote, in the region it was written to
    workflow.add_node("EdgeDataNode", "reader", {"action": "read", "consistency": "causal"})
    workflow.add_connection("chat_messages", "result", "reader", "input")
    workflow.add_connection("chat_messages", "session_token", "reader", "session_token")
    results = await run(workflow, deployment.config())
    written = results["chat_messages"]["result"]
    assert written["success"] is True
    read = results["reader"]["result"]
    assert (read["success"], read["key"], read["exists"]) == (True, "chat_messages", True)
    assert read["value"] == {"message": "Hello", "thread_id": "123"}
    assert read["consistency"] == "causal"


async def test_consistency_bounded_staleness(deployment: Deployment) -> None:
    workflow = WorkflowBuilder()
    workflow.add_node("EdgeDataNode", "cache_data", {
        "action": "read",
        "consistency": "bounded_staleness",
        "staleness_threshold_ms": 5000  # Max 5 seconds stale
    })
    results = await run(workflow, deployment.config())
    read = results["cache_data"]["result"]
    assert (read["success"], read["key"]) == (True, "cache_data")
    assert read["consistency"] == "bounded_staleness"
    assert read["region"] in REGIONS
    assert read["staleness_ms"] is not None and read["staleness_ms"] <= 5000


# -- Advanced Patterns -----------------------------------------------------------------


async def test_advanced_multi_region_replication(deployment: Deployment) -> None:
    # Configure multi-region setup
    edge_config = {
        "discovery": {
            "locations": ["us-east-1", "eu-west-1", "ap-southeast-1"],
            "health_check_interval": 60
        },
        "replication": {
            "strategy": "multi_region",
            "min_regions": 2
        }
    }

    workflow = WorkflowBuilder()
    # Edge config passed to runtime

    # Data automatically replicated across regions
    workflow.add_node("EdgeDataNode", "global_data", {
        "action": "write",
        "replication_factor": 3,
        "data": {"content": "global_update"}
    })

    results = await run(workflow, deployment.config(edge_config))
    written = results["global_data"]["result"]
    assert written["success"] is True
    assert set(written["placement"]) == {"us-east-1", "eu-west-1", "ap-southeast-1"}
    assert set(written["replicas"]) == set(written["placement"])


async def test_advanced_edge_state_migration(deployment: Deployment) -> None:
    workflow = WorkflowBuilder()
    # Stateful edge computations that can migrate
    workflow.add_node("EdgeStateMachine", "migratable_state", {
        "state_id": "compute_task_123",
        "operation": "set",
        "lease_duration_ms": 30000,  # 30 second lease
        "enable_migration": True
    })

    # State automatically migrates to optimal edge based on access patterns
    # added: the value to set (the block sets none), as run-time input
    results = await run(
        workflow, deployment.config(), {"migratable_state": {"input": {"step": 1}}}
    )
    state = results["migratable_state"]["result"]
    assert (state["success"], state["ok"]) == (True, True), state
    assert (state["state_id"], state["operation"]) == ("compute_task_123", "set")
    assert state["host"].split("/")[0] in REGIONS  # "<region>/<host id>"


async def test_advanced_compliance_aware_workflows(deployment: Deployment) -> None:
    workflow = WorkflowBuilder()
    # Process PII in GDPR regions only
    workflow.add_node("EdgeDataNode", "eu_processor", {
        "action": "write",
        "compliance_zones": ["gdpr"],
        "data": {"user_id": "eu_user_123"}
    })

    # Process financial data in SOX-compliant regions
    workflow.add_node("EdgeDataNode", "financial_processor", {
        "action": "write",
        "compliance_zones": ["sox"],
        "data": {"transaction": "payment_456"}
    })

    # Connect with compliance-aware routing
    workflow.add_connection("eu_processor", "result", "financial_processor", "input")

    results = await run(workflow, deployment.config())
    eu = results["eu_processor"]["result"]
    assert eu["success"] is True
    assert eu["placement"] and set(eu["placement"]) <= GDPR
    financial = results["financial_processor"]["result"]
    assert financial["success"] is True
    assert financial["placement"] and set(financial["placement"]) <= SOX
    # it wrote its own transaction (not the upstream result), keeping the upstream's
    # classes: placed where both may live
    assert financial["key"] == "financial_processor"
    assert set(eu["classification"]) - {"public"} <= set(financial["classification"])


# -- Integration with DataFlow ---------------------------------------------------------


@pytest.fixture
def free_user_profile_names() -> Iterator[None]:
    """Node type names are process-wide and tests/unit/test_dataflow.py declares a
    UserProfile too: its five node types are set aside while the example declares its
    own, and put back after."""
    names = [f"UserProfile{op}Node" for op in ("Create", "Read", "Update", "Delete", "List")]
    table = registry_module._registry
    saved = {n: table.pop(n) for n in names if n in table}
    try:
        yield
    finally:
        for n in names:
            table.pop(n, None)
        table.update(saved)


async def test_integration_with_dataflow(
    deployment: Deployment, free_user_profile_names: None
) -> None:
    from edgebus.dataflow import DataFlow
    from edgebus.workflow import WorkflowBuilder

    db = DataFlow()

    @db.model
    class UserProfile:
        user_id: str
        region: str
        preferences: dict

    # Edge-aware workflow
    edge_config = {
        "discovery": {"locations": ["us-east-1", "eu-west-1"]},
        "dataflow_integration": True  # Enable DataFlow hooks
    }

    workflow = WorkflowBuilder()
    # Edge config passed to runtime

    # DataFlow operations automatically use edge infrastructure
    workflow.add_node("UserProfileCreateNode", "create_user", {
        "model": "UserProfile",
        "data": {"user_id": "123", "region": "eu"}
        # Automatically routes to EU edge for GDPR compliance
    })

    results = await run(workflow, deployment.config(edge_config))
    created = results["create_user"]["result"]
    assert created["success"] is True
    assert (created["key"], created["placement"]) == ("UserProfile:123", ["eu-west-1"])
    assert created["record"] == {"user_id": "123", "region": "eu", "preferences": {}}


# -- Monitoring and Observability ------------------------------------------------------


async def test_monitoring_and_observability(deployment: Deployment) -> None:
    # Enable edge monitoring
    edge_config = {
        "monitoring": {
            "metrics_enabled": True,
            "trace_enabled": True,
            "health_check_interval": 30
        }
    }

    workflow = WorkflowBuilder()
    # Edge config passed to runtime

    # added: a write before the monitor, so that there is an operation to measure
    workflow.add_node("EdgeDataNode", "store", {"action": "write", "data": {"n": 1}})

    # Add monitoring node
    workflow.add_node("EdgeMonitoringNode", "monitor", {
        "metrics": ["latency", "throughput", "error_rate"],
        "alert_thresholds": {
            "latency_p99_ms": 100,
            "error_rate": 0.01
        }
    })

    workflow.add_connection("store", "result", "monitor", "input")
    results = await run(workflow, deployment.config(edge_config))
    report = results["monitor"]["result"]
    metrics = report["metrics"]
    assert set(metrics) == {"latency", "throughput", "error_rate"}
    assert metrics["latency"]["count"] >= 1
    assert metrics["throughput"]["count"] >= 1
    assert (metrics["error_rate"]["error_rate"], metrics["error_rate"]["errors"]) == (0.0, 0)
    for alert in report["alerts"]:  # latency depends on the machine; its shape does not
        assert set(alert) >= {"metric", "threshold", "value", "message"}
        assert alert["metric"] == "latency_p99_ms"
        assert (alert["threshold"], alert["value"]) == (100, metrics["latency"]["p99_ms"])
        assert alert["value"] > 100
    assert report["healthy"] is (not report["alerts"])
    assert report["source"]["metrics_enabled"] is True


# -- Best Practices --------------------------------------------------------------------


async def test_best_practices_resource_efficiency(deployment: Deployment) -> None:
    # Share infrastructure across workflows
    edge_config = {"discovery": {"locations": ["us-east-1"]}}

    # Multiple workflows share the same EdgeInfrastructure
    workflow1 = WorkflowBuilder()
    workflow2 = WorkflowBuilder()  # Reuses infrastructure via runtime

    edge_config = deployment.config(edge_config)
    workflow1.add_node("SpecExampleInfraProbe", "probe", {})
    workflow2.add_node("SpecExampleInfraProbe", "probe", {})
    first = await run(workflow1, edge_config)
    second = await run(workflow2, dict(edge_config))
    infra = first["probe"]["result"]
    assert isinstance(infra, EdgeInfrastructure)
    assert second["probe"]["result"] is infra
    assert EdgeInfrastructure.shared(edge_config) is infra
    assert infra.started
    assert infra.config.regions == ("us-east-1",)


async def test_best_practices_graceful_degradation(deployment: Deployment) -> None:
    workflow = WorkflowBuilder()
    workflow.add_node("EdgeDataNode", "resilient_store", {
        "action": "write",
        "fallback_strategy": "any_available",  # Write to any edge if preferred fails
        "min_replicas": 1  # Degrade to 1 replica if needed
    })
    results = await run(
        workflow, deployment.config(), {"resilient_store": {"input": {"n": 1}}}
    )
    written = results["resilient_store"]["result"]
    assert written["success"] is True
    assert len(written["placement"]) >= 1 and written["region"] in REGIONS


async def test_best_practices_zero_config(deployment: Deployment) -> None:
    # Works without explicit edge_config
    workflow = WorkflowBuilder()  # No edge_config

    # Edge nodes still work with defaults
    workflow.add_node("EdgeDataNode", "auto_edge", {
        "action": "write"
        # Uses default edge discovery and routing
    })

    # no edge_config at all: the broker comes from EDGEBUS_BOOTSTRAP
    results, _ = await LocalRuntime().execute_async(
        workflow.build(), {"auto_edge": {"input": {"n": 1}}}
    )
    written = results["auto_edge"]["result"]
    assert written["success"] is True
    assert written["region"] in REGIONS and set(written["placement"]) <= set(REGIONS)


# -- Troubleshooting -------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_troubleshooting_no_edge_infrastructure_available(deployment: Deployment) -> None:
    edge_config = {
        "discovery": {"locations": ["us-east-1"]},
        "kafka": {"bootstrap": f"127.0.0.1:{_closed_port()}", "connect_timeout_s": 2},
    }
    workflow = WorkflowBuilder()
    workflow.add_node("EdgeDataNode", "store", {"action": "write", "data": {"n": 1}})
    try:
        with pytest.raises(InfrastructureUnavailable) as raised:
            await LocalRuntime(edge_config).execute_async(workflow.build())
    finally:
        await EdgeInfrastructure.shared(edge_config).close()
    assert str(raised.value).startswith("No edge infrastructure available")
    # the run's error shape: also a WorkflowExecutionError, of no node (nothing ran)
    assert isinstance(raised.value, WorkflowExecutionError)
    assert raised.value.node_id is None and raised.value.results == {}

    # the advice as written: "Ensure edge_config is passed to WorkflowBuilder"
    advised = WorkflowBuilder(edge_config)
    advised.add_node("EdgeDataNode", "store", {"action": "write", "data": {"n": 1}})
    try:
        with pytest.raises(InfrastructureUnavailable) as again:
            await LocalRuntime().execute_async(advised.build())  # runs with the workflow's
    finally:
        await EdgeInfrastructure.shared(edge_config).close()
    assert str(again.value).startswith("No edge infrastructure available")


async def test_troubleshooting_compliance_violation(deployment: Deployment) -> None:
    edge_config = deployment.config({"compliance": {"strict_mode": True}})
    workflow = WorkflowBuilder()
    workflow.add_node("EdgeDataNode", "store", {
        "action": "write", "location_id": "us-east-1", "data": {"email": "user@example.com"},
    })
    with pytest.raises(WorkflowExecutionError) as raised:
        await run(workflow, edge_config)
    assert isinstance(raised.value, ComplianceViolation)  # `except ComplianceViolation` works
    cause = raised.value.cause
    assert isinstance(cause, ComplianceViolation)
    assert str(cause).startswith("Compliance violation: cannot place data")
    assert raised.value.node_id == "store"


async def test_troubleshooting_debug_mode(
    deployment: Deployment, caplog: pytest.LogCaptureFixture
) -> None:
    # added: capture both loggers (caplog restores their levels after the test)
    caplog.set_level(10, logger="edgebus.workflow.edge_infrastructure")  # 10: DEBUG
    caplog.set_level(10, logger="edgebus.edge")

    import logging

    # Enable debug logging
    logging.getLogger("edgebus.workflow.edge_infrastructure").setLevel(logging.DEBUG)
    logging.getLogger("edgebus.edge").setLevel(logging.DEBUG)

    # Create workflow with debug info
    workflow = WorkflowBuilder()
    edge_config = {
        "debug": True,
        "discovery": {"locations": ["us-east-1"]}
    }

    # added: a write, run with the block's config and the test broker
    workflow.add_node("EdgeDataNode", "store", {"action": "write", "data": {"n": 1}})
    results = await run(workflow, deployment.config(edge_config))
    assert results["store"]["result"]["success"] is True
    infra = [r for r in caplog.records if r.name == "edgebus.workflow.edge_infrastructure"]
    edge = [r for r in caplog.records if r.name.startswith("edgebus.edge")]
    assert any(r.levelno == logging.DEBUG for r in infra), [r.getMessage() for r in infra]
    assert any(r.levelno == logging.DEBUG and "placed" in r.getMessage() for r in edge)


# -- Migration Guide -------------------------------------------------------------------


async def test_migration_guide_from_manual_edge_management(deployment: Deployment) -> None:
    # "Before" (EdgeDiscovery(config), ComplianceRouter(zones), EdgeDataNode(discovery=,
    # router=)) describes an API that does not exist; the "After" form runs.
    edge_config = deployment.config()
    params = {"action": "write", "data": {"migrated": True}}

    # Automatic with WorkflowBuilder
    workflow = WorkflowBuilder()
    # Edge config passed to runtime
    workflow.add_node("EdgeDataNode", "node_id", params)
    # Infrastructure automatically injected!

    results = await run(workflow, edge_config)
    assert results["node_id"]["result"]["success"] is True
    assert results["node_id"]["result"]["key"] == "node_id"


async def test_migration_guide_from_separate_edge_workflow_builder(
    deployment: Deployment,
) -> None:
    # "Before" is commented-out code of a builder that no longer exists
    assert not hasattr(edgebus.workflow, "EdgeWorkflowBuilder")

    # Integrated into main WorkflowBuilder
    workflow = WorkflowBuilder()
    # Edge config passed to runtime
    # Same API, better integration!

    workflow.add_node("EdgeDataNode", "store", {"action": "write", "data": {"n": 1}})
    results = await run(workflow, deployment.config())
    assert results["store"]["result"]["success"] is True
