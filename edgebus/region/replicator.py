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
is added). Copying goes on. The copies are made by :class:`~edgebus.region.copier.Copier`,
which a repair's one-shot catch-up (:mod:`edgebus.region.catch_up`, ``edgebus repair``)
shares: both make the same copies with the same headers.

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
from typing import Any

from aiokafka import TopicPartition

from edgebus.config import EdgeConfig
from edgebus.kafka.clients import Consumer, Producer
from edgebus.kafka.dead_letters import send_dead_letters
from edgebus.kafka.topics import events_topic
from edgebus.region.copier import Copier, Refusal, copy_decision
from edgebus.region.counters import Counters
from edgebus.region.membership import ExclusiveMember, start_exclusive_consumer
from edgebus.region.offset_commits import OffsetCommitter

__all__ = ["Replicator", "ReplicatorStats", "copy_decision"]

#: batches whose copies may await acknowledgement while the next ones are copied
MAX_BATCHES_IN_FLIGHT = 4


class ReplicatorStats(Counters):
    """What the replicator did: records seen, copied, refused (dead letters), watermarks."""

    def __init__(self) -> None:
        self.seen = 0
        self.copied = 0
        self.refused = 0
        self.watermarks = 0


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
        self.target_producer = target_producer
        self.origin_producer = origin_producer
        self.origin_topic = events_topic(origin)
        self.target_topic = events_topic(target)
        self.stats = ReplicatorStats()
        self.paused = False
        #: makes the copies (and watermarks) that a repair's catch-up makes too
        self.copier = Copier(origin, target, config, target_producer)

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
        refused: list[Refusal] = []
        for tp in sorted(batch, key=lambda t: (t.topic, t.partition)):
            self.stats.seen += len(batch[tp])
            sent = await self.copier.copy_records(tp.partition, batch[tp])
            futures.extend(sent.futures)
            refused.extend(sent.refused)
            self.stats.copied += sent.copied
            self.stats.watermarks += sent.watermarks
        if refused:  # dead letters in the origin's own topic: the origin may hold them
            futures.append(
                asyncio.ensure_future(
                    send_dead_letters(self.origin_producer, self.origin, refused, self.target)
                )
            )
            self.stats.refused += len(refused)
        return futures
