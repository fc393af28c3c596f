"""The ``traceparent`` header (edgebus.tracing): strict parsing of hostile input,
replacement in a copy's headers, and no tracer (no cost) when tracing is off."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry import trace

from edgebus.config import EdgeConfig
from edgebus.tracing import TRACEPARENT, parent_of, tracer_for, with_traceparent

VALID = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_a_valid_traceparent_names_its_remote_parent() -> None:
    context = parent_of([("eb-origin", b"us"), (TRACEPARENT, VALID)])
    assert context is not None
    parent = trace.get_current_span(context).get_span_context()
    assert parent.is_remote and parent.trace_id == 0x4BF92F3577B34DA6A3CE929D0E0E4736
    assert parent.span_id == 0x00F067AA0BA902B7 and parent.trace_flags.sampled


@pytest.mark.parametrize(
    "value",
    [
        None,
        b"",
        VALID + b"0",  # too long
        VALID.upper(),  # upper-case hex
        b"ff" + VALID[2:],  # unknown version
        b"00-" + b"0" * 32 + VALID[35:],  # all-zero trace id
        VALID[:36] + b"0" * 16 + VALID[52:],  # all-zero span id
        VALID.replace(b"-", b"_"),
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # str, not bytes
    ],
)
def test_a_malformed_traceparent_is_ignored_not_raised(value: object) -> None:
    assert parent_of([(TRACEPARENT, value)]) is None  # type: ignore[list-item]


def test_records_without_a_traceparent_have_no_parent() -> None:
    assert parent_of(None) is None and parent_of([("eb-origin", b"us")]) is None


@given(st.binary(max_size=80))
def test_any_header_bytes_parse_or_are_ignored_never_raise(value: bytes) -> None:
    parent_of([(TRACEPARENT, value)])


def test_with_traceparent_replaces_the_header_and_keeps_the_others() -> None:
    context = parent_of([(TRACEPARENT, VALID)])
    span = trace.get_current_span(context)
    headers = with_traceparent([("eb-origin", b"us"), (TRACEPARENT, b"old")], span)
    assert headers == [("eb-origin", b"us"), (TRACEPARENT, VALID)]


def test_without_a_span_the_headers_are_unchanged() -> None:
    headers = [("eb-origin", b"us")]
    assert with_traceparent(headers) is headers


def test_tracing_off_gives_no_tracer() -> None:
    assert tracer_for(EdgeConfig(), "edgebus-test") is None


def test_each_otlp_endpoint_has_its_own_provider_in_one_process() -> None:
    """A process that traced without an endpoint (spans dropped) still exports the
    spans of a config that names one."""
    from edgebus import tracing

    def provider_of(endpoint: str | None) -> object:
        config = EdgeConfig.from_mapping(
            {"monitoring": {"trace_enabled": True, "otlp_endpoint": endpoint}}
        )
        tracer = tracer_for(config, "edgebus-test")
        assert tracer is not None
        return tracing._providers[tracing._endpoint(config)]

    dropped = provider_of(None)
    exported = provider_of("http://127.0.0.1:9/v1/traces")
    assert exported is not dropped
    assert provider_of("http://127.0.0.1:9/v1/traces") is exported
