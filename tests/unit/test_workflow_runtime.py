"""LocalRuntime: data flow, sync and async execution, failures, edge-node injection,
shared edge infrastructure and compliance placement. No Kafka."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from typing import Any, ClassVar

import pytest

from edgebus.config import EdgeConfig
from edgebus.errors import ComplianceViolation, InfrastructureUnavailable, InvalidInput
from edgebus.workflow import (
    EdgeInfrastructure,
    EdgeNode,
    LocalRuntime,
    Node,
    NodeNotInitialized,
    NodeParams,
    Workflow,
    WorkflowBuilder,
    WorkflowExecutionError,
    processing_node,
    register_node,
)
from tests.unit.workflow_graphs import graph


@processing_node("runtime_test_scale")
def scale(value: float, factor: float = 2.0) -> float:
    return value * factor


@processing_node("runtime_test_add")
async def add(left: float, right: float) -> float:
    await asyncio.sleep(0)
    return left + right


@processing_node("runtime_test_fail")
def fail(value: Any) -> Any:
    raise ValueError(f"cannot take {value!r}")


@processing_node("runtime_test_thread")
def thread_name() -> str:
    return threading.current_thread().name


class FakeInfrastructure:
    """What an edge node needs of the infrastructure: a config (and rules)."""

    def __init__(self, config: EdgeConfig | None = None) -> None:
        self.config = config or EdgeConfig()
        self.rules = self.config.compliance.rules()


@register_node("RuntimeTestEdgeProbe")
class EdgeProbe(EdgeNode):
    """Records initialize calls and what it saw when it ran."""

    events: ClassVar[list[tuple[str, str, Any]]] = []

    async def initialize(self, infrastructure: Any) -> None:
        self.events.append(("initialize", self.node_id, infrastructure))
        await super().initialize(infrastructure)

    async def async_run(self, **inputs: Any) -> Mapping[str, Any]:
        self.events.append(("run", self.node_id, self.infrastructure))
        return {"result": inputs.get("input")}


@register_node("RuntimeTestPlainProbe")
class PlainProbe(Node):
    """Not an edge node, though it has an initialize method: never initialized."""

    initialized: ClassVar[list[str]] = []

    async def initialize(self, infrastructure: Any) -> None:
        self.initialized.append(self.node_id)

    def run(self, input: Any = None) -> Mapping[str, Any]:
        return {"result": input}


@register_node("RuntimeTestPiiWriter")
class PiiWriter(EdgeNode):
    class Params(NodeParams):
        location_id: str

    def run(self, **inputs: Any) -> Mapping[str, Any]:
        raise AssertionError("async_run is overridden")

    async def async_run(self, **inputs: Any) -> Mapping[str, Any]:
        location = getattr(self.params, "location_id")  # noqa: B009
        placement = await self.ensure_compliance(inputs.get("input"), location_id=location)
        return {"result": placement.regions}


def dag() -> Workflow:
    """a (scale) and b (scale) feed c (add), which feeds d (scale)."""
    builder = WorkflowBuilder()
    builder.add_node("runtime_test_add", "c", {})
    builder.add_node("runtime_test_scale", "a", {"factor": 3})
    builder.add_node("runtime_test_scale", "b", {})
    builder.add_node("runtime_test_scale", "d", {"factor": 10, "value": 999})
    builder.add_connection("a", "result", "c", "left")
    builder.add_connection("b", "result", "c", "right")
    builder.add_connection("c", "result", "d", "value")
    return builder.build()


DAG_PARAMETERS = {"a": {"value": 1}, "b": {"value": 5}}
DAG_RESULTS = {
    "a": {"result": 3.0},
    "b": {"result": 10.0},
    "c": {"result": 13.0},
    "d": {"result": 130.0},
}


async def test_execute_async_runs_a_dag_with_connections_and_parameters() -> None:
    workflow = dag()
    assert workflow.node_ids == ("a", "b", "c", "d")
    results, run_id = await LocalRuntime().execute_async(workflow, DAG_PARAMETERS)
    assert results == DAG_RESULTS
    assert len(run_id) == 32
    int(run_id, 16)


def test_execute_blocks_and_returns_the_same_results() -> None:
    results, run_id = LocalRuntime().execute(dag(), DAG_PARAMETERS)
    assert results == DAG_RESULTS
    assert len(run_id) == 32


async def test_execute_works_when_called_from_inside_a_running_loop() -> None:
    asyncio.get_running_loop()  # this test runs on pytest-asyncio's loop
    results, _ = LocalRuntime().execute(dag(), DAG_PARAMETERS)
    assert results == DAG_RESULTS


def test_every_run_gets_a_new_run_id() -> None:
    runtime = LocalRuntime()
    assert runtime.execute(dag(), DAG_PARAMETERS)[1] != runtime.execute(dag(), DAG_PARAMETERS)[1]


def test_runtime_parameters_override_connected_outputs_which_override_node_params() -> None:
    results, _ = LocalRuntime().execute(dag(), {**DAG_PARAMETERS, "d": {"factor": 0.5}})
    assert results["d"] == {"result": 6.5}  # value from c (not params' 999), factor from run
    results, _ = LocalRuntime().execute(dag(), {**DAG_PARAMETERS, "d": {"value": 1}})
    assert results["d"] == {"result": 10}


def test_sync_nodes_run_off_the_event_loop_thread() -> None:
    builder = WorkflowBuilder()
    builder.add_node("runtime_test_thread", "t", {})
    results, _ = LocalRuntime().execute(builder.build())
    assert results["t"]["result"] != "edgebus-workflow"


def test_builtin_passthrough_and_merge_combine_outputs() -> None:
    builder = WorkflowBuilder()
    builder.add_node("Passthrough", "p", {})
    builder.add_node("Passthrough", "q", {})
    builder.add_node("Merge", "by_port", {})
    builder.add_node("Merge", "flat", {"flatten": True})
    builder.add_connection("p", "result", "by_port", "first")
    builder.add_connection("q", "result", "by_port", "second")
    builder.add_connection("p", "result", "flat", "a")
    builder.add_connection("q", "result", "flat", "b")
    parameters = {"p": {"input": {"x": 1, "y": 1}}, "q": {"input": {"y": 2}}}
    results, _ = LocalRuntime().execute(builder.build(), parameters)
    assert results["by_port"] == {"result": {"first": {"x": 1, "y": 1}, "second": {"y": 2}}}
    assert results["flat"] == {"result": {"x": 1, "y": 2}}


def test_a_failing_node_raises_with_partial_results_and_later_nodes_do_not_run() -> None:
    PlainProbe.initialized.clear()
    builder = WorkflowBuilder()
    builder.add_node("runtime_test_scale", "first", {"value": 2})
    builder.add_node("runtime_test_fail", "broken", {})
    builder.add_node("RuntimeTestEdgeProbe", "after", {})
    builder.add_connection("first", "result", "broken", "value")
    builder.add_connection("broken", "result", "after", "input")
    EdgeProbe.events.clear()
    runtime = LocalRuntime(infrastructure=FakeInfrastructure())
    with pytest.raises(WorkflowExecutionError) as info:
        runtime.execute(builder.build())
    error = info.value
    assert error.node_id == "broken"
    assert error.type_name == "runtime_test_fail"
    assert isinstance(error.cause, ValueError)
    assert isinstance(error.__cause__, ValueError)
    assert error.results == {"first": {"result": 4.0}}
    assert error.not_run == ("after",)
    assert len(error.run_id) == 32
    assert str(error).startswith(
        "Node 'broken' (runtime_test_fail) failed: ValueError: cannot take 4.0."
    )
    assert [e[0] for e in EdgeProbe.events] == ["initialize"]  # initialized, never run


def test_a_node_returning_a_non_mapping_fails_clearly() -> None:
    @register_node("RuntimeTestBadOutput")
    class BadOutput(Node):
        def run(self, **inputs: Any) -> Any:
            return 42

    builder = WorkflowBuilder()
    builder.add_node("RuntimeTestBadOutput", "bad", {})
    with pytest.raises(WorkflowExecutionError, match="not a mapping of output port"):
        LocalRuntime().execute(builder.build())


def test_a_connected_output_the_node_did_not_produce_fails_the_node() -> None:
    @register_node("RuntimeTestTwoOutputs")
    class TwoOutputs(Node):
        outputs: ClassVar[tuple[str, ...]] = ("result", "extra")

        def run(self, **inputs: Any) -> Mapping[str, Any]:
            return {"result": 1}

    builder = WorkflowBuilder()
    builder.add_node("RuntimeTestTwoOutputs", "two", {})
    builder.add_node("Passthrough", "p", {})
    builder.add_connection("two", "extra", "p", "input")
    with pytest.raises(WorkflowExecutionError, match="produced no output 'extra'") as info:
        LocalRuntime().execute(builder.build())
    assert info.value.node_id == "two"
    assert info.value.results == {}


def test_parameters_for_an_unknown_node_are_refused_with_did_you_mean() -> None:
    with pytest.raises(InvalidInput, match=r"unknown node 'aa' \(did you mean 'a'\?\)"):
        LocalRuntime().execute(dag(), {"aa": {"value": 1}})


def test_execute_refuses_an_unbuilt_builder() -> None:
    with pytest.raises(InvalidInput, match=r"call WorkflowBuilder\.build"):
        LocalRuntime().execute(WorkflowBuilder())  # type: ignore[arg-type]


async def test_edge_nodes_are_initialized_once_with_the_infrastructure_before_they_run() -> None:
    EdgeProbe.events.clear()
    PlainProbe.initialized.clear()
    infra = FakeInfrastructure()
    workflow = graph(
        {"plain": "RuntimeTestPlainProbe", "edge1": "RuntimeTestEdgeProbe",
         "edge2": "RuntimeTestEdgeProbe"},
        "plain.result -> edge1.input", "edge1.result -> edge2.input",
    ).build()
    assert workflow.edge_node_ids == ("edge1", "edge2")

    results, _ = await LocalRuntime(infrastructure=infra).execute_async(
        workflow, {"plain": {"input": "x"}}
    )

    assert results["edge2"] == {"result": "x"}
    assert [(kind, node) for kind, node, _ in EdgeProbe.events] == [
        ("initialize", "edge1"),
        ("initialize", "edge2"),
        ("run", "edge1"),
        ("run", "edge2"),
    ]
    assert all(seen is infra for _, _, seen in EdgeProbe.events)
    assert PlainProbe.initialized == []


def test_a_workflow_without_edge_nodes_needs_no_infrastructure() -> None:
    # an unreachable broker: only a workflow with edge nodes would try it
    runtime = LocalRuntime({"kafka": {"bootstrap": "127.0.0.1:1", "connect_timeout_s": 1}})
    results, _ = runtime.execute(dag(), DAG_PARAMETERS)
    assert results == DAG_RESULTS


def test_without_a_broker_edge_workflows_say_how_to_start_one() -> None:
    EdgeProbe.events.clear()
    builder = WorkflowBuilder()
    builder.add_node("RuntimeTestEdgeProbe", "edge", {})
    config = {"kafka": {"bootstrap": "127.0.0.1:1", "connect_timeout_s": 1}}
    with pytest.raises(InfrastructureUnavailable) as info:
        LocalRuntime(config).execute(builder.build())
    message = str(info.value)
    assert message.startswith("No edge infrastructure available:")
    assert "edgebus kafka up" in message
    assert "EDGEBUS_BOOTSTRAP" in message
    assert EdgeProbe.events == []  # nothing initialized, nothing ran


def test_the_runtime_validates_its_edge_config() -> None:
    with pytest.raises(InvalidInput, match=r"did you mean 'compliance\.strict_mode'"):
        LocalRuntime({"compliance": {"strickt_mode": False}})


def test_equal_configs_share_one_infrastructure_and_different_ones_do_not() -> None:
    as_dict = {"discovery": {"locations": ["us-east-1", "eu-west-1"]}, "debug": False}
    as_model = EdgeConfig.from_mapping({"discovery": {"locations": ["us-east-1", "eu-west-1"]}})
    other = {"discovery": {"locations": ["us-east-1", "eu-west-1"]}, "edge_strategy": "balanced"}
    first = EdgeInfrastructure.shared(as_dict)
    try:
        assert EdgeInfrastructure.shared(as_model) is first
        assert EdgeInfrastructure.shared(dict(as_dict)) is first
        different = EdgeInfrastructure.shared(other)
        assert different is not first
        assert different.bus is not first.bus
        assert first.config == as_model
        assert first.rules == as_model.compliance.rules()
        assert not first.started and not different.started
        assert first.bus.discovery is None  # nothing started: no probes, no producer
    finally:
        asyncio.run(EdgeInfrastructure.close_all())
    assert EdgeInfrastructure.shared(as_dict) is not first  # closed ones are not shared
    asyncio.run(EdgeInfrastructure.close_all())


def test_zero_config_gets_the_default_infrastructure() -> None:
    infra = EdgeInfrastructure.shared(None)
    try:
        assert infra.config == EdgeConfig()
        assert EdgeInfrastructure.shared({}) is infra
    finally:
        asyncio.run(EdgeInfrastructure.close_all())


async def test_infrastructure_is_shared_per_event_loop() -> None:
    config = {"edge_strategy": "lowest_latency"}
    here = EdgeInfrastructure.shared(config)
    assert EdgeInfrastructure.shared(config) is here
    elsewhere = await asyncio.to_thread(lambda: asyncio.run(_shared_async(config)))
    assert elsewhere is not here
    await here.close()


async def _shared_async(config: Mapping[str, Any]) -> EdgeInfrastructure:
    infra = EdgeInfrastructure.shared(config)
    await infra.close()
    return infra


def test_debug_config_turns_on_the_trace_loggers() -> None:
    import logging

    infra = EdgeInfrastructure.shared({"debug": True, "edge_strategy": "balanced"})
    try:
        for name in ("edgebus.workflow.edge_infrastructure", "edgebus.edge"):
            assert logging.getLogger(name).isEnabledFor(logging.DEBUG)
    finally:
        asyncio.run(EdgeInfrastructure.close_all())
    assert infra.config.debug


async def test_ensure_compliance_refuses_pii_in_a_non_gdpr_location_in_strict_mode() -> None:
    node = PiiWriter("writer", {"location_id": "us-east-1"})
    await node.initialize(FakeInfrastructure())
    with pytest.raises(ComplianceViolation) as info:
        await node.ensure_compliance({"email": "ann@example.com"}, location_id="us-east-1")
    assert str(info.value).startswith("Compliance violation: cannot place data classified pii")
    assert info.value.zones_required == ("gdpr",)


async def test_ensure_compliance_places_pii_in_gdpr_regions_and_public_data_anywhere() -> None:
    node = PiiWriter("writer", {"location_id": "eu-west-1"})
    await node.initialize(FakeInfrastructure())
    placement = await node.ensure_compliance({"email": "ann@example.com"})
    assert placement.regions == ("eu-west-1",)
    assert placement.classes == frozenset({"pii"})
    public = await node.ensure_compliance({"count": 1}, location_id="ap-south-1")
    assert public.home == "ap-south-1"


async def test_ensure_compliance_in_non_strict_mode_reroutes_instead() -> None:
    config = EdgeConfig.from_mapping({"compliance": {"strict_mode": False}})
    node = PiiWriter("writer", {"location_id": "us-east-1"})
    await node.initialize(FakeInfrastructure(config))
    placement = await node.ensure_compliance({"email": "a@b.example"}, location_id="us-east-1")
    assert placement.rerouted
    assert placement.home == "eu-west-1"


async def test_ensure_compliance_refuses_unknown_options_with_did_you_mean() -> None:
    node = PiiWriter("writer", {"location_id": "us-east-1"})
    await node.initialize(FakeInfrastructure())
    with pytest.raises(InvalidInput, match=r"'location' \(did you mean 'location_id'\?\)"):
        await node.ensure_compliance({}, location="us-east-1")


async def test_an_edge_node_used_before_initialize_says_to_run_it_through_the_runtime() -> None:
    node = PiiWriter("writer", {"location_id": "us-east-1"})
    with pytest.raises(NodeNotInitialized, match="Edge node 'writer' was not initialized: run"):
        await node.ensure_compliance({"email": "ann@example.com"})
    assert "LocalRuntime" in str(NodeNotInitialized("writer"))


def test_a_compliance_violation_inside_a_workflow_keeps_its_exit_code() -> None:
    builder = WorkflowBuilder()
    builder.add_node("Passthrough", "source", {})
    builder.add_node("RuntimeTestPiiWriter", "writer", {"location_id": "us-east-1"})
    builder.add_connection("source", "result", "writer", "input")
    runtime = LocalRuntime(infrastructure=FakeInfrastructure())
    with pytest.raises(WorkflowExecutionError) as info:
        runtime.execute(builder.build(), {"source": {"input": {"email": "ann@example.com"}}})
    assert isinstance(info.value.cause, ComplianceViolation)
    assert info.value.exit_code == 2
    assert info.value.results == {"source": {"result": {"email": "ann@example.com"}}}


def test_parameters_for_an_unknown_input_are_refused_naming_the_inputs() -> None:
    with pytest.raises(InvalidInput) as info:
        LocalRuntime().execute(dag(), {"a": {"valeu": 1}})
    assert str(info.value) == (
        "parameters['a'] name unknown input 'valeu' (did you mean 'value'?) of node 'a' "
        "(runtime_test_scale); its inputs: value, factor."
    )


def test_a_plain_node_that_is_an_edge_node_by_name_gets_the_infrastructure_injected() -> None:
    @register_node("RuntimeTestEdgeByName")
    class ByName(Node):
        def run(self, **inputs: Any) -> Mapping[str, Any]:
            return {"result": self.infrastructure}  # type: ignore[attr-defined]

    infra = FakeInfrastructure()
    builder = WorkflowBuilder()
    builder.add_node("RuntimeTestEdgeByName", "named", {})
    results, _ = LocalRuntime(infrastructure=infra).execute(builder.build())
    assert results["named"]["result"] is infra


def test_a_node_whose_constructor_fails_raises_before_any_node_runs() -> None:
    @register_node("RuntimeTestBrokenInit")
    class BrokenInit(Node):
        def __init__(self, node_id: str, params: Any = None) -> None:
            raise RuntimeError("no resources")

    builder = WorkflowBuilder()
    builder.add_node("Passthrough", "p", {})
    builder.add_node("RuntimeTestBrokenInit", "broken", {})
    with pytest.raises(WorkflowExecutionError, match=r"'broken'.*no resources") as info:
        LocalRuntime().execute(builder.build())
    assert info.value.results == {}


def test_an_infrastructure_got_outside_a_loop_is_the_one_a_loop_then_shares() -> None:
    config = {"edge_strategy": "balanced", "discovery": {"locations": ["eu-west-1"]}}
    outside = EdgeInfrastructure.shared(config)

    async def inside() -> EdgeInfrastructure:
        infra = EdgeInfrastructure.shared(config)
        assert EdgeInfrastructure.shared(config) is infra
        assert infra.discovery is None  # not started
        await EdgeInfrastructure.close_all()
        return infra

    assert asyncio.run(inside()) is outside
