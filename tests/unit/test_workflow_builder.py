"""WorkflowBuilder.build(): every validation problem, reported together, and the order."""

from __future__ import annotations

from typing import ClassVar, Literal

import pytest

from edgebus.errors import InvalidInput
from edgebus.workflow import (
    EdgeNode,
    Node,
    NodeParams,
    Workflow,
    WorkflowBuilder,
    WorkflowValidationError,
    register_node,
)
from tests.unit.workflow_graphs import connect, graph


@register_node("BuilderTestStore")
class Store(Node):
    class Params(NodeParams):
        action: Literal["write", "read"]
        replication_factor: int = 1
        consistency: str = "eventual"

    inputs: ClassVar[tuple[str, ...]] = ("data", "key")
    outputs: ClassVar[tuple[str, ...]] = ("result", "receipt")


@register_node("BuilderTestEdgeWriter")
class EdgeWriter(EdgeNode):
    pass


def build_errors(builder: WorkflowBuilder) -> list[str]:
    with pytest.raises(WorkflowValidationError) as info:
        builder.build()
    return list(info.value.problems)


def chain(*ids: str) -> WorkflowBuilder:
    """Passthrough nodes ``ids``, not connected."""
    return graph(dict.fromkeys(ids, "Passthrough"))


def test_add_node_returns_the_id_given_or_a_generated_one() -> None:
    builder = WorkflowBuilder()
    assert builder.add_node("Passthrough", "first", {}) == "first"
    generated = builder.add_node("Passthrough")
    assert generated == "Passthrough_2"
    assert builder.build().node_ids == ("first", "Passthrough_2")


def test_a_valid_workflow_builds_with_validated_params_and_edge_nodes() -> None:
    builder = WorkflowBuilder()
    builder.add_node("BuilderTestStore", "store", {"action": "write", "replication_factor": "3"})
    builder.add_node("BuilderTestEdgeWriter", "writer", {})
    builder.add_connection("store", "receipt", "writer", "input")
    workflow = builder.build()
    assert isinstance(workflow, Workflow)
    store = workflow.node("store")
    assert store.params.model_dump() == {
        "action": "write",
        "replication_factor": 3,
        "consistency": "eventual",
    }
    assert not store.is_edge
    assert workflow.edge_node_ids == ("writer",)


def test_workflow_is_frozen_and_describes_itself_as_a_dict() -> None:
    workflow = connect(chain("a", "b"), "a.result -> b.input").build()
    with pytest.raises(AttributeError):
        workflow.nodes = ()  # type: ignore[misc]
    assert workflow.to_dict() == {
        "nodes": [
            {"id": "a", "type": "Passthrough", "params": {}, "edge": False},
            {"id": "b", "type": "Passthrough", "params": {}, "edge": False},
        ],
        "connections": [
            {"source": "a", "source_output": "result", "target": "b", "target_input": "input"}
        ],
        "edge_node_ids": [],
    }


def test_nodes_are_in_topological_order_stable_by_insertion() -> None:
    builder = graph(
        dict.fromkeys(("sink", "left", "source", "right"), "Merge"),
        "source.result -> left.x", "source.result -> right.x",
        "left.result -> sink.a", "right.result -> sink.b",
    )
    assert builder.build().node_ids == ("source", "left", "right", "sink")


def test_independent_nodes_keep_insertion_order() -> None:
    assert chain("c", "a", "b").build().node_ids == ("c", "a", "b")


def test_unknown_node_type_is_reported_with_did_you_mean_and_the_registered_types() -> None:
    builder = WorkflowBuilder()
    builder.add_node("Pasthrough", "p", {})
    (problem,) = build_errors(builder)
    assert "Node 'p': Unknown node type 'Pasthrough' (did you mean 'Passthrough'?)" in problem
    assert "Registered node types:" in problem
    assert "Merge" in problem
    assert "@register_node()" in problem


def test_a_case_slip_in_the_type_name_still_gets_a_suggestion() -> None:
    builder = WorkflowBuilder()
    builder.add_node("merge", "m", {})
    (problem,) = build_errors(builder)
    assert "(did you mean 'Merge'?)" in problem


def test_duplicate_node_id_names_both_types() -> None:
    builder = WorkflowBuilder()
    builder.add_node("Passthrough", "x", {})
    builder.add_node("Merge", "x", {})
    (problem,) = build_errors(builder)
    assert problem == (
        "Duplicate node id 'x': used by a Passthrough and a Merge node. "
        "Give each node a unique id."
    )


def test_missing_parameter_names_node_type_and_field() -> None:
    builder = WorkflowBuilder()
    builder.add_node("BuilderTestStore", "store", {})
    (problem,) = build_errors(builder)
    assert problem == "Node 'store' (BuilderTestStore): missing required parameter 'action'."


def test_invalid_parameter_names_node_type_field_and_value() -> None:
    builder = WorkflowBuilder()
    builder.add_node("BuilderTestStore", "store", {"action": "delete", "replication_factor": "x"})
    problems = build_errors(builder)
    assert len(problems) == 2
    assert problems[0].startswith("Node 'store' (BuilderTestStore): invalid parameter 'action':")
    assert "'write' or 'read'" in problems[0]
    assert "(got 'delete')" in problems[0]
    assert problems[1].startswith(
        "Node 'store' (BuilderTestStore): invalid parameter 'replication_factor':"
    )


def test_unknown_parameter_gets_did_you_mean_and_the_valid_ones() -> None:
    builder = WorkflowBuilder()
    builder.add_node("BuilderTestStore", "store", {"action": "write", "consistancy": "strong"})
    (problem,) = build_errors(builder)
    assert problem == (
        "Node 'store' (BuilderTestStore): unknown parameter 'consistancy' "
        "(did you mean 'consistency'?). Valid parameters: action, replication_factor, "
        "consistency."
    )


def test_params_that_are_not_a_mapping_are_reported() -> None:
    builder = WorkflowBuilder()
    builder.add_node("Passthrough", "p", ["input"])  # type: ignore[arg-type]
    (problem,) = build_errors(builder)
    assert "Node 'p' (Passthrough): params must be a mapping" in problem


def test_connection_to_unknown_node_suggests_the_nearest_node_id() -> None:
    (problem,) = build_errors(connect(chain("reader", "writer"), "reader.result -> writter.input"))
    assert problem == (
        "Connection reader.result -> writter.input: unknown target node 'writter' "
        "(did you mean 'writer'?). Nodes: reader, writer."
    )


def test_connection_from_unknown_source_node_is_reported() -> None:
    (problem,) = build_errors(connect(chain("a"), "zzz.result -> a.input"))
    assert problem.startswith("Connection zzz.result -> a.input: unknown source node 'zzz'.")


def test_connection_to_unknown_ports_names_the_valid_ports() -> None:
    builder = WorkflowBuilder()
    builder.add_node("BuilderTestStore", "store", {"action": "read"})
    builder.add_node("Passthrough", "p", {})
    problems = build_errors(connect(builder, "store.output -> p.data"))
    assert problems == [
        "Connection store.output -> p.data: node 'store' (BuilderTestStore) has no output "
        "'output'; its outputs: result, receipt.",
        "Connection store.output -> p.data: node 'p' (Passthrough) has no input 'data'; "
        "its inputs: input.",
    ]


def test_a_node_that_accepts_any_input_takes_any_port_name() -> None:
    builder = graph({"p": "Passthrough", "m": "Merge"}, "p.result -> m.whatever")
    assert builder.build().node_ids == ("p", "m")


def test_an_input_port_fed_twice_is_reported() -> None:
    builder = connect(chain("a", "b", "c"), "a.result -> c.input", "b.result -> c.input")
    (problem,) = build_errors(builder)
    assert problem == (
        "Input c.input is fed twice: by a.result and by b.result. Connect each input once "
        "(a Merge node combines several values)."
    )


def test_a_cycle_is_reported_with_its_nodes_in_order() -> None:
    builder = connect(
        chain("start", "a", "b", "c"),
        "start.result -> a.input", "a.result -> b.input", "b.result -> c.input",
    )
    builder.add_node("Merge", "m", {})
    # Passthrough has no 'extra'
    problems = build_errors(connect(builder, "c.result -> m.x", "m.result -> a.extra"))
    assert "Cycle: a -> b -> c -> m -> a. A workflow must be acyclic" in problems[-1]


def test_a_self_loop_is_a_cycle() -> None:
    (problem,) = build_errors(graph({"m": "Merge"}, "m.result -> m.again"))
    assert problem.startswith("Cycle: m -> m.")


def test_each_separate_cycle_is_reported() -> None:
    builder = graph(
        dict.fromkeys(("a", "b", "c", "d"), "Merge"),
        "a.result -> b.x", "b.result -> a.x", "c.result -> d.x", "d.result -> c.x",
    )
    problems = build_errors(builder)
    assert [p.split(".")[0] for p in problems] == ["Cycle: a -> b -> a", "Cycle: c -> d -> c"]


def test_all_problems_are_reported_in_one_error_whose_message_lists_them() -> None:
    builder = graph(
        {"a": "Pasthrough", "store": "BuilderTestStore", "m": "Merge"},
        "m.result -> m.loop", "store.result -> nowhere.input",
    )
    with pytest.raises(WorkflowValidationError) as info:
        builder.build()
    error = info.value
    assert len(error.problems) == 4
    assert isinstance(error, InvalidInput)
    assert error.exit_code == 2
    message = str(error)
    assert message.startswith("Invalid workflow: 4 problems. Fix them and build again:")
    for problem in error.problems:
        assert f"  - {problem}" in message


def test_building_twice_gives_equal_independent_workflows() -> None:
    builder = connect(chain("a", "b"), "a.result -> b.input")
    first, second = builder.build(), builder.build()
    assert first == second
    assert first is not second


def test_a_node_type_given_as_a_class_asks_for_its_name() -> None:
    builder = WorkflowBuilder()
    builder.add_node(Store, "s", {})  # type: ignore[arg-type]
    (problem,) = build_errors(builder)
    assert problem.startswith(
        "Node 's': the node type is given by its registered name, a string: use 'BuilderTestStore'"
    )
