"""Commit-log records on the wire (``io.edgebus.SagaLogRecord``): every record kind survives
encode/decode, the header names the kind, and bytes that are not a commit-log record are
refused with a DecodeError."""

from __future__ import annotations

import io
from typing import Any

import pytest
from fastavro import schemaless_reader

from edgebus.core.commit_log import AckRecord, BeginRecord, DecisionRecord, LogRecord, VoteRecord
from edgebus.core.commit_vote import Decision, Refusal, TxnOutcome, VersionConflict, Vote
from edgebus.errors import DecodeError
from edgebus.wire.commit_log import H_SAGA, decode_saga_record, encode_saga_record, saga_headers
from edgebus.wire.schema_registry import default_registry
from edgebus.wire.single_object import MAGIC, encode_single_object
from edgebus.wire.watermark import HEARTBEAT, Watermark, encode_watermark
from tests.unit.decoder_contract import DecoderContract

T = 1_764_000_000_123
HLC = T << 16 | 3
TXN = "0b7f1c9e-5c1a-4d55-8f7e-2f6b1b7c9a10"
KEY = "acct:1"
MAX_LONG = 2**63 - 1
DIGEST = bytes(range(32))


def vote(yes: bool, **fields: Any) -> VoteRecord:
    return VoteRecord(TXN, KEY, Vote(TXN, fields.pop("region", "eu"), yes, **fields), "eu", T)


RECORDS: list[LogRecord] = [
    BeginRecord(
        TXN,
        KEY,
        "set",
        b'{"balance": 1000, "note": "\xc3\xa9t\xc3\xa9"}',
        ("eu", "us", "ap"),
        ("pii", "finance"),
        3,
        T + 5_000,
        HLC,
        "client-1",
        T,
    ),
    BeginRecord(TXN, KEY, "delete", None, ("eu",), (), None, T + 5_000, HLC, "client-1", T),
    BeginRecord(TXN, KEY, "increment", b"5", ("eu", "us"), (), 0, 0, 0, "c", 0),
    BeginRecord(TXN, "", "set", b"", (), (), MAX_LONG, MAX_LONG, MAX_LONG, "", -1),
    # a staged write: no payload, the digest of what each participant region holds
    BeginRecord(
        TXN, KEY, "set", None, ("eu", "us"), ("pii",), None, T + 5_000, HLC, "client-1", T, DIGEST
    ),
    BeginRecord(TXN, KEY, "merge", None, ("eu",), (), 0, T, HLC, "c", T, bytes(32)),
    vote(True, version=7),
    vote(True, region="us"),  # version None
    vote(False, reason="key 'acct:1' locked by txn t0", version=2, refusal=Refusal.LOCKED),
    vote(False, reason=None, version=None, refusal=None),
    *(vote(False, reason=f"refused: {r}", version=4, refusal=r) for r in Refusal),
    DecisionRecord(TXN, KEY, TxnOutcome(Decision.COMMIT), HLC, 8, "coordinator-a", T + 1),
    DecisionRecord(TXN, KEY, TxnOutcome(Decision.COMMIT), HLC, None, "coordinator-a", T + 1),
    DecisionRecord(
        TXN,
        KEY,
        TxnOutcome(Decision.ABORT, "timed out: us did not vote before the deadline"),
        HLC,
        None,
        "coordinator-b",
        T + 2,
    ),
    DecisionRecord(
        TXN,
        KEY,
        TxnOutcome(
            Decision.ABORT,
            "region us voted no: expected version 3, found 5",
            VersionConflict("us", 3, 5),
        ),
        HLC,
        None,
        "coordinator-a",
        T + 2,
    ),
    DecisionRecord(
        TXN,
        KEY,
        TxnOutcome(Decision.ABORT, None, VersionConflict("eu", 0, MAX_LONG)),
        0,
        None,
        "c",
        0,
    ),
    AckRecord(TXN, KEY, "eu", "eu:3:1042", "eu", T + 3),
    AckRecord(TXN, KEY, "us", None, "us", T + 3),
]


def record_id(record: LogRecord) -> str:
    return type(record).__name__


@pytest.mark.parametrize("record", RECORDS, ids=[record_id(r) for r in RECORDS])
def test_every_record_survives_encode_and_decode(record: LogRecord) -> None:
    data = encode_saga_record(record)
    assert data[:2] == MAGIC
    decoded = decode_saga_record(data)
    assert decoded == record
    assert type(decoded) is type(record)


def test_decoded_enums_are_the_enum_members() -> None:
    refused = decode_saga_record(encode_saga_record(vote(False, refusal=Refusal.LATE)))
    assert isinstance(refused, VoteRecord)
    assert refused.vote.refusal is Refusal.LATE
    for outcome in (Decision.COMMIT, Decision.ABORT):
        record = DecisionRecord(TXN, KEY, TxnOutcome(outcome), HLC, None, "c", T)
        decoded = decode_saga_record(encode_saga_record(record))
        assert isinstance(decoded, DecisionRecord)
        assert decoded.outcome.decision is outcome
        assert decoded.committed is (outcome is Decision.COMMIT)


def test_a_decoded_vote_carries_the_records_transaction() -> None:
    decoded = decode_saga_record(encode_saga_record(vote(True, version=1)))
    assert isinstance(decoded, VoteRecord)
    assert decoded.vote.txn_id == decoded.txn_id == TXN


def test_the_body_uses_the_schema_fields_and_only_the_part_of_its_kind() -> None:
    schema = default_registry().latest("io.edgebus.SagaLogRecord")
    data = encode_saga_record(RECORDS[0])
    raw = schemaless_reader(io.BytesIO(data[10:]), schema.parsed, schema.parsed)
    assert isinstance(raw, dict)
    assert raw["kind"] == "BEGIN"
    assert (raw["txn_id"], raw["key"], raw["time_ms"], raw["writer"]) == (
        TXN,
        KEY,
        T,
        "client-1",
    )
    assert raw["begin"]["placement"] == ["eu", "us", "ap"]
    assert raw["vote"] is None and raw["decision"] is None and raw["ack"] is None


@pytest.mark.parametrize(
    "record_type, kind",
    [
        (BeginRecord, b"begin"),
        (VoteRecord, b"vote"),
        (DecisionRecord, b"decision"),
        (AckRecord, b"ack"),
    ],
    ids=["begin", "vote", "decision", "ack"],
)
def test_saga_headers_name_the_record_kind(record_type: type, kind: bytes) -> None:
    records = [r for r in RECORDS if isinstance(r, record_type)]
    assert records
    for record in records:
        assert saga_headers(record) == [(H_SAGA, kind)]
    assert H_SAGA == "eb-saga"


def test_saga_headers_are_a_fresh_list_each_time() -> None:
    headers = saga_headers(RECORDS[0])
    headers.append(("eb-other", b"x"))
    assert saga_headers(RECORDS[0]) == [(H_SAGA, b"begin")]


class TestSagaRecordDecoder(DecoderContract):
    decode = staticmethod(decode_saga_record)

    def valid_record(self) -> bytes:
        return encode_saga_record(RECORDS[0])


def test_a_record_of_another_schema_raises_decode_error() -> None:
    mark = encode_watermark(Watermark("eu-west-1", 3, T, HEARTBEAT))
    with pytest.raises(DecodeError, match=r"io\.edgebus\.Watermark, not a io\.edgebus\.SagaLog"):
        decode_saga_record(mark)


def raw_record(kind: str, **parts: Any) -> bytes:
    """A SagaLogRecord the encoder would not write (a kind without its part)."""
    schema = default_registry().latest("io.edgebus.SagaLogRecord")
    body: dict[str, Any] = {
        "kind": kind,
        "txn_id": TXN,
        "key": KEY,
        "time_ms": T,
        "writer": "w",
        "begin": None,
        "vote": None,
        "decision": None,
        "ack": None,
    }
    return encode_single_object(schema, {**body, **parts})


@pytest.mark.parametrize("kind", ["BEGIN", "VOTE", "DECISION", "ACK"])
def test_a_record_without_the_part_of_its_kind_raises_decode_error(kind: str) -> None:
    with pytest.raises(DecodeError, match=f"kind {kind} lacks its {kind.lower()} part"):
        decode_saga_record(raw_record(kind))


def test_a_vote_with_an_unknown_refusal_raises_decode_error() -> None:
    part = {"region": "eu", "yes": False, "reason": None, "refusal": "bored", "version": None}
    with pytest.raises(DecodeError):
        decode_saga_record(raw_record("VOTE", vote=part))


def test_a_staged_begin_carries_no_payload_and_its_digest() -> None:
    data = encode_saga_record(RECORDS[4])
    decoded = decode_saga_record(data)
    assert isinstance(decoded, BeginRecord)
    assert decoded.payload is None and decoded.staged and decoded.staged_digest == DIGEST
    assert DIGEST in data


def test_only_a_non_delete_without_payload_is_staged() -> None:
    set_inline, delete, _, _, staged, *_ = RECORDS
    assert isinstance(set_inline, BeginRecord) and not set_inline.staged
    assert isinstance(delete, BeginRecord) and not delete.staged
    assert isinstance(staged, BeginRecord) and staged.staged


def test_a_version_1_begin_with_its_payload_inline_still_decodes() -> None:
    """Written by an old client (schemas/saga_log.v1.avsc, no staged_digest): in-flight
    transactions across an upgrade keep working."""
    v1 = next(
        s
        for s in default_registry()._by_fp.values()
        if s.full_name == "io.edgebus.SagaLogRecord" and s.version == 1
    )
    assert default_registry().latest("io.edgebus.SagaLogRecord").version == 2
    begin = RECORDS[0]
    assert isinstance(begin, BeginRecord)
    value = encode_single_object(
        v1,
        {
            "kind": "BEGIN",
            "txn_id": TXN,
            "key": KEY,
            "time_ms": T,
            "writer": "client-1",
            "vote": None,
            "decision": None,
            "ack": None,
            "begin": {
                "operation": "set",
                "payload": begin.payload,
                "placement": list(begin.placement),
                "classification": list(begin.classification),
                "expected_version": 3,
                "deadline_ms": T + 5_000,
                "hlc": HLC,
            },
        },
    )
    assert value[2:10] == v1.fingerprint_bytes
    assert decode_saga_record(value) == begin


@pytest.mark.parametrize("size", [0, 16, 31, 33, 64])
def test_a_staged_digest_of_another_size_raises_decode_error(size: int) -> None:
    part = {
        "operation": "set",
        "payload": None,
        "placement": ["eu"],
        "classification": [],
        "expected_version": None,
        "deadline_ms": T,
        "hlc": HLC,
        "staged_digest": bytes(size),
    }
    with pytest.raises(DecodeError, match=f"staged_digest has {size} bytes, not 32"):
        decode_saga_record(raw_record("BEGIN", begin=part))
