"""The built-in edge node types of the spec: ``EdgeDataNode`` and ``EdgeStateMachine``.

Importing this package registers both (``edgebus.workflow`` imports it). See
docs/nodes.md for their parameters and results.
"""

from edgebus.workflow.nodes.data import EdgeDataNode, EdgeDataParams
from edgebus.workflow.nodes.state import EdgeStateMachine, EdgeStateParams

__all__ = ["EdgeDataNode", "EdgeDataParams", "EdgeStateMachine", "EdgeStateParams"]
