"""The ``replication`` section: how many regions a write reaches, heartbeat watermarks,
and the bounds of the causal buffer (docs/consistency.md)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from edgebus.config.section import Section

__all__ = ["ReplicationConfig"]


class ReplicationConfig(Section):
    """How many regions a write should reach."""

    #: ``multi_region``: a write reaches every allowed region (or its
    #: ``replication_factor``); ``single_region``: one region, and a write asking for
    #: more is refused (edgebus.core.region_floor)
    strategy: Literal["multi_region", "single_region"] = "multi_region"
    #: the fewest regions a write may be placed in: strict mode refuses a placement
    #: with fewer, saying why; non-strict writes it and the receipt's ``shortfall``
    #: (and a warning in the writer's log) says it fell short
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

    @model_validator(mode="after")
    def _one_region_floor(self) -> ReplicationConfig:
        if self.strategy == "single_region" and self.min_regions > 1:
            raise ValueError(
                f"replication.min_regions is {self.min_regions}, but replication.strategy "
                "single_region places every write in one region: set min_regions to 1 or "
                'strategy to "multi_region"'
            )
        return self
