"""The ``monitoring`` section: metrics and tracing switches."""

from __future__ import annotations

from pydantic import Field

from edgebus.config.section import Section

__all__ = ["MonitoringConfig"]


class MonitoringConfig(Section):
    """Metrics and tracing switches."""

    metrics_enabled: bool = True
    trace_enabled: bool = False
    health_check_interval: float = Field(30.0, gt=0)
