"""Deterministic conflict resolution: a key's value is a function of the *set* of its events.

Every event on a key has a :class:`Stamp` ``(hlc, origin region, event id)``; stamps
are totally ordered, so all replicas agree on one order of a key's events whatever
order Kafka delivered them in. The value is the fold, in stamp order, of the events
since the newest ``set`` or ``delete`` (the *base*):

- ``set`` / ``delete`` — last-write-wins by ``(HLC, origin)``: the newest one is the
  base; every event older than it is overwritten (``last_write_wins``).
- ``increment`` — adds its number (a missing or non-numeric value counts as 0).
  Increments and decrements commute (counters).
- ``append`` — adds its element at the end of a list (a missing or non-list value
  starts an empty list); concurrent appends land in stamp order (one order everywhere).
- ``merge`` — sets the fields of its object (a missing or non-object value starts an
  empty object); folded in stamp order, each field ends with its newest write:
  field-level last-write-wins maps.

So replicas that have applied the same set of events hold the same value (invariant
3 of the design). The ``increment`` / ``append`` / ``merge`` events newer than the
base must be retained (a late ``set`` between two of them keeps only the later ones);
a store keeps them beside the value and drops them when a newer base arrives.

Most events arrive in stamp order and are folded in O(1) onto the stored value.
A late event that does not commute with what came after it needs the key's retained
events (:class:`NeedsHistory`): the caller loads them and applies again.

Pure: no I/O. ``KeyState`` is what a store keeps per key; ``apply`` returns the new
state plus the changes to the retained events.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final, NamedTuple

from edgebus.core.envelope import Operation
from edgebus.core.hlc import HLCTimestamp

__all__ = [
    "CONFLICT_MODES",
    "Applied",
    "KeyOp",
    "KeyState",
    "NeedsHistory",
    "Stamp",
    "apply",
    "fold",
    "invalid_reason",
    "operation_for",
]

#: The spec's ``conflict_resolution`` values and the operation a write of ``data``
#: becomes under each (see :func:`operation_for`).
CONFLICT_MODES: Final = ("last_write_wins", "counter", "append", "merge")

_LWW: Final = frozenset({Operation.SET, Operation.DELETE})


class Stamp(NamedTuple):
    """Total order of a key's events: HLC, then origin region, then event id."""

    hlc: int  #: ``(wall_ms << 16) | logical``, as in the ``eb-hlc`` header
    origin: str
    event_id: str

    @classmethod
    def of(cls, hlc: HLCTimestamp, origin: str, event_id: str) -> Stamp:
        """The stamp of an event from its envelope fields."""
        return cls((hlc.wall_ms << 16) | hlc.logical, origin, event_id)

    @property
    def timestamp(self) -> HLCTimestamp:
        """The HLC part as a timestamp."""
        return HLCTimestamp(self.hlc >> 16, self.hlc & 0xFFFF)


class KeyOp(NamedTuple):
    """One event on a key, as conflict resolution sees it."""

    stamp: Stamp
    operation: Operation
    payload: Any


class NeedsHistory(Exception):
    """The event cannot be folded onto the stored value alone: load the retained ops."""


@dataclass(frozen=True, slots=True)
class KeyState:
    """What a store keeps for one key.

    ``ops`` are the retained increment/append/merge events newer than ``base``, in
    stamp order, or ``None`` when the store did not load them (``n_ops`` says how many
    there are). ``base_exists`` / ``base_value`` are the value as the base left it,
    before the retained ops (equal to ``exists`` / ``value`` when none are retained).
    ``int_counter`` is true while every retained op is an integer increment onto an
    integer (or absent) base: such late increments commute exactly.
    """

    key: str
    exists: bool
    value: Any
    base: Stamp | None  #: newest set/delete applied, if any
    top: Stamp  #: newest stamp applied: its origin and HLC are what reads report
    version: int  #: number of events applied to this key (overwritten ones included)
    n_ops: int = 0
    int_counter: bool = True
    ops: tuple[KeyOp, ...] | None = ()
    base_exists: bool = False
    base_value: Any = None

    def with_ops(self, ops: Iterable[KeyOp]) -> KeyState:
        """This state with its retained ops loaded (sorted by stamp)."""
        loaded = tuple(sorted(ops))
        return replace(self, ops=loaded, n_ops=len(loaded))


@dataclass(frozen=True, slots=True)
class Applied:
    """The result of applying one event.

    ``retain``: store this op among the key's retained ops. ``drop_before``: delete the
    key's retained ops with a stamp before this one (a new base overwrote them).
    ``effective``: the value may have changed (false for an overwritten event).
    """

    state: KeyState
    retain: KeyOp | None = None
    drop_before: Stamp | None = None
    effective: bool = True


def invalid_reason(operation: Operation, payload: Any) -> str | None:
    """Why an event cannot be applied whatever the state (``None`` if it can).

    Such events are poison: they go to the dead-letter topic instead of the store.
    """
    if operation is Operation.DELETE:
        return None if payload is None else "a delete carries no payload"
    if operation is Operation.INCREMENT and not _is_number(payload):
        return f"an increment's payload must be a number, got {payload!r:.80}"
    if operation is Operation.MERGE and not isinstance(payload, Mapping):
        return f"a merge's payload must be a JSON object, got {payload!r:.80}"
    return None


def operation_for(mode: str, data: Any) -> Operation:
    """The operation a write of ``data`` becomes under a ``conflict_resolution`` mode.

    ``last_write_wins`` (the default) replaces the value; ``counter`` adds a number;
    ``append`` adds an element to a list; ``merge`` sets the given fields of an object.
    """
    if mode == "last_write_wins":
        return Operation.SET
    if mode == "counter":
        return Operation.INCREMENT
    if mode == "append":
        return Operation.APPEND
    if mode == "merge":
        return Operation.MERGE
    raise ValueError(
        f"conflict_resolution {mode!r} is not one of {', '.join(CONFLICT_MODES)}"
    )


def apply(state: KeyState | None, key: str, op: KeyOp) -> Applied:
    """Apply one event to a key's state (``None``: the key has no state yet).

    Raises :class:`NeedsHistory` when ``state.ops`` is ``None`` and the retained ops
    are needed; call again with ``state.with_ops(...)``.

    The common cases are folded here in O(1): a set or delete newer than every
    retained op, an increment, append or merge newer than everything applied. The
    rare ones have a function each: a key's first event (:func:`_first`), a set or
    delete under newer retained ops (:func:`_rebase`), a late op (:func:`_late`).
    """
    if state is None:
        return _first(key, op)
    stamp = op.stamp
    version = state.version + 1
    if state.base is not None and stamp < state.base:  # overwritten before it arrived
        return Applied(replace(state, version=version), effective=False)
    if op.operation in _LWW:
        if state.n_ops == 0 or stamp > state.top:  # every retained op is older: all go
            drop = stamp if state.n_ops else None
            return Applied(_based(key, op, stamp, version), drop_before=drop)
        return _rebase(state, key, op, version)
    if stamp <= state.top:
        return _late(state, key, op, version)
    # in order: fold onto the stored value
    exists, value = _step(state.exists, state.value, op)
    ops = None if state.ops is None else (*state.ops, op)
    return Applied(
        KeyState(
            key, exists, value, state.base, stamp, version, state.n_ops + 1,
            state.int_counter and _int_incr(op, state.value), ops,
            *_base_pair(state),
        ),
        retain=op,
    )


def _first(key: str, op: KeyOp) -> Applied:
    """The first event of a key."""
    if op.operation in _LWW:
        return Applied(_based(key, op, op.stamp, 1))
    exists, value = _step(False, None, op)
    return Applied(
        KeyState(key, exists, value, None, op.stamp, 1, 1, _int_incr(op, None), (op,)),
        retain=op,
    )


def _rebase(state: KeyState, key: str, op: KeyOp, version: int) -> Applied:
    """A set or delete older than some retained op: the new base, with the retained
    ops newer than it folded onto it again."""
    stamp = op.stamp
    later = tuple(o for o in _loaded(state) if o.stamp > stamp)
    base_exists, base_value = _step(False, None, op)
    exists, value = fold(base_exists, base_value, later)
    return Applied(
        KeyState(
            key, exists, value, stamp, max(state.top, stamp), version, len(later),
            _all_int(later, base_value), later, base_exists, base_value,
        ),
        drop_before=stamp,
    )


def _late(state: KeyState, key: str, op: KeyOp, version: int) -> Applied:
    """An increment, append or merge older than an event already applied: a late
    integer increment commutes; anything else refolds the retained ops from the base."""
    if state.int_counter and _int_incr(op, state.value):  # late integer increment: commutes
        ops = None if state.ops is None else tuple(sorted((*state.ops, op)))
        return Applied(
            replace(
                state, value=(state.value or 0) + op.payload, exists=True, version=version,
                n_ops=state.n_ops + 1, ops=ops, base_exists=_base_pair(state)[0],
                base_value=_base_pair(state)[1],
            ),
            retain=op,
        )
    ops = tuple(sorted((*_loaded(state), op)))
    base_exists, base_value = _base_pair(state)
    exists, value = fold(base_exists, base_value, ops)
    return Applied(
        KeyState(
            key, exists, value, state.base, state.top, version, len(ops),
            _all_int(ops, base_value), ops, base_exists, base_value,
        ),
        retain=op,
    )


def fold(exists: bool, value: Any, ops: Iterable[KeyOp]) -> tuple[bool, Any]:
    """Fold ops (in the order given) onto a value; returns ``(exists, value)``."""
    for op in ops:
        exists, value = _step(exists, value, op)
    return exists, value


def _step(exists: bool, value: Any, op: KeyOp) -> tuple[bool, Any]:
    operation, payload = op.operation, op.payload
    if operation is Operation.SET:
        return True, payload
    if operation is Operation.DELETE:
        return False, None
    if operation is Operation.INCREMENT:
        return True, (value if exists and _is_number(value) else 0) + payload
    if operation is Operation.APPEND:
        return True, [*(value if exists and isinstance(value, list) else ()), payload]
    # MERGE
    return True, {**(value if exists and isinstance(value, dict) else {}), **payload}


def _based(key: str, op: KeyOp, stamp: Stamp, version: int) -> KeyState:
    exists, value = _step(False, None, op)
    return KeyState(
        key, exists, value, stamp, stamp, version, 0, _is_int(value) or not exists, (),
        exists, value,
    )


def _base_pair(state: KeyState) -> tuple[bool, Any]:
    """The value as the base left it (before the retained ops)."""
    if state.n_ops == 0:
        return state.exists, state.value
    return state.base_exists, state.base_value


def _loaded(state: KeyState) -> tuple[KeyOp, ...]:
    if state.ops is None:
        if state.n_ops == 0:
            return ()
        raise NeedsHistory(state.key)
    return state.ops


def _all_int(ops: Iterable[KeyOp], base_value: Any) -> bool:
    if base_value is not None and not _is_int(base_value):
        return False
    return all(o.operation is Operation.INCREMENT and _is_int(o.payload) for o in ops)


def _int_incr(op: KeyOp, value: Any) -> bool:
    return (
        op.operation is Operation.INCREMENT
        and _is_int(op.payload)
        and (value is None or _is_int(value))
    )


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float)


def _is_int(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int)
