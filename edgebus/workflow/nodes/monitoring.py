"""``EdgeMonitoringNode``: the edge layer's latency, throughput, errors and replication
lag, checked against alert thresholds.

Latency, throughput and error rate come from the shared bus's recorder
(:attr:`edgebus.sdk.EdgeBus.metrics`, see :mod:`edgebus.sdk.metrics`: every write,
commit, read and state call of this infrastructure, over the last ``window_s``
seconds). Replication lag comes from the running region services' status (what
``edgebus status`` shows, probed at most once per ``monitoring.health_check_interval``
seconds: a run within it reuses the last answer and says how old it is): per region,
the worst staleness of its view of the origins (``staleness_ms``) and its consumer
lag in events (``lag_events``); a region whose service does not answer is reported
unknown (None and ``error``), never as 0.

Output ``result``: ``{"metrics", "alerts", "healthy", "window_s", "source",
"no_data"}`` (see docs/nodes.md). A threshold without data raises no alert; it is
listed in ``no_data`` with the reason.
"""

from __future__ import annotations

import asyncio
import difflib
import time
import weakref
from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import Field, field_validator, model_validator

from edgebus.sdk.metrics import OPERATION_KINDS, BusMetrics, MetricsSnapshot
from edgebus.workflow.node import EdgeNode, NodeParams
from edgebus.workflow.registry import register_node

__all__ = ["ALERT_THRESHOLDS", "METRICS", "EdgeMonitoringNode", "EdgeMonitoringParams"]

#: the metrics the node reports
METRICS: tuple[str, ...] = ("latency", "throughput", "error_rate", "replication_lag")

#: threshold name -> (the metric it needs, alert when the value is "above" or "below")
ALERT_THRESHOLDS: dict[str, tuple[str, str]] = {
    "latency_p50_ms": ("latency", "above"),
    "latency_p95_ms": ("latency", "above"),
    "latency_p99_ms": ("latency", "above"),
    "error_rate": ("error_rate", "above"),
    "throughput_min": ("throughput", "below"),
    "replication_lag_ms": ("replication_lag", "above"),
}

#: what ``operations`` accepts: every kind, and the prefixes write, read
_OPERATION_NAMES: tuple[str, ...] = (*OPERATION_KINDS, "write", "read")


def _unknown(kind: str, names: list[str], valid: tuple[str, ...]) -> ValueError:
    near = difflib.get_close_matches(names[0], valid, n=1)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    return ValueError(
        f"unknown {kind} {', '.join(map(repr, names))}{hint}; valid: {', '.join(valid)}"
    )


class EdgeMonitoringParams(NodeParams):
    """The parameters of an EdgeMonitoringNode (checked when the workflow is built)."""

    #: which metrics to report (default: all four)
    metrics: list[str] = Field(default_factory=lambda: list(METRICS), min_length=1)
    #: threshold name -> value; see ALERT_THRESHOLDS
    alert_thresholds: dict[str, float] = Field(default_factory=dict)
    #: the window of bus operations, in seconds
    window_s: float = Field(60.0, gt=0)
    #: only these operation kinds (e.g. ``["write.eventual", "read"]``); default all
    operations: list[str] | None = Field(None, min_length=1)
    #: how long each region service has to answer its status
    status_timeout_ms: int = Field(5000, gt=0)

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, value: list[str]) -> list[str]:
        unknown = [m for m in value if m not in METRICS]
        if unknown:
            raise _unknown("metric(s)", unknown, METRICS)
        return list(dict.fromkeys(value))

    @field_validator("alert_thresholds", mode="before")
    @classmethod
    def _known_thresholds(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            names = tuple(ALERT_THRESHOLDS)
            unknown = [str(k) for k in value if k not in ALERT_THRESHOLDS]
            if unknown:
                raise _unknown("alert threshold(s)", unknown, names)
            for k, v in value.items():
                if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
                    raise ValueError(f"alert threshold {k!r} must be a number >= 0, got {v!r}")
            rate = value.get("error_rate")
            if rate is not None and rate > 1:
                raise ValueError(f"alert threshold 'error_rate' is a fraction (0..1), got {rate}")
        return value

    @field_validator("operations")
    @classmethod
    def _known_operations(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            unknown = [o for o in value if o.removesuffix(".*") not in _OPERATION_NAMES]
            if unknown:
                raise _unknown("operation(s)", unknown, _OPERATION_NAMES)
        return value

    @model_validator(mode="after")
    def _thresholds_have_metrics(self) -> EdgeMonitoringParams:
        lacking = [
            f"{name!r} needs metric {ALERT_THRESHOLDS[name][0]!r}"
            for name in self.alert_thresholds
            if ALERT_THRESHOLDS[name][0] not in self.metrics
        ]
        if lacking:
            raise ValueError(
                f"alert threshold {'; '.join(lacking)}: add it to metrics "
                f"(now {self.metrics})"
            )
        return self


@register_node("EdgeMonitoringNode")
class EdgeMonitoringNode(EdgeNode):
    """Metrics of the edge layer and alerts when they cross their thresholds."""

    Params: ClassVar[type[NodeParams]] = EdgeMonitoringParams
    inputs: ClassVar[tuple[str, ...]] = ("input",)
    outputs: ClassVar[tuple[str, ...]] = ("result",)

    @property
    def monitoring_params(self) -> EdgeMonitoringParams:
        """The node's params, typed."""
        assert isinstance(self.params, EdgeMonitoringParams)
        return self.params

    async def async_run(self, input: Any = None, **_: Any) -> Mapping[str, Any]:
        p = self.monitoring_params
        bus = self.infrastructure.bus
        recorder: BusMetrics | None = getattr(bus, "metrics", None)
        snap = (
            recorder.snapshot(p.window_s, p.operations) if recorder is not None else None
        )
        metrics: dict[str, Any] = {}
        if "latency" in p.metrics:
            metrics["latency"] = _latency(snap)
        if "throughput" in p.metrics:
            metrics["throughput"] = _throughput(snap)
        if "error_rate" in p.metrics:
            metrics["error_rate"] = _error_rate(snap)
        if "replication_lag" in p.metrics:
            metrics["replication_lag"] = await _replication_lag(
                bus, p.status_timeout_ms / 1000
            )
        alerts, no_data = evaluate(metrics, p.alert_thresholds, recorder is not None)
        result = {
            "metrics": metrics,
            "alerts": alerts,
            "healthy": not alerts,
            "window_s": p.window_s,
            "source": {
                "bus": getattr(bus, "client_id", None),
                "metrics_enabled": recorder is not None,
                "operations": sorted(snap.operations) if snap is not None else [],
                "replication_lag": "region services' status (GET /v1/status)",
            },
            "no_data": no_data,
        }
        return {"result": result}


def _latency(snap: MetricsSnapshot | None) -> dict[str, Any]:
    if snap is None:
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None, "count": 0,
                "by_operation": {}}
    def one(s: Any) -> dict[str, Any]:
        return {"p50_ms": s.p50_ms, "p95_ms": s.p95_ms, "p99_ms": s.p99_ms,
                "max_ms": s.max_ms, "count": s.count - s.errors}
    return {**one(snap.total), "by_operation": {k: one(s) for k, s in snap.operations.items()}}


def _throughput(snap: MetricsSnapshot | None) -> dict[str, Any]:
    if snap is None:
        return {"ops_per_s": None, "count": 0, "span_s": None, "by_operation": {}}
    t = snap.total
    return {"ops_per_s": t.ops_per_s, "count": t.count, "span_s": t.span_s,
            "by_operation": {k: s.ops_per_s for k, s in snap.operations.items()}}


def _error_rate(snap: MetricsSnapshot | None) -> dict[str, Any]:
    if snap is None:
        return {"error_rate": None, "errors": 0, "count": 0, "by_operation": {}}
    def one(s: Any) -> dict[str, Any]:
        return {"error_rate": s.error_rate, "errors": s.errors, "count": s.count}
    return {**one(snap.total), "by_operation": {k: one(s) for k, s in snap.operations.items()}}


#: bus -> region -> (monotonic time of the probe, its row): the answers of region
#: services, reused for ``monitoring.health_check_interval`` seconds
_PROBES: weakref.WeakKeyDictionary[Any, dict[str, tuple[float, dict[str, Any]]]] = (
    weakref.WeakKeyDictionary()
)


def _probe_interval_s(bus: Any) -> float:
    """``monitoring.health_check_interval`` of the bus's config (0: probe every run)."""
    monitoring = getattr(getattr(bus, "config", None), "monitoring", None)
    return float(getattr(monitoring, "health_check_interval", 0.0))


async def _replication_lag(bus: Any, timeout_s: float) -> dict[str, Any]:
    """Per configured region: its service's staleness and lag, or unknown. A region
    service is probed at most once per ``monitoring.health_check_interval`` seconds
    (per bus): a run within it reuses the last answer, whose age ``probed_ago_s``
    says; a service that did not answer is probed again on the next run."""
    interval = _probe_interval_s(bus)
    try:
        probes = _PROBES.setdefault(bus, {})
    except TypeError:  # a bus that cannot be weakly referenced: no reuse
        probes = {}
    now = time.monotonic()
    fresh = {
        region: {**row, "probed_ago_s": round(now - at, 3)}
        for region, (at, row) in probes.items()
        if now - at < interval
    }
    rows = await _probed(bus, [r for r in bus.regions if r not in fresh], timeout_s)
    for region, row in rows.items():
        if row.get("error") is None:
            probes[region] = (now, row)
        fresh[region] = {**row, "probed_ago_s": 0.0}
    return {region: fresh[region] for region in bus.regions}


async def _probed(bus: Any, regions: list[str], timeout_s: float) -> dict[str, Any]:
    """Ask each of ``regions``' services for its status now."""
    if not regions:
        return {}
    discovery = getattr(bus, "discovery", None)
    reader = getattr(discovery, "reader", None)
    own = None
    if reader is None:
        from edgebus.sdk.region_client import RegionClient

        reader = own = RegionClient(bus.config, timeout_s)

    async def one(region: str) -> dict[str, Any]:
        try:
            status = await asyncio.wait_for(reader.status(region), timeout_s)
        except Exception as e:  # no service, not answering: unknown, not 0
            return {"staleness_ms": None, "lag_events": None, "healthy": None,
                    "unknown_origins": [], "error": str(e) or type(e).__name__}
        by_origin: dict[str, Any] = dict(status.get("staleness_ms") or {})
        known = [v for v in by_origin.values() if v is not None]
        return {
            "staleness_ms": max(known) if known else None,
            "lag_events": status.get("lag"),
            "healthy": status.get("healthy"),
            "unknown_origins": sorted(o for o, v in by_origin.items() if v is None),
            "by_origin": by_origin,
        }

    try:
        rows = await asyncio.gather(*(one(r) for r in regions))
    finally:
        if own is not None:
            await own.close()
    return dict(zip(regions, rows, strict=True))


def evaluate(
    metrics: Mapping[str, Any], thresholds: Mapping[str, float], metrics_enabled: bool = True
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Compare measured values with ``thresholds``: (alerts, thresholds without data).

    ``latency_pNN_ms``, ``error_rate`` and ``replication_lag_ms`` alert when the value
    is above the threshold (replication lag: per region whose staleness is known);
    ``throughput_min`` alerts when the throughput is below it.
    """
    alerts: list[dict[str, Any]] = []
    no_data: list[dict[str, Any]] = []
    disabled = "monitoring.metrics_enabled is false: the bus records no operations"
    for name, threshold in thresholds.items():
        metric, direction = ALERT_THRESHOLDS[name]
        if metric == "replication_lag":
            rows: Mapping[str, Any] = metrics.get("replication_lag", {})
            unknown = []
            for region, row in rows.items():
                value = row.get("staleness_ms")
                if value is None:
                    unknown.append(region)
                elif value > threshold:
                    alerts.append({
                        "metric": name, "threshold": threshold, "value": value,
                        "region": region,
                        "message": f"replication lag of {region} is {value:.0f} ms, "
                                   f"above {threshold:g} ms",
                    })
            if unknown:
                no_data.append({"threshold": name, "regions": unknown,
                                "reason": "staleness unknown (no service answered, or no "
                                          "watermark seen yet)"})
            continue
        if not metrics_enabled:
            no_data.append({"threshold": name, "reason": disabled})
            continue
        section: Mapping[str, Any] = metrics.get(metric, {})
        key = {"latency_p50_ms": "p50_ms", "latency_p95_ms": "p95_ms",
               "latency_p99_ms": "p99_ms", "error_rate": "error_rate",
               "throughput_min": "ops_per_s"}[name]
        measured = section.get(key)
        if measured is None:
            no_data.append({"threshold": name,
                            "reason": "no operations in the window" if metric != "latency"
                            else "no successful operations in the window"})
            continue
        crossed = measured > threshold if direction == "above" else measured < threshold
        if crossed:
            word = "above" if direction == "above" else "below"
            alerts.append({
                "metric": name, "threshold": threshold, "value": measured,
                "message": f"{name} is {measured:.4g}, {word} the threshold {threshold:g}",
            })
    return alerts, no_data
