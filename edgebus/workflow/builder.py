"""``WorkflowBuilder``: add nodes and connections, then ``build()`` a checked Workflow.

``build()`` checks everything at once and raises one
:class:`~edgebus.workflow.errors.WorkflowValidationError` listing every problem:
unknown node types (with a did-you-mean), duplicate node ids, missing, unknown or
invalid parameters (naming the node, its type and the field), connections to unknown
nodes or ports, input ports fed twice, and cycles (naming their nodes in order).

``WorkflowBuilder(edge_config)`` (the spec's troubleshooting advice) is optional: the
edge_config (anything :func:`~edgebus.config.load_config` takes: an EdgeConfig, a
dict, a JSON or TOML file path) is checked by ``build()``, which lists a bad one among
the problems, and carried on the built :class:`Workflow` (``workflow.edge_config``);
``LocalRuntime`` runs with it when the runtime itself was given none. With an
edge_config, ``build()`` also refuses DataFlow nodes unless it sets
``"dataflow_integration": True``. Without one, nothing config-dependent is checked
here: the runtime checks it when the run starts.
"""

from __future__ import annotations

import difflib
import heapq
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import ValidationError

from edgebus.config import EdgeConfig, load_config
from edgebus.errors import InvalidInput
from edgebus.workflow.dataflow_nodes import dataflow_integration_problem
from edgebus.workflow.detection import is_edge_node
from edgebus.workflow.errors import UnknownNodeType, WorkflowValidationError
from edgebus.workflow.node import Node, NodeParams
from edgebus.workflow.registry import node_class, registered

__all__ = ["Connection", "Workflow", "WorkflowBuilder", "WorkflowNode"]


class Connection(NamedTuple):
    """``source``'s output ``source_output`` feeds ``target``'s input ``target_input``."""

    source: str
    source_output: str
    target: str
    target_input: str

    def __str__(self) -> str:
        return f"{self.source}.{self.source_output} -> {self.target}.{self.target_input}"


@dataclass(frozen=True)
class WorkflowNode:
    """A checked node of a workflow: its id, type, class, validated params."""

    node_id: str
    type_name: str
    node_class: type[Node]
    params: NodeParams
    is_edge: bool

    def instantiate(self) -> Node:
        """A fresh node object for one run."""
        return self.node_class(self.node_id, self.params)


@dataclass(frozen=True)
class Workflow:
    """A built workflow: nodes in topological order, connections, its edge nodes, and
    the edge_config it was built with (None: none; the runtime's applies).

    Topological order is stable: among nodes whose inputs are ready, the one added
    first runs first.
    """

    nodes: tuple[WorkflowNode, ...]
    connections: tuple[Connection, ...]
    edge_node_ids: tuple[str, ...] = field(default=())
    edge_config: EdgeConfig | None = field(default=None, hash=False)

    @property
    def node_ids(self) -> tuple[str, ...]:
        """Node ids in execution (topological) order."""
        return tuple(n.node_id for n in self.nodes)

    def node(self, node_id: str) -> WorkflowNode:
        """The node with this id (KeyError if none)."""
        for n in self.nodes:
            if n.node_id == node_id:
                return n
        raise KeyError(node_id)

    def incoming(self, node_id: str) -> tuple[Connection, ...]:
        """The connections into ``node_id``."""
        return tuple(c for c in self.connections if c.target == node_id)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (nodes in execution order)."""
        return {
            "nodes": [
                {
                    "id": n.node_id,
                    "type": n.type_name,
                    "params": n.params.model_dump(mode="json"),
                    "edge": n.is_edge,
                }
                for n in self.nodes
            ],
            "connections": [c._asdict() for c in self.connections],
            "edge_node_ids": list(self.edge_node_ids),
        }


class _Spec(NamedTuple):
    type_name: str
    node_id: str
    params: Any


EdgeConfigSource = EdgeConfig | Mapping[str, Any] | str | Path


class WorkflowBuilder:
    """Collects nodes and connections; :meth:`build` checks them into a Workflow.

    ``edge_config`` (optional): the edge_config the workflow runs with when its
    runtime is given none; checked by :meth:`build` (see the module doc).
    """

    def __init__(self, edge_config: EdgeConfigSource | None = None) -> None:
        self._edge_config = edge_config
        self._specs: list[_Spec] = []
        self._connections: list[Connection] = []

    def add_node(
        self, type_name: str, node_id: str | None = None, params: Mapping[str, Any] | None = None
    ) -> str:
        """Add a node of a registered type; returns its id (generated when not given).

        Nothing is checked here: :meth:`build` reports every problem at once.
        """
        if node_id is None:
            node_id = f"{type_name}_{len(self._specs) + 1}"
        self._specs.append(_Spec(type_name, node_id, {} if params is None else params))
        return node_id

    def add_connection(
        self, source: str, source_output: str, target: str, target_input: str
    ) -> WorkflowBuilder:
        """Feed ``source``'s output port into ``target``'s input port; returns self."""
        self._connections.append(Connection(source, source_output, target, target_input))
        return self

    def build(self) -> Workflow:
        """Check everything and return the Workflow, or raise WorkflowValidationError."""
        problems: list[str] = []
        nodes: dict[str, WorkflowNode] = {}
        types: dict[str, str] = {}  # node id -> type name (also for unknown types)
        classes: dict[str, type[Node]] = {}
        order: dict[str, int] = {}
        for spec in self._specs:
            if not isinstance(spec.node_id, str) or not spec.node_id:
                problems.append(
                    f"Node of type {spec.type_name!r} has id {spec.node_id!r}: "
                    "a node id is a non-empty string."
                )
                continue
            if spec.node_id in types:
                problems.append(
                    f"Duplicate node id {spec.node_id!r}: used by a {types[spec.node_id]} "
                    f"and a {spec.type_name} node. Give each node a unique id."
                )
                continue
            types[spec.node_id] = str(spec.type_name)
            order[spec.node_id] = len(order)
            if not isinstance(spec.type_name, str):
                names = [k for k, v in registered().items() if v is spec.type_name]
                shown = names[0] if names else getattr(spec.type_name, "__name__", "?")
                problems.append(
                    f"Node {spec.node_id!r}: the node type is given by its registered name, "
                    f"a string: use {shown!r}, not {spec.type_name!r}."
                )
                continue
            try:
                cls = node_class(spec.type_name)
            except UnknownNodeType as e:
                problems.append(f"Node {spec.node_id!r}: {e}")
                continue
            classes[spec.node_id] = cls
            params = _validate_params(spec, cls, problems)
            if params is not None:
                nodes[spec.node_id] = WorkflowNode(
                    spec.node_id, spec.type_name, cls, params, is_edge_node(spec.type_name, cls)
                )

        edges = _check_connections(self._connections, types, classes, problems)
        problems.extend(_cycles(list(order), edges))
        config = _checked_config(self._edge_config, nodes.values(), problems)
        if problems:
            raise WorkflowValidationError(problems)

        ordered = _topological(list(order), edges)
        workflow_nodes = tuple(nodes[n] for n in ordered)
        return Workflow(
            nodes=workflow_nodes,
            connections=tuple(self._connections),
            edge_node_ids=tuple(n.node_id for n in workflow_nodes if n.is_edge),
            edge_config=config,
        )


def _checked_config(
    source: EdgeConfigSource | None, nodes: Iterable[WorkflowNode], problems: list[str]
) -> EdgeConfig | None:
    """The builder's edge_config, validated (None: none given, or invalid: reported),
    and the workflow's ``nodes`` checked against it (DataFlow nodes need
    ``dataflow_integration``)."""
    if source is None:
        return None
    if not isinstance(source, EdgeConfig | Mapping | str | Path):
        problems.append(
            "WorkflowBuilder(edge_config) takes an EdgeConfig, a dict or the path of a "
            f"JSON or TOML file, got {type(source).__name__}."
        )
        return None
    try:
        config = load_config(source)
    except InvalidInput as e:  # ConfigError: an unknown key, a bad value, a bad file
        problems.append(f"WorkflowBuilder(edge_config): {e}")
        return None
    dataflow = dataflow_integration_problem(config, nodes)
    if dataflow is not None:
        problems.append(dataflow)
    return config


def _validate_params(spec: _Spec, cls: type[Node], problems: list[str]) -> NodeParams | None:
    where = f"Node {spec.node_id!r} ({spec.type_name})"
    if not isinstance(spec.params, Mapping):
        problems.append(
            f"{where}: params must be a mapping of parameter name -> value, got "
            f"{type(spec.params).__name__}."
        )
        return None
    try:
        return cls.Params.model_validate(dict(spec.params))
    except ValidationError as e:
        fields = list(cls.Params.model_fields)
        valid = ", ".join(fields) or "none"
        for err in e.errors():
            name = ".".join(str(p) for p in err["loc"]) or "params"
            if err["type"] == "missing":
                problems.append(f"{where}: missing required parameter {name!r}.")
            elif err["type"] == "extra_forbidden":
                near = difflib.get_close_matches(str(err["loc"][0]), fields, n=1, cutoff=0.6)
                hint = f" (did you mean {near[0]!r}?)" if near else ""
                problems.append(
                    f"{where}: unknown parameter {name!r}{hint}. Valid parameters: {valid}."
                )
            else:
                msg = err["msg"].removeprefix("Value error, ")
                problems.append(
                    f"{where}: invalid parameter {name!r}: {msg} (got {err.get('input')!r})."
                )
        return None


def _check_connections(
    connections: Sequence[Connection],
    types: Mapping[str, str],
    classes: Mapping[str, type[Node]],
    problems: list[str],
) -> list[tuple[str, str]]:
    """Report bad connections; return the (source, target) edges between known nodes."""
    edges: list[tuple[str, str]] = []
    fed: dict[tuple[str, str], Connection] = {}
    ids = list(types)
    for conn in connections:
        bad = False
        for role, node_id in (("source", conn.source), ("target", conn.target)):
            if node_id not in types:
                near = difflib.get_close_matches(str(node_id), ids, n=1, cutoff=0.6)
                hint = f" (did you mean {near[0]!r}?)" if near else ""
                problems.append(
                    f"Connection {conn}: unknown {role} node {node_id!r}{hint}. "
                    f"Nodes: {', '.join(ids) or 'none'}."
                )
                bad = True
        if bad:
            continue
        edges.append((conn.source, conn.target))
        src_cls, dst_cls = classes.get(conn.source), classes.get(conn.target)
        if src_cls is not None and conn.source_output not in src_cls.outputs:
            problems.append(
                f"Connection {conn}: node {conn.source!r} ({types[conn.source]}) has no "
                f"output {conn.source_output!r}; its outputs: "
                f"{', '.join(src_cls.outputs) or 'none'}."
            )
        if (
            dst_cls is not None
            and not dst_cls.accepts_any_input
            and conn.target_input not in dst_cls.inputs
        ):
            problems.append(
                f"Connection {conn}: node {conn.target!r} ({types[conn.target]}) has no "
                f"input {conn.target_input!r}; its inputs: "
                f"{', '.join(dst_cls.inputs) or 'none'}."
            )
        port = (conn.target, conn.target_input)
        first = fed.get(port)
        if first is not None:
            problems.append(
                f"Input {conn.target}.{conn.target_input} is fed twice: by "
                f"{first.source}.{first.source_output} and by "
                f"{conn.source}.{conn.source_output}. Connect each input once "
                "(a Merge node combines several values)."
            )
        else:
            fed[port] = conn
    return edges


def _successors(nodes: Sequence[str], edges: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    succ: dict[str, list[str]] = {n: [] for n in nodes}
    for src, dst in edges:
        if dst not in succ[src]:
            succ[src].append(dst)
    return succ


def _topological(nodes: Sequence[str], edges: Sequence[tuple[str, str]]) -> list[str]:
    """Kahn's algorithm; among ready nodes the earliest added goes first."""
    index = {n: i for i, n in enumerate(nodes)}
    succ = _successors(nodes, edges)
    indegree = dict.fromkeys(nodes, 0)
    for src in nodes:
        for dst in succ[src]:
            indegree[dst] += 1
    ready = [index[n] for n in nodes if indegree[n] == 0]
    heapq.heapify(ready)
    out: list[str] = []
    while ready:
        node = nodes[heapq.heappop(ready)]
        out.append(node)
        for dst in succ[node]:
            indegree[dst] -= 1
            if indegree[dst] == 0:
                heapq.heappush(ready, index[dst])
    return out


def _cycles(nodes: Sequence[str], edges: Sequence[tuple[str, str]]) -> list[str]:
    """One problem per strongly connected component that holds a cycle."""
    succ = _successors(nodes, edges)
    problems = []
    for component in _components(nodes, succ):
        start = component[0]
        if len(component) == 1 and start not in succ[start]:
            continue
        path = _cycle_through(start, set(component), succ)
        problems.append(
            f"Cycle: {' -> '.join([*path, start])}. A workflow must be acyclic: "
            "remove one of these connections."
        )
    return problems


def _components(nodes: Sequence[str], succ: Mapping[str, list[str]]) -> list[list[str]]:
    """Strongly connected components (Tarjan, iterative), each in insertion order,
    listed by their earliest node."""
    index = {n: i for i, n in enumerate(nodes)}
    low: dict[str, int] = {}
    num: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in nodes:
        if root in num:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                num[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            children = succ[node]
            if i < len(children):
                work.append((node, i + 1))
                child = children[i]
                if child not in num:
                    work.append((child, 0))
                elif child in on_stack:
                    low[node] = min(low[node], num[child])
                continue
            if low[node] == num[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                found.append(sorted(component, key=index.__getitem__))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return sorted(found, key=lambda c: index[c[0]])


def _cycle_through(start: str, members: set[str], succ: Mapping[str, list[str]]) -> list[str]:
    """The shortest path start -> ... back to start inside one component (BFS)."""
    parent: dict[str, str] = {}
    frontier = [start]
    seen = {start}
    while frontier:
        nxt: list[str] = []
        for node in frontier:
            for child in succ[node]:
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return list(reversed(path))
                if child in members and child not in seen:
                    seen.add(child)
                    parent[child] = node
                    nxt.append(child)
        frontier = nxt
    return [start]  # unreachable for a real component
