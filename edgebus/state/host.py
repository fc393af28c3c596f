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
* **serve**: requests run one at a time on the working copy
  (:func:`~edgebus.core.state_machine.execute`); each produces a state event appended
  to the log without waiting (pipelined), and a request is answered only when its
  event's append time is within the lease the owner knows
  (:func:`~edgebus.core.state_machine.acknowledged`). Anything else demotes the host.
* **renew** every third of the lease; stop serving ``lease_margin_ms`` before the
  lease ends by the host's own clock if a renewal did not land.
* **migrate** (``enable_migration``): when another allowed region made at least
  ``migration_threshold`` of the accesses over the window, wait for the events in
  flight, append a hand-off to that region and stop serving; its hosts claim at once.

Requests that were not answered stay pending in the log's fold, so whoever owns the
state next runs them; a re-sent request already answered gets its first answer.

:class:`StateHost` puts together the parts, one module each:
:mod:`~edgebus.state.log_reader` (consumers, folding, dead letters),
:mod:`~edgebus.state.ownership_loop` (claims, renewals, hand-offs, demotion, releases),
:mod:`~edgebus.state.executor` (serial execution, pipelined appends, acknowledgement)
and :mod:`~edgebus.state.snapshots` (the SQLite snapshot of folds and positions), around
the records of :mod:`~edgebus.state.owned`.

Poison records (:mod:`~edgebus.state.poison`): a state-log record that fails on its own
(not a record, values no host could carry, a fold or a run that raises) is not folded or
not run, goes to the dead-letter topic with the reason (``dead_letters`` in
:meth:`StateHost.status`), and the host goes on; a restart reads past it the same way.
The decoder refuses the records no host may fold
(:func:`~edgebus.wire.state_log.record_refusal`), so every reader skips the same ones. A
request whose answer cannot be written is answered with a refusal, and dead-lettered.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from edgebus.config import EdgeConfig, default_state_dir
from edgebus.core.ownership import Claim
from edgebus.core.state_machine import StateLogRecord, StateObject, StateOp, StateRequest
from edgebus.state.functions import import_function_modules
from edgebus.state.guarded_executor import GuardedExecutor
from edgebus.state.log import (
    Appended,
    StateLogWriter,
    ensure_state_log,
    home_region,
    hosted_classes,
    state_partition,
    state_topic,
)
from edgebus.state.log_reader import LogReader
from edgebus.state.owned import Folds, HostContext, Key, NotOwner, OwnedState, Work
from edgebus.state.ownership_loop import OwnershipLoop
from edgebus.state.poison import STAGE, letter_of
from edgebus.state.snapshots import Snapshots

__all__ = ["NotOwner", "StateHost", "default_state_db"]

log = logging.getLogger("edgebus.state")


def default_state_db(region: str) -> Path:
    """``<state dir>/regions/<region>/states-<region>.db``."""
    return default_state_dir() / "regions" / region / f"states-{region}.db"


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
        self.counters: dict[str, int] = {
            "ops": 0, "forwarded_requests": 0, "claims": 0, "takeovers": 0, "demoted": 0,
            "handoffs": 0, "rejected_records": 0, "dead_letters": 0, "duplicates": 0,
            "refused_requests": 0,
        }
        folds = Folds({state_topic(config, c): c for c in self.classes})
        self.objects: dict[Key, StateObject] = folds.objects
        self._writer = StateLogWriter(config, f"{self.host_id}-state")
        self._tasks: list[asyncio.Task[None]] = []
        self._side_tasks: set[asyncio.Future[None]] = set()
        self._failure: BaseException | None = None
        self._snapshots = Snapshots(self.db_path, folds)
        context = HostContext(config, region, self.host_id, self._writer, self.counters)
        self._ownership = OwnershipLoop(context, self.classes, self._background)
        self.owned: dict[Key, OwnedState] = self._ownership.owned
        self._executor = GuardedExecutor(context, self._ownership, self._refused_request)
        self._reader = LogReader(context, folds, self._on_folded)

    # -- life cycle --------------------------------------------------------------------
    async def start(self) -> None:
        """Load the snapshot, create the logs, read them to their end, then serve."""
        import_function_modules()
        for data_class in self.classes:
            await ensure_state_log(self.config, data_class)
        await self._snapshots.open()
        try:
            await self._reader.catch_up(await self._reader.open())
        except BaseException:
            await self.stop()
            raise
        for consumer in self._reader.consumers:
            self._spawn(self._reader.read(consumer), "state log reader")
        self._spawn(self._executor.execute(), "state executor")
        self._spawn(self._executor.acknowledge(), "state acknowledgements")
        self._spawn(self._ownership.run(self.objects, self._executor.unpark), "state ticker")
        self._spawn(self._snapshots.run(self.config.state.snapshot_interval_ms / 1000),
                    "state snapshots")
        log.info("%s: state host %s up (classes %s, %d states folded)", self.region,
                 self.host_id, ", ".join(self.classes), len(self.objects))

    async def stop(self) -> None:
        """Stop serving: release the owned states (so another host may claim them at
        once; were this process killed instead, they fail over when their lease ends)
        and save a snapshot."""
        if self._tasks:
            await self._ownership.release_all()
        for task in [*self._tasks, *self._side_tasks]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._side_tasks, return_exceptions=True)
        self._tasks.clear()
        for key in list(self.owned):
            self._ownership.demote(key, "the host is stopping")
        await self._reader.close()
        await self._writer.stop()
        await self._snapshots.close()

    async def wait(self) -> None:
        """Run until a component fails (its error is raised)."""
        while True:
            if self._failure is not None:
                raise self._failure
            await asyncio.sleep(0.5)

    def _background(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=f"{self.region} {name}")

        def done(t: asyncio.Task[None]) -> None:
            if not t.cancelled() and t.exception() is not None and self._failure is None:
                self._failure = t.exception()
                log.error("%s: %s failed: %r", self.region, name, t.exception())

        task.add_done_callback(done)
        self._tasks.append(task)

    # -- what a folded record means for this host ----------------------------------------
    def _on_folded(self, key: Key, obj: StateObject, rec: StateLogRecord, append_ms: int,
                   new: bool) -> None:
        """Decide, then do: run a forwarded request, take a state whose claim the log
        granted, count a rejected event of ours, step down when the log shows another
        owner."""
        own = self.owned.get(key)
        if isinstance(rec, StateRequest):
            self.counters["forwarded_requests"] += 1
            if own is not None and not own.handing_off and (
                    new or rec.req_id in own.work.applied):
                self._executor.enqueue(Work(key, rec, append_ms))
        elif isinstance(rec, StateOp):
            if not new and not rec.duplicate and rec.host == self.host_id:
                self.counters["rejected_records"] += 1
        elif (isinstance(rec, Claim) and rec.host == self.host_id
              and self._ownership.claim_landed(key, obj, rec, append_ms, new)):
            self._executor.queue_waiting(key, obj)  # granted: run what waits for it
        if own is not None and key in self.owned and (
                obj.view.epoch != own.epoch or obj.view.holder != self.host_id):
            self._ownership.demote(key, f"the log shows epoch {obj.view.epoch} owned by "
                                        f"{obj.view.owner} ({obj.view.holder})")

    def _refused_request(self, work: Work, reason: str) -> None:
        """Dead-letter a request the owner failed to run (in the log's home region)."""
        data_class, state_id = work.key
        if home_region(self.config, data_class) != self.region:
            return  # the home region's hosts keep the log's dead letters
        letter = letter_of(state_topic(self.config, data_class),
                           state_partition(state_id, self.config.kafka.partitions), state_id,
                           work.request)
        self._background(self._reader.dead_letter([(letter, reason, STAGE)]))

    # -- serving local callers -----------------------------------------------------------
    def owns(self, data_class: str, state_id: str) -> bool:
        """Whether this host owns the state and may serve it now."""
        return self._ownership.owns((data_class, state_id))

    def submit_local(self, data_class: str, request: StateRequest
                     ) -> asyncio.Future[tuple[StateOp, Appended]]:
        """Run ``request`` here (this host owns the state): the future resolves to the
        acknowledged event, or fails with NotOwner (then forward it)."""
        return self._executor.submit_local(data_class, request)

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
