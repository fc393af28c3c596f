"""What a region service reports about itself (``GET /v1/status``, ``edgebus
status``): health, lag, positions, frontier, staleness, the causal buffer and the
counters of its parts."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from connectors import Store
from edgebus.config import EdgeConfig
from edgebus.core.freshness import staleness_ms
from edgebus.errors import InfrastructureUnavailable
from edgebus.kafka.reading import end_offsets
from edgebus.kafka.topics import events_topic
from edgebus.region.materializer import Materializer

__all__ = ["ReportingService", "service_status"]


class ReportingService(Protocol):
    """What a status report reads of a region service
    (:class:`~edgebus.server.service.RegionService`)."""

    region: str
    config: EdgeConfig
    bootstrap: str
    store: Store
    url: str | None
    started_at: float
    materializer: Materializer | None
    participant: Any
    state_host: Any

    @property
    def failure(self) -> BaseException | None:
        """Why the service stopped working, if it did."""

    @property
    def replication_paused(self) -> bool:
        """Whether replication into the region is paused."""

    @property
    def paused_targets(self) -> list[str]:
        """The regions this region's replicators do not push to now."""

    @property
    def replicators(self) -> Sequence[Any]:
        """The replicators pushing this region's events to the others."""

    def fresh_ms(self) -> Mapping[tuple[str, int], int]:
        """Newest heartbeat origin time passed and committed, per origin stream."""


async def service_status(service: ReportingService) -> dict[str, Any]:
    """Health, lag, positions and store size of a region service (what ``edgebus
    status`` prints)."""
    topic = events_topic(service.region)
    positions = await service.store.positions()
    applied = {p: o for (t, p), o in positions.items() if t == topic}
    try:
        found = await end_offsets(service.config.kafka, service.bootstrap, [topic])
        ends, reachable = {tp.partition: o for tp, o in found.items()}, True
    except InfrastructureUnavailable:
        ends, reachable = {}, False
    stats = await service.store.stats()
    m = service.materializer
    gate = m.applier.current_gate if m else None
    frontier = dict(m.view.frontier) if m and gate else await service.store.frontier()
    staleness = _staleness_by_origin(service)
    past_end = {p: o for p, o in applied.items() if p in ends and o > ends[p]}
    rebuild = m.rebuild_progress() if m else None
    return {
        "region": service.region,
        "healthy": (reachable and service.failure is None and m is not None
                    and not past_end and rebuild is None),
        # a store whose positions lie past the topic's end was built from another
        # Kafka: never healthy (the materializer rebuilds it, or the service stops)
        "positions_past_end": {str(p): o for p, o in sorted(past_end.items())},
        "rebuilding": rebuild,
        "broker": service.bootstrap,
        "broker_reachable": reachable,
        "failure": None if service.failure is None else repr(service.failure),
        "url": service.url,
        "pid": os.getpid(),
        "store": service.store.url,
        "store_bytes": stats.bytes,
        "keys": stats.keys,
        "tombstones": stats.tombstones,
        "retained_ops": stats.retained_ops,
        "lag": sum(max(0, ends.get(p, 0) - applied.get(p, 0)) for p in ends),
        "positions": {str(p): o for p, o in sorted(applied.items())},
        "end_offsets": {str(p): o for p, o in sorted(ends.items())},
        "frontier": {f"{r}:{p}": o for (r, p), o in sorted(frontier.items())},
        "staleness_ms": staleness,
        # the region's own stream: how far its materializer is behind its own topic
        # (another origin's staleness measures that origin and the replication from
        # it, shown per pair in "staleness_ms")
        "watermark_age_ms": staleness.get(service.region),
        "replication_paused": service.replication_paused,
        "replication_paused_to": service.paused_targets,
        "causal_buffer": _causal_buffer_status(service),
        "saga_participant": service.participant.status() if service.participant else None,
        "state_host": service.state_host.status() if service.state_host else None,
        "materializer": m.stats.to_dict() if m else None,
        "replicators": [
            {"target": r.target, "paused": r.paused, **r.stats.to_dict()}
            for r in service.replicators
        ],
        "uptime_s": round(time.time() - service.started_at, 1),
    }

def _staleness_by_origin(service: ReportingService) -> dict[str, float | None]:
    """Per origin region: the age of its newest heartbeat passed here (None: none)."""
    now_ms = time.time() * 1000
    fresh = service.fresh_ms()
    partitions = range(service.config.kafka.partitions)
    return {
        origin: staleness_ms([(origin, p) for p in partitions], fresh, now_ms)
        for origin in service.config.regions
    }

def _causal_buffer_status(service: ReportingService) -> dict[str, Any]:
    """The causal gate: events waiting, its bound, and what the first ten wait for."""
    m = service.materializer
    gate = m.applier.current_gate if m else None
    blocked = list((gate.blocked() if gate else {}).items())[:10]
    return {
        "pending": gate.pending if gate else 0,
        "pending_bytes": gate.pending_bytes if gate else 0,
        "bound": service.config.replication.max_causal_buffer,
        "bound_bytes": service.config.replication.max_causal_buffer_bytes,
        "full": bool(m and m.buffer_full),
        "blocked": [
            {"stream": f"{r}:{p}", "offset": o,
             "waits_for": {f"{mr}:{mp}": mo for (mr, mp), mo in lacking.items()}}
            for (r, p), (o, lacking) in blocked
        ],
    }
