"""Which nodes are edge nodes (they get the shared edge infrastructure).

A node is an edge node when any of these holds:

1. its type name contains the *word* Edge (the spec: "Checking node type names for
   'Edge' keyword"). The name is split into words at case changes: a capitalised word
   (``Edge``), an acronym (a run of capitals: ``EDGE``, ``HTTP``), a lower-case run or
   digits. The name has the word when one of its words that starts with a capital is,
   ignoring case, ``edge`` or its plural ``edges``: ``EdgeDataNode``,
   ``EdgeStateMachine``, ``MyCustomEdgeNode``, ``MyEdgeCache``, ``IoTEdgeNode``,
   ``EdgesNode``, ``EDGEReader``, ``HTTPEdge``, ``Edge2Node``, ``Edge``;
2. its class is an :class:`~edgebus.workflow.node.EdgeNode` subclass;
3. its class has a truthy ``has_edge_capabilities`` attribute.

Words, not substrings: "edge" inside another word does not count, so
``KnowledgeNode`` (Knowledge, Node), ``HedgeFundNode`` (Hedge, Fund, Node),
``LedgerNode``, ``PledgeNode``, ``EdgyNode`` and ``KNOWLEDGEBase`` are not edge nodes.
Lower-case words do not count either: ``edge_step`` and ``compute_edges`` are the
names of ``@processing_node`` functions, which have no ``self.infrastructure`` to use,
so making them edge nodes by name would only make their runs need a broker. A class
that means to be an edge node whatever its name says so with rule 2 or 3.
"""

from __future__ import annotations

import re

__all__ = ["EDGE_WORDS", "is_edge_node", "name_tokens"]

# an acronym (capitals not followed by a lower-case letter), a capitalised word,
# a lower-case word, or digits
_TOKEN = re.compile(r"[A-Z]+(?![a-z])|[A-Z][a-z]*|[a-z]+|[0-9]+")

#: the words (compared ignoring case) that make a type name an edge node's
EDGE_WORDS: frozenset[str] = frozenset({"edge", "edges"})


def name_tokens(type_name: str) -> list[str]:
    """CamelCase tokens: ``"IoTEdgeNode"`` -> ``["Io", "T", "Edge", "Node"]``."""
    return _TOKEN.findall(type_name)


def _names_edge(type_name: str) -> bool:
    """Whether the type name has the word Edge (rule 1 of the module doc)."""
    return any(
        token[0].isupper() and token.lower() in EDGE_WORDS for token in name_tokens(type_name)
    )


def is_edge_node(type_name: str, cls: type | None = None) -> bool:
    """Whether a node of this type name (and class, when known) is an edge node."""
    if _names_edge(type_name):
        return True
    if cls is None:
        return False
    from edgebus.workflow.node import EdgeNode

    if isinstance(cls, type) and issubclass(cls, EdgeNode):
        return True
    return bool(getattr(cls, "has_edge_capabilities", False))
