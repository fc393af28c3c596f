"""The built-in edge node types of the spec: ``EdgeDataNode``, ``EdgeStateMachine``
and ``EdgeMonitoringNode``.

Importing this package registers them (``edgebus.workflow`` imports it). See
docs/nodes.md for their parameters and results.
"""

from edgebus.workflow.nodes.data import EdgeDataNode, EdgeDataParams
from edgebus.workflow.nodes.monitoring import EdgeMonitoringNode, EdgeMonitoringParams
from edgebus.workflow.nodes.state import EdgeStateMachine, EdgeStateParams

__all__ = [
    "EdgeDataNode",
    "EdgeDataParams",
    "EdgeMonitoringNode",
    "EdgeMonitoringParams",
    "EdgeStateMachine",
    "EdgeStateParams",
]
