"""This region's staged strong-write payloads, as its participant reads them.

A strong write's data is staged in each participant region R's own topic
``edgebus.R.staged`` on R's cluster (:mod:`edgebus.core.staged_write`), so the commit
log never holds it. :class:`StagedPayloads` follows that topic for R's participant:

* A tail consumer reads every partition from :data:`LOOKBACK_MS` before the
  participant started (so a restarted participant finds the payloads of the votes it
  still owes in memory) and keeps each transaction's *first* valid staged write, by
  transaction id. A record that is no staged write (not a ``StagedWrite``, not under its
  transaction id, not on that id's partition) is dead-lettered to
  ``edgebus.R.dlq`` (stage ``participant``) and the tail reads on.
* Memory is bounded: the payloads held take at most :data:`MAX_HELD_BYTES` (past it the
  oldest are dropped from memory, their position kept, and read again by position when
  needed), at most :data:`MAX_ENTRIES` transactions are remembered, a staged write no
  BEGIN claimed is forgotten once its deadline passed (plus the allowed clock drift), a
  claimed one when the participant is done with its transaction (:meth:`forget`) or
  :data:`~edgebus.core.commit_log.RETENTION_MS` past its deadline.
* :meth:`wait_for` is what a vote waits on. An honest writer's staged records are
  acknowledged before it appends the BEGIN, so once the participant has read the BEGIN,
  the staged record lies below the staged partition's end offset as read then: the wait
  ends when the tail has read up to there (the payload is then known, or missing), or
  at the transaction's deadline. A payload the tail did not see (older than its start,
  or forgotten) is searched for in the partition from its BEGIN's time on (the record's
  Kafka timestamp is the BEGIN's ``time_ms``). A missing payload is a reason, never an
  exception: the participant votes no with it.
* :meth:`fetch` is what applying a COMMIT reads: memory, else by position, else the
  search (a participant restarted after it voted yes).

The tail runs in a task of its own; waiting for a payload never holds up the
participant's loop (it waits in a task of its own too).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aiokafka import ConsumerRecord, TopicPartition

from edgebus.commit.poison import MAX_TIMEOUT_MS, DeadLetters, transient
from edgebus.config import EdgeConfig
from edgebus.core.commit_log import RETENTION_MS, BeginRecord
from edgebus.core.staged_write import StagedWrite
from edgebus.errors import DecodeError
from edgebus.kafka import clients
from edgebus.kafka.batching import partition_for
from edgebus.kafka.clients import Consumer
from edgebus.kafka.clusters import resolve_clusters
from edgebus.kafka.reading import records_below, topic_partitions
from edgebus.kafka.topics import ensure_topics, staged_topic
from edgebus.wire.staged_write import decode_staged_write

__all__ = [
    "LOOKBACK_MS",
    "MAX_ENTRIES",
    "MAX_HELD_BYTES",
    "SEARCH_SLACK_MS",
    "StagedPayloads",
    "read_staged",
]

log = logging.getLogger("edgebus.commit")
_T = TypeVar("_T")

#: the most bytes of staged payloads held in memory
MAX_HELD_BYTES = 64 * 1024 * 1024
#: the most staged writes remembered (held in memory or by position)
MAX_ENTRIES = 100_000
#: how long before its start the tail begins to read
LOOKBACK_MS = 60_000
#: a search for a staged write starts this long before its BEGIN's time (a writer's clock
#: that stepped back)
SEARCH_SLACK_MS = 60_000
#: how often forgotten staged writes are swept out
_SWEEP_EVERY_S = 1.0
#: a search that reads nothing for this long fails (retried by the caller)
_STALL_S = 30.0


@dataclass(slots=True)
class _Entry:
    partition: int
    offset: int
    deadline_ms: int
    staged: StagedWrite | None  #: None: dropped from memory, read again by position
    claimed: bool = False


def read_staged(record: ConsumerRecord[bytes, bytes], partitions: int) -> StagedWrite:
    """The staged write in ``record`` (of a staged topic of ``partitions`` partitions);
    DecodeError when it is none: not a ``StagedWrite``, a record key other than its
    transaction id, a partition other than that id's."""
    try:
        staged = decode_staged_write(record.value)
    except DecodeError:
        raise
    except Exception as e:  # the decoder's own checks missed it: still not a record
        raise DecodeError(f"a staged write that does not decode: {type(e).__name__}: {e}") from e
    key = staged.txn_id.encode("ascii")
    if record.key != key:
        raise DecodeError("its record key is not its transaction id")
    home = partition_for(key, partitions)
    if record.partition != home:
        raise DecodeError(
            f"it is on partition {record.partition}, its transaction id's partition is {home}"
        )
    return staged


class StagedPayloads:
    """The staged payloads of ``region``'s topic, for its participant (see the module)."""

    def __init__(self, config: EdgeConfig, region: str, letters: DeadLetters) -> None:
        self.config = config
        self.region = region
        self.topic = staged_topic(region)
        self.bootstrap = resolve_clusters(config)[region]
        self.partitions = config.kafka.partitions
        self.max_drift_ms = config.replication.max_clock_drift_ms
        self.stats = {"staged": 0, "poison": 0, "dropped": 0, "refetched": 0, "searched": 0}
        self._letters = letters
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._held: OrderedDict[str, int] = OrderedDict()  #: txn_id -> bytes, oldest first
        self._held_bytes = 0
        self._position: dict[int, int] = {}  #: the tail's next offset, per partition
        self._moved = asyncio.Event()
        self._tail: Consumer | None = None
        self._reader: Consumer | None = None
        self._reader_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._swept_at = 0.0

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Create the topic if missing (``kafka.partitions`` partitions, on the region's
        own cluster), and start the tail :data:`LOOKBACK_MS` back."""
        kafka = self.config.kafka
        await ensure_topics(kafka, self.bootstrap, [self.topic])
        tail = self._tail = await clients.start_consumer(
            kafka,
            self.bootstrap,
            "log",
            client_id=f"edgebus-participant-{self.region}-staged",
            what=f"{self.region}'s Kafka",
        )
        try:
            tps = await topic_partitions(tail, [self.topic])
            tail.assign(tps)
            since = time.time_ns() // 1_000_000 - LOOKBACK_MS
            found = await tail.offsets_for_times(dict.fromkeys(tps, max(0, since)))
            ends = await tail.end_offsets(tps)
            for tp in tps:
                at = found.get(tp)
                offset = at.offset if at is not None else ends[tp]
                tail.seek(tp, offset)
                self._position[tp.partition] = offset
        except BaseException:
            await self.stop()
            raise
        self._task = asyncio.create_task(self._run(), name=f"{self.region} staged payloads")

    async def stop(self) -> None:
        """Stop reading; what is held is forgotten."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        for consumer in (self._tail, self._reader):
            if consumer is not None:
                await clients.stop_quietly(consumer)
        self._tail = self._reader = None

    def status(self) -> dict[str, Any]:
        """What is held (transactions, payload bytes) and the counters."""
        return {"held": len(self._entries), "held_bytes": self._held_bytes, **self.stats}

    # ------------------------------------------------------------------ the tail

    async def _run(self) -> None:
        tail = self._tail
        assert tail is not None
        while True:
            try:
                batch = await tail.getmany(timeout_ms=500, max_records=1000)
                now_ms = time.time_ns() // 1_000_000
                for tp, records in batch.items():
                    for record in records:
                        await self._take(record, now_ms)
                        self._position[tp.partition] = record.offset + 1
                for tp in tail.assignment():
                    self._position[tp.partition] = await tail.position(tp)
                self._sweep(now_ms)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # Kafka trouble passes; nothing else may stop the tail
                log.warning("%s: staged payloads not read (%r); retrying", self.region, e)
                await asyncio.sleep(1.0)
                continue
            moved, self._moved = self._moved, asyncio.Event()
            moved.set()

    async def _take(self, record: ConsumerRecord[bytes, bytes], now_ms: int) -> None:
        try:
            staged = read_staged(record, self.partitions)
        except DecodeError as e:
            self.stats["poison"] += 1
            await self._letters.send(record, f"not a staged write: {e}")
            return
        if staged.txn_id in self._entries or now_ms > staged.deadline_ms + self.max_drift_ms:
            return  # the first staged write of a transaction counts; a stale one is moot
        self._keep(_Entry(record.partition, record.offset, staged.deadline_ms, staged))

    def _keep(self, entry: _Entry) -> None:
        staged = entry.staged
        assert staged is not None
        self.stats["staged"] += 1
        self._forget(staged.txn_id)
        self._entries[staged.txn_id] = entry
        self._held[staged.txn_id] = staged.size
        self._held_bytes += staged.size
        while self._held_bytes > MAX_HELD_BYTES and self._held:
            txn_id, size = self._held.popitem(last=False)  # the oldest: by position now
            self._held_bytes -= size
            self._entries[txn_id].staged = None
        while len(self._entries) > MAX_ENTRIES:
            self._forget(next(iter(self._entries)))
            self.stats["dropped"] += 1

    def _sweep(self, now_ms: int) -> None:
        """Forget staged writes no transaction needs any more: unclaimed past their
        deadline (and the clock drift), claimed :data:`RETENTION_MS` past it."""
        now = time.monotonic()
        if now - self._swept_at < _SWEEP_EVERY_S:
            return
        self._swept_at = now
        stale = [
            t
            for t, e in self._entries.items()
            if now_ms > e.deadline_ms + (RETENTION_MS if e.claimed else self.max_drift_ms)
        ]
        for txn_id in stale:
            self._forget(txn_id)
        self.stats["dropped"] += len(stale)

    def _forget(self, txn_id: str) -> None:
        self._entries.pop(txn_id, None)
        size = self._held.pop(txn_id, None)
        if size is not None:
            self._held_bytes -= size

    # ------------------------------------------------------------------ the participant's side

    def forget(self, txn_id: str) -> None:
        """The participant is done with ``txn_id`` (voted no, applied, aborted)."""
        self._forget(txn_id)

    def held(self, txn_id: str) -> StagedWrite | None:
        """The staged write of ``txn_id`` if it is in memory now (claimed)."""
        entry = self._entries.get(txn_id)
        if entry is None or entry.staged is None:
            return None
        entry.claimed = True
        return entry.staged

    async def wait_for(self, begin: BeginRecord) -> StagedWrite | str:
        """The staged write of ``begin``'s transaction, or why there is none: it did not
        come before the tail read past where an honest writer's would be, nor before the
        transaction's deadline. Never raises (but CancelledError)."""
        remaining_s = (begin.deadline_ms - time.time_ns() // 1_000_000) / 1000
        late = (
            f"no staged payload of txn {begin.txn_id} in {self.topic} before the "
            "transaction's deadline"
        )
        try:
            return await asyncio.wait_for(self._wait_for(begin), max(0.0, remaining_s))
        except TimeoutError:
            return late
        except asyncio.CancelledError:
            raise
        except Exception as e:
            return f"its staged payload could not be read here ({type(e).__name__})"

    async def _wait_for(self, begin: BeginRecord) -> StagedWrite | str:
        partition = partition_for(begin.txn_id.encode("utf-8", "surrogatepass"), self.partitions)
        end = await self._retried(lambda: self._end_offset(partition))
        while True:
            found = await self._claimed(begin.txn_id)
            if found is not None:
                return found
            if self._position.get(partition, 0) >= end:
                break
            moved = self._moved
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(moved.wait(), 1.0)
        # not seen by the tail: older than its start, or forgotten
        since = max(begin.time_ms, begin.deadline_ms - MAX_TIMEOUT_MS - self.max_drift_ms)
        found = await self._retried(lambda: self._search(begin.txn_id, partition, end, since))
        if found is not None:
            return found
        return (
            f"its staged payload is missing: {self.topic} holds no staged write of txn "
            f"{begin.txn_id} (a writer stages the payload in every participant region "
            "before it appends the BEGIN)"
        )

    async def fetch(self, begin: BeginRecord) -> StagedWrite | str:
        """The staged write of ``begin``'s transaction (a commit to apply): held, read by
        position, or searched for from its BEGIN's time; why not when it is nowhere.
        Kafka trouble raises (the caller retries)."""
        found = await self._claimed(begin.txn_id)
        if found is not None:
            return found
        partition = partition_for(begin.txn_id.encode("utf-8", "surrogatepass"), self.partitions)
        end = await self._end_offset(partition)
        found = await self._search(begin.txn_id, partition, end, begin.time_ms)
        if found is not None:
            return found
        return (
            f"its staged payload is gone: {self.topic} holds no staged write of txn "
            f"{begin.txn_id} (past the topic's retention?)"
        )

    # ------------------------------------------------------------------ reading back

    async def _retried(self, call: Callable[[], Awaitable[_T]]) -> _T:
        """``call()`` until it succeeds or fails for good (the caller bounds the time)."""
        for attempt in range(1, 1_000_000):
            try:
                return await call()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                if not transient(e):
                    raise
                log.warning(
                    "%s: reading %s failed (%s), attempt %d; retrying",
                    self.region,
                    self.topic,
                    e,
                    attempt,
                )
                await asyncio.sleep(min(2.0, 0.2 * attempt))
        raise AssertionError("unreachable")

    async def _claimed(self, txn_id: str) -> StagedWrite | None:
        """The staged write of ``txn_id`` the tail kept (claimed), read again by position
        if it was dropped from memory."""
        staged = self.held(txn_id)
        entry = self._entries.get(txn_id)
        if staged is not None or entry is None:
            return staged
        tp = TopicPartition(self.topic, entry.partition)
        async with self._reader_lock:
            reader = await self._started_reader()
            if entry.offset < (await reader.beginning_offsets([tp]))[tp]:
                return None  # gone (retention): the search says so
            async for record in records_below(
                reader,
                {tp: entry.offset + 1},
                {tp: entry.offset},
                stall_s=_STALL_S,
                bootstrap=self.bootstrap,
            ):
                self.stats["refetched"] += 1
                with contextlib.suppress(DecodeError):
                    return read_staged(record, self.partitions)
        return None

    async def _search(
        self, txn_id: str, partition: int, end: int, since_ms: int
    ) -> StagedWrite | None:
        """The first staged write of ``txn_id`` in ``partition`` from the first record
        timestamped ``since_ms - SEARCH_SLACK_MS`` or later, below ``end``; kept."""
        tp = TopicPartition(self.topic, partition)
        key = txn_id.encode("utf-8", "surrogatepass")
        async with self._reader_lock:
            reader = await self._started_reader()
            self.stats["searched"] += 1
            found = await reader.offsets_for_times({tp: max(0, since_ms - SEARCH_SLACK_MS)})
            at = found.get(tp)
            start = at.offset if at is not None else end
            async for record in records_below(
                reader, {tp: end}, {tp: start}, stall_s=_STALL_S, bootstrap=self.bootstrap
            ):
                if record.key != key:
                    continue
                try:
                    staged = read_staged(record, self.partitions)
                except DecodeError:
                    continue  # the tail dead-letters it
                self._keep(
                    _Entry(partition, record.offset, staged.deadline_ms, staged, claimed=True)
                )
                return staged
        return None

    async def _end_offset(self, partition: int) -> int:
        tp = TopicPartition(self.topic, partition)
        async with self._reader_lock:
            reader = await self._started_reader()
            return int((await reader.end_offsets([tp]))[tp])

    async def _started_reader(self) -> Consumer:
        if self._reader is None:
            self._reader = await clients.start_consumer(
                self.config.kafka,
                self.bootstrap,
                "reader",
                client_id=f"edgebus-participant-{self.region}-staged-reader",
                what=f"{self.region}'s Kafka",
            )
        return self._reader
