"""The whole ``edge_config``: its sections, the checks across them, and validating a
plain dict (:meth:`EdgeConfig.from_mapping`): too deep a structure is refused, and an
unknown key is refused with the nearest valid key, so a typo never silently turns a
safety setting off."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError, model_validator

from edgebus.config.compliance import ComplianceConfig
from edgebus.config.discovery import DiscoveryConfig
from edgebus.config.kafka import KafkaConfig
from edgebus.config.monitoring import MonitoringConfig
from edgebus.config.query import QueryConfig
from edgebus.config.reads import ReadsConfig
from edgebus.config.replication import ReplicationConfig
from edgebus.config.section import Section
from edgebus.config.state import StateConfig
from edgebus.config.strong import StrongConfig
from edgebus.core.placement import PlacementRequest, Strategy
from edgebus.errors import ConfigError

__all__ = ["MAX_CONFIG_DEPTH", "EdgeConfig"]


class EdgeConfig(Section):
    """The whole ``edge_config`` of the spec, plus edgebus's own ``kafka`` section."""

    discovery: DiscoveryConfig = DiscoveryConfig()
    compliance: ComplianceConfig = ComplianceConfig()
    replication: ReplicationConfig = ReplicationConfig()
    monitoring: MonitoringConfig = MonitoringConfig()
    reads: ReadsConfig = ReadsConfig()
    strong: StrongConfig = StrongConfig()
    state: StateConfig = StateConfig()
    kafka: KafkaConfig = KafkaConfig()
    query: QueryConfig = QueryConfig()
    edge_strategy: Strategy = "compliance_first"
    debug: bool = False
    dataflow_integration: bool = False

    @property
    def regions(self) -> tuple[str, ...]:
        """Known regions, in configured order."""
        return self.discovery.locations

    @property
    def strong_log_region(self) -> str:
        """The region whose cluster holds the saga topics."""
        return self.strong.log_region or self.discovery.locations[0]

    def placement_request(self, classes: frozenset[str], **request: Any) -> PlacementRequest:
        """A placement request for data of ``classes`` over the configured regions, with
        the config's floor (``replication.min_regions``, ``replication.strategy``);
        ``request`` holds the write's own fields (home, replication_factor, strategy, ...:
        :class:`~edgebus.core.placement.PlacementRequest`)."""
        return PlacementRequest(
            regions=self.regions,
            classes=classes,
            min_regions=self.replication.min_regions,
            single_region=self.replication.strategy == "single_region",
            **request,
        )

    @model_validator(mode="after")
    def _log_region_known(self) -> EdgeConfig:
        if self.strong.log_region is not None and self.strong.log_region not in self.regions:
            raise ValueError(
                f"strong.log_region {self.strong.log_region!r} is not one of the regions "
                f"({', '.join(self.regions)}): name a configured region"
            )
        if self.state.host_region is not None and self.state.host_region not in self.regions:
            raise ValueError(
                f"state.host_region {self.state.host_region!r} is not one of the regions "
                f"({', '.join(self.regions)}): name a configured region"
            )
        if self.state.lease_margin_ms * 2 >= self.state.lease_ms:
            raise ValueError(
                f"state.lease_margin_ms ({self.state.lease_margin_ms}) must be less than "
                f"half of state.lease_ms ({self.state.lease_ms})"
            )
        return self

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None) -> EdgeConfig:
        """Validate a plain dict; unknown keys, bad values and structures nested deeper
        than MAX_CONFIG_DEPTH raise ConfigError."""
        if data is not None and not isinstance(data, Mapping):
            raise ConfigError(
                "edge_config must be a mapping (a JSON object, a TOML table), got "
                f"{type(data).__name__}"
            )
        _check_depth(data or {})
        data = dict(data or {})
        if "edge_config" in data and len(data) == 1:
            inner = data["edge_config"]
            if not isinstance(inner, Mapping):
                raise ConfigError(
                    "edge_config must be a mapping (a JSON object, a TOML table), got "
                    f"{type(inner).__name__}"
                )
            data = dict(inner)
        _check_keys(data, cls, "")
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'edge_config'}: "
                f"{err['msg'].removeprefix('Value error, ')}"
                for err in e.errors()
            )
            raise ConfigError(f"Invalid edge_config: {problems}. Fix these values.") from e


#: the deepest nesting of objects and arrays a config may hold (a real one needs 4)
MAX_CONFIG_DEPTH = 64


def _check_depth(data: Any, where: str = "edge_config") -> None:
    """ConfigError if ``data`` nests mappings and lists deeper than MAX_CONFIG_DEPTH
    (walked iteratively: no recursion, and a self-referencing dict ends the walk)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, Mapping):
            children: Any = value.values()
        elif isinstance(value, list | tuple):
            children = value
        else:
            continue
        if depth > MAX_CONFIG_DEPTH:
            raise ConfigError(
                f"{where} is nested deeper than {MAX_CONFIG_DEPTH} levels (objects and "
                "arrays within each other): an edge_config needs a few; fix the file"
            )
        stack.extend((child, depth + 1) for child in children)


def _check_keys(data: Mapping[str, Any], model: type[BaseModel], path: str) -> None:
    fields = model.model_fields
    for key, value in data.items():
        where = f"{path}{key}"
        if key not in fields:
            near = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.5)
            hint = f"; did you mean '{path}{near[0]}'?" if near else "."
            hint += getattr(model, "KEY_HINTS", {}).get(str(key), "")
            raise ConfigError(
                f"Unknown config key {where!r}{hint} Valid keys here: "
                f"{', '.join(fields)}."
            )
        annotation = fields[key].annotation
        if (
            isinstance(annotation, type)
            and issubclass(annotation, BaseModel)
            and isinstance(value, Mapping)
        ):
            _check_keys(value, annotation, f"{where}.")
