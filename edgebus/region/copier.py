"""Copying an origin region's records into another region's topic: what the replicator
(:mod:`edgebus.region.replicator`, continuously) and a catch-up
(:mod:`edgebus.region.catch_up`, once, for a repair) share, so that both make the same
copies, with the same headers, for the same reasons.

:func:`copy_decision` says whether a record of the origin's own topic goes to the target
(only the origin's own events placed there that compliance lets in, by label and by
content). :meth:`Copier.copy_records` sends the copies of one partition's records in
origin order: key, value and headers byte for byte, the same partition number, plus
``eb-origin-pos`` (``origin:partition:offset``); with tracing on, a ``traceparent`` naming
the copy's ``edgebus.replicate`` span instead of the writer's. When the records end with
origin events that were not copied (placed elsewhere, refused), a *replicator watermark*
at the last one's position follows, so the target's frontier for that stream passes
them at once (:mod:`edgebus.wire.watermark`). Refusals are returned for the caller to
dead-letter in the origin's own topic (the origin may hold them; the target may not).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import ConsumerRecord
from aiokafka.errors import MessageSizeTooLargeError

from edgebus.config import EdgeConfig
from edgebus.core.placement import ComplianceRules
from edgebus.errors import EdgebusError
from edgebus.kafka.clients import Producer
from edgebus.kafka.dead_letters import H_REDRIVE_OF
from edgebus.kafka.topics import events_topic
from edgebus.tracing import SpanKind, attributes, parent_of, tracer_for, with_traceparent
from edgebus.wire.content_check import ContentCheck, content_refusal
from edgebus.wire.event_reader import read_event
from edgebus.wire.headers import (
    H_CLASS,
    H_DECLASSIFIED,
    H_ORIGIN,
    H_ORIGIN_POS,
    H_PLACEMENT,
    H_TXN,
)
from edgebus.wire.watermark import H_WATERMARK, REPLICATOR, Watermark, encode_watermark

__all__ = ["CopiedRecords", "Copier", "Refusal", "copy_decision", "is_origin_event"]

log = logging.getLogger("edgebus.region")

#: a record the target may not hold although its placement names it: (record, reason,
#: stage), as :func:`~edgebus.kafka.dead_letters.send_dead_letters` takes it
Refusal = tuple[ConsumerRecord[bytes, bytes], str, str]


def copy_decision(
    record: ConsumerRecord[bytes, bytes],
    source_region: str,
    target: str,
    rules: ComplianceRules,
    content: ContentCheck = ContentCheck(),
) -> tuple[bool, str | None]:
    """``(copy, refusal)``: whether to copy a record of ``source_region``'s topic to
    ``target``; ``refusal`` is set when the record names ``target`` but must not go
    there (a dead letter for the origin). Compliance is checked by the label, then by
    the payload's content (:func:`content_refusal`)."""
    headers = dict(record.headers or ())
    if H_ORIGIN_POS in headers:
        return False, None  # a copy: only origins are copied from
    if H_TXN in headers:
        return False, None  # a strong commit: every participant writes its own
    if H_REDRIVE_OF in headers:
        # a dead letter put back into its own region: every other region decided on
        # the original when it was copied (or refused), so a copy could apply it twice
        return False, None
    origin, placement, classes = (headers.get(h) for h in (H_ORIGIN, H_PLACEMENT, H_CLASS))
    if H_WATERMARK in headers:  # the origin's heartbeat: every region gets it
        return origin is not None and origin.decode("ascii", "replace") == source_region, None
    if origin is None or placement is None or origin.decode("ascii", "replace") != source_region:
        return False, None  # not an edgebus origin event: the origin's materializer judges it
    regions = placement.decode("ascii", "replace").split(",")
    if target not in regions:
        return False, None
    try:
        event = read_event(record.value)
    except EdgebusError as e:
        return False, f"cannot decode an event placed in {target}: {e}"
    if target not in event.placement or event.origin_region != source_region:
        return False, f"headers place it in {target} but its body does not"
    header_classes = tuple(c for c in (classes or b"").decode("ascii", "replace").split(",") if c)
    if tuple(sorted(header_classes)) != tuple(sorted(event.classification)):
        return False, "classification headers differ from the body's"
    if not rules.allowed_regions((target,), event.classification):
        return False, (
            f"compliance does not allow {', '.join(event.classification) or 'public'} data "
            f"in {target} (zones required: "
            f"{', '.join(rules.zones_required(event.classification)) or 'none'})"
        )
    refusal = content_refusal(event, headers.get(H_DECLASSIFIED), target, rules, content)
    return refusal is None, refusal


def is_origin_event(record: ConsumerRecord[bytes, bytes], source: str) -> bool:
    """An event written in ``source`` (not a copy, not a watermark)."""
    origin = None
    for name, raw in record.headers or ():
        if name in (H_ORIGIN_POS, H_WATERMARK):
            return False
        if name == H_ORIGIN:
            origin = raw
    return origin is not None and origin.decode("ascii", "replace") == source


@dataclass
class CopiedRecords:
    """What :meth:`Copier.copy_records` sent for one partition's records."""

    #: the acknowledgements of the copies and of the watermark, in order
    futures: list[asyncio.Future[Any]] = field(default_factory=list)
    #: records the target may not hold, for the origin's dead-letter topic
    refused: list[Refusal] = field(default_factory=list)
    copied: int = 0
    watermarks: int = 0
    #: the highest origin offset of the partition that the target's frontier for this
    #: stream reaches once these copies (or the watermark) are applied; None: none
    reach: int | None = None


class Copier:
    """Sends copies of ``origin``'s records that ``target`` may hold into ``target``'s
    events topic through ``producer`` (a producer on ``target``'s cluster)."""

    def __init__(self, origin: str, target: str, config: EdgeConfig, producer: Producer) -> None:
        self.origin = origin
        self.target = target
        self.rules = config.compliance.rules()
        self.content = ContentCheck.of(config)
        self.producer = producer
        self.origin_topic = events_topic(origin)
        self.target_topic = events_topic(target)
        #: ``edgebus.replicate`` spans (monitoring.trace_enabled), else None
        self._tracer = tracer_for(config, f"edgebus-region-{origin}")

    async def copy_records(
        self, partition: int, records: Sequence[ConsumerRecord[bytes, bytes]]
    ) -> CopiedRecords:
        """Send the copies of ``records`` (one partition's, in offset order) that the
        target may hold, then a replicator watermark if they end with origin events
        that were not copied; refusals are logged and returned, not sent."""
        out = CopiedRecords()
        source = self.origin
        hole = None  # the last origin event not copied, if no copy follows it
        for record in records:
            copy, refusal = copy_decision(record, source, self.target, self.rules, self.content)
            if copy:
                future, refusal = await self.copy(record, partition)
                if future is not None:
                    out.futures.append(future)
                    out.copied += 1
                    out.reach = record.offset
                copy = refusal is None
            if copy:
                hole = None
            elif is_origin_event(record, source):
                hole = record.offset
            if refusal is not None:
                out.refused.append((record, refusal, "replicate"))
                log.warning(
                    "refused to copy %s:%d:%d to %s: %s",
                    self.origin_topic, partition, record.offset, self.target, refusal,
                )
        if hole is not None:  # origin events placed elsewhere: let the frontier pass
            out.futures.append(await self.watermark(partition, hole))
            out.watermarks += 1
            out.reach = hole
        return out

    async def copy(
        self, record: ConsumerRecord[bytes, bytes], partition: int
    ) -> tuple[asyncio.Future[Any] | None, str | None]:
        """Send the copy of ``record``: its acknowledgement, or why it cannot be sent."""
        source = self.origin
        origin_pos = f"{source}:{partition}:{record.offset}".encode("ascii")
        headers = [*(record.headers or ()), (H_ORIGIN_POS, origin_pos)]
        span = None
        if self._tracer is not None and (parent := parent_of(record.headers)) is not None:
            span = self._tracer.start_span(
                "edgebus.replicate",
                context=parent,
                kind=SpanKind.PRODUCER,
                attributes=attributes(
                    region=source, target=self.target, partition=partition,
                    offset=record.offset,
                ),
            )
            headers = with_traceparent(headers, span)
        try:
            future: asyncio.Future[Any] = await self.producer.send(
                self.target_topic,
                value=record.value,
                key=record.key,
                partition=partition,
                headers=headers,
            )
        except MessageSizeTooLargeError as e:
            if span is not None:
                span.end()
            return None, (
                f"the copy is too large for {self.target_topic} ({e}); raise the "
                "producers' and brokers' size limits, or write smaller values"
            )
        if span is not None:  # ended when the target acknowledged the copy
            done = span
            future.add_done_callback(lambda _: done.end())
        return future, None

    async def watermark(self, partition: int, offset: int) -> asyncio.Future[Any]:
        """Send a replicator watermark at ``offset`` of the origin's ``partition``: the
        target's frontier for that stream passes every origin event up to it."""
        source = self.origin
        value = encode_watermark(Watermark(source, partition, None, REPLICATOR))
        headers = [
            (H_WATERMARK, REPLICATOR.encode("ascii")),
            (H_ORIGIN, source.encode("ascii")),
            (H_ORIGIN_POS, f"{source}:{partition}:{offset}".encode("ascii")),
        ]
        future: asyncio.Future[Any] = await self.producer.send(
            self.target_topic, value=value, key=None, partition=partition, headers=headers
        )
        return future
