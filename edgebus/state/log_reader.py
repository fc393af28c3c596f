"""A state host's reading of the state logs: consumers, folding, dead letters.

The host reads the log of every class its region may hold (one consumer per cluster),
from its saved positions (or the first offset), and folds every record into the
:class:`~edgebus.core.state_machine.StateObject` of its state, so each is a warm
standby. What a folded record means for this host (a request to run, its claim read
back, another owner) is the host's to act on: :class:`LogReader` hands every folded
record to its ``on_folded`` callback. A record that is not a state-log record, or one no
host may fold (both refused by the decoder, as every reader refuses them:
:func:`edgebus.wire.state_log.record_refusal`), or one whose fold or handling fails, is
not folded and goes to the dead-letter topic of the log's home region (by the
home region's hosts only; every host counts it in ``rejected_records``), and the host
reads on. Letters are sent before the positions move past their records, while catching
up as well, so a restarted host may send a letter again (at least once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping

from aiokafka import ConsumerRecord, TopicPartition

from edgebus.core.state_machine import StateLogRecord, StateObject
from edgebus.errors import DecodeError
from edgebus.kafka.clients import Consumer
from edgebus.kafka.clusters import resolve_clusters
from edgebus.kafka.dead_letters import send_dead_letters
from edgebus.kafka.reading import seek_to_first, topic_partitions
from edgebus.state.log import home_region, read_record, start_consumer
from edgebus.state.owned import Folds, HostContext, HostPart, Key
from edgebus.state.poison import STAGE, transient

__all__ = ["LogReader", "OnFolded"]

log = logging.getLogger("edgebus.state")

#: called with each folded record: (key, its fold, the record, its append time, whether
#: the fold changed anything)
OnFolded = Callable[[Key, StateObject, StateLogRecord, int, bool], None]
_Letter = tuple[ConsumerRecord[bytes, bytes], str, str]


class LogReader(HostPart):
    """Reads the state logs of a host's classes and folds them into its ``folds``."""

    def __init__(self, host: HostContext, folds: Folds, on_folded: OnFolded) -> None:
        super().__init__(host)
        self.consumers: list[Consumer] = []
        self._folds = folds
        self._on_folded = on_folded

    # -- opening -------------------------------------------------------------------------
    async def open(self) -> dict[TopicPartition, int]:
        """Start a consumer per cluster, positioned at the saved positions (else the
        first offsets); return the partitions' end offsets."""
        ends: dict[TopicPartition, int] = {}
        for bootstrap, topics in self._topics_by_cluster().items():
            consumer = await start_consumer(self.config, bootstrap,
                                            f"{self.host_id}-state-read")
            self.consumers.append(consumer)
            ends.update(await self._assign(consumer, topics))
        return ends

    def _topics_by_cluster(self) -> dict[str, list[str]]:
        clusters = resolve_clusters(self.config)
        by_bootstrap: dict[str, list[str]] = {}
        for topic, data_class in self._folds.topic_class.items():
            bootstrap = clusters[home_region(self.config, data_class)]
            by_bootstrap.setdefault(bootstrap, []).append(topic)
        return by_bootstrap

    async def _assign(self, consumer: Consumer, topics: list[str]
                      ) -> dict[TopicPartition, int]:
        tps = await topic_partitions(consumer, topics)
        consumer.assign(tps)
        fresh = [tp for tp in tps if tp not in self._folds.positions]
        await seek_to_first(consumer, fresh)
        for tp in tps:
            if tp in self._folds.positions:
                consumer.seek(tp, self._folds.positions[tp])
        return dict(await consumer.end_offsets(tps))

    async def close(self) -> None:
        """Stop the consumers (failures are ignored)."""
        for consumer in self.consumers:
            with contextlib.suppress(Exception):
                await consumer.stop()
        self.consumers.clear()

    # -- reading -------------------------------------------------------------------------
    async def catch_up(self, ends: Mapping[TopicPartition, int]) -> None:
        """Fold every partition up to ``ends`` (before the host serves)."""
        remaining = {tp: end for tp, end in ends.items() if self._folds.positions.get(tp, 0) < end}
        while remaining:
            for consumer in self.consumers:
                batch = await consumer.getmany(timeout_ms=200, max_records=5000)
                await self._fold_batch(batch)
            remaining = {tp: end for tp, end in remaining.items()
                         if self._folds.positions.get(tp, 0) < end}

    async def read(self, consumer: Consumer) -> None:
        """Fold what ``consumer`` reads, until cancelled."""
        while True:
            await self._fold_batch(await consumer.getmany(timeout_ms=500, max_records=2000))

    async def _fold_batch(self, batch: Mapping[TopicPartition,
                                               list[ConsumerRecord[bytes, bytes]]]) -> None:
        """Fold every record of ``batch`` and move past it; dead-letter the refused ones
        (those of the logs whose home is this region) before the positions are saved."""
        letters: list[_Letter] = []
        for records in batch.values():
            for record in records:
                reason = self.fold(record)
                if reason is not None and self._home_of(record.topic) == self.region:
                    letters.append((record, reason, STAGE))
        if letters:
            await self.dead_letter(letters)
        for tp, records in batch.items():
            if records:
                self._folds.positions[tp] = records[-1].offset + 1

    def fold(self, record: ConsumerRecord[bytes, bytes]) -> str | None:
        """Fold one record; why it was refused (then it is not folded), or ``None``."""
        try:
            state_id, rec = read_record(record)
        except DecodeError as e:  # no record, or one no host may fold
            return self._refused(record, f"refused when read: {e}")
        key = (self._folds.topic_class[record.topic], state_id)
        obj = self._folds.objects.get(key)
        if obj is None:
            obj = self._folds.objects[key] = StateObject(state_id)
        append_ms = int(record.timestamp)
        try:
            new = obj.fold(rec, append_ms)
        except Exception as e:  # no check foresaw it; the fold may be partial
            self._folds.dirty.add(key)
            return self._refused(record, f"folding it failed: {type(e).__name__}: {e}")
        self._folds.dirty.add(key)
        try:
            self._on_folded(key, obj, rec, append_ms, new)
        except Exception as e:
            return self._refused(record, f"folded, but the host failed to act on it: "
                                         f"{type(e).__name__}: {e}")
        return None

    def _refused(self, record: ConsumerRecord[bytes, bytes], reason: str) -> str:
        self._counters["rejected_records"] += 1
        log.error("%s: state log %s %d:%d refused: %s", self.region, record.topic,
                  record.partition, record.offset, reason[:500])
        return reason

    # -- dead letters --------------------------------------------------------------------
    def _home_of(self, topic: str) -> str | None:
        data_class = self._folds.topic_class.get(topic)
        return None if data_class is None else home_region(self.config, data_class)

    async def dead_letter(self, letters: list[_Letter]) -> None:
        """Send ``letters`` (records of one state log) to this region's dead-letter
        topic, on this region's own cluster (the log may be on its home region's);
        transient trouble is retried, anything else logged."""
        for attempt in range(1, 1_000_000):
            try:
                producer = await self._writer.region_producer(self.region)
                self._counters["dead_letters"] += await send_dead_letters(
                    producer, self.region, letters, self.region)
                return
            except asyncio.CancelledError:
                raise
            except Exception as e:
                if not transient(e):
                    log.error("%s: could not dead-letter %d state-log records: %r",
                              self.region, len(letters), e)
                    return
                log.warning("%s: %d dead letters not sent (%s), attempt %d; retrying",
                            self.region, len(letters), e, attempt)
                await asyncio.sleep(min(5.0, 0.2 * attempt))
