"""Prometheus metrics for operators: ``GET /metrics`` of region services and coordinators.

Each service gets a :class:`~prometheus_client.CollectorRegistry` of its own (never the
global one: two services in one process do not clash) holding one custom collector
that reads the service's live counters when scraped. Region services serve
``/metrics`` on their query endpoint (:mod:`edgebus.region.query`); ``edgebus
coordinator run --metrics-listen HOST:PORT`` serves a coordinator's with
:func:`serve_metrics`. ``docs/operations.md`` lists the metrics.

Counters are the service's own, so they start at 0 when its process starts (Prometheus
``rate()`` handles the reset).
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector

__all__ = [
    "CONTENT_TYPE",
    "ApplyDelay",
    "CoordinatorMetrics",
    "RegionMetrics",
    "metrics_response",
    "serve_metrics",
]

#: the Prometheus text exposition format
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: upper bounds (ms) of the append-to-apply delay histogram's buckets
DELAY_BUCKETS_MS: tuple[float, ...] = (
    5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000,
)

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


class _Histogram:
    """Bucket counts, sum and count of observations (one label set)."""

    __slots__ = ("buckets", "count", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.buckets = [0] * (len(bounds) + 1)  # the last one: above every bound
        self.count = 0
        self.sum = 0.0


class ApplyDelay:
    """Append-to-apply delay of applied events, per origin region: the time between the
    event's HLC wall clock (stamped by the writer) and its materialization here. For
    another origin's events this includes replication. Clock skew between hosts shows
    up in it; negative delays count as 0."""

    def __init__(self, bounds: Sequence[float] = DELAY_BUCKETS_MS) -> None:
        self.bounds = tuple(bounds)
        self.by_origin: dict[str, _Histogram] = {}

    def observe(self, origin: str, delay_ms: float) -> None:
        """Count one event of ``origin`` applied ``delay_ms`` after it was written."""
        hist = self.by_origin.get(origin)
        if hist is None:
            hist = self.by_origin[origin] = _Histogram(self.bounds)
        delay_ms = max(0.0, delay_ms)
        hist.buckets[bisect.bisect_left(self.bounds, delay_ms)] += 1
        hist.count += 1
        hist.sum += delay_ms

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

    def histogram(self, name: str, doc: str, labels: list[str],
                  fixed: list[str]) -> HistogramMetricFamily:
        """The observations as histogram ``name``: label values ``fixed`` then the
        observation's key."""
        family = HistogramMetricFamily(name, doc, labels=labels)
        for origin, hist in sorted(self.by_origin.items()):
            cumulative = 0
            buckets: list[tuple[str, float]] = []
            for bound, count in zip(self.bounds, hist.buckets, strict=False):
                cumulative += count
                buckets.append((_number(bound), cumulative))
            buckets.append(("+Inf", hist.count))
            family.add_metric([*fixed, origin], buckets, hist.sum)
        return family


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


class _Status(Protocol):
    region: str

    async def status(self) -> dict[str, Any]: ...


class _RegionCollector(Collector):
    """Renders the last status snapshot (taken right before each scrape)."""

    def __init__(self, region: str, delay: ApplyDelay) -> None:
        self.region = region
        self.delay = delay
        self.snapshot: Mapping[str, Any] = {}

    def collect(self) -> Iterator[Any]:
        return iter(region_families(self.region, self.snapshot, self.delay))


def _counter(name: str, doc: str, labels: Sequence[str] = ()) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, labels=["region", *labels])


def _gauge(name: str, doc: str, labels: Sequence[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=["region", *labels])


def region_families(
    region: str, status: Mapping[str, Any], delay: ApplyDelay | None = None
) -> list[Any]:
    """The metric families of a region service, from its :meth:`status` dict."""
    r = [region]
    out: list[Any] = []

    def gauge(name: str, doc: str, value: Any) -> None:
        if value is not None:
            g = _gauge(name, doc)
            g.add_metric(r, float(value))
            out.append(g)

    def counter(name: str, doc: str, value: Any) -> None:
        if value is not None:
            c = _counter(name, doc)
            c.add_metric(r, float(value))
            out.append(c)

    gauge("edgebus_region_healthy", "1 while the region service is healthy (broker "
          "reachable, no component failed)", int(bool(status.get("healthy"))))
    gauge("edgebus_broker_reachable", "1 if the region's Kafka answered this scrape",
          int(bool(status.get("broker_reachable"))))
    if status.get("broker_reachable"):
        gauge("edgebus_replication_lag_events", "Records in the region's events topic not "
              "yet materialized (own writes, copies and heartbeats)", status.get("lag"))
    staleness = status.get("staleness_ms") or {}
    fresh = _gauge("edgebus_staleness_ms", "Age of the newest heartbeat of an origin "
                   "region passed here (bounded-staleness reads rely on it); absent while "
                   "unknown", ["origin"])
    for origin, ms in sorted(staleness.items()):
        if ms is not None:
            fresh.add_metric([region, origin], float(ms))
    out.append(fresh)
    gauge("edgebus_replication_paused", "1 while an operator paused replication into the "
          "region", int(bool(status.get("replication_paused"))))
    gauge("edgebus_store_keys", "Keys in the region's store", status.get("keys"))
    gauge("edgebus_store_bytes", "Size of the region's store", status.get("store_bytes"))
    gauge("edgebus_uptime_seconds", "Seconds since the region service started",
          status.get("uptime_s"))

    buffer = status.get("causal_buffer") or {}
    gauge("edgebus_causal_buffer_pending", "Events waiting for their causal dependencies",
          buffer.get("pending", 0))
    gauge("edgebus_causal_buffer_bound", "replication.max_causal_buffer", buffer.get("bound"))
    gauge("edgebus_causal_buffer_full", "1 while the causal buffer is over its bound",
          int(bool(buffer.get("full"))))

    m = status.get("materializer") or {}
    counter("edgebus_events_applied", "Events applied to the region's store (rate(): the "
            "apply rate)", m.get("applied", 0))
    counter("edgebus_records_consumed", "Records the materializer read (events, copies, "
            "watermarks)", m.get("events", 0))
    counter("edgebus_duplicates_skipped", "Events skipped as already applied",
            m.get("duplicates", 0))
    counter("edgebus_materializer_batches", "Batches committed to the store",
            m.get("batches", 0))
    counter("edgebus_causal_buffer_full_episodes", "Times the causal buffer went over its "
            "bound", m.get("causal_buffer_full", 0))

    replicators = status.get("replicators") or []
    copied = _counter("edgebus_replicated_events", "Events copied into this region from "
                      "other regions, per replicator (its source regions)", ["sources"])
    seen = _counter("edgebus_replicator_records_seen", "Records the replicator read from "
                    "source regions' topics", ["sources"])
    for rep in replicators:
        sources = ",".join(rep.get("sources") or ())
        copied.add_metric([region, sources], float(rep.get("copied", 0)))
        seen.add_metric([region, sources], float(rep.get("seen", 0)))
    out += [copied, seen]

    state = status.get("state_host")
    dead = _counter("edgebus_dead_letters", "Records this region's service sent to a "
                    "dead-letter topic, by stage (replicate: to the origin's DLQ)", ["stage"])
    dead.add_metric([region, "materialize"], float(m.get("dead_letters", 0)))
    dead.add_metric([region, "replicate"],
                    float(sum(rep.get("refused", 0) for rep in replicators)))
    if state is not None:
        dead.add_metric([region, "state"], float(state["counters"].get("dead_letters", 0)))
    out.append(dead)

    saga = status.get("saga_participant")
    if saga is not None:
        votes = _counter("edgebus_saga_votes", "Strong-write votes of this region's "
                         "participant", ["vote"])
        votes.add_metric([region, "yes"], float(saga.get("votes_yes", 0)))
        votes.add_metric([region, "no"], float(saga.get("votes_no", 0)))
        outcomes = _counter("edgebus_saga_participant_outcomes", "Strong-write decisions "
                            "this region's participant carried out", ["outcome"])
        outcomes.add_metric([region, "commit"], float(saga.get("commits", 0)))
        outcomes.add_metric([region, "abort"], float(saga.get("aborts", 0)))
        out += [votes, outcomes]
        gauge("edgebus_saga_in_doubt", "Transactions voted yes here and not decided yet",
              saga.get("in_doubt", 0))

    if state is not None:
        counters = state.get("counters") or {}
        for key, name in _STATE_COUNTERS.items():
            counter(name, f"State host: {key.replace('_', ' ')}", counters.get(key, 0))
        gauge("edgebus_states_hosted", "State objects this region's host folds",
              state.get("states", 0))
        gauge("edgebus_states_owned", "State objects this region's host owns",
              len(state.get("owned") or ()))

    if delay is not None:
        out.append(delay.family(region))
    return out


class RegionMetrics:
    """A region service's registry; :meth:`render` takes a status snapshot and renders
    it. ``service``: a :class:`~edgebus.region.service.RegionService` (anything with
    ``region`` and ``async status()``; a ``materializer`` with ``on_applied`` feeds
    the apply delay histogram)."""

    def __init__(self, service: _Status) -> None:
        self.service = service
        self.delay = ApplyDelay()
        self.registry = CollectorRegistry(auto_describe=False)
        self._collector = _RegionCollector(service.region, self.delay)
        self.registry.register(self._collector)
        materializer = getattr(service, "materializer", None)
        if materializer is not None:
            materializer.on_applied(self.delay.on_applied)

    async def render(self) -> bytes:
        """The text exposition of the service's metrics now."""
        snapshot = await self.service.status()
        self._collector.snapshot = snapshot  # no await between this and the render
        return generate_latest(self.registry)


class _CoordinatorCollector(Collector):
    def __init__(self, coordinator: Any) -> None:
        self.coordinator = coordinator

    def collect(self) -> Iterator[Any]:
        return iter(coordinator_families(self.coordinator))


def coordinator_families(coordinator: Any) -> list[Any]:
    """The metric families of a :class:`~edgebus.saga.coordinator.Coordinator`."""
    name = [coordinator.name]
    decisions = CounterMetricFamily(
        "edgebus_saga_decisions", "Strong-write decisions this coordinator appended to the "
        "saga log", labels=["coordinator", "outcome"],
    )
    for outcome in ("commit", "abort"):
        decisions.add_metric([*name, outcome], float(coordinator.outcomes.get(outcome, 0)))
    timeouts = CounterMetricFamily(
        "edgebus_saga_timeouts", "Aborts decided because a participant did not vote "
        "before the deadline (also counted as aborts)", labels=["coordinator"],
    )
    timeouts.add_metric(name, float(coordinator.timeouts))
    partitions = GaugeMetricFamily(
        "edgebus_saga_partitions_assigned", "Saga-log partitions this coordinator decides",
        labels=["coordinator"],
    )
    partitions.add_metric(name, float(len(coordinator.logs)))
    undecided = GaugeMetricFamily(
        "edgebus_saga_undecided", "Transactions folded and not decided yet",
        labels=["coordinator"],
    )
    undecided.add_metric(name, float(sum(len(p.undecided()) for p in coordinator.logs.values())))
    families = [decisions, timeouts, partitions, undecided]
    latency = getattr(coordinator, "write_latency", None)
    if latency is not None:
        families.append(latency.histogram(
            "edgebus_strong_write_latency_ms",
            "Strong writes: time from the client's BEGIN (its clock) to this coordinator's "
            "decision in the saga log, in ms, by outcome",
            ["coordinator", "outcome"], name,
        ))
    return families


class CoordinatorMetrics:
    """A coordinator's registry."""

    def __init__(self, coordinator: Any) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_CoordinatorCollector(coordinator))

    async def render(self) -> bytes:
        """The text exposition of the coordinator's metrics now."""
        return generate_latest(self.registry)


def metrics_response(body: bytes) -> web.Response:
    """An aiohttp answer carrying a text exposition."""
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


async def serve_metrics(
    render: Callable[[], Awaitable[bytes]], listen: str
) -> tuple[web.AppRunner, str]:
    """Serve ``GET /metrics`` on ``host:port`` (port 0: any free one); returns the runner
    (``await runner.cleanup()`` to stop) and the URL of ``/metrics``."""
    host, _, port_text = listen.rpartition(":")
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"{listen!r} is not HOST:PORT (e.g. 127.0.0.1:9464)") from None

    async def metrics(request: web.Request) -> web.Response:
        return metrics_response(await render())

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host or "127.0.0.1", port)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    server: Any = site._server
    sockets = server.sockets if server is not None else []
    bound = sockets[0].getsockname() if sockets else (host, port)
    return runner, f"http://{bound[0]}:{bound[1]}/metrics"
