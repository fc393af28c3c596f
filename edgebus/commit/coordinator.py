"""The commit coordinator: decides strong writes (two-phase commit) from the commit log.

Coordinators form the Kafka consumer group ``edgebus.<log region>.coordinator`` on the
commit log, so
each commit-log partition (and so each key) has one coordinator at a time; more
instances share the partitions and take over a dead one's on rebalance. An instance
folds its partitions (:class:`edgebus.core.commit_log.PartitionLog`) and appends a
decision for each transaction as soon as :func:`coordinator_decision` has one: COMMIT
when every participant voted yes, ABORT on a no vote or once the deadline passed.

Recovery is reading the log: the group's committed offset of a partition is the begin
of its oldest undecided transaction, so a restarted instance (or the one that takes
the partition over) folds every undecided transaction again and decides it (presumed
abort: one past its deadline is aborted). Two instances deciding one transaction (a
rebalance in progress) cannot disagree in effect: the first decision in the log is the
decision, for every reader.

Run it embedded (``EdgeBus`` starts one when ``strong.embedded_coordinator`` is true)
or as its own process: ``edgebus coordinator run``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from typing import Any

from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from edgebus.commit import failpoints
from edgebus.commit.log import CommitLogWriter, decode_record, ensure_commit_log, start_consumer
from edgebus.config import EdgeConfig
from edgebus.core.commit_log import (
    DecisionRecord,
    PartitionLog,
    Txn,
    committed_version,
    coordinator_decision,
)
from edgebus.core.commit_vote import Decision
from edgebus.core.hlc import HLCTimestamp, HybridLogicalClock
from edgebus.core.lifecycle import Lifecycle
from edgebus.kafka.clients import Consumer
from edgebus.kafka.topics import commit_log_topic, coordinator_group
from edgebus.prometheus import LatencyHistogram

__all__ = ["Coordinator"]

log = logging.getLogger(__name__)

_TICK_S = 0.05
_COMMIT_EVERY_S = 1.0


def _undecided(txn: Txn) -> bool:
    return txn.decision is None


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: Coordinator) -> None:
        self.owner = owner

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.owner._revoked(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self.owner._assigned(assigned)


class Coordinator(Lifecycle):
    """One coordinator instance. ``instance_id`` makes it a static group member (a
    restart with the same id takes its partitions back at once)."""

    def __init__(
        self, config: EdgeConfig, bootstrap: str, *, instance_id: str | None = None
    ) -> None:
        self.config = config
        self.bootstrap = bootstrap
        self.instance_id = instance_id
        self.name = instance_id or f"coordinator-{socket.gethostname()}-{os.getpid()}"
        self.topic = commit_log_topic(config.strong_log_region)
        self.logs: dict[int, PartitionLog] = {}
        self.decided = 0  #: decisions this instance appended
        #: decisions appended, by outcome (``commit``, ``abort``), and the aborts among
        #: them decided because a participant did not vote before the deadline
        self.outcomes = {"commit": 0, "abort": 0}
        self.timeouts = 0
        #: strong-write latency (BEGIN to decision), by outcome: ``edgebus bench`` and
        #: the coordinator's /metrics
        self.write_latency = LatencyHistogram()
        self._writer = CommitLogWriter(config, bootstrap, f"edgebus-{self.name}")
        self._consumer: Consumer | None = None
        self._hlc = HybridLogicalClock()
        self._deciding: set[str] = set()
        self._catching_up: dict[int, int] = {}  #: partition -> end offset at assignment
        self._task: asyncio.Task[None] | None = None
        self._committed_at = 0.0

    async def start(self) -> None:
        """Connect, join the coordinator group and start deciding (in the background)."""
        await ensure_commit_log(self.config, self.bootstrap)
        await self._writer.start()
        try:
            self._consumer = await start_consumer(
                self.config, self.bootstrap, role="coordinator",
                group_id=coordinator_group(self.config.strong_log_region),
                group_instance_id=self.instance_id, client_id=f"edgebus-{self.name}",
            )
        except BaseException:
            await self._writer.stop()
            raise
        self._consumer.subscribe([self.topic], listener=_Listener(self))
        self._task = asyncio.create_task(self._run(), name=f"{self.name} run")
        log.info("%s: coordinator started on %s", self.name, self.bootstrap)

    async def stop(self) -> None:
        """Stop deciding; commit positions; leave the group."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            with contextlib.suppress(Exception):
                await self._commit(force=True, consumer=consumer)
            with contextlib.suppress(Exception):
                await consumer.stop()
        await self._writer.stop()

    async def wait(self) -> None:
        """Run until stopped or failed (re-raises the failure)."""
        assert self._task is not None
        await self._task

    # ------------------------------------------------------------------ group changes

    async def _revoked(self, revoked: list[TopicPartition]) -> None:
        with contextlib.suppress(Exception):
            await self._commit(force=True)
        for tp in revoked:
            self.logs.pop(tp.partition, None)
            self._catching_up.pop(tp.partition, None)

    async def _assigned(self, assigned: list[TopicPartition]) -> None:
        consumer = self._consumer
        assert consumer is not None
        for tp in assigned:
            self.logs[tp.partition] = PartitionLog()
            committed = await consumer.committed(tp)
            if committed is None:
                first = await consumer.beginning_offsets([tp])
                committed = first.get(tp, 0)
            consumer.seek(tp, committed)
            self.logs[tp.partition].position = committed
            # decide nothing until the partition is read to where it ended now: what
            # is folded before may lack votes or a decision that are in the log already
            end = (await consumer.end_offsets([tp]))[tp]
            if committed < end:
                self._catching_up[tp.partition] = end
            else:
                self._catching_up.pop(tp.partition, None)
        log.info("%s: coordinating commit-log partitions %s", self.name,
                 sorted(tp.partition for tp in assigned))

    # ------------------------------------------------------------------ deciding

    async def _run(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        while True:
            batch = await consumer.getmany(timeout_ms=int(_TICK_S * 1000), max_records=2000)
            now_ms = time.time_ns() // 1_000_000
            for tp, records in batch.items():
                plog = self.logs.get(tp.partition)
                if plog is None:
                    continue  # revoked meanwhile
                for record in records:
                    decoded = decode_record(record)
                    if decoded is None:
                        plog.position = max(plog.position, record.offset + 1)
                        continue
                    txn = plog.fold(record.offset, decoded)
                    if txn is not None and txn.decision is not None:
                        self._deciding.discard(txn.txn_id)
                end = self._catching_up.get(tp.partition)
                if end is not None and plog.position >= end:
                    del self._catching_up[tp.partition]
            # decide after the whole batch is folded (a begin and its votes may arrive
            # in one batch), only on partitions read to their end at assignment, and
            # time out only on partitions read to their last known end
            for p, plog in list(self.logs.items()):
                if p in self._catching_up:
                    continue
                highwater = consumer.highwater(TopicPartition(self.topic, p))
                current = highwater is None or plog.position >= highwater
                for txn in plog.undecided():
                    self._consider(txn, now_ms, may_time_out=current)
            await self._commit()

    def _consider(self, txn: Txn, now_ms: int, *, may_time_out: bool) -> None:
        if txn.txn_id in self._deciding:
            return
        outcome = coordinator_decision(txn, now_ms, may_time_out=may_time_out)
        if outcome is None:
            return
        begin = txn.begin
        assert begin is not None
        stamp = self._hlc.observe(HLCTimestamp(begin.hlc >> 16, begin.hlc & 0xFFFF), now_ms)
        commit = outcome.decision is Decision.COMMIT
        record = DecisionRecord(
            txn.txn_id, txn.key, outcome, (stamp.wall_ms << 16) | stamp.logical,
            committed_version(txn) if commit else None, self.name, now_ms,
        )
        # an abort without a no vote from a participant: the deadline passed
        timed_out = not commit and bool(begin.placement) and all(
            v.yes for r in begin.placement if (v := txn.votes.get(r)) is not None
        )
        self._deciding.add(txn.txn_id)
        failpoints.hit("coordinator.before_decision")
        task = asyncio.ensure_future(self._append(record, timed_out=timed_out,
                                                  began_ms=begin.time_ms))
        task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)

    async def _append(self, record: DecisionRecord, *, timed_out: bool = False,
                      began_ms: int | None = None) -> None:
        try:
            await (await self._writer.send(record))
            self.decided += 1
            outcome = "commit" if record.committed else "abort"
            self.outcomes[outcome] += 1
            if began_ms is not None:
                self.write_latency.observe(outcome, time.time() * 1000 - began_ms)
            self.timeouts += timed_out
            failpoints.hit("coordinator.after_decision")
        except (KafkaError, Exception) as e:  # retried on the next tick
            log.warning("%s: decision for txn %s not appended (%s); retrying",
                        self.name, record.txn_id, e)
            await asyncio.sleep(0.2)
            self._deciding.discard(record.txn_id)

    async def _commit(self, *, force: bool = False,
                      consumer: Consumer | None = None) -> None:
        """Commit each partition's low water: its oldest undecided begin."""
        now = time.monotonic()
        if not force and now - self._committed_at < _COMMIT_EVERY_S:
            return
        self._committed_at = now
        now_ms = time.time_ns() // 1_000_000
        consumer = consumer or self._consumer
        if consumer is None or not self.logs:
            return
        offsets = {}
        for p, plog in self.logs.items():
            plog.compact(now_ms, _undecided)  # keep what a restart would fold again
            offsets[TopicPartition(self.topic, p)] = plog.resume_offset(now_ms, _undecided)
        try:
            await consumer.commit(offsets)
        except KafkaError as e:  # a rebalance in progress: the next owner reads more
            log.info("%s: commit-log positions not committed (%s)", self.name, e)

    def status(self) -> dict[str, Any]:
        """Partitions owned, undecided transactions, decisions appended."""
        return {
            "name": self.name,
            "partitions": sorted(self.logs),
            "undecided": sum(len(p.undecided()) for p in self.logs.values()),
            "decided": self.decided,
            "outcomes": dict(self.outcomes),
            "timeouts": self.timeouts,
        }
