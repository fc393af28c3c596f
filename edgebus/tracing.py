"""OpenTelemetry tracing, on when ``monitoring.trace_enabled`` (docs/operations.md).

One trace follows a write from the writer to every region that applies it:

* ``edgebus.write`` (the writer: ``EdgeBus.write``, or inside a workflow node's span
  ``edgebus.node <id>``) stamps the event with the W3C ``traceparent`` of its span, a
  Kafka header beside the ``eb-*`` headers (``schemas/README.md``);
* ``edgebus.replicate`` (the origin's region service, copying the event to another
  region) is a child of it, and the copy carries the copy's own ``traceparent``;
* ``edgebus.apply`` (each region service applying the event, origin and copies) is a
  child of whichever ``traceparent`` the applied record carries.

Spans hold no keys or values (they may be personal data): regions, topics, positions,
event ids, classes. Spans are exported by OTLP over HTTP when an endpoint is configured
(``monitoring.otlp_endpoint``, else OpenTelemetry's own ``OTEL_EXPORTER_OTLP_ENDPOINT``
or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``); without one they are made and dropped, and
the first tracer says so in the log. One tracer provider per endpoint in a process:
its service name is the first caller's (``edgebus-region-<R>``, ``edgebus-client``).

A ``traceparent`` header is parsed strictly (version 00, lower-case hex, no all-zero
ids, exactly 55 bytes): anything else is ignored (the span starts a new trace), never
an error: a hostile header cannot stop a consumer.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterable
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import (
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    TraceFlags,
    Tracer,
)

from edgebus.config import EdgeConfig

__all__ = [
    "TRACEPARENT",
    "SpanKind",
    "Tracer",
    "attributes",
    "flush",
    "parent_of",
    "traceparent",
    "tracer_for",
    "with_traceparent",
]

log = logging.getLogger("edgebus.tracing")

#: the Kafka header that carries a span's W3C trace context
TRACEPARENT = "traceparent"

_TRACEPARENT_RE = re.compile(rb"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ENDPOINT_ENV = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")

_lock = threading.Lock()
#: one tracer provider per OTLP endpoint (None: none configured) in this process
_providers: dict[str | None, TracerProvider] = {}


def _endpoint(config: EdgeConfig) -> str | None:
    """The OTLP/HTTP traces URL: the config's, else OpenTelemetry's environment."""
    given = config.monitoring.otlp_endpoint
    if given:
        return given
    traces = os.environ.get(_ENDPOINT_ENV[0])
    if traces:
        return traces
    base = os.environ.get(_ENDPOINT_ENV[1])
    return base.rstrip("/") + "/v1/traces" if base else None


def _provider_for(config: EdgeConfig, service: str) -> TracerProvider:
    """The provider of ``config``'s endpoint, made by the first caller (whose
    ``service`` names the process in its spans)."""
    endpoint = _endpoint(config)
    with _lock:
        provider = _providers.get(endpoint)
        if provider is not None:
            return provider
        provider = TracerProvider(
            resource=Resource.create({"service.name": service, "process.pid": os.getpid()})
        )
        if endpoint is not None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                OTLPSpanExporter,
            )

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
            log.info("tracing on: spans of %s go to %s (OTLP/HTTP)", service, endpoint)
        else:
            log.warning(
                "monitoring.trace_enabled is on but no OTLP endpoint is configured: spans "
                "are made and dropped. Set monitoring.otlp_endpoint (or "
                "OTEL_EXPORTER_OTLP_ENDPOINT) to a collector's address"
            )
        _providers[endpoint] = provider
        return provider


def tracer_for(config: EdgeConfig, service: str) -> Tracer | None:
    """The tracer edgebus's spans use, or None when ``monitoring.trace_enabled`` is off
    (callers then skip every tracing step: no cost)."""
    if not config.monitoring.trace_enabled:
        return None
    return _provider_for(config, service).get_tracer("edgebus")


def traceparent(span: Span | None = None) -> bytes | None:
    """The W3C ``traceparent`` of ``span`` (default: the current span), or None when
    there is no valid one."""
    context = (span or trace.get_current_span()).get_span_context()
    if not context.is_valid:
        return None
    return (
        f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"
    ).encode("ascii")


def parent_of(headers: Iterable[tuple[str, bytes | None]] | None) -> Context | None:
    """The trace context a record's ``traceparent`` header names, or None (no header,
    or one that is not a valid W3C traceparent: ignored)."""
    for name, value in headers or ():
        if name == TRACEPARENT:
            return _parse(value)
    return None


def _parse(value: bytes | None) -> Context | None:
    if not isinstance(value, bytes) or len(value) != 55:
        return None
    match = _TRACEPARENT_RE.fullmatch(value)
    if match is None:
        return None
    trace_id, span_id = int(match[1], 16), int(match[2], 16)
    if not trace_id or not span_id:
        return None
    parent = SpanContext(
        trace_id, span_id, is_remote=True, trace_flags=TraceFlags(int(match[3], 16) & 1)
    )
    return trace.set_span_in_context(NonRecordingSpan(parent))


def with_traceparent(
    headers: list[tuple[str, bytes]], span: Span | None = None
) -> list[tuple[str, bytes]]:
    """``headers`` with ``traceparent`` naming ``span`` (default: the current span) in
    place of any it held; unchanged when there is no valid span."""
    value = traceparent(span)
    if value is None:
        return headers
    return [*(h for h in headers if h[0] != TRACEPARENT), (TRACEPARENT, value)]


def flush(timeout_ms: int = 10_000) -> bool:
    """Export the spans buffered so far, to every endpoint; False when an exporter did
    not finish in ``timeout_ms`` (True when tracing is off)."""
    with _lock:
        providers = list(_providers.values())
    return all([provider.force_flush(timeout_ms) for provider in providers])


def attributes(**values: Any) -> dict[str, Any]:
    """Span attributes without the None values."""
    return {f"edgebus.{k}": v for k, v in values.items() if v is not None}
