"""Custom edge nodes get their params and inputs as the spec's examples use them
(issue 19): the spec's ``CustomEdgeProcessor`` reads ``kwargs.get("data")``, which is
its own ``data`` param; a connected ``input`` comes beside it, and neither replaces the
other. No Kafka: a fake infrastructure (config and compliance rules) is injected."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from edgebus.config import EdgeConfig
from edgebus.errors import ComplianceViolation
from edgebus.workflow import (
    EdgeNode,
    EdgeNodeParams,
    LocalRuntime,
    WorkflowBuilder,
    WorkflowExecutionError,
    WorkflowValidationError,
    register_node,
)
from edgebus.workflow import registry as registry_module

#: an edge location outside the GDPR zone only
US_ONLY = EdgeConfig.from_mapping({"discovery": {"locations": ["us-east-1"]}})
PII = {"email": "ann@example.com"}


class FakeInfrastructure:
    def __init__(self, config: EdgeConfig = US_ONLY) -> None:
        self.config = config
        self.rules = config.compliance.rules()


@pytest.fixture
def spec_processor() -> Iterator[None]:
    """Registers the spec's ``CustomEdgeProcessor`` (as the spec writes it) for one
    test: tests/examples/test_spec_examples.py registers its own under that name."""
    table = registry_module._registry
    saved = table.pop("CustomEdgeProcessor", None)

    @register_node()
    class CustomEdgeProcessor(EdgeNode):
        async def async_run(self, **kwargs):
            # Your edge logic here
            await self.ensure_compliance(kwargs.get("data"))
            return {"processed": True}

    try:
        yield
    finally:
        table.pop("CustomEdgeProcessor", None)
        if saved is not None:
            table["CustomEdgeProcessor"] = saved


@register_node("CustomEdgeRecorder")
class Recorder(EdgeNode):
    """Returns the keyword arguments it was run with."""

    def run(self, **kwargs: Any) -> Mapping[str, Any]:
        return {"result": dict(kwargs)}


@register_node("CustomEdgeLocated")
class Located(EdgeNode):
    """A custom edge node with params of its own beside ``data``."""

    class Params(EdgeNodeParams):
        location_id: str

    async def async_run(self, **kwargs: Any) -> Mapping[str, Any]:
        location = getattr(self.params, "location_id")  # noqa: B009
        placement = await self.ensure_compliance(kwargs.get("data"), location_id=location)
        return {"result": list(placement.regions)}


def run_one(type_name: str, params: dict[str, Any], config: EdgeConfig = US_ONLY) -> Any:
    builder = WorkflowBuilder()
    builder.add_node(type_name, "custom", params)
    results, _ = LocalRuntime(infrastructure=FakeInfrastructure(config)).execute(builder.build())
    return results["custom"]


def test_the_spec_custom_edge_node_refuses_pii_data_at_a_non_gdpr_location(
    spec_processor: None,
) -> None:
    with pytest.raises(ComplianceViolation) as info:
        run_one("CustomEdgeProcessor", {"data": PII})
    error = info.value
    assert isinstance(error, WorkflowExecutionError) and error.node_id == "custom"
    assert isinstance(error.cause, ComplianceViolation)
    assert error.cause.classification == ("pii",) and error.cause.zones_required == ("gdpr",)
    assert str(error.cause).startswith("Compliance violation: cannot place data classified pii")


def test_the_spec_custom_edge_node_processes_data_it_may_place(spec_processor: None) -> None:
    assert run_one("CustomEdgeProcessor", {"data": {"count": 1}}) == {"processed": True}
    assert run_one("CustomEdgeProcessor", {}) == {"processed": True}  # no data: nothing to place
    default = EdgeConfig()  # eu-west-1 among the regions: PII goes there
    assert run_one("CustomEdgeProcessor", {"data": PII}, default) == {"processed": True}


def test_a_custom_edge_node_configured_for_a_non_gdpr_location_refuses_pii() -> None:
    with pytest.raises(ComplianceViolation, match="Compliance violation: cannot place data"):
        run_one("CustomEdgeLocated", {"location_id": "us-east-1", "data": PII}, EdgeConfig())
    assert run_one("CustomEdgeLocated", {"location_id": "eu-west-1", "data": PII},
                   EdgeConfig()) == {"result": ["eu-west-1"]}


def test_an_edge_node_gets_its_data_param_and_its_connected_input_side_by_side() -> None:
    builder = WorkflowBuilder()
    builder.add_node("Passthrough", "source", {})
    builder.add_node("CustomEdgeRecorder", "both", {"data": {"transaction": "payment_456"}})
    builder.add_node("CustomEdgeRecorder", "input_only", {})
    builder.add_node("CustomEdgeRecorder", "data_only", {"data": [1, 2]})
    builder.add_connection("source", "result", "both", "input")
    builder.add_connection("source", "result", "input_only", "input")
    runtime = LocalRuntime(infrastructure=FakeInfrastructure())
    results, _ = runtime.execute(builder.build(), {"source": {"input": {"user_id": "u1"}}})
    assert results["both"]["result"] == {
        "data": {"transaction": "payment_456"}, "input": {"user_id": "u1"}}
    assert results["input_only"]["result"] == {"input": {"user_id": "u1"}}
    assert results["data_only"]["result"] == {"data": [1, 2]}


def test_run_time_parameters_give_the_input_and_leave_the_data_param() -> None:
    builder = WorkflowBuilder()
    builder.add_node("CustomEdgeRecorder", "n", {"data": "own"})
    runtime = LocalRuntime(infrastructure=FakeInfrastructure())
    results, _ = runtime.execute(builder.build(), {"n": {"input": "given"}})
    assert results["n"]["result"] == {"data": "own", "input": "given"}


def test_a_custom_edge_nodes_params_still_refuse_unknown_names() -> None:
    builder = WorkflowBuilder()
    builder.add_node("CustomEdgeRecorder", "n", {"dta": 1})
    with pytest.raises(WorkflowValidationError,
                       match=r"unknown parameter 'dta' \(did you mean 'data'\?\)"):
        builder.build()
