"""Prometheus exposition for edgebus services: ``GET /metrics``.

Each service gets a :class:`~prometheus_client.CollectorRegistry` of its own (never the
global one: two services in one process do not clash) holding one custom collector
that reads the service's live counters when scraped (:class:`ServiceMetrics`). Region
services serve ``/metrics`` on their query endpoint (:mod:`edgebus.server.query`);
``edgebus coordinator run --metrics-listen HOST:PORT`` serves a coordinator's with
:func:`serve_metrics`. The metric families themselves are their services' own:
:mod:`edgebus.server.metrics` (region services), :mod:`edgebus.commit.metrics`
(coordinators). ``docs/operations.md`` lists them.

Counters are the service's own, so they start at 0 when its process starts (Prometheus
``rate()`` handles the reset).
"""

from __future__ import annotations

import bisect
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

__all__ = [
    "CONTENT_TYPE",
    "DELAY_BUCKETS_MS",
    "LatencyHistogram",
    "ServiceMetrics",
    "metrics_response",
    "serve_metrics",
]

#: the Prometheus text exposition format
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: upper bounds (ms) of the latency histograms' buckets
DELAY_BUCKETS_MS: tuple[float, ...] = (
    5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000,
)


class _Histogram:
    """Bucket counts, sum and count of observations (one label set)."""

    __slots__ = ("buckets", "count", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.buckets = [0] * (len(bounds) + 1)  # the last one: above every bound
        self.count = 0
        self.sum = 0.0


class LatencyHistogram:
    """Latencies in ms, one histogram per label value (an origin region, an outcome);
    negative observations count as 0."""

    def __init__(self, bounds: Sequence[float] = DELAY_BUCKETS_MS) -> None:
        self.bounds = tuple(bounds)
        self.by_origin: dict[str, _Histogram] = {}

    def observe(self, origin: str, delay_ms: float) -> None:
        """Count one observation of ``delay_ms`` under label value ``origin``."""
        hist = self.by_origin.get(origin)
        if hist is None:
            hist = self.by_origin[origin] = _Histogram(self.bounds)
        delay_ms = max(0.0, delay_ms)
        hist.buckets[bisect.bisect_left(self.bounds, delay_ms)] += 1
        hist.count += 1
        hist.sum += delay_ms

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


class _Families(Collector):
    def __init__(self, families: Callable[[], list[Any]]) -> None:
        self.families = families

    def collect(self) -> Iterator[Any]:
        return iter(self.families())


class ServiceMetrics:
    """One service's registry: ``families()`` gives its metric families at each scrape."""

    def __init__(self, families: Callable[[], list[Any]]) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Families(families))

    def render(self) -> bytes:
        """The text exposition of the service's metrics now."""
        return generate_latest(self.registry)


def metrics_response(body: bytes) -> web.Response:
    """An aiohttp answer carrying a text exposition."""
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


#: why a request's ``Authorization`` header may not scrape: (401 or 403, what to do)
Refusal = Callable[[str | None], "tuple[int, str] | None"]


async def serve_metrics(
    render: Callable[[], Awaitable[bytes]], listen: str, refusal: Refusal | None = None
) -> tuple[web.AppRunner, str]:
    """Serve ``GET /metrics`` on ``host:port`` (port 0: any free one); returns the runner
    (``await runner.cleanup()`` to stop) and the URL of ``/metrics``. ``refusal`` checks
    each request's ``Authorization`` header (None: every request is answered)."""
    host, _, port_text = listen.rpartition(":")
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"{listen!r} is not HOST:PORT (e.g. 127.0.0.1:9464)") from None

    async def metrics(request: web.Request) -> web.Response:
        refused = refusal(request.headers.get("Authorization")) if refusal else None
        if refused is not None:
            status, why = refused
            return web.json_response({"error": why}, status=status)
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
