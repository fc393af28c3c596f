"""Dead letters: records a region cannot apply or copy go to ``edgebus.R.dlq``.

This module names the header contract and builds and sends letters; reading them is
:mod:`edgebus.kafka.dead_letter_view`, putting them back is :mod:`edgebus.kafka.redrive`.

A dead letter is the original record (same key, value and headers) plus reason
headers, so that ``edgebus dlq redrive`` can put it back once the cause is fixed (a
newer edgebus that knows its schema, a compliance rule corrected):

| header | value |
| --- | --- |
| ``eb-dlq-reason`` | UTF-8 text (at most 2,000 bytes): why it was refused |
| ``eb-dlq-stage`` | ``materialize``, ``replicate``, ``participant`` or ``state`` |
| ``eb-dlq-source`` | ``topic:partition:offset`` of the original record |
| ``eb-dlq-region`` | the region whose service refused it |
| ``eb-dlq-time`` | milliseconds since the epoch, ASCII |
| ``eb-dlq-truncated`` | only on a *reference* letter: the original value's size, ASCII |
| ``eb-dlq-digest`` | only on a reference letter: BLAKE2b-256 of the original value, hex |
| ``eb-dlq-key-truncated`` | only on a reference letter whose key was cut: the key's size |

A redriven record carries ``eb-redrive-of: <dlq partition>:<dlq offset>``
(:data:`H_REDRIVE_OF`).

Size-safe. A letter never fails for its size: when the original key, value and headers
plus the reason headers would not fit in one Kafka record (:data:`MAX_LETTER_BYTES`,
below Kafka's default ``message.max.bytes`` and aiokafka's ``max_request_size``), or
the original headers alone exceed :data:`MAX_KEPT_HEADER_BYTES`, a *reference letter*
goes out instead: no value, none of the original headers, the key (cut to
:data:`REFERENCE_KEY_BYTES`), the reason headers and ``eb-dlq-truncated`` /
``eb-dlq-digest``. A letter the broker still refuses as too large is sent again as a
reference. Either way the letter is acknowledged and the consumer moves on. The
original stays in its source topic (``eb-dlq-source``) until that topic's retention
removes it; ``edgebus dlq redrive`` refuses reference letters and says where it is.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import ConsumerRecord
from aiokafka.errors import MessageSizeTooLargeError, RecordListTooLargeError, RecordTooLargeError

from edgebus.kafka.clients import Producer
from edgebus.kafka.topics import dlq_topic

__all__ = [
    "DLQ_HEADERS",
    "H_DLQ_DIGEST",
    "H_DLQ_KEY_TRUNCATED",
    "H_DLQ_REASON",
    "H_DLQ_REGION",
    "H_DLQ_SOURCE",
    "H_DLQ_STAGE",
    "H_DLQ_TIME",
    "H_DLQ_TRUNCATED",
    "H_REDRIVE_OF",
    "MAX_KEPT_HEADER_BYTES",
    "MAX_LETTER_BYTES",
    "MAX_REASON_BYTES",
    "REFERENCE_KEY_BYTES",
    "STAGES",
    "Header",
    "Letter",
    "build_letter",
    "dead_letter_headers",
    "send_dead_letters",
]

log = logging.getLogger(__name__)

H_DLQ_REASON = "eb-dlq-reason"
H_DLQ_STAGE = "eb-dlq-stage"
H_DLQ_SOURCE = "eb-dlq-source"
H_DLQ_REGION = "eb-dlq-region"
H_DLQ_TIME = "eb-dlq-time"
H_DLQ_TRUNCATED = "eb-dlq-truncated"
H_DLQ_DIGEST = "eb-dlq-digest"
H_DLQ_KEY_TRUNCATED = "eb-dlq-key-truncated"
#: every header a dead letter adds; any header starting with ``eb-dlq-`` is edgebus's
DLQ_HEADERS = frozenset({
    H_DLQ_REASON, H_DLQ_STAGE, H_DLQ_SOURCE, H_DLQ_REGION, H_DLQ_TIME, H_DLQ_TRUNCATED,
    H_DLQ_DIGEST, H_DLQ_KEY_TRUNCATED,
})
_DLQ_PREFIX = "eb-dlq-"
#: on a redriven record: ``<dlq partition>:<dlq offset>`` of the dead letter it came from
H_REDRIVE_OF = "eb-redrive-of"

#: where a letter was refused: the materializer, a replicator, a commit participant, a
#: state host
STAGES = ("materialize", "replicate", "participant", "state")
#: the largest letter sent whole (key, value, headers, record overhead): below Kafka's
#: default message.max.bytes (1,048,588) and aiokafka's max_request_size (1,048,576)
MAX_LETTER_BYTES = 1_000_000
#: the most bytes of original headers (names and values) a letter keeps
MAX_KEPT_HEADER_BYTES = 64 * 1024
#: the longest reason kept, in UTF-8 bytes
MAX_REASON_BYTES = 2_000
#: the longest key a reference letter keeps (an event key's own limit)
REFERENCE_KEY_BYTES = 4_096
_RECORD_OVERHEAD = 128
_HEADER_OVERHEAD = 10
_SIZE_ERRORS = (MessageSizeTooLargeError, RecordListTooLargeError, RecordTooLargeError)

#: one record header: (name, value or None)
Header = tuple[str, bytes | None]


@dataclass(frozen=True, slots=True)
class Letter:
    """One dead letter to send: whole (the original record plus reason headers) or a
    reference (no value, no original headers)."""

    key: bytes | None
    value: bytes | None
    headers: list[Header]
    reference: bool


def _reason_bytes(reason: str) -> bytes:
    raw = reason.encode("utf-8", "replace")
    if len(raw) <= MAX_REASON_BYTES:
        return raw
    return raw[:MAX_REASON_BYTES].decode("utf-8", "ignore").encode("utf-8")


def _refusal_headers(
    record: ConsumerRecord[bytes, bytes], reason: str, stage: str, region: str
) -> list[Header]:
    return [
        (H_DLQ_REASON, _reason_bytes(reason)),
        (H_DLQ_STAGE, stage.encode("ascii", "replace")),
        (H_DLQ_SOURCE, f"{record.topic}:{record.partition}:{record.offset}".encode("ascii",
                                                                                 "replace")),
        (H_DLQ_REGION, region.encode("ascii", "replace")),
        (H_DLQ_TIME, str(int(time.time() * 1000)).encode("ascii")),
    ]


def _kept_headers(record: ConsumerRecord[bytes, bytes]) -> list[Header]:
    """The original headers a letter keeps: all but edgebus's dead-letter headers."""
    return [(k, v) for k, v in (record.headers or ()) if not k.startswith(_DLQ_PREFIX)]


def _headers_size(headers: Iterable[Header]) -> int:
    return sum(len(k.encode("utf-8", "replace")) + len(v or b"") + _HEADER_OVERHEAD
               for k, v in headers)


def _record_size(key: bytes | None, value: bytes | None, headers: Iterable[Header]) -> int:
    """An upper bound of the bytes a record takes in a produce request."""
    return len(key or b"") + len(value or b"") + _headers_size(headers) + _RECORD_OVERHEAD


def dead_letter_headers(
    record: ConsumerRecord[bytes, bytes], reason: str, stage: str, region: str
) -> list[Header]:
    """The original headers (minus older dead-letter headers) plus this refusal's."""
    return [*_kept_headers(record), *_refusal_headers(record, reason, stage, region)]


def build_letter(
    record: ConsumerRecord[bytes, bytes],
    reason: str,
    stage: str,
    region: str,
    max_bytes: int = MAX_LETTER_BYTES,
    *,
    force_reference: bool = False,
) -> Letter:
    """The letter for ``record``: whole when it fits in ``max_bytes`` and its original
    headers in :data:`MAX_KEPT_HEADER_BYTES`, else a reference letter (pure)."""
    refusal = _refusal_headers(record, reason, stage, region)
    kept = _kept_headers(record)
    if not force_reference and _headers_size(kept) <= MAX_KEPT_HEADER_BYTES:
        headers = [*kept, *refusal]
        if _record_size(record.key, record.value, headers) <= max_bytes:
            return Letter(record.key, record.value, headers, reference=False)
    value = record.value or b""
    key = record.key
    extra: list[Header] = [
        (H_DLQ_TRUNCATED, str(len(value)).encode("ascii")),
        (H_DLQ_DIGEST, hashlib.blake2b(value, digest_size=32).hexdigest().encode("ascii")),
    ]
    if key is not None and len(key) > REFERENCE_KEY_BYTES:
        extra.append((H_DLQ_KEY_TRUNCATED, str(len(key)).encode("ascii")))
        key = key[:REFERENCE_KEY_BYTES]
    return Letter(key, None, [*refusal, *extra], reference=True)


async def send_dead_letters(
    producer: Producer,
    dlq_region: str,
    letters: Iterable[tuple[ConsumerRecord[bytes, bytes], str, str]],
    refused_by: str,
) -> int:
    """Append ``(record, reason, stage)`` letters to ``edgebus.<dlq_region>.dlq`` and wait
    for Kafka's acknowledgement (the caller commits its position only after).

    A letter too large for a Kafka record goes out as a reference letter (see the
    module docstring), so no letter fails for its size."""
    topic = dlq_topic(dlq_region)
    budget = min(MAX_LETTER_BYTES, int(getattr(producer, "_max_request_size", MAX_LETTER_BYTES)))
    pending: list[tuple[tuple[ConsumerRecord[bytes, bytes], str, str], asyncio.Future[Any]]] = []
    sent = 0
    for item in letters:
        record, reason, stage = item
        letter = build_letter(record, reason, stage, refused_by, budget)
        try:
            future = await producer.send(
                topic, value=letter.value, key=letter.key, headers=letter.headers
            )
        except _SIZE_ERRORS:
            await _send_reference(producer, topic, item, refused_by)
            sent += 1
            continue
        pending.append((item, future))
    outcomes = await asyncio.gather(*(f for _, f in pending), return_exceptions=True)
    for (item, _), outcome in zip(pending, outcomes, strict=True):
        if isinstance(outcome, _SIZE_ERRORS):
            # the broker (or the topic's max.message.bytes) allows less than we assumed
            await _send_reference(producer, topic, item, refused_by)
        elif isinstance(outcome, BaseException):
            raise outcome
        sent += 1
    return sent


async def _send_reference(
    producer: Producer,
    topic: str,
    item: tuple[ConsumerRecord[bytes, bytes], str, str],
    refused_by: str,
) -> None:
    record, reason, stage = item
    letter = build_letter(record, reason, stage, refused_by, force_reference=True)
    log.warning("dead letter of %s:%d:%d too large for Kafka: sent as a reference",
                record.topic, record.partition, record.offset)
    await producer.send_and_wait(topic, value=None, key=letter.key, headers=letter.headers)
