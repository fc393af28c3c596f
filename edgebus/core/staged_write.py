"""Staged payloads of strong writes: the data of a strong write stays in the regions
that may hold it.

The commit log (:mod:`edgebus.core.commit_log`) is one topic on one cluster, the log
region's, which is often a region the data may not be held in. So its BEGIN records do
not carry the data. The writer first *stages* it: one :class:`StagedWrite` per
participant region R, in R's own topic ``edgebus.R.staged`` (on R's cluster, keyed by
the transaction id), acknowledged by Kafka before the BEGIN is appended; then it
appends the BEGIN with a null payload and the :func:`staged_digest` of what it staged.
A BEGIN of an operation other than a delete whose payload is null is a staged write
(:attr:`~edgebus.core.commit_log.BeginRecord.staged`); an old BEGIN with its payload
inline is still a valid request.

Each participant votes on a staged BEGIN with the payload staged in its own region: it
votes no when that payload is missing, malformed or not the BEGIN's
(:func:`staged_mismatch`), or when its content may not be held there; on COMMIT it
applies it as it applies an inline payload.

The digest is a commitment, not a fingerprint of the data: SHA-256 over a domain tag,
a random 32-byte salt that only the staged records hold, the payload and the
declassification record. So the digest in the commit log tells nothing of the payload
(a plain hash of an e-mail address could be confirmed by guessing addresses), yet it
binds every participant to the same bytes: a participant applies only a staged payload
whose digest is the BEGIN's, and a buggy or hostile writer cannot commit different data
in different regions under one transaction.

Pure: no I/O, no clock, no randomness (the writer draws the salt).
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass

from edgebus.core.commit_log import BeginRecord

__all__ = [
    "DIGEST_BYTES",
    "SALT_BYTES",
    "StagedWrite",
    "staged_digest",
    "staged_mismatch",
    "with_staged_payload",
]

#: the salt of a staged write: 32 random bytes
SALT_BYTES = 32
#: a staged write's digest: SHA-256
DIGEST_BYTES = 32
_DOMAIN = b"edgebus.staged-write.v1\x00"


@dataclass(frozen=True, slots=True)
class StagedWrite:
    """The data of one strong write, staged in one participant region's topic.

    ``payload``: the data as JSON (UTF-8); ``declassified``: the ``eb-declassified``
    record of a write its writer declassified (UTF-8 JSON, see
    :mod:`edgebus.wire.headers`), else ``None``; ``salt``: :data:`SALT_BYTES` random
    bytes; ``deadline_ms``: the transaction's deadline (a participant forgets a staged
    write no BEGIN claimed by then); ``writer`` and ``time_ms`` as in the BEGIN.
    """

    txn_id: str
    key: str
    operation: str
    payload: bytes
    declassified: bytes | None
    salt: bytes
    deadline_ms: int
    writer: str
    time_ms: int

    @property
    def digest(self) -> bytes:
        """:func:`staged_digest` of this write: what its BEGIN carries."""
        return staged_digest(self.salt, self.payload, self.declassified)

    @property
    def size(self) -> int:
        """Roughly the bytes it holds in memory."""
        return (
            len(self.payload)
            + len(self.declassified or b"")
            + len(self.txn_id)
            + len(self.key)
            + len(self.writer)
            + 160
        )


def staged_digest(salt: bytes, payload: bytes, declassified: bytes | None) -> bytes:
    """The commitment a staged BEGIN carries: SHA-256 of a domain tag, the salt, the
    payload's length and bytes, and the declassification record (if any)."""
    h = hashlib.sha256(_DOMAIN)
    h.update(len(salt).to_bytes(2, "big"))
    h.update(salt)
    h.update(len(payload).to_bytes(8, "big"))
    h.update(payload)
    if declassified is not None:
        h.update(b"\x01")
        h.update(declassified)
    else:
        h.update(b"\x00")
    return h.digest()


def staged_mismatch(begin: BeginRecord, staged: StagedWrite) -> str | None:
    """Why ``staged`` is not the data of the staged ``begin`` (another transaction, key
    or operation, no digest in the BEGIN, or not the digest's bytes), or ``None``.

    The reasons name no data: a participant writes them into its vote, in the commit
    log."""
    if staged.txn_id != begin.txn_id:
        return f"the staged payload is of another transaction ({staged.txn_id[:80]!r})"
    if staged.key != begin.key:
        return "the staged payload is of another key than the BEGIN's"
    if staged.operation != begin.operation:
        return (
            f"the staged payload is of operation {staged.operation[:40]!r}, the BEGIN's "
            f"is {begin.operation[:40]!r}"
        )
    if begin.staged_digest is None:
        return (
            "the BEGIN of a staged write carries no staged_digest: nothing binds the "
            "participants to one payload"
        )
    if len(staged.salt) != SALT_BYTES:
        return f"the staged payload's salt has {len(staged.salt)} bytes, not {SALT_BYTES}"
    if staged.digest != begin.staged_digest:
        return (
            "the staged payload's digest is not the BEGIN's: its writer staged other "
            "bytes in this region than it committed to"
        )
    return None


def with_staged_payload(begin: BeginRecord, staged: StagedWrite) -> BeginRecord:
    """``begin`` with ``staged``'s payload inline (what a participant applies): check
    :func:`staged_mismatch` first."""
    return dataclasses.replace(begin, payload=staged.payload)
