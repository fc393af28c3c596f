"""The commit coordinator: decides strong writes (two-phase commit) from the commit log.

Coordinators form the Kafka consumer group ``edgebus.<log region>.coordinator`` on the
commit log, so each commit-log partition (and so each key) has one coordinator at a time;
more instances share the partitions and take over a dead one's on rebalance. An instance
folds its partitions (:class:`edgebus.core.commit_log.PartitionLog`) and appends a
decision for each transaction as soon as :func:`coordinator_decision` has one: COMMIT
when every participant voted yes, ABORT on a no vote or once the deadline passed.

Recovery is reading the log: the group's committed offset of a partition is the begin
of its oldest undecided transaction, so a restarted instance (or the one that takes
the partition over) folds every undecided transaction again and decides it (presumed
abort: one past its deadline is aborted). Two instances deciding one transaction (a
rebalance in progress) cannot disagree in effect: the first decision in the log is the
decision, for every reader; a forged COMMIT (no yes vote of every participant before
it) is none: the fold refuses it, the coordinator logs and counts it (``refused``).

Run it as its own process (``edgebus coordinator run``: kind ``service``) or inside an
``EdgeBus`` (``strong.coordinator``): ``embedded`` joins the group from every bus;
``auto`` (:class:`AutoCoordinator`) joins only while no other coordinator is in the
group, so that a fleet of clients keeps one member in it instead of rebalancing it
on every client's start and stop. The kind is in each member's client id
(:func:`coordinator_client_id`), which is how :func:`describe_coordinator_group` tells a
service from an embedded coordinator.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
import uuid
from typing import Any, Literal, NamedTuple

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
from edgebus.errors import EdgebusError
from edgebus.kafka import log_noise
from edgebus.kafka.clients import Consumer, admin_client
from edgebus.kafka.topics import commit_log_topic, coordinator_group
from edgebus.prometheus import LatencyHistogram

__all__ = [
    "AutoCoordinator",
    "Coordinator",
    "CoordinatorKind",
    "GroupView",
    "SeatMove",
    "coordinator_client_id",
    "describe_coordinator_group",
    "member_kind",
    "seat_move",
]

log = logging.getLogger(__name__)

_TICK_S = 0.05
_COMMIT_EVERY_S = 1.0

#: ``service``: ``edgebus coordinator run``; ``embedded``: in an EdgeBus with
#: ``strong.coordinator = "embedded"``; ``auto``: in an EdgeBus with ``"auto"``
CoordinatorKind = Literal["service", "embedded", "auto"]
_CLIENT_PREFIX = "edgebus-coordinator"


def coordinator_client_id(kind: CoordinatorKind, name: str) -> str:
    """The Kafka client id of coordinator ``name``: it names its kind, so that every
    client can tell from the group's members who coordinates."""
    return f"{_CLIENT_PREFIX}.{kind}.{name}"


def member_kind(client_id: str) -> CoordinatorKind:
    """The kind of a coordinator group member, by its client id (``service`` for any id
    an SDK coordinator would not have, such as older versions' ``edgebus-<name>``)."""
    prefix, _, rest = client_id.partition(".")
    kind = rest.partition(".")[0]
    if prefix == _CLIENT_PREFIX and kind == "embedded":
        return "embedded"
    if prefix == _CLIENT_PREFIX and kind == "auto":
        return "auto"
    return "service"


def _default_name(kind: CoordinatorKind) -> str:
    host = f"{socket.gethostname()}-{os.getpid()}"
    return f"coordinator-{host}" if kind == "service" else f"{kind}-{host}-{uuid.uuid4().hex[:6]}"


def _undecided(txn: Txn) -> bool:
    return txn.decision is None


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: Coordinator) -> None:
        self.owner = owner

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.owner._revoked(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self.owner._assigned(assigned)


class Coordinator(Lifecycle):
    """One coordinator instance. ``instance_id`` makes it a static group member (a
    restart with the same id takes its partitions back at once); ``kind`` is what runs
    it (:data:`CoordinatorKind`)."""

    def __init__(
        self, config: EdgeConfig, bootstrap: str, *, instance_id: str | None = None,
        kind: CoordinatorKind = "service", name: str | None = None,
    ) -> None:
        self.config = config
        self.bootstrap = bootstrap
        self.instance_id = instance_id
        self.kind = kind
        #: ``decided_by`` of its decisions: the instance id, else ``name``, else one
        #: of its own (unique per instance, but for a service's)
        self.name = instance_id or name or _default_name(kind)
        self.client_id = coordinator_client_id(kind, self.name)
        self.topic = commit_log_topic(config.strong_log_region)
        self.logs: dict[int, PartitionLog] = {}
        self.decided = 0  #: decisions this instance appended
        #: decisions appended, by outcome (``commit``, ``abort``), and the aborts among
        #: them decided because a participant did not vote before the deadline
        self.outcomes = {"commit": 0, "abort": 0}
        self.timeouts = 0
        self.refused = 0  #: COMMITs the fold refused (forged: no coordinator wrote them)
        self.assignments = 0  #: partition assignments received (one per rebalance)
        #: strong-write latency (BEGIN to decision), by outcome: ``edgebus bench`` and
        #: the coordinator's /metrics
        self.write_latency = LatencyHistogram()
        self._writer = CommitLogWriter(config, bootstrap, f"edgebus-{self.name}")
        self._consumer: Consumer | None = None
        self._hlc = HybridLogicalClock()
        self._deciding: set[str] = set()
        self._catching_up: dict[int, int] = {}  #: partition -> end offset at assignment
        #: assigned partitions whose resume offset is not read yet (paused until then)
        self._pending: set[int] = set()
        self._task: asyncio.Task[None] | None = None
        self._committed_at = 0.0

    @property
    def failed(self) -> bool:
        """Started, and its deciding loop ended (it failed)."""
        return self._task is not None and self._task.done()

    async def start(self) -> None:
        """Connect, join the coordinator group and start deciding (in the background)."""
        log_noise.install()
        await ensure_commit_log(self.config, self.bootstrap)
        self._consumer = await start_consumer(
            self.config, self.bootstrap, role="coordinator",
            group_id=coordinator_group(self.config.strong_log_region),
            group_instance_id=self.instance_id, client_id=self.client_id,
        )
        self._consumer.subscribe([self.topic], listener=_Listener(self))
        try:
            await self._writer.start()
        except BaseException:
            consumer, self._consumer = self._consumer, None
            with contextlib.suppress(Exception):
                await consumer.stop()
            raise
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
        if self._task is None:
            raise RuntimeError(f"coordinator {self.name} is not started: start() it first")
        await self._task

    # ------------------------------------------------------------------ group changes
    # Both run inside aiokafka's rebalance: nothing here may raise, nothing here asks
    # Kafka anything that a rebalance can refuse (the deciding loop does, and retries).

    async def _revoked(self, revoked: list[TopicPartition]) -> None:
        with contextlib.suppress(Exception):
            await self._commit(force=True)
        for tp in revoked:
            self.logs.pop(tp.partition, None)
            self._catching_up.pop(tp.partition, None)
            self._pending.discard(tp.partition)

    def _assigned(self, assigned: list[TopicPartition]) -> None:
        """Note the partitions assigned; they stay paused until the deciding loop has
        read where each resumes (:meth:`_resume_pending`)."""
        self.assignments += 1
        for tp in assigned:
            self.logs.pop(tp.partition, None)
            self._catching_up.pop(tp.partition, None)
            self._pending.add(tp.partition)
        consumer = self._consumer
        if consumer is not None and assigned:
            with contextlib.suppress(Exception):  # stopping: nothing to pause
                consumer.pause(*assigned)
        log.info("%s: coordinating commit-log partitions %s", self.name,
                 sorted(tp.partition for tp in assigned))

    async def _resume_pending(self, consumer: Consumer) -> None:
        """Fold each newly assigned partition from its committed offset: the begin of
        its oldest undecided transaction. A partition whose offsets Kafka does not give
        now (a rebalance again, the group's broker moving) is tried on the next tick;
        one revoked or assigned again meanwhile is left to its new assignment."""
        for p in sorted(self._pending):
            tp = TopicPartition(self.topic, p)
            assignments = self.assignments
            try:
                committed = await consumer.committed(tp)
                if committed is None:
                    committed = (await consumer.beginning_offsets([tp])).get(tp, 0)
                end = (await consumer.end_offsets([tp]))[tp]
            except (KafkaError, KeyError) as e:
                log.debug("%s: partition %d: offsets not read yet (%s)", self.name, p, e)
                continue
            if assignments != self.assignments or tp not in consumer.assignment():
                continue
            consumer.seek(tp, committed)
            plog = self.logs[p] = PartitionLog()
            plog.position = committed
            # decide nothing until the partition is read to where it ended now: what
            # is folded before may lack votes or a decision that are in the log already
            if committed < end:
                self._catching_up[p] = end
            self._pending.discard(p)
            consumer.resume(tp)

    # ------------------------------------------------------------------ deciding

    async def _run(self) -> None:
        consumer = self._consumer
        if consumer is None:
            return  # stopped before it ran
        while True:
            if self._pending:
                await self._resume_pending(consumer)
            batch = await consumer.getmany(timeout_ms=int(_TICK_S * 1000), max_records=2000)
            now_ms = time.time_ns() // 1_000_000
            for tp, records in batch.items():
                plog = self.logs.get(tp.partition)
                if plog is None:
                    continue  # revoked, or not resumed yet (read again from its offset)
                self._fold(tp.partition, plog, records)
            # decide after the whole batch is folded (a begin and its votes may arrive
            # in one batch), only on partitions read to their end at assignment, and
            # time out only on partitions read to their last known end
            assigned = consumer.assignment()
            for p, plog in list(self.logs.items()):
                tp = TopicPartition(self.topic, p)
                if p in self._catching_up or tp not in assigned:
                    continue  # a partition moving away in a rebalance is not decided here
                highwater = consumer.highwater(tp)
                current = highwater is None or plog.position >= highwater
                for txn in plog.undecided():
                    self._consider(txn, now_ms, may_time_out=current)
            await self._commit()

    def _fold(self, partition: int, plog: PartitionLog, records: list[Any]) -> None:
        for record in records:
            decoded = decode_record(record)
            if decoded is None:
                plog.position = max(plog.position, record.offset + 1)
                continue
            txn = plog.fold(record.offset, decoded)
            if txn is not None and txn.decision is not None:
                self._deciding.discard(txn.txn_id)
            if (refused := plog.last_refused) is not None:
                self.refused += 1
                log.warning("%s: commit log %d:%d, COMMIT of txn %s by %r refused: %s",
                            self.name, partition, record.offset, refused.record.txn_id,
                            refused.record.writer, refused.reason)
        end = self._catching_up.get(partition)
        if end is not None and plog.position >= end:
            del self._catching_up[partition]

    def _consider(self, txn: Txn, now_ms: int, *, may_time_out: bool) -> None:
        begin = txn.begin
        if txn.txn_id in self._deciding or begin is None:
            return
        outcome = coordinator_decision(txn, now_ms, may_time_out=may_time_out)
        if outcome is None:
            return
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
        assigned = consumer.assignment()
        for p, plog in self.logs.items():
            if TopicPartition(self.topic, p) not in assigned:
                continue  # revoked meanwhile: its next owner reads it from its offset
            plog.compact(now_ms, _undecided)  # keep what a restart would fold again
            offsets[TopicPartition(self.topic, p)] = plog.resume_offset(now_ms, _undecided)
        if not offsets:
            return  # (an empty commit would commit every consumed position)
        try:
            await consumer.commit(offsets)
        except KafkaError as e:  # a rebalance in progress: the next owner reads more
            log.info("%s: commit-log positions not committed (%s)", self.name, e)

    def status(self) -> dict[str, Any]:
        """Partitions owned, undecided transactions, decisions appended."""
        return {
            "name": self.name,
            "kind": self.kind,
            "partitions": sorted(self.logs),
            "undecided": sum(len(p.undecided()) for p in self.logs.values()),
            "decided": self.decided,
            "outcomes": dict(self.outcomes),
            "timeouts": self.timeouts,
            "refused": self.refused,
            "assignments": self.assignments,
        }


# ---------------------------------------------------------------------- who coordinates


class GroupView(NamedTuple):
    """The coordinator group as Kafka describes it: its state (``Empty``, ``Stable``,
    ``PreparingRebalance``, ``CompletingRebalance``, ``Dead``) and its members' client
    ids."""

    state: str
    members: tuple[str, ...]


async def describe_coordinator_group(config: EdgeConfig, bootstrap: str) -> GroupView:
    """The coordinator group of ``config``'s commit log, now (KafkaError or
    InfrastructureUnavailable when Kafka does not say)."""
    group = coordinator_group(config.strong_log_region)
    timeout_s = min(config.kafka.connect_timeout_s, 5.0)
    async with admin_client(config.kafka, bootstrap, client_id="edgebus-coordinator-watch",
                            timeout_s=timeout_s) as admin:
        responses = await admin.describe_consumer_groups([group])
    for response in responses:
        for entry in response.to_object()["groups"]:
            if entry["group"] == group:
                members = tuple(sorted(m["client_id"] for m in entry["members"]))
                return GroupView(str(entry["state"]), members)
    return GroupView("Dead", ())


#: what an ``auto`` coordinator does after a look at the group
SeatMove = Literal["take", "leave", "stay"]


def seat_move(view: GroupView, me: str, *, seated: bool) -> SeatMove:
    """What the ``auto`` coordinator whose client id is ``me`` does, seeing ``view``.

    Standing by (not ``seated``), it takes the seat (joins the group) only when the
    group has no member at all. Seated, it leaves when the group is stable and holds a
    coordinator that is not ``auto`` (a service, or an embedded one chosen explicitly),
    or another ``auto`` one with a smaller client id: every ``auto`` member sees the
    same members, so all but one leave. Anything else: it stays as it is.
    """
    if not seated:
        return "take" if not view.members else "stay"
    if view.state != "Stable" or me not in view.members:
        return "stay"
    others = [m for m in view.members if m != me]
    if any(member_kind(m) != "auto" for m in others):
        return "leave"
    return "leave" if min(view.members) != me else "stay"


class AutoCoordinator(Lifecycle):
    """``strong.coordinator = "auto"``: a coordinator in this process only while no
    other decides (see :func:`seat_move`).

    :meth:`start` looks at the group once and takes the seat if it is empty, only after
    a random pause of up to :attr:`TAKE_JITTER_S` and a second look, though: clients
    that find it empty together rarely all take it. Seated, it looks again
    :attr:`SEATED_LOOK_S` after the last look and leaves when another coordinator
    decides. Standing by, it looks again when :meth:`nudge` says a strong write of this
    process waits for its decision: it takes over from a coordinator that stopped or
    died (Kafka drops a dead member after the group's session timeout) when the group
    is empty. Looks are :attr:`LOOK_GAP_S` apart at least; a failed one changes nothing.
    """

    TAKE_JITTER_S = 0.5
    SEATED_LOOK_S = 2.0
    LOOK_GAP_S = 1.0

    def __init__(self, config: EdgeConfig, bootstrap: str) -> None:
        self.config = config
        self.bootstrap = bootstrap
        self.coordinator: Coordinator | None = None  #: while seated
        self.seated_times = 0  #: how often this process took the seat
        #: the name of the coordinator it runs when seated (``decided_by``)
        self.name = _default_name("auto")
        #: this process's client id in the coordinator group, when seated
        self.client_id = coordinator_client_id("auto", self.name)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._look_failed = False
        self._take_failed = False

    async def start(self) -> None:
        """First look (taking the seat if nobody coordinates), then watch."""
        await self._look()
        self._task = asyncio.create_task(self._watch(), name=f"{self.client_id} watch")

    async def stop(self) -> None:
        """Stop watching; leave the seat if seated."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        await self._leave()

    def nudge(self) -> None:
        """A strong write waits for its decision: look at the group soon."""
        self._wake.set()

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.LOOK_GAP_S)
            timeout = self.SEATED_LOOK_S - self.LOOK_GAP_S if self.coordinator else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            self._wake.clear()
            try:
                await self._look()
            except Exception as e:  # never the end of the watch: the next look may do
                log.log(logging.DEBUG if self._look_failed else logging.WARNING,
                        "%s: a look at the coordinator group failed: %r", self.client_id, e)
                self._look_failed = True

    async def _view(self) -> GroupView | None:
        try:
            return await describe_coordinator_group(self.config, self.bootstrap)
        except (KafkaError, EdgebusError, OSError, TimeoutError) as e:
            log.debug("%s: coordinator group not described (%s)", self.client_id, e)
            return None

    async def _look(self) -> None:
        if self.coordinator is not None and self.coordinator.failed:
            log.info("%s: its coordinator stopped; standing by", self.client_id)
            await self._leave()
        view = await self._view()
        if view is None:
            return
        move = seat_move(view, self.client_id, seated=self.coordinator is not None)
        if move == "take":
            await asyncio.sleep(random.uniform(0, self.TAKE_JITTER_S))
            again = await self._view()
            if again is not None and seat_move(again, self.client_id, seated=False) == "take":
                await self._take()
        elif move == "leave":
            log.info("%s: another coordinator decides (%s); standing by", self.client_id,
                     ", ".join(m for m in view.members if m != self.client_id))
            await self._leave()

    async def _take(self) -> None:
        coordinator = Coordinator(self.config, self.bootstrap, kind="auto", name=self.name)
        try:
            await coordinator.start()
        except (KafkaError, EdgebusError, OSError) as e:  # warned once, then debug
            log.log(logging.DEBUG if self._take_failed else logging.WARNING,
                    "%s: no coordinator started in this process (%s); strong writes wait "
                    "for another one", self.client_id, e)
            self._take_failed = True
            await coordinator.stop()
            return
        except BaseException:  # cancelled: leave nothing behind
            await coordinator.stop()
            raise
        self.coordinator = coordinator
        self.seated_times += 1
        log.info("%s: no coordinator was running; this process coordinates",
                 self.client_id)

    async def _leave(self) -> None:
        coordinator, self.coordinator = self.coordinator, None
        if coordinator is not None:
            await coordinator.stop()

    def status(self) -> dict[str, Any]:
        """Seated or not, how often it took the seat, its coordinator's status."""
        return {
            "client_id": self.client_id,
            "seated": self.coordinator is not None,
            "seated_times": self.seated_times,
            "coordinator": self.coordinator.status() if self.coordinator else None,
        }
