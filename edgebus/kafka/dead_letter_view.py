"""Reading dead letters: ``edgebus dlq list`` and what redrive reads.

Untrusted. Every header of a dead letter is input, whoever wrote it (a forged letter,
or a writer's record whose own headers imitate edgebus's): :func:`decode_dead_letter`
lists any record, showing a field it cannot read (a time that is not a number, a reason
that is not UTF-8, a malformed source, an unknown stage) as invalid instead of failing.
The headers are those of :mod:`edgebus.kafka.dead_letters`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiokafka import ConsumerRecord

from edgebus.config import EdgeConfig
from edgebus.errors import DecodeError
from edgebus.kafka.clusters import resolve_clusters
from edgebus.kafka.dead_letters import (
    _DLQ_PREFIX,
    H_DLQ_DIGEST,
    H_DLQ_REASON,
    H_DLQ_REGION,
    H_DLQ_SOURCE,
    H_DLQ_STAGE,
    H_DLQ_TIME,
    H_DLQ_TRUNCATED,
    MAX_REASON_BYTES,
    STAGES,
)
from edgebus.kafka.reading import read_to_end
from edgebus.kafka.topics import dlq_topic

__all__ = ["DeadLetterView", "decode_dead_letter", "list_dead_letters"]

log = logging.getLogger(__name__)

#: what a listing shows of a key, in characters
_KEY_SHOWN = 256
_MAX_SOURCE_BYTES = 300
_MAX_REGION_BYTES = 249
#: times past this (year 2286) are not milliseconds since the epoch of any real letter
_MAX_TIME_MS = 10**13


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
