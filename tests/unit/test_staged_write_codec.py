"""Staged strong-write payloads on the wire (``io.edgebus.StagedWrite``): every staged
write survives encode/decode, a plain Avro reader with only the ``.avsc`` reads it, and
bytes that are no staged write a writer could stage are refused with a DecodeError; the
digest a BEGIN carries binds a participant to the staged bytes."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_reader

from edgebus.core.commit_log import BeginRecord
from edgebus.core.staged_write import (
    SALT_BYTES,
    StagedWrite,
    staged_digest,
    staged_mismatch,
    with_staged_payload,
)
from edgebus.errors import DecodeError
from edgebus.wire.commit_log import encode_saga_record
from edgebus.wire.headers import Declassified, encode_declassified
from edgebus.wire.schema_registry import default_registry, schemas_dir
from edgebus.wire.single_object import encode_single_object
from edgebus.wire.staged_write import (
    MAX_DECLASSIFIED_BYTES,
    STAGED_WRITE_SCHEMA,
    decode_staged_write,
    encode_staged_write,
)
from tests.unit.decoder_contract import DecoderContract

T = 1_764_000_000_123
TXN = "0b7f1c9e-5c1a-4d55-8f7e-2f6b1b7c9a10"
SALT = bytes(range(SALT_BYTES))
DECLASSIFIED = encode_declassified(
    Declassified("dpo-team", T, "synthetic test address", ("pii",), ("public",))
)

RECORDS: list[StagedWrite] = [
    StagedWrite(
        TXN,
        "customer:1",
        "set",
        b'{"email":"ann@example.eu"}',
        None,
        SALT,
        T + 5_000,
        "client-1",
        T,
    ),
    StagedWrite(
        TXN,
        "k\u00e9y",
        "merge",
        '{"note":"\u00e9t\u00e9"}'.encode(),
        DECLASSIFIED,
        b"\xff" * SALT_BYTES,
        2**63 - 1,
        "",
        0,
    ),
    StagedWrite("t", "c", "increment", b"5", None, bytes(SALT_BYTES), 0, "w", 0),
    StagedWrite("t", "", "append", b"[1,2]", b"{}", SALT, T, "w", T),
]


def staged(**fields: Any) -> StagedWrite:
    return dataclasses.replace(RECORDS[0], **fields)


def begin_of(write: StagedWrite, **fields: Any) -> BeginRecord:
    """The staged BEGIN ``write`` is the payload of."""
    base = BeginRecord(
        write.txn_id,
        write.key,
        write.operation,
        None,
        ("eu",),
        ("pii",),
        None,
        write.deadline_ms,
        T << 16,
        write.writer,
        write.time_ms,
        write.digest,
    )
    return dataclasses.replace(base, **fields)


def raw(**fields: Any) -> bytes:
    """A StagedWrite record as the schema takes it (the encoder may refuse to write it)."""
    schema = default_registry().latest(STAGED_WRITE_SCHEMA)
    body: dict[str, Any] = {
        "txn_id": TXN,
        "key": "k",
        "operation": "set",
        "payload_json": "{}",
        "declassified_json": None,
        "salt": SALT,
        "deadline_ms": T,
        "writer": "w",
        "time_ms": T,
    }
    return encode_single_object(schema, {**body, **fields})


# --------------------------------------------------------------------------- the codec


@pytest.mark.parametrize("record", RECORDS, ids=range(len(RECORDS)))
def test_every_staged_write_survives_encode_and_decode(record: StagedWrite) -> None:
    assert decode_staged_write(encode_staged_write(record)) == record


def test_a_plain_avro_reader_with_only_the_avsc_reads_it() -> None:
    raw_schema = json.loads((schemas_dir() / "staged_write.v1.avsc").read_text("utf-8"))
    schema = parse_schema(raw_schema)
    value = encode_staged_write(RECORDS[1])
    assert value[:2] == b"\xc3\x01"
    assert value[2:10] == default_registry().latest(STAGED_WRITE_SCHEMA).fingerprint_bytes
    body = schemaless_reader(io.BytesIO(value[10:]), schema, schema)
    assert isinstance(body, dict)
    assert json.loads(body["payload_json"]) == {"note": "\u00e9t\u00e9"}
    assert body["declassified_json"] == DECLASSIFIED.decode()
    assert (body["txn_id"], body["operation"], body["salt"]) == (TXN, "merge", b"\xff" * SALT_BYTES)


def test_the_readme_documents_the_topic_the_record_and_its_fingerprint() -> None:
    text = (Path(__file__).resolve().parents[2] / "schemas" / "README.md").read_text("utf-8")
    fingerprint = default_registry().latest(STAGED_WRITE_SCHEMA).fingerprint_bytes.hex()
    assert "`edgebus.<region>.staged`" in text and STAGED_WRITE_SCHEMA in text
    assert fingerprint in text


class TestStagedWriteDecoder(DecoderContract):
    decode = staticmethod(decode_staged_write)

    def valid_record(self) -> bytes:
        return encode_staged_write(RECORDS[0])


def test_a_record_of_another_schema_raises_decode_error() -> None:
    value = encode_saga_record(begin_of(RECORDS[0]))
    with pytest.raises(DecodeError, match=r"holds a io\.edgebus\.SagaLogRecord, not a"):
        decode_staged_write(value)


@pytest.mark.parametrize(
    "fields, says",
    [
        ({"salt": b"short"}, "salt has 5 bytes, not 32"),
        ({"salt": bytes(33)}, "salt has 33 bytes"),
        ({"operation": "delete"}, "operation 'delete' is not one a write stages"),
        ({"operation": "explode"}, "operation 'explode' is not one"),
        ({"txn_id": ""}, "transaction id"),
        ({"txn_id": "tx-\u00e9"}, "transaction id"),
        ({"txn_id": "t\n"}, "transaction id"),
        ({"txn_id": "x" * 201}, "transaction id"),
        ({"declassified_json": "x" * (MAX_DECLASSIFIED_BYTES + 1)}, "over 8192"),
        ({"deadline_ms": -1}, "must not be negative"),
        ({"time_ms": -5}, "must not be negative"),
    ],
)
def test_a_staged_write_no_writer_stages_raises_decode_error(
    fields: dict[str, Any], says: str
) -> None:
    with pytest.raises(DecodeError, match=says):
        decode_staged_write(raw(**fields))


def test_a_raw_record_within_the_limits_decodes() -> None:
    decoded = decode_staged_write(raw(txn_id="x" * 200, declassified_json="{}"))
    assert decoded.txn_id == "x" * 200 and decoded.declassified == b"{}"


# --------------------------------------------------------------------------- the digest


def test_the_digest_is_deterministic_and_binds_salt_payload_and_declassification() -> None:
    base = RECORDS[0]
    assert base.digest == staged_digest(SALT, base.payload, None) == staged(writer="x").digest
    assert len(base.digest) == 32
    others = {
        staged(salt=bytes(SALT_BYTES)).digest,
        staged(payload=b'{"email":"bob@example.eu"}').digest,
        staged(declassified=DECLASSIFIED).digest,
        staged(declassified=b"").digest,
    }
    assert base.digest not in others and len(others) == 4


def test_the_digest_does_not_hold_the_payload() -> None:
    write = RECORDS[0]
    begin = encode_saga_record(begin_of(write))
    assert b"ann@example.eu" not in begin and write.salt not in begin


def test_a_staged_write_that_is_the_begins_matches() -> None:
    write = RECORDS[0]
    assert staged_mismatch(begin_of(write), write) is None
    applied = with_staged_payload(begin_of(write), write)
    assert applied.payload == write.payload and not applied.staged


@pytest.mark.parametrize(
    "begin_fields, write_fields, says",
    [
        ({}, {"txn_id": "another"}, "of another transaction"),
        ({"key": "customer:2"}, {}, "of another key"),
        ({"operation": "merge"}, {}, "of operation 'set', the BEGIN's is 'merge'"),
        ({"staged_digest": None}, {}, "carries no staged_digest"),
        ({}, {"payload": b'{"email":"eve@example.eu"}'}, "digest is not the BEGIN's"),
        ({}, {"declassified": DECLASSIFIED}, "digest is not the BEGIN's"),
        ({}, {"salt": b"x"}, "salt has 1 bytes"),
    ],
)
def test_a_staged_write_that_is_not_the_begins_is_refused_without_naming_data(
    begin_fields: dict[str, Any], write_fields: dict[str, Any], says: str
) -> None:
    begin = begin_of(RECORDS[0], **begin_fields)
    reason = staged_mismatch(begin, staged(**write_fields))
    assert reason is not None and says in reason
    assert "example.eu" not in reason and "customer:" not in reason
