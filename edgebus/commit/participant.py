"""A region's side of two-phase commit, run by its region service.

The participant reads every partition of the commit log in order and, for each
transaction whose placement names its region:

* on the BEGIN, votes (:func:`edgebus.core.commit_log.participant_vote`: deadline,
  compliance, the key's lock, ``expected_version`` against the key's version in this
  region's store). A yes vote locks the key; the vote in the log is the prepared record.
  The BEGIN of a staged write has no payload: the vote waits (in a task of its own,
  bounded by the transaction's deadline) for the payload staged in this region's own
  topic ``edgebus.<region>.staged`` (:mod:`edgebus.commit.staged_tail`), and is no
  when it is missing, malformed or not the BEGIN's. Either way the payload's *content*
  is checked against this region's zones (:mod:`edgebus.commit.prepared`): a label
  only adds to what detection finds.
* on a COMMIT it voted yes for, writes the event to its own region's events topic
  (event id derived from the transaction, header ``eb-txn``, the decision's timestamp,
  the payload inline or staged, ``eb-declassified`` when the staged write carries a
  declassification record), waits until its materializer applied it, and acknowledges
  (ACK with the event's position). Replicators never copy such events: every
  participant writes its own.
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
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from edgebus.commit import failpoints
from edgebus.commit.host import ParticipantHost
from edgebus.commit.key_versions import KeyVersions
from edgebus.commit.log import (
    CommitLogWriter,
    commit_partition,
    commit_partitions,
    ensure_commit_log,
    participant_offsets,
    read_record,
    start_consumer,
)
from edgebus.commit.poison import MAX_TXN_ID_CHARS, DeadLetters, letter_of, transient
from edgebus.commit.prepared import PrepareChecks, commit_event, txn_event_id
from edgebus.commit.read_barrier import ReadBarrier
from edgebus.commit.staged_tail import StagedPayloads
from edgebus.core.commit_log import (
    AckRecord,
    LogRecord,
    PartitionLog,
    Txn,
    VoteRecord,
    lock_holders,
    participant_vote,
)
from edgebus.core.commit_vote import Refusal, Vote
from edgebus.core.hlc import HLCTimestamp, HybridLogicalClock
from edgebus.core.staged_write import StagedWrite
from edgebus.errors import DecodeError
from edgebus.kafka.clients import Consumer
from edgebus.kafka.topics import commit_log_topic
from edgebus.wire.headers import H_TXN

__all__ = ["H_TXN", "Participant", "ParticipantHost", "txn_event_id"]

log = logging.getLogger(__name__)

_COMMIT_EVERY_S = 1.0


def _unpack(packed: int) -> HLCTimestamp:
    return HLCTimestamp(packed >> 16, packed & 0xFFFF)


class _Refused(Exception):
    """A COMMIT this region must not apply (the reason)."""


class Participant:
    """Two-phase-commit participant of ``service.region``."""

    def __init__(self, service: ParticipantHost, bootstrap: str) -> None:
        self.service = service
        self.region = service.region
        self.config = service.config
        self.bootstrap = bootstrap  #: the commit log's cluster
        self.topic = commit_log_topic(self.config.strong_log_region)
        self.logs: dict[int, PartitionLog] = {}
        self.reads = ReadBarrier(self.region, self.topic, self.config.kafka.partitions)
        self.processed = self.reads.processed  #: per partition: next offset to process
        self.ready = self.reads.ready
        self.stats = {"votes_yes": 0, "votes_no": 0, "commits": 0, "aborts": 0}
        self._writer = CommitLogWriter(self.config, bootstrap, f"edgebus-participant-{self.region}")
        self._letters = DeadLetters(self.config, self.region)
        self._checks = PrepareChecks(self.config, self.region)
        self._staged = StagedPayloads(self.config, self.region, self._letters)
        #: txn_id -> its staged payload (or why none), looked up while the loop went on
        self._staged_ready: dict[str, StagedWrite | str] = {}
        self._consumer: Consumer | None = None
        self._offsets: Consumer | None = None
        self._hlc = HybridLogicalClock()  # only to stamp after a newer local event
        self._voting: dict[str, str] = {}  #: txn_id -> key: votes sent, not read back
        self._pending_yes: dict[str, str] = {}  #: key -> txn_id of a yes sent, not read back
        self._applying = self.reads.applying  #: key -> its last commit applied
        self._finishing: set[str] = set()
        self._versions = KeyVersions(self.region, lambda: service.store)
        self._task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._committed_at = 0.0

    async def start(self) -> None:
        """Connect; the caller runs :meth:`run`."""
        await ensure_commit_log(self.config, self.bootstrap)
        await self._staged.start()
        await self._writer.start()
        self._consumer = await start_consumer(
            self.config,
            self.bootstrap,
            group_id=f"edgebus.{self.region}.participant",
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
        await self._staged.stop()
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
        log.info(
            "%s: participant ready (commit log at %s)",
            self.region,
            {p: o for p, o in sorted(self.processed.items())},
        )
        while True:
            batch = await consumer.getmany(timeout_ms=100, max_records=2000)
            now_ms = time.time_ns() // 1_000_000
            await self._versions.load(batch)
            for tp, records in batch.items():
                for record in records:
                    await self._take(tp.partition, record, now_ms)
                    self.processed[tp.partition] = record.offset + 1
            if batch:
                self.reads.moved()
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

    async def _take(
        self, partition: int, record: ConsumerRecord[bytes, bytes], now_ms: int
    ) -> None:
        """Fold one record and act on the transaction it changed."""
        decoded = await self._decoded(record)
        if decoded is None:
            return
        plog = self.logs[partition]
        changed = plog.fold(record.offset, decoded)
        if (refused := plog.last_refused) is not None and self.region in refused.participants:
            await self._letters.send(record, refused.reason)  # forged: nothing to act on
        if changed is not None and changed.begin is not None:
            self.reads.committed(changed)
            if self.region in changed.participants:
                await self._act_guarded(changed, now_ms, partition, record)

    async def _act_guarded(
        self, txn: Txn, now_ms: int, partition: int, record: ConsumerRecord[bytes, bytes] | None
    ) -> None:
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
                    await self._letters.send(
                        letter_of(self.topic, partition, txn, record),
                        f"acting on it failed: {type(e).__name__}: {e}",
                    )
                    return
                log.warning(
                    "%s: txn %s not handled (%s), attempt %d; retrying",
                    self.region,
                    txn.txn_id,
                    e,
                    attempt,
                )
                await asyncio.sleep(min(5.0, 0.2 * attempt))
                now_ms = time.time_ns() // 1_000_000

    async def _act(
        self, txn: Txn, now_ms: int, partition: int, record: ConsumerRecord[bytes, bytes] | None
    ) -> None:
        begin = txn.begin
        assert begin is not None
        mine = txn.votes.get(self.region)
        if mine is not None:  # our vote is read back: the log holds the lock now
            self._voting.pop(txn.txn_id, None)
            self._release(txn)
        if txn.decision is None:
            if mine is None and txn.txn_id not in self._voting:
                await self._vote(txn, now_ms, partition, record)
            return
        self._voting.pop(txn.txn_id, None)
        self._staged_ready.pop(txn.txn_id, None)
        self._release(txn)
        if self.region in txn.acks or txn.txn_id in self._finishing:
            return
        self._finishing.add(txn.txn_id)
        if txn.decision.committed and mine is not None and mine.yes:
            self.reads.placement[txn.key] = begin.placement
            applied = asyncio.get_running_loop().create_future()
            previous = self._applying.get(txn.key)
            self._applying[txn.key] = applied
            self._spawn(self._commit_txn(txn, previous, applied, partition, record))
        else:
            self._spawn(self._ack(txn, None))

    async def _refuse_begin(
        self,
        txn: Txn,
        partition: int,
        record: ConsumerRecord[bytes, bytes] | None,
        reason: str,
        now_ms: int,
    ) -> None:
        """Dead-letter a BEGIN this region cannot apply and vote no, with the reason
        (not for an overlong transaction id: its vote would be as large)."""
        begin = txn.begin
        assert begin is not None
        self._voting[txn.txn_id] = begin.key
        self._staged.forget(txn.txn_id)
        await self._letters.send(letter_of(self.topic, partition, txn, record), reason)
        if len(txn.txn_id) > MAX_TXN_ID_CHARS:
            return  # the coordinator aborts it at its deadline
        vote = Vote(txn.txn_id, self.region, False, reason, self._versions.cached(begin.key))
        await self._send_vote(txn, vote, now_ms, failpoint=False)

    async def _refuse_commit(
        self,
        txn: Txn,
        partition: int,
        record: ConsumerRecord[bytes, bytes] | None,
        reason: str,
        applied: asyncio.Future[None] | None = None,
    ) -> None:
        """Apply nothing of a COMMIT this region must not apply: dead-letter it and
        acknowledge it without an event position."""
        await self._letters.send(letter_of(self.topic, partition, txn, record), reason)
        if applied is not None and not applied.done():
            applied.set_result(None)  # nothing to wait for: this region holds none of it
        await self._ack(txn, None, refused=True)

    async def _await_staged(
        self, txn: Txn, partition: int, record: ConsumerRecord[bytes, bytes] | None
    ) -> None:
        """Wait for ``txn``'s staged payload (bounded by its deadline), then vote."""
        assert txn.begin is not None
        found = await self._staged.wait_for(txn.begin)
        self._voting.pop(txn.txn_id, None)
        if txn.decision is not None or self.region in txn.votes:
            self._staged.forget(txn.txn_id)
            return  # decided meanwhile (aborted at its deadline): nothing to vote on
        self._staged_ready[txn.txn_id] = found
        await self._act_guarded(txn, time.time_ns() // 1_000_000, partition, record)
        self._staged_ready.pop(txn.txn_id, None)

    async def _vote(
        self, txn: Txn, now_ms: int, partition: int, record: ConsumerRecord[bytes, bytes] | None
    ) -> None:
        begin = txn.begin
        assert begin is not None
        deferred = txn.txn_id in self._staged_ready  # (the loop went on meanwhile)
        staged = (
            self._staged_ready.pop(txn.txn_id, None) or self._staged.held(txn.txn_id)
            if begin.staged
            else None
        )
        prepared, poison, compliance = self._checks.for_vote(begin, partition, now_ms, staged)
        if poison is not None:
            await self._refuse_begin(txn, partition, record, poison, now_ms)
            return
        self._voting[txn.txn_id] = begin.key  # no other vote on it starts meanwhile
        if prepared is None:  # its staged payload is not read yet: the loop goes on
            self._spawn(self._await_staged(txn, partition, record))
            return
        try:
            vote = await self._decide_vote(txn, now_ms, compliance, deferred)
        except BaseException:
            self._voting.pop(txn.txn_id, None)  # (retried: transient trouble)
            raise
        await self._send_vote(txn, vote, now_ms)

    async def _decide_vote(
        self, txn: Txn, now_ms: int, compliance: str | None, deferred: bool
    ) -> Vote:
        """This region's vote (the key's lock reserved for a yes at once: a vote running
        beside the loop may be on the same key)."""
        begin = txn.begin
        assert begin is not None
        key = begin.key
        previous = self._applying.get(key)
        if previous is not None and not previous.done():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(previous), 10.0)
        holders = lock_holders(
            self.logs[commit_partition(key, self.config.kafka.partitions)].txns.values(),
            self.region,
        )
        holder = self._pending_yes.get(key) or holders.get(key)
        if holder == txn.txn_id or holder is None:
            holder = None
            self._pending_yes[key] = txn.txn_id  # reserved; released below unless yes
        try:
            version = await self._versions.of(key, fresh=deferred)
        except BaseException:
            self._release(txn)
            raise
        vote = participant_vote(
            begin,
            self.region,
            current_version=version,
            may_hold=self._checks.label_allows(begin),
            holder=holder,
            now_ms=now_ms,
        )
        if compliance is not None and now_ms <= begin.deadline_ms:
            log.warning("%s: txn %s voted no: %s", self.region, txn.txn_id, compliance)
            vote = Vote(txn.txn_id, self.region, False, compliance, version, Refusal.COMPLIANCE)
        if not vote.yes:
            self._release(txn)
        return vote

    def _release(self, txn: Txn) -> None:
        """Forget this region's pending yes on ``txn``'s key, if it is ``txn``'s."""
        if self._pending_yes.get(txn.key) == txn.txn_id:
            del self._pending_yes[txn.key]

    async def _send_vote(
        self, txn: Txn, vote: Vote, now_ms: int, *, failpoint: bool = True
    ) -> None:
        key = txn.key
        self._voting[txn.txn_id] = key
        if txn.decision is not None:  # decided while a vote beside the loop ran: moot
            self._release(txn)
            return
        if vote.yes:
            self._pending_yes[key] = txn.txn_id
            self.stats["votes_yes"] += 1
        else:
            self.stats["votes_no"] += 1
            self._staged.forget(txn.txn_id)
        record = VoteRecord(txn.txn_id, key, vote, self.region, now_ms)
        try:
            future = await self._writer.send(record)
        except KafkaError as e:
            log.warning(
                "%s: vote on txn %s not sent (%s): it times out", self.region, txn.txn_id, e
            )
            return
        finally:
            if txn.decision is not None:  # (folded meanwhile: the vote holds nothing)
                self._release(txn)
        if failpoint and failpoints.armed("participant.after_vote"):
            with contextlib.suppress(Exception):
                await future
            failpoints.hit("participant.after_vote")
        future.add_done_callback(lambda f: f.exception() if not f.cancelled() else None)

    async def _commit_txn(
        self,
        txn: Txn,
        previous: asyncio.Future[None] | None,
        applied: asyncio.Future[None],
        partition: int,
        record: ConsumerRecord[bytes, bytes] | None,
    ) -> None:
        """Apply ``txn``'s commit here: transient trouble is retried; a commit this region
        must not apply, or any other failure, dead-letters the decision and applies
        nothing."""
        for attempt in range(1, 1_000_000):
            try:
                await self._apply(txn, previous, applied, partition)
                return
            except asyncio.CancelledError:
                raise
            except _Refused as e:
                await self._refuse_commit(txn, partition, record, str(e), applied)
                return
            except Exception as e:
                if not transient(e):
                    await self._refuse_commit(
                        txn,
                        partition,
                        None,
                        f"applying it failed: {type(e).__name__}: {e}",
                        applied,
                    )
                    return
                log.warning(
                    "%s: applying txn %s failed (%s), attempt %d; retrying",
                    self.region,
                    txn.txn_id,
                    e,
                    attempt,
                )
                await asyncio.sleep(min(5.0, 0.2 * attempt))

    async def _apply(
        self,
        txn: Txn,
        previous: asyncio.Future[None] | None,
        applied: asyncio.Future[None],
        log_partition: int,
    ) -> None:
        begin, decision = txn.begin, txn.decision
        assert begin is not None and decision is not None
        if previous is not None and not previous.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(previous)
        staged = await self._staged.fetch(begin) if begin.staged else None
        prepared = self._checks.for_commit(txn, log_partition, time.time_ns() // 1_000_000, staged)
        if isinstance(prepared, str):
            raise _Refused(prepared)
        service = self.service
        partition = service.partition_of(begin.key)
        now_ms = time.time_ns() // 1_000_000
        state = await service.store.get(begin.key)
        # the decision's timestamp, the same in every region; later only if this
        # region holds a newer event of the key (an eventual write with a clock ahead)
        stamp = _unpack(decision.hlc)
        if state is not None and state.top.hlc >= decision.hlc:
            stamp = self._hlc.observe(_unpack(state.top.hlc), now_ms)
        encoded = commit_event(prepared, self.region, stamp)
        offset = await service.append_event(encoded.key, encoded.value, partition, encoded.headers)
        while True:
            try:
                await service.wait_applied(partition, offset, 30.0)
                break
            except TimeoutError:
                log.warning(
                    "%s: txn %s event %d:%d not applied after 30 s; waiting",
                    self.region,
                    txn.txn_id,
                    partition,
                    offset,
                )
        self.stats["commits"] += 1
        self._versions.applied(begin.key)
        failpoints.hit("participant.after_apply")
        if not applied.done():
            applied.set_result(None)
        await self._ack(txn, f"{self.region}:{partition}:{offset}")

    async def _ack(self, txn: Txn, position: str | None, *, refused: bool = False) -> None:
        self._staged.forget(txn.txn_id)
        if position is None and not refused:
            self.stats["aborts"] += 1
        record = AckRecord(
            txn.txn_id, txn.key, self.region, position, self.region, time.time_ns() // 1_000_000
        )
        for attempt in range(10):
            try:
                await self._writer.append(record)
                return
            except Exception as e:
                log.warning(
                    "%s: ack of txn %s failed (%s), attempt %d",
                    self.region,
                    txn.txn_id,
                    e,
                    attempt + 1,
                )
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
        offsets = participant_offsets(
            self.logs, self.processed, self.topic, self.region, time.time_ns() // 1_000_000
        )
        try:
            await consumer.commit(offsets)
        except KafkaError as e:
            log.info("%s: participant positions not committed (%s)", self.region, e)

    # ------------------------------------------------------------------ strong reads

    async def barrier(self, key: str, timeout_s: float) -> dict[str, Any]:
        """Wait until every commit-log record of ``key``'s partition appended before now
        is processed here and every commit of ``key`` so far is applied here
        (:meth:`ReadBarrier.wait <edgebus.commit.read_barrier.ReadBarrier.wait>`)."""
        assert self._offsets is not None
        return await self.reads.wait(key, timeout_s, self._offsets)

    def status(self) -> dict[str, Any]:
        """Positions, in-doubt transactions (yes vote, no decision), counters."""
        in_doubt = sum(
            1
            for plog in self.logs.values()
            for t in plog.txns.values()
            if t.decision is None and (v := t.votes.get(self.region)) is not None and v.yes
        )
        return {
            "processed": {str(p): o for p, o in sorted(self.processed.items())},
            "in_doubt": in_doubt,
            **self.stats,
            "staged": self._staged.status(),
            "dead_letters": self._letters.sent,
        }
