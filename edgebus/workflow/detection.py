"""Which nodes are edge nodes (they get the shared edge infrastructure).

A node is an edge node when any of these holds:

1. its type name has a CamelCase token that is exactly ``Edge``: ``EdgeDataNode``,
   ``EdgeStateMachine``, ``MyCustomEdgeNode``, ``IoTEdgeNode``, ``Edge``;
2. its class is an :class:`~edgebus.workflow.node.EdgeNode` subclass;
3. its class has a truthy ``has_edge_capabilities`` attribute.

Tokens, not substrings: ``HedgeNode`` (Hedge, Node), ``LedgerNode`` (Ledger, Node),
``KnowledgeGraphNode`` (Knowledge, Graph, Node) and ``EdgyNode`` (Edgy, Node) are not
edge nodes, although "edge" occurs in their names. A run of capitals is an acronym
token, so ``EDGEProcessor`` is (EDGE, Processor) and is *not* an edge node by name:
``EDGE`` reads as an acronym of something else, and a class that means to be an edge
node says so with rule 2 or 3. Lower-case and snake_case names (``edge_step``) are
not edge nodes by name either: the rule is about CamelCase type names.
"""

from __future__ import annotations

import re

__all__ = ["is_edge_node", "name_tokens"]

# an acronym (capitals not followed by a lower-case letter), a capitalised word,
# a lower-case word, or digits
_TOKEN = re.compile(r"[A-Z]+(?![a-z])|[A-Z][a-z]*|[a-z]+|[0-9]+")


def name_tokens(type_name: str) -> list[str]:
    """CamelCase tokens: ``"IoTEdgeNode"`` -> ``["Io", "T", "Edge", "Node"]``."""
    return _TOKEN.findall(type_name)


def is_edge_node(type_name: str, cls: type | None = None) -> bool:
    """Whether a node of this type name (and class, when known) is an edge node."""
    if "Edge" in name_tokens(type_name):
        return True
    if cls is None:
        return False
    from edgebus.workflow.node import EdgeNode

    if isinstance(cls, type) and issubclass(cls, EdgeNode):
        return True
    return bool(getattr(cls, "has_edge_capabilities", False))
