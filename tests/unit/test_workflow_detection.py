"""Edge-node detection: the word Edge (or Edges) in a type name, EdgeNode subclasses,
has_edge_capabilities. Both sides of the name rule as tables and as properties: the
word anywhere among other words counts; "edge" inside another word never does."""

from __future__ import annotations

from typing import ClassVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

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
        "EdgesNode",  # the plural
        "MyEdgeCache",
        "EDGEReader",  # an acronym: the word in capitals
        "MyEDGECache",
        "GraphEdges",
        "EDGES",
    ],
)
def test_the_word_edge_or_edges_in_a_type_name_makes_an_edge_node(type_name: str) -> None:
    assert is_edge_node(type_name, None)


@pytest.mark.parametrize(
    "type_name",
    [
        "HedgeNode",
        "HedgeFundNode",
        "LedgerNode",
        "PledgeNode",
        "KnowledgeNode",
        "KnowledgeGraphNode",
        "KNOWLEDGEBase",
        "HEDGEFund",
        "EdgyNode",
        "EdgedNode",
        "DataProcessor",
        "edge_step",  # lower case: a @processing_node function's name
        "compute_edges",
        "",
    ],
)
def test_edge_inside_another_word_or_in_lower_case_is_not_an_edge_node(type_name: str) -> None:
    assert not is_edge_node(type_name, None)


def test_tokens_split_acronyms_words_and_digits() -> None:
    assert name_tokens("IoTEdgeNode") == ["Io", "T", "Edge", "Node"]
    assert name_tokens("EDGEProcessor") == ["EDGE", "Processor"]
    assert name_tokens("KnowledgeGraphNode") == ["Knowledge", "Graph", "Node"]
    assert name_tokens("EdgesNode") == ["Edges", "Node"]


# A CamelCase word that is not Edge(s): a capital, then lower-case letters (at least
# one: a lone capital next to an acronym reads as part of it, "EDGEA").
_OTHER_WORD = st.from_regex(r"[A-Z][a-z]{1,8}", fullmatch=True).filter(
    lambda w: w.lower() not in ("edge", "edges")
)
_LOWER = st.from_regex(r"[a-z]{1,6}", fullmatch=True)


@given(
    before=st.lists(_OTHER_WORD, max_size=3),
    after=st.lists(_OTHER_WORD, max_size=3),
    word=st.sampled_from(["Edge", "Edges", "EDGE", "EDGES"]),
)
def test_the_word_edge_among_any_other_words_is_detected(
    before: list[str], after: list[str], word: str
) -> None:
    assert is_edge_node("".join([*before, word, *after]), None)


@given(
    words=st.lists(_OTHER_WORD, max_size=3),
    prefix=_LOWER,
    suffix=_LOWER,
    where=st.integers(0, 3),
    shape=st.sampled_from(["prefix", "suffix", "both"]),
)
def test_edge_inside_another_word_is_never_detected(
    words: list[str], prefix: str, suffix: str, where: int, shape: str
) -> None:
    # "edge" glued to letters on either side makes another word: Hedge, Ledger, Edgy
    inner = {"prefix": prefix + "edge", "suffix": "edge" + suffix,
             "both": prefix + "edge" + suffix}[shape]
    word = inner[0].upper() + inner[1:]
    if word.lower() in ("edge", "edges"):  # "edge" + "s" is the plural: the other side
        return
    name = "".join([*words[:where], word, *words[where:]])
    assert not is_edge_node(name, None), name


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
