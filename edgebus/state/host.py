"""The state host: where a region's state machines are owned, run and copied.

Every host of region R reads the state logs of the classes R may hold, and folds every
record into a :class:`~edgebus.core.state_machine.StateObject` per state (so each is
a warm standby). It persists the folds with their log positions in SQLite (one
transaction), so a restart resumes from there.

Ownership (decide, then do):

* **claim**: a free state that is wanted (requests wait, or its owner's lease ran
  out) is claimed by the hosts of the candidate regions in turn
  (:func:`~edgebus.core.state_machine.claim_delay_ms`); the log grants the first
  valid claim. The host owns the state from the moment its consumer reads its granted
  claim: its working copy is then exactly the state as of that point.
* **serve**: requests run one at a time on the working copy (:func:`execute`); each
  produces a state event appended to the log without waiting (pipelined), and a
  request is answered only when its event's append time is within the lease the
  owner knows (:func:`acknowledged`). Anything else demotes the host.
* **renew** every third of the lease; stop serving ``lease_margin_ms`` before the
  lease ends by the host's own clock if a renewal did not land.
* **migrate** (``enable_migration``): when another allowed region made at least
  ``migration_threshold`` of the accesses over the window, wait for the events in
  flight, append a hand-off to that region and stop serving; its hosts claim at once.

Requests that were not answered stay pending in the log's fold, so whoever owns the
state next runs them; a re-sent request already answered gets its first answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiosqlite
from aiokafka import ConsumerRecord, TopicPartition

from edgebus.config import EdgeConfig, default_state_dir
from edgebus.core.classification import classify
from edgebus.core.ownership import (
    Claim,
    Handoff,
    Release,
    Renew,
    lease_valid_until,
    migration_target,
)
from edgebus.core.state_machine import (
    StateObject,
    StateOp,
    StateRequest,
    acknowledged,
    claim_delay_ms,
    execute,
)
from edgebus.errors import EdgebusError
from edgebus.kafka.clients import Consumer
from edgebus.kafka.clusters import resolve_clusters
from edgebus.kafka.dead_letters import send_dead_letters
from edgebus.kafka.reading import seek_to_first, topic_partitions
from edgebus.state.functions import import_function_modules, resolve
from edgebus.state.log import (
    Appended,
    StateLogWriter,
    allowed_regions,
    decode_record,
    ensure_state_log,
    home_region,
    hosted_classes,
    start_consumer,
    state_topic,
)

__all__ = ["NotOwner", "StateHost", "default_state_db"]

log = logging.getLogger("edgebus.state")
Key = tuple[str, str]  # (data class, state id)


class NotOwner(EdgebusError):
    """This host does not (or no longer) own the state: send the request through the
    log instead."""

    retriable = True


def default_state_db(region: str) -> Path:
    """``<state dir>/regions/<region>/states-<region>.db``."""
    return default_state_dir() / "regions" / region / f"states-{region}.db"


def _wall_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class _Owned:
    data_class: str
    state_id: str
    epoch: int
    lease_ms: int
    lease_until_ms: int  # in append time
    valid_until: float  # monotonic seconds
    work: StateObject
    renew_sent: float = 0.0
    renewing: bool = False
    handing_off: bool = False
    inflight: int = 0
    parked: list[tuple[StateRequest, int, asyncio.Future[Any] | None]] = field(
        default_factory=list)


@dataclass
class _Work:
    key: Key
    request: StateRequest
    sent_ms: int
    local: asyncio.Future[tuple[StateOp, Appended]] | None = None


class StateHost:
    """Hosts the state machines of ``region`` (one per process and region)."""

    def __init__(
        self,
        config: EdgeConfig,
        region: str,
        *,
        host_id: str | None = None,
        db_path: str | Path | None = None,
    ) -> None:
        self.config = config
        self.region = region
        self.host_id = host_id or f"{region}/{uuid.uuid4().hex[:8]}"
        self.classes = hosted_classes(config, region)
        self.db_path = Path(db_path) if db_path is not None else default_state_db(region)
        self.objects: dict[Key, StateObject] = {}
        self.owned: dict[Key, _Owned] = {}
        self.counters: dict[str, int] = {
            "ops": 0, "forwarded_requests": 0, "claims": 0, "takeovers": 0, "demoted": 0,
            "handoffs": 0, "rejected_records": 0, "dead_letters": 0, "duplicates": 0,
        }
        self._positions: dict[TopicPartition, int] = {}
        self._caught_up = asyncio.Event()
        self._topic_class = {state_topic(config, c): c for c in self.classes}
        self._claim_times: dict[Key, float] = {}  # when this host sent a claim
        self._allowed = {c: allowed_regions(config, c) for c in self.classes}
        self._claimable: dict[Key, float] = {}
        self._dirty: set[Key] = set()
        self._queue: asyncio.Queue[_Work] = asyncio.Queue()
        self._acks: asyncio.Queue[tuple[_Owned, StateOp, asyncio.Future[Appended],
                                        asyncio.Future[Any] | None]] = asyncio.Queue()
        self._writer = StateLogWriter(config, f"{self.host_id}-state")
        self._consumers: list[Consumer] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._side_tasks: set[asyncio.Future[None]] = set()
        self._db: aiosqlite.Connection | None = None
        self._failure: BaseException | None = None
        self._latencies: deque[float] = deque(maxlen=2048)

    # -- life cycle --------------------------------------------------------------------
    async def start(self) -> None:
        """Load the snapshot, create the logs, read them to their end, then serve."""
        import_function_modules()
        for data_class in self.classes:
            await ensure_state_log(self.config, data_class)
        await self._open_db()
        try:
            clusters = resolve_clusters(self.config)
            by_bootstrap: dict[str, list[str]] = {}
            for data_class in self.classes:
                bootstrap = clusters[home_region(self.config, data_class)]
                by_bootstrap.setdefault(bootstrap, []).append(state_topic(self.config,
                                                                          data_class))
            ends: dict[TopicPartition, int] = {}
            for bootstrap, topics in by_bootstrap.items():
                consumer = await start_consumer(self.config, bootstrap,
                                                f"{self.host_id}-state-read")
                self._consumers.append(consumer)
                tps = await topic_partitions(consumer, topics)
                consumer.assign(tps)
                fresh = [tp for tp in tps if tp not in self._positions]
                await seek_to_first(consumer, fresh)
                for tp in tps:
                    if tp in self._positions:
                        consumer.seek(tp, self._positions[tp])
                ends.update(await consumer.end_offsets(tps))
            await self._catch_up(ends)
        except BaseException:
            await self.stop()
            raise
        for consumer in self._consumers:
            self._spawn(self._read(consumer), "state log reader")
        self._spawn(self._execute(), "state executor")
        self._spawn(self._acknowledge(), "state acknowledgements")
        self._spawn(self._tick(), "state ticker")
        self._spawn(self._persist(), "state snapshots")
        log.info("%s: state host %s up (classes %s, %d states folded)", self.region,
                 self.host_id, ", ".join(self.classes), len(self.objects))

    async def stop(self) -> None:
        """Stop serving: release the owned states (so another host may claim them at
        once; were this process killed instead, they fail over when their lease ends)
        and save a snapshot."""
        await self._release_all()
        for task in [*self._tasks, *self._side_tasks]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._side_tasks, return_exceptions=True)
        self._tasks.clear()
        for key in list(self.owned):
            self._demote(key, "the host is stopping")
        for consumer in self._consumers:
            with contextlib.suppress(Exception):
                await consumer.stop()
        self._consumers.clear()
        await self._writer.stop()
        if self._db is not None:
            with contextlib.suppress(Exception):
                await self._save()
            with contextlib.suppress(Exception):
                await self._db.close()
            self._db = None

    async def _release_all(self, timeout_s: float = 2.0) -> None:
        owned = list(self.owned.items())
        if not owned or not self._tasks:
            return
        for _key, own in owned:
            own.handing_off = True  # no new operations
        deadline = time.monotonic() + timeout_s
        while any(own.inflight for _k, own in owned) and time.monotonic() < deadline:  # noqa: ASYNC110 - bounded: the events in flight land
            await asyncio.sleep(0.01)
        releases = [
            self._writer.append(own.data_class, own.state_id,
                                Release(self.region, own.epoch, self.host_id))
            for _key, own in owned if own.inflight == 0
        ]
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.gather(*releases, return_exceptions=True),
                                   max(0.1, deadline - time.monotonic()))

    async def wait(self) -> None:
        """Run until a component fails (its error is raised)."""
        while True:
            if self._failure is not None:
                raise self._failure
            await asyncio.sleep(0.5)

    def _background(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=f"{self.region} {name}")

        def done(t: asyncio.Task[None]) -> None:
            if not t.cancelled() and t.exception() is not None and self._failure is None:
                self._failure = t.exception()
                log.error("%s: %s failed: %r", self.region, name, t.exception())

        task.add_done_callback(done)
        self._tasks.append(task)

    # -- reading the log ---------------------------------------------------------------
    async def _catch_up(self, ends: dict[TopicPartition, int]) -> None:
        remaining = {tp: end for tp, end in ends.items() if self._positions.get(tp, 0) < end}
        while remaining:
            for consumer in self._consumers:
                batch = await consumer.getmany(timeout_ms=200, max_records=5000)
                for tp, records in batch.items():
                    for record in records:
                        self._fold(record)
                    if records:
                        self._positions[tp] = records[-1].offset + 1
            remaining = {tp: end for tp, end in remaining.items()
                         if self._positions.get(tp, 0) < end}

    async def _read(self, consumer: Consumer) -> None:
        while True:
            batch = await consumer.getmany(timeout_ms=500, max_records=2000)
            letters: list[tuple[ConsumerRecord[bytes, bytes], str, str]] = []
            for tp, records in batch.items():
                for record in records:
                    if not self._fold(record) and self._home_of(record.topic) == self.region:
                        letters.append((record, "not a state-log record", "state"))
                if records:
                    self._positions[tp] = records[-1].offset + 1
            if letters:
                await self._dead_letter(letters)

    def _home_of(self, topic: str) -> str | None:
        data_class = self._topic_class.get(topic)
        return None if data_class is None else home_region(self.config, data_class)

    async def _dead_letter(
        self, letters: list[tuple[ConsumerRecord[bytes, bytes], str, str]]
    ) -> None:
        data_class = self._topic_class[letters[0][0].topic]
        producer = await self._writer.producer(data_class)
        try:
            self.counters["dead_letters"] += await send_dead_letters(
                producer, self.region, letters, self.region)
        except Exception as e:
            log.error("%s: could not dead-letter %d state-log records: %r", self.region,
                      len(letters), e)

    def _fold(self, record: ConsumerRecord[bytes, bytes]) -> bool:
        """Fold one record; False for a record that is not a state-log record."""
        decoded = decode_record(record)
        if decoded is None:
            self.counters["rejected_records"] += 1
            return False
        state_id, rec = decoded
        data_class = self._topic_class[record.topic]
        key = (data_class, state_id)
        obj = self.objects.get(key)
        if obj is None:
            obj = self.objects[key] = StateObject(state_id)
        append_ms = int(record.timestamp)
        new = obj.fold(rec, append_ms)
        self._dirty.add(key)
        own = self.owned.get(key)
        if isinstance(rec, StateRequest):
            self.counters["forwarded_requests"] += 1
            if own is not None and not own.handing_off and (
                    new or rec.req_id in own.work.applied):
                self._queue.put_nowait(_Work(key, rec, append_ms))
        elif isinstance(rec, StateOp):
            if not new and not rec.duplicate and rec.host == self.host_id:
                self.counters["rejected_records"] += 1
        elif isinstance(rec, Claim) and rec.host == self.host_id:
            sent = self._claim_times.pop(key, time.monotonic())
            if obj.view.epoch == rec.epoch and obj.view.holder == self.host_id and new:
                self._become_owner(key, obj, rec, append_ms, sent)
        if own is not None and key in self.owned and (
                obj.view.epoch != own.epoch or obj.view.holder != self.host_id):
            self._demote(key, f"the log shows epoch {obj.view.epoch} owned by "
                              f"{obj.view.owner} ({obj.view.holder})")
        return True

    # -- ownership -----------------------------------------------------------------------
    def _become_owner(self, key: Key, obj: StateObject, claim: Claim, append_ms: int,
                      sent: float) -> None:
        margin = min(self.config.state.lease_margin_ms, claim.lease_ms // 4)
        own = _Owned(
            data_class=key[0], state_id=key[1], epoch=claim.epoch, lease_ms=claim.lease_ms,
            lease_until_ms=append_ms + claim.lease_ms,
            valid_until=lease_valid_until(sent * 1000, claim.lease_ms, margin) / 1000,
            work=obj.copy(), renew_sent=sent,
        )
        self.owned[key] = own
        self.counters["takeovers"] += 1
        for request, at in list(obj.pending.values()):
            self._queue.put_nowait(_Work(key, request, at))
        log.info("%s: %s owns state %s/%s at epoch %d (%d requests waiting)", self.region,
                 self.host_id, key[0], key[1], claim.epoch, len(obj.pending))

    def _demote(self, key: Key, reason: str) -> None:
        own = self.owned.pop(key, None)
        if own is None:
            return
        self.counters["demoted"] += 1
        for _request, _at, local in own.parked:
            if local is not None and not local.done():
                local.set_exception(NotOwner(f"{self.host_id} stopped owning {key[1]}: "
                                             f"{reason}"))
        log.info("%s: %s stops owning state %s/%s: %s", self.region, self.host_id, key[0],
                 key[1], reason)

    def owns(self, data_class: str, state_id: str) -> bool:
        """Whether this host owns the state and may serve it now."""
        own = self.owned.get((data_class, state_id))
        return own is not None and not own.handing_off and time.monotonic() < own.valid_until

    def submit_local(self, data_class: str, request: StateRequest
                     ) -> asyncio.Future[tuple[StateOp, Appended]]:
        """Run ``request`` here (this host owns the state): the future resolves to the
        acknowledged event, or fails with NotOwner (then forward it)."""
        future: asyncio.Future[tuple[StateOp, Appended]] = (
            asyncio.get_running_loop().create_future())
        if not self.owns(data_class, request.state_id):
            future.set_exception(NotOwner(f"{self.host_id} does not own {request.state_id}"))
            return future
        self._queue.put_nowait(_Work((data_class, request.state_id), request, _wall_ms(),
                                     future))
        return future

    # -- serving -------------------------------------------------------------------------
    async def _execute(self) -> None:
        while True:
            work = await self._queue.get()
            await self._run(work)

    async def _run(self, work: _Work) -> None:
        key, request = work.key, work.request
        own = self.owned.get(key)
        if own is None or own.handing_off:
            if work.local is not None and not work.local.done():
                work.local.set_exception(NotOwner(f"{self.host_id} does not own {key[1]}"))
            return
        if time.monotonic() >= own.valid_until:
            self._demote(key, "its lease ran out before a renewal landed")
            if work.local is not None and not work.local.done():
                work.local.set_exception(NotOwner("the lease ran out"))
            return
        fn = resolve(request.update_fn)
        op = execute(own.work, request, region=self.region, host=self.host_id,
                     lease_until_ms=own.lease_until_ms, now_ms=_wall_ms(),
                     sent_ms=work.sent_ms, update_fn=fn)
        if op is None:
            own.parked.append((request, work.sent_ms, work.local))
            return
        op = self._comply(own, op)
        if op.duplicate:
            self.counters["duplicates"] += 1
        else:
            own.work.apply(op, _wall_ms())
            self.counters["ops"] += 1
        own.inflight += 1
        try:
            appended = await self._writer.send(key[0], key[1], op)
        except EdgebusError as e:
            own.inflight -= 1
            self._demote(key, f"cannot append: {e}")
            if work.local is not None and not work.local.done():
                work.local.set_exception(NotOwner(str(e)))
            return
        self._acks.put_nowait((own, op, appended, work.local))
        if op.locks is not None and own.parked:
            self._unpark(key, own)

    def _comply(self, own: _Owned, op: StateOp) -> StateOp:
        """Refuse an operation whose new values need a stricter class than the state's
        (an update_fn may compute anything)."""
        if op.outcome != "ok" or not op.changes:
            return op
        data_class = own.data_class
        rules = self.config.compliance.rules()
        found = classify(dict(op.changes), default=data_class)
        allowed = set(allowed_regions(self.config, data_class))
        if allowed <= set(rules.allowed_regions(self.config.regions, found.classes)):
            return op
        return replace(op, outcome="refused", result=None, changes={}, removed=(),
                       cleared=False, locks=None, version=own.work.version,
                       message=(f"Compliance violation: cannot place data classified "
                                f"{found.label} in state {op.state_id!r} of class "
                                f"{data_class} (it may live in {', '.join(sorted(allowed))}); "
                                "use a state declared with that classification"))

    def _unpark(self, key: Key, own: _Owned) -> None:
        parked, own.parked = own.parked, []
        for request, sent_ms, local in parked:
            self._queue.put_nowait(_Work(key, request, sent_ms, local))

    async def _acknowledge(self) -> None:
        while True:
            own, op, appended, local = await self._acks.get()
            key = (own.data_class, own.state_id)
            try:
                where = await appended
            except Exception as e:
                own.inflight -= 1
                self._demote(key, f"an event was not appended: {e}")
                if local is not None and not local.done():
                    local.set_exception(NotOwner(str(e)))
                continue
            own.inflight -= 1
            if not acknowledged(where.append_ms, op.lease_until_ms):
                self._demote(key, f"an event landed at {where.append_ms}, after the lease "
                                  f"({op.lease_until_ms})")
                if local is not None and not local.done():
                    local.set_exception(NotOwner("the event landed after the lease"))
                continue
            if local is not None and not local.done():
                local.set_result((op, where))

    # -- timers: renewals, claims, parked locks, migration --------------------------------
    async def _tick(self) -> None:
        cfg = self.config.state
        while True:
            await asyncio.sleep(0.1)
            now = time.monotonic()
            wall = _wall_ms()
            for key, own in list(self.owned.items()):
                if own.parked:
                    self._unpark(key, own)
                if not own.renewing and not own.handing_off and (
                        now - own.renew_sent) * 1000 >= own.lease_ms / 3:
                    own.renewing = True
                    self._background(self._renew(key, own))
                if own.work.migratable and not own.handing_off:
                    self._maybe_migrate(key, own, wall)
            for key, obj in self.objects.items():
                if key in self.owned:
                    continue
                sent = self._claim_times.get(key)
                if sent is not None and now - sent < 5:
                    continue
                delay = claim_delay_ms(obj, self.region, self._allowed[key[0]],
                                       now_ms=wall, stagger_ms=cfg.stagger_ms)
                if delay is None:
                    self._claimable.pop(key, None)
                    continue
                since = self._claimable.setdefault(key, now)
                if (now - since) * 1000 >= delay:
                    self._claimable.pop(key, None)
                    self._claim(key, obj)

    def _claim(self, key: Key, obj: StateObject) -> None:
        # the call's lease_duration_ms may lengthen the owner's lease, never shorten it
        # below state.lease_ms (a lease shorter than a claim's round trip would leave the
        # owner no time to serve: claimed again and again)
        lease = self.config.state.lease_ms
        if obj.pending:
            lease = max(lease, next(iter(obj.pending.values()))[0].lease_ms)
        self._claim_times[key] = time.monotonic()
        self.counters["claims"] += 1
        claim = Claim(self.region, obj.view.epoch + 1, lease, self.host_id)

        async def send() -> None:
            try:
                await self._writer.append(key[0], key[1], claim)
            except EdgebusError as e:
                log.warning("%s: claim of %s failed: %s", self.region, key[1], e)
                self._claim_times.pop(key, None)

        self._background(send())

    async def _renew(self, key: Key, own: _Owned) -> None:
        sent = time.monotonic()
        try:
            where = await self._writer.append(
                own.data_class, own.state_id,
                Renew(self.region, own.epoch, own.lease_ms, self.host_id))
        except EdgebusError as e:
            log.warning("%s: renewal of %s failed: %s", self.region, own.state_id, e)
            own.renewing = False
            return
        own.renewing = False
        if self.owned.get(key) is not own:
            return
        if where.append_ms > own.lease_until_ms:
            self._demote(key, "a renewal landed after the lease had run out")
            return
        margin = min(self.config.state.lease_margin_ms, own.lease_ms // 4)
        own.lease_until_ms = max(own.lease_until_ms, where.append_ms + own.lease_ms)
        own.valid_until = max(own.valid_until,
                              lease_valid_until(sent * 1000, own.lease_ms, margin) / 1000)
        own.renew_sent = sent

    def _maybe_migrate(self, key: Key, own: _Owned, wall_ms: int) -> None:
        cfg = self.config.state
        counts = own.work.access_counts(wall_ms - cfg.migration_window_ms)
        target = migration_target(
            counts, self.region, threshold=cfg.migration_threshold,
            min_accesses=cfg.migration_min_accesses,
            allowed=frozenset(self._allowed[key[0]]),
        )
        if target is None:
            return
        own.handing_off = True
        self._background(self._hand_off(key, own, target, counts))

    async def _hand_off(self, key: Key, own: _Owned, target: str,
                        counts: dict[str, int]) -> None:
        while own.inflight > 0:  # noqa: ASYNC110 - a few ms: the events in flight land
            await asyncio.sleep(0.005)
        try:
            await self._writer.append(own.data_class, own.state_id,
                                      Handoff(self.region, own.epoch, target, self.host_id))
        except EdgebusError as e:
            log.warning("%s: hand-off of %s failed: %s", self.region, own.state_id, e)
        self.counters["handoffs"] += 1
        self._demote(key, f"migrating to {target} (accesses over the window: {counts})")

    # -- persistence -----------------------------------------------------------------------
    async def _open_db(self) -> None:
        if str(self.db_path) != ":memory:":
            self.db_path.parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(self.db_path)
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("CREATE TABLE IF NOT EXISTS state_objects (topic TEXT, state_id "
                         "TEXT, snapshot TEXT NOT NULL, PRIMARY KEY (topic, state_id))")
        await db.execute("CREATE TABLE IF NOT EXISTS state_positions (topic TEXT, "
                         "partition INTEGER, next_offset INTEGER NOT NULL, "
                         "PRIMARY KEY (topic, partition))")
        await db.commit()
        self._db = db
        by_topic = self._topic_class
        async with db.execute("SELECT topic, partition, next_offset FROM state_positions"
                              ) as cursor:
            async for topic, partition, offset in cursor:
                if topic in by_topic:
                    self._positions[TopicPartition(topic, partition)] = offset
        async with db.execute("SELECT topic, state_id, snapshot FROM state_objects") as cursor:
            async for topic, state_id, snap in cursor:
                if topic in by_topic:
                    self.objects[(by_topic[topic], state_id)] = StateObject.from_snapshot(
                        json.loads(snap))

    async def _persist(self) -> None:
        while True:
            await asyncio.sleep(self.config.state.snapshot_interval_ms / 1000)
            await self._save()

    async def _save(self) -> None:
        db = self._db
        if db is None or not self._dirty:
            return
        dirty, self._dirty = self._dirty, set()
        topic_of = {c: t for t, c in self._topic_class.items()}
        rows = [(topic_of[k[0]], k[1], json.dumps(self.objects[k].snapshot()))
                for k in dirty if k in self.objects]
        positions = [(tp.topic, tp.partition, off) for tp, off in self._positions.items()]
        await db.executemany("INSERT OR REPLACE INTO state_objects VALUES (?, ?, ?)", rows)
        await db.executemany("INSERT OR REPLACE INTO state_positions VALUES (?, ?, ?)",
                             positions)
        await db.commit()

    # -- views -----------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """What this host folds and owns (for ``edgebus status``)."""
        return {
            "host": self.host_id,
            "classes": list(self.classes),
            "states": len(self.objects),
            "owned": sorted(f"{c}/{s}" for c, s in self.owned),
            "counters": dict(self.counters),
        }

    def describe(self, data_class: str, state_id: str) -> dict[str, Any] | None:
        """The folded state (as of what this host has read), or ``None``."""
        obj = self.objects.get((data_class, state_id))
        if obj is None:
            return None
        v = obj.view
        return {
            "state_id": state_id, "classification": data_class, "value": obj.value(),
            "version": obj.version, "epoch": v.epoch, "owner": v.owner, "holder": v.holder,
            "lease_until_ms": v.lease_until_ms, "handed_to": v.handed_to,
            "locks": {h.name: {"holder": h.holder, "until_ms": h.until_ms}
                      for h in obj.locks.values()},
            "pending": len(obj.pending),
        }
