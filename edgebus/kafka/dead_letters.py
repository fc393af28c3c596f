"""Dead letters: records a region cannot apply or copy go to ``edgebus.R.dlq``.

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

Untrusted. Every header of a dead letter is input, whoever wrote it (a forged letter,
or a writer's record whose own headers imitate edgebus's): :func:`decode_dead_letter`
lists any record, showing a field it cannot read (a time that is not a number, a reason
that is not UTF-8, a malformed source, an unknown stage) as invalid instead of failing.

Redrive. ``edgebus dlq redrive`` appends a letter's original record back to
``edgebus.R.events``: the same key and value and the original headers except those only
edgebus may set on such an append, with ``eb-redrive-of: <dlq partition>:<dlq offset>``
of its own:

* every ``eb-dlq-*`` header and any ``eb-redrive-of`` the original carried are dropped
  (they are edgebus's, never the record's), and so are ``eb-saga`` and ``eb-state``
  (other topics' headers); a watermark (``eb-watermark``) is not redriven at all (the
  next heartbeat supersedes it), nor is a state-log record;
* ``eb-origin-pos`` and ``eb-deps`` of a replicated copy are kept (without them the copy
  would be applied as an event of this region, outside its stream's order), once each,
  and only when the position names another configured region, the partition the copy
  sits in, and an offset below the end of that region's events topic: a forged position
  would otherwise let the redrive skip the region's duplicate check;
* ``eb-txn`` of a strong commit's event is kept, once, when every letter of the record
  carries the same one: it is the event's applied-once marker (another copy of the same
  commit, written by the participant again, must not apply twice), and without it the
  replicator would copy the event to regions whose participants wrote their own.

Applied once. The materializer remembers the ``eb-redrive-of`` markers it applied (in
the store, in the same transaction as their effect) and drops a record whose marker it
has seen. The marker is the *record's* first dead letter, not necessarily the one
redriven: the letters of one record (the same ``eb-dlq-source``, or a failed redrive's
letter whose ``eb-redrive-of`` names a letter with the same key and value) share one
marker, so redriving any of them, twice, after a crash, or after a redrive that failed
again, applies the record at most once; a forged ``eb-redrive-of`` is dropped, and
one naming a letter of other content is not followed. A record that still cannot be
applied goes back to the dead-letter topic as a new letter.

Only letters refused by the materializer (stage ``materialize``) are redriven; a copy
the replicator refused for compliance (stage ``replicate``) must not be forced into the
region: fix the compliance rules and the replicator's next copies flow again; commit-log
(``participant``) and state-log (``state``) records are not events.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import ConsumerRecord
from aiokafka.errors import MessageSizeTooLargeError, RecordListTooLargeError, RecordTooLargeError

from edgebus.config import EdgeConfig
from edgebus.errors import DecodeError, EdgebusError, InvalidInput
from edgebus.kafka.clients import Producer, start_producer
from edgebus.kafka.clusters import resolve_clusters
from edgebus.kafka.reading import end_offsets, read_to_end
from edgebus.kafka.topics import dlq_topic, events_topic

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
    "REFERENCE_KEY_BYTES",
    "STAGES",
    "DeadLetterView",
    "Letter",
    "RedrivePlan",
    "build_letter",
    "dead_letter_headers",
    "decode_dead_letter",
    "list_dead_letters",
    "plan_redrive",
    "redrive",
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
# the control headers of edgebus.wire.headers and .watermark that redrive reads (this
# layer may not import edgebus.wire; tests/unit/test_dead_letter_fuzz.py checks the names)
_H_ORIGIN_POS = "eb-origin-pos"
_H_TXN = "eb-txn"
_H_WATERMARK = "eb-watermark"
#: headers of other topics' records, never of an event: dropped on redrive
_NOT_EVENT_HEADERS = frozenset({"eb-saga", "eb-state"})

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
#: what a listing shows of a key, in characters
_KEY_SHOWN = 256
_MAX_SOURCE_BYTES = 300
_MAX_REGION_BYTES = 249
#: times past this (year 2286) are not milliseconds since the epoch of any real letter
_MAX_TIME_MS = 10**13
_RECORD_OVERHEAD = 128
_HEADER_OVERHEAD = 10
_MANY = b"\0more than one"
_SIZE_ERRORS = (MessageSizeTooLargeError, RecordListTooLargeError, RecordTooLargeError)


# -- writing letters ---------------------------------------------------------------------

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


# -- reading letters ---------------------------------------------------------------------


@dataclass(frozen=True)
class DeadLetterView:
    """One dead letter as ``edgebus dlq list`` shows it: each field read from its header
    or ``None`` (``stage``, ``source``, ``refused_by``, ``time_ms``) when the header is
    missing or malformed, with the reason in :attr:`invalid`."""

    partition: int
    offset: int
    #: the record key as text (UTF-8, other bytes escaped), shortened for display
    key: str | None
    reason: str
    stage: str | None
    source: str | None
    refused_by: str | None
    time_ms: int | None
    record: ConsumerRecord[bytes, bytes]
    #: a reference letter: the original value's size (the value is not in the letter)
    truncated: int | None = None
    #: a reference letter: BLAKE2b-256 (hex) of the original value
    digest: str | None = None
    #: field -> why it is shown as invalid
    invalid: Mapping[str, str] = field(default_factory=dict)
    reference: bool = False

    @property
    def source_position(self) -> tuple[str, int, int] | None:
        """``(topic, partition, offset)`` of the original record, if the header parses."""
        return _parse_source(self.source) if self.source is not None else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (without the record bytes)."""
        return {
            "partition": self.partition,
            "offset": self.offset,
            "key": self.key,
            "reason": self.reason,
            "stage": self.stage,
            "source": self.source,
            "refused_by": self.refused_by,
            "time_ms": self.time_ms,
            "value_bytes": len(self.record.value or b""),
            "reference": self.reference,
            "original_bytes": self.truncated,
            "digest": self.digest,
            "invalid": dict(self.invalid),
        }


def _parse_source(text: str) -> tuple[str, int, int] | None:
    topic, _, offset = text.rpartition(":")
    topic, _, partition = topic.rpartition(":")
    if (topic and partition.isdigit() and offset.isdigit() and len(partition) <= 10
            and len(offset) <= 19 and int(partition) < 2**31 and int(offset) < 2**63
            and all(c.isalnum() or c in "._-" for c in topic)):
        return topic, int(partition), int(offset)
    return None


def _printable(text: str) -> str:
    """``text`` with control characters escaped (a letter's text reaches terminals)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _shown(raw: bytes | None, limit: int) -> str:
    text = (raw or b"")[: limit * 4].decode("utf-8", "backslashreplace")
    text = _printable(text)
    return text if len(text) <= limit else text[:limit] + "…"


def _ascii(raw: bytes, limit: int) -> str | None:
    if len(raw) > limit:
        return None
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        return None


def _headers(record: Any) -> list[tuple[str, bytes | None]]:
    """The record's headers as (name, bytes or None); DecodeError when they are not a
    sequence of (str, bytes-like or None) pairs (not something Kafka hands over)."""
    raw = getattr(record, "headers", None)
    if raw is None:
        return []
    try:
        pairs = list(raw)
    except TypeError as e:
        raise DecodeError(f"dead letter headers are not a sequence: {e}") from None
    out: list[tuple[str, bytes | None]] = []
    for pair in pairs:
        if not isinstance(pair, tuple) or len(pair) != 2 or not isinstance(pair[0], str):
            raise DecodeError(f"dead letter header {pair!r:.80} is not a (name, value) pair")
        name, value = pair
        if value is not None and not isinstance(value, bytes | bytearray | memoryview):
            raise DecodeError(f"dead letter header {name!r:.80} has a {type(value).__name__} value")
        out.append((name, None if value is None else bytes(value)))
    return out


def decode_dead_letter(record: ConsumerRecord[bytes, bytes]) -> DeadLetterView:
    """A dead letter as listed: never fails for a header's content (a missing or
    malformed field is ``None`` or shown escaped, with the reason in ``invalid``).

    DecodeError only for what cannot be listed at all: a record without a partition and
    offset, or headers that are not (name, bytes) pairs (Kafka never hands over such)."""
    partition, offset = getattr(record, "partition", None), getattr(record, "offset", None)
    if (type(partition) is not int or type(offset) is not int or not 0 <= partition < 2**31
            or not 0 <= offset < 2**63):
        raise DecodeError(f"not a Kafka record position: {partition!r:.40}:{offset!r:.40}")
    key = getattr(record, "key", None)
    if key is not None and not isinstance(key, bytes | bytearray):
        raise DecodeError(f"record key is a {type(key).__name__}, not bytes")
    dlq: dict[str, bytes | None] = {}
    for name, value in _headers(record):
        if name.startswith(_DLQ_PREFIX):
            dlq[name] = value  # the last one wins: the refusing service appends its own
    invalid: dict[str, str] = {}

    def header(name: str) -> bytes | None:
        value = dlq.get(name)
        if value is None:
            invalid[name] = "missing"
        return value

    raw_reason = header(H_DLQ_REASON)
    reason = _shown(raw_reason, MAX_REASON_BYTES)
    if raw_reason is not None:
        try:
            raw_reason.decode("utf-8")
        except UnicodeDecodeError:
            invalid[H_DLQ_REASON] = "not UTF-8 (shown escaped)"
    stage = _field(header(H_DLQ_STAGE), H_DLQ_STAGE, invalid, 40,
                   lambda s: s in STAGES, f"not a stage ({', '.join(STAGES)})")
    source = _field(header(H_DLQ_SOURCE), H_DLQ_SOURCE, invalid, _MAX_SOURCE_BYTES,
                    lambda s: _parse_source(s) is not None, "not topic:partition:offset")
    refused_by = _field(header(H_DLQ_REGION), H_DLQ_REGION, invalid, _MAX_REGION_BYTES,
                        _region_name, "not a region name")
    time_text = _field(header(H_DLQ_TIME), H_DLQ_TIME, invalid, 20,
                       lambda s: s.isdigit() and 0 < int(s) < _MAX_TIME_MS,
                       "not milliseconds since the epoch")
    reference = H_DLQ_TRUNCATED in dlq
    truncated = digest = None
    if reference:
        size = _field(dlq[H_DLQ_TRUNCATED], H_DLQ_TRUNCATED, invalid, 12, str.isdigit,
                      "not a size in bytes")
        truncated = int(size) if size is not None else None
        digest = _field(dlq.get(H_DLQ_DIGEST), H_DLQ_DIGEST, invalid, 64,
                        lambda s: len(s) == 64 and all(c in "0123456789abcdef" for c in s),
                        "not a BLAKE2b-256 hex digest")
    return DeadLetterView(
        partition=partition,
        offset=offset,
        key=None if key is None else _shown(bytes(key), _KEY_SHOWN),
        reason=reason,
        stage=stage,
        source=source,
        refused_by=refused_by,
        time_ms=int(time_text) if time_text is not None else None,
        record=record,
        truncated=truncated,
        digest=digest,
        invalid=invalid,
        reference=reference,
    )


def _region_name(text: str) -> bool:
    return bool(text) and all(c.isalnum() or c in "-_" for c in text)


def _field(
    raw: bytes | None, name: str, invalid: dict[str, str], limit: int, valid: Any, what: str
) -> str | None:
    """The header's ASCII text if ``valid(text)``, else None with the reason noted."""
    if raw is None:
        if name not in invalid:
            invalid[name] = "missing"
        return None
    text = _ascii(raw, limit)
    if text is not None and valid(text):
        return text
    invalid[name] = f"{_shown(raw, 60)!r}: {what}"
    return None


async def list_dead_letters(config: EdgeConfig, region: str) -> list[DeadLetterView]:
    """Every dead letter of ``region`` (partition, offset order)."""
    bootstrap = resolve_clusters(config)[region]
    views = []
    for record in await read_to_end(config.kafka, bootstrap, dlq_topic(region)):
        try:
            views.append(decode_dead_letter(record))
        except DecodeError as e:  # pragma: no cover - Kafka never hands such a record over
            log.warning("%s: dead letter %d:%d not listed: %s", region, record.partition,
                        record.offset, e)
    return views


# -- redrive -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RedrivePlan:
    """What redrive does with one letter: send ``headers`` to ``partition`` of the
    events topic (``why_not`` None), or refuse it (``why_not`` says why)."""

    letter: DeadLetterView
    why_not: str | None = None
    #: the applied-once marker: ``(dlq partition, dlq offset)`` of the record's first letter
    marker: tuple[int, int] | None = None
    partition: int | None = None
    headers: tuple[Header, ...] = ()
    #: a replicated copy's claimed origin position, checked before sending
    origin: tuple[str, int, int] | None = None

    def refused(self, why: str) -> RedrivePlan:
        return RedrivePlan(self.letter, why)


class _Groups:
    """Union-find over letter positions: the letters of one record."""

    def __init__(self) -> None:
        self.parent: dict[tuple[int, int], tuple[int, int]] = {}

    def find(self, x: tuple[int, int]) -> tuple[int, int]:
        root = x
        while self.parent.get(root, root) != root:
            root = self.parent[root]
        while x != root:  # path compression, iteratively
            self.parent[x], x = root, self.parent.get(x, x)
        return root

    def union(self, a: tuple[int, int], b: tuple[int, int]) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:  # the smaller position is the root: the record's first letter
            low, high = min(ra, rb), max(ra, rb)
            self.parent[high] = low


def _record_groups(letters: Sequence[DeadLetterView]) -> _Groups:
    """Letters of the same record: the same source, or a failed redrive's letter whose
    ``eb-redrive-of`` names a letter of the same key and value."""
    groups = _Groups()
    by_source: dict[str, tuple[int, int]] = {}
    by_position = {(d.partition, d.offset): d for d in letters}
    for d in letters:
        here = (d.partition, d.offset)
        groups.find(here)
        if d.source is not None:
            first = by_source.setdefault(d.source, here)
            groups.union(first, here)
        claims = [v for k, v in d.record.headers or () if k == H_REDRIVE_OF]
        if len(claims) != 1 or claims[0] is None:
            continue
        named = _parse_marker(claims[0])
        if named is None or named == here:
            continue
        other = by_position.get(named)
        if (other is not None and not other.reference and not d.reference
                and other.record.key == d.record.key and other.record.value == d.record.value):
            groups.union(named, here)
    return groups


def _parse_marker(raw: bytes) -> tuple[int, int] | None:
    text = _ascii(raw, 40)
    if text is None:
        return None
    partition, _, offset = text.partition(":")
    if partition.isdigit() and offset.isdigit() and len(partition) <= 10 and len(offset) <= 19:
        return int(partition), int(offset)
    return None


def plan_redrive(
    letters: Sequence[DeadLetterView],
    region: str,
    regions: Sequence[str],
    partitions: int,
    selected: Iterable[tuple[int, int]] | None = None,
) -> list[RedrivePlan]:
    """What redrive does with each selected letter (all when ``selected`` is None), in
    listing order; pure. ``letters`` is the whole dead-letter topic (the letters of one
    record are found among all of them)."""
    groups = _record_groups(letters)
    wanted = None if selected is None else set(selected)
    # the eb-txn of each record's letters (None: none; _MANY: more than one)
    txns: dict[tuple[int, int], set[bytes | None]] = {}
    for d in letters:
        values = [v for k, v in d.record.headers or () if k == _H_TXN]
        root = groups.find((d.partition, d.offset))
        txns.setdefault(root, set()).add(
            None if not values else values[0] if len(values) == 1 else _MANY
        )
    done: dict[tuple[int, int], str] = {}
    plans: list[RedrivePlan] = []
    for d in letters:
        here = (d.partition, d.offset)
        if wanted is not None and here not in wanted:
            continue
        root = groups.find(here)
        plan = _plan_one(d, root, region, regions, partitions, txns[root])
        if plan.why_not is None:
            if root in done:
                plan = plan.refused(f"another dead letter of the same record ({done[root]}) "
                                    "is redriven: one record, one redrive")
            else:
                done[root] = f"{d.partition}:{d.offset}"
        plans.append(plan)
    return plans


def _plan_one(
    d: DeadLetterView,
    root: tuple[int, int],
    region: str,
    regions: Sequence[str],
    partitions: int,
    txns: set[bytes | None],
) -> RedrivePlan:
    plan = RedrivePlan(d)
    if d.stage != "materialize":
        if d.stage == "replicate":
            return plan.refused("refused at the replication hop by compliance: fix the rules; "
                                "the replicator copies new events, it is never forced")
        if d.stage == "state":
            return plan.refused("a state-log record, not an event: it is not redriven")
        if d.stage == "participant":
            return plan.refused("a commit-log record, not an event: it is not redriven (the "
                                "commit log decides; a client may write again)")
        return plan.refused(f"its {H_DLQ_STAGE} header is {d.invalid.get(H_DLQ_STAGE)}: "
                            "only materialize-stage letters are redriven")
    if d.reference:
        where = d.source or "its source topic"
        return plan.refused(
            f"a reference letter: the record ({d.truncated} bytes) was too large to keep in "
            f"the dead-letter topic; it stays at {where} until that topic's retention "
            "removes it: read it there (e.g. `kcat -C -t TOPIC -p P -o OFFSET -c 1`), fix "
            "it and write it again"
        )
    source = d.source_position
    topic = events_topic(region)
    if source is None or source[0] != topic or source[1] >= partitions:
        return plan.refused(
            f"its {H_DLQ_SOURCE} ({d.source or d.invalid.get(H_DLQ_SOURCE)}) does not name a "
            f"record of {topic}: not a letter this region's materializer wrote"
        )
    kept: list[Header] = []
    origins: list[bytes | None] = []
    for name, value in d.record.headers or ():
        if name == _H_WATERMARK:
            return plan.refused("a watermark, not an event: the next heartbeat supersedes it")
        if name.startswith(_DLQ_PREFIX) or name == H_REDRIVE_OF or name in _NOT_EVENT_HEADERS:
            continue
        if name == _H_ORIGIN_POS:
            origins.append(value)
        if name == _H_TXN and (len(txns) != 1 or _MANY in txns):
            return plan.refused(f"the letters of this record disagree on {_H_TXN}, or carry "
                                "it more than once: not a strong commit's event edgebus wrote")
        kept.append((name, value))
    origin: tuple[str, int, int] | None = None
    if origins:
        claim = _origin(origins, region, regions, partitions, source[1])
        if isinstance(claim, str):
            return plan.refused(claim)
        origin = claim
    if len([k for k, _ in kept if k == "eb-deps"]) > 1:
        return plan.refused("it carries eb-deps more than once: not a record edgebus wrote")
    kept.append((H_REDRIVE_OF, f"{root[0]}:{root[1]}".encode("ascii")))
    return RedrivePlan(d, None, root, source[1], tuple(kept), origin)


def _origin(
    raws: list[bytes | None], region: str, regions: Sequence[str], partitions: int,
    partition: int,
) -> tuple[str, int, int] | str:
    """The claimed origin position of a replicated copy, or why it is refused."""
    if len(raws) != 1 or raws[0] is None:
        return f"it carries {_H_ORIGIN_POS} more than once: not a copy the replicator made"
    text = _ascii(raws[0], _MAX_SOURCE_BYTES) or ""
    origin, _, rest = text.partition(":")
    where, _, offset = rest.partition(":")
    bad = f"its {_H_ORIGIN_POS} {_shown(raws[0], 60)!r}"
    if not (where.isdigit() and offset.isdigit() and len(offset) <= 19):
        return f"{bad} is not region:partition:offset"
    if origin == region or origin not in regions:
        return f"{bad} names no other configured region: not a copy the replicator made"
    if int(where) != partition or int(where) >= partitions:
        return (f"{bad} names partition {where}, but the copy sits in partition {partition}: "
                "the replicator keeps partitions")
    return origin, int(where), int(offset)


async def redrive(
    config: EdgeConfig, region: str, positions: Iterable[tuple[int, int]] | None = None
) -> list[dict[str, Any]]:
    """Put dead letters (all materialize-stage ones, or those at ``positions``) back on
    the region's events topic; returns one result per letter (see the module docstring
    for what is refused and which headers go back)."""
    letters = await list_dead_letters(config, region)
    if positions is not None:
        positions = list(positions)
        found = {(d.partition, d.offset) for d in letters}
        missing = sorted(set(positions) - found)
        if missing:
            raise InvalidInput(
                "no dead letter at "
                + ", ".join(f"{p}:{o}" for p, o in missing)
                + f" in {dlq_topic(region)}: see `edgebus dlq list --region {region}`"
            )
    plans = plan_redrive(letters, region, config.regions, config.kafka.partitions, positions)
    plans = await _check_origins(config, plans)
    clusters = resolve_clusters(config)
    results: list[dict[str, Any]] = []
    producer: Producer | None = None
    try:
        for plan in plans:
            d = plan.letter
            if plan.why_not is not None:
                results.append({**d.to_dict(), "redriven": False, "why": plan.why_not})
                continue
            if producer is None:
                producer = await start_producer(config.kafka, clusters[region], "service",
                                                client_id=f"edgebus-dlq-redrive-{region}")
            meta = await producer.send_and_wait(
                events_topic(region),
                value=d.record.value,
                key=d.record.key,
                partition=plan.partition,
                headers=list(plan.headers),
            )
            assert plan.marker is not None
            results.append({
                **d.to_dict(), "redriven": True, "marker": f"{plan.marker[0]}:{plan.marker[1]}",
                "to": f"{meta.topic}:{meta.partition}:{meta.offset}",
            })
    finally:
        if producer is not None:
            await producer.stop()
    return results


async def _check_origins(config: EdgeConfig, plans: list[RedrivePlan]) -> list[RedrivePlan]:
    """Refuse the copies whose claimed origin offset is not below the end of the origin
    region's events topic (read now)."""
    claimed = {p.origin[0] for p in plans if p.why_not is None and p.origin is not None}
    if not claimed:
        return plans
    clusters = resolve_clusters(config)
    ends: dict[tuple[str, int], int] = {}
    unreachable: dict[str, str] = {}
    for origin in sorted(claimed):
        try:
            found = await end_offsets(config.kafka, clusters[origin], [events_topic(origin)])
        except EdgebusError as e:
            unreachable[origin] = str(e)
            continue
        ends.update({(origin, tp.partition): o for tp, o in found.items()})
    out = []
    for plan in plans:
        if plan.why_not is None and plan.origin is not None:
            origin, partition, offset = plan.origin
            if origin in unreachable:
                plan = plan.refused(f"cannot check its {_H_ORIGIN_POS} against "
                                    f"{events_topic(origin)}: {unreachable[origin]}")
            elif offset >= ends.get((origin, partition), 0):
                plan = plan.refused(
                    f"its {_H_ORIGIN_POS} {origin}:{partition}:{offset} lies beyond the end of "
                    f"{events_topic(origin)} partition {partition} "
                    f"({ends.get((origin, partition), 0)}): not a copy the replicator made"
                )
        out.append(plan)
    return out
