"""Workflow nodes run in ``edgebus.node <id>`` spans when ``monitoring.trace_enabled``
(edgebus.tracing), and what a node traces is the node span's child (no broker)."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from edgebus.workflow import LocalRuntime, WorkflowBuilder, processing_node
from edgebus.workflow import runtime as runtime_module


@processing_node("tracing_test_step")
def step(value: int = 1) -> int:
    with trace.get_tracer("test").start_as_current_span("inside"):
        return value + 1


def test_each_node_runs_in_its_span_and_what_it_traces_is_a_child(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(trace, "get_tracer", provider.get_tracer)
    asked: list[Any] = []

    def tracer_for(config: Any, service: str) -> Any:
        asked.append(config.monitoring.trace_enabled)
        return provider.get_tracer("edgebus")

    monkeypatch.setattr(runtime_module, "tracer_for", tracer_for)
    builder = WorkflowBuilder()
    builder.add_node("tracing_test_step", "first", {"value": 1})
    builder.add_node("tracing_test_step", "second", {})
    builder.add_connection("first", "result", "second", "value")
    results, run_id = LocalRuntime({"monitoring": {"trace_enabled": True}}).execute(
        builder.build()
    )
    assert results["second"]["result"] == 3 and asked == [True]
    spans = {s.name: s for s in exporter.get_finished_spans() if s.name.startswith("edgebus")}
    assert set(spans) == {"edgebus.node first", "edgebus.node second"}
    assert spans["edgebus.node first"].attributes["edgebus.run"] == run_id
    inside = [s for s in exporter.get_finished_spans() if s.name == "inside"]
    assert {s.parent.span_id for s in inside if s.parent} == {
        spans["edgebus.node first"].context.span_id,
        spans["edgebus.node second"].context.span_id,
    }


def test_without_tracing_no_node_span_is_made(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[str] = []
    real = runtime_module.tracer_for

    def tracer_for(config: Any, service: str) -> Any:
        tracer = real(config, service)
        made.append(repr(tracer))
        return tracer

    monkeypatch.setattr(runtime_module, "tracer_for", tracer_for)
    builder = WorkflowBuilder()
    builder.add_node("tracing_test_step", "only", {})
    LocalRuntime({}).execute(builder.build())
    assert made == ["None"]
