"""The specialized Event writer produces fastavro's bytes for any event."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from edgebus.core.envelope import EventEnvelope, Operation
from edgebus.core.hlc import HLCTimestamp
from edgebus.core.vector_clock import VectorClock
from edgebus.wire.event_codec import (
    EVENT_SCHEMA,
    decode_event,
    encode_event,
    encode_payload,
    to_avro_record,
)
from edgebus.wire.schema_registry import default_registry
from edgebus.wire.single_object import encode_single_object

regions = st.from_regex(r"[a-z]{2}-[a-z]{2,7}-[0-9]", fullmatch=True)
int64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
json_values = st.recursive(
    st.none() | st.booleans() | int64 | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@st.composite
def events(draw: st.DrawFn) -> EventEnvelope:
    placement = tuple(draw(st.lists(regions, min_size=1, max_size=4, unique=True)))
    op = draw(st.sampled_from([Operation.SET, Operation.APPEND, Operation.MERGE,
                               Operation.DELETE, Operation.INCREMENT]))
    payload = (None if op is Operation.DELETE else
               draw(int64) if op is Operation.INCREMENT else draw(json_values))
    clock = draw(st.dictionaries(
        st.tuples(regions, st.integers(0, 2**31 - 1)), st.integers(0, 2**63 - 1), max_size=8))
    return EventEnvelope(
        event_id=str(draw(st.uuids())),
        key=draw(st.text(min_size=1, max_size=200)),
        operation=op,
        payload=payload,
        origin_region=placement[0],
        placement=placement,
        classification=tuple(sorted(draw(st.sets(st.sampled_from(
            ["pii", "phi", "financial", "public"]), min_size=1)))),
        hlc=HLCTimestamp(draw(st.integers(0, 2**47)), draw(st.integers(0, 65535))),
        dependencies=VectorClock(clock),
        writer=draw(st.none() | st.text(max_size=30)),
    )


def fastavro_bytes(event: EventEnvelope) -> bytes:
    """The reference: the event as fastavro writes it, a single object of the latest
    Event schema."""
    latest = default_registry().latest(EVENT_SCHEMA)
    payload_json = encode_payload(event.payload)
    return encode_single_object(latest, to_avro_record(event, payload_json, latest.version))


@settings(max_examples=300)
@given(events())
def test_specialized_writer_bytes_equal_fastavro_bytes(event: EventEnvelope) -> None:
    assert encode_event(event).value == fastavro_bytes(event)


@given(events())
def test_every_event_round_trips(event: EventEnvelope) -> None:
    assert decode_event(encode_event(event).value) == event
