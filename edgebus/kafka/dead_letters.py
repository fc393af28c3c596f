"""Dead letters: records a region cannot apply or copy go to ``edgebus.R.dlq``.

A dead letter is the original record (same key, value and headers) plus reason
headers, so that ``edgebus dlq redrive`` can put it back unchanged once the cause is
fixed (a newer edgebus that knows its schema, a compliance rule corrected):

| header | value |
| --- | --- |
| ``eb-dlq-reason`` | UTF-8 text: why it was refused |
| ``eb-dlq-stage`` | ``materialize`` or ``replicate`` |
| ``eb-dlq-source`` | ``topic:partition:offset`` of the original record |
| ``eb-dlq-region`` | the region whose service refused it |
| ``eb-dlq-time`` | milliseconds since the epoch, ASCII |

``edgebus dlq list | redrive`` list them and put them back: redrive appends a dead
letter's original record, unchanged, back to ``edgebus.R.events`` with the header
``eb-redrive-of: <dlq partition>:<dlq offset>``.
The materializer applies a redriven record at most once (it remembers redriven dead
letters in the store, in the same transaction as their effect), so redriving twice,
or redriving after a crash, never applies a record twice. A record that still cannot be
applied goes back to the dead-letter topic as a new letter.

Only letters refused by the materializer (stage ``materialize``) are redriven; a copy
the replicator refused for compliance (stage ``replicate``) must not be forced into the
region: fix the compliance rules and the replicator's next copies flow again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import ConsumerRecord

from edgebus.config import EdgeConfig
from edgebus.errors import InvalidInput
from edgebus.kafka.clients import Producer, start_producer
from edgebus.kafka.clusters import resolve_clusters
from edgebus.kafka.reading import read_to_end
from edgebus.kafka.topics import dlq_topic, events_topic

__all__ = [
    "DLQ_HEADERS",
    "H_DLQ_REASON",
    "H_DLQ_REGION",
    "H_DLQ_SOURCE",
    "H_DLQ_STAGE",
    "H_DLQ_TIME",
    "H_REDRIVE_OF",
    "DeadLetterView",
    "dead_letter_headers",
    "list_dead_letters",
    "redrive",
    "send_dead_letters",
]

H_DLQ_REASON = "eb-dlq-reason"
H_DLQ_STAGE = "eb-dlq-stage"
H_DLQ_SOURCE = "eb-dlq-source"
H_DLQ_REGION = "eb-dlq-region"
H_DLQ_TIME = "eb-dlq-time"
DLQ_HEADERS = frozenset({H_DLQ_REASON, H_DLQ_STAGE, H_DLQ_SOURCE, H_DLQ_REGION, H_DLQ_TIME})
#: on a redriven record: ``<dlq partition>:<dlq offset>`` of the dead letter it came from
H_REDRIVE_OF = "eb-redrive-of"


def dead_letter_headers(
    record: ConsumerRecord[bytes, bytes], reason: str, stage: str, region: str
) -> list[tuple[str, bytes]]:
    """The original headers (minus older dead-letter headers) plus this refusal's."""
    kept = [(k, v) for k, v in (record.headers or ()) if k not in DLQ_HEADERS]
    return [
        *kept,
        (H_DLQ_REASON, reason.encode("utf-8")[:2000]),
        (H_DLQ_STAGE, stage.encode("ascii")),
        (H_DLQ_SOURCE, f"{record.topic}:{record.partition}:{record.offset}".encode("ascii")),
        (H_DLQ_REGION, region.encode("ascii")),
        (H_DLQ_TIME, str(int(time.time() * 1000)).encode("ascii")),
    ]


async def send_dead_letters(
    producer: Producer,
    dlq_region: str,
    letters: Iterable[tuple[ConsumerRecord[bytes, bytes], str, str]],
    refused_by: str,
) -> int:
    """Append ``(record, reason, stage)`` letters to ``edgebus.<dlq_region>.dlq`` and wait
    for Kafka's acknowledgement (the caller commits its position only after)."""
    topic = dlq_topic(dlq_region)
    futures = [
        await producer.send(
            topic,
            value=record.value,
            key=record.key,
            headers=dead_letter_headers(record, reason, stage, refused_by),
        )
        for record, reason, stage in letters
    ]
    if futures:
        await asyncio.gather(*futures)
    return len(futures)

@dataclass(frozen=True)
class DeadLetterView:
    """One dead letter as ``edgebus dlq list`` shows it."""

    partition: int
    offset: int
    key: str | None
    reason: str
    stage: str
    source: str
    refused_by: str
    time_ms: int
    record: ConsumerRecord[bytes, bytes]

    @property
    def source_position(self) -> tuple[str, int, int] | None:
        """``(topic, partition, offset)`` of the original record, if the header parses."""
        topic, _, rest = self.source.rpartition(":")
        topic, _, partition = topic.rpartition(":")
        if topic and partition.isdigit() and rest.isdigit():
            return topic, int(partition), int(rest)
        return None

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
        }


def _view(record: ConsumerRecord[bytes, bytes]) -> DeadLetterView:
    headers: dict[str, bytes] = {k: bytes(v) for k, v in record.headers or ()}

    def text(name: str) -> str:
        return headers.get(name, b"").decode("utf-8", "replace")

    return DeadLetterView(
        partition=record.partition,
        offset=record.offset,
        key=None if record.key is None else record.key.decode("utf-8", "backslashreplace"),
        reason=text(H_DLQ_REASON),
        stage=text(H_DLQ_STAGE),
        source=text(H_DLQ_SOURCE),
        refused_by=text(H_DLQ_REGION),
        time_ms=int(text(H_DLQ_TIME) or 0),
        record=record,
    )


async def list_dead_letters(config: EdgeConfig, region: str) -> list[DeadLetterView]:
    """Every dead letter of ``region`` (partition, offset order)."""
    bootstrap = resolve_clusters(config)[region]
    return [_view(r) for r in await read_to_end(config.kafka, bootstrap, dlq_topic(region))]


async def redrive(
    config: EdgeConfig, region: str, positions: Iterable[tuple[int, int]] | None = None
) -> list[dict[str, Any]]:
    """Put dead letters (all materialize-stage ones, or those at ``positions``) back on
    the region's events topic; returns one result per letter."""
    letters = await list_dead_letters(config, region)
    if positions is not None:
        wanted = set(positions)
        found = {(d.partition, d.offset) for d in letters}
        missing = sorted(wanted - found)
        if missing:
            raise InvalidInput(
                "no dead letter at "
                + ", ".join(f"{p}:{o}" for p, o in missing)
                + f" in {dlq_topic(region)}: see `edgebus dlq list --region {region}`"
            )
        letters = [d for d in letters if (d.partition, d.offset) in wanted]
    bootstrap = resolve_clusters(config)[region]
    producer = await start_producer(config.kafka, bootstrap, "service",
                                    client_id=f"edgebus-dlq-redrive-{region}")
    results: list[dict[str, Any]] = []
    sources: set[str] = set()
    try:
        for d in letters:
            if d.source in sources:
                # a region that crashed between dead-lettering and committing refuses the
                # same record again on restart: one record, one redrive
                results.append({**d.to_dict(), "redriven": False,
                                "why": f"another dead letter of the same record {d.source}"})
                continue
            sources.add(d.source)
            if d.stage != "materialize":
                results.append(
                    {**d.to_dict(), "redriven": False,
                     "why": "refused at the replication hop by compliance: fix the rules; "
                            "the replicator copies new events, it is never forced"}
                )
                continue
            headers = [
                (k, v) for k, v in (d.record.headers or ())
                if k not in DLQ_HEADERS and k != H_REDRIVE_OF
            ]
            headers.append((H_REDRIVE_OF, f"{d.partition}:{d.offset}".encode("ascii")))
            source = d.source_position
            meta = await producer.send_and_wait(
                events_topic(region),
                value=d.record.value,
                key=d.record.key,
                partition=None if source is None else source[1],
                headers=headers,
            )
            results.append(
                {**d.to_dict(), "redriven": True, "to": f"{meta.topic}:{meta.partition}:"
                 f"{meta.offset}"}
            )
    finally:
        await producer.stop()
    return results

