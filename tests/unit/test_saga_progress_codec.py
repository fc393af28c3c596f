"""Saga progress records on the wire: every record type survives encode/decode, and
bytes that are not a saga progress record are refused with a DecodeError."""

from __future__ import annotations

import io
import json
import re

import pytest
from fastavro import schemaless_reader

from edgebus.core.saga import (
    CompensationAttemptFailed,
    CompensationCompleted,
    OperatorRetried,
    Saga,
    SagaBegun,
    Step,
    StepAborted,
    StepCompleted,
    StepRestarted,
    recover,
)
from edgebus.errors import DecodeError, InvalidInput
from edgebus.wire.saga_progress import (
    SAGA_PROGRESS_SCHEMA,
    ProgressEntry,
    decode_progress,
    encode_progress,
)
from edgebus.wire.schema_registry import default_registry
from edgebus.wire.single_object import MAGIC
from edgebus.wire.watermark import Watermark, encode_watermark
from tests.unit.decoder_contract import DecoderContract

SAGA = Saga(
    "order-17",
    (
        Step("reserve", "reserve", "release"),
        Step("charge card", "charge", "refund"),
        Step("ship", "ship", None),
    ),
)
T = 1_764_000_000_123
WRITER = "host-a:4242:1f2e3d"

ENTRIES = [
    ProgressEntry(
        SagaBegun(SAGA, 4),
        T,
        WRITER,
        "checkout",
        {"order": 17, "items": ["a", "b"], "note": "été", "total": 12.5, "gift": None},
    ),
    ProgressEntry(StepCompleted("order-17", 0, {"reservation": "r-1"}), T + 1, WRITER),
    ProgressEntry(StepCompleted("order-17", 1, None), T + 2, WRITER),
    ProgressEntry(StepCompleted("order-17", 2, [1, "two", 3.0, True]), T + 2, WRITER),
    ProgressEntry(StepRestarted("order-17", 1, 2), T + 3, "host-b:7:aa"),
    ProgressEntry(StepAborted("order-17", 2, "ValueError: no stock"), T + 4, WRITER),
    ProgressEntry(CompensationAttemptFailed("order-17", 1, 2, "TimeoutError: bank"), T + 5, WRITER),
    ProgressEntry(OperatorRetried("order-17", 1), T + 6, "operator"),
    ProgressEntry(CompensationCompleted("order-17", 0), T + 7, WRITER),
]


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.type)
def test_every_record_type_round_trips(entry: ProgressEntry) -> None:
    assert decode_progress(encode_progress(entry)) == entry


def test_every_record_type_of_the_schema_is_covered() -> None:
    schema = default_registry().latest(SAGA_PROGRESS_SCHEMA).parsed
    symbols = next(f for f in schema["fields"] if f["name"] == "type")["type"]["symbols"]
    assert sorted(symbols) == sorted({e.type for e in ENTRIES})


def test_a_saga_begun_with_no_steps_and_no_input_round_trips() -> None:
    entry = ProgressEntry(SagaBegun(Saga("empty", ()), 1), T, WRITER, "nothing")
    assert decode_progress(encode_progress(entry)) == entry


def test_decoded_records_rebuild_the_saga_like_the_originals() -> None:
    records = [
        ENTRIES[0],
        ENTRIES[1],
        ProgressEntry(StepAborted("order-17", 1, "card declined"), T, WRITER),
        ProgressEntry(CompensationCompleted("order-17", 0), T, WRITER),
    ]
    decoded = [decode_progress(encode_progress(e)).record for e in records]
    assert recover(decoded) == recover(e.record for e in records)


def test_a_plain_avro_reader_with_only_the_avsc_file_reads_a_record() -> None:
    """The wire contract: fastavro and the .avsc file, no edgebus code."""
    path = default_registry().latest(SAGA_PROGRESS_SCHEMA).path
    from fastavro import parse_schema

    schema = parse_schema(json.loads(path.read_text(encoding="utf-8")))
    data = encode_progress(ENTRIES[0])
    assert data[:2] == MAGIC
    raw = schemaless_reader(io.BytesIO(data[10:]), schema, schema)
    assert isinstance(raw, dict)
    assert raw["type"] == "SAGA_BEGUN"
    assert raw["definition"]["steps"][2] == {"name": "ship", "action": "ship", "compensation": None}
    assert json.loads(raw["definition"]["context_json"])["order"] == 17


class TestProgressRecordDecoder(DecoderContract):
    decode = staticmethod(decode_progress)

    def valid_record(self) -> bytes:
        return encode_progress(ENTRIES[0])


def test_a_record_cut_in_half_raises_decode_error() -> None:
    data = encode_progress(ENTRIES[0])
    with pytest.raises(DecodeError, match="Corrupt Avro body"):
        decode_progress(data[: len(data) // 2])


def test_another_schema_in_the_topic_raises_decode_error_naming_it() -> None:
    data = encode_watermark(Watermark("us", 0, 1, "heartbeat"))
    says = re.escape("holds a io.edgebus.Watermark, not a io.edgebus.SagaProgress")
    with pytest.raises(DecodeError, match=says):
        decode_progress(data)


def test_a_record_missing_a_field_its_type_needs_raises_decode_error() -> None:
    from edgebus.wire.single_object import encode_single_object

    schema = default_registry().latest(SAGA_PROGRESS_SCHEMA)
    value = {
        "saga_id": "s",
        "type": "STEP_ABORTED",
        "step_index": 1,
        "run": None,
        "attempt": None,
        "error": None,
        "result_json": None,
        "definition": None,
        "time_ms": T,
        "writer_id": WRITER,
    }
    with pytest.raises(DecodeError, match="field error is null"):
        decode_progress(encode_single_object(schema, value))
    value.update(type="STEP_COMPLETED", result_json="{not json")
    with pytest.raises(DecodeError, match="result_json is not valid JSON"):
        decode_progress(encode_single_object(schema, value))


def test_a_step_whose_action_is_not_a_name_is_refused_on_encode() -> None:
    saga = Saga("s", (Step("reserve", print, None),))
    with pytest.raises(InvalidInput, match="registered under"):
        encode_progress(ProgressEntry(SagaBegun(saga, 3), T, WRITER, "n"))


def test_a_result_that_is_not_json_able_is_refused_on_encode() -> None:
    with pytest.raises(InvalidInput, match="result of step 0 of saga 's' must be JSON-able"):
        encode_progress(ProgressEntry(StepCompleted("s", 0, {1, 2}), T, WRITER))
    with pytest.raises(InvalidInput, match="JSON-able"):
        encode_progress(ProgressEntry(StepCompleted("s", 0, float("nan")), T, WRITER))


def test_a_name_or_input_on_a_record_other_than_saga_begun_is_refused() -> None:
    with pytest.raises(InvalidInput, match="only a SagaBegun"):
        encode_progress(ProgressEntry(CompensationCompleted("s", 0), T, WRITER, "n"))
