"""Unit and property tests for tests/checkers/linearizability.py, the register checker."""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from tests.checkers.linearizability import (
    Call,
    HistoryTooConcurrentError,
    Op,
    check_linearizable,
)


def call(
    process: str,
    op: Op,
    arg: Any,
    invoked: float,
    completed: float | None,
    *,
    ok: bool | None = True,
    result: Any = None,
    key: str = "k",
) -> Call:
    return Call(process, key, op, arg, invoked, completed, ok, result)


def read(process: str, invoked: float, completed: float, result: Any, *, key: str = "k") -> Call:
    return call(process, "read", None, invoked, completed, result=result, key=key)


def write(
    process: str,
    value: Any,
    invoked: float,
    completed: float | None,
    *,
    ok: bool | None = True,
    key: str = "k",
) -> Call:
    return call(process, "write", value, invoked, completed, ok=ok, key=key)


# -- plain registers --------------------------------------------------------------------


def test_an_empty_history_is_linearizable() -> None:
    result = check_linearizable([])
    assert result.ok
    assert result.key_results == {}


def test_a_sequential_history_is_linearizable() -> None:
    history = [
        read("a", 0, 1, None),
        write("a", 1, 2, 3),
        read("b", 4, 5, 1),
        write("b", 2, 6, 7),
        read("a", 8, 9, 2),
    ]
    result = check_linearizable(history)
    assert result.ok, result.summary()
    assert result.key_results["k"].calls == 5


def test_the_initial_value_is_what_a_first_read_sees() -> None:
    assert check_linearizable([read("a", 0, 1, 7)], initial=7).ok
    assert not check_linearizable([read("a", 0, 1, None)], initial=7).ok


@pytest.mark.parametrize("seen", [None, 1, 2])
def test_a_read_overlapping_two_overlapping_writes_may_see_either_value_or_the_old_one(
    seen: int | None,
) -> None:
    history = [write("w1", 1, 0, 10), write("w2", 2, 1, 11), read("r", 2, 12, seen)]
    assert check_linearizable(history).ok


@pytest.mark.parametrize(("seen", "linearizable"), [(1, True), (2, True), (None, False)])
def test_a_read_after_two_overlapping_writes_returned_sees_one_of_them(
    seen: int | None, linearizable: bool
) -> None:
    history = [write("w1", 1, 0, 10), write("w2", 2, 1, 11), read("r", 12, 13, seen)]
    assert check_linearizable(history).ok is linearizable


def test_calls_whose_intervals_touch_count_as_concurrent() -> None:
    assert check_linearizable([write("w", 1, 0, 1), read("r", 1, 2, None)]).ok


def test_a_stale_read_after_a_completed_write_is_not_linearizable_and_is_named() -> None:
    history = [
        write("writer", 0, 0, 1),
        write("writer", 1, 2, 3),
        read("reader", 4, 5, 0),
        read("reader", 6, 7, 1),
    ]
    result = check_linearizable(history)
    assert not result.ok
    key_result = result.key_results["k"]
    assert key_result.failed_call == history[2]
    explanation = key_result.explanation
    assert explanation is not None
    assert "read -> 0 by reader" in explanation
    assert "fits none of the values the register could hold during its interval: 1." in explanation
    assert "write 1 by writer" in explanation  # the end of a linearization before it
    assert explanation in result.summary()


def test_a_read_of_a_value_never_written_is_not_linearizable() -> None:
    history = [write("w1", 1, 0, 10), write("w2", 2, 1, 11), read("r", 2, 12, 3)]
    result = check_linearizable(history)
    assert not result.ok
    key_result = result.key_results["k"]
    assert key_result.failed_call == history[2]
    assert key_result.explanation is not None
    assert "during its interval: 1, 2, None." in key_result.explanation
    assert "write 1 by w1" in key_result.explanation  # in flight with the read


def test_a_read_that_saw_a_write_cannot_be_followed_by_one_that_does_not() -> None:
    history = [write("w", 1, 0, 10), read("r1", 1, 2, 1), read("r2", 3, 4, None)]
    result = check_linearizable(history)
    assert not result.ok
    assert result.key_results["k"].failed_call == history[2]


def test_values_need_not_be_hashable_and_compare_by_equality() -> None:
    history = [write("w", {"a": [1]}, 0, 1), read("r", 2, 3, {"a": [1]})]
    assert check_linearizable(history).ok
    assert not check_linearizable([*history, read("r", 4, 5, {"a": [2]})]).ok


def test_booleans_are_not_equal_to_numbers() -> None:
    assert not check_linearizable([write("w", 1, 0, 1), read("r", 2, 3, True)]).ok
    assert check_linearizable([write("w", 1.0, 0, 1), read("r", 2, 3, 1)]).ok


# -- compare-and-set ---------------------------------------------------------------------


def cas(
    process: str, expected: Any, new: Any, invoked: float, completed: float | None, ok: bool | None
) -> Call:
    return call(process, "cas", (expected, new), invoked, completed, ok=ok)


def test_two_concurrent_cas_from_the_same_value_cannot_both_succeed() -> None:
    history = [write("w", 0, 0, 1), cas("a", 0, 1, 2, 5, True), cas("b", 0, 2, 3, 6, True)]
    result = check_linearizable(history)
    assert not result.ok
    explanation = result.key_results["k"].explanation
    assert explanation is not None
    assert "cas 0 -> 2 (succeeded) by b" in explanation
    assert "It does not fit the register value(s) 1." in explanation
    assert "Where it fits (at 0), another call that returned before it" in explanation


def test_of_two_concurrent_cas_from_the_same_value_one_may_succeed_and_one_fail() -> None:
    history = [
        write("w", 0, 0, 1),
        cas("a", 0, 1, 2, 5, True),
        cas("b", 0, 2, 3, 6, False),
        read("r", 7, 8, 1),
    ]
    assert check_linearizable(history).ok


def test_a_cas_reporting_a_lost_race_must_have_seen_another_value() -> None:
    history = [write("w", 0, 0, 1), cas("a", 0, 1, 2, 3, False)]
    assert not check_linearizable(history).ok


def test_a_cas_with_unknown_outcome_takes_effect_only_where_it_could_succeed() -> None:
    crashed = cas("a", 0, 1, 2, None, None)
    assert check_linearizable([write("w", 0, 0, 1), crashed, read("r", 3, 4, 1)]).ok
    assert check_linearizable([write("w", 0, 0, 1), crashed, read("r", 3, 4, 0)]).ok
    assert not check_linearizable([write("w", 5, 0, 1), crashed, read("r", 3, 4, 1)]).ok


# -- increments --------------------------------------------------------------------------


def incr(
    process: str,
    delta: int,
    invoked: float,
    completed: float | None,
    result: int | None,
    *,
    ok: bool | None = True,
) -> Call:
    return call(process, "incr", delta, invoked, completed, ok=ok, result=result)


def test_concurrent_increments_returning_1_and_2_are_linearizable() -> None:
    history = [incr("a", 1, 0, 5, 1), incr("b", 1, 1, 6, 2), read("r", 7, 8, 2)]
    assert check_linearizable(history).ok


def test_concurrent_increments_both_returning_1_are_not_linearizable() -> None:
    history = [incr("a", 1, 0, 5, 1), incr("b", 1, 1, 6, 1)]
    assert not check_linearizable(history).ok


def test_an_increment_without_a_known_result_still_adds_its_delta() -> None:
    history = [write("w", 10, 0, 1), incr("a", 5, 2, 3, None)]
    assert check_linearizable([*history, read("r", 4, 5, 15)]).ok
    assert not check_linearizable([*history, read("r", 4, 5, 10)]).ok


def test_an_increment_cannot_take_effect_on_a_value_that_is_not_a_number() -> None:
    assert not check_linearizable([write("w", "x", 0, 1), incr("a", 1, 2, 3, None)]).ok


# -- failed and unknown outcomes ---------------------------------------------------------


@pytest.mark.parametrize("seen", [None, 1])
def test_a_write_with_unknown_outcome_may_or_may_not_take_effect(seen: int | None) -> None:
    history = [write("w", 1, 0, None, ok=None), read("r", 1, 2, seen), read("r", 3, 4, seen)]
    assert check_linearizable(history).ok


def test_an_ambiguous_answer_is_an_unknown_outcome() -> None:
    for seen in (None, 1):
        history = [write("w", 1, 0, 1, ok=None), read("r", 2, 3, seen)]
        assert check_linearizable(history).ok


def test_a_write_with_unknown_outcome_may_take_effect_after_its_client_gave_up() -> None:
    history = [
        write("w", 1, 0, 1, ok=None),
        write("v", 2, 2, 3),
        read("r", 4, 5, 1),
    ]
    assert check_linearizable(history).ok


def test_a_write_with_unknown_outcome_seen_by_one_read_is_not_unseen_by_a_later_one() -> None:
    history = [write("w", 1, 0, None, ok=None), read("r", 1, 2, 1), read("r", 3, 4, None)]
    result = check_linearizable(history)
    assert not result.ok
    assert result.key_results["k"].failed_call == history[2]


def test_a_write_that_definitely_failed_is_dropped() -> None:
    refused = write("w", 1, 0, 1, ok=False)
    assert check_linearizable([refused, read("r", 2, 3, None)]).ok
    assert not check_linearizable([refused, read("r", 2, 3, 1)]).ok
    assert check_linearizable([refused]).key_results["k"].calls == 0


def test_reads_without_a_known_result_constrain_nothing() -> None:
    history = [
        write("w", 1, 0, 1),
        call("r", "read", None, 2, None, ok=None, result=5),
        call("s", "read", None, 2, 3, ok=False, result=6),
    ]
    assert check_linearizable(history).ok


# -- keys, summary, limits, malformed input ----------------------------------------------


def test_keys_are_checked_independently_and_an_anomaly_is_reported_under_its_key() -> None:
    history = [
        write("w", 1, 0, 1, key="a"),
        write("w", 1, 2, 3, key="b"),
        read("r", 4, 5, 1, key="b"),
        read("r", 6, 7, None, key="a"),
        read("r", 8, 9, 1, key="c"),
    ]
    result = check_linearizable(history)
    assert not result.ok
    assert result.failed_keys == ["a", "c"]
    assert result.key_results["b"].ok
    assert result.key_results["a"].failed_call == history[3]
    assert result.key_results["c"].failed_call == history[4]
    summary = result.summary()
    assert summary.startswith("NOT linearizable: 2 of 3 key(s) failed (a, c)")
    assert "key 'a': not linearizable" in summary
    assert "key 'b'" not in summary


def test_the_summary_of_a_linearizable_history_is_one_line() -> None:
    summary = check_linearizable([write("w", 1, 0, 1), read("r", 2, 3, 1)]).summary()
    assert summary.startswith("linearizable: 1 key(s), 2 call(s), ")
    assert "\n" not in summary


def test_exceeding_max_states_raises_a_clear_error() -> None:
    history = [write(f"w{i}", i, 0, 10) for i in range(8)]
    with pytest.raises(HistoryTooConcurrentError, match="too concurrent") as raised:
        check_linearizable([*history, read("r", 11, 12, 99)], max_states=50)
    assert raised.value.key == "k"
    assert raised.value.concurrency == 8
    assert "fewer concurrent clients" in str(raised.value)


@pytest.mark.parametrize(
    "history",
    [
        [call("a", "read", None, 2, 1, result=None)],
        [call("a", "delete", None, 0, 1)],  # type: ignore[arg-type]
        [call("a", "cas", 1, 0, 1)],
        [call("a", "incr", "x", 0, 1)],
        [write("a", 1, 0, 5), write("a", 2, 4, 6)],
    ],
    ids=["completed-before-invoked", "unknown-op", "cas-arg", "incr-delta", "overlapping-client"],
)
def test_malformed_histories_are_rejected(history: list[Call]) -> None:
    with pytest.raises(ValueError):
        check_linearizable(history)


def test_a_client_may_go_on_after_a_call_with_unknown_outcome() -> None:
    history = [write("a", 1, 0, None, ok=None), write("a", 2, 1, 2), read("a", 3, 4, 2)]
    assert check_linearizable(history).ok


# -- a simulated atomic register ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Simulated:
    """A call of a simulated history, and the register's values during its interval."""

    call: Call
    values_during: tuple[Any, ...]  # every value the key held within [invoked, completed]


def simulate(
    rng: random.Random,
    *,
    clients: int,
    calls: int,
    keys: Sequence[str] = ("k",),
    unknown_rate: float = 0.1,
) -> list[Simulated]:
    """A history of an atomic register: every call takes effect at one instant of its
    interval; calls with unknown outcome take effect at some instant after invocation,
    or never. Integer times, so that intervals and effects often touch.
    """
    free_at = [0] * clients
    generation = [0] * clients
    # (key, process, op, arg, invoked, completed, fate, effect instant or None)
    planned: list[tuple[str, str, Op, Any, int, int, str, float | None]] = []
    for _ in range(calls):
        client = rng.randrange(clients)
        invoked = free_at[client] + rng.randint(0, 3)
        completed = invoked + rng.randint(0, 8)
        free_at[client] = completed
        process = f"c{client}.{generation[client]}"
        op: Op = rng.choice(["read", "read", "write", "cas", "incr"])
        arg: Any = {
            "read": None,
            "write": rng.randrange(5),
            "cas": (rng.choice([None, 0, 1, 2, 3, 4]), rng.randrange(5)),
            "incr": rng.randint(1, 2),
        }[op]
        roll = rng.random()
        if roll < unknown_rate:
            fate = rng.choice(["crashed", "ambiguous"])
            if fate == "crashed":
                generation[client] += 1  # a crashed client comes back as a new process
            effect = None
            if rng.random() < 0.5:
                effect = rng.uniform(invoked, completed + 2 * (completed - invoked) + 3)
        elif roll < unknown_rate * 1.5 and op in ("write", "incr"):
            fate, effect = "refused", None
        else:
            fate = "done"
            effect = rng.choice([invoked, completed, rng.uniform(invoked, completed)])
        planned.append((rng.choice(keys), process, op, arg, invoked, completed, fate, effect))

    # apply the effects in order, per key
    order = sorted(
        (plan[7], rng.random(), index) for index, plan in enumerate(planned) if plan[7] is not None
    )
    value: dict[str, Any] = dict.fromkeys(keys)
    outcome: dict[int, tuple[bool, Any]] = {}
    timeline: dict[str, list[tuple[float, Any]]] = {key: [] for key in keys}
    for instant, _, index in order:
        key, _, op, arg, *_ = planned[index]
        current = value[key]
        if op == "read":
            outcome[index] = (True, current)
        elif op == "write":
            value[key] = arg
        elif op == "cas":
            succeeded = current == arg[0]
            if succeeded:
                value[key] = arg[1]
            outcome[index] = (succeeded, None)
        else:
            value[key] = (current or 0) + arg
            outcome[index] = (True, value[key] if rng.random() < 0.7 else None)
        timeline[key].append((instant, value[key]))

    simulated = []
    for index, (key, process, op, arg, invoked, completed, fate, _) in enumerate(planned):
        ok, result = outcome.get(index, (True, None))
        if fate == "crashed":
            recorded = Call(process, key, op, arg, invoked, None, None, None)
        elif fate == "ambiguous":
            recorded = Call(process, key, op, arg, invoked, completed, None, None)
        elif fate == "refused":
            recorded = Call(process, key, op, arg, invoked, completed, False, None)
        else:
            recorded = Call(process, key, op, arg, invoked, completed, ok, result)
        instants = [instant for instant, _ in timeline[key]]
        first = bisect.bisect_left(instants, invoked)
        last = bisect.bisect_right(instants, completed)
        before = timeline[key][first - 1][1] if first else None
        during = (before, *(value for _, value in timeline[key][first:last]))
        simulated.append(Simulated(recorded, during))
    return simulated


def brute_force_linearizable(calls: Sequence[Call], initial: Any = None) -> bool:
    """The definition, by enumeration: some subset of the unknown-outcome calls and some
    order of it plus the known ones respects real time and the register's semantics.
    Only for a handful of calls.
    """
    keys = {call.key for call in calls}
    return all(_brute_force_key([c for c in calls if c.key == key], initial) for key in keys)


def _brute_force_key(calls: Sequence[Call], initial: Any) -> bool:
    known: list[Call] = []
    maybe: list[Call] = []
    for c in calls:
        unknown = c.completed is None or c.ok is None
        if c.op == "read" and (unknown or c.ok is False):
            continue
        if c.op in ("write", "incr") and not unknown and c.ok is False:
            continue
        (maybe if unknown else known).append(c)
    for size in range(len(maybe) + 1):
        for chosen in itertools.combinations(maybe, size):
            for order in itertools.permutations([*known, *chosen]):
                if _respects_real_time(order) and _legal(order, initial):
                    return True
    return False


def _respects_real_time(order: Sequence[Call]) -> bool:
    def precedes(a: Call, b: Call) -> bool:
        return a.completed is not None and a.ok is not None and a.completed < b.invoked

    return not any(precedes(later, earlier) for earlier, later in itertools.combinations(order, 2))


def _legal(order: Sequence[Call], value: Any) -> bool:
    for c in order:
        unknown = c.completed is None or c.ok is None
        if c.op == "read":
            if value != c.result:
                return False
        elif c.op == "write":
            value = c.arg
        elif c.op == "cas":
            if (value == c.arg[0]) != (unknown or bool(c.ok)):
                return False
            if value == c.arg[0]:
                value = c.arg[1]
        else:
            value = (value or 0) + c.arg
            if not unknown and c.result is not None and value != c.result:
                return False
    return True


#: a seeded random source, and the history of a simulated register driven with it
Run = tuple[random.Random, list[Simulated]]


@st.composite
def simulated_runs(
    draw: st.DrawFn,
    *,
    max_clients: int,
    calls: tuple[int, int],
    unknown_rates: Sequence[float],
    max_keys: int | None = None,
) -> Run:
    """A :func:`simulate` run: 1 to ``max_clients`` clients making ``calls`` (min, max)
    calls, an unknown-outcome rate from ``unknown_rates``, on the one key ``k`` or (with
    ``max_keys``) on 1 to ``max_keys`` keys ``key0``, ``key1``, ..."""
    rng = draw(st.randoms(use_true_random=False))
    clients = draw(st.integers(min_value=1, max_value=max_clients))
    n_calls = draw(st.integers(min_value=calls[0], max_value=calls[1]))
    keys: Sequence[str] = ("k",)
    if max_keys is not None:
        keys = [f"key{i}" for i in range(draw(st.integers(min_value=1, max_value=max_keys)))]
    unknown_rate = draw(st.sampled_from(unknown_rates))
    return rng, simulate(rng, clients=clients, calls=n_calls, keys=keys, unknown_rate=unknown_rate)


def replace_a_read(
    rng: random.Random, history: list[Simulated], candidates: Sequence[Any]
) -> tuple[list[Call], Call] | None:
    """The history with one known read's result replaced by a value from ``candidates``
    that the register did not hold at any instant of the read's interval (None if none)."""
    reads = [
        index
        for index, sim in enumerate(history)
        if sim.call.op == "read" and sim.call.ok and sim.call.completed is not None
    ]
    if not reads:
        return None
    index = rng.choice(reads)
    options = [value for value in candidates if value not in history[index].values_during]
    if not options:
        return None
    mutated = replace(history[index].call, result=rng.choice(options))
    calls = [sim.call for sim in history]
    calls[index] = mutated
    return calls, mutated


@settings(deadline=None)
@given(simulated_runs(max_clients=8, calls=(0, 80), unknown_rates=[0.0, 0.1, 0.25], max_keys=3))
def test_histories_of_a_simulated_atomic_register_are_linearizable(run: Run) -> None:
    rng, history = run
    calls_in_any_order = [sim.call for sim in history]
    rng.shuffle(calls_in_any_order)
    result = check_linearizable(calls_in_any_order)
    assert result.ok, result.summary()


@settings(deadline=None)
@given(simulated_runs(max_clients=8, calls=(1, 80), unknown_rates=[0.0, 0.1, 0.25]))
def test_a_read_of_a_value_the_register_never_held_is_not_linearizable_and_is_named(
    run: Run,
) -> None:
    rng, history = run
    # values are None or non-negative ints (writes 0..4, increments add 1 or 2): never -1
    mutation = replace_a_read(rng, history, [-1])
    if mutation is None:
        return
    calls_, mutated = mutation
    result = check_linearizable(calls_)
    assert not result.ok
    assert result.key_results["k"].failed_call == mutated


@settings(max_examples=300, deadline=None)
@given(simulated_runs(max_clients=4, calls=(1, 7), unknown_rates=[0.0, 0.2, 0.4]))
def test_a_read_of_a_value_not_current_during_its_interval_fails_unless_some_order_allows_it(
    run: Run,
) -> None:
    """The value was not the register's at any instant of the read's interval in the
    simulated run; whether another run consistent with real time could have made it
    current is decided by brute force, and the checker must agree.
    """
    rng, history = run
    assert brute_force_linearizable([sim.call for sim in history])
    mutation = replace_a_read(rng, history, [None, 0, 1, 2, 3, 4, 5, 6])
    if mutation is None:
        return
    calls_, _ = mutation
    expected = brute_force_linearizable(calls_)
    event("some other order allows it" if expected else "no order allows it: rejected")
    result = check_linearizable(calls_)
    assert result.ok is expected, result.summary()


@st.composite
def small_histories(draw: st.DrawFn) -> list[Call]:
    """Arbitrary calls on one key, linearizable or not: few values, overlapping intervals,
    every kind of outcome."""
    values = st.sampled_from([None, 0, 1, 2])
    history = []
    for index in range(draw(st.integers(min_value=0, max_value=6))):
        op: Op = draw(st.sampled_from(["read", "write", "cas", "incr"]))
        arg: Any = {
            "read": None,
            "write": draw(values),
            "cas": (draw(values), draw(values)),
            "incr": draw(st.integers(min_value=0, max_value=2)),
        }[op]
        invoked = draw(st.integers(min_value=0, max_value=8))
        completed = invoked + draw(st.integers(min_value=0, max_value=6))
        outcome = draw(st.sampled_from(["ok", "ok", "ok", "failed", "crashed", "ambiguous"]))
        ok: bool | None = {"ok": True, "failed": False, "crashed": None, "ambiguous": None}[outcome]
        result: Any = None
        if op == "read":
            result = draw(values)
        elif op == "incr":
            result = draw(st.one_of(st.none(), st.integers(min_value=0, max_value=4)))
        history.append(
            Call(
                f"p{index}",
                "k",
                op,
                arg,
                invoked,
                None if outcome == "crashed" else completed,
                ok,
                result,
            )
        )
    return history


@settings(max_examples=500, deadline=None)
@given(small_histories())
def test_the_checker_agrees_with_brute_force_on_arbitrary_small_histories(
    history: list[Call],
) -> None:
    expected = brute_force_linearizable(history)
    event("linearizable" if expected else "not linearizable")
    result = check_linearizable(history)
    assert result.ok is expected, result.summary()


# -- memoization --------------------------------------------------------------------------


def most_in_flight(calls: Sequence[Call]) -> int:
    """The most calls whose clients were waiting for them at one instant."""
    changes = sorted(
        change
        for c in calls
        if c.completed is not None
        for change in ((c.invoked, 1), (c.completed, -1))
    )  # at equal times, returns (-1) first
    return max(itertools.accumulate(change for _, change in changes))


def test_memoization_keeps_300_calls_of_10_concurrent_clients_under_200_000_states() -> None:
    history = simulate(random.Random(20240501), clients=10, calls=300, unknown_rate=0.05)
    calls = [sim.call for sim in history]
    assert most_in_flight(calls) == 10
    result = check_linearizable(calls, max_states=200_000)
    assert result.ok, result.summary()
    assert result.key_results["k"].calls >= 280


def test_memoization_bounds_the_exhaustive_search_of_a_300_call_history_that_fails() -> None:
    """A read at the very end that no configuration explains: to report it the search
    must rule out every way of linearizing the 300 calls before it. (All outcomes
    known: unknown-outcome calls multiply the configurations of a failing search.)"""
    history = simulate(random.Random(20240502), clients=10, calls=300, unknown_rate=0.0)
    calls = [sim.call for sim in history]
    assert most_in_flight(calls) == 10
    end = max(c.completed for c in calls if c.completed is not None)
    stale = [*calls, write("late", 99, end + 1, end + 2), read("late", end + 3, end + 4, 98)]
    result = check_linearizable(stale, max_states=200_000)
    assert not result.ok
    assert result.key_results["k"].failed_call == stale[-1]
