"""The fast Event v2 reader gives what the generic fastavro + pydantic path gives."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgebus.core.envelope import Operation
from edgebus.core.hlc import HLCTimestamp
from edgebus.core.vector_clock import VectorClock
from edgebus.errors import DecodeError
from edgebus.wire.event_codec import decode_event, encode_fields, encode_payload
from edgebus.wire.event_reader import ReadEvent, read_event

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=8)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                 max_size=3),
    max_leaves=6,
)
regions = st.sampled_from(["us-east-1", "eu-west-1", "ap-south-1", "me-central-1"])


def generic(value: bytes) -> ReadEvent:
    e = decode_event(value)
    return ReadEvent(e.event_id, e.key, e.operation, e.payload, e.origin_region, e.placement,
                     e.classification, e.hlc, e.schema_version, e.writer)


@st.composite
def encoded_events(draw: st.DrawFn) -> bytes:
    origin = draw(regions)
    others = draw(st.lists(regions.filter(lambda r: r != origin), unique=True, max_size=2))
    op = draw(st.sampled_from(list(Operation)))
    payload = None if op is Operation.DELETE else (
        draw(st.integers(-5, 5)) if op is Operation.INCREMENT else draw(json_values)
    )
    if op is Operation.MERGE:
        payload = {"f": payload}
    deps = VectorClock(draw(st.dictionaries(
        st.tuples(regions, st.integers(0, 12)), st.integers(0, 2**40), max_size=6)))
    return encode_fields(
        str(uuid.uuid4()), draw(st.text(min_size=1, max_size=20)), op, encode_payload(payload),
        origin, (origin, *others), tuple(sorted(draw(st.sets(st.sampled_from(
            ["pii", "phi", "financial", "public"]), max_size=2)))),
        HLCTimestamp(draw(st.integers(0, 2**47)), draw(st.integers(0, 0xFFFF))), deps,
        draw(st.none() | st.text(max_size=10)),
    ).value


@settings(max_examples=300, deadline=None)
@given(encoded_events())
def test_fast_reader_equals_the_generic_decoder(value: bytes) -> None:
    assert read_event(value) == generic(value)


@settings(deadline=None)
@given(encoded_events(), st.data())
def test_truncated_or_extended_body_is_a_decode_error_never_a_crash(
    value: bytes, data: st.DataObject
) -> None:
    cut = data.draw(st.integers(10, len(value) - 1))
    with pytest.raises(DecodeError):
        read_event(value[:cut])
    with pytest.raises(DecodeError, match="after the record"):
        read_event(value + b"\x00")


def test_upper_case_event_id_is_normalized_as_the_envelope_does() -> None:
    event_id = str(uuid.uuid4()).upper()
    value = encode_fields(event_id, "k", Operation.SET, b"1", "eu-west-1", ("eu-west-1",), (),
                          HLCTimestamp(1, 0), VectorClock.empty(), None).value
    assert read_event(value).event_id == event_id.lower() == generic(value).event_id


@pytest.mark.parametrize(
    ("event_id", "placement", "problem"),
    [
        ("not-a-uuid", ("eu-west-1",), "not a UUID"),
        (str(uuid.uuid4()), ("us-east-1",), "must start with the origin"),
        (str(uuid.uuid4()), ("eu-west-1", "eu-west-1"), "repeats a region"),
    ],
    ids=["not-a-uuid", "origin-not-first", "region-repeated"],  # stable under xdist
)
def test_invalid_envelope_is_a_decode_error_naming_the_problem(
    event_id: str, placement: tuple[str, ...], problem: str
) -> None:
    value = encode_fields(event_id, "k", Operation.SET, b"1", "eu-west-1", placement, (),
                          HLCTimestamp(1, 0), VectorClock.empty(), None).value
    with pytest.raises(DecodeError, match=problem):
        read_event(value)


@pytest.mark.parametrize("depth", [251, 300, 1000])
def test_a_payload_nested_deeper_than_the_stores_can_write_is_refused_by_both_readers(
    depth: int,
) -> None:
    from edgebus.wire.event_codec import decode_event

    value = _event_with_payload(b"[" * depth + b"]" * depth)
    with pytest.raises(DecodeError, match="deeper than 250 levels"):
        read_event(value)
    with pytest.raises(DecodeError, match="deeper than 250 levels"):
        decode_event(value)


def test_a_payload_250_levels_deep_is_read_and_a_deeper_one_cannot_be_written() -> None:
    from edgebus.errors import InvalidInput
    from edgebus.wire.event_codec import encode_payload

    assert read_event(_event_with_payload(b"[" * 250 + b"]" * 250)).payload is not None
    nested: Any = []
    for _ in range(251):
        nested = [nested]
    with pytest.raises(InvalidInput, match="deeper than 250 levels"):
        encode_payload(nested)


def _event_with_payload(payload_json: bytes) -> bytes:
    from edgebus.core.envelope import Operation, new_event_id
    from edgebus.core.hlc import HLCTimestamp
    from edgebus.core.vector_clock import VectorClock
    from edgebus.wire.event_codec import encode_fields

    return encode_fields(
        new_event_id(), "k", Operation.SET, payload_json, "us-east-1", ("us-east-1",),
        ("public",), HLCTimestamp(1, 0), VectorClock(), "test",
    ).value
