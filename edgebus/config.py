"""The spec's ``edge_config``, validated.

An ``edge_config`` is a plain dict (the spec passes one to the runtime), a JSON or
TOML file (``--config PATH`` or ``EDGEBUS_CONFIG``), or nothing at all: zero-config
gives three regions on the local Kafka that ``edgebus kafka up`` started, the spec's
compliance zones and classifications, and strict mode.

Unknown keys are refused with the nearest valid key, so a typo never silently turns
a safety setting off (``strickt_mode`` would otherwise leave strict mode at its
default without a word).
"""

from __future__ import annotations

import difflib
import functools
import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from edgebus.core.placement import (
    DEFAULT_DATA_CLASSIFICATIONS,
    DEFAULT_REGIONS,
    DEFAULT_ZONES,
    ComplianceRules,
    Strategy,
)
from edgebus.errors import ConfigError

__all__ = [
    "ComplianceConfig",
    "DiscoveryConfig",
    "EdgeConfig",
    "KafkaConfig",
    "MonitoringConfig",
    "ReplicationConfig",
    "default_state_dir",
    "load_config",
]

ENV_CONFIG = "EDGEBUS_CONFIG"
ENV_STATE_DIR = "EDGEBUS_STATE_DIR"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DiscoveryConfig(_Section):
    """Which regions exist and how often their health is refreshed."""

    locations: tuple[str, ...] = DEFAULT_REGIONS
    refresh_interval: float = Field(300.0, gt=0)
    health_check_interval: float = Field(60.0, gt=0)
    #: a region is unhealthy past this consumer lag (events not yet materialized) ...
    max_lag_events: int = Field(10_000, ge=1)
    #: ... or when its oldest origin watermark is older than this
    max_watermark_age_ms: float = Field(10_000.0, gt=0)
    #: a health probe (broker metadata, region status) that takes longer has failed
    probe_timeout_ms: float = Field(2_000.0, gt=0)
    #: consecutive failed probes before a region is unhealthy
    max_probe_failures: int = Field(2, ge=1)

    @model_validator(mode="after")
    def _unique_locations(self) -> DiscoveryConfig:
        if not self.locations:
            raise ValueError("discovery.locations is empty: list at least one region")
        dupes = sorted({r for r in self.locations if self.locations.count(r) > 1})
        if dupes:
            raise ValueError(f"discovery.locations repeats {', '.join(dupes)}")
        for region in self.locations:
            if not region or not all(c.isalnum() or c in "-_" for c in region):
                raise ValueError(
                    f"region name {region!r} may hold only letters, digits, '-' and '_' "
                    "(it becomes part of Kafka topic names)"
                )
        return self


class ComplianceConfig(_Section):
    """Zones (zone -> regions) and which zones each data class requires."""

    strict_mode: bool = True
    zones: dict[str, tuple[str, ...]] = Field(
        default_factory=lambda: {k: tuple(v) for k, v in DEFAULT_ZONES.items()}
    )
    data_classifications: dict[str, tuple[str, ...]] = Field(
        default_factory=lambda: {k: tuple(v) for k, v in DEFAULT_DATA_CLASSIFICATIONS.items()}
    )
    default_classification: str = "public"
    #: longest field name a write may carry (longer: refused before classification)
    max_field_name_chars: int = Field(1_024, ge=16, le=1_048_576)
    #: bytes the classifier's memo caches (field names, values) may hold together
    classifier_cache_bytes: int = Field(16 * 1024 * 1024, ge=0, le=1024 * 1024 * 1024)

    @model_validator(mode="after")
    def _zones_defined(self) -> ComplianceConfig:
        for cls, zones in self.data_classifications.items():
            unknown = [z for z in zones if z not in self.zones]
            if unknown:
                raise ValueError(
                    f"data_classifications.{cls} requires zone(s) {', '.join(unknown)} "
                    f"that compliance.zones does not define (defined: "
                    f"{', '.join(self.zones) or 'none'})"
                )
        known = {"public", *self.data_classifications}
        if self.default_classification not in known:
            raise ValueError(
                f"default_classification {self.default_classification!r} is not 'public' "
                f"nor a key of data_classifications ({', '.join(sorted(known))})"
            )
        return self

    def rules(self) -> ComplianceRules:
        """The pure-core view of these settings (built once per distinct settings)."""
        return _rules(
            tuple(self.zones.items()), tuple(self.data_classifications.items()),
            self.strict_mode, self.default_classification,
        )


@functools.lru_cache(maxsize=64)
def _rules(
    zones: tuple[tuple[str, tuple[str, ...]], ...],
    classes: tuple[tuple[str, tuple[str, ...]], ...],
    strict_mode: bool,
    default_classification: str,
) -> ComplianceRules:
    return ComplianceRules.from_mappings(
        zones=dict(zones), data_classifications=dict(classes), strict_mode=strict_mode,
        default_classification=default_classification,
    )


class ReplicationConfig(_Section):
    """How many regions a write should reach."""

    strategy: Literal["multi_region", "single_region"] = "multi_region"
    min_regions: int = Field(1, ge=1)
    #: how often each region service writes a heartbeat watermark into every partition
    #: of its topic: the resolution of bounded-staleness reads and of frontiers passing
    #: events placed elsewhere
    watermark_interval_ms: int = Field(500, ge=10, le=60_000)
    #: events a region holds back until their dependencies are applied, before it stops
    #: fetching partitions that cannot help (see docs/consistency.md)
    max_causal_buffer: int = Field(100_000, ge=1)
    #: bytes (record keys, values and headers) the causal buffer may hold before it
    #: stops fetching, as ``max_causal_buffer`` does for events
    max_causal_buffer_bytes: int = Field(256 * 1024 * 1024, ge=1024 * 1024)
    #: how long an event may wait for a dependency that is not applied here; past it
    #: the event goes to the dead-letter topic (reason ``dependency-timeout``) instead
    #: of blocking its stream forever (redrive it once the dependency is there)
    dependency_timeout_ms: int = Field(600_000, ge=1_000, le=7 * 24 * 3_600_000)
    #: how far a heartbeat's origin time may lie ahead of this region's clock; a later
    #: heartbeat is dead-lettered (reason ``clock-drift``), never taken as fresh
    max_clock_drift_ms: int = Field(60_000, ge=100, le=24 * 3_600_000)


class ReadsConfig(_Section):
    """What causal and bounded-staleness reads do when the region asked is behind."""

    #: how long a read waits for the region to catch up before ``fallback``
    wait_ms: float = Field(2_000.0, ge=0, le=600_000)
    #: ``route``: serve from another region that is fresh enough (else raise);
    #: ``raise``: raise SessionNotCovered / StalenessBoundExceeded
    fallback: Literal["route", "raise"] = "route"
    #: bounded-staleness threshold when a read names none (the spec's example: 5 s)
    staleness_threshold_ms: float = Field(5_000.0, gt=0)
    #: query requests one region service handles at once; more get HTTP 503 with
    #: ``Retry-After`` (the SDK retries elsewhere)
    max_concurrent_requests: int = Field(256, ge=1, le=100_000)


class StrongConfig(_Section):
    """Strong consistency: the commit log, two-phase commit and linearizable reads.

    The commit log (``edgebus.<log_region>.saga``, and ``edgebus.<log_region>.sagas`` for
    multi-step sagas) lives on the cluster of ``log_region`` (default: the first configured region);
    every coordinator, participant and strong client uses that cluster.
    """

    #: the region whose Kafka cluster holds the saga topics (None: the first region)
    log_region: str | None = None
    #: a strong write not decided within this many ms is aborted
    timeout_ms: int = Field(5_000, ge=100, le=600_000)
    #: how long a client waits for the decision past the deadline before reporting the
    #: outcome unknown (a coordinator must be running to decide)
    decision_grace_ms: int = Field(10_000, ge=0, le=600_000)
    #: who decides: ``auto`` (default) the ``edgebus coordinator run`` processes when
    #: one runs, else one EdgeBus among those writing strongly, taken over by another
    #: when it stops; ``service`` only coordinator processes (an EdgeBus never joins
    #: the coordinator group); ``embedded`` a coordinator in every EdgeBus (one
    #: process, or a few long-lived ones: each start and stop rebalances the group)
    coordinator: Literal["auto", "embedded", "service"] = "auto"
    #: deprecated spelling: true is ``coordinator = "embedded"``, false ``"service"``
    embedded_coordinator: bool | None = None
    #: how long a strong read waits for its region to reach the read barrier
    read_wait_ms: int = Field(5_000, ge=0, le=600_000)

    @model_validator(mode="before")
    @classmethod
    def _embedded_coordinator_alias(cls, data: Any) -> Any:
        if not isinstance(data, Mapping) or data.get("embedded_coordinator") is None:
            return data
        alias = "embedded" if data["embedded_coordinator"] else "service"
        given = data.get("coordinator")
        if given is not None and given != alias:
            raise ValueError(
                f"strong.embedded_coordinator = {data['embedded_coordinator']} (deprecated) "
                f"contradicts strong.coordinator = {given!r}: keep only strong.coordinator"
            )
        return {**data, "coordinator": alias}


class StateConfig(_Section):
    """State machines (EdgeStateMachine): ownership leases, fail-over, migration.

    A state's log is ``edgebus.<home>.state.<class>`` on the cluster of its home: the
    first region its data class allows (the strong log region when allowed). Region
    services host states (``edgebus region run``); an EdgeBus hosts them too with
    ``embedded_host``.
    """

    #: the owner's lease when a state names none (``lease_duration_ms``)
    lease_ms: int = Field(10_000, ge=500, le=3_600_000)
    #: the owner stops serving this long before its lease ends by its own clock
    lease_margin_ms: int = Field(500, ge=0, le=60_000)
    #: hosts of the next candidate regions claim a free state this much later, each
    stagger_ms: int = Field(300, ge=0, le=60_000)
    #: how long an operation waits for its answer when it names no timeout_ms
    timeout_ms: int = Field(10_000, ge=100, le=600_000)
    #: a caller re-sends a request (same id: never run twice) when no owner answered
    resend_ms: int = Field(1_500, ge=50, le=600_000)
    #: migration (enable_migration): another region's share of the accesses over the
    #: window that moves ownership there, and the fewest accesses that count
    migration_threshold: float = Field(0.6, gt=0.5, le=1.0)
    migration_window_ms: int = Field(10_000, ge=100, le=3_600_000)
    migration_min_accesses: int = Field(20, ge=1)
    #: how often a host writes its folded states and log positions to SQLite
    snapshot_interval_ms: int = Field(1_000, ge=50, le=600_000)
    #: host states inside every EdgeBus too (its region: ``host_region``, default the
    #: first region); operations on states it owns then skip the forward
    embedded_host: bool = False
    host_region: str | None = None


class MonitoringConfig(_Section):
    """Metrics and tracing switches."""

    metrics_enabled: bool = True
    trace_enabled: bool = False
    health_check_interval: float = Field(30.0, gt=0)


class KafkaConfig(_Section):
    """Where the brokers are and how edgebus lays out its topics.

    Broker addresses are resolved, first match wins: ``clusters[region]``,
    ``bootstrap``, the ``EDGEBUS_BOOTSTRAP`` environment variable, the clusters that
    ``edgebus kafka up`` recorded, then ``127.0.0.1:9092``.
    """

    bootstrap: str | None = None
    clusters: dict[str, str] = Field(default_factory=dict)
    partitions: int = Field(6, ge=1, le=1000)
    topic_replication_factor: int = Field(1, ge=1)
    linger_ms: int = Field(5, ge=0)
    #: the largest batch (and so the largest event) a producer sends; Kafka's default
    #: message.max.bytes is about 1 MiB
    max_batch_bytes: int = Field(512 * 1024, ge=1024, le=64 * 1024 * 1024)
    connect_timeout_s: float = Field(10.0, gt=0)
    #: how long a producer keeps an unacknowledged record through a broker's absence
    #: (a restart, a leader election) before the write fails; retries never duplicate
    #: (every producer is idempotent). Kafka's ``delivery.timeout.ms``.
    delivery_timeout_ms: int = Field(120_000, ge=1000, le=3_600_000)


class EdgeConfig(_Section):
    """The whole ``edge_config`` of the spec, plus edgebus's own ``kafka`` section."""

    discovery: DiscoveryConfig = DiscoveryConfig()
    compliance: ComplianceConfig = ComplianceConfig()
    replication: ReplicationConfig = ReplicationConfig()
    monitoring: MonitoringConfig = MonitoringConfig()
    reads: ReadsConfig = ReadsConfig()
    strong: StrongConfig = StrongConfig()
    state: StateConfig = StateConfig()
    kafka: KafkaConfig = KafkaConfig()
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
#: the largest config file read
MAX_CONFIG_BYTES = 16 * 1024 * 1024


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


def load_config(source: EdgeConfig | Mapping[str, Any] | str | Path | None = None) -> EdgeConfig:
    """An EdgeConfig from an object, a dict, a JSON/TOML file, EDGEBUS_CONFIG, or defaults."""
    if isinstance(source, EdgeConfig):
        return source
    if isinstance(source, Mapping):
        return EdgeConfig.from_mapping(source)
    path = source if source is not None else os.environ.get(ENV_CONFIG) or None
    if path is None:
        return EdgeConfig()
    return EdgeConfig.from_mapping(_read_file(Path(path)))


def _read_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise ConfigError(
            f"Cannot read config file {path}: {e.strerror or e}. Pass --config with an "
            f"existing JSON or TOML file, or unset {ENV_CONFIG}."
        ) from e
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"Config file {path} is larger than {MAX_CONFIG_BYTES // (1024 * 1024)} MiB: "
            "not an edge_config; pass the right file"
        )
    kind = "TOML" if path.suffix.lower() == ".toml" else "JSON"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"Config file {path} is not UTF-8 text: {e}") from None
    try:
        data: Any = tomllib.loads(text) if kind == "TOML" else json.loads(text)
    except RecursionError:
        raise ConfigError(
            f"Config file {path} is nested deeper than {MAX_CONFIG_DEPTH} levels (objects "
            "and arrays within each other): an edge_config needs a few; fix the file"
        ) from None
    except ValueError as e:  # JSONDecodeError, TOMLDecodeError, an over-long number
        raise ConfigError(f"Config file {path} is not valid {kind}: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"Config file {path} must hold an object (the edge_config)")
    _check_depth(data, f"Config file {path}")
    return data


def _check_keys(data: Mapping[str, Any], model: type[BaseModel], path: str) -> None:
    fields = model.model_fields
    for key, value in data.items():
        where = f"{path}{key}"
        if key not in fields:
            near = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.5)
            hint = f"; did you mean '{path}{near[0]}'?" if near else "."
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


def default_state_dir() -> Path:
    """Where this machine's edgebus state lives: ``$EDGEBUS_STATE_DIR``, else
    ``~/.local/state/edgebus`` (region stores, state-host snapshots, and what
    ``edgebus kafka up`` records about the brokers it runs)."""
    value = os.environ.get(ENV_STATE_DIR)
    directory = Path(value).expanduser() if value else Path.home() / ".local" / "state" / "edgebus"
    return directory.absolute()
