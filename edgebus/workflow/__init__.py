"""The workflow API of the spec: build a workflow of nodes, run it locally.

::

    from edgebus.workflow import LocalRuntime, WorkflowBuilder

    builder = WorkflowBuilder()
    builder.add_node("Passthrough", "first", {})
    builder.add_node("Merge", "merge", {})
    builder.add_connection("first", "result", "merge", "a")
    results, run_id = LocalRuntime().execute(
        builder.build(), parameters={"first": {"input": 42}}
    )
    results["merge"]["result"]  # {'a': 42}

Edge nodes (see :func:`is_edge_node`) get the shared :class:`EdgeInfrastructure` of
the run's edge_config (the runtime's, else ``WorkflowBuilder(edge_config)``'s), started
and injected by the runtime. A failed run raises a :class:`WorkflowExecutionError` that
is also an instance of its cause's class (see :mod:`edgebus.workflow.errors`).
"""

from edgebus.workflow.builder import Connection, Workflow, WorkflowBuilder, WorkflowNode
from edgebus.workflow.detection import is_edge_node
from edgebus.workflow.errors import (
    NodeNotInitialized,
    UnknownNodeType,
    WorkflowExecutionError,
    WorkflowValidationError,
)
from edgebus.workflow.infrastructure import EdgeInfrastructure
from edgebus.workflow.node import EdgeNode, EdgeNodeParams, Node, NodeParams
from edgebus.workflow.nodes import EdgeDataNode, EdgeMonitoringNode, EdgeStateMachine
from edgebus.workflow.registry import (
    Merge,
    Passthrough,
    node_class,
    processing_node,
    register_node,
    registered,
)
from edgebus.workflow.runtime import LocalRuntime

__all__ = [
    "Connection",
    "EdgeDataNode",
    "EdgeInfrastructure",
    "EdgeMonitoringNode",
    "EdgeNode",
    "EdgeNodeParams",
    "EdgeStateMachine",
    "LocalRuntime",
    "Merge",
    "Node",
    "NodeNotInitialized",
    "NodeParams",
    "Passthrough",
    "UnknownNodeType",
    "Workflow",
    "WorkflowBuilder",
    "WorkflowExecutionError",
    "WorkflowNode",
    "WorkflowValidationError",
    "is_edge_node",
    "node_class",
    "processing_node",
    "register_node",
    "registered",
]
