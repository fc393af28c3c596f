"""The placement options of :meth:`EdgeNode.ensure_compliance
<edgebus.workflow.EdgeNode.ensure_compliance>`, checked and turned into a
:class:`~edgebus.core.placement.PlacementRequest`.

Pure: the node (the shell) reads its infrastructure's config, rules and discovery,
and places the request with :func:`~edgebus.core.placement.place`.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from edgebus.core.classification import Classification, classify
from edgebus.core.placement import ComplianceRules, PlacementRequest
from edgebus.errors import InvalidInput

if TYPE_CHECKING:
    from edgebus.config import EdgeConfig

__all__ = [
    "PLACEMENT_OPTIONS",
    "RegionHealth",
    "check_placement_options",
    "classify_for_placement",
    "placement_request",
]

#: the keyword options :meth:`EdgeNode.ensure_compliance` accepts
PLACEMENT_OPTIONS: tuple[str, ...] = (
    "location_id",
    "classification",
    "replication_factor",
    "preferred_locations",
    "exclude_locations",
    "compliance_zones",
    "edge_strategy",
    "fallback_strategy",
    "min_replicas",
    "key",
)


class RegionHealth(Protocol):
    """What placement reads of the bus's discovery."""

    def latencies_ms(self) -> Mapping[str, float]:
        """Region -> measured latency."""
        ...

    def unhealthy(self) -> frozenset[str]:
        """Regions writes should avoid."""
        ...


def check_placement_options(node_id: str, options: Mapping[str, Any]) -> None:
    """InvalidInput (with a did-you-mean) when ``options`` has one not accepted."""
    unknown = [k for k in options if k not in PLACEMENT_OPTIONS]
    if unknown:
        near = difflib.get_close_matches(unknown[0], PLACEMENT_OPTIONS, n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise InvalidInput(
            f"ensure_compliance() of node {node_id!r} got unknown option(s) "
            f"{', '.join(map(repr, unknown))}{hint}. Valid options: "
            f"{', '.join(PLACEMENT_OPTIONS)}."
        )


def classify_for_placement(
    data: Any, classification: Any, config: EdgeConfig, rules: ComplianceRules
) -> Classification:
    """Classify ``data`` (``classification``: the explicit classes, if given) against
    the classes the config knows."""
    known = frozenset({"public", *config.compliance.data_classifications})
    return classify(
        data,
        classification,
        default=rules.default_classification,
        known_classes=known,
    )


def placement_request(
    config: EdgeConfig,
    classes: frozenset[str],
    options: Mapping[str, Any],
    discovery: RegionHealth | None,
) -> PlacementRequest:
    """The request ``options`` (checked) make for data of ``classes``."""
    return config.placement_request(
        classes,
        home=options.get("location_id"),
        preferred=_names(options.get("preferred_locations")),
        excluded=_names(options.get("exclude_locations")),
        compliance_zones=_names(options.get("compliance_zones")),
        replication_factor=options.get("replication_factor"),
        strategy=options.get("edge_strategy") or config.edge_strategy,
        latencies_ms=discovery.latencies_ms() if discovery is not None else {},
        unhealthy=discovery.unhealthy() if discovery is not None else frozenset(),
        key=str(options.get("key") or ""),
        fallback=options.get("fallback_strategy") or "none",
        min_replicas=options.get("min_replicas"),
    )


def _names(value: str | Sequence[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(value)
