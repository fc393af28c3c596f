"""Replicas that apply the same set of events on a key, in any order, converge.

Each replica runs :func:`edgebus.core.conflict.apply` event by event, as a store would:
it keeps the key's retained ops from ``Applied.retain`` / ``Applied.drop_before``,
sometimes forgets the loaded ops (as a store that did not read them) and answers
:class:`NeedsHistory` by loading them. Whatever the delivery order, the result must be
the reference fold: sort the events by stamp and fold from the newest set/delete.

Duplicate delivery is not part of the contract (the store dedups upstream) and keys
are independent, so one key with distinct events suffices.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from edgebus.core.conflict import (
    KeyOp,
    KeyState,
    Stamp,
    fold,
    invalid_reason,
)
from edgebus.core.envelope import Operation
from tests.key_store import KeyStore

KEY = "k"
LWW = (Operation.SET, Operation.DELETE)

# -- strategies ------------------------------------------------------------------------

# Few HLCs and origins, so that stamps tie on the HLC (and on the origin too) and the
# tie-breaks decide; event ids are unique, as in the store, which makes stamps unique.
hlcs = st.integers(min_value=0, max_value=4).map(lambda n: (1_000 + n // 2) << 16 | n % 2)
origins = st.sampled_from(["eu-west-1", "us-east-1"])
EVENT_IDS = [f"{c}{n}" for c in "abcd" for n in range(4)]

int64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
# Finite and bounded: sums stay finite, yet they round, so the order of a fold shows;
# 2**53 with halves and ones makes float sums depend on their order almost surely.
floats = st.floats(min_value=-1e15, max_value=1e15, allow_nan=False, allow_infinity=False)
rounding = st.sampled_from([0.5, -0.5, 0.1, 2**53, -(2**53), 2.0**53, 1e16, -0.0])
small_ints = st.integers(min_value=-5, max_value=5)
numbers = st.one_of(small_ints, small_ints, int64, rounding, floats)
scalars = st.none() | st.booleans() | numbers | st.text(max_size=2)
fields = st.sampled_from(["a", "b", "c"])
# What matters to the fold is a value's kind (number, list, object, other); nesting is
# carried along untouched, so one level of it is enough.
json_values = (
    scalars
    | st.lists(scalars, max_size=3)
    | st.dictionaries(fields, scalars | st.lists(scalars, max_size=2), max_size=3)
)
small_objects = st.dictionaries(fields, json_values, max_size=3)


def payloads(operation: Operation) -> st.SearchStrategy[Any]:
    if operation is Operation.DELETE:
        return st.none()
    if operation is Operation.INCREMENT:
        return numbers
    if operation is Operation.MERGE:
        return small_objects
    return json_values  # SET, APPEND


@functools.cache
def _operations(alphabet: tuple[Operation, ...]) -> st.SearchStrategy[tuple[Operation, Any]]:
    # Increments drawn twice as often: they are the operation with fast paths.
    weighted = [*alphabet, Operation.INCREMENT]
    return st.one_of([st.tuples(st.just(op), payloads(op)) for op in weighted])


@st.composite
def event_sets(draw: st.DrawFn, min_size: int = 1) -> list[KeyOp]:
    """Distinct events on one key. Each set draws from a few operations only
    (increments always among them: they have the fast paths), so that runs of the same
    operations, late or not, are common."""
    alphabet = draw(st.sets(st.sampled_from(list(Operation)), min_size=1, max_size=3))
    ops = _operations(tuple(sorted({*alphabet, Operation.INCREMENT})))
    drawn = draw(st.lists(st.tuples(hlcs, origins, ops), min_size=min_size, max_size=12))
    ids = draw(st.permutations(EVENT_IDS))
    return [
        KeyOp(Stamp(hlc, origin, event_id), operation, payload)
        for (hlc, origin, (operation, payload)), event_id in zip(drawn, ids, strict=False)
    ]


# -- the reference and the driver ------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    exists: bool
    value: Any
    version: int
    top: Stamp
    base: Stamp | None
    retained: tuple[KeyOp, ...]

    def outcome(self) -> tuple[Any, ...]:
        return (self.exists, strict(self.value), self.version, self.top, self.base)


def reference(events: list[KeyOp]) -> Reference:
    """The value as the contract defines it: fold from the newest set/delete on."""
    ordered = sorted(events, key=lambda op: op.stamp)
    lww = [i for i, op in enumerate(ordered) if op.operation in LWW]
    start = lww[-1] if lww else 0
    exists, value = fold(False, None, ordered[start:])
    base = ordered[start].stamp if lww else None
    retained = tuple(op for op in ordered[start:] if op.operation not in LWW)
    return Reference(exists, value, len(ordered), ordered[-1].stamp, base, retained)


def strict(value: Any) -> Any:
    """A form of a JSON value where equal means identical: ``1``, ``1.0``, ``True``,
    ``0.0`` and ``-0.0`` all differ (object key order does not: JSON objects are
    unordered)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return (type(value).__name__, value)
    if isinstance(value, int):
        return ("int", value)
    if isinstance(value, float):
        assert math.isfinite(value)
        return ("float", value.hex())
    if isinstance(value, list):
        return ("list", tuple(strict(v) for v in value))
    assert isinstance(value, dict), value
    return ("dict", frozenset((k, strict(v)) for k, v in value.items()))


def outcome(state: KeyState | None) -> tuple[Any, ...] | None:
    if state is None:
        return None
    return (state.exists, strict(state.value), state.version, state.top, state.base)


class Replica(KeyStore):
    """A store's view of one key, checked against the reference after every event."""

    def __init__(self) -> None:
        super().__init__(KEY)
        self.delivered: list[KeyOp] = []

    def deliver(self, op: KeyOp, forget_ops: bool = False) -> None:
        """Apply one event as a store does; then check the state against the reference
        fold of the events delivered so far (they are a set of events too)."""
        self.apply(op, forget_ops=forget_ops)
        self.delivered.append(op)
        assert self.state is not None
        expected = reference(self.delivered)
        assert outcome(self.state) == expected.outcome(), (self.delivered, self.state)
        assert self.retained_ops() == expected.retained
        assert self.state.n_ops == len(self.retained)
        if self.state.ops is not None:
            assert self.state.ops == self.retained_ops()


# -- properties ------------------------------------------------------------------------


@st.composite
def delivery_orders(draw: st.DrawFn, events: list[KeyOp]) -> list[KeyOp]:
    """Any permutation, or stamp order with some events delayed (mostly in order, as
    Kafka delivers: the case the incremental fast paths are for)."""
    if draw(st.booleans()):
        return draw(st.permutations(events))
    ordered = sorted(events, key=lambda op: op.stamp)
    n = len(ordered)
    delay = st.one_of(st.just(0), st.integers(min_value=1, max_value=n))
    delays = draw(st.lists(delay, min_size=n, max_size=n))
    return [ordered[i] for i in sorted(range(n), key=lambda i: (i + delays[i], i))]


Schedule = list[tuple[KeyOp, bool]]  # (event, forget the loaded ops before applying it)


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[list[KeyOp], list[Schedule]]:
    """A set of events and 2-3 delivery schedules."""
    events = draw(event_sets())
    schedules = []
    for _ in range(draw(st.integers(min_value=2, max_value=3))):
        order = draw(delivery_orders(events))
        forgets = draw(st.lists(st.booleans(), min_size=len(order), max_size=len(order)))
        schedules.append(list(zip(order, forgets, strict=True)))
    return events, schedules


@settings(max_examples=300, deadline=None)
@given(deliveries())
def test_replicas_converge_on_the_reference_fold_whatever_the_order(
    case: tuple[list[KeyOp], list[Schedule]],
) -> None:
    events, schedules = case
    assert all(invalid_reason(op.operation, op.payload) is None for op in events)
    replicas = []
    for schedule in schedules:
        replica = Replica()
        for op, forget in schedule:
            replica.deliver(op, forget)
        replicas.append(replica)

    outcomes = [outcome(r.state) for r in replicas]
    # (a) every replica holds the same value, version, top (and base) ...
    assert all(o == outcomes[0] for o in outcomes), outcomes
    # (b) ... and it is the reference fold of the set of events
    expected = reference(events)
    assert outcomes[0] == expected.outcome()
    # (c) each replica's retained ops are exactly the events newer than the base
    for replica in replicas:
        assert replica.state is not None
        assert replica.state.n_ops == len(replica.retained)
        assert replica.retained_ops() == expected.retained


@st.composite
def one_late(draw: st.DrawFn) -> Schedule:
    """Stamp order but for one event that arrives after some newer ones (the usual
    out-of-order case on Kafka)."""
    events = sorted(draw(event_sets(min_size=3)), key=lambda op: op.stamp)
    # Drawn as distances from the start and from the end: small draws are common, and
    # the oldest event arriving last is the hardest case for the incremental paths.
    late = events.pop(draw(st.integers(min_value=0, max_value=len(events) - 1)))
    events.insert(len(events) - draw(st.integers(min_value=0, max_value=len(events))), late)
    forgets = draw(st.lists(st.booleans(), min_size=len(events), max_size=len(events)))
    return list(zip(events, forgets, strict=True))


@settings(deadline=None)
@given(one_late())
def test_one_late_event_folds_to_the_reference(schedule: Schedule) -> None:
    replica = Replica()
    for op, forget in schedule:
        replica.deliver(op, forget)  # checks every step against the reference


# Integer counters interleaved with appends and merges, which reset a counter to 0:
# whether a late increment may be added onto the stored value depends on exactly what
# lies between it and the newest event (the ``int_counter`` bookkeeping).
counter_ops = st.one_of(
    st.tuples(st.just(Operation.INCREMENT), st.integers(min_value=1, max_value=9)),
    st.tuples(st.just(Operation.INCREMENT), st.integers(min_value=-9, max_value=-1)),
    st.tuples(st.just(Operation.INCREMENT), rounding),
    st.tuples(st.just(Operation.APPEND), st.integers(min_value=0, max_value=9)),
    st.tuples(st.just(Operation.MERGE), st.dictionaries(fields, small_ints, max_size=2)),
)


@st.composite
def late_counters(draw: st.DrawFn) -> Schedule:
    """Counter ops in stamp order (distinct HLCs), but for the oldest few, which arrive
    after the others in some order."""
    drawn = draw(st.lists(counter_ops, min_size=3, max_size=8))
    events = [
        KeyOp(Stamp((1_000 + i) << 16, "eu-west-1", f"e{i}"), operation, payload)
        for i, (operation, payload) in enumerate(drawn)
    ]
    n_late = draw(st.integers(min_value=1, max_value=len(events) - 1))
    late = draw(st.permutations(events[:n_late]))
    forgets = draw(st.lists(st.booleans(), min_size=len(events), max_size=len(events)))
    return list(zip([*events[n_late:], *late], forgets, strict=True))


@settings(deadline=None)
@given(late_counters())
def test_late_increments_fold_in_stamp_order_around_appends_and_merges(
    schedule: Schedule,
) -> None:
    replica = Replica()
    for op, forget in schedule:
        replica.deliver(op, forget)  # checks every step against the reference


@settings(deadline=None)
@given(event_sets())
def test_in_order_delivery_never_needs_history(events: list[KeyOp]) -> None:
    """Events arriving in stamp order fold onto the stored value: no retained ops read."""
    replica = Replica()
    for op in sorted(events, key=lambda op: op.stamp):
        replica.deliver(op, forget_ops=True)
    assert replica.history_loads == 0


@settings(deadline=None)
@given(
    st.lists(
        st.tuples(hlcs, origins, st.integers(min_value=-(2**70), max_value=2**70)),
        min_size=1,
        max_size=len(EVENT_IDS),
    ),
    st.randoms(use_true_random=False),
)
def test_integer_counters_never_need_history(
    increments: list[tuple[int, str, int]],
    rnd: Any,
) -> None:
    """Integer increments commute exactly: any order folds without loading ops."""
    ops = [
        KeyOp(Stamp(hlc, origin, event_id), Operation.INCREMENT, n)
        for (hlc, origin, n), event_id in zip(increments, EVENT_IDS, strict=False)
    ]
    rnd.shuffle(ops)
    replica = Replica()
    for op in ops:
        replica.deliver(op, forget_ops=True)
    assert replica.history_loads == 0
    assert replica.state is not None
    assert strict(replica.state.value) == ("int", sum(n for _, _, n in increments))
