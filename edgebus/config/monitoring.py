"""The ``monitoring`` section: metrics and tracing switches."""

from __future__ import annotations

from pydantic import Field

from edgebus.config.section import Section

__all__ = ["MonitoringConfig"]


class MonitoringConfig(Section):
    """Metrics and tracing switches."""

    #: the bus records every operation (EdgeMonitoringNode, ``/metrics``)
    metrics_enabled: bool = True
    #: OpenTelemetry spans from the writer through replication to every apply, the W3C
    #: ``traceparent`` carried in a Kafka header (edgebus.tracing)
    trace_enabled: bool = False
    #: where spans go: an OTLP/HTTP traces URL (``http://collector:4318/v1/traces``);
    #: unset, OpenTelemetry's ``OTEL_EXPORTER_OTLP_*ENDPOINT`` environment, else nowhere
    otlp_endpoint: str | None = Field(None, min_length=1, max_length=2048)
    #: seconds between probes of the region services by EdgeMonitoringNode (a run
    #: within it reuses the last answer)
    health_check_interval: float = Field(30.0, gt=0)
