"""The node registry: @register_node, @processing_node, lookups with did-you-mean."""

from __future__ import annotations

from typing import Any

import pytest

from edgebus.workflow import (
    Merge,
    Node,
    Passthrough,
    UnknownNodeType,
    WorkflowBuilder,
    WorkflowValidationError,
    node_class,
    processing_node,
    register_node,
    registered,
)
from tests.unit.workflow_graphs import graph


def test_register_node_uses_the_class_name_by_default() -> None:
    @register_node()
    class RegistryTestDefaultName(Node):
        pass

    assert node_class("RegistryTestDefaultName") is RegistryTestDefaultName
    assert registered()["RegistryTestDefaultName"] is RegistryTestDefaultName


def test_registering_the_same_class_again_is_harmless() -> None:
    class Again(Node):
        pass

    register_node("RegistryTestAgain")(Again)
    assert register_node("RegistryTestAgain")(Again) is Again


def test_a_taken_name_with_another_class_is_refused_naming_both_classes() -> None:
    @register_node("RegistryTestTaken")
    class First(Node):
        pass

    class Second(Node):
        pass

    with pytest.raises(ValueError) as info:
        register_node("RegistryTestTaken")(Second)
    message = str(info.value)
    assert "already registered to" in message
    assert f"{__name__}." in message
    assert "First" in message
    assert "Second" in message
    assert node_class("RegistryTestTaken") is First


def test_only_node_classes_can_be_registered() -> None:
    with pytest.raises(TypeError, match="decorates Node subclasses"):
        register_node("RegistryTestNotANode")(dict)  # type: ignore[type-var]


def test_an_unknown_type_is_an_invalid_input_with_did_you_mean() -> None:
    with pytest.raises(UnknownNodeType) as info:
        node_class("Passtrough")
    error = info.value
    assert error.exit_code == 2
    assert error.suggestion == "Passthrough"
    assert "Merge" in error.known
    assert str(error).startswith("Unknown node type 'Passtrough' (did you mean 'Passthrough'?).")


def test_the_builtin_nodes_are_registered() -> None:
    assert node_class("Passthrough") is Passthrough
    assert node_class("Merge") is Merge


def test_a_processing_node_takes_its_ports_and_params_from_the_function() -> None:
    @processing_node("registry_test_greet")
    def greet(name: str, greeting: str = "hello") -> str:
        return f"{greeting} {name}"

    assert greet.inputs == ("name", "greeting")
    assert greet.outputs == ("result",)
    assert node_class("registry_test_greet") is greet
    assert greet.__name__ == "registry_test_greet"


def test_a_processing_node_checks_its_params_against_the_annotations() -> None:
    @processing_node("registry_test_typed")
    def typed(count: int) -> int:
        return count

    builder = WorkflowBuilder()
    builder.add_node("registry_test_typed", "t", {"count": "many", "extra": 1})
    with pytest.raises(WorkflowValidationError) as info:
        builder.build()
    problems = info.value.problems
    assert problems[0].startswith("Node 't' (registry_test_typed): invalid parameter 'count':")
    assert problems[1].startswith("Node 't' (registry_test_typed): unknown parameter 'extra'.")


def test_a_processing_node_with_kwargs_accepts_any_input_port() -> None:
    @processing_node("registry_test_collect")
    def collect(**values: Any) -> dict[str, Any]:
        return values

    builder = graph({"p": "Passthrough", "c": "registry_test_collect"}, "p.result -> c.anything")
    assert builder.build().node_ids == ("p", "c")


def test_processing_node_default_name_is_the_function_name() -> None:
    @processing_node()
    def registry_test_named() -> None:
        return None

    assert "registry_test_named" in registered()
