"""DataFlow: models whose records live on the edge bus, with generated CRUD nodes.

The spec's "Integration with DataFlow" (see docs/nodes.md, section DataFlow)::

    from edgebus.dataflow import DataFlow

    db = DataFlow()

    @db.model
    class UserProfile:
        user_id: str
        region: str
        preferences: dict

    workflow.add_node("UserProfileCreateNode", "create_user", {
        "model": "UserProfile",
        "data": {"user_id": "123", "region": "eu"},   # placed in the GDPR zone only
    })
    LocalRuntime({"dataflow_integration": True}).execute(workflow.build())

The generated nodes run only with ``"dataflow_integration": True`` in the run's
edge_config (the spec's "Enable DataFlow hooks"); with it off, a workflow holding them
is refused before any node runs (by ``build()`` when the builder has the edge_config,
else by the runtime), saying to set it.

``@db.model`` builds a pydantic model from the class's annotations (records are
validated against it), finds the primary key, and registers five edge node types:
``<Model>CreateNode``, ``ReadNode``, ``UpdateNode``, ``DeleteNode``, ``ListNode``.
A record is one edgebus key, ``<Model>:<primary key>``; its value is the record as
JSON. A model field named ``region`` routes the record's placement
(:meth:`DataFlow.routing`).

This module holds :class:`DataFlow` (the models of one application and the routing
of their records); a model's schema and primary-key rules are in
:mod:`edgebus.workflow.dataflow_model`, the generated node types in
:mod:`edgebus.workflow.dataflow_nodes`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from edgebus.config import EdgeConfig, load_config
from edgebus.errors import InvalidInput
from edgebus.workflow.dataflow_model import OPERATIONS, ModelInfo, describe_model
from edgebus.workflow.dataflow_nodes import node_class, scan_keys
from edgebus.workflow.registry import register_node

__all__ = [
    "DEFAULT_REGION_ALIASES",
    "OPERATIONS",
    "DataFlow",
    "ModelInfo",
]

C = TypeVar("C", bound=type)

#: region alias -> compliance zone: a record whose ``region`` is the alias is placed
#: in that zone's regions only
DEFAULT_REGION_ALIASES: Mapping[str, str] = {"eu": "gdpr"}

# a region's key listing, paged (tests/unit/test_dataflow.py reads it from here)
_scan = scan_keys


class DataFlow:
    """Models stored on the edge bus; ``@db.model`` registers their CRUD nodes.

    ``edge_config``: what :meth:`runtime` runs with (anything
    :func:`~edgebus.config.load_config` takes; None: ``EDGEBUS_CONFIG`` or
    zero-config); it must set ``"dataflow_integration": True`` for that runtime to
    run the nodes. The nodes always use the infrastructure the runtime injects.
    ``region_aliases`` adds to (or overrides) :data:`DEFAULT_REGION_ALIASES` (alias
    -> compliance zone).
    """

    def __init__(
        self,
        edge_config: EdgeConfig | Mapping[str, Any] | str | Path | None = None,
        *,
        region_aliases: Mapping[str, str] | None = None,
    ) -> None:
        self.edge_config: EdgeConfig = load_config(edge_config)
        self.region_aliases: dict[str, str] = {
            **DEFAULT_REGION_ALIASES,
            **{k.lower(): v for k, v in (region_aliases or {}).items()},
        }
        self.models: dict[str, ModelInfo] = {}

    def runtime(self) -> Any:
        """A :class:`~edgebus.workflow.LocalRuntime` for this DataFlow's edge_config (it
        runs the DataFlow's nodes only when that config sets ``dataflow_integration``)."""
        from edgebus.workflow.runtime import LocalRuntime

        return LocalRuntime(self.edge_config)

    def model(self, cls: C) -> C:
        """Class decorator: register ``cls`` (an annotated class) as a model.

        Every annotated field is required unless the class gives it a default; a
        container field (dict, list, set, tuple) without a default defaults to empty.
        Raises TypeError when the class has no fields or no primary key, and
        ValueError when its node type names are taken by other classes.
        """
        info = describe_model(cls)
        for op in OPERATIONS:
            register_node(info.node_types[op])(node_class(self, info, op))
        self.models[info.name] = info
        cls.__dataflow__ = info  # type: ignore[attr-defined]
        return cls

    def info(self, model: str | type) -> ModelInfo:
        """The registered model named ``model`` (or that class)."""
        name = model if isinstance(model, str) else model.__name__
        found = self.models.get(name)
        if found is None:
            raise InvalidInput(
                f"No DataFlow model {name!r}: models are {', '.join(self.models) or 'none'}"
            )
        return found

    def routing(self, region: Any, config: EdgeConfig) -> dict[str, Any]:
        """The write options a record's ``region`` value asks for.

        A configured region name -> ``{"region": name}`` (the write's home); an alias
        (``"eu"``, case-insensitive) whose zone the config defines ->
        ``{"compliance_zones": (zone,)}`` (placed in that zone's regions only); None
        -> no routing. Anything else is refused with the accepted values.
        """
        if region is None:
            return {}
        if isinstance(region, str):
            if region in config.regions:
                return {"region": region}
            zone = self.region_aliases.get(region.lower())
            if zone is not None and zone in config.compliance.zones:
                return {"compliance_zones": (zone,)}
        aliases = [a for a, z in self.region_aliases.items() if z in config.compliance.zones]
        accepted = [
            *(f"{a!r} (zone {self.region_aliases[a]})" for a in aliases),
            *map(repr, config.regions),
        ]
        raise InvalidInput(f"region {region!r} routes nowhere: use one of {', '.join(accepted)}")
