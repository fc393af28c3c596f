"""Workflow graphs for the tests, written the way the builder's messages write them:
nodes by id and type, connections as ``"source.output -> target.input"``."""

from __future__ import annotations

from collections.abc import Mapping

from edgebus.workflow import WorkflowBuilder

__all__ = ["connect", "graph"]


def connect(builder: WorkflowBuilder, *connections: str) -> WorkflowBuilder:
    """Add ``connections`` to ``builder`` in order, each ``"source.output ->
    target.input"``; returns the builder."""
    for connection in connections:
        source, target = connection.split(" -> ")
        source_node, output = source.split(".")
        target_node, input_port = target.split(".")
        builder.add_connection(source_node, output, target_node, input_port)
    return builder


def graph(nodes: Mapping[str, str], *connections: str) -> WorkflowBuilder:
    """A builder with ``nodes`` (node id -> type name, each with empty params, in
    order), then ``connections`` (as for :func:`connect`)."""
    builder = WorkflowBuilder()
    for node_id, type_name in nodes.items():
        builder.add_node(type_name, node_id, {})
    return connect(builder, *connections)
