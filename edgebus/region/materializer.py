"""The regional materializer: ``edgebus.R.events`` -> the region's store.

A consumer in group ``edgebus.R.materializer`` reads batches (``getmany``); each batch
is folded by :class:`~edgebus.region.applier.BatchApplier`, its dead letters are sent
to ``edgebus.R.dlq`` and acknowledged, then the new states *and* the next offsets are
committed in one store transaction. The store's positions are the truth: on start
(and on every partition assignment) the consumer seeks to them, so a crash at any
point neither loses nor doubles an effect. Before that, the store is checked against
the broker (:mod:`edgebus.region.store_check`): a store built from another Kafka is
rebuilt from the topic (or, with ``on_store_mismatch="refuse"``, the service stops).
Offsets are also committed to the Kafka group afterwards, only so that standard tools
(``kafka-consumer-groups``) show lag.

Causal delivery: an event whose dependencies are not applied here yet waits in the
applier's causal gate (with the rest of its stream). The gate is bounded in events
(``replication.max_causal_buffer``) and in bytes (``replication.max_causal_buffer_bytes``):
past a bound the materializer stops fetching every partition except those the blocked
streams wait for, logs an error naming what they wait for, and resumes once the buffer
has drained to half. An event that waits longer than
``replication.dependency_timeout_ms`` is dead-lettered, and its stream flows again.

Poison pills: a record that cannot be decoded, checked or folded is dead-lettered by
the applier. When the store refuses a batch as a whole (a value SQLite cannot hold),
the batch is applied again in halves until the one record at fault is found; it is
dead-lettered with the store's reason and the rest is applied. Only a failure of Kafka
or of the store itself (it refuses even that record's dead-letter commit) stops the
service.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from connectors.base import Store
from edgebus.config import EdgeConfig
from edgebus.core.causality import FrontierView
from edgebus.errors import InfrastructureUnavailable, WriteFailed
from edgebus.kafka.clients import Consumer, Producer
from edgebus.kafka.dead_letters import send_dead_letters
from edgebus.kafka.reading import AlignedBatches, seek_to_first
from edgebus.kafka.topics import events_topic
from edgebus.region.applier import AppliedEvent, BatchApplier
from edgebus.region.apply_spans import trace_applied
from edgebus.region.counters import Counters
from edgebus.region.membership import ExclusiveMember, start_exclusive_consumer
from edgebus.region.offset_commits import OffsetCommitter
from edgebus.region.record_checks import EndsOutdated, RecordChecks, SourceEnds
from edgebus.region.store_check import OnStoreMismatch, check_store, settle
from edgebus.tracing import tracer_for

__all__ = ["Materializer", "MaterializerStats"]

log = logging.getLogger("edgebus.region")

#: records per getmany: large enough to amortize a store transaction
MAX_BATCH_RECORDS = 5000


class MaterializerStats(Counters):
    """What the materializer did: batches and events read, events applied, duplicates
    skipped, dead letters sent; when, and the causal buffer (events held for their
    dependencies: now, at most, and how often it was full)."""

    def __init__(self) -> None:
        self.batches = 0
        self.events = 0
        self.applied = 0
        self.duplicates = 0
        self.dead_letters = 0
        self.last_batch_at = 0.0
        self.started_at = time.time()
        self.causal_buffered = 0
        self.causal_buffered_bytes = 0
        self.causal_buffer_peak = 0
        self.causal_buffer_full = 0
        #: batches the store refused as a whole, split in halves to find the record
        self.poison_batches = 0


@dataclass(slots=True)
class _Flight:
    """A fed batch: its records, the applier's checkpoint before it, its fold, the
    gate's frontier after it, its commit's task and the store's refusal, if any."""

    records: list[Any]
    checkpoint: Any
    result: Any
    view: FrontierView | None
    task: asyncio.Future[None] | None = None
    error: Exception = field(default_factory=lambda: Exception("not refused"))
    #: the store took the batch (a failure after that is no refusal: nothing is redone)
    committed: bool = False
    #: when its fold began (time.time_ns): the start of its ``edgebus.apply`` spans
    started_ns: int = 0


class Materializer(ExclusiveMember):
    """Consumes one region's events topic into its store until stopped."""

    def __init__(
        self,
        region: str,
        config: EdgeConfig,
        bootstrap: str,
        store: Store,
        producer: Producer,
        on_store_mismatch: OnStoreMismatch = "rebuild",
        source_ends: SourceEnds | None = None,
    ) -> None:
        self.region = region
        self.on_store_mismatch = on_store_mismatch
        #: partition -> end offset to reach while the store is rebuilt (None: not)
        self.rebuilding: dict[int, int] | None = None
        self._mismatch: BaseException | None = None
        #: held while a batch is applied and while an assignment seeks
        self._seeking = asyncio.Lock()
        self._seeks = 0  #: assignments seen: a batch fetched before one is dropped
        #: batches across the partitions, cut at a common timestamp
        self._aligned = AlignedBatches()
        #: the fed batch whose commit runs now, and one the store refused
        self._inflight: _Flight | None = None
        self._failed: _Flight | None = None
        self._progress_logged = 0.0
        self.config = config
        self.bootstrap = bootstrap
        self.store = store
        self.producer = producer
        self.topic = events_topic(region)
        self.source_ends = source_ends if source_ends is not None else SourceEnds()
        self.applier = BatchApplier(
            region, config.compliance.rules(), store,
            checks=RecordChecks.live(config, region, self.source_ends),
        )
        self.applier.before_read = self._before_read
        #: ``edgebus.apply`` spans (monitoring.trace_enabled), else None
        self._tracer = tracer_for(config, f"edgebus-region-{region}")
        self.stats = MaterializerStats()
        self.positions: dict[int, int] = {}  # partition -> next offset (committed)
        self._listeners: list[Callable[[list[AppliedEvent]], None]] = []
        self._position_waiters: list[tuple[dict[int, int], asyncio.Future[None]]] = []
        self._frontier_waiters: list[asyncio.Future[None]] = []
        self.max_buffer = config.replication.max_causal_buffer
        self.max_buffer_bytes = config.replication.max_causal_buffer_bytes
        self.buffer_full = False
        #: the frontier as of the last committed batch: what reads rely on
        self.view = FrontierView.empty()

    def on_applied(self, listener: Callable[[list[AppliedEvent]], None]) -> None:
        """Call ``listener(events)`` after each committed batch (same event loop)."""
        self._listeners.append(listener)

    async def start(self) -> None:
        """Check the store against the broker, then connect and join the region's
        consumer group (positions from the store)."""
        await self._checked_positions()
        self._consumer, self._membership = await start_exclusive_consumer(
            self.config.kafka,
            self.bootstrap,
            f"edgebus.{self.region}.materializer",
            f"edgebus-{self.region}-materializer",
            [self.topic],
            f"the {self.region} materializer",
            self._seek,
        )

    async def _checked_positions(self) -> None:
        """The store's positions, once the store is known to be built from this Kafka
        (or wiped for a rebuild)."""
        check = await check_store(self.store, self.config.kafka, self.bootstrap, self.topic)
        if await settle(self.store, check, self.on_store_mismatch, self.region):
            self.rebuilding = {p: o for p, o in check.ends.items() if o > 0} or None
            self.view = FrontierView.empty()
            self.positions = {}
            return
        self.positions = check.positions

    async def _seek(self, tps: list[TopicPartition]) -> None:
        # never beside a batch being applied: the check reads the store's positions, and
        # a rebuild wipes the store; a batch fetched before this seek is dropped
        async with self._seeking:
            self._seeks += 1
            await self._seek_now(tps)

    async def _seek_now(self, tps: list[TopicPartition]) -> None:
        if self._consumer is None:
            return
        try:  # the stored positions must include the batch in flight
            await self.flush()
        except Exception as e:  # raised by run(), not into aiokafka's listener
            self._mismatch = e
            return
        # buffered records lie at or after the stored positions: they are read again
        self.applier.forget()
        self._aligned.forget()
        try:
            await self._checked_positions()
        except InfrastructureUnavailable as e:
            # the broker is back but not all there yet (a restart): the store was
            # checked at start; resume from its positions and check again next time
            log.warning("%s: could not check the store against the broker now (%s); "
                        "resuming from its positions", self.region, e)
            stored = await self.store.positions()
            self.positions = {p: o for (t, p), o in stored.items() if t == self.topic}
        except Exception as e:  # raised by run(), not into aiokafka's listener
            self._mismatch = e
            return
        await seek_to_first(self._consumer, [tp for tp in tps if tp.partition not in
                                             self.positions])
        for tp in tps:
            offset = self.positions.get(tp.partition)
            if offset is not None:
                self._consumer.seek(tp, offset)
        log.info("%s: materializing partitions %s", self.region, [tp.partition for tp in tps])

    @staticmethod
    def _assigned(consumer: Consumer) -> list[TopicPartition]:
        return sorted(consumer.assignment(), key=lambda tp: tp.partition)

    async def run(self) -> None:
        """Consume, fold, commit; forever (cancel to stop)."""
        assert self._consumer is not None, "call start() first"
        consumer = self._consumer
        committer = self._committer = OffsetCommitter(consumer)
        while True:
            seeks = self._seeks
            batch = await self._membership.fetch(
                consumer, timeout_ms=200, max_records=MAX_BATCH_RECORDS, aligned=self._aligned
            )
            if self._mismatch is not None:
                raise self._mismatch
            if not batch:
                if self.applier.ready_to_expire():  # a buffered event waited too long
                    async with self._seeking:
                        if seeks == self._seeks:
                            await self.apply_batch([])
                self._backpressure(consumer)
                continue
            async with self._seeking:
                if seeks != self._seeks:
                    # a seek landed during the fetch: part of the batch was read before
                    # it, part after it (the consumer has moved past those): drop the
                    # batch and put the consumer back at the stored positions
                    await self._seek_now(self._assigned(consumer))
                    continue
                positions = self.positions
                # a record below the committed position was applied (or dead-lettered)
                # already: aiokafka may hand it over twice around a (re)assignment's seek
                records = [
                    r for tp in sorted(batch, key=lambda t: t.partition) for r in batch[tp]
                    if r.offset >= positions.get(tp.partition, 0)
                ]
                if not records:
                    continue
                self.source_ends.begin_batch()
                await self.feed(records)
            # informational only (the store is the truth), so off the data path
            committer.note({tp: self.positions[tp.partition] for tp in batch
                            if tp.partition in self.positions})
            self._backpressure(consumer)

    async def feed(self, records: list[Any]) -> None:
        """Fold one batch while the previous one commits (the pipeline), then start its
        commit and return: the store's transaction runs on its database thread while
        the caller fetches and folds the next batch.

        The previous commit is awaited before this one starts (commits keep their
        order) and before any store read of the fold (:attr:`BatchApplier.before_read`);
        its batch is accounted for (positions, the frontier reads rely on, waiters,
        listeners) as soon as it is committed, by the commit's own task. When the store
        refuses the previous batch, this batch's fold is void: the applier is rolled
        back to before the previous batch, which is applied again in halves
        (:meth:`apply_batch`), then this one.
        """
        applier = self.applier
        started_ns = time.time_ns()
        checkpoint, result = await self._fold(records, None)
        view = applier.current_gate.view() if applier.current_gate is not None else None
        if not await self._settled():
            flight = self._failed
            assert flight is not None
            self._failed = None
            applier.rollback(flight.checkpoint)
            await self._halve(flight.records, flight.error)
            await self.apply_batch(records)
            return
        try:
            if result.dead:
                await self._dead_letters(result.dead)
        except BaseException:
            applier.forget()
            raise
        flight = _Flight(records, checkpoint, result, view, started_ns=started_ns)
        flight.task = asyncio.ensure_future(self._commit(flight))
        self._inflight = flight

    async def _commit(self, flight: _Flight) -> None:
        """The commit of a fed batch, and its accounting once committed."""
        await self.store.commit(flight.result.changes)
        flight.committed = True
        self._committed(flight.records, flight.result, flight.view, flight.started_ns)

    async def _settled(self) -> bool:
        """Wait for the batch in flight, if any: True when it committed (or none was in
        flight), False when the store refused it (:attr:`_failed` holds it); a failure of
        Kafka or of the store itself is raised (the applier forgets what it folded)."""
        flight, self._inflight = self._inflight, None
        if flight is None or flight.task is None:
            return True
        try:  # shielded: a stopping service lets the commit finish (stop() waits for it)
            await asyncio.shield(flight.task)
        except (asyncio.CancelledError, InfrastructureUnavailable, WriteFailed, KafkaError):
            self.applier.forget()
            raise
        except Exception as e:
            if flight.committed:  # the batch is stored; what failed came after (a listener)
                self.applier.forget()
                raise
            flight.error = e
            self._failed = flight
            return False
        return True

    async def flush(self) -> None:
        """Wait until the batch in flight is committed and accounted for (a batch the
        store refuses is applied again in halves)."""
        if not await self._settled():
            flight = self._failed
            assert flight is not None
            self._failed = None
            self.applier.rollback(flight.checkpoint)
            await self._halve(flight.records, flight.error)

    async def _before_read(self) -> None:
        """The applier reads the store: the batch in flight must be in it (or failed)."""
        flight = self._inflight
        if flight is not None and flight.task is not None and not flight.task.done():
            await asyncio.wait({flight.task})

    async def stop(self) -> None:
        """Let the batch in flight commit, then leave the group."""
        flight = self._inflight
        if flight is not None and flight.task is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait({flight.task}, timeout=30)
        await super().stop()

    async def apply_batch(
        self, records: list[Any], poison: dict[tuple[int, int], str] | None = None
    ) -> None:
        """Fold, dead-letter, commit one batch, after the batch in flight (no pipeline);
        a batch the store refuses is applied again in halves until the record at fault
        is found and dead-lettered."""
        await self.flush()
        applier = self.applier
        checkpoint = applier.checkpoint()
        started_ns = time.time_ns()
        try:
            checkpoint, result = await self._fold(records, poison)
            if result.dead:
                await self._dead_letters(result.dead)
            await self.store.commit(result.changes)
        except (asyncio.CancelledError, InfrastructureUnavailable, WriteFailed, KafkaError):
            applier.forget()
            raise
        except Exception as e:
            if poison is not None or not records:  # the store refuses even the letter
                applier.forget()
                raise
            applier.rollback(checkpoint)
            await self._halve(records, e)
            return
        self._committed(records, result, None, started_ns)

    async def _fold(
        self, records: list[Any], poison: dict[tuple[int, int], str] | None
    ) -> tuple[Any, Any]:
        """The applier's fold of ``records`` and the checkpoint before it; a copy past
        what this region knows of its origin's topic end has that end read again
        first (once per region and batch), then the batch is folded again."""
        while True:
            checkpoint = self.applier.checkpoint()
            try:
                return checkpoint, await self.applier.apply(records, poison=poison)
            except EndsOutdated as outdated:
                self.applier.rollback(checkpoint)
                await self.source_ends.refresh(outdated.region)

    async def _halve(self, records: list[Any], error: Exception) -> None:
        """The store refused ``records`` as one batch: apply each half on its own, down
        to the one record at fault, which is dead-lettered with the store's reason."""
        if len(records) == 1:
            r = records[0]
            reason = f"the store refused it: {type(error).__name__}: {error!s:.400}"
            log.error("%s: %s:%d:%d: %s", self.region, r.topic, r.partition, r.offset, reason)
            await self.apply_batch(records, poison={(r.partition, r.offset): reason})
            return
        log.warning("%s: the store refused a batch of %d records (%s); applying it in "
                    "halves to find the record at fault", self.region, len(records), error)
        self.stats.poison_batches += 1
        middle = len(records) // 2
        await self.apply_batch(records[:middle])
        await self.apply_batch(records[middle:])

    async def _dead_letters(self, dead: list[Any]) -> None:
        await send_dead_letters(
            self.producer, self.region, ((d.record, d.reason, d.stage) for d in dead),
            self.region,
        )
        for d in dead[:20]:
            log.warning("%s: dead letter %s:%d:%d: %s", self.region, d.record.topic,
                        d.record.partition, d.record.offset, d.reason)
        if len(dead) > 20:
            log.warning("%s: %d more dead letters in this batch (edgebus dlq list)",
                        self.region, len(dead) - 20)

    def _committed(
        self,
        records: list[Any],
        result: Any,
        view: FrontierView | None = None,
        started_ns: int = 0,
    ) -> None:
        """Account for a committed batch: positions, counters, waiters, spans; ``view``:
        the gate's frontier right after the batch's fold (a fold ahead of it may have
        moved the gate since); ``started_ns``: when its fold began."""
        if self._tracer is not None:
            trace_applied(self._tracer, self.region, records, started_ns or time.time_ns())
        for (topic, partition), offset in result.changes.positions.items():
            if topic == self.topic:
                self.positions[partition] = offset
        stats = self.stats
        stats.batches += 1
        stats.events += len(records)
        stats.applied += len(result.applied)
        stats.duplicates += result.duplicates
        stats.dead_letters += len(result.dead)
        stats.last_batch_at = time.time()
        if self.rebuilding is not None:
            self._rebuild_progress()
        gate = self.applier.current_gate
        if view is not None:  # reads rely on what is committed now
            self.view = view
        elif gate is not None:
            self.view = gate.view()
        if gate is not None:
            stats.causal_buffered = gate.pending
            stats.causal_buffered_bytes = gate.pending_bytes
            stats.causal_buffer_peak = max(stats.causal_buffer_peak, gate.pending)
        for listener in self._listeners:
            listener(result.applied)
        self._wake_position_waiters()
        if result.released:
            waiters, self._frontier_waiters = self._frontier_waiters, []
            for future in waiters:
                if not future.done():
                    future.set_result(None)

    def rebuild_progress(self) -> dict[str, int] | None:
        """While the store is rebuilt: events applied so far and to reach."""
        if self.rebuilding is None:
            return None
        done = sum(min(self.positions.get(p, 0), end) for p, end in self.rebuilding.items())
        return {"applied": done, "target": sum(self.rebuilding.values())}

    def _rebuild_progress(self) -> None:
        progress = self.rebuild_progress()
        if progress is None:
            return
        if progress["applied"] >= progress["target"]:
            self.rebuilding = None
            log.warning("%s: store rebuilt from %s (%d events)", self.region, self.topic,
                        progress["target"])
        elif time.monotonic() - self._progress_logged >= 2.0:
            self._progress_logged = time.monotonic()
            log.warning("%s: rebuilding the store: %d of %d events (%.0f%%)", self.region,
                        progress["applied"], progress["target"],
                        100 * progress["applied"] / max(1, progress["target"]))

    async def frontier_moved(self, timeout_s: float) -> None:
        """Wait until the next batch moves the frontier (or ``timeout_s`` passes)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._frontier_waiters.append(future)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(future, timeout_s)

    def _backpressure(self, consumer: Consumer) -> None:
        gate = self.applier.current_gate
        if gate is None:
            return
        if gate.pending > self.max_buffer or gate.pending_bytes > self.max_buffer_bytes:
            blocked = gate.blocked()
            needed = {stream[1] for _, missing in blocked.values() for stream in missing}
            assigned = consumer.assignment()
            consumer.pause(*(tp for tp in assigned if tp.partition not in needed))
            consumer.resume(*(tp for tp in assigned if tp.partition in needed))
            if not self.buffer_full:
                self.buffer_full = True
                self.stats.causal_buffer_full += 1
                waits = "; ".join(
                    f"{r}:{p} at {o} waits for "
                    + ", ".join(f"{mr}:{mp}>={mo}" for (mr, mp), mo in missing.items())
                    for (r, p), (o, missing) in list(blocked.items())[:5]
                )
                log.error(
                    "%s: causal buffer full (%d events, %d bytes wait for their "
                    "dependencies; bounds replication.max_causal_buffer=%d, "
                    "replication.max_causal_buffer_bytes=%d): fetching only partitions %s "
                    "until it drains. Waiting: %s. Check that the regions named are running "
                    "and replicating (edgebus status).",
                    self.region, gate.pending, gate.pending_bytes, self.max_buffer,
                    self.max_buffer_bytes, sorted(needed), waits,
                )
        elif (self.buffer_full and gate.pending <= self.max_buffer // 2
              and gate.pending_bytes <= self.max_buffer_bytes // 2):
            self.buffer_full = False
            consumer.resume(*consumer.paused())
            log.warning("%s: causal buffer drained (%d events): fetching every partition",
                        self.region, gate.pending)

    async def wait_for_positions(self, targets: dict[int, int], timeout_s: float) -> None:
        """Wait until every partition's committed position reaches its target offset."""
        if self._covers(targets):
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (targets, future)
        self._position_waiters.append(entry)
        try:
            await asyncio.wait_for(future, timeout_s)
        finally:
            with contextlib.suppress(ValueError):
                self._position_waiters.remove(entry)

    def _covers(self, targets: dict[int, int]) -> bool:
        return all(self.positions.get(p, 0) >= o for p, o in targets.items())

    def _wake_position_waiters(self) -> None:
        for targets, future in list(self._position_waiters):
            if not future.done() and self._covers(targets):
                future.set_result(None)
