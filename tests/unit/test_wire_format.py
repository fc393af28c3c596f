"""The Avro wire contract: single-object framing, fingerprints, schema evolution."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastavro.schema import fingerprint, to_parsing_canonical_form

from edgebus.core.envelope import EventEnvelope, Operation
from edgebus.core.hlc import HLCTimestamp
from edgebus.core.vector_clock import Position, VectorClock
from edgebus.errors import DecodeError, InvalidInput
from edgebus.wire.event_codec import (
    EVENT_SCHEMA,
    decode_event,
    encode_event,
    encode_payload,
    to_avro_record,
)
from edgebus.wire.event_writer import IMPLEMENTED_FINGERPRINT
from edgebus.wire.fingerprint import crc64_avro
from edgebus.wire.headers import (
    H_DEPS,
    H_HLC,
    H_SCHEMA,
    decode_headers,
    format_position,
    parse_position,
)
from edgebus.wire.schema_registry import default_registry, schemas_dir
from edgebus.wire.single_object import decode_single_object, encode_single_object

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def make_event(**changes: object) -> EventEnvelope:
    fields: dict[str, object] = {
        "event_id": "6f1c1d8e-4a8e-4c55-9a55-1d2f1f6b2a10",
        "key": "user:42",
        "operation": Operation.SET,
        "payload": {"email": "ann@example.com", "n": 1, "tags": ["a", "ü"]},
        "origin_region": "eu-west-1",
        "placement": ("eu-west-1",),
        "classification": ("pii",),
        "hlc": HLCTimestamp(1_795_000_000_000, 3),
        "dependencies": VectorClock({("us-east-1", 2): 17, ("eu-west-1", 0): 4}),
        "writer": "edgebus-test",
    }
    fields.update(changes)
    return EventEnvelope(**fields)  # type: ignore[arg-type]


def test_crc64_avro_matches_the_avro_spec_test_vectors() -> None:
    # Parsing Canonical Forms of "null" and "int"; the expected values were computed
    # independently with fastavro's CRC-64-AVRO (bytes reversed to an integer).
    assert crc64_avro(b'"null"') == 0x63DD24E7CC258F8A
    assert crc64_avro(b'"int"') == 0x7275D51A3F395C8F


def test_our_fingerprint_equals_fastavros_for_every_shipped_schema() -> None:
    for entry in default_registry()._by_fp.values():
        canonical = to_parsing_canonical_form(json.loads(entry.path.read_text()))
        # fastavro prints the 8 fingerprint bytes in single-object (little-endian) order
        assert fingerprint(canonical, "CRC-64-AVRO") == entry.fingerprint_bytes.hex()


def test_value_starts_with_single_object_marker_and_writer_fingerprint() -> None:
    encoded = encode_event(make_event())
    latest = default_registry().latest(EVENT_SCHEMA)
    assert encoded.value[:2] == b"\xc3\x01"
    assert encoded.value[2:10] == latest.fingerprint_bytes
    assert dict(encoded.headers)[H_SCHEMA] == latest.fingerprint_bytes


def test_event_round_trips_through_the_wire() -> None:
    event = make_event()
    assert decode_event(encode_event(event).value) == event


def test_headers_carry_clock_hlc_and_placement_without_decoding_the_body() -> None:
    encoded = encode_event(make_event(placement=("eu-west-1", "us-east-1")))
    headers = decode_headers(encoded.headers)
    assert headers["eb-origin"] == "eu-west-1"
    assert headers["eb-placement"] == ["eu-west-1", "us-east-1"]
    assert headers["eb-class"] == ["pii"]
    assert headers["eb-op"] == "set"
    assert headers["eb-event-id"] == "6f1c1d8e-4a8e-4c55-9a55-1d2f1f6b2a10"
    raw = dict(encoded.headers)
    assert VectorClock.decode(raw[H_DEPS]) == make_event().dependencies
    assert HLCTimestamp.decode(raw[H_HLC]) == HLCTimestamp(1_795_000_000_000, 3)


def test_record_written_with_v1_is_read_by_the_v2_reader_with_defaults() -> None:
    registry = default_registry()
    v1 = next(s for s in registry._by_fp.values() if s.version == 1)
    event = make_event()
    record = to_avro_record(event, encode_payload(event.payload), 1)
    del record["writer"]  # version 1 has no such field
    value = encode_single_object(v1, record)
    event = decode_event(value)
    assert event.writer is None
    assert event.schema_version == 1
    assert event.payload == make_event().payload


def test_record_written_with_v2_is_read_by_a_v1_reader_ignoring_new_fields() -> None:
    registry = default_registry()
    v1 = next(s for s in registry._by_fp.values() if s.version == 1)
    value = encode_event(make_event()).value
    writer, record = decode_single_object(value, registry, v1)
    assert writer.version == 2
    assert "writer" not in record
    assert record["key"] == "user:42"


def test_unknown_fingerprint_is_a_decode_error_naming_it() -> None:
    value = b"\xc3\x01" + (0x1234).to_bytes(8, "little") + b"\x00"
    with pytest.raises(DecodeError, match="0000000000001234"):
        decode_event(value)


@pytest.mark.parametrize("value", [b"", b"{}", b"\xc3\x02" + bytes(8), b"\xc3\x01\x00"])
def test_values_that_are_not_single_object_encoded_are_refused(value: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_event(value)


def test_truncated_body_is_a_decode_error_not_a_crash() -> None:
    value = encode_event(make_event()).value
    with pytest.raises(DecodeError):
        decode_event(value[:20])


def test_payload_that_is_not_json_is_refused_with_advice() -> None:
    with pytest.raises(InvalidInput, match="not JSON"):
        encode_payload({"x": float("nan")})
    with pytest.raises(InvalidInput, match="not JSON"):
        encode_payload({"x": object()})


def test_shipped_schemas_are_the_repository_schemas() -> None:
    assert schemas_dir() == SCHEMAS


def test_specialized_writer_produces_fastavros_exact_bytes() -> None:
    registry = default_registry()
    latest = registry.latest(EVENT_SCHEMA)
    assert latest.fingerprint == IMPLEMENTED_FINGERPRINT, (
        "schemas/ has a newer Event schema: update edgebus/wire/event_writer.py"
    )
    for event in (make_event(), make_event(operation=Operation.DELETE, payload=None, writer=None),
                  make_event(dependencies=VectorClock.empty(), key="k" * 300)):
        record = to_avro_record(event, encode_payload(event.payload), 2)
        expected = encode_single_object(latest, record)
        assert encode_event(event).value == expected


def test_origin_position_header_round_trips_and_rejects_garbage() -> None:
    position = Position("eu-west-1", 3, 1_234_567)
    raw = format_position(position)
    assert raw == b"eu-west-1:3:1234567"
    assert parse_position(raw) == position
    assert decode_headers([("eb-origin-pos", raw)])["eb-origin-pos"] == position._asdict()
    with pytest.raises(DecodeError):
        parse_position(b"eu-west-1:x:1")


@pytest.mark.parametrize("raw", [
    b"eu-west-1:0:" + str(2**70).encode(),  # past Kafka's (and SQLite's) 64-bit offsets
    b"eu-west-1:0:-1",
    b"eu-west-1:-3:5",
    b"eu-west-1:" + str(2**31).encode() + b":5",
    b":0:5",
    b"eu-west-1:0:" + b"9" * 5000,  # a huge number text is refused by its length
])
def test_an_origin_position_outside_kafkas_ranges_is_a_decode_error(raw: bytes) -> None:
    with pytest.raises(DecodeError, match="eb-origin-pos"):
        parse_position(raw)
