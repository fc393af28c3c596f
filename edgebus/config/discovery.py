"""The ``discovery`` section: which regions exist, and when one counts as unhealthy."""

from __future__ import annotations

from pydantic import Field, model_validator

from edgebus.config.section import Section
from edgebus.core.placement import DEFAULT_REGIONS

__all__ = ["DiscoveryConfig"]


class DiscoveryConfig(Section):
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
