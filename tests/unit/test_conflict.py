"""Unit tests for edgebus.core.conflict: the per-key fold, by example."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from edgebus.core.conflict import (
    CONFLICT_MODES,
    KeyOp,
    KeyState,
    NeedsHistory,
    Stamp,
    apply,
    fold,
    invalid_reason,
    operation_for,
)
from edgebus.core.envelope import Operation
from edgebus.core.hlc import MAX_LOGICAL, HLCTimestamp
from tests.key_store import KeyStore

SET, DELETE = Operation.SET, Operation.DELETE
INCREMENT, APPEND, MERGE = Operation.INCREMENT, Operation.APPEND, Operation.MERGE
KEY = "user:42"
EU, US = "eu-west-1", "us-east-1"


def at(wall_ms: int, origin: str = EU, event_id: str = "", logical: int = 0) -> Stamp:
    """The stamp of an event written at ``wall_ms`` (event id defaults to a unique one)."""
    return Stamp.of(HLCTimestamp(wall_ms, logical), origin, event_id or f"ev-{wall_ms}")


def op(stamp: Stamp, operation: Operation, payload: Any = None) -> KeyOp:
    return KeyOp(stamp, operation, payload)


def run(*ops: KeyOp) -> KeyState:
    """The state after applying ``ops`` in the order given."""
    return KeyStore(KEY).apply_all(ops)


# -- last write wins ---------------------------------------------------------------------


@pytest.mark.parametrize("reverse", [False, True], ids=["in-order", "reversed"])
def test_newer_set_wins_over_older_set_whatever_the_order(reverse: bool) -> None:
    ops = [op(at(1_000), SET, "old"), op(at(2_000), SET, "new")]
    state = run(*(reversed(ops) if reverse else ops))
    assert (state.exists, state.value) == (True, "new")
    assert state.base == state.top == at(2_000)
    assert state.version == 2


@pytest.mark.parametrize("reverse", [False, True], ids=["in-order", "reversed"])
def test_tie_on_hlc_is_broken_by_origin_region(reverse: bool) -> None:
    ops = [op(at(1_000, EU, "z"), SET, "from eu"), op(at(1_000, US, "a"), SET, "from us")]
    state = run(*(reversed(ops) if reverse else ops))
    assert state.value == "from us"  # "us-east-1" > "eu-west-1", whatever the event ids
    assert state.top.origin == US


@pytest.mark.parametrize("reverse", [False, True], ids=["in-order", "reversed"])
def test_tie_on_hlc_and_origin_is_broken_by_event_id(reverse: bool) -> None:
    ops = [op(at(1_000, EU, "ev-b"), SET, "b"), op(at(1_000, EU, "ev-a"), SET, "a")]
    state = run(*(reversed(ops) if reverse else ops))
    assert state.value == "b"


def test_stamps_order_by_hlc_first_then_origin_then_event_id() -> None:
    assert at(1_000, "zz", "zz") < at(1_000, "zz", "zz", logical=1) < at(1_001, "aa", "aa")
    assert at(1_000, EU, "zz") < at(1_000, US, "aa")
    assert at(1_000, EU, "a") < at(1_000, EU, "b")


def test_set_older_than_the_current_base_is_counted_in_version_but_changes_nothing() -> None:
    store = KeyStore(KEY)
    store.apply(op(at(2_000), SET, {"name": "new"}))
    before = store.state
    applied = store.apply(op(at(1_000), SET, {"name": "old"}))
    assert before is not None
    assert applied.effective is False
    assert applied.retain is None and applied.drop_before is None
    assert applied.state == replace(before, version=2)


def test_delete_removes_the_value_and_a_later_set_recreates_it() -> None:
    deleted = run(op(at(1_000), SET, 1), op(at(2_000), DELETE))
    assert (deleted.exists, deleted.value, deleted.version) == (False, None, 2)
    recreated = run(op(at(1_000), SET, 1), op(at(3_000), SET, 3), op(at(2_000), DELETE))
    assert (recreated.exists, recreated.value) == (True, 3)


def test_version_counts_every_event_and_top_is_the_newest_stamp() -> None:
    state = run(
        op(at(3_000), SET, "x"),
        op(at(1_000), SET, "overwritten"),
        op(at(4_000), APPEND, 1),
        op(at(2_000), DELETE),  # overwritten too
        op(at(3_500), APPEND, 0),
    )
    assert state.version == 5
    assert state.top == at(4_000)
    assert state.value == [0, 1]  # "x" is not a list: the appends start an empty one


# -- counters ----------------------------------------------------------------------------


def test_increments_and_decrements_sum() -> None:
    state = run(
        op(at(1_000), SET, 10),
        op(at(3_000), INCREMENT, -4),
        op(at(2_000), INCREMENT, 5),
        op(at(4_000), INCREMENT, 2.5),
    )
    assert state.value == 13.5


@pytest.mark.parametrize(
    "before",
    [
        pytest.param([], id="missing"),
        pytest.param([op(at(1_000), SET, 7), op(at(1_500), DELETE)], id="deleted"),
        pytest.param([op(at(1_000), SET, "seven")], id="string"),
        pytest.param([op(at(1_000), SET, True)], id="bool"),
        pytest.param([op(at(1_000), SET, None)], id="null"),
        pytest.param([op(at(1_000), SET, [7])], id="list"),
        pytest.param([op(at(1_000), APPEND, 7)], id="appended-list"),
    ],
)
def test_increment_onto_a_missing_deleted_or_non_numeric_value_starts_from_zero(
    before: list[KeyOp],
) -> None:
    state = run(*before, op(at(2_000), INCREMENT, 3))
    assert (state.exists, state.value) == (True, 3)
    assert type(state.value) is int


def test_integer_increments_onto_an_integer_stay_integers() -> None:
    state = run(op(at(1_000), SET, 2**63 - 1), op(at(2_000), INCREMENT, 1))
    assert state.value == 2**63 and type(state.value) is int


# -- appends and merges ------------------------------------------------------------------


def test_appends_land_in_stamp_order_even_when_delivered_out_of_order() -> None:
    ops = [op(at(1_000 * i), APPEND, f"m{i}") for i in range(1, 5)]
    delivered = [ops[2], ops[0], ops[3], ops[1]]
    state = run(*delivered)
    assert state.value == ["m1", "m2", "m3", "m4"]


def test_concurrent_appends_land_in_the_same_order_on_every_replica() -> None:
    eu, us = op(at(1_000, EU), APPEND, "eu"), op(at(1_000, US), APPEND, "us")
    assert run(eu, us).value == run(us, eu).value == ["eu", "us"]


@pytest.mark.parametrize("base", [None, "text", 5, {"a": 1}], ids=repr)
def test_append_onto_a_non_list_starts_an_empty_list(base: Any) -> None:
    assert run(op(at(1_000), SET, base), op(at(2_000), APPEND, "x")).value == ["x"]


def test_append_onto_a_list_set_as_base_extends_it() -> None:
    assert run(op(at(1_000), SET, [1, 2]), op(at(2_000), APPEND, [3])).value == [1, 2, [3]]


@pytest.mark.parametrize("reverse", [False, True], ids=["in-order", "reversed"])
def test_merge_sets_fields_and_the_later_stamp_wins_per_field(reverse: bool) -> None:
    ops = [
        op(at(1_000), SET, {"name": "Ada", "city": "London"}),
        op(at(2_000), MERGE, {"city": "Paris", "age": 36}),
        op(at(3_000), MERGE, {"age": 37, "lang": "en"}),
    ]
    state = run(*(reversed(ops) if reverse else ops))
    assert state.value == {"name": "Ada", "city": "Paris", "age": 37, "lang": "en"}


@pytest.mark.parametrize("base", [None, "text", 5, [1]], ids=repr)
def test_merge_onto_a_non_object_starts_an_empty_object(base: Any) -> None:
    assert run(op(at(1_000), SET, base), op(at(2_000), MERGE, {"a": 1})).value == {"a": 1}


def test_merge_does_not_modify_the_base_value() -> None:
    base = {"a": 1}
    state = run(op(at(1_000), SET, base), op(at(2_000), MERGE, {"b": 2}))
    assert state.value == {"a": 1, "b": 2}
    assert base == {"a": 1}


# -- late events -------------------------------------------------------------------------


def test_late_set_between_two_increments_keeps_only_the_later_increment() -> None:
    store = KeyStore(KEY)
    store.apply(op(at(1_000), INCREMENT, 1))
    store.apply(op(at(3_000), INCREMENT, 10))
    applied = store.apply(op(at(2_000), SET, 100))
    assert applied.state.value == 110
    assert applied.state.base == at(2_000)
    assert applied.state.top == at(3_000)
    assert applied.drop_before == at(2_000)
    assert applied.retain is None
    assert list(store.retained) == [at(3_000)]
    assert applied.state.n_ops == 1


def test_late_delete_between_two_appends_keeps_only_the_later_append() -> None:
    state = run(op(at(1_000), APPEND, "a"), op(at(3_000), APPEND, "c"), op(at(2_000), DELETE))
    assert (state.exists, state.value) == (True, ["c"])


def test_delete_then_older_increment_stays_deleted() -> None:
    store = KeyStore(KEY)
    store.apply(op(at(2_000), DELETE))
    applied = store.apply(op(at(1_000), INCREMENT, 5))
    assert (applied.state.exists, applied.state.value) == (False, None)
    assert applied.state.version == 2
    assert applied.effective is False
    assert applied.retain is None
    assert store.retained == {}


def test_late_integer_increment_does_not_need_history() -> None:
    store = KeyStore(KEY)
    store.apply(op(at(1_000), SET, 5))
    store.apply(op(at(3_000), INCREMENT, 1))
    assert store.state is not None
    forgotten = replace(store.state, ops=None)
    late = op(at(2_000), INCREMENT, 2)
    applied = apply(forgotten, KEY, late)  # no NeedsHistory
    assert applied.state.value == 8
    assert applied.retain == late
    assert applied.state.n_ops == 2
    assert applied.state.ops is None
    assert applied.state.top == at(3_000)


def test_late_append_with_unloaded_ops_needs_history_and_succeeds_with_them() -> None:
    store = KeyStore(KEY)
    store.apply(op(at(2_000), APPEND, "b"))
    store.apply(op(at(3_000), APPEND, "c"))
    assert store.state is not None
    forgotten = replace(store.state, ops=None)
    late = op(at(1_000), APPEND, "a")
    with pytest.raises(NeedsHistory):
        apply(forgotten, KEY, late)
    applied = apply(forgotten.with_ops(store.retained.values()), KEY, late)
    assert applied.state.value == ["a", "b", "c"]
    assert applied.retain == late
    assert applied.state.ops == tuple(sorted([*store.retained.values(), late]))


def test_late_set_with_unloaded_ops_needs_history() -> None:
    store = KeyStore(KEY)
    store.apply(op(at(1_000), APPEND, "a"))
    store.apply(op(at(3_000), APPEND, "c"))
    assert store.state is not None
    with pytest.raises(NeedsHistory):
        apply(replace(store.state, ops=None), KEY, op(at(2_000), SET, ["b"]))


def test_late_float_increment_needs_history_because_float_sums_depend_on_order() -> None:
    store = KeyStore(KEY)
    store.apply(op(at(1_000), SET, 0.5))
    store.apply(op(at(3_000), INCREMENT, 2**53))
    store.apply(op(at(2_000), INCREMENT, 1), forget_ops=True)
    assert store.history_loads == 1
    assert store.state is not None
    assert store.state.value == (0.5 + 1) + 2**53  # stamp order, not delivery order
    assert store.state.value != (0.5 + 2**53) + 1


def test_late_integer_increment_behind_an_append_needs_history() -> None:
    store = KeyStore(KEY)
    for key_op in (op(at(2_000), APPEND, "x"), op(at(3_000), INCREMENT, 1)):
        store.apply(key_op)
    store.apply(op(at(1_000), INCREMENT, 5), forget_ops=True)
    assert store.history_loads == 1
    assert store.state is not None
    assert store.state.value == 1  # the append reset the counter the late increment fed


@pytest.mark.parametrize("operation", [SET, DELETE, INCREMENT, APPEND, MERGE])
def test_events_in_stamp_order_never_need_history(operation: Operation) -> None:
    payload = {SET: "v", DELETE: None, INCREMENT: 1.5, APPEND: "v", MERGE: {"f": 1}}[operation]
    store = KeyStore(KEY)
    store.apply(op(at(1_000), APPEND, "a"))
    store.apply(op(at(2_000), MERGE, {"m": 1}))
    store.apply(op(at(3_000), operation, payload), forget_ops=True)
    assert store.history_loads == 0


# -- retained ops bookkeeping ------------------------------------------------------------


def test_first_event_on_a_key() -> None:
    set_first = apply(None, KEY, op(at(1_000), SET, "v"))
    assert set_first.retain is None and set_first.drop_before is None and set_first.effective
    state = set_first.state
    assert (state.key, state.exists, state.value, state.version) == (KEY, True, "v", 1)
    assert state.base == state.top == at(1_000)
    assert (state.n_ops, state.ops) == (0, ())
    increment = op(at(1_000), INCREMENT, 4)
    incremented = apply(None, KEY, increment)
    assert incremented.retain == increment and incremented.drop_before is None
    assert (incremented.state.value, incremented.state.base) == (4, None)
    assert (incremented.state.n_ops, incremented.state.ops) == (1, (increment,))


def test_new_base_in_order_drops_every_retained_op() -> None:
    store = KeyStore(KEY)
    store.apply(op(at(1_000), INCREMENT, 1))
    store.apply(op(at(2_000), APPEND, 2))
    applied = store.apply(op(at(3_000), SET, "reset"), forget_ops=True)
    assert applied.drop_before == at(3_000)
    assert store.retained == {}
    assert applied.state.n_ops == 0
    assert store.history_loads == 0


def test_new_base_with_nothing_retained_drops_nothing() -> None:
    applied = apply(run(op(at(1_000), SET, 1)), KEY, op(at(2_000), SET, 2))
    assert applied.drop_before is None


def test_retain_and_drop_before_keep_the_callers_set_equal_to_n_ops() -> None:
    ops = [
        op(at(5_000), INCREMENT, 1),
        op(at(1_000), APPEND, "a"),
        op(at(3_000), SET, {"a": 0}),
        op(at(7_000), MERGE, {"b": 1}),
        op(at(2_000), INCREMENT, 2),  # overwritten by the set
        op(at(6_000), INCREMENT, 3),
        op(at(4_000), DELETE),
        op(at(8_000), APPEND, "z"),
    ]
    store = KeyStore(KEY)
    for i, key_op in enumerate(ops):
        applied = store.apply(key_op, forget_ops=i % 2 == 1)
        assert applied.state.n_ops == len(store.retained)
        if applied.state.ops is not None:
            assert applied.state.ops == tuple(sorted(store.retained.values()))
    assert sorted(store.retained) == [at(5_000), at(6_000), at(7_000), at(8_000)]
    assert store.state is not None
    assert store.state.value == ["z"]  # delete, +1, +3, merge {"b": 1}, append "z"
    assert store.state.base == at(4_000)


def test_with_ops_sorts_the_loaded_ops_and_counts_them() -> None:
    a, b = op(at(1_000), APPEND, "a"), op(at(2_000), APPEND, "b")
    state = replace(run(a, b), ops=None)
    loaded = state.with_ops([b, a])
    assert loaded.ops == (a, b) and loaded.n_ops == 2


def test_fold_applies_ops_in_the_order_given() -> None:
    ops = [op(at(2_000), APPEND, 2), op(at(1_000), APPEND, 1), op(at(3_000), INCREMENT, 1)]
    assert fold(True, [0], ops[:2]) == (True, [0, 2, 1])
    assert fold(False, None, ops) == (True, 1)
    assert fold(True, "x", []) == (True, "x")


# -- validation and modes ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "payload", "reason"),
    [
        (DELETE, {"x": 1}, "a delete carries no payload"),
        (DELETE, 0, "a delete carries no payload"),
        (INCREMENT, True, "an increment's payload must be a number, got True"),
        (INCREMENT, "1", "an increment's payload must be a number, got '1'"),
        (INCREMENT, None, "an increment's payload must be a number, got None"),
        (MERGE, [1], "a merge's payload must be a JSON object, got [1]"),
        (MERGE, "x", "a merge's payload must be a JSON object, got 'x'"),
        (MERGE, None, "a merge's payload must be a JSON object, got None"),
    ],
)
def test_invalid_reason_names_what_is_wrong(
    operation: Operation,
    payload: Any,
    reason: str,
) -> None:
    assert invalid_reason(operation, payload) == reason


@pytest.mark.parametrize(
    ("operation", "payload"),
    [
        (DELETE, None),
        (INCREMENT, 1),
        (INCREMENT, -2.5),
        (MERGE, {}),
        (MERGE, {"a": [1]}),
        (SET, None),
        (SET, True),
        (APPEND, {"a": 1}),
        (APPEND, None),
    ],
)
def test_invalid_reason_accepts_valid_events(operation: Operation, payload: Any) -> None:
    assert invalid_reason(operation, payload) is None


def test_invalid_reason_truncates_a_long_payload() -> None:
    reason = invalid_reason(INCREMENT, "9" * 1_000)
    assert reason is not None and len(reason) < 150


@pytest.mark.parametrize(
    ("mode", "operation"),
    [
        ("last_write_wins", SET),
        ("counter", INCREMENT),
        ("append", APPEND),
        ("merge", MERGE),
    ],
)
def test_operation_for_maps_each_conflict_resolution_mode(
    mode: str,
    operation: Operation,
) -> None:
    assert operation_for(mode, {"any": "data"}) is operation


def test_conflict_modes_are_the_four_modes() -> None:
    assert CONFLICT_MODES == ("last_write_wins", "counter", "append", "merge")


@pytest.mark.parametrize("mode", ["lww", "", "Counter", "set"])
def test_operation_for_rejects_an_unknown_mode_listing_the_modes(mode: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        operation_for(mode, 1)
    message = str(excinfo.value)
    assert repr(mode) in message
    assert "last_write_wins, counter, append, merge" in message


# -- stamps ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "timestamp",
    [HLCTimestamp(0, 0), HLCTimestamp(1_700_000_000_123, 7), HLCTimestamp(2**48 - 1, MAX_LOGICAL)],
)
def test_stamp_of_and_timestamp_round_trip(timestamp: HLCTimestamp) -> None:
    stamp = Stamp.of(timestamp, EU, "ev-1")
    assert stamp.timestamp == timestamp
    assert stamp.hlc == (timestamp.wall_ms << 16) | timestamp.logical
    assert (stamp.origin, stamp.event_id) == (EU, "ev-1")


def test_stamp_hlc_orders_like_the_timestamp() -> None:
    times = [HLCTimestamp(5, MAX_LOGICAL), HLCTimestamp(6, 0), HLCTimestamp(5, 0)]
    stamps = [Stamp.of(t, EU, "e") for t in times]
    assert [s.timestamp for s in sorted(stamps)] == sorted(times)
