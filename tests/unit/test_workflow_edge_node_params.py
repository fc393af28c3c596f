"""EdgeDataNode and EdgeStateMachine params: build() accepts every snippet of the spec
(../shared/spec/edge-computing-workflowbuilder.md) that uses them, and refuses bad
values with a message naming the node, its type and the field."""

from __future__ import annotations

from typing import Any

import pytest

from edgebus.workflow import (
    EdgeDataNode,
    EdgeStateMachine,
    WorkflowBuilder,
    WorkflowValidationError,
    is_edge_node,
    node_class,
)
from edgebus.workflow.nodes import EdgeDataParams, EdgeStateParams

#: every EdgeDataNode snippet of the spec, verbatim
SPEC_DATA_NODES: list[tuple[str, dict[str, Any]]] = [
    ("writer", {"location_id": "us-east-1", "action": "write", "consistency": "strong"}),
    ("data_store", {
        "action": "write",
        "consistency": "eventual",
        "replication_factor": 3,
        "conflict_resolution": "last_write_wins",
    }),
    ("gdpr_store", {"action": "write", "data": {"email": "user@example.com"}}),
    ("optimized_store", {
        "edge_strategy": "lowest_latency",
        "preferred_locations": ["us-east-1", "us-west-2"],
        "exclude_locations": ["ap-south-1"],
    }),
    ("critical_data", {"action": "write", "consistency": "strong", "data": {"balance": 1000}}),
    ("analytics_data", {
        "action": "write", "consistency": "eventual", "data": {"event": "page_view"},
    }),
    ("chat_messages", {
        "action": "write", "consistency": "causal",
        "data": {"message": "Hello", "thread_id": "123"},
    }),
    ("cache_data", {
        "action": "read", "consistency": "bounded_staleness", "staleness_threshold_ms": 5000,
    }),
    ("global_data", {
        "action": "write", "replication_factor": 3, "data": {"content": "global_update"},
    }),
    ("eu_processor", {
        "action": "write", "compliance_zones": ["gdpr"], "data": {"user_id": "eu_user_123"},
    }),
    ("financial_processor", {
        "action": "write", "compliance_zones": ["sox"],
        "data": {"transaction": "payment_456"},
    }),
    ("resilient_store", {
        "action": "write", "fallback_strategy": "any_available", "min_replicas": 1,
    }),
    ("auto_edge", {"action": "write"}),
]

#: every EdgeStateMachine snippet of the spec, verbatim
SPEC_STATE_NODES: list[tuple[str, dict[str, Any]]] = [
    ("state", {"state_id": "user_session_123", "operation": "set"}),
    ("user_state", {
        "state_id": "session_xyz",
        "operation": "set",
        "enable_persistence": True,
        "enable_replication": True,
    }),
    ("migratable_state", {
        "state_id": "compute_task_123",
        "operation": "set",
        "lease_duration_ms": 30000,
        "enable_migration": True,
    }),
]


def problems(type_name: str, params: dict[str, Any], node_id: str = "n") -> list[str]:
    builder = WorkflowBuilder()
    builder.add_node(type_name, node_id, params)
    with pytest.raises(WorkflowValidationError) as info:
        builder.build()
    return list(info.value.problems)


def assert_store_refuses(params: dict[str, Any], field: str, words: str) -> None:
    """An EdgeDataNode ``store`` with ``params`` does not build: its one problem names
    the node, its type and the invalid ``field``, and says ``words``."""
    [problem] = problems("EdgeDataNode", params, "store")
    assert problem.startswith(f"Node 'store' (EdgeDataNode): invalid parameter {field!r}"), problem
    assert words in problem, problem


def test_both_types_are_registered_edge_nodes() -> None:
    assert node_class("EdgeDataNode") is EdgeDataNode
    assert node_class("EdgeStateMachine") is EdgeStateMachine
    assert is_edge_node("EdgeDataNode", EdgeDataNode)
    assert is_edge_node("EdgeStateMachine", EdgeStateMachine)


def test_build_accepts_every_spec_snippet_with_the_spec_defaults() -> None:
    builder = WorkflowBuilder()
    for node_id, params in SPEC_DATA_NODES:
        builder.add_node("EdgeDataNode", node_id, params)
    for node_id, params in SPEC_STATE_NODES:
        builder.add_node("EdgeStateMachine", node_id, params)
    # the spec's connection of the compliance-aware workflow
    builder.add_connection("eu_processor", "result", "financial_processor", "input")
    workflow = builder.build()
    assert set(workflow.edge_node_ids) == {n for n, _ in SPEC_DATA_NODES + SPEC_STATE_NODES}

    auto = workflow.node("auto_edge").params
    assert isinstance(auto, EdgeDataParams)
    assert (auto.action, auto.consistency, auto.conflict_resolution, auto.key) == (
        "write", "eventual", "last_write_wins", None)
    cache = workflow.node("cache_data").params
    assert isinstance(cache, EdgeDataParams)
    assert (cache.action, cache.consistency, cache.staleness_threshold_ms) == (
        "read", "bounded_staleness", 5000)
    state = workflow.node("state").params
    assert isinstance(state, EdgeStateParams)
    assert (state.operation, state.enable_persistence, state.enable_replication,
            state.enable_migration) == ("set", True, True, False)


def test_optimized_store_defaults_to_write() -> None:
    builder = WorkflowBuilder()
    builder.add_node("EdgeDataNode", "optimized_store", dict(SPEC_DATA_NODES[3][1]))
    params = builder.build().node("optimized_store").params
    assert isinstance(params, EdgeDataParams)
    assert params.action == "write"
    assert params.preferred_locations == ["us-east-1", "us-west-2"]


@pytest.mark.parametrize(
    ("params", "field", "words"),
    [
        ({"action": "delete"}, "action", "'write', 'read', 'replicate' or 'sync'"),
        ({"consistency": "linearizable"}, "consistency", "'bounded_staleness'"),
        ({"conflict_resolution": "first_write_wins"}, "conflict_resolution", "'counter'"),
        ({"replication_factor": 0}, "replication_factor", "greater than or equal to 1"),
        ({"min_replicas": 0}, "min_replicas", "greater than or equal to 1"),
        ({"edge_strategy": "cheapest"}, "edge_strategy", "'lowest_latency'"),
        ({"fallback_strategy": "anywhere"}, "fallback_strategy", "'any_available'"),
        ({"staleness_threshold_ms": -5, "action": "read", "consistency": "bounded_staleness"},
         "staleness_threshold_ms", "greater than 0"),
        ({"key": ""}, "key", "at least 1 character"),
        ({"preferred_locations": "us-east-1"}, "preferred_locations", "valid list"),
    ],
)
def test_data_node_refuses_bad_values_naming_node_and_field(
    params: dict[str, Any], field: str, words: str
) -> None:
    assert_store_refuses(params, field, words)


@pytest.mark.parametrize(
    ("params", "field", "words"),
    [
        ({"action": "write", "consistency": "bounded_staleness"}, "consistency",
         "is a read level"),
        ({"action": "replicate", "consistency": "strong"}, "consistency", "use action 'write'"),
        ({"action": "read", "staleness_threshold_ms": 100}, "staleness_threshold_ms",
         "applies to consistency 'bounded_staleness' only"),
        ({"action": "sync", "consistency": "strong"}, "consistency", "is a causal read"),
    ],
)
def test_data_node_refuses_contradicting_params(
    params: dict[str, Any], field: str, words: str
) -> None:
    assert_store_refuses(params, field, words)


def test_data_node_unknown_param_gets_a_did_you_mean() -> None:
    [problem] = problems("EdgeDataNode", {"replication_factr": 2}, "store")
    assert "unknown parameter 'replication_factr' (did you mean 'replication_factor'?)" in problem


def test_state_machine_needs_a_state_id() -> None:
    [problem] = problems("EdgeStateMachine", {"operation": "set"}, "user_state")
    assert problem == "Node 'user_state' (EdgeStateMachine): missing required parameter 'state_id'."


@pytest.mark.parametrize(
    ("params", "field", "words"),
    [
        ({"operation": "incr"}, "operation", "'increment'"),
        ({"state_id": ""}, "state_id", "at least 1 character"),
        ({"lease_duration_ms": 0}, "lease_duration_ms", "from 500 to 3600000 (one hour)"),
        ({"lease_duration_ms": 3_600_001}, "lease_duration_ms", "from 500 to 3600000"),
        ({"timeout_ms": -1}, "timeout_ms", "greater than 0"),
        ({"enable_persistence": False}, "enable_persistence", "always persisted"),
        ({"enable_replication": False}, "enable_replication", "leave it true"),
        ({"increment": "one"}, "increment", "valid number"),
    ],
)
def test_state_machine_refuses_bad_values_naming_node_and_field(
    params: dict[str, Any], field: str, words: str
) -> None:
    [problem] = problems("EdgeStateMachine", {"state_id": "s1", **params}, "user_state")
    assert problem.startswith(
        f"Node 'user_state' (EdgeStateMachine): invalid parameter {field!r}"), problem
    assert words in problem, problem


# ------------------------------------------------- how the params reach the bus (no Kafka)


class Answer:
    """A receipt / commit / read / state result stand-in."""

    def __init__(self, **fields: Any) -> None:
        self.fields = fields
        self.session_token = fields.get("session_token")
        self.committed = fields.get("committed", False)
        self.ok = fields.get("ok", False)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.fields)


class RecordingBus:
    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    async def write(self, key: str, data: Any, **options: Any) -> Answer:
        self.calls.append(("write", (key, data), options))
        return Answer(key=key, session_token="tok-w")

    async def commit(self, key: str, data: Any, **options: Any) -> Answer:
        self.calls.append(("commit", (key, data), options))
        return Answer(key=key, committed=True, session_token="tok-c")

    async def read(self, key: str, region: str | None = None, **options: Any) -> Answer:
        self.calls.append(("read", (key, region), options))
        return Answer(key=key, value=1, session_token="tok-r")

    async def replication_status(self, receipt: Answer, *, wait_ms: float = 0) -> dict[str, str]:
        self.calls.append(("replication_status", (receipt.fields["key"],), {"wait_ms": wait_ms}))
        return {"a": "completed", "b": "pending"}

    async def state(self, state_id: str, operation: str, **options: Any) -> Answer:
        self.calls.append(("state", (state_id, operation), options))
        return Answer(state_id=state_id, ok=True)

    async def sync(self, region: str, **options: Any) -> Answer:
        self.calls.append(("sync", (region,), options))
        return Answer(region=region, ok=True)


class FakeInfrastructure:
    def __init__(self) -> None:
        from edgebus.config import load_config

        self.config = load_config(None)
        self.bus = RecordingBus()


def run(builder: WorkflowBuilder, parameters: dict[str, dict[str, Any]] | None = None) -> tuple[
    dict[str, dict[str, Any]], RecordingBus
]:
    from edgebus.workflow import LocalRuntime

    infra = FakeInfrastructure()
    results, _ = LocalRuntime(infrastructure=infra).execute(builder.build(), parameters)
    return results, infra.bus


def test_a_write_passes_the_set_options_and_a_connected_read_reads_its_key() -> None:
    builder = WorkflowBuilder()
    builder.add_node("EdgeDataNode", "eu_processor", {
        "action": "write", "compliance_zones": ["gdpr"], "data": {"user_id": "eu_user_123"},
        "location_id": "eu-west-1", "min_replicas": 1,
    })
    builder.add_node("EdgeDataNode", "reader", {"action": "read", "consistency": "causal"})
    builder.add_connection("eu_processor", "result", "reader", "input")
    builder.add_connection("eu_processor", "session_token", "reader", "session_token")
    results, bus = run(builder)
    write, read = bus.calls
    assert write == ("write", ("eu_processor", {"user_id": "eu_user_123"}), {
        "consistency": "eventual", "conflict_resolution": "last_write_wins",
        "preferred_locations": (), "exclude_locations": (), "compliance_zones": ("gdpr",),
        "region": "eu-west-1", "min_replicas": 1,
    })
    assert read == ("read", ("eu_processor", None), {
        "consistency": "causal", "session": "tok-w", "staleness_threshold_ms": None,
        "exclude_locations": (), "preferred_locations": (), "edge_strategy": None,
    })
    assert results["eu_processor"] == {
        "result": {"key": "eu_processor", "session_token": "tok-w", "success": True},
        "session_token": "tok-w",
    }
    assert results["reader"]["result"]["success"] is True


def test_input_is_the_data_of_a_write_without_data_and_a_string_input_the_key_of_a_sync(
) -> None:
    builder = WorkflowBuilder()
    builder.add_node("EdgeDataNode", "store", {"key": "k1"})
    builder.add_node("EdgeDataNode", "sync", {"action": "sync", "location_id": "ap-southeast-1"})
    _, bus = run(builder, {"store": {"input": {"v": 2}}, "sync": {"input": "k2"}})
    assert bus.calls[0][1] == ("k1", {"v": 2})
    assert bus.calls[2][:2] == ("read", ("k2", "ap-southeast-1"))
    assert bus.calls[2][2]["consistency"] == "causal"


def test_a_sync_repairs_its_region_first_then_reads_there_with_the_report() -> None:
    builder = WorkflowBuilder()
    builder.add_node("EdgeDataNode", "near", {"action": "sync", "key": "k", "timeout_ms": 5000})
    results, bus = run(builder)
    home = FakeInfrastructure().config.regions[0]  # no location_id: the first region
    assert bus.calls == [("sync", (home,), {"timeout_s": 5.0}), ("read", ("k", home), {
        "consistency": "causal", "session": None, "staleness_threshold_ms": None,
        "exclude_locations": (), "preferred_locations": (), "edge_strategy": None,
    })]
    near = results["near"]["result"]
    assert near["sync"] == {"region": home, "ok": True} and near["success"] is True
    assert near["value"] == 1 and results["near"]["session_token"] == "tok-r"

    builder = WorkflowBuilder()
    builder.add_node("EdgeDataNode", "there", {"action": "sync", "key": "k",
                                               "location_id": "ap-southeast-1"})
    _, bus = run(builder)
    assert [c[:2] for c in bus.calls] == [
        ("sync", ("ap-southeast-1",)), ("read", ("k", "ap-southeast-1"))]
    assert bus.calls[0][2] == {"timeout_s": 30.0}


def test_strong_writes_commit_and_replicate_waits_for_the_placement() -> None:
    builder = WorkflowBuilder()
    builder.add_node("EdgeDataNode", "critical_data", {
        "action": "write", "consistency": "strong", "data": {"balance": 1000},
        "timeout_ms": 9000, "compensate": False,
    })
    builder.add_node("EdgeDataNode", "global_data", {
        "action": "replicate", "replication_factor": 3, "data": {"content": "global_update"},
    })
    results, bus = run(builder)
    commit, write, status = bus.calls
    assert commit[0] == "commit" and "consistency" not in commit[2]
    assert commit[2]["timeout_ms"] == 9000
    assert results["critical_data"]["result"]["success"] is True
    assert results["critical_data"]["session_token"] == "tok-c"
    assert write[0] == "write" and write[2]["replication_factor"] == 3
    assert status == ("replication_status", ("global_data",), {"wait_ms": 10_000})
    assert results["global_data"]["result"]["replication"] == {"a": "completed", "b": "pending"}
    assert results["global_data"]["result"]["success"] is False


def test_a_write_without_data_writes_an_empty_object_as_the_specs_examples_do() -> None:
    builder = WorkflowBuilder()
    builder.add_node("EdgeDataNode", "auto_edge", {"action": "write"})
    results, bus = run(builder)
    [(kind, (key, data), _options)] = bus.calls
    assert (kind, key, data) == ("write", "auto_edge", {})
    assert results["auto_edge"]["result"]["success"] is True



def test_the_state_machine_passes_its_params_and_input_as_value() -> None:
    builder = WorkflowBuilder()
    builder.add_node("EdgeStateMachine", "migratable_state", {
        "state_id": "compute_task_123", "operation": "set", "lease_duration_ms": 30000,
        "enable_migration": True, "location_id": "eu-west-1", "key": "k",
    })
    results, bus = run(builder, {"migratable_state": {"input": {"step": 3}}})
    [(name, args, options)] = bus.calls
    assert (name, args) == ("state", ("compute_task_123", "set"))
    assert options == {
        "key": "k", "value": {"step": 3}, "update_fn": None, "increment": 1,
        "lock_name": None, "holder": None, "timeout_ms": None, "lease_duration_ms": 30000,
        "enable_persistence": True, "enable_replication": True, "enable_migration": True,
        "classification": None, "region": "eu-west-1",
    }
    assert results["migratable_state"]["result"] == {
        "state_id": "compute_task_123", "ok": True, "success": True}


def test_a_write_with_data_and_a_connected_input_writes_its_data_with_the_inputs_classes(
) -> None:
    """The spec's compliance-aware workflow: the financial processor writes its own
    transaction, and what the upstream result was classified as goes with it."""
    builder = WorkflowBuilder()
    builder.add_node("EdgeDataNode", "eu_processor", {
        "action": "write", "compliance_zones": ["gdpr"], "data": {"user_id": "eu_user_123"}})
    builder.add_node("EdgeDataNode", "financial_processor", {
        "action": "write", "compliance_zones": ["sox"], "data": {"transaction": "payment_456"},
        "classification": "financial"})
    builder.add_connection("eu_processor", "result", "financial_processor", "input")
    upstream = {"key": "eu_processor", "classification": ["pii", "public"]}
    _, bus = run(builder, {"financial_processor": {"input": upstream}})
    (_, (key, data), options) = bus.calls[-1]
    assert (key, data) == ("financial_processor", {"transaction": "payment_456"})
    assert options["classification"] == ["financial", "pii"]


def test_a_read_asks_its_preferred_locations_by_its_strategy() -> None:
    builder = WorkflowBuilder()
    builder.add_node("EdgeDataNode", "r", {
        "action": "read", "key": "k", "preferred_locations": ["ap-south-1"],
        "edge_strategy": "balanced", "exclude_locations": ["us-east-1"]})
    _, bus = run(builder)
    [(_, _, options)] = bus.calls
    assert options["preferred_locations"] == ("ap-south-1",)
    assert options["edge_strategy"] == "balanced"
    assert options["exclude_locations"] == ("us-east-1",)
