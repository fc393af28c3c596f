"""``edgebus.apply`` spans: one per applied record that carries a ``traceparent``
(edgebus.tracing), a child of the writer's or the replicator's span, from the start of
its batch's fold to its batch's commit. Only with ``monitoring.trace_enabled``."""

from __future__ import annotations

from typing import Any

from edgebus.tracing import TRACEPARENT, SpanKind, Tracer, attributes, parent_of

__all__ = ["trace_applied"]


def trace_applied(tracer: Tracer, region: str, records: list[Any], started_ns: int) -> int:
    """End an ``edgebus.apply`` span for each of ``records`` with a valid
    ``traceparent`` header; returns how many."""
    spans = 0
    for record in records:
        headers = record.headers
        if not headers or not any(name == TRACEPARENT for name, _ in headers):
            continue
        parent = parent_of(headers)
        if parent is None:
            continue
        span = tracer.start_span(
            "edgebus.apply",
            context=parent,
            kind=SpanKind.CONSUMER,
            start_time=started_ns,
            attributes=attributes(
                region=region, topic=record.topic, partition=record.partition,
                offset=record.offset,
            ),
        )
        span.end()
        spans += 1
    return spans
