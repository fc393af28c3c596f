"""``WorkflowBuilder(edge_config)`` (the spec's troubleshooting advice) and
``dataflow_integration`` (issue 19).

The builder takes an optional edge_config, checked by ``build()`` and carried on the
Workflow; a runtime given none runs with it, a runtime given another refuses the run.
DataFlow nodes run only with ``"dataflow_integration": True``: ``build()`` refuses them
when the builder's config leaves it off, the runtime when the run's config does,
before any node runs. No Kafka: a fake infrastructure and the memory bus of
tests/unit/test_dataflow.py."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from edgebus.config import EdgeConfig
from edgebus.errors import ConfigError, InvalidInput
from edgebus.workflow import (
    EdgeNode,
    LocalRuntime,
    Workflow,
    WorkflowBuilder,
    WorkflowValidationError,
    register_node,
)
from tests.unit.test_dataflow import MemoryBus

TWO_REGIONS = {"discovery": {"locations": ["us-east-1", "eu-west-1"]}}
WITH_DATAFLOW = {**TWO_REGIONS, "dataflow_integration": True}


@register_node("EdgeConfigProbe")
class ConfigProbe(EdgeNode):
    """Returns the config of the infrastructure the runtime injected."""

    async def async_run(self, **inputs: Any) -> Mapping[str, Any]:
        return {"result": self.infrastructure.config}


class FakeInfrastructure:
    def __init__(self, config: EdgeConfig) -> None:
        self.config = config
        self.bus = MemoryBus()


@pytest.fixture
def shared(monkeypatch: pytest.MonkeyPatch) -> list[EdgeConfig]:
    """``EdgeInfrastructure.shared`` replaced: it records the config asked for and
    gives a fake infrastructure of it (no broker)."""
    import edgebus.workflow.runtime as runtime_module

    asked: list[EdgeConfig] = []

    def fake_shared(config: EdgeConfig) -> FakeInfrastructure:
        asked.append(config)
        return FakeInfrastructure(config)

    monkeypatch.setattr(runtime_module.EdgeInfrastructure, "shared", staticmethod(fake_shared))
    return asked


def probe_workflow(edge_config: Any = None) -> Workflow:
    builder = WorkflowBuilder(edge_config)
    builder.add_node("EdgeConfigProbe", "probe", {})
    return builder.build()


# -- WorkflowBuilder(edge_config) -------------------------------------------------------


@pytest.mark.parametrize("given", [TWO_REGIONS, EdgeConfig.from_mapping(TWO_REGIONS)])
def test_the_builder_takes_an_edge_config_and_the_workflow_carries_it(given: Any) -> None:
    workflow = probe_workflow(given)
    assert workflow.edge_config == EdgeConfig.from_mapping(TWO_REGIONS)
    assert probe_workflow().edge_config is None


def test_the_builder_takes_a_config_file_path(tmp_path: Path) -> None:
    path = tmp_path / "edge.json"
    path.write_text(json.dumps(TWO_REGIONS))
    assert probe_workflow(str(path)).edge_config == EdgeConfig.from_mapping(TWO_REGIONS)


def test_build_lists_a_bad_edge_config_among_the_other_problems() -> None:
    builder = WorkflowBuilder({"compliance": {"strickt_mode": False}})
    builder.add_node("NoSuchNodeType", "n", {})
    with pytest.raises(WorkflowValidationError) as info:
        builder.build()
    problems = info.value.problems
    assert len(problems) == 2
    assert any("NoSuchNodeType" in p for p in problems)
    [config_problem] = [p for p in problems if p.startswith("WorkflowBuilder(edge_config): ")]
    assert "did you mean 'compliance.strict_mode'" in config_problem


def test_build_refuses_an_edge_config_of_the_wrong_type() -> None:
    with pytest.raises(WorkflowValidationError, match=r"WorkflowBuilder\(edge_config\) takes "
                                                      r"an EdgeConfig, a dict or the path"):
        probe_workflow(42)


def test_a_runtime_given_no_config_runs_with_the_workflows(shared: list[EdgeConfig]) -> None:
    workflow = probe_workflow(TWO_REGIONS)
    results, _ = LocalRuntime().execute(workflow)
    assert results["probe"]["result"] == workflow.edge_config
    assert shared == [workflow.edge_config]


def test_the_workflows_config_wins_over_edgebus_config(
    shared: list[EdgeConfig], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "env.json"
    path.write_text(json.dumps({"discovery": {"locations": ["ap-south-1"]}}))
    monkeypatch.setenv("EDGEBUS_CONFIG", str(path))
    workflow = probe_workflow(TWO_REGIONS)
    assert LocalRuntime().config_for(workflow).regions == ("us-east-1", "eu-west-1")
    assert LocalRuntime().config_for(probe_workflow()).regions == ("ap-south-1",)


def test_a_runtime_and_a_workflow_with_the_same_config_run(shared: list[EdgeConfig]) -> None:
    results, _ = LocalRuntime(dict(TWO_REGIONS)).execute(probe_workflow(TWO_REGIONS))
    assert results["probe"]["result"].regions == ("us-east-1", "eu-west-1")


def test_a_runtime_and_a_workflow_with_different_configs_refuse_the_run_saying_which_to_drop(
    shared: list[EdgeConfig],
) -> None:
    workflow = probe_workflow(TWO_REGIONS)
    with pytest.raises(InvalidInput) as info:
        LocalRuntime({"edge_strategy": "balanced"}).execute(workflow)
    message = str(info.value)
    assert "differ in: discovery, edge_strategy" in message
    assert "drop it from LocalRuntime(...)" in message and "or from WorkflowBuilder(...)" in message
    assert shared == []  # nothing started
    injected = LocalRuntime(infrastructure=FakeInfrastructure(EdgeConfig()))
    with pytest.raises(InvalidInput, match="differ in: discovery"):
        injected.execute(workflow)


# -- dataflow_integration ---------------------------------------------------------------


def dataflow_builder(edge_config: Any = None) -> WorkflowBuilder:
    builder = WorkflowBuilder(edge_config)
    builder.add_node("Passthrough", "first", {})
    builder.add_node("UserProfileCreateNode", "create_user", {
        "model": "UserProfile", "data": {"user_id": "123", "region": "eu"},
    })
    builder.add_node("OrderReadNode", "read_order", {"id": 7})
    return builder


def test_build_refuses_dataflow_nodes_when_the_builders_config_leaves_integration_off() -> None:
    with pytest.raises(WorkflowValidationError) as info:
        dataflow_builder(TWO_REGIONS).build()
    [problem] = info.value.problems
    assert problem.startswith("DataFlow nodes 'create_user' (UserProfileCreateNode), "
                              "'read_order' (OrderReadNode) need DataFlow integration")
    assert 'set "dataflow_integration": True in the edge_config' in problem
    assert "'first'" not in problem
    assert dataflow_builder(WITH_DATAFLOW).build().edge_config == EdgeConfig.from_mapping(
        WITH_DATAFLOW)


def test_without_integration_the_runtime_refuses_dataflow_nodes_before_any_node_runs() -> None:
    workflow = dataflow_builder().build()  # no config at build: nothing to check yet
    infra = FakeInfrastructure(EdgeConfig.from_mapping(TWO_REGIONS))
    with pytest.raises(ConfigError, match='set "dataflow_integration": True'):
        LocalRuntime(infrastructure=infra).execute(workflow)
    assert infra.bus.writes == []
    on = FakeInfrastructure(EdgeConfig.from_mapping(WITH_DATAFLOW))
    results, _ = LocalRuntime(infrastructure=on).execute(workflow)
    assert results["create_user"]["result"]["key"] == "UserProfile:123"
    assert [key for key, _, _ in on.bus.writes] == ["UserProfile:123"]


def test_the_workflows_integration_setting_applies_when_the_runtime_has_no_config(
    shared: list[EdgeConfig],
) -> None:
    results, _ = LocalRuntime().execute(dataflow_builder(WITH_DATAFLOW).build())
    assert results["create_user"]["result"]["success"] is True
    assert [c.dataflow_integration for c in shared] == [True]


def test_a_workflow_without_dataflow_nodes_needs_no_integration() -> None:
    builder = WorkflowBuilder(TWO_REGIONS)
    builder.add_node("Passthrough", "p", {})
    results, _ = LocalRuntime().execute(builder.build(), {"p": {"input": 1}})
    assert results == {"p": {"result": 1}}
