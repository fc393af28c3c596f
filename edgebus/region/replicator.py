"""The replicator: pushes this region's events to the other regions that may hold them.

Replication is decided at the origin (invariant 7). Region A's service runs one
replicator per other region B: a consumer of A's own ``edgebus.A.events`` (group
``edgebus.A.replicator.B``, on A's cluster) and a producer into ``edgebus.B.events`` on
B's cluster. B never reads A's topic, so B's processes, principal and cluster never
receive a record B may not hold; with the least-privilege ACLs of ``edgebus kafka
acls`` B's principal is denied reading it (``docs/security.md`` argues this design
against pulling and against per-target topics). A record is copied to B when it

- was *written* in A (no ``eb-origin-pos`` header and ``eb-origin`` equal to A): copies
  of copies are never made, so an event is copied only from its origin, once per
  placement region, and never back (no loops); a redriven dead letter
  (``eb-redrive-of``) is not copied either: the other regions decided on the original;
- names B in its placement, in the headers and in the body alike;
- compliance (B's zones) allows in B: by its label, and by its content, classified
  again here (:mod:`edgebus.wire.content_check`: a label only adds to what detection
  finds, unless its writer declassified it, a record that then travels with the copy).

A copy keeps the key, value and headers byte for byte, goes to the same partition
number (all events topics have one partition count), and gains ``eb-origin-pos``
(``A:partition:offset``); with tracing on, a ``traceparent`` header names the copy's
``edgebus.replicate`` span instead of the writer's (edgebus.tracing). A's heartbeats
(``eb-watermark``) are pushed the same way, and when a batch of a partition ends with
A's events that were not copied (placed elsewhere), a *replicator watermark* at the
last one's position follows, so B's frontier for that stream passes them at once
(:mod:`edgebus.wire.watermark`). An event the filter refuses although its placement
names B goes to A's own dead-letter topic with the reason (A may hold it; B may not);
so does a record that cannot be copied on its own (too large once the origin position
is added). Copying goes on.

B checks every origin position it reads against the end offsets of A's topic, which
it reads (a Describe, never a Read) when a copy lies past what it knew
(:class:`~edgebus.region.record_checks.SourceEnds`).

Order: records are copied in origin order by an idempotent producer, so per
(origin, partition) order holds in B. Delivery is at-least-once: A's offsets are
committed after B acknowledged the copies; after a crash some copies are made twice,
and B's materializer skips them by origin position (the origin frontier). A target
whose cluster is down stalls only its own replicator. Pausing replication into B
(``edgebus region pause-replication``) pauses the replicators that push to B, in
every origin's service.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import MessageSizeTooLargeError

from edgebus.config import EdgeConfig
from edgebus.core.placement import ComplianceRules
from edgebus.errors import EdgebusError
from edgebus.kafka.clients import Consumer, Producer
from edgebus.kafka.dead_letters import H_REDRIVE_OF, send_dead_letters
from edgebus.kafka.topics import events_topic
from edgebus.region.counters import Counters
from edgebus.region.membership import ExclusiveMember, start_exclusive_consumer
from edgebus.region.offset_commits import OffsetCommitter
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

__all__ = ["Replicator", "ReplicatorStats", "copy_decision"]

log = logging.getLogger("edgebus.region")

#: batches whose copies may await acknowledgement while the next ones are copied
MAX_BATCHES_IN_FLIGHT = 4


class ReplicatorStats(Counters):
    """What the replicator did: records seen, copied, refused (dead letters), watermarks."""

    def __init__(self) -> None:
        self.seen = 0
        self.copied = 0
        self.refused = 0
        self.watermarks = 0


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


def _is_origin_event(record: ConsumerRecord[bytes, bytes], source: str) -> bool:
    """An event written in ``source`` (not a copy, not a watermark)."""
    origin = None
    for name, raw in record.headers or ():
        if name in (H_ORIGIN_POS, H_WATERMARK):
            return False
        if name == H_ORIGIN:
            origin = raw
    return origin is not None and origin.decode("ascii", "replace") == source


class Replicator(ExclusiveMember):
    """Pushes ``origin``'s events that ``target`` may hold into ``target``'s topic."""

    def __init__(
        self,
        origin: str,
        target: str,
        origin_bootstrap: str,
        config: EdgeConfig,
        target_producer: Producer,
        origin_producer: Producer,
    ) -> None:
        self.origin = origin
        self.target = target
        self.origin_bootstrap = origin_bootstrap
        self.config = config
        self.rules = config.compliance.rules()
        self.content = ContentCheck.of(config)
        self.target_producer = target_producer
        self.origin_producer = origin_producer
        self.origin_topic = events_topic(origin)
        self.target_topic = events_topic(target)
        self.stats = ReplicatorStats()
        self.paused = False
        #: ``edgebus.replicate`` spans (monitoring.trace_enabled), else None
        self._tracer = tracer_for(config, f"edgebus-region-{origin}")

    async def start(self) -> None:
        """Join group ``edgebus.<origin>.replicator.<target>`` on the origin's cluster."""
        self._consumer, self._membership = await start_exclusive_consumer(
            self.config.kafka,
            self.origin_bootstrap,
            f"edgebus.{self.origin}.replicator.{self.target}",
            f"edgebus-{self.origin}-replicator-{self.target}",
            [self.origin_topic],
            f"the {self.origin} replicator to {self.target}",
        )

    async def run(self) -> None:
        """Copy forever (cancel to stop).

        Pipelined: a batch's copies are sent, then the next batch is fetched while they
        are acknowledged; an acknowledger task waits for each batch's acks in order and
        only then notes its source offsets for the (background) commit. At most
        ``MAX_BATCHES_IN_FLIGHT`` batches are unacknowledged.
        """
        assert self._consumer is not None, "call start() first"
        consumer = self._consumer
        committer = self._committer = OffsetCommitter(consumer)
        in_flight: asyncio.Queue[tuple[list[asyncio.Future[Any]], dict[Any, int]]]
        in_flight = asyncio.Queue(MAX_BATCHES_IN_FLIGHT)

        async def acknowledge() -> None:
            while True:
                futures, offsets = await in_flight.get()
                await asyncio.gather(*futures)
                committer.note(offsets)
                in_flight.task_done()

        acker = asyncio.ensure_future(acknowledge())
        try:
            while True:
                self._apply_pause(consumer)
                batch = await self._membership.fetch(consumer, timeout_ms=200, max_records=5000)
                if acker.done():
                    acker.result()  # a failed acknowledgement stops the replicator
                if batch and self.paused:  # paused while fetching: read it again later
                    for tp, records in batch.items():
                        consumer.seek(tp, records[0].offset)
                    continue
                if batch:
                    futures = await self.copy_batch(batch)
                    offsets = {tp: records[-1].offset + 1 for tp, records in batch.items()}
                    await in_flight.put((futures, offsets))
        finally:
            acker.cancel()
            await asyncio.gather(acker, return_exceptions=True)

    def _apply_pause(self, consumer: Consumer) -> None:
        assigned = consumer.assignment()
        if self.paused:
            consumer.pause(*assigned)
        elif consumer.paused():
            consumer.resume(*consumer.paused())

    async def copy_batch(self, batch: dict[TopicPartition, list[Any]]) -> list[asyncio.Future[Any]]:
        """Send one batch's copies (and refusals' dead letters), in order; returns the
        futures of their acknowledgements."""
        futures: list[asyncio.Future[Any]] = []
        refused: list[tuple[Any, str, str]] = []
        copied = 0
        source = self.origin
        for tp in sorted(batch, key=lambda t: (t.topic, t.partition)):
            hole = None  # the last origin event not copied, if no copy follows it
            for record in batch[tp]:
                self.stats.seen += 1
                copy, refusal = copy_decision(record, source, self.target, self.rules, self.content)
                if copy:
                    future, refusal = await self._copy(record, source, tp.partition)
                    if future is not None:
                        futures.append(future)
                        copied += 1
                    copy = refusal is None
                if copy:
                    hole = None
                elif _is_origin_event(record, source):
                    hole = record.offset
                if refusal is not None:
                    refused.append((record, refusal, "replicate"))
                    log.warning(
                        "refused to copy %s:%d:%d to %s: %s",
                        tp.topic,
                        tp.partition,
                        record.offset,
                        self.target,
                        refusal,
                    )
            if hole is not None:  # origin events placed elsewhere: let the frontier pass
                futures.append(await self._send_watermark(source, tp.partition, hole))
        self.stats.copied += copied
        if refused:  # dead letters in the origin's own topic: the origin may hold them
            futures.append(
                asyncio.ensure_future(
                    send_dead_letters(self.origin_producer, source, refused, self.target)
                )
            )
            self.stats.refused += len(refused)
        return futures

    async def _copy(
        self, record: ConsumerRecord[bytes, bytes], source: str, partition: int
    ) -> tuple[asyncio.Future[Any] | None, str | None]:
        """Send the copy of ``record``: its acknowledgement, or why it cannot be sent."""
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
            future: asyncio.Future[Any] = await self.target_producer.send(
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

    async def _send_watermark(
        self, source: str, partition: int, offset: int
    ) -> asyncio.Future[Any]:
        self.stats.watermarks += 1
        value = encode_watermark(Watermark(source, partition, None, REPLICATOR))
        headers = [
            (H_WATERMARK, REPLICATOR.encode("ascii")),
            (H_ORIGIN, source.encode("ascii")),
            (H_ORIGIN_POS, f"{source}:{partition}:{offset}".encode("ascii")),
        ]
        future: asyncio.Future[Any] = await self.target_producer.send(
            self.target_topic, value=value, key=None, partition=partition, headers=headers
        )
        return future
