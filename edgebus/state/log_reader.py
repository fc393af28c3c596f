"""A state host's reading of the state logs: consumers, folding, dead letters.

The host reads the log of every class its region may hold (one consumer per cluster),
from its saved positions (or the first offset), and folds every record into the
:class:`~edgebus.core.state_machine.StateObject` of its state, so each is a warm
standby. What a folded record means for this host (a request to run, its claim read
back, another owner) is the host's to act on: :class:`LogReader` hands every folded
record to its ``on_folded`` callback. A record that is not a state-log record goes to
the dead-letter topic of the log's home region (by the home region's hosts only).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping

from aiokafka import ConsumerRecord, TopicPartition

from edgebus.core.state_machine import StateLogRecord, StateObject
from edgebus.kafka.clients import Consumer
from edgebus.kafka.clusters import resolve_clusters
from edgebus.kafka.dead_letters import send_dead_letters
from edgebus.kafka.reading import seek_to_first, topic_partitions
from edgebus.state.log import decode_record, home_region, start_consumer
from edgebus.state.owned import Folds, HostContext, HostPart, Key

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
                for tp, records in batch.items():
                    for record in records:
                        self.fold(record)
                    if records:
                        self._folds.positions[tp] = records[-1].offset + 1
            remaining = {tp: end for tp, end in remaining.items()
                         if self._folds.positions.get(tp, 0) < end}

    async def read(self, consumer: Consumer) -> None:
        """Fold what ``consumer`` reads, until cancelled; dead-letter what is not a
        state-log record (in the logs whose home is this region)."""
        while True:
            batch = await consumer.getmany(timeout_ms=500, max_records=2000)
            letters: list[_Letter] = []
            for tp, records in batch.items():
                for record in records:
                    if not self.fold(record) and self._home_of(record.topic) == self.region:
                        letters.append((record, "not a state-log record", "state"))
                if records:
                    self._folds.positions[tp] = records[-1].offset + 1
            if letters:
                await self._dead_letter(letters)

    def fold(self, record: ConsumerRecord[bytes, bytes]) -> bool:
        """Fold one record; False for a record that is not a state-log record."""
        decoded = decode_record(record)
        if decoded is None:
            self._counters["rejected_records"] += 1
            return False
        state_id, rec = decoded
        key = (self._folds.topic_class[record.topic], state_id)
        obj = self._folds.objects.get(key)
        if obj is None:
            obj = self._folds.objects[key] = StateObject(state_id)
        append_ms = int(record.timestamp)
        new = obj.fold(rec, append_ms)
        self._folds.dirty.add(key)
        self._on_folded(key, obj, rec, append_ms, new)
        return True

    # -- dead letters --------------------------------------------------------------------
    def _home_of(self, topic: str) -> str | None:
        data_class = self._folds.topic_class.get(topic)
        return None if data_class is None else home_region(self.config, data_class)

    async def _dead_letter(self, letters: list[_Letter]) -> None:
        data_class = self._folds.topic_class[letters[0][0].topic]
        producer = await self._writer.producer(data_class)
        try:
            self._counters["dead_letters"] += await send_dead_letters(
                producer, self.region, letters, self.region)
        except Exception as e:
            log.error("%s: could not dead-letter %d state-log records: %r", self.region,
                      len(letters), e)
