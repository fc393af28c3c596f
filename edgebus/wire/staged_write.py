"""Staged strong-write payloads on the wire: ``io.edgebus.StagedWrite``
(``schemas/staged_write.v1.avsc``) in Avro single-object encoding, keyed by the
transaction id (UTF-8), in each participant region R's topic ``edgebus.R.staged``
(:mod:`edgebus.core.staged_write` says why the commit log does not carry the data).

The decoder trusts nothing: any bytes are a :class:`StagedWrite` or a DecodeError
saying why, in time and space linear in their size (the single-object walk checks the
body; then the fields are checked against what a writer can stage: a transaction id of
printable ASCII within :data:`~edgebus.core.commit_log.MAX_TXN_ID_CHARS`, a salt of
:data:`~edgebus.core.staged_write.SALT_BYTES`, an operation other than a delete, a
declassification record of at most 8 KiB, deadlines and times that are not negative).
Whether the payload is JSON the event codecs check when a participant votes.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from edgebus.core.commit_log import MAX_TXN_ID_CHARS
from edgebus.core.envelope import Operation
from edgebus.core.staged_write import SALT_BYTES, StagedWrite
from edgebus.errors import DecodeError
from edgebus.wire.schema_registry import RegisteredSchema, default_registry
from edgebus.wire.single_object import decode_single_object, encode_single_object

__all__ = [
    "MAX_DECLASSIFIED_BYTES",
    "STAGED_WRITE_SCHEMA",
    "decode_staged_write",
    "encode_staged_write",
]

#: the full name of the schema in ``schemas/staged_write.v1.avsc``
STAGED_WRITE_SCHEMA = "io.edgebus.StagedWrite"
#: the longest declassification record a staged write carries (as the header's reader)
MAX_DECLASSIFIED_BYTES = 8_192
_STAGEABLE = frozenset(op.value for op in Operation if op is not Operation.DELETE)


@cache
def _schema() -> RegisteredSchema:
    return default_registry().latest(STAGED_WRITE_SCHEMA)


def encode_staged_write(staged: StagedWrite) -> bytes:
    """The Avro single-object value of one staged write (UnicodeDecodeError for a
    payload or declassification record that is not UTF-8: the writer encodes JSON)."""
    declassified = staged.declassified
    return encode_single_object(
        _schema(),
        {
            "txn_id": staged.txn_id,
            "key": staged.key,
            "operation": staged.operation,
            "payload_json": staged.payload.decode("utf-8"),
            "declassified_json": declassified.decode("utf-8") if declassified is not None else None,
            "salt": staged.salt,
            "deadline_ms": staged.deadline_ms,
            "writer": staged.writer,
            "time_ms": staged.time_ms,
        },
    )


def decode_staged_write(value: bytes | None) -> StagedWrite:
    """Parse :func:`encode_staged_write`'s bytes; DecodeError for anything else."""
    if not value:
        raise DecodeError(f"a staged write has no value (expected {STAGED_WRITE_SCHEMA})")
    writer, raw = decode_single_object(value, default_registry())
    if writer.full_name != STAGED_WRITE_SCHEMA:
        raise DecodeError(
            f"a record of a staged topic holds a {writer.full_name}, not a "
            f"{STAGED_WRITE_SCHEMA}: something other than a strong-write client wrote to it"
        )
    try:
        return _staged(raw)
    except (KeyError, TypeError, ValueError) as e:
        raise DecodeError(f"staged write is malformed: {type(e).__name__}: {e}") from e


def _staged(raw: dict[str, Any]) -> StagedWrite:
    txn_id: str = raw["txn_id"]
    if not (0 < len(txn_id) <= MAX_TXN_ID_CHARS and txn_id.isascii() and txn_id.isprintable()):
        raise ValueError(
            f"its transaction id ({len(txn_id)} characters) is not printable "
            f"ASCII of 1 to {MAX_TXN_ID_CHARS} characters"
        )
    operation: str = raw["operation"]
    if operation not in _STAGEABLE:
        raise ValueError(
            f"operation {operation[:40]!r} is not one a write stages (one of "
            f"{', '.join(sorted(_STAGEABLE))})"
        )
    salt: bytes = raw["salt"]
    if len(salt) != SALT_BYTES:
        raise ValueError(f"its salt has {len(salt)} bytes, not {SALT_BYTES}")
    declassified: str | None = raw["declassified_json"]
    record = declassified.encode("utf-8") if declassified is not None else None
    if record is not None and len(record) > MAX_DECLASSIFIED_BYTES:
        raise ValueError(
            f"its declassification record has {len(record)} bytes, over {MAX_DECLASSIFIED_BYTES}"
        )
    deadline_ms: int = raw["deadline_ms"]
    time_ms: int = raw["time_ms"]
    if deadline_ms < 0 or time_ms < 0:
        raise ValueError(
            f"deadline_ms ({deadline_ms}) and time_ms ({time_ms}) must not be negative"
        )
    return StagedWrite(
        txn_id,
        raw["key"],
        operation,
        raw["payload_json"].encode("utf-8"),
        record,
        salt,
        deadline_ms,
        raw["writer"],
        time_ms,
    )
