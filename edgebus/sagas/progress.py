"""The saga progress log: ``edgebus.<log region>.sagas``, keyed by saga id.

One saga's records share a partition (its key), oldest first; the runner appends each
record and waits for Kafka's acknowledgement (idempotent producer, ``acks=all``)
before it acts on it. :class:`ProgressLog` reads the topic into an index of sagas
(:class:`SagaLog`: a saga's records and their fold), up to the end offsets of the
moment it is asked, and appends records.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from edgebus.config import EdgeConfig
from edgebus.core.saga import SagaBegun, SagaState, Step, recover
from edgebus.errors import (
    DecodeError,
    InfrastructureUnavailable,
    InvalidInput,
    TopicLayoutMismatch,
    WriteFailed,
)
from edgebus.kafka.clients import Consumer, Producer, reader, start_producer
from edgebus.kafka.clusters import resolve_clusters
from edgebus.kafka.reading import seek_to_first, topic_partitions
from edgebus.kafka.topics import ensure_topics, saga_progress_topic
from edgebus.wire.saga_progress import ProgressEntry, decode_progress, encode_progress

__all__ = ["Definition", "ProgressLog", "SagaLog"]

log = logging.getLogger("edgebus.sagas")


@dataclass(frozen=True, slots=True)
class Definition:
    """What a saga's SagaBegun record holds: its name, input and steps."""

    name: str
    context: Any
    steps: tuple[Step, ...]


@dataclass
class SagaLog:
    """One saga's records as read from the topic (oldest first), and its fold."""

    entries: list[ProgressEntry] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    state: SagaState | None = None  #: ``None``: not folded since the last record

    @property
    def begun(self) -> Definition | None:
        """The saga's definition, from its first record (``None``: not a SagaBegun)."""
        first = self.entries[0] if self.entries else None
        if first is None or not isinstance(first.record, SagaBegun):
            return None
        return Definition(first.name, first.context, first.record.saga.steps)

    def fold(self) -> SagaState | None:
        """The saga's state (cached), or ``None`` when its log cannot be read."""
        if self.problems:
            return None
        if self.state is None:
            try:
                self.state = recover(e.record for e in self.entries)
            except InvalidInput as e:  # no SagaBegun first: the log is damaged or cut
                self.problems.append(str(e))
                return None
        return self.state


class ProgressLog:
    """The progress topic of ``config``'s sagas: an index of every saga in it, and
    appends. ``writer_id`` names the writer in its client id."""

    def __init__(self, config: EdgeConfig, writer_id: str) -> None:
        self.config = config
        self.writer_id = writer_id
        self.topic = saga_progress_topic(config.strong_log_region)
        self.bootstrap = resolve_clusters(config)[config.strong_log_region]
        #: saga id -> its records, in the order read
        self.sagas: dict[str, SagaLog] = {}
        self._stack: contextlib.AsyncExitStack | None = None
        self._producer: Producer | None = None
        self._consumer: Consumer | None = None
        self._tps: list[TopicPartition] = []
        self._next: dict[TopicPartition, int] = {}
        self._read_lock = asyncio.Lock()

    @property
    def started(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._stack is not None

    async def start(self) -> None:
        """Connect to the log's cluster; create the progress topic if missing."""
        if self._stack is not None:
            return
        stack = contextlib.AsyncExitStack()
        try:
            kafka = self.config.kafka
            consumer = await stack.enter_async_context(reader(kafka, self.bootstrap))
            self._tps = await self._ensure_topic(consumer)
            consumer.assign(self._tps)
            await seek_to_first(consumer, self._tps)
            firsts = await consumer.beginning_offsets(self._tps)
            self._next = {tp: int(firsts[tp]) for tp in self._tps}
            producer = await start_producer(
                kafka, self.bootstrap, "log", client_id=f"edgebus-saga-runner-{self.writer_id}",
                what="the saga progress log's Kafka",
            )
            stack.push_async_callback(producer.stop)
        except KafkaError as e:
            await stack.aclose()
            raise InfrastructureUnavailable(
                f"cannot read the saga log {self.topic}: {e}", [self.bootstrap]
            ) from e
        except BaseException:
            await stack.aclose()
            raise
        self._consumer, self._producer, self._stack = consumer, producer, stack

    async def stop(self) -> None:
        """Disconnect."""
        stack, self._stack = self._stack, None
        self._consumer = self._producer = None
        if stack is not None:
            await stack.aclose()

    async def _ensure_topic(self, consumer: Consumer) -> list[TopicPartition]:
        """The progress topic's partitions, creating it with ``kafka.partitions`` if
        missing. An existing topic is used whatever its partition count: a saga's
        records share one partition (the key), which is all its order needs."""
        tps = await topic_partitions(consumer, [self.topic])
        if tps:
            return tps
        kafka = self.config.kafka
        try:
            await ensure_topics(kafka, self.bootstrap, [self.topic])
        except TopicLayoutMismatch:
            # created meanwhile by another process with another partition count
            if not await topic_partitions(consumer, [self.topic]):
                raise
        for _ in range(50):
            tps = await topic_partitions(consumer, [self.topic])
            if tps:
                return tps
            await asyncio.sleep(0.1)
        raise InfrastructureUnavailable(
            f"the saga progress topic {self.topic} did not appear after it was created",
            [self.bootstrap],
        )

    async def append(self, entry: ProgressEntry) -> None:
        """Append one record and wait for Kafka's acknowledgement (acks=all)."""
        value = encode_progress(entry)
        try:
            assert self._producer is not None, "start() first"
            await self._producer.send_and_wait(
                self.topic, value=value, key=entry.saga_id.encode("utf-8")
            )
        except KafkaError as e:
            raise WriteFailed(
                f"saga {entry.saga_id!r}: Kafka did not acknowledge its {entry.type} record "
                f"on {self.topic} ({self.bootstrap}): {e}. Nothing after it was done; once "
                "Kafka answers, resume the saga (resume / resume_all) to finish it."
            ) from e

    async def catch_up(self) -> None:
        """Read every record appended since the last call (up to the end offsets of
        now) into the in-memory index of sagas."""
        consumer = self._consumer
        assert consumer is not None
        async with self._read_lock:
            stall_s = max(self.config.kafka.connect_timeout_s, 5.0)
            try:
                ends = await consumer.end_offsets(self._tps)
                remaining = {tp: int(end) for tp, end in ends.items() if self._next[tp] < end}
                progress = time.monotonic()
                while remaining:
                    batch = await consumer.getmany(*remaining, timeout_ms=500)
                    for tp, records in batch.items():
                        for record in records:
                            self._next[tp] = record.offset + 1
                            self._index(record)
                        if records:
                            progress = time.monotonic()
                        if tp in remaining and self._next[tp] >= remaining[tp]:
                            del remaining[tp]
                    if remaining and time.monotonic() - progress > stall_s:
                        raise InfrastructureUnavailable(
                            f"reading the saga log {self.topic} stalled for {stall_s:.0f} s "
                            f"({len(remaining)} partitions not read to their end)",
                            [self.bootstrap],
                        )
            except KafkaError as e:
                raise InfrastructureUnavailable(
                    f"cannot read the saga log {self.topic}: {e}", [self.bootstrap]
                ) from e

    def _index(self, record: ConsumerRecord[bytes, bytes]) -> None:
        key = record.key.decode("utf-8", "replace") if record.key else None
        try:
            entry = decode_progress(record.value)
        except DecodeError as e:
            where = f"partition {record.partition} offset {record.offset}: {e}"
            log.warning("saga log %s, %s", self.topic, where)
            if key is not None:  # the saga it belongs to cannot be rebuilt: leave it as is
                self.sagas.setdefault(key, SagaLog()).problems.append(where)
            return
        recorded = self.sagas.setdefault(entry.saga_id, SagaLog())
        recorded.entries.append(entry)
        recorded.state = None

    def recorded_state(self, saga_id: str, recorded: SagaLog) -> SagaState:
        state = recorded.fold()
        if state is None:
            raise DecodeError(
                f"saga {saga_id!r}: its log in {self.topic} cannot be read "
                f"({'; '.join(recorded.problems)}); it is left as is"
            )
        return state

    def known(self, saga_id: str) -> SagaLog:
        recorded = self.sagas.get(saga_id)
        if recorded is None:
            raise InvalidInput(
                f"no saga {saga_id!r} in the saga log {self.topic} on {self.bootstrap}: "
                "list_sagas() shows the known ones"
            )
        return recorded

