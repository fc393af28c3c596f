"""OpenTelemetry traces across processes (``monitoring.trace_enabled``, issue 19).

A write in this process and two region services in their own processes, every one
exporting by OTLP/HTTP to a collector this test runs. One trace must follow the write:
``edgebus.write`` (this process) -> ``edgebus.apply`` in the home region's service and
``edgebus.replicate`` (the home's service copying it) -> ``edgebus.apply`` in the other
region's service, parent by parent, from three processes.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from edgebus import EdgeBus, tracing
from tests.integration.regions import RegionProcess, eventually, make_regions


@dataclass(frozen=True)
class ReceivedSpan:
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    pid: int
    attributes: dict[str, Any]


class Collector:
    """An OTLP/HTTP traces endpoint that keeps what it receives."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []

    async def traces(self, request: web.Request) -> web.Response:
        message = ExportTraceServiceRequest.FromString(await request.read())
        for resource_spans in message.resource_spans:
            resource = {a.key: a.value for a in resource_spans.resource.attributes}
            pid = int(resource["process.pid"].int_value)
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    self.spans.append(
                        ReceivedSpan(
                            span.name,
                            span.trace_id.hex(),
                            span.span_id.hex(),
                            span.parent_span_id.hex(),
                            pid,
                            {a.key: _value(a.value) for a in span.attributes},
                        )
                    )
        return web.Response(
            body=ExportTraceServiceResponse().SerializeToString(),
            content_type="application/x-protobuf",
        )

    def named(self, name: str, **attributes: Any) -> list[ReceivedSpan]:
        return [
            s
            for s in self.spans
            if s.name == name
            and all(s.attributes.get(f"edgebus.{k}") == v for k, v in attributes.items())
        ]


def _value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


@pytest.fixture
async def collector() -> AsyncIterator[tuple[Collector, str]]:
    received = Collector()
    app = web.Application()
    app.router.add_post("/v1/traces", received.traces)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield received, f"http://127.0.0.1:{port}/v1/traces"
    finally:
        await runner.cleanup()


async def test_one_trace_follows_a_write_through_replication_to_every_regions_apply(
    kafka_bootstrap: str, tmp_path: Path, collector: tuple[Collector, str]
) -> None:
    received, endpoint = collector
    regions = make_regions(kafka_bootstrap, tmp_path)
    regions.config["monitoring"] = {"trace_enabled": True, "otlp_endpoint": endpoint}
    regions.config_path.write_text(json.dumps(regions.config), encoding="utf-8")
    fast_export = {"OTEL_BSP_SCHEDULE_DELAY": "100"}
    services = [
        RegionProcess(regions, r, regions.store_url(r), extra_env=fast_export)
        for r in (regions.us, regions.eu)
    ]
    try:
        for service in services:
            service.start()
        async with EdgeBus(regions.config, discovery=False) as bus:
            receipt = await bus.write(
                "traced:1", {"plan": "pro"}, region=regions.us, replication_factor=2
            )
        assert receipt.placement == (regions.us, regions.eu), receipt
        assert tracing.flush(), "this process's spans were not exported"

        async def whole_trace() -> bool:
            return bool(
                received.named("edgebus.apply", region=regions.us)
                and received.named("edgebus.apply", region=regions.eu)
            )

        await eventually(whole_trace, 60, "the apply spans of both regions")
    finally:
        for service in services:
            service.stop()

    (write,) = received.named("edgebus.write", event_id=receipt.event_id)
    (replicate,) = received.named("edgebus.replicate", region=regions.us, target=regions.eu)
    (apply_us,) = received.named("edgebus.apply", region=regions.us)
    (apply_eu,) = received.named("edgebus.apply", region=regions.eu)
    assert write.parent_id == ""  # the write began the trace
    assert {s.trace_id for s in (write, replicate, apply_us, apply_eu)} == {write.trace_id}
    assert apply_us.parent_id == write.span_id
    assert replicate.parent_id == write.span_id
    assert apply_eu.parent_id == replicate.span_id
    # three processes: this one wrote, us applied and copied, eu applied the copy
    assert write.pid != apply_us.pid != apply_eu.pid != write.pid
    assert replicate.pid == apply_us.pid
    assert apply_us.attributes["edgebus.offset"] == receipt.offset
    # spans name positions, never the key or the value
    for span in received.spans:
        assert "traced:1" not in json.dumps(span.attributes)
        assert "pro" not in json.dumps(span.attributes)
