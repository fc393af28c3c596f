"""A region service's Prometheus metrics (``GET /metrics`` on its query endpoint),
rendered from its status document; ``docs/operations.md`` lists them."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from edgebus.prometheus import LatencyHistogram, ServiceMetrics

__all__ = ["ApplyDelay", "RegionMetrics", "region_families"]

#: state host counter -> metric name (its dead letters go to edgebus_dead_letters_total)
_STATE_COUNTERS = {
    "ops": "edgebus_state_ops",
    "claims": "edgebus_state_claims",
    "takeovers": "edgebus_state_takeovers",
    "handoffs": "edgebus_state_handoffs",
    "demoted": "edgebus_state_demotions",
    "forwarded_requests": "edgebus_state_forwarded_requests",
    "rejected_records": "edgebus_state_rejected_records",
    "duplicates": "edgebus_state_duplicates",
}



class ApplyDelay(LatencyHistogram):
    """Append-to-apply delay of applied events, per origin region: the time between the
    event's HLC wall clock (stamped by the writer) and its materialization here. For
    another origin's events this includes replication. Clock skew between hosts shows
    up in it; negative delays count as 0."""

    def on_applied(self, events: Iterable[Any]) -> None:
        """A materializer listener: observe each applied event (``origin.region``,
        ``hlc`` with the wall clock in ms in its upper bits)."""
        now_ms = time.time() * 1000
        for event in events:
            self.observe(event.origin.region, now_ms - (event.hlc >> 16))

    def family(self, region: str) -> HistogramMetricFamily:
        """``edgebus_apply_delay_ms{region, origin}``."""
        return self.histogram(
            "edgebus_apply_delay_ms",
            "Delay from an event's write (its HLC wall clock) to its materialization in "
            "this region, in ms, per origin region",
            ["region", "origin"], [region],
        )


class _Status(Protocol):
    region: str

    async def status(self) -> dict[str, Any]: ...


def _counter(name: str, doc: str, labels: Sequence[str] = ()) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, labels=["region", *labels])


def _gauge(name: str, doc: str, labels: Sequence[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=["region", *labels])


class _Families:
    """The metric families of one scrape, added section by section."""

    def __init__(self, region: str) -> None:
        self.region = region
        self.out: list[Any] = []

    def gauge(self, name: str, doc: str, value: Any) -> None:
        if value is not None:
            g = _gauge(name, doc)
            g.add_metric([self.region], float(value))
            self.out.append(g)

    def counter(self, name: str, doc: str, value: Any) -> None:
        if value is not None:
            c = _counter(name, doc)
            c.add_metric([self.region], float(value))
            self.out.append(c)


def region_families(
    region: str, status: Mapping[str, Any], delay: ApplyDelay | None = None
) -> list[Any]:
    """The metric families of a region service, from its :meth:`status` dict."""
    families = _Families(region)
    _health(families, status)
    _materializer(families, status.get("materializer") or {})
    replicators = status.get("replicators") or []
    _replicators(families, replicators)
    _dead_letters(families, status, replicators)
    saga = status.get("saga_participant")
    if saga is not None:
        _participant(families, saga)
    state = status.get("state_host")
    if state is not None:
        _state_host(families, state)
    if delay is not None:
        families.out.append(delay.family(region))
    return families.out


def _health(f: _Families, status: Mapping[str, Any]) -> None:
    f.gauge("edgebus_region_healthy", "1 while the region service is healthy (broker "
            "reachable, no component failed)", int(bool(status.get("healthy"))))
    f.gauge("edgebus_broker_reachable", "1 if the region's Kafka answered this scrape",
            int(bool(status.get("broker_reachable"))))
    if status.get("broker_reachable"):
        f.gauge("edgebus_replication_lag_events", "Records in the region's events topic not "
                "yet materialized (own writes, copies and heartbeats)", status.get("lag"))
    fresh = _gauge("edgebus_staleness_ms", "Age of the newest heartbeat of an origin "
                   "region passed here (bounded-staleness reads rely on it); absent while "
                   "unknown", ["origin"])
    for origin, ms in sorted((status.get("staleness_ms") or {}).items()):
        if ms is not None:
            fresh.add_metric([f.region, origin], float(ms))
    f.out.append(fresh)
    f.gauge("edgebus_replication_paused", "1 while an operator paused pushing the region's "
            "events to another region", int(bool(status.get("replication_paused"))))
    f.gauge("edgebus_store_keys", "Keys in the region's store", status.get("keys"))
    f.gauge("edgebus_store_bytes", "Size of the region's store", status.get("store_bytes"))
    f.gauge("edgebus_uptime_seconds", "Seconds since the region service started",
            status.get("uptime_s"))
    buffer = status.get("causal_buffer") or {}
    f.gauge("edgebus_causal_buffer_pending", "Events waiting for their causal dependencies",
            buffer.get("pending", 0))
    f.gauge("edgebus_causal_buffer_bound", "replication.max_causal_buffer", buffer.get("bound"))
    f.gauge("edgebus_causal_buffer_pending_bytes", "Bytes (keys, values, headers) of the "
            "events waiting for their causal dependencies", buffer.get("pending_bytes", 0))
    f.gauge("edgebus_causal_buffer_bound_bytes", "replication.max_causal_buffer_bytes",
            buffer.get("bound_bytes"))
    f.gauge("edgebus_causal_buffer_full", "1 while the causal buffer is over its bound",
            int(bool(buffer.get("full"))))


def _materializer(f: _Families, m: Mapping[str, Any]) -> None:
    f.counter("edgebus_events_applied", "Events applied to the region's store (rate(): the "
              "apply rate)", m.get("applied", 0))
    f.counter("edgebus_records_consumed", "Records the materializer read (events, copies, "
              "watermarks)", m.get("events", 0))
    f.counter("edgebus_duplicates_skipped", "Events skipped as already applied",
              m.get("duplicates", 0))
    f.counter("edgebus_materializer_batches", "Batches committed to the store",
              m.get("batches", 0))
    f.counter("edgebus_causal_buffer_full_episodes", "Times the causal buffer went over its "
              "bound", m.get("causal_buffer_full", 0))
    f.counter("edgebus_poison_batches", "Batches the store refused as a whole, applied "
              "again in halves to find the record at fault", m.get("poison_batches", 0))


def _replicators(f: _Families, replicators: list[Mapping[str, Any]]) -> None:
    copied = _counter("edgebus_replicated_events", "Events this region pushed into another "
                      "region's topic, per target region", ["target"])
    seen = _counter("edgebus_replicator_records_seen", "Records of this region's topic the "
                    "replicator to a target read", ["target"])
    for rep in replicators:
        target = str(rep.get("target") or "")
        copied.add_metric([f.region, target], float(rep.get("copied", 0)))
        seen.add_metric([f.region, target], float(rep.get("seen", 0)))
    f.out += [copied, seen]


def _dead_letters(
    f: _Families, status: Mapping[str, Any], replicators: list[Mapping[str, Any]]
) -> None:
    m = status.get("materializer") or {}
    state = status.get("state_host")
    dead = _counter("edgebus_dead_letters", "Records this region's service sent to a "
                    "dead-letter topic, by stage (replicate: a copy refused at the hop)", ["stage"])
    dead.add_metric([f.region, "materialize"], float(m.get("dead_letters", 0)))
    dead.add_metric([f.region, "replicate"],
                    float(sum(rep.get("refused", 0) for rep in replicators)))
    if state is not None:
        dead.add_metric([f.region, "state"], float(state["counters"].get("dead_letters", 0)))
    saga = status.get("saga_participant")
    if saga is not None:
        dead.add_metric([f.region, "participant"], float(saga.get("dead_letters", 0)))
    f.out.append(dead)


def _participant(f: _Families, saga: Mapping[str, Any]) -> None:
    votes = _counter("edgebus_saga_votes", "Strong-write votes of this region's "
                     "participant", ["vote"])
    votes.add_metric([f.region, "yes"], float(saga.get("votes_yes", 0)))
    votes.add_metric([f.region, "no"], float(saga.get("votes_no", 0)))
    outcomes = _counter("edgebus_saga_participant_outcomes", "Strong-write decisions "
                        "this region's participant carried out", ["outcome"])
    outcomes.add_metric([f.region, "commit"], float(saga.get("commits", 0)))
    outcomes.add_metric([f.region, "abort"], float(saga.get("aborts", 0)))
    f.out += [votes, outcomes]
    f.gauge("edgebus_saga_in_doubt", "Transactions voted yes here and not decided yet",
            saga.get("in_doubt", 0))


def _state_host(f: _Families, state: Mapping[str, Any]) -> None:
    counters = state.get("counters") or {}
    for key, name in _STATE_COUNTERS.items():
        f.counter(name, f"State host: {key.replace('_', ' ')}", counters.get(key, 0))
    f.gauge("edgebus_states_hosted", "State objects this region's host folds",
            state.get("states", 0))
    f.gauge("edgebus_states_owned", "State objects this region's host owns",
            len(state.get("owned") or ()))


class RegionMetrics:
    """A region service's registry; :meth:`render` takes a status snapshot and renders
    it. ``service``: a :class:`~edgebus.server.service.RegionService` (anything with
    ``region`` and ``async status()``; a ``materializer`` with ``on_applied`` feeds
    the apply delay histogram)."""

    def __init__(self, service: _Status) -> None:
        self.service = service
        self.delay = ApplyDelay()
        self._snapshot: Mapping[str, Any] = {}
        self._metrics = ServiceMetrics(
            lambda: region_families(service.region, self._snapshot, self.delay)
        )
        materializer = getattr(service, "materializer", None)
        if materializer is not None:
            materializer.on_applied(self.delay.on_applied)

    async def render(self) -> bytes:
        """The text exposition of the service's metrics now."""
        snapshot = await self.service.status()
        self._snapshot = snapshot  # no await between this and the render
        return self._metrics.render()
