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
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

from aiokafka import AIOKafkaProducer, ConsumerRecord

from edgebus.kafka.topics import dlq_topic

__all__ = [
    "DLQ_HEADERS",
    "H_DLQ_REASON",
    "H_DLQ_REGION",
    "H_DLQ_SOURCE",
    "H_DLQ_STAGE",
    "H_DLQ_TIME",
    "dead_letter_headers",
    "send_dead_letters",
]

H_DLQ_REASON = "eb-dlq-reason"
H_DLQ_STAGE = "eb-dlq-stage"
H_DLQ_SOURCE = "eb-dlq-source"
H_DLQ_REGION = "eb-dlq-region"
H_DLQ_TIME = "eb-dlq-time"
DLQ_HEADERS = frozenset({H_DLQ_REASON, H_DLQ_STAGE, H_DLQ_SOURCE, H_DLQ_REGION, H_DLQ_TIME})


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
    producer: AIOKafkaProducer,
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
