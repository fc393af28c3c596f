"""Poison records in the commit log: what a participant refuses, and its dead letters.

A commit-log record that fails on its own goes to the participant's region's
dead-letter topic (``edgebus.<region>.dlq``, stage ``participant``) with the reason,
and the participant goes on past it (STYLE.md, 14; DESIGN.md, invariant 8):

* bytes that are no commit-log record (not Avro, another schema, a null value);
* a BEGIN this region could not apply (:func:`begin_refusal`: a transaction id that is
  not short ASCII, a record on another key's partition, a deadline further ahead than
  any client sets, an event this region's materializer would refuse: an unknown
  operation, a payload that is not JSON, an increment of a non-number, an empty or
  overlong key). The participant votes no with the reason, so the write aborts at once
  and nothing is locked. So for a staged write whose payload is missing (not in this
  region's ``edgebus.<region>.staged`` when the BEGIN is read), malformed, or not the
  BEGIN's (another key or operation, not the digest's bytes): the reason names no data,
  since the vote goes to the commit log, which may lie in a region the data may not;
* a record of this region's staged topic that is no staged write (not a
  ``StagedWrite``, not under its transaction id, not on that id's partition):
  :mod:`edgebus.commit.staged_tail` dead-letters it and reads on;
* a COMMIT it must not apply (:func:`commit_refusal`: the log holds no yes vote of
  every participant before it, its timestamp is ahead of this region's clock by more
  than the allowed drift, the data may not be held here). The participant applies
  nothing and acknowledges without an event position, so the transaction does not stay
  open here;
* any other per-record failure while acting on a record (a bug, a value no code path
  foresaw): dead-lettered with the error, never a stopped participant.

Transient trouble (:func:`transient`: Kafka, the store, a timeout) is never a reason:
the participant retries it. Letters are sent at least once: a restarted participant
reads the last minutes of the log again and may refuse a record a second time
(``edgebus dlq list`` shows both; ``redrive`` takes one letter per source record).

The checks are pure; :class:`DeadLetters` sends the letters.
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiokafka import ConsumerRecord
from aiokafka.errors import (
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
)

from edgebus.config import EdgeConfig
from edgebus.core.commit_log import MAX_TXN_ID_CHARS, BeginRecord, LogRecord, Txn
from edgebus.core.envelope import Operation
from edgebus.core.hlc import HLCTimestamp
from edgebus.core.vector_clock import VectorClock
from edgebus.errors import EdgebusError, StoreError
from edgebus.kafka import clients
from edgebus.kafka.batching import partition_for
from edgebus.kafka.clients import Producer
from edgebus.kafka.clusters import resolve_clusters
from edgebus.kafka.dead_letters import send_dead_letters
from edgebus.wire.commit_log import encode_saga_record, saga_headers
from edgebus.wire.event_codec import encode_fields
from edgebus.wire.event_reader import ReadEvent, read_event

__all__ = [
    "MAX_TIMEOUT_MS",
    "MAX_TXN_ID_CHARS",
    "STAGE",
    "DeadLetters",
    "begin_refusal",
    "commit_refusal",
    "event_of",
    "letter_of",
    "request_refusal",
    "transient",
    "unsupported_commit",
]

log = logging.getLogger("edgebus.commit")

#: the ``eb-dlq-stage`` of the participant's dead letters
STAGE = "participant"
#: the latest deadline a client sets: ``strong.timeout_ms`` is at most 600,000 ms
MAX_TIMEOUT_MS = 600_000
_TOO_LARGE = (MessageSizeTooLargeError, RecordTooLargeError, RecordListTooLargeError)


def transient(error: BaseException) -> bool:
    """Whether ``error`` is infrastructure trouble that passes (retried, never a reason
    to dead-letter a record): Kafka (except a record too large for it), the store, a
    timeout, the network, a retriable edgebus error."""
    if isinstance(error, _TOO_LARGE):
        return False
    if isinstance(error, KafkaError | StoreError | TimeoutError | OSError):
        return True
    return isinstance(error, EdgebusError) and error.retriable


def begin_refusal(
    begin: BeginRecord,
    region: str,
    *,
    partition: int,
    partitions: int,
    now_ms: int,
    max_drift_ms: int,
) -> str | None:
    """Why ``region`` cannot apply ``begin`` (read on commit-log ``partition``, its
    payload inline), or ``None``: :func:`request_refusal`, then whether its event is one
    the region's materializer applies (:func:`event_of`). Pure: the same answer in every
    region for the same record and clock."""
    reason = request_refusal(
        begin, partition=partition, partitions=partitions, now_ms=now_ms, max_drift_ms=max_drift_ms
    )
    if reason is not None:
        return reason
    try:
        event_of(begin, region, now_ms)
    except Exception as e:  # whatever the event codecs refuse, the materializer refuses
        return f"its event could not be applied here: {type(e).__name__}: {e}"
    return None


def request_refusal(
    begin: BeginRecord,
    *,
    partition: int,
    partitions: int,
    now_ms: int,
    max_drift_ms: int,
) -> str | None:
    """What is wrong with ``begin`` as a request, whatever its payload (so a participant
    checks it before it looks for a staged payload): a transaction id that is not short
    printable ASCII, the wrong commit-log ``partition`` for its key, a deadline further
    ahead than any client sets, an unknown operation; or ``None``."""
    txn_id = begin.txn_id
    if len(txn_id) > MAX_TXN_ID_CHARS or not (txn_id.isascii() and txn_id.isprintable()):
        return (
            f"the transaction id ({len(txn_id)} characters) is not printable ASCII of at "
            f"most {MAX_TXN_ID_CHARS} characters"
        )
    home = partition_for(begin.key.encode("utf-8", "surrogatepass"), partitions)
    if home != partition:
        return (
            f"the BEGIN is on commit-log partition {partition}, its key's partition is "
            f"{home}: another partition's transactions would not see its lock"
        )
    if begin.deadline_ms > now_ms + MAX_TIMEOUT_MS + max_drift_ms:
        return (
            f"its deadline is {begin.deadline_ms - now_ms} ms ahead: more than any "
            f"client sets ({MAX_TIMEOUT_MS} ms, plus {max_drift_ms} ms of clock drift)"
        )
    try:
        Operation(begin.operation)
    except ValueError:
        return (
            f"unknown operation {begin.operation[:80]!r} (known: "
            f"{', '.join(op.value for op in Operation)})"
        )
    return None


def event_of(begin: BeginRecord, region: str, now_ms: int) -> ReadEvent:
    """The event ``region`` would write for ``begin`` (payload inline), as its
    materializer reads it back; raises whatever the event codecs refuse."""
    encoded = encode_fields(
        "00000000-0000-0000-0000-000000000000",
        begin.key,
        Operation(begin.operation),
        begin.payload,
        region,
        (region, *(r for r in begin.placement if r != region)),
        begin.classification,
        HLCTimestamp(max(0, now_ms), 0),
        VectorClock(),
        begin.writer,
    )
    return read_event(encoded.value)


def unsupported_commit(txn: Txn) -> str | None:
    """Why ``txn``'s COMMIT decision is not backed by the log, or ``None``: a
    coordinator commits only after a yes vote of every participant, which it read from
    this partition, so those votes lie before the decision for every reader."""
    decision, begin = txn.decision, txn.begin
    if decision is None or not decision.committed or begin is None:
        return None
    missing = [r for r in begin.placement if not (r in txn.votes and txn.votes[r].yes)]
    if missing or not begin.placement:
        return (
            f"a COMMIT without a yes vote of {', '.join(missing) or 'any region'} before "
            "it in the log: no coordinator decided it"
        )
    return None


def commit_refusal(txn: Txn, *, now_ms: int, max_drift_ms: int, may_hold: bool) -> str | None:
    """Why this region must not apply ``txn``'s COMMIT, or ``None``."""
    decision = txn.decision
    assert decision is not None
    unsupported = unsupported_commit(txn)
    if unsupported is not None:
        return unsupported
    wall_ms = decision.hlc >> 16
    if decision.hlc < 0 or wall_ms > now_ms + max_drift_ms:
        return (
            f"the COMMIT is stamped {wall_ms} ms since the epoch, more than "
            f"{max_drift_ms} ms ahead of this region's clock ({now_ms})"
        )
    if not may_hold:
        begin = txn.begin
        classes = ", ".join(begin.classification) if begin is not None else "?"
        return f"compliance: this region may not hold data classified {classes or 'public'}"
    return None


def letter_of(
    topic: str, partition: int, txn: Txn, record: ConsumerRecord[bytes, bytes] | None
) -> ConsumerRecord[bytes, bytes]:
    """The record to dead-letter for ``txn`` (folded from ``partition`` of ``topic``):
    ``record`` if it is the one at stake (the decision, else the BEGIN), else that one
    as folded (the participant keeps the fold, not the bytes)."""
    at, folded = (
        (txn.decision_offset, txn.decision)
        if txn.decision is not None
        else (txn.begin_offset, txn.begin)
    )
    if record is not None and (folded is None or record.offset == at):
        return record
    assert folded is not None
    return _as_record(topic, partition, at, folded)


def _as_record(
    topic: str, partition: int, offset: int, record: LogRecord
) -> ConsumerRecord[bytes, bytes]:
    key = record.key.encode("utf-8", "surrogatepass")
    try:
        value = encode_saga_record(record)
    except Exception:  # the fold holds what was decoded: this cannot fail in practice
        value = b""
    return ConsumerRecord(
        topic,
        partition,
        offset,
        int(time.time() * 1000),
        0,
        key,
        value,
        None,
        len(key),
        len(value),
        saga_headers(record),
    )


class DeadLetters:
    """The participant's dead letters: ``edgebus.<region>.dlq`` on the region's own
    cluster, through a producer started at the first letter."""

    def __init__(self, config: EdgeConfig, region: str) -> None:
        self.config = config
        self.region = region
        self.sent = 0  #: letters Kafka acknowledged
        self._producer: Producer | None = None

    async def send(self, record: ConsumerRecord[bytes, bytes], reason: str) -> None:
        """Dead-letter ``record``; retries transient trouble until Kafka took it (a
        letter Kafka refuses for itself, too large, is logged and dropped)."""
        log.warning(
            "%s: commit log %s:%d:%d refused by the participant, dead-lettered: %s",
            self.region,
            record.topic,
            record.partition,
            record.offset,
            reason,
        )
        for attempt in range(1, 1_000_000):
            try:
                producer = await self._started()
                self.sent += await send_dead_letters(
                    producer, self.region, [(record, reason, STAGE)], self.region
                )
                return
            except asyncio.CancelledError:
                raise
            except Exception as e:
                if not transient(e):
                    log.error(
                        "%s: commit log %s:%d:%d could not be dead-lettered: %r",
                        self.region,
                        record.topic,
                        record.partition,
                        record.offset,
                        e,
                    )
                    return
                log.warning(
                    "%s: dead letter not sent (%s), attempt %d; retrying", self.region, e, attempt
                )
                await asyncio.sleep(min(5.0, 0.2 * attempt))

    async def _started(self) -> Producer:
        if self._producer is None:
            bootstrap = resolve_clusters(self.config)[self.region]
            self._producer = await clients.start_producer(
                self.config.kafka,
                bootstrap,
                "service",
                client_id=f"edgebus-participant-{self.region}-dlq",
                what=f"{self.region}'s Kafka",
            )
        return self._producer

    async def stop(self) -> None:
        """Flush and disconnect."""
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()
