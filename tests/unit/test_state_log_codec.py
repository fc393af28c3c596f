"""State-log records on the wire: every record kind survives encode/decode (JSON values,
integers that stay integers, no locks vs unchanged locks), the header names the kind,
plain fastavro reads a record with only the .avsc file, and bytes that are not a
state-log record are refused with a DecodeError. Records no host may fold (absurd
leases and counts, JSON nested too deep, text that is not Unicode) are refused by the
decoder, with the reason, and by the encoder; an owner's refusal of an operation it does
not know decodes, and takes the request out of every fold's pending requests."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_reader
from hypothesis import given, settings
from hypothesis import strategies as st

from edgebus.core.commit_log import AckRecord
from edgebus.core.ownership import Claim, Handoff, Release, Renew
from edgebus.core.state_machine import (
    LockHold,
    StateLogRecord,
    StateObject,
    StateOp,
    StateRequest,
    execute,
)
from edgebus.errors import DecodeError, InvalidInput
from edgebus.wire.commit_log import encode_saga_record
from edgebus.wire.schema_registry import default_registry
from edgebus.wire.single_object import MAGIC, encode_single_object
from edgebus.wire.state_log import (
    H_STATE,
    MAX_CLAIM_LEASE_MS,
    MAX_COUNT,
    MAX_MS,
    MAX_OP_DEPTH,
    MAX_REQUEST_DEPTH,
    MAX_STATE_ID_BYTES,
    STATE_LOG_SCHEMA,
    decode_state_record,
    encode_state_record,
    record_refusal,
    state_headers,
    state_kind,
)
from tests.unit.decoder_contract import DecoderContract
from tests.unit.fuzzing import decoded, mutated

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "schemas" / "state_log.v1.avsc"
SID = "cart:ünïcödé/42"
REQ = "5d0c8a4e-1f7b-4b9e-9c55-0e2a3b4c5d6e"
T = 1_764_000_000_123
MAX_LONG = 2**63 - 1
NESTED = {"items": [{"sku": "é-1", "qty": 2, "tags": ["a", "😀"]}, None, 1.5, True],
          "z": {"": "", "n": None}, "emoji": "🛒", "big": 2**70}


def request(**fields: Any) -> StateRequest:
    base: dict[str, Any] = {"state_id": SID, "req_id": REQ, "operation": "get",
                            "from_region": "eu-west-1"}
    return StateRequest(**{**base, **fields})


def op(**fields: Any) -> StateOp:
    base: dict[str, Any] = {
        "state_id": SID, "req_id": REQ, "operation": "set", "region": "eu-west-1",
        "host": "host-a:1234", "epoch": 3, "lease_until_ms": T + 10_000,
        "from_region": "us-east-1", "outcome": "ok",
    }
    return StateOp(**{**base, **fields})


RECORDS: list[tuple[str, StateLogRecord]] = [
    ("claim", Claim("eu-west-1", 1, 10_000, "host-a:1234")),
    ("claim-no-host", Claim("eu-west-1", MAX_COUNT, MAX_CLAIM_LEASE_MS)),
    ("renew", Renew("eu-west-1", 1, 10_000, "host-a:1234")),
    ("renew-zero", Renew("", 0, 0, "")),
    ("handoff", Handoff("eu-west-1", 4, "ap-south-1", "host-a:1234")),
    ("release", Release("eu-west-1", 4, "host-a:1234")),
    ("request-get-whole", request()),  # key None, value None
    ("request-set", request(operation="set", key="ключ", value=NESTED, holder="ü")),
    ("request-set-null", request(operation="set", key="k", value=None)),
    ("request-set-whole", request(operation="set", value={"a": 1, "b": [None, "x"]})),
    ("request-int-increment", request(operation="increment", key="n", increment=5)),
    ("request-negative-increment", request(operation="increment", increment=-(2**60))),
    ("request-float-increment", request(operation="increment", key="n", increment=0.25)),
    ("request-float-integral", request(operation="increment", increment=2.0)),
    ("request-update-fn", request(operation="update", update_fn="add_item", value=None)),
    ("request-append-string", request(operation="append", value="élément")),
    ("request-lock", request(operation="lock", lock_name="checkout", holder="worker-7",
                             lease_ms=MAX_MS, timeout_ms=0, enable_migration=True)),
    ("request-unknown-op", request(operation="frobnicate")),  # the owner refuses it
    ("op-set", op(result=NESTED, version=7, changes={"ключ": NESTED, "n": None, "f": 0.5})),
    ("op-none-result", op(operation="get", result=None)),
    ("op-scalar-result", op(operation="increment", result=6, changes={"value": 6}, version=2)),
    ("op-float-result", op(operation="increment", result=6.0, changes={"value": 6.0})),
    ("op-delete-whole", op(operation="delete", result={"a": 1}, cleared=True, version=9)),
    ("op-set-whole", op(changes={"a": 1}, removed=("b", "ç"), version=MAX_COUNT)),
    ("op-no-locks", op(operation="unlock", result={"released": True}, locks=())),
    ("op-locks", op(operation="lock", locks=(LockHold("checkout", "worker-7", T + 30_000),
                                              LockHold("ünï", "", 0)))),
    ("op-refused", op(outcome="refused", message="cannot increment field 'n': it holds str",
                      result=None)),
    ("op-timeout", op(operation="lock", outcome="timeout",
                      result={"lock": "l", "holder": "w", "until_ms": T}, message="waited")),
    ("op-duplicate", op(result="first answer", version=4, duplicate=True)),
    ("op-migratable", op(migratable=True, epoch=0, lease_until_ms=0, version=0)),
    ("op-refused-unknown-op", op(operation="frobnicate", outcome="refused",
                                 message="unknown state operation 'frobnicate'")),
    ("op-long-lease-until", op(lease_until_ms=MAX_LONG, locks=(LockHold("l", "h", MAX_LONG),))),
]


@pytest.mark.parametrize("record", [r for _, r in RECORDS], ids=[i for i, _ in RECORDS])
def test_every_record_survives_encode_and_decode(record: StateLogRecord) -> None:
    data = encode_state_record(SID, record)
    assert data[:2] == MAGIC
    state_id, decoded = decode_state_record(data)
    assert state_id == SID
    assert decoded == record
    assert type(decoded) is type(record)


def test_an_integer_increment_stays_an_integer_and_a_float_a_float() -> None:
    for amount, kind in ((5, int), (-(2**60), int), (2.0, float), (0.25, float)):
        _, decoded = decode_state_record(
            encode_state_record(SID, request(operation="increment", increment=amount))
        )
        assert isinstance(decoded, StateRequest)
        assert decoded.increment == amount
        assert type(decoded.increment) is kind
    _, answer = decode_state_record(encode_state_record(SID, op(result=6, changes={"v": 6.0})))
    assert isinstance(answer, StateOp)
    assert type(answer.result) is int and type(answer.changes["v"]) is float


def test_decoded_sequences_have_the_dataclasses_types() -> None:
    record = op(removed=["a", "b"], changes={"x": [1, 2]},
                locks=(LockHold("l", "h", T),))
    _, decoded = decode_state_record(encode_state_record(SID, record))
    assert isinstance(decoded, StateOp)
    assert decoded.removed == ("a", "b") and isinstance(decoded.removed, tuple)
    assert isinstance(decoded.changes, dict) and decoded.changes == {"x": [1, 2]}
    assert decoded.locks == (LockHold("l", "h", T),)
    assert isinstance(decoded.locks, tuple) and isinstance(decoded.locks[0], LockHold)


def test_empty_locks_and_unchanged_locks_stay_apart() -> None:
    _, none = decode_state_record(encode_state_record(SID, op(locks=None)))
    _, empty = decode_state_record(encode_state_record(SID, op(locks=())))
    assert isinstance(none, StateOp) and isinstance(empty, StateOp)
    assert none.locks is None
    assert empty.locks == ()


def test_equal_records_encode_to_equal_bytes_whatever_the_key_order() -> None:
    a = op(result={"b": 1, "a": {"y": 2, "x": 1}}, changes={"q": 1, "p": {"d": 1, "c": 2}})
    b = op(result={"a": {"x": 1, "y": 2}, "b": 1}, changes={"p": {"c": 2, "d": 1}, "q": 1})
    assert encode_state_record(SID, a) == encode_state_record(SID, b)


def test_the_fold_of_decoded_records_equals_the_fold_of_the_originals() -> None:
    """What the owner computes with execute and what a reader folds from the log agree."""
    owner = StateObject(SID)
    owner.fold(Claim("eu-west-1", 1, 10_000, "h"), T)
    log: list[tuple[StateLogRecord, int]] = [(Claim("eu-west-1", 1, 10_000, "h"), T)]
    calls = [
        request(req_id="r1", operation="set", value={"cart": ["ü"], "n": 1}),
        request(req_id="r2", operation="increment", key="n", increment=2),
        request(req_id="r3", operation="lock", lock_name="pay", holder="w"),
        request(req_id="r2", operation="increment", key="n", increment=2),  # re-sent
    ]
    for i, call in enumerate(calls, start=1):
        now = T + i
        log.append((call, now))
        owner.fold(call, now)
        answer = execute(owner, call, region="eu-west-1", host="h",
                         lease_until_ms=T + 10_000, now_ms=now, sent_ms=now)
        assert answer is not None
        log.append((answer, now))
        owner.fold(answer, now)
    reader = StateObject(SID)
    for record, at in log:
        state_id, decoded = decode_state_record(encode_state_record(SID, record))
        assert state_id == SID
        reader.fold(decoded, at)
    assert reader.snapshot() == owner.snapshot()
    assert reader.value() == {"cart": ["ü"], "n": 3}
    assert list(reader.locks) == ["pay"]


@pytest.mark.parametrize(
    "record, kind",
    [(Claim("r", 1, 1), "claim"), (Renew("r", 1, 1), "renew"), (Handoff("r", 1, "s"), "handoff"),
     (Release("r", 1), "release"), (request(), "request"), (op(), "op")],
    ids=["claim", "renew", "handoff", "release", "request", "op"],
)
def test_headers_and_kind_name_the_record_kind(record: StateLogRecord, kind: str) -> None:
    assert state_kind(record) == kind
    assert state_headers(record) == [(H_STATE, kind.encode("ascii"))]
    assert H_STATE == "eb-state"


def test_state_headers_are_a_fresh_list_each_time() -> None:
    headers = state_headers(op())
    headers.append(("eb-other", b"x"))
    assert state_headers(op()) == [(H_STATE, b"op")]


def test_a_plain_avro_reader_with_only_the_avsc_file_reads_a_record() -> None:
    """The wire contract: fastavro and the .avsc file, no edgebus code."""
    schema = parse_schema(json.loads(SCHEMA_FILE.read_text(encoding="utf-8")))
    record = op(result={"ok": "ü"}, changes={"n": 3}, removed=("old",),
                locks=(LockHold("pay", "w", T),), version=5)
    data = encode_state_record(SID, record)
    assert data[:2] == MAGIC
    raw = schemaless_reader(io.BytesIO(data[10:]), schema, schema)
    assert isinstance(raw, dict)
    assert raw["kind"] == "OP" and raw["state_id"] == SID
    assert all(raw[part] is None for part in ("claim", "renew", "handoff", "release", "request"))
    part = raw["op"]
    assert (part["req_id"], part["region"], part["host"], part["epoch"]) == (
        REQ, "eu-west-1", "host-a:1234", 3,
    )
    assert json.loads(part["result_json"]) == {"ok": "ü"}
    assert part["changes_json"] == {"n": "3"}
    assert part["removed"] == ["old"]
    assert part["locks"] == [{"name": "pay", "holder": "w", "until_ms": T}]
    assert part["version"] == 5 and part["duplicate"] is False


def test_the_schema_file_is_the_registered_state_log_schema() -> None:
    entry = default_registry().latest(STATE_LOG_SCHEMA)
    assert entry.path == SCHEMA_FILE
    assert encode_state_record(SID, Release("r", 1))[2:10] == entry.fingerprint_bytes


def test_a_record_of_another_state_is_refused_at_encoding() -> None:
    with pytest.raises(InvalidInput, match="cannot go in the log of state 'other'"):
        encode_state_record("other", op())
    with pytest.raises(InvalidInput, match="cannot go in the log of state 'other'"):
        encode_state_record("other", request())


@pytest.mark.parametrize(
    "record, says",
    [
        (request(operation="set", value={"x": float("nan")}), "value of request"),
        (request(operation="set", value={1: "a", "b": 2}), "value of request"),
        (request(operation="set", value={"s": {1, 2}}), "value of request"),
        (request(operation="increment", increment=float("inf")), "increment"),
        (request(operation="increment", increment=True), "increment .* must be a number"),
        (op(result=object()), "result of the answer"),
        (op(changes={"x": float("-inf")}), "field 'x' in the changes"),
        (op(changes={1: "x"}), "must name fields with strings"),
    ],
    ids=["nan", "mixed-keys", "set", "inf-increment", "bool-increment", "object-result",
         "inf-change", "int-field"],
)
def test_values_that_are_not_json_are_refused_at_encoding(
    record: StateLogRecord, says: str
) -> None:
    with pytest.raises(InvalidInput, match=says):
        encode_state_record(SID, record)


def test_an_object_that_is_not_a_state_log_record_is_refused() -> None:
    with pytest.raises(InvalidInput, match="not a state-log record: str"):
        encode_state_record(SID, "claim")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="not a state-log record"):
        state_headers(LockHold("l", "h", 0))  # type: ignore[arg-type]


class TestStateRecordDecoder(DecoderContract):
    decode = staticmethod(decode_state_record)

    def valid_record(self) -> bytes:
        return encode_state_record(SID, op(result=NESTED, locks=(LockHold("l", "h", T),)))


def test_a_saga_log_record_raises_decode_error() -> None:
    saga = encode_saga_record(AckRecord("txn", "k", "eu", None, "eu", T))
    with pytest.raises(
        DecodeError, match=r"io\.edgebus\.SagaLogRecord, not a io\.edgebus\.StateLogRecord"
    ):
        decode_state_record(saga)


PARTS = ("claim", "renew", "handoff", "release", "request", "op")


def raw_record(kind: str, **parts: Any) -> bytes:
    """A StateLogRecord the encoder would not write."""
    schema = default_registry().latest(STATE_LOG_SCHEMA)
    body: dict[str, Any] = {"kind": kind, "state_id": SID, **dict.fromkeys(PARTS)}
    return encode_single_object(schema, {**body, **parts})


def raw_op(**fields: Any) -> dict[str, Any]:
    part: dict[str, Any] = {
        "req_id": REQ, "operation": "set", "region": "eu", "host": "h", "epoch": 1,
        "lease_until_ms": T, "from_region": "us", "outcome": "ok", "result_json": None,
        "version": 1, "changes_json": {}, "removed": [], "cleared": False, "locks": None,
        "message": "", "duplicate": False, "migratable": False,
    }
    return {**part, **fields}


def raw_request(**fields: Any) -> dict[str, Any]:
    part: dict[str, Any] = {
        "req_id": REQ, "operation": "increment", "from_region": "us", "holder": "",
        "key": None, "value_json": None, "increment_json": "1", "update_fn": None,
        "lock_name": None, "lease_ms": 1, "timeout_ms": 1, "enable_migration": False,
    }
    return {**part, **fields}


@pytest.mark.parametrize("kind", ["CLAIM", "RENEW", "HANDOFF", "RELEASE", "REQUEST", "OP"])
def test_a_record_without_the_part_of_its_kind_raises_decode_error(kind: str) -> None:
    with pytest.raises(DecodeError, match=f"kind {kind} lacks its {kind.lower()} part"):
        decode_state_record(raw_record(kind))


def test_the_raw_helpers_write_valid_records() -> None:
    _, answer = decode_state_record(raw_record("OP", op=raw_op()))
    _, call = decode_state_record(raw_record("REQUEST", request=raw_request()))
    assert isinstance(answer, StateOp) and isinstance(call, StateRequest)


@pytest.mark.parametrize(
    "kind, part, says",
    [
        ("OP", {"op": raw_op(result_json="{not json")}, "result_json is not valid JSON"),
        ("OP", {"op": raw_op(changes_json={"a": "NaN"})}, r"changes_json\['a'\]"),
        ("OP", {"op": raw_op(outcome="maybe")}, "unknown outcome 'maybe'"),
        ("OP", {"op": raw_op(operation="frob")}, "unknown operation 'frob'"),
        ("OP", {"op": raw_op(operation="frob", outcome="timeout")},
         "unknown operation 'frob' .* no refusal"),
        ("OP", {"op": raw_op(operation="frob", outcome="refused", changes_json={"a": "1"})},
         "refusal of the unknown operation 'frob' changes the state"),
        ("OP", {"op": raw_op(operation="frob", outcome="refused", removed=["a"])},
         "changes the state"),
        ("OP", {"op": raw_op(operation="frob", outcome="refused", cleared=True)},
         "changes the state"),
        ("OP", {"op": raw_op(operation="frob", outcome="refused", locks=[])},
         "changes the state"),
        ("REQUEST", {"request": raw_request(increment_json='"5"')},
         "increment_json must be a number"),
        ("REQUEST", {"request": raw_request(increment_json="true")},
         "increment_json must be a number"),
        ("REQUEST", {"request": raw_request(value_json="")}, "value_json is not valid JSON"),
        ("CLAIM", {"claim": {"region": "eu", "epoch": 1, "lease_ms": 0, "host": ""}},
         "a claim's lease must be positive"),
    ],
    ids=["bad-result", "nan-change", "outcome", "op-operation", "unknown-op-timeout",
         "unknown-op-refusal-changes", "unknown-op-refusal-removes",
         "unknown-op-refusal-clears", "unknown-op-refusal-locks", "string-increment",
         "bool-increment", "empty-value", "zero-lease-claim"],
)
def test_a_malformed_part_raises_decode_error(
    kind: str, part: dict[str, Any], says: str
) -> None:
    with pytest.raises(DecodeError, match=f"state {SID!r} of kind {kind} is malformed.*{says}"):
        decode_state_record(raw_record(kind, **part))


# ------------------------------------------------------------------ records no host may fold


def nested(depth: int) -> Any:
    """A JSON value of ``depth`` nested lists (0: a number)."""
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


LONG_ID = "é" * (MAX_STATE_ID_BYTES // 2 + 1)  # 65,538 bytes of UTF-8
#: (id, the state id, a record no host may fold, what the refusal says)
UNFOLDABLE: list[tuple[str, str, StateLogRecord, str]] = [
    ("long-state-id", LONG_ID, Release("eu", 1),
     f"its state id is longer than {MAX_STATE_ID_BYTES} bytes"),
    ("endless-claim", SID, Claim("eu", 1, 2**62, "ghost"),
     rf"its lease of {2**62} ms is outside 0 \.\. {MAX_CLAIM_LEASE_MS} ms"),
    ("claim-past-a-day", SID, Claim("eu", 1, MAX_CLAIM_LEASE_MS + 1), "its lease of"),
    ("negative-renewal", SID, Renew("eu", 1, -1), "its lease of -1 ms"),
    ("long-renewal", SID, Renew("eu", 1, MAX_CLAIM_LEASE_MS + 1), "its lease of"),
    ("claim-epoch", SID, Claim("eu", MAX_COUNT + 1, 1_000),
     rf"its epoch {MAX_COUNT + 1} is outside 0 \.\. 2\^53"),
    ("renew-epoch", SID, Renew("eu", -1, 1_000), "its epoch -1 is outside"),
    ("handoff-epoch", SID, Handoff("eu", MAX_LONG, "us"), "its epoch"),
    ("release-epoch", SID, Release("eu", -5), "its epoch -5"),
    ("request-lease", SID, request(operation="lock", lock_name="l", holder="h",
                                   lease_ms=MAX_MS + 1),
     rf"its lease of {MAX_MS + 1} ms is outside 0 \.\. 2\^48 ms"),
    ("request-negative-lease", SID, request(lease_ms=-1), "its lease of -1 ms"),
    ("request-timeout", SID, request(timeout_ms=MAX_LONG), "its timeout of"),
    ("request-negative-timeout", SID, request(timeout_ms=-1), "its timeout of -1 ms"),
    ("request-deep-value", SID, request(operation="set", key="k",
                                        value=nested(MAX_REQUEST_DEPTH + 1)),
     f"its value: it nests deeper than {MAX_REQUEST_DEPTH} levels"),
    ("request-surrogate-key", SID, request(operation="set", value={"\ud800": 1}),
     r"its value: it holds text that is not Unicode \(a lone surrogate\)"),
    ("request-surrogate-text", SID, request(operation="append", value=["a", "b\udfff"]),
     "its value: it holds text that is not Unicode"),
    ("op-epoch", SID, op(epoch=MAX_COUNT + 1), "its epoch"),
    ("op-version", SID, op(version=-1), "its version -1 is outside"),
    ("op-deep-result", SID, op(result=nested(MAX_OP_DEPTH + 1)),
     f"its result: it nests deeper than {MAX_OP_DEPTH} levels"),
    ("op-deep-changes", SID, op(changes={"n": nested(MAX_OP_DEPTH)}),
     f"its changes: it nests deeper than {MAX_OP_DEPTH} levels"),
]


def unchecked(state_id: str, record: StateLogRecord) -> bytes:
    """``record``'s bytes as a writer that skips the checks would write them."""
    from edgebus.wire import state_log

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(state_log, "record_refusal", lambda *_: None)
        return encode_state_record(state_id, record)


@pytest.mark.parametrize("state_id, record, says", [u[1:] for u in UNFOLDABLE],
                         ids=[u[0] for u in UNFOLDABLE])
def test_a_record_no_host_may_fold_is_a_decode_error_with_the_reason(
    state_id: str, record: StateLogRecord, says: str
) -> None:
    data = unchecked(state_id, record)
    kind = state_kind(record).upper()
    with pytest.raises(DecodeError, match=rf"no host may fold \(state .*, kind {kind}\): {says}"):
        decode_state_record(data)


@pytest.mark.parametrize("state_id, record, says", [u[1:] for u in UNFOLDABLE],
                         ids=[u[0] for u in UNFOLDABLE])
def test_the_encoder_refuses_what_the_decoder_refuses(
    state_id: str, record: StateLogRecord, says: str
) -> None:
    assert record_refusal(state_id, record) is not None
    with pytest.raises(InvalidInput, match=f"no state host would take this .*: {says}"):
        encode_state_record(state_id, record)


@pytest.mark.parametrize(
    "state_id, record",
    [
        ("é" * (MAX_STATE_ID_BYTES // 2), Release("eu", 0)),
        (SID, Claim("eu", MAX_COUNT, MAX_CLAIM_LEASE_MS)),
        (SID, Renew("eu", 0, 0)),
        (SID, request(lease_ms=0, timeout_ms=MAX_MS)),
        (SID, request(operation="set", key="k", value=nested(MAX_REQUEST_DEPTH - 1))),
        (SID, request(operation="set", key="k", value={"k": nested(MAX_REQUEST_DEPTH - 2)})),
        (SID, op(result=nested(MAX_OP_DEPTH - 1), version=MAX_COUNT, epoch=MAX_COUNT)),
        (SID, op(changes={"n": nested(MAX_OP_DEPTH - 2)})),
        (SID, op(result="\ud800 kept as written: an owner's answer is not checked for it")),
    ],
    ids=["64-kib-id", "longest-claim", "zero-renewal", "request-limits", "request-depth",
         "request-depth-in-object", "op-limits", "op-changes-depth", "op-surrogate"],
)
def test_records_at_the_limits_survive_encode_and_decode(
    state_id: str, record: StateLogRecord
) -> None:
    assert record_refusal(state_id, record) is None
    assert decode_state_record(encode_state_record(state_id, record)) == (state_id, record)


WRITTEN = st.sampled_from(
    [encode_state_record(getattr(r, "state_id", SID), r) for _, r in RECORDS]
    + [unchecked(state_id, r) for _, state_id, r, _ in UNFOLDABLE if state_id == SID]
)


@settings(max_examples=300, deadline=None)
@given(mutated(WRITTEN, 10))
def test_what_decodes_passes_the_checks_and_the_encoder_writes_it_back(value: bytes) -> None:
    """Good records and ones no host may fold, mutated: what the decoder accepts, every
    host may fold, and the encoder writes (so an owner can answer it)."""
    result = decoded(decode_state_record, value)
    if isinstance(result, DecodeError):
        return
    state_id, record = result
    assert record_refusal(state_id, record) is None
    assert decode_state_record(encode_state_record(state_id, record)) == result


def test_a_refusal_names_a_long_state_id_by_its_first_characters() -> None:
    with pytest.raises(DecodeError) as refused:
        decode_state_record(unchecked(LONG_ID, Release("eu", 1)))
    assert f"({len(LONG_ID)} characters)" in str(refused.value)
    assert len(str(refused.value)) < 400


def test_what_avro_cannot_write_is_invalid_input_not_a_codec_error() -> None:
    with pytest.raises(InvalidInput, match="cannot be written: UnicodeEncodeError"):
        encode_state_record(SID, Claim("eu-\ud800", 1, 1_000))
    with pytest.raises(InvalidInput, match="cannot be written: ValueError"):
        encode_state_record(SID, op(locks=(LockHold("l", "h", 2**64),)))
    with pytest.raises(InvalidInput, match="cannot be written"):
        encode_state_record("\udc80", Release("eu", 1))


def test_a_value_too_deep_for_json_is_invalid_input_not_a_recursion_error() -> None:
    with pytest.raises(InvalidInput, match="nests too deeply to be written as JSON"):
        encode_state_record(SID, request(operation="set", key="k", value=nested(100_000)))


# ------------------------------------------------------------------ an unknown operation


def test_the_owners_refusal_of_an_unknown_operation_decodes_and_answers_the_request() -> None:
    """Every reader folds the refusal: the request leaves the pending requests, and a
    re-sent request gets the same refusal (a duplicate), which decodes too."""
    claim = Claim("eu-west-1", 1, 10_000, "h")
    call = request(req_id="r-unknown", operation="frobnicate")
    owner, reader = StateObject(SID), StateObject(SID)
    log: list[tuple[StateLogRecord, int]] = [(claim, T), (call, T + 1)]
    for record, at in log:
        owner.fold(record, at)
    answer = execute(owner, call, region="eu-west-1", host="h", lease_until_ms=T + 10_000,
                     now_ms=T + 2, sent_ms=T + 1)
    assert answer is not None and answer.outcome == "refused"
    assert "unknown state operation 'frobnicate'" in answer.message
    owner.fold(answer, T + 2)
    again = execute(owner, call, region="eu-west-1", host="h", lease_until_ms=T + 10_000,
                    now_ms=T + 3, sent_ms=T + 3)
    assert again is not None and again.duplicate and again.outcome == "refused"
    owner.fold(again, T + 3)
    log += [(answer, T + 2), (call, T + 3), (again, T + 3)]
    for record, at in log:
        state_id, decoded = decode_state_record(encode_state_record(SID, record))
        assert (state_id, decoded) == (SID, record)
        reader.fold(decoded, at)
    assert reader.pending == {} and reader.snapshot() == owner.snapshot()
    assert reader.applied["r-unknown"].outcome == "refused"


def test_an_answer_of_an_unknown_operation_that_is_no_plain_refusal_is_not_written() -> None:
    with pytest.raises(InvalidInput, match=r"unknown operation 'frob' .* no refusal"):
        encode_state_record(SID, op(operation="frob"))
    with pytest.raises(InvalidInput, match="changes the state"):
        encode_state_record(SID, op(operation="frob", outcome="refused", changes={"a": 1}))
    with pytest.raises(InvalidInput, match="unknown outcome 'maybe'"):
        encode_state_record(SID, op(outcome="maybe"))
