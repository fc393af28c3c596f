"""State machines (EdgeStateMachine): durable objects folded from one Kafka-ordered log.

Every record about a state id sits in one partition of its state log, in one order
that every reader sees, each with the broker's append time. The records:

* ownership (:mod:`edgebus.core.ownership`): claims, renewals, hand-offs, releases;
* :class:`StateRequest`: a caller asks the owner to run an operation (the forward);
* :class:`StateOp`: the owner ran a request (the state event): its outcome, the
  result returned to the caller, and the changes to the state.

:class:`StateObject` is the fold of those records. A :class:`StateOp` is applied only
when it is *accepted*: written under the current epoch by the current owner (region
and host) and appended while that owner's lease ran (:meth:`StateObject.accepts`), and
only once per request id. So an old owner that comes back after losing its lease
changes nothing anyone applies (fencing), and a request re-sent after a crash is
answered, never run twice.

The owner runs requests serially with :func:`execute` on its own copy of the object,
which computes the :class:`StateOp`; :meth:`StateObject.apply` then applies it (the
same code every reader runs when the record comes back from the log). An owner
acknowledges an operation only when the record's append time is within the lease it
knows (:func:`acknowledged`); every such record is accepted by the fold, because a
claim of the next epoch can only be appended after that lease ends.

Pure: no I/O, no clock; times (broker append times, in ms) are passed in.
"""

from __future__ import annotations

import copy
import json
import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, get_args

from edgebus.core.ownership import (
    Claim,
    Handoff,
    OwnerView,
    Release,
    Renew,
    fold_ownership,
)
from edgebus.errors import InvalidInput

__all__ = [
    "DEFAULT_LEASE_MS",
    "DEFAULT_LOCK_NAME",
    "MAX_APPLIED",
    "OPERATIONS",
    "LockHold",
    "Operation",
    "Outcome",
    "StateLogRecord",
    "StateObject",
    "StateOp",
    "StateRequest",
    "acknowledged",
    "claim_delay_ms",
    "execute",
    "validate_request",
]

Operation = Literal["get", "set", "update", "delete", "increment", "append", "lock", "unlock"]
OPERATIONS: tuple[Operation, ...] = get_args(Operation)
#: what the owner did with a request: ran it, refused it (state unchanged, the reason
#: in ``message``), or gave up waiting for a lock (``timeout``)
Outcome = Literal["ok", "refused", "timeout"]
OUTCOMES: tuple[Outcome, ...] = get_args(Outcome)
#: request ids remembered per state (the newest ones): a re-sent request among them
#: gets its first answer again instead of running twice
MAX_APPLIED = 4096
MUTATING: frozenset[str] = frozenset({"set", "update", "delete", "increment", "append"})
_DEFAULT_FIELD = {"increment": "value", "append": "items"}
#: the lock a ``lock``/``unlock`` call names when it names none: the state's own lock,
#: one per state (the SDK fills it in; a request on the log always names its lock)
DEFAULT_LOCK_NAME = "state"
#: a lock's lease when its request names none and the owner is told no other
#: (``state.lease_ms``'s default; a state host passes its own ``state.lease_ms``)
DEFAULT_LEASE_MS = 10_000


@dataclass(frozen=True, slots=True)
class StateRequest:
    """A call on state ``state_id``: run ``operation`` at the owner.

    ``key`` names a field of the state (``None``: the whole state; ``increment`` then
    uses the field ``value`` and ``append`` the field ``items``). ``holder`` identifies
    the caller for locks. ``lease_ms`` is the lease the call asks for (its
    ``lease_duration_ms``; 0: it names none): how long a granted lock lasts unless
    renewed (locking again) or unlocked (none named: the owner's ``state.lease_ms``),
    and the owner's lease of the state from this call on
    (:func:`~edgebus.core.ownership.lease_asked`);
    ``timeout_ms`` how long a ``lock`` waits for the lock (and how long the caller
    waits for an answer). ``update_fn`` names a function
    registered at the owner; without it ``update`` merges the ``value`` dict into the
    state (or into the field ``key``).
    """

    state_id: str
    req_id: str
    operation: Operation
    from_region: str
    holder: str = ""
    key: str | None = None
    value: Any = None
    increment: float = 1
    update_fn: str | None = None
    lock_name: str | None = None
    lease_ms: int = 0
    timeout_ms: int = 5_000
    enable_migration: bool = False


@dataclass(frozen=True, slots=True)
class LockHold:
    """Lock ``name`` is held by ``holder`` until ``until_ms`` (the owner's clock, ms
    since the epoch, when it granted the lock, plus the lease)."""

    name: str
    holder: str
    until_ms: int


@dataclass(frozen=True, slots=True)
class StateOp:
    """What the owner did with request ``req_id``: the state event.

    ``changes`` are the fields set, ``removed`` the fields deleted, ``cleared`` whether
    the whole state was deleted first; ``locks`` the lock table after (``None``:
    unchanged). ``lease_until_ms`` is the owner's lease as it knew it when it wrote the
    record (the caller's acknowledgement check). ``duplicate`` marks an answer to a
    re-sent request that had already run: it repeats the first answer, changes nothing.
    """

    state_id: str
    req_id: str
    operation: Operation
    region: str
    host: str
    epoch: int
    lease_until_ms: int
    from_region: str
    outcome: Outcome
    result: Any = None
    version: int = 0
    changes: Mapping[str, Any] = field(default_factory=dict)
    removed: tuple[str, ...] = ()
    cleared: bool = False
    locks: tuple[LockHold, ...] | None = None
    message: str = ""
    duplicate: bool = False
    migratable: bool = False


StateLogRecord = StateRequest | StateOp | Claim | Renew | Handoff | Release


@dataclass(frozen=True, slots=True)
class Answer:
    """The first answer to a request, kept to answer a re-send the same way."""

    outcome: Outcome
    result: Any
    version: int
    message: str
    epoch: int


def validate_request(request: StateRequest) -> None:
    """Raise InvalidInput, saying what to pass, for a request no owner could run."""
    op = request.operation
    if op not in OPERATIONS:
        raise InvalidInput(
            f"unknown state operation {op!r}: use one of {', '.join(OPERATIONS)}"
        )
    if not request.state_id:
        raise InvalidInput("state_id is empty: name the state (any non-empty string)")
    if op in ("lock", "unlock"):
        if not request.lock_name:
            raise InvalidInput(f"{op} needs lock_name: the name of the lock in the state")
        if not request.holder:
            raise InvalidInput(f"{op} needs a holder: who holds the lock")
    if request.lease_ms < 0:
        raise InvalidInput(f"lease_duration_ms must be positive (or 0: none named), got "
                           f"{request.lease_ms}")
    if request.timeout_ms < 0:
        raise InvalidInput(f"timeout_ms must be at least 0, got {request.timeout_ms}")
    if op == "set" and request.key is None and not isinstance(request.value, dict):
        raise InvalidInput(
            "set without a key replaces the whole state, so value must be an object "
            "(a dict); pass key= to set one field"
        )
    if op == "increment" and (
        isinstance(request.increment, bool)
        or not isinstance(request.increment, int | float)
        or not math.isfinite(request.increment)
    ):
        raise InvalidInput(f"increment must be a finite number, got {request.increment!r}")
    if op == "update" and request.update_fn is None and not isinstance(request.value, dict):
        raise InvalidInput(
            "update needs update_fn (a function registered at the owner) or a value "
            "object (a dict) to merge into the state"
        )
    if op in ("set", "update", "append"):
        try:
            json.dumps(request.value, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise InvalidInput(f"value must be JSON (objects, lists, strings, finite "
                               f"numbers, booleans, null): {e}") from e


class StateObject:
    """The fold of one state id's records: ownership, data, locks, pending requests."""

    def __init__(self, state_id: str) -> None:
        self.state_id = state_id
        self.view = OwnerView()
        self.data: dict[str, Any] = {}
        self.version = 0
        self.locks: dict[str, LockHold] = {}
        self.applied: dict[str, Answer] = {}
        self.pending: dict[str, tuple[StateRequest, int]] = {}
        self.migratable = False
        #: (append ms, caller region) of accepted operations, oldest first
        self.accesses: deque[tuple[int, str]] = deque(maxlen=MAX_APPLIED)
        self.last_append_ms = 0

    # -- the fold -----------------------------------------------------------------
    def fold(self, record: StateLogRecord, append_ms: int) -> bool:
        """Apply ``record`` appended at ``append_ms``; whether it changed anything."""
        self.last_append_ms = max(self.last_append_ms, append_ms)
        if isinstance(record, StateRequest):
            if record.req_id in self.applied or record.req_id in self.pending:
                return False
            self.pending[record.req_id] = (record, append_ms)
            return True
        if isinstance(record, StateOp):
            if record.duplicate or not self.accepts(record, append_ms):
                return False
            self.apply(record, append_ms)
            return True
        before = self.view
        self.view = fold_ownership(self.view, record, append_ms)
        return self.view != before

    def accepts(self, op: StateOp, append_ms: int) -> bool:
        """Whether ``op``, appended at ``append_ms``, is the state's next event: the
        current owner's, within its lease, for a request not answered yet."""
        v = self.view
        return (
            op.epoch == v.epoch
            and v.epoch > 0
            and (op.region, op.host) == (v.owner, v.holder)
            and append_ms <= v.lease_until_ms
            and op.req_id not in self.applied
        )

    def apply(self, op: StateOp, append_ms: int) -> None:
        """Apply an accepted (or, at the owner, just executed) operation."""
        if op.cleared:
            self.data.clear()
        for name in op.removed:
            self.data.pop(name, None)
        for name, value in op.changes.items():
            self.data[name] = copy.deepcopy(value)
        if op.locks is not None:
            self.locks = {hold.name: hold for hold in op.locks}
        self.version = op.version
        self.migratable = self.migratable or op.migratable
        self.pending.pop(op.req_id, None)
        self.applied[op.req_id] = Answer(op.outcome, op.result, op.version, op.message,
                                         op.epoch)
        while len(self.applied) > MAX_APPLIED:
            del self.applied[next(iter(self.applied))]
        self.accesses.append((append_ms, op.from_region))

    # -- views ----------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """A JSON-able copy of the whole fold (for persistence)."""
        v = self.view
        return copy.deepcopy({
            "state_id": self.state_id,
            "view": [v.epoch, v.owner, v.lease_until_ms, v.handed_to, v.holder],
            "data": self.data,
            "version": self.version,
            "locks": [[h.name, h.holder, h.until_ms] for h in self.locks.values()],
            "applied": [[r, a.outcome, a.result, a.version, a.message, a.epoch]
                        for r, a in self.applied.items()],
            "pending": [[_request_json(req), at] for req, at in self.pending.values()],
            "migratable": self.migratable,
            "accesses": list(self.accesses),
            "last_append_ms": self.last_append_ms,
        })

    @classmethod
    def from_snapshot(cls, snap: Mapping[str, Any]) -> StateObject:
        """The inverse of :meth:`snapshot`."""
        obj = cls(str(snap["state_id"]))
        epoch, owner, until, handed, holder = snap["view"]
        obj.view = OwnerView(int(epoch), owner, int(until), handed, str(holder))
        obj.data = dict(snap["data"])
        obj.version = int(snap["version"])
        obj.locks = {n: LockHold(n, h, int(u)) for n, h, u in snap["locks"]}
        obj.applied = {r: Answer(o, res, int(ver), m, int(e))
                       for r, o, res, ver, m, e in snap["applied"]}
        obj.pending = {}
        for raw, at in snap["pending"]:
            request = StateRequest(**raw)
            obj.pending[request.req_id] = (request, int(at))
        obj.migratable = bool(snap["migratable"])
        obj.accesses.extend((int(t), str(r)) for t, r in snap["accesses"])
        obj.last_append_ms = int(snap["last_append_ms"])
        return obj

    def copy(self) -> StateObject:
        """A deep copy (the owner's working copy)."""
        return StateObject.from_snapshot(self.snapshot())

    def access_counts(self, since_ms: int) -> dict[str, int]:
        """Accepted operations per caller region appended at or after ``since_ms``."""
        counts: dict[str, int] = {}
        for at, region in self.accesses:
            if at >= since_ms:
                counts[region] = counts.get(region, 0) + 1
        return counts

    def value(self, key: str | None = None) -> Any:
        """The whole state, or field ``key`` (``None`` when absent)."""
        return copy.deepcopy(self.data if key is None else self.data.get(key))


def _request_json(request: StateRequest) -> dict[str, Any]:
    return {name: getattr(request, name) for name in StateRequest.__slots__}


def acknowledged(op_append_ms: int, lease_until_ms: int) -> bool:
    """Whether an owner (or a caller reading its answer) may take an operation record
    appended at ``op_append_ms`` as done: it is within the lease the owner knew when it
    wrote it (``StateOp.lease_until_ms``). The owner learns its lease only from its
    own granted claim and renewals, which lie earlier in the log, and another claim is
    granted only after that lease ends, so every acknowledged record is accepted by
    :meth:`StateObject.accepts`. (A record the fold accepts but the owner could not
    acknowledge is answered again when the caller re-sends the request.)"""
    return op_append_ms <= lease_until_ms


UpdateFn = Callable[[Any], Any]


def execute(
    obj: StateObject,
    request: StateRequest,
    *,
    region: str,
    host: str,
    lease_until_ms: int,
    now_ms: int,
    sent_ms: int,
    update_fn: UpdateFn | None = None,
    default_lease_ms: int = DEFAULT_LEASE_MS,
) -> StateOp | None:
    """What the owner does with ``request`` now: the record to append, or ``None``
    when the request waits (a lock held by someone else, before the request's
    deadline ``sent_ms + timeout_ms``). Does not change ``obj``: apply the result.
    ``default_lease_ms`` is a lock's lease when the request names none (the owner's
    ``state.lease_ms``).

    A request already answered gets its first answer again (``duplicate``); a request
    no owner could run is refused (:func:`validate_request` says why); any other runs
    by its operation (:data:`_RUNNERS`)."""
    run = _Run(obj, request, region, host, lease_until_ms, now_ms, sent_ms, update_fn,
               default_lease_ms)
    answer = obj.applied.get(request.req_id)
    if answer is not None:
        return run.again(answer)
    try:
        validate_request(request)
    except InvalidInput as e:
        return run.op("refused", message=str(e))
    return _RUNNERS[request.operation](run)


class _Run(NamedTuple):
    """One request being run by the owner: what the operations read, and the records
    they answer with (every one names the request, the owner and its lease)."""

    obj: StateObject
    request: StateRequest
    region: str
    host: str
    lease_until_ms: int
    now_ms: int
    sent_ms: int
    update_fn: UpdateFn | None
    default_lease_ms: int = DEFAULT_LEASE_MS

    def op(
        self,
        outcome: Outcome,
        result: Any = None,
        *,
        message: str = "",
        changes: Mapping[str, Any] | None = None,
        removed: tuple[str, ...] = (),
        cleared: bool = False,
        locks: tuple[LockHold, ...] | None = None,
        bump: bool = False,
    ) -> StateOp:
        """The record of this run: ``bump`` when it changes the state (a new version)."""
        obj, request = self.obj, self.request
        return StateOp(
            state_id=obj.state_id, req_id=request.req_id, operation=request.operation,
            region=self.region, host=self.host, epoch=obj.view.epoch,
            lease_until_ms=self.lease_until_ms, from_region=request.from_region,
            outcome=outcome, result=result, version=obj.version + (1 if bump else 0),
            changes=dict(changes or {}), removed=removed, cleared=cleared, locks=locks,
            message=message, migratable=request.enable_migration,
        )

    def again(self, answer: Answer) -> StateOp:
        """The first answer to this request, repeated (a duplicate changes nothing)."""
        obj, request = self.obj, self.request
        return StateOp(
            state_id=obj.state_id, req_id=request.req_id, operation=request.operation,
            region=self.region, host=self.host, epoch=obj.view.epoch,
            lease_until_ms=self.lease_until_ms, from_region=request.from_region,
            outcome=answer.outcome, result=answer.result, version=answer.version,
            message=answer.message, duplicate=True,
        )


# -- the operations: one function each, the request already validated -------------


def _get(run: _Run) -> StateOp:
    return run.op("ok", run.obj.value(run.request.key))


def _set(run: _Run) -> StateOp:
    name, value = run.request.key, run.request.value
    if name is None:
        assert isinstance(value, dict)
        new = {str(k): v for k, v in value.items()}
        gone = tuple(k for k in run.obj.data if k not in new)
        return run.op("ok", value, changes=new, removed=gone, bump=True)
    return run.op("ok", value, changes={name: value}, bump=True)


def _delete(run: _Run) -> StateOp:
    name, obj = run.request.key, run.obj
    if name is None:
        return run.op("ok", obj.value(), cleared=True, bump=True)
    return run.op("ok", obj.value(name), removed=(name,) if name in obj.data else (),
                  bump=name in obj.data)


def _increment(run: _Run) -> StateOp:
    request = run.request
    target = request.key or _DEFAULT_FIELD["increment"]
    current = run.obj.data.get(target, 0)
    if isinstance(current, bool) or not isinstance(current, int | float):
        return run.op("refused", message=f"cannot increment field {target!r}: it holds "
                      f"{type(current).__name__}, not a number")
    total = current + request.increment
    if isinstance(total, float) and not math.isfinite(total):
        return run.op("refused", message=f"incrementing field {target!r} ({current}) by "
                      f"{request.increment} overflows: the total is not a finite number")
    return run.op("ok", total, changes={target: total}, bump=True)


def _append(run: _Run) -> StateOp:
    target = run.request.key or _DEFAULT_FIELD["append"]
    current = run.obj.data.get(target, [])
    if not isinstance(current, list):
        return run.op("refused", message=f"cannot append to field {target!r}: it holds "
                      f"{type(current).__name__}, not a list")
    items = [*current, run.request.value]
    return run.op("ok", items, changes={target: items}, bump=True)


def _update(run: _Run) -> StateOp:
    obj, request, update_fn = run.obj, run.request, run.update_fn
    name = request.key
    current = obj.value(name)
    if request.update_fn is not None:
        if update_fn is None:
            return run.op("refused", message=(
                f"update_fn {request.update_fn!r} is not registered at the owner: register "
                "it with edgebus.state.register_update_fn in the processes that host states "
                "(region services), under that name"))
        try:
            new = update_fn(current)
            json.dumps(new, allow_nan=False)
        except Exception as e:  # the user's function: its error is the answer
            return run.op("refused", message=f"update_fn {request.update_fn!r} failed: "
                          f"{type(e).__name__}: {e}")
    else:
        base = current if isinstance(current, dict) else {}
        if name is not None and current is not None and not isinstance(current, dict):
            return run.op("refused", message=f"cannot merge an object into field {name!r}: "
                          f"it holds {type(current).__name__}; use set, or an update_fn")
        new = {**base, **request.value}
    if name is not None:
        return run.op("ok", new, changes={name: new}, bump=True)
    if not isinstance(new, dict):
        return run.op("refused", message="update of the whole state must give an object (a "
                      f"dict), the update_fn returned {type(new).__name__}")
    fresh = {str(k): v for k, v in new.items()}
    gone = tuple(k for k in obj.data if k not in fresh)
    return run.op("ok", new, changes=fresh, removed=gone, bump=True)


def _lock(run: _Run) -> StateOp | None:
    obj, request, now_ms = run.obj, run.request, run.now_ms
    lock_name = request.lock_name
    assert lock_name is not None
    hold = obj.locks.get(lock_name)
    if hold is None or hold.until_ms < now_ms or hold.holder == request.holder:
        lease_ms = request.lease_ms or run.default_lease_ms
        granted = LockHold(lock_name, request.holder, now_ms + lease_ms)
        others = (h for h in obj.locks.values() if h.name != lock_name and h.until_ms >= now_ms)
        locks = (*others, granted)
        return run.op("ok", {"lock": lock_name, "holder": request.holder,
                             "until_ms": granted.until_ms}, locks=locks)
    if now_ms >= run.sent_ms + request.timeout_ms:
        return run.op("timeout", {"lock": lock_name, "holder": hold.holder,
                                  "until_ms": hold.until_ms},
                      message=f"lock {lock_name!r} is held by {hold.holder!r} until "
                      f"{hold.until_ms} (owner's clock, ms); waited {request.timeout_ms} ms")
    return None


def _unlock(run: _Run) -> StateOp:
    obj, request, now_ms = run.obj, run.request, run.now_ms
    lock_name = request.lock_name
    assert lock_name is not None
    hold = obj.locks.get(lock_name)
    if hold is None or hold.until_ms < now_ms or hold.holder != request.holder:
        held_by = "nobody" if hold is None or hold.until_ms < now_ms else repr(hold.holder)
        return run.op("refused", {"released": False},
                      message=f"lock {lock_name!r} is not held by {request.holder!r} (held by "
                      f"{held_by}): nothing to unlock")
    locks = tuple(h for h in obj.locks.values() if h.name != lock_name and h.until_ms >= now_ms)
    return run.op("ok", {"released": True, "lock": lock_name}, locks=locks)


#: what runs each operation (every one of :data:`OPERATIONS`)
_RUNNERS: Mapping[Operation, Callable[[_Run], StateOp | None]] = {
    "get": _get,
    "set": _set,
    "delete": _delete,
    "increment": _increment,
    "append": _append,
    "update": _update,
    "lock": _lock,
    "unlock": _unlock,
}


def claim_delay_ms(
    obj: StateObject,
    region: str,
    allowed: Iterable[str],
    *,
    now_ms: int,
    stagger_ms: int,
) -> int | None:
    """How long after ``now_ms`` a host of ``region`` should claim ``obj`` (``None``:
    it should not).

    A region named by a hand-off claims at once. Otherwise a state whose lease runs is
    left alone, and a free one is claimed only when it is wanted: requests wait for it,
    or it had an owner whose lease ran out (fail-over). Candidates go in order, each
    ``stagger_ms`` after the one before: the region of the oldest waiting request (the
    state moves toward its callers), then the allowed regions in configured order, the
    region of a lapsed owner last. ``region`` outside ``allowed`` never claims
    (compliance)."""
    regions = list(dict.fromkeys(allowed))
    if region not in regions:
        return None
    v = obj.view
    if v.owner_at(now_ms) is not None:
        return 0 if v.handed_to == region else None
    if not obj.pending and v.owner is None:
        return None
    order: list[str] = []
    if obj.pending:
        first = next(iter(obj.pending.values()))[0].from_region
        if first in regions:
            order.append(first)
    order += [r for r in regions if r not in order and r != v.owner]
    if v.owner in regions and v.owner not in order:
        order.append(v.owner)
    return order.index(region) * stagger_ms
