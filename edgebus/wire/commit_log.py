"""Commit-log records on the wire: ``io.edgebus.SagaLogRecord`` (``schemas/saga_log.v2.avsc``;
version 1 records, without ``begin.staged_digest``, still decode) in Avro single-object
encoding, keyed by the written key, in topic ``edgebus.<log region>.saga``.

Records carry the header ``eb-saga`` (``begin``, ``vote``, ``decision`` or ``ack``) so
a tool can filter without decoding. ``schemas/README.md`` documents the fields. A
BEGIN's payload is inline only in records of old clients: a staged write's BEGIN has a
null payload and the ``staged_digest`` of the payload staged in each participant's own
region (:mod:`edgebus.core.staged_write`).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from edgebus.core.commit_log import AckRecord, BeginRecord, DecisionRecord, LogRecord, VoteRecord
from edgebus.core.commit_vote import Decision, Refusal, TxnOutcome, VersionConflict, Vote
from edgebus.core.staged_write import DIGEST_BYTES
from edgebus.errors import DecodeError
from edgebus.wire.schema_registry import RegisteredSchema, default_registry
from edgebus.wire.single_object import decode_single_object, encode_single_object

__all__ = ["H_SAGA", "decode_saga_record", "encode_saga_record", "saga_headers"]

#: header naming the record's kind (lower case)
H_SAGA = "eb-saga"
_FULL_NAME = "io.edgebus.SagaLogRecord"
_KIND = {BeginRecord: "BEGIN", VoteRecord: "VOTE", DecisionRecord: "DECISION", AckRecord: "ACK"}
_HEADERS = {k: [(H_SAGA, v.lower().encode("ascii"))] for k, v in _KIND.items()}


@cache
def _schema() -> RegisteredSchema:
    return default_registry().latest(_FULL_NAME)


def saga_headers(record: LogRecord) -> list[tuple[str, bytes]]:
    """The Kafka headers of ``record``."""
    return list(_HEADERS[type(record)])


def encode_saga_record(record: LogRecord) -> bytes:
    """The Avro single-object value of one commit-log record."""
    out: dict[str, Any] = {
        "kind": _KIND[type(record)],
        "txn_id": record.txn_id,
        "key": record.key,
        "time_ms": record.time_ms,
        "writer": record.writer,
        "begin": None,
        "vote": None,
        "decision": None,
        "ack": None,
    }
    if isinstance(record, BeginRecord):
        out["begin"] = {
            "operation": record.operation,
            "payload": record.payload,
            "placement": list(record.placement),
            "classification": list(record.classification),
            "expected_version": record.expected_version,
            "deadline_ms": record.deadline_ms,
            "hlc": record.hlc,
            "staged_digest": record.staged_digest,
        }
    elif isinstance(record, VoteRecord):
        v = record.vote
        out["vote"] = {
            "region": v.region,
            "yes": v.yes,
            "reason": v.reason,
            "refusal": v.refusal.value if v.refusal is not None else None,
            "version": v.version,
        }
    elif isinstance(record, DecisionRecord):
        o = record.outcome
        c = o.conflict
        out["decision"] = {
            "commit": o.decision is Decision.COMMIT,
            "reason": o.reason,
            "conflict_region": c.region if c else None,
            "conflict_expected": c.expected if c else None,
            "conflict_found": c.found if c else None,
            "hlc": record.hlc,
            "version": record.version,
        }
    else:
        out["ack"] = {"region": record.region, "position": record.position}
    return encode_single_object(_schema(), out)


def decode_saga_record(value: bytes | None) -> LogRecord:
    """Parse :func:`encode_saga_record`'s bytes; DecodeError for anything else."""
    if not value:
        raise DecodeError("a commit-log record has no value")
    writer, r = decode_single_object(value, default_registry())
    if writer.full_name != _FULL_NAME:
        raise DecodeError(f"the commit log holds a {writer.full_name}, not a {_FULL_NAME}")
    kind = r["kind"]
    common = (r["txn_id"], r["key"])
    try:
        if kind == "BEGIN":
            b = r["begin"]
            if b is None:
                raise TypeError("it is null")
            digest = b.get("staged_digest")  # (not in version 1 records)
            if digest is not None and len(digest) != DIGEST_BYTES:
                raise DecodeError(
                    f"a BEGIN's staged_digest has {len(digest)} bytes, not {DIGEST_BYTES}"
                )
            return BeginRecord(
                *common,
                b["operation"],
                b["payload"],
                tuple(b["placement"]),
                tuple(b["classification"]),
                b["expected_version"],
                b["deadline_ms"],
                b["hlc"],
                r["writer"],
                r["time_ms"],
                digest,
            )
        if kind == "VOTE":
            v = r["vote"]
            refusal = Refusal(v["refusal"]) if v["refusal"] is not None else None
            vote = Vote(r["txn_id"], v["region"], v["yes"], v["reason"], v["version"], refusal)
            return VoteRecord(*common, vote, r["writer"], r["time_ms"])
        if kind == "DECISION":
            d = r["decision"]
            conflict = None
            if d["conflict_region"] is not None:
                conflict = VersionConflict(
                    d["conflict_region"], d["conflict_expected"], d["conflict_found"]
                )
            outcome = TxnOutcome(
                Decision.COMMIT if d["commit"] else Decision.ABORT, d["reason"], conflict
            )
            return DecisionRecord(
                *common, outcome, d["hlc"], d["version"], r["writer"], r["time_ms"]
            )
        a = r["ack"]
        return AckRecord(*common, a["region"], a["position"], r["writer"], r["time_ms"])
    except (TypeError, KeyError, ValueError) as e:
        raise DecodeError(
            f"commit-log record of kind {kind} lacks its {kind.lower()} part: {e}"
        ) from e
