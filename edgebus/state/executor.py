"""A state host's serial executor: requests run one at a time, events are pipelined.

One queue serves every state the host owns. Each request runs on the owner's working
copy (:func:`~edgebus.core.state_machine.execute`, pure); its event is applied to the
copy and handed to the producer without waiting for the broker, so the next request
runs meanwhile. A second loop takes the appends as they land and answers a local caller
only when its event's append time is within the lease the owner knew
(:func:`~edgebus.core.state_machine.acknowledged`); anything else demotes the host.
A lock request that must wait is parked on its state and queued again when the lock
table changes (and every 100 ms, by the ownership loop). A request that names a lease
(``lease_duration_ms``) and runs makes it the owner's lease
(:meth:`~edgebus.state.ownership_loop.OwnershipLoop.set_lease`).

An answer is checked before it touches the working copy: its new values classified
(:func:`comply`) and its record encoded, within Kafka's size. An answer no record can
carry (values that cannot be classified, text that is not Unicode, a record too large)
is replaced by a refusal of its request (state unchanged, the reason in its message),
which is written instead, so the caller gets an answer and the host goes on serving the
state; the request is counted in ``refused_requests`` and reported
(:meth:`Executor._report_refused`: the host dead-letters it). Trouble appending (Kafka,
the network) demotes the host, whose working copy goes with it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import replace
from typing import Any

import orjson

from edgebus.config import EdgeConfig
from edgebus.core.classification import Classification, classify
from edgebus.core.ownership import lease_asked
from edgebus.core.state_machine import StateObject, StateOp, StateRequest, acknowledged, execute
from edgebus.errors import EdgebusError, InvalidInput
from edgebus.state.functions import resolve
from edgebus.state.log import Appended, allowed_regions
from edgebus.state.owned import (
    HostContext,
    HostPart,
    Key,
    NotOwner,
    OwnedState,
    Work,
    tell_not_owner,
    wall_ms,
)
from edgebus.state.ownership_loop import OwnershipLoop
from edgebus.state.poison import transient

__all__ = ["Executor", "classify_values", "comply", "failure_reason"]

log = logging.getLogger("edgebus.state")

#: an event handed to the producer: its state, the event, the append, the local caller
_Pending = tuple[OwnedState, StateOp, asyncio.Future[Appended], asyncio.Future[Any] | None]


def _json_size(value: object) -> int:
    """The bytes of ``value`` as compact JSON (0 when it is not JSON: classification
    then walks it, in linear time, and the log's encoder refuses it)."""
    try:
        return len(orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS))
    except TypeError:  # an integer beyond 64 bits, a type orjson does not know
        try:
            return len(json.dumps(value, separators=(",", ":")))
        except (TypeError, ValueError):
            return 0


def classify_values(config: EdgeConfig, values: object, data_class: str) -> Classification:
    """Classify a state's new ``values`` as its owner does. Refused with InvalidInput,
    before any classification, when their JSON is over ``kafka.max_batch_bytes`` (no
    state-log record could carry them) or, by :func:`classify`, when a field name is
    over ``compliance.max_field_name_chars``."""
    size, limit = _json_size(values), config.kafka.max_batch_bytes - 1024
    if size > limit:
        raise InvalidInput(
            f"the new values are {size} bytes of JSON, over kafka.max_batch_bytes "
            f"({config.kafka.max_batch_bytes}) less 1024 for the record: store large "
            "blobs elsewhere and keep a reference in the state, or raise "
            "kafka.max_batch_bytes"
        )
    compliance = config.compliance
    return classify(
        values, default=data_class,
        max_field_name_chars=compliance.max_field_name_chars,
        cache_bytes=compliance.classifier_cache_bytes,
    )


def comply(config: EdgeConfig, data_class: str, version: int, op: StateOp) -> StateOp:
    """``op``, or its refusal when its new values need a stricter class than the
    state's ``data_class`` (an update_fn may compute anything); ``version`` is the
    state's version before ``op``.

    Raises InvalidInput, quickly, for new values that cannot be classified (over
    ``kafka.max_batch_bytes``, a field name over ``compliance.max_field_name_chars``,
    nested too deep): a request written straight to the state log is checked here, not
    by a client, and the host refuses a request whose run raises (a dead letter, and
    StateOperationRefused for its caller)."""
    if op.outcome != "ok" or not op.changes:
        return op
    rules = config.compliance.rules()
    found = classify_values(config, dict(op.changes), data_class)
    allowed = set(allowed_regions(config, data_class))
    if allowed <= set(rules.allowed_regions(config.regions, found.classes)):
        return op
    return replace(op, outcome="refused", result=None, changes={}, removed=(),
                   cleared=False, locks=None, version=version,
                   message=(f"Compliance violation: cannot place data classified "
                            f"{found.label} in state {op.state_id!r} of class "
                            f"{data_class} (it may live in {', '.join(sorted(allowed))}); "
                            "use a state declared with that classification"))


def failure_reason(request: StateRequest, error: BaseException) -> str:
    """Why running ``request`` failed at the owner, with ``error`` (valid UTF-8 text,
    whatever the error holds: it goes in a refusal's message and a dead letter)."""
    reason = (f"running {request.operation} failed at the owner: "
              f"{type(error).__name__}: {str(error)[:500]}")
    return reason.encode("utf-8", "backslashreplace").decode("utf-8")


def _refusal(op: StateOp, version: int, reason: str) -> StateOp:
    """``op`` turned into the refusal of its request: the state (at ``version``) as it
    was, ``reason`` in its message."""
    return replace(op, outcome="refused", result=None, changes={}, removed=(),
                   cleared=False, locks=None, version=version, message=reason)


class Executor(HostPart):
    """The host's one queue of requests, and the acknowledgement of their events."""

    def __init__(self, host: HostContext, ownership: OwnershipLoop) -> None:
        super().__init__(host)
        self._ownership = ownership
        self._queue: asyncio.Queue[Work] = asyncio.Queue()
        self._acks: asyncio.Queue[_Pending] = asyncio.Queue()

    # -- what to run ---------------------------------------------------------------------
    def enqueue(self, work: Work) -> None:
        """Queue a request (of a state this host owns)."""
        self._queue.put_nowait(work)

    def queue_waiting(self, key: Key, obj: StateObject) -> None:
        """Queue the requests waiting in the log for a state this host just took, in
        log order."""
        for request, at in list(obj.pending.values()):
            self._queue.put_nowait(Work(key, request, at))

    def submit_local(self, data_class: str, request: StateRequest
                     ) -> asyncio.Future[tuple[StateOp, Appended]]:
        """Queue a local caller's request; see :meth:`StateHost.submit_local`."""
        future: asyncio.Future[tuple[StateOp, Appended]] = (
            asyncio.get_running_loop().create_future())
        if not self._ownership.owns((data_class, request.state_id)):
            future.set_exception(NotOwner(f"{self.host_id} does not own {request.state_id}"))
            return future
        self._queue.put_nowait(Work((data_class, request.state_id), request, wall_ms(),
                                    future))
        return future

    def unpark(self, key: Key, own: OwnedState) -> None:
        """Queue the lock requests parked on ``own`` again (the lock table changed, or
        time passed)."""
        parked, own.parked = own.parked, []
        for request, sent_ms, local in parked:
            self._queue.put_nowait(Work(key, request, sent_ms, local))

    # -- running -------------------------------------------------------------------------
    async def execute(self) -> None:
        """Run the queued requests one at a time, until cancelled."""
        while True:
            work = await self._queue.get()
            await self._run(work)

    def _serving(self, work: Work) -> OwnedState | None:
        """The owned state ``work`` runs on, or None (its local caller is told)."""
        key = work.key
        own = self._ownership.owned.get(key)
        if own is None or own.handing_off:
            tell_not_owner(work.local, f"{self.host_id} does not own {key[1]}")
            return None
        if time.monotonic() >= own.valid_until:
            self._ownership.demote(key, "its lease ran out before a renewal landed")
            tell_not_owner(work.local, "the lease ran out")
            return None
        return own

    async def _run(self, work: Work) -> None:
        request = work.request
        own = self._serving(work)
        if own is None:
            return
        fn = resolve(request.update_fn)
        op = execute(own.work, request, region=self.region, host=self.host_id,
                     lease_until_ms=own.lease_until_ms, now_ms=wall_ms(),
                     sent_ms=work.sent_ms, update_fn=fn,
                     default_lease_ms=self.config.state.lease_ms)
        if op is None:
            own.parked.append((request, work.sent_ms, work.local))
            return
        op, value = self._writable(work, own, op)
        if op.duplicate:
            self._counters["duplicates"] += 1
        else:
            own.work.apply(op, wall_ms())
            self._counters["ops"] += 1
            asked = lease_asked(request.lease_ms)
            if asked is not None and op.outcome != "refused":
                self._ownership.set_lease(work.key, own, asked)
        await self._append(work, own, op, value)

    def _writable(self, work: Work, own: OwnedState, op: StateOp) -> tuple[StateOp, bytes]:
        """``op`` checked (:func:`comply`) and its record's value; when no record can
        carry it, the refusal of its request and the refusal's value instead (reported:
        :meth:`_report_refused`). Pure: the working copy is not touched. A duplicate
        answer, or a refusal that cannot be written either, raises."""
        try:
            op = comply(self.config, own.data_class, own.work.version, op)
            return op, self._writer.encode(own.state_id, op)
        except Exception as e:  # pure work: no transient trouble here
            if op.duplicate:
                raise
            reason = failure_reason(work.request, e)
            refusal = _refusal(op, own.work.version, reason)
            try:
                value = self._writer.encode(own.state_id, refusal)
            except Exception:
                raise e from None
        self._report_refused(work, reason)
        return refusal, value

    def _report_refused(self, work: Work, reason: str) -> None:
        """Told of a request this host refused because it failed to run it: counted and
        logged (the host's executor also dead-letters it)."""
        self._counters["refused_requests"] += 1
        log.error("%s: state %s/%s: %s", self.region, work.key[0], work.key[1], reason)

    async def _append(self, work: Work, own: OwnedState, op: StateOp, value: bytes) -> None:
        """Hand ``op`` (applied to the working copy already, its record's ``value``
        encoded) to the producer, and its append to the acknowledgement loop; demote the
        host when it cannot append (its working copy goes with it)."""
        key = work.key
        own.inflight += 1
        try:
            appended = await self._writer.send(key[0], key[1], op, value=value)
        except BaseException as e:
            own.inflight -= 1
            if not (isinstance(e, EdgebusError) or transient(e)):
                raise
            self._ownership.demote(key, f"cannot append: {e}")
            tell_not_owner(work.local, str(e))
            return
        self._acks.put_nowait((own, op, appended, work.local))
        if op.locks is not None and own.parked:
            self.unpark(key, own)

    # -- acknowledging -------------------------------------------------------------------
    async def acknowledge(self) -> None:
        """Take the events as they land, in order; answer each local caller, or demote
        the host when an event did not land within its lease."""
        while True:
            own, op, appended, local = await self._acks.get()
            key = (own.data_class, own.state_id)
            try:
                where = await appended
            except Exception as e:
                own.inflight -= 1
                self._ownership.demote(key, f"an event was not appended: {e}")
                tell_not_owner(local, str(e))
                continue
            own.inflight -= 1
            if not acknowledged(where.append_ms, op.lease_until_ms):
                self._ownership.demote(key, f"an event landed at {where.append_ms}, after "
                                            f"the lease ({op.lease_until_ms})")
                tell_not_owner(local, "the event landed after the lease")
                continue
            if local is not None and not local.done():
                local.set_result((op, where))
