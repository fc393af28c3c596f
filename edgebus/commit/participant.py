"""A region's side of two-phase commit, run by its region service.

The participant reads every partition of the commit log in order and, for each
transaction whose placement names its region:

* on the BEGIN, votes (:func:`edgebus.core.commit_log.participant_vote`: deadline,
  compliance, the key's lock, ``expected_version`` against the key's version in this
  region's store). A yes vote locks the key; the vote in the log is the prepared record.
* on a COMMIT it voted yes for, writes the event to its own region's events topic
  (event id derived from the transaction, header ``eb-txn``, the decision's timestamp),
  waits until its materializer applied it, and acknowledges (ACK with the event's
  position). Replicators never copy such events: every participant writes its own.
* on an ABORT, releases the key and acknowledges.

Crash safety: the participant's consumer group (``edgebus.<region>.participant``)
holds, per partition, the begin of the oldest transaction it has not acknowledged. A
restarted participant first folds the log from there to its end without acting (so
it knows its own votes and acknowledgements), then finishes what is left: votes it
never sent, commits it never acknowledged (writing the event again is harmless: the
applier applies an ``eb-txn`` event once), acknowledgements. Its in-doubt
transactions are those with its yes vote and no decision in the log; the
coordinator's decision resolves them when it comes.

Strong reads wait on :meth:`Participant.barrier`: every commit-log record before the
read's start is processed and every commit of the key so far is applied here.

Poison records (:mod:`edgebus.commit.poison`) go to ``edgebus.<region>.dlq`` with the
reason and the participant goes on: no commit-log record; a BEGIN this region cannot
apply (voted no); a COMMIT the log's votes do not back (the fold refuses it: the write
waits for its real decision) or this region must not apply (acknowledged without an
event position). Kafka, store and timeout trouble is retried, never dead-lettered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from typing import Any, Protocol

from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from connectors.base import Store
from edgebus.commit import failpoints
from edgebus.commit.log import (
    CommitLogWriter,
    commit_partition,
    commit_partitions,
    ensure_commit_log,
    kind_of,
    read_record,
    start_consumer,
)
from edgebus.commit.poison import (
    MAX_TXN_ID_CHARS,
    DeadLetters,
    begin_refusal,
    commit_refusal,
    letter_of,
    transient,
)
from edgebus.config import EdgeConfig
from edgebus.core.commit_log import (
    AckRecord,
    BeginRecord,
    LogRecord,
    PartitionLog,
    Txn,
    VoteRecord,
    lock_holders,
    participant_vote,
)
from edgebus.core.commit_vote import Vote
from edgebus.core.envelope import Operation
from edgebus.core.hlc import HLCTimestamp, HybridLogicalClock
from edgebus.core.vector_clock import VectorClock
from edgebus.errors import DecodeError
from edgebus.kafka.clients import Consumer
from edgebus.kafka.topics import commit_log_topic
from edgebus.wire.event_codec import encode_fields
from edgebus.wire.headers import H_TXN

__all__ = ["H_TXN", "Participant", "ParticipantHost", "txn_event_id"]

log = logging.getLogger(__name__)

_TXN_NAMESPACE = uuid.UUID("6f1d0c2e-5a1b-4c39-9a47-2f3f0e1b7c55")
_COMMIT_EVERY_S = 1.0


def _pack(t: HLCTimestamp) -> int:
    return (t.wall_ms << 16) | t.logical


def _unpack(packed: int) -> HLCTimestamp:
    return HLCTimestamp(packed >> 16, packed & 0xFFFF)


class ParticipantHost(Protocol):
    """What a participant needs of the region service it runs in (the region service
    satisfies it; so can a test double)."""

    region: str
    config: EdgeConfig

    @property
    def store(self) -> Store:
        """The region's store: the key's version is what a vote checks."""

    def partition_of(self, key: str) -> int:
        """The partition of ``key`` in every events topic."""

    async def append_event(
        self, key: bytes, value: bytes, partition: int, headers: list[tuple[str, bytes]]
    ) -> int:
        """Append a record to the region's own events topic; its offset once Kafka
        acknowledged it."""

    async def wait_applied(self, partition: int, offset: int, timeout_s: float) -> None:
        """Until the region's materializer applied ``offset`` of ``partition`` (raises
        TimeoutError after ``timeout_s``)."""


def txn_event_id(txn_id: str) -> str:
    """The event id of a transaction's event (the same in every participant)."""
    return str(uuid.uuid5(_TXN_NAMESPACE, txn_id))


class Participant:
    """Two-phase-commit participant of ``service.region``."""

    def __init__(self, service: ParticipantHost, bootstrap: str) -> None:
        self.service = service
        self.region = service.region
        self.config = service.config
        self.bootstrap = bootstrap  #: the commit log's cluster
        self.topic = commit_log_topic(self.config.strong_log_region)
        self.logs: dict[int, PartitionLog] = {}
        self.processed: dict[int, int] = {}  #: per partition: next offset to process
        self.stats = {"votes_yes": 0, "votes_no": 0, "commits": 0, "aborts": 0}
        self._writer = CommitLogWriter(self.config, bootstrap, f"edgebus-participant-{self.region}")
        self._letters = DeadLetters(self.config, self.region)
        self._max_drift_ms = self.config.replication.max_clock_drift_ms
        self._consumer: Consumer | None = None
        self._offsets: Consumer | None = None
        self._rules = self.config.compliance.rules()
        self._hlc = HybridLogicalClock()  # only to stamp after a newer local event
        self._voting: dict[str, str] = {}  #: txn_id -> key: votes sent, not read back
        self._pending_yes: dict[str, str] = {}  #: key -> txn_id of a yes sent, not read back
        self._applying: dict[str, asyncio.Future[None]] = {}  #: key -> its last commit applied
        self._finishing: set[str] = set()
        self._placement: dict[str, tuple[str, ...]] = {}  #: key -> placement of last commit
        self._versions: dict[str, int] = {}  #: key -> version, read for the current batch
        self._changed_since_load: set[str] = set()  #: keys applied since that read
        self._moved: asyncio.Event = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._committed_at = 0.0
        self.ready = asyncio.Event()

    async def start(self) -> None:
        """Connect; the caller runs :meth:`run`."""
        await ensure_commit_log(self.config, self.bootstrap)
        await self._writer.start()
        self._consumer = await start_consumer(
            self.config, self.bootstrap, group_id=f"edgebus.{self.region}.participant",
            client_id=f"edgebus-participant-{self.region}",
        )
        self._offsets = await start_consumer(self.config, self.bootstrap)

    async def stop(self) -> None:
        """Stop; committed positions stay."""
        for task in list(self._tasks):
            task.cancel()
        for consumer in (self._consumer, self._offsets):
            if consumer is not None:
                with contextlib.suppress(Exception):
                    await consumer.stop()
        self._consumer = self._offsets = None
        await self._writer.stop()
        with contextlib.suppress(Exception):
            await self._letters.stop()

    # ------------------------------------------------------------------ the loop

    async def run(self) -> None:
        """Catch up on the log without acting, then act on every record."""
        consumer = self._consumer
        assert consumer is not None
        tps = commit_partitions(self.config)
        await self._catch_up(consumer, tps)
        self.ready.set()
        log.info("%s: participant ready (commit log at %s)", self.region,
                 {p: o for p, o in sorted(self.processed.items())})
        while True:
            batch = await consumer.getmany(timeout_ms=100, max_records=2000)
            now_ms = time.time_ns() // 1_000_000
            await self._load_versions(batch)
            for tp, records in batch.items():
                for record in records:
                    await self._take(tp.partition, record, now_ms)
                    self.processed[tp.partition] = record.offset + 1
            if batch:
                self._moved.set()
                self._moved = asyncio.Event()
            await self._commit(consumer)

    async def _catch_up(self, consumer: Consumer, tps: list[TopicPartition]) -> None:
        """Fold every partition from its committed resume offset to its end without
        acting, then finish what is left (votes, applies, acknowledgements)."""
        consumer.assign(tps)
        committed = {tp: await consumer.committed(tp) for tp in tps}
        first = await consumer.beginning_offsets(tps)
        for tp in tps:
            start = committed[tp]
            if start is None or start < first.get(tp, 0):
                start = first.get(tp, 0)
            consumer.seek(tp, start)
            plog = self.logs[tp.partition] = PartitionLog()
            plog.position = start
        ends = await consumer.end_offsets(tps)
        while any(self.logs[tp.partition].position < ends[tp] for tp in tps):
            batch = await consumer.getmany(timeout_ms=200, max_records=5000)
            for tp, records in batch.items():
                plog = self.logs[tp.partition]
                for record in records:
                    decoded = await self._decoded(record)
                    if decoded is not None:
                        plog.fold(record.offset, decoded)
                    plog.position = record.offset + 1
        for partition, plog in self.logs.items():
            for txn in list(plog.txns.values()):
                if txn.begin is not None and self.region in txn.participants:
                    await self._act_guarded(txn, time.time_ns() // 1_000_000, partition, None)
        for tp in tps:
            self.processed[tp.partition] = self.logs[tp.partition].position

    async def _decoded(self, record: ConsumerRecord[bytes, bytes]) -> LogRecord | None:
        """The commit-log record in ``record``; ``None`` (dead-lettered) for one that is none."""
        try:
            return read_record(record)
        except DecodeError as e:
            await self._letters.send(record, f"not a commit-log record: {e}")
            return None

    async def _take(self, partition: int, record: ConsumerRecord[bytes, bytes],
                    now_ms: int) -> None:
        """Fold one record and act on the transaction it changed."""
        decoded = await self._decoded(record)
        if decoded is None:
            return
        plog = self.logs[partition]
        changed = plog.fold(record.offset, decoded)
        if (refused := plog.last_refused) is not None and self.region in refused.participants:
            await self._letters.send(record, refused.reason)  # forged: nothing to act on
        if changed is not None and changed.begin is not None:
            self._placement_seen(changed)
            if self.region in changed.participants:
                await self._act_guarded(changed, now_ms, partition, record)

    async def _act_guarded(self, txn: Txn, now_ms: int, partition: int,
                           record: ConsumerRecord[bytes, bytes] | None) -> None:
        """:meth:`_act` on ``txn`` (``record``: the record that changed it, if read
        now): transient trouble is retried; any other failure dead-letters the record
        and the participant goes on."""
        for attempt in range(1, 1_000_000):
            try:
                await self._act(txn, now_ms, partition, record)
                return
            except asyncio.CancelledError:
                raise
            except Exception as e:
                if not transient(e):
                    await self._letters.send(letter_of(self.topic, partition, txn, record),
                                             f"acting on it failed: {type(e).__name__}: {e}")
                    return
                log.warning("%s: txn %s not handled (%s), attempt %d; retrying", self.region,
                            txn.txn_id, e, attempt)
                await asyncio.sleep(min(5.0, 0.2 * attempt))
                now_ms = time.time_ns() // 1_000_000

    async def _load_versions(self, batch: dict[Any, list[Any]]) -> None:
        """One store read for the keys of every BEGIN in ``batch`` naming this region
        (votes then need no store round trip each). A key whose commit this region
        applies meanwhile is read again at its vote."""
        keys = set()
        region = self.region.encode("ascii")
        for records in batch.values():
            for record in records:
                if record.key is not None and record.value is not None and (
                    kind_of(record) == b"begin" and region in record.value
                ):
                    keys.add(record.key.decode("utf-8", "replace"))
        self._changed_since_load.clear()
        self._versions = {}
        if not keys:
            return
        try:
            loaded = await self.service.store.load(keys)
        except Exception as e:  # each vote reads its key then
            log.warning("%s: versions of %d keys not read (%r)", self.region, len(keys), e)
            return
        self._versions = {k: s.version for k, s in loaded.items()}
        for key in keys:
            self._versions.setdefault(key, 0)

    def _placement_seen(self, txn: Txn) -> None:
        if txn.decision is not None and txn.decision.committed and txn.begin is not None:
            if len(self._placement) > 100_000:
                self._placement.clear()
            self._placement[txn.key] = txn.begin.placement

    async def _act(self, txn: Txn, now_ms: int, partition: int,
                   record: ConsumerRecord[bytes, bytes] | None) -> None:
        begin = txn.begin
        assert begin is not None
        mine = txn.votes.get(self.region)
        if mine is not None:  # our vote is read back: the log holds the lock now
            self._voting.pop(txn.txn_id, None)
            if self._pending_yes.get(txn.key) == txn.txn_id:
                del self._pending_yes[txn.key]
        if txn.decision is None:
            if mine is None and txn.txn_id not in self._voting:
                await self._vote(txn, now_ms, partition, record)
            return
        self._voting.pop(txn.txn_id, None)
        if self._pending_yes.get(txn.key) == txn.txn_id:
            del self._pending_yes[txn.key]
        if self.region in txn.acks or txn.txn_id in self._finishing:
            return
        self._finishing.add(txn.txn_id)
        if txn.decision.committed and mine is not None and mine.yes:
            refusal = self._refusal(txn, partition)
            if refusal is not None:
                self._spawn(self._refuse_commit(txn, partition, record, refusal))
                return
            self._placement[txn.key] = begin.placement
            applied = asyncio.get_running_loop().create_future()
            previous = self._applying.get(txn.key)
            self._applying[txn.key] = applied
            self._spawn(self._commit_txn(txn, previous, applied, partition))
        else:
            self._spawn(self._ack(txn, None))

    def _may_hold(self, begin: BeginRecord) -> bool:
        return bool(self._rules.allowed_regions((self.region,), begin.classification))

    def _refusal(self, txn: Txn, partition: int) -> str | None:
        """Why this region must not vote yes on ``txn``'s BEGIN or, once committed, apply
        it (its BEGIN checked again: a yes vote of this region may be forged); or None."""
        begin, now_ms = txn.begin, time.time_ns() // 1_000_000
        assert begin is not None
        reason = begin_refusal(begin, self.region, partition=partition, now_ms=now_ms,
                               partitions=self.config.kafka.partitions,
                               max_drift_ms=self._max_drift_ms)
        if reason is not None or txn.decision is None:
            return reason
        return commit_refusal(txn, now_ms=now_ms, max_drift_ms=self._max_drift_ms,
                              may_hold=self._may_hold(begin))

    async def _refuse_begin(self, txn: Txn, partition: int,
                            record: ConsumerRecord[bytes, bytes] | None, reason: str,
                            now_ms: int) -> None:
        """Dead-letter a BEGIN this region cannot apply and vote no, with the reason
        (not for an overlong transaction id: its vote would be as large)."""
        begin = txn.begin
        assert begin is not None
        self._voting[txn.txn_id] = begin.key
        await self._letters.send(letter_of(self.topic, partition, txn, record), reason)
        if len(txn.txn_id) > MAX_TXN_ID_CHARS:
            return  # the coordinator aborts it at its deadline
        self.stats["votes_no"] += 1
        vote = Vote(txn.txn_id, self.region, False, reason, self._versions.get(begin.key, 0))
        try:
            future = await self._writer.send(
                VoteRecord(txn.txn_id, begin.key, vote, self.region, now_ms))
        except KafkaError as e:
            log.warning("%s: vote on txn %s not sent (%s): it times out", self.region,
                        txn.txn_id, e)
            return
        future.add_done_callback(lambda f: f.exception() if not f.cancelled() else None)

    async def _refuse_commit(self, txn: Txn, partition: int,
                             record: ConsumerRecord[bytes, bytes] | None, reason: str,
                             applied: asyncio.Future[None] | None = None) -> None:
        """Apply nothing of a COMMIT this region must not apply: dead-letter it and
        acknowledge it without an event position."""
        await self._letters.send(letter_of(self.topic, partition, txn, record), reason)
        if applied is not None and not applied.done():
            applied.set_result(None)  # nothing to wait for: this region holds none of it
        await self._ack(txn, None, refused=True)

    async def _vote(self, txn: Txn, now_ms: int, partition: int,
                    record: ConsumerRecord[bytes, bytes] | None) -> None:
        begin = txn.begin
        assert begin is not None
        refusal = self._refusal(txn, partition)
        if refusal is not None:
            await self._refuse_begin(txn, partition, record, refusal, now_ms)
            return
        key = begin.key
        previous = self._applying.get(key)
        if previous is not None and not previous.done():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(previous), 10.0)
        holders = lock_holders(self.logs[commit_partition(key, self.config.kafka.partitions)]
                               .txns.values(), self.region)
        holder = self._pending_yes.get(key) or holders.get(key)
        if holder == txn.txn_id:
            holder = None
        version = self._versions.get(key)
        if version is None or key in self._changed_since_load:
            state = await self.service.store.get(key)
            version = state.version if state is not None else 0
        may_hold = self._may_hold(begin)
        vote = participant_vote(
            begin, self.region, current_version=version, may_hold=may_hold, holder=holder,
            now_ms=now_ms,
        )
        self._voting[txn.txn_id] = key
        if vote.yes:
            self._pending_yes[key] = txn.txn_id
            self.stats["votes_yes"] += 1
        else:
            self.stats["votes_no"] += 1
        record = VoteRecord(txn.txn_id, key, vote, self.region, now_ms)
        try:
            future = await self._writer.send(record)
        except KafkaError as e:
            log.warning("%s: vote on txn %s not sent (%s): it times out", self.region,
                        txn.txn_id, e)
            return
        if failpoints.armed("participant.after_vote"):
            with contextlib.suppress(Exception):
                await future
            failpoints.hit("participant.after_vote")
        future.add_done_callback(lambda f: f.exception() if not f.cancelled() else None)

    async def _commit_txn(
        self, txn: Txn, previous: asyncio.Future[None] | None, applied: asyncio.Future[None],
        partition: int,
    ) -> None:
        """Apply ``txn``'s commit here: transient trouble is retried; any other failure
        dead-letters the decision and applies nothing."""
        for attempt in range(1, 1_000_000):
            try:
                await self._apply(txn, previous, applied)
                return
            except asyncio.CancelledError:
                raise
            except Exception as e:
                if not transient(e):
                    await self._refuse_commit(txn, partition, None, "applying it failed: "
                                              f"{type(e).__name__}: {e}", applied)
                    return
                log.warning("%s: applying txn %s failed (%s), attempt %d; retrying",
                            self.region, txn.txn_id, e, attempt)
                await asyncio.sleep(min(5.0, 0.2 * attempt))

    async def _apply(
        self, txn: Txn, previous: asyncio.Future[None] | None, applied: asyncio.Future[None]
    ) -> None:
        begin, decision = txn.begin, txn.decision
        assert begin is not None and decision is not None
        if previous is not None and not previous.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(previous)
        service = self.service
        partition = service.partition_of(begin.key)
        now_ms = time.time_ns() // 1_000_000
        state = await service.store.get(begin.key)
        # the decision's timestamp, the same in every region; later only if this
        # region holds a newer event of the key (an eventual write with a clock ahead)
        stamp = _unpack(decision.hlc)
        if state is not None and state.top.hlc >= decision.hlc:
            stamp = self._hlc.observe(_unpack(state.top.hlc), now_ms)
        placement = (self.region, *(r for r in begin.placement if r != self.region))
        encoded = encode_fields(
            txn_event_id(txn.txn_id), begin.key, Operation(begin.operation), begin.payload,
            self.region, placement, begin.classification, stamp, VectorClock(),
            begin.writer,
        )
        offset = await service.append_event(
            encoded.key, encoded.value, partition,
            [*encoded.headers, (H_TXN, txn.txn_id.encode("ascii"))],
        )
        while True:
            try:
                await service.wait_applied(partition, offset, 30.0)
                break
            except TimeoutError:
                log.warning("%s: txn %s event %d:%d not applied after 30 s; waiting",
                            self.region, txn.txn_id, partition, offset)
        self.stats["commits"] += 1
        self._changed_since_load.add(begin.key)
        failpoints.hit("participant.after_apply")
        if not applied.done():
            applied.set_result(None)
        await self._ack(txn, f"{self.region}:{partition}:{offset}")

    async def _ack(self, txn: Txn, position: str | None, *, refused: bool = False) -> None:
        if position is None and not refused:
            self.stats["aborts"] += 1
        record = AckRecord(txn.txn_id, txn.key, self.region, position, self.region,
                           time.time_ns() // 1_000_000)
        for attempt in range(10):
            try:
                await self._writer.append(record)
                return
            except Exception as e:
                log.warning("%s: ack of txn %s failed (%s), attempt %d", self.region,
                            txn.txn_id, e, attempt + 1)
                await asyncio.sleep(0.5)
        self._finishing.discard(txn.txn_id)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)

        def done(t: asyncio.Task[None]) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.error("%s: participant task failed: %r", self.region, t.exception())

        task.add_done_callback(done)

    async def _commit(self, consumer: Consumer) -> None:
        now = time.monotonic()
        if now - self._committed_at < _COMMIT_EVERY_S:
            return
        self._committed_at = now
        region = self.region
        now_ms = time.time_ns() // 1_000_000

        def unfinished(t: Txn) -> bool:  # ours to vote on, apply or acknowledge
            return region in t.participants and region not in t.acks

        offsets = {}
        for p, plog in self.logs.items():
            plog.compact(now_ms, lambda t: t.decision is None or unfinished(t))
            offsets[TopicPartition(self.topic, p)] = min(
                plog.resume_offset(now_ms, unfinished), self.processed.get(p, plog.position)
            )
        try:
            await consumer.commit(offsets)
        except KafkaError as e:
            log.info("%s: participant positions not committed (%s)", region, e)

    # ------------------------------------------------------------------ strong reads

    async def barrier(self, key: str, timeout_s: float) -> dict[str, Any]:
        """Wait until every commit-log record of ``key``'s partition appended before now
        is processed here and every commit of ``key`` so far is applied here.

        Returns ``{"served": True}``, or ``served`` false with ``reason``:
        ``not_placed_here`` (with ``placement``: the key's last strong write is not
        placed in this region) or ``barrier_timeout``.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        partition = commit_partition(key, self.config.kafka.partitions)
        tp = TopicPartition(self.topic, partition)
        assert self._offsets is not None
        end = (await self._offsets.end_offsets([tp]))[tp]
        while self.processed.get(partition, -1) < end or not self.ready.is_set():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return {"served": False, "reason": "barrier_timeout",
                        "behind": end - self.processed.get(partition, 0)}
            moved = self._moved
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(moved.wait(), min(remaining, 0.05))
        applying = self._applying.get(key)
        if applying is not None and not applying.done():
            try:
                await asyncio.wait_for(asyncio.shield(applying), max(0.0, deadline - loop.time()))
            except TimeoutError:
                return {"served": False, "reason": "barrier_timeout", "behind": 0}
            except Exception:
                return {"served": False, "reason": "barrier_timeout", "behind": 0}
        placement = self._placement.get(key)
        if placement is not None and self.region not in placement:
            return {"served": False, "reason": "not_placed_here", "placement": list(placement)}
        return {"served": True, "saga_offset": end}

    def status(self) -> dict[str, Any]:
        """Positions, in-doubt transactions (yes vote, no decision), counters."""
        in_doubt = sum(
            1 for plog in self.logs.values() for t in plog.txns.values()
            if t.decision is None and (v := t.votes.get(self.region)) is not None and v.yes
        )
        return {"processed": {str(p): o for p, o in sorted(self.processed.items())},
                "in_doubt": in_doubt,
                **self.stats,
                "dead_letters": self._letters.sent}
