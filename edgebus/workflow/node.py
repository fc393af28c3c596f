"""Workflow nodes: the :class:`Node` base and the :class:`EdgeNode` base.

A node type is a class with typed parameters (a pydantic model, checked when the
workflow is built), named input and output ports, and a run method::

    @register_node()
    class Scale(Node):
        class Params(NodeParams):
            factor: float = 2.0

        inputs = ("value",)
        outputs = ("result",)

        def run(self, value: float) -> dict[str, float]:
            return {"result": value * self.params.factor}

``async_run`` is what the runtime calls; the base's ``async_run`` runs the sync
``run`` in a worker thread, so a blocking ``run`` never stalls the event loop.

An :class:`EdgeNode` gets the shared :class:`~edgebus.workflow.EdgeInfrastructure`
for the runtime's edge_config: the runtime calls :meth:`EdgeNode.initialize` once,
before the node runs.

What an edge node's ``run``/``async_run`` receives (the spec's custom EdgeNode reads
``kwargs.get("data")``): its own ``data`` param as ``data`` (when set; a custom edge
node's params are :class:`EdgeNodeParams`, which hold ``data``), and each connected
output or run-time parameter under its input port's name (``input``). The two never
replace each other: a node with its own ``data`` and a connected ``input`` gets both,
``data`` being what the node itself was configured with and ``input`` what flowed in,
and decides how they combine (pass both to :meth:`EdgeNode.ensure_compliance` to place
by the classes of both).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

from edgebus.core.classification import Classification
from edgebus.core.placement import ComplianceRules, Placement, place
from edgebus.errors import InvalidInput
from edgebus.workflow.errors import NodeNotInitialized
from edgebus.workflow.placement_options import (
    PLACEMENT_OPTIONS,
    check_placement_options,
    classify_for_placement,
    placement_request,
)

if TYPE_CHECKING:
    from edgebus.config import EdgeConfig

__all__ = ["PLACEMENT_OPTIONS", "EdgeNode", "EdgeNodeParams", "Node", "NodeParams"]

edge_log = logging.getLogger("edgebus.edge")


class NodeParams(BaseModel):
    """Base of every node's ``Params``: unknown fields are refused, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Node:
    """Base of every node type.

    Subclasses declare ``class Params(NodeParams)``, the ``inputs`` and ``outputs``
    port names, and implement ``async def async_run(self, **inputs)`` or a sync
    ``run(**inputs)``; either returns a mapping of output port -> value.
    """

    Params: ClassVar[type[NodeParams]] = NodeParams
    inputs: ClassVar[tuple[str, ...]] = ("input",)
    outputs: ClassVar[tuple[str, ...]] = ("result",)
    #: accept connections into any input port name (the inputs are free-form)
    accepts_any_input: ClassVar[bool] = False
    #: an edge node gets the shared edge infrastructure (see :mod:`~.detection`)
    has_edge_capabilities: ClassVar[bool] = False

    def __init__(self, node_id: str, params: NodeParams | Mapping[str, Any] | None = None) -> None:
        """``params`` is validated against ``Params`` (pydantic's ValidationError if bad)."""
        self.node_id = node_id
        if isinstance(params, self.Params):
            self.params: NodeParams = params
        else:
            self.params = self.Params.model_validate(dict(params or {}))

    def static_inputs(self) -> dict[str, Any]:
        """Input values that come from the node's own parameters (none by default).

        The runtime passes them to ``async_run``; connected outputs and run-time
        parameters override them.
        """
        return {}

    async def async_run(self, **inputs: Any) -> Mapping[str, Any]:
        """Run the node; by default the sync :meth:`run` in a worker thread."""
        return await asyncio.to_thread(self.run, **inputs)

    def run(self, **inputs: Any) -> Mapping[str, Any]:
        """Synchronous body of the node; override this or :meth:`async_run`."""
        raise NotImplementedError(
            f"{type(self).__name__} implements neither async_run nor run: override one of "
            "them to return a mapping of output port -> value"
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(node_id={self.node_id!r}, params={self.params!r})"


class EdgeNodeParams(NodeParams):
    """The params of a custom edge node that declares none of its own: ``data``, the
    payload it works on, handed to ``run``/``async_run`` as ``data``. A custom edge
    node with more params derives its ``Params`` from this class."""

    data: Any = None


class EdgeNode(Node):
    """Base of custom edge nodes: the runtime injects the shared edge infrastructure.

    ``infrastructure`` is None until the runtime awaits :meth:`initialize` (once per
    node, before it runs); :meth:`ensure_compliance` classifies data and places it
    with the infrastructure's compliance rules. ``run``/``async_run`` receive the
    node's ``data`` param as ``data`` beside its inputs (see the module doc).
    """

    Params: ClassVar[type[NodeParams]] = EdgeNodeParams
    has_edge_capabilities: ClassVar[bool] = True

    def __init__(self, node_id: str, params: NodeParams | Mapping[str, Any] | None = None) -> None:
        super().__init__(node_id, params)
        self._infrastructure: Any = None

    def static_inputs(self) -> dict[str, Any]:
        """``{"data": <the data param>}`` when the node's params hold a ``data`` that is
        set (nothing otherwise): a node's own payload reaches ``run``/``async_run`` as
        ``data``, beside the connected ``input``, which never replaces it."""
        data = getattr(self.params, "data", None)
        return {} if data is None else {"data": data}

    @property
    def initialized(self) -> bool:
        """Whether :meth:`initialize` has run."""
        return self._infrastructure is not None

    @property
    def infrastructure(self) -> Any:
        """The shared :class:`~edgebus.workflow.EdgeInfrastructure` (after initialize)."""
        if self._infrastructure is None:
            raise NodeNotInitialized(self.node_id)
        return self._infrastructure

    async def initialize(self, infrastructure: Any) -> None:
        """Receive the shared infrastructure; the runtime calls this once before running.

        Subclasses that override it call ``await super().initialize(infrastructure)``.
        """
        self._infrastructure = infrastructure

    async def ensure_compliance(self, data: Any, **placement_options: Any) -> Placement:
        """Classify ``data`` and place it with the infrastructure's compliance rules.

        Options: ``location_id`` (the requested home region), ``classification``,
        ``replication_factor``, ``preferred_locations``, ``exclude_locations``,
        ``compliance_zones``, ``edge_strategy``, ``fallback_strategy``,
        ``min_replicas``, ``key``. Returns the :class:`~edgebus.core.placement.Placement`;
        raises :class:`~edgebus.errors.ComplianceViolation` when the data cannot be
        placed (in strict mode also when ``location_id`` is outside its zones).
        """
        check_placement_options(self.node_id, placement_options)
        infra = self.infrastructure
        config: EdgeConfig = infra.config
        rules: ComplianceRules = getattr(infra, "rules", None) or config.compliance.rules()
        found = classify_for_placement(data, placement_options.get("classification"), config, rules)
        discovery = getattr(getattr(infra, "bus", None), "discovery", None)
        request = placement_request(config, found.classes, placement_options, discovery)
        try:
            placement = place(rules, request)
        except InvalidInput as e:
            edge_log.debug(
                "node=%s refused classes=%s findings=%s home=%s: %s",
                self.node_id,
                sorted(found.classes),
                _findings(found),
                request.home,
                e,
            )
            raise
        edge_log.debug(
            "node=%s placed classes=%s findings=%s zones=%s allowed=%s -> %s%s",
            self.node_id,
            sorted(found.classes),
            _findings(found),
            placement.zones_required,
            placement.allowed,
            placement.regions,
            " (rerouted)" if placement.rerouted else "",
        )
        return placement


def _findings(found: Classification) -> list[str]:
    """The findings of a classification as ``path:rule`` (for the debug log)."""
    return [f"{f.path}:{f.rule}" for f in found.findings]
