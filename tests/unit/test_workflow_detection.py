"""Edge-node detection: CamelCase "Edge" tokens, EdgeNode subclasses, has_edge_capabilities."""

from __future__ import annotations

from typing import ClassVar

import pytest

from edgebus.workflow import EdgeNode, Node, is_edge_node
from edgebus.workflow.detection import name_tokens


@pytest.mark.parametrize(
    "type_name",
    [
        "EdgeDataNode",
        "EdgeStateMachine",
        "EdgeMonitoringNode",
        "MyCustomEdgeNode",
        "CustomEdgeProcessor",
        "IoTEdgeNode",
        "HTTPEdge",
        "Edge",
        "Edge2Node",
    ],
)
def test_a_camelcase_edge_token_makes_an_edge_node(type_name: str) -> None:
    assert is_edge_node(type_name, None)


@pytest.mark.parametrize(
    "type_name",
    [
        "HedgeNode",
        "LedgerNode",
        "KnowledgeGraphNode",
        "EdgyNode",
        "DataProcessor",
        "EdgesNode",
        "EDGEProcessor",  # an acronym token, documented as not "Edge"
        "edge_step",  # not CamelCase
        "",
    ],
)
def test_edge_inside_another_word_or_an_acronym_is_not_an_edge_node(type_name: str) -> None:
    assert not is_edge_node(type_name, None)


def test_tokens_split_acronyms_words_and_digits() -> None:
    assert name_tokens("IoTEdgeNode") == ["Io", "T", "Edge", "Node"]
    assert name_tokens("EDGEProcessor") == ["EDGE", "Processor"]
    assert name_tokens("KnowledgeGraphNode") == ["Knowledge", "Graph", "Node"]


def test_an_edge_node_subclass_is_an_edge_node_whatever_its_name() -> None:
    class Compliance(EdgeNode):
        pass

    assert is_edge_node("Compliance", Compliance)
    assert is_edge_node("HedgeNode", Compliance)


def test_a_truthy_has_edge_capabilities_makes_an_edge_node() -> None:
    class Sensor(Node):
        has_edge_capabilities: ClassVar[bool] = True

    class Plain:
        has_edge_capabilities = 1

    assert is_edge_node("Sensor", Sensor)
    assert is_edge_node("Plain", Plain)


def test_a_plain_node_class_with_a_non_edge_name_is_not_an_edge_node() -> None:
    class LedgerNode(Node):
        pass

    assert not is_edge_node("LedgerNode", LedgerNode)
    assert not is_edge_node("LedgerNode", object)
