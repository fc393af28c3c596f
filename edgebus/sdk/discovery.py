"""Discovery: which regions answer, how healthy and how fast they are, measured.

The spec's ``discovery`` config drives it: ``locations`` (the regions),
``health_check_interval`` (seconds between probe rounds) and ``refresh_interval``
(seconds between re-reading each region service's announced endpoint). A probe round
asks, for every region, concurrently and within ``probe_timeout_ms``:

* its Kafka cluster for metadata (one probe per cluster, shared by its regions):
  reachability and the probe's round trip;
* its region service for status (HTTP, or a direct call when embedded): consumer
  lag, the age of its oldest origin watermark, and that round trip.

Writes and reads made through the bus add their own latencies
(:meth:`Discovery.observe_produce`, :meth:`Discovery.observe_read`); a write whose
cluster cannot be reached counts as a failed probe at once. The pure
:func:`edgebus.core.health.assess` turns the figures into a
:class:`~edgebus.core.health.RegionHealth`; placement (``unhealthy``, ``latencies_ms``)
and read routing (:func:`~edgebus.core.health.rank_for_reads`) use the result.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from edgebus.config import EdgeConfig
from edgebus.core.health import (
    HealthThresholds,
    LatencyWindow,
    RegionFigures,
    RegionHealth,
    assess,
    rank_for_reads,
)
from edgebus.core.placement import Strategy
from edgebus.kafka.clients import MetadataClient, start_metadata_client
from edgebus.kafka.clusters import resolve_clusters

__all__ = ["Discovery"]

log = logging.getLogger("edgebus.edge")


class _Region:
    def __init__(self) -> None:
        self.produce = LatencyWindow(128)
        self.read = LatencyWindow(128)
        self.probe = LatencyWindow(32)
        self.broker_reachable: bool | None = None
        self.service_reachable: bool | None = None
        self.failures = 0
        self.lag: int | None = None
        self.watermark_age_ms: float | None = None
        self.checked_at_ms: float | None = None
        self.service_error: str | None = None


class Discovery:
    """Health and latency of every configured region, refreshed in the background."""

    def __init__(self, config: EdgeConfig, reader: Any) -> None:
        self.config = config
        self.reader = reader  # a RegionClient
        d = config.discovery
        self.thresholds = HealthThresholds(
            max_lag_events=d.max_lag_events,
            max_watermark_age_ms=d.max_watermark_age_ms,
            max_probe_failures=d.max_probe_failures,
        )
        self.clusters = resolve_clusters(config)
        self._regions = {r: _Region() for r in config.regions}
        self._clients: dict[str, MetadataClient] = {}
        self._task: asyncio.Task[None] | None = None
        self._health: dict[str, RegionHealth] = {}
        self._version = 0
        self._last_refresh = time.monotonic()
        self.rounds = 0

    @property
    def version(self) -> int:
        """Changes whenever health or latency ranking may have changed (cache key)."""
        return self._version

    def start(self) -> None:
        """Start probing in the background (the first round at once)."""
        if self._task is None:
            self._task = asyncio.ensure_future(self._loop())

    async def close(self) -> None:
        """Stop probing and disconnect."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            with contextlib.suppress(Exception):
                await client.close()

    def observe_produce(self, region: str, ms: float) -> None:
        """A write to ``region`` was acknowledged after ``ms``."""
        state = self._regions.get(region)
        if state is not None:
            state.produce.add(ms)

    def observe_read(self, region: str, ms: float | None) -> None:
        """A read from ``region`` took ``ms`` (``None``: its service did not answer)."""
        state = self._regions.get(region)
        if state is None:
            return
        if ms is None:
            state.service_reachable = False
            self._reassess()
        else:
            state.read.add(ms)
            if state.service_reachable is False:
                state.service_reachable = True
                self._reassess()

    def broker_failed(self, region: str) -> None:
        """A write could not reach ``region``'s cluster: count a failed probe now."""
        bootstrap = self.clusters.get(region)
        for name, state in self._regions.items():
            if self.clusters.get(name) == bootstrap:
                state.broker_reachable = False
                state.failures = max(state.failures + 1, self.thresholds.max_probe_failures)
        self._reassess()

    def health(self) -> dict[str, RegionHealth]:
        """Region -> its health as last assessed."""
        if not self._health:
            self._reassess()
        return dict(self._health)

    def unhealthy(self) -> frozenset[str]:
        """Regions writes should avoid."""
        return frozenset(r for r, h in self.health().items() if not h.healthy)

    def latencies_ms(self) -> dict[str, float]:
        """Region -> the latency the ranking uses (regions not measured are absent)."""
        return {r: h.latency_ms for r, h in self.health().items() if h.latency_ms is not None}

    def rank_for_reads(
        self,
        strategy: Strategy,
        preferred: Sequence[str] = (),
        excluded: Sequence[str] = (),
        key: str = "",
        candidates: Sequence[str] | None = None,
    ) -> tuple[str, ...]:
        """Regions to try for a read, best first: of ``candidates`` (default every
        configured region; a read passes the key's placement when it knows it), the
        readable ones, or all of them when none is readable."""
        return rank_for_reads(
            self.config.regions if candidates is None else candidates, self.health(),
            strategy, preferred, excluded, key,
        )

    def report(self) -> dict[str, Any]:
        """JSON-ready figures and health per region (``edgebus status``, monitoring)."""
        out: dict[str, Any] = {}
        health = self.health()
        for region, state in self._regions.items():
            out[region] = {
                **health[region].to_dict(),
                "broker_reachable": state.broker_reachable,
                "service_reachable": state.service_reachable,
                "consecutive_failures": state.failures,
                "lag_events": state.lag,
                "watermark_age_ms": state.watermark_age_ms,
                "produce_ms": {"p50": state.produce.p50, "p99": state.produce.p99,
                               "samples": state.produce.count},
                "read_ms": {"p50": state.read.p50, "p99": state.read.p99,
                            "samples": state.read.count},
                "probe_ms": {"p50": state.probe.p50, "p99": state.probe.p99,
                             "samples": state.probe.count},
                "service_error": state.service_error,
            }
        return out

    async def probe_all(self) -> None:
        """One probe round over every region (and cluster), concurrently."""
        timeout = self.config.discovery.probe_timeout_ms / 1000
        refresh = time.monotonic() - self._last_refresh >= self.config.discovery.refresh_interval
        if refresh:
            self._last_refresh = time.monotonic()
        clusters = sorted(set(self.clusters[r] for r in self._regions))
        broker_results = await asyncio.gather(
            *(self._probe_broker(b, timeout) for b in clusters)
        )
        by_cluster = dict(zip(clusters, broker_results, strict=True))
        await asyncio.gather(
            *(self._probe_service(r, timeout, refresh) for r in self._regions)
        )
        now_ms = time.time() * 1000
        for region, state in self._regions.items():
            ok, ms = by_cluster[self.clusters[region]]
            state.broker_reachable = ok
            state.failures = 0 if ok else state.failures + 1
            if ms is not None:
                state.probe.add(ms)
            state.checked_at_ms = now_ms
        self.rounds += 1
        self._reassess()

    async def _loop(self) -> None:
        interval = self.config.discovery.health_check_interval
        while True:
            try:
                await self.probe_all()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # a probe round must never stop discovery
                log.warning("discovery: probe round failed: %r", e)
            await asyncio.sleep(interval)

    async def _probe_broker(self, bootstrap: str, limit_s: float) -> tuple[bool, float | None]:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(limit_s):
                client = self._clients.get(bootstrap)
                if client is None:
                    client = await start_metadata_client(
                        self.config.kafka, bootstrap, client_id="edgebus-discovery",
                        timeout_s=limit_s,
                    )
                    self._clients[bootstrap] = client
                await client.fetch_all_metadata()
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.debug("discovery: broker %s does not answer: %r", bootstrap, e)
            client = self._clients.pop(bootstrap, None)
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.close()
            return False, None
        return True, (time.perf_counter() - started) * 1000

    async def _probe_service(self, region: str, limit_s: float, refresh: bool) -> None:
        state = self._regions[region]
        started = time.perf_counter()
        try:
            async with asyncio.timeout(limit_s):
                if refresh:
                    await self.reader.endpoint(region, refresh=True)
                status: Mapping[str, Any] = await self.reader.status(region)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            state.service_reachable = False
            state.service_error = str(e) or type(e).__name__
            return
        state.service_reachable = True
        state.service_error = None
        state.read.add((time.perf_counter() - started) * 1000)
        lag = status.get("lag")
        state.lag = int(lag) if isinstance(lag, int) else None
        age = status.get("watermark_age_ms")
        state.watermark_age_ms = float(age) if isinstance(age, int | float) else None

    def _reassess(self) -> None:
        health = {}
        for region, state in self._regions.items():
            health[region] = assess(
                RegionFigures(
                    region=region,
                    broker_reachable=state.broker_reachable,
                    service_reachable=state.service_reachable,
                    consecutive_failures=state.failures,
                    lag_events=state.lag,
                    watermark_age_ms=state.watermark_age_ms,
                    produce_ms=state.produce.p50,
                    read_ms=state.read.p50,
                    probe_ms=state.probe.p50,
                    checked_at_ms=state.checked_at_ms,
                ),
                self.thresholds,
            )
        if health != self._health:
            changed = [
                r for r in health
                if r not in self._health or self._health[r].healthy != health[r].healthy
            ]
            for region in changed:
                h = health[region]
                log.log(
                    logging.WARNING if not h.healthy else logging.INFO,
                    "discovery: %s is %s%s", region,
                    "healthy" if h.healthy else "unhealthy",
                    f" ({'; '.join(h.reasons)})" if h.reasons else "",
                )
            self._health = health
            self._version += 1
