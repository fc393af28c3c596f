"""Unit and property tests of tests.checkers.causal_history (the causal history checker).

The property tests drive :class:`CausalSim`: regions that apply writes in a causally
consistent order and answer reads from what they applied. Every history it records
must check clean; one where a region applied a write before its dependency, and a
read observed that window, must not.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.checkers.causal_history import (
    CONSISTENCIES,
    Anomaly,
    HistoryRecorder,
    Op,
    check_causal,
    load_jsonl,
    summarize,
)

# -- helpers ---------------------------------------------------------------------------


class Timeline:
    """Records ops one after another: op n runs from time n to n + 0.5."""

    def __init__(self, recorder: HistoryRecorder | None = None, start: float = 0.0) -> None:
        self.recorder = recorder if recorder is not None else HistoryRecorder()
        self.now = start

    def _span(self) -> tuple[float, float]:
        invoked = self.now
        self.now += 1.0
        return invoked, invoked + 0.5

    def write(
        self,
        session: str,
        key: str,
        value: str,
        region: str = "eu",
        placement: Iterable[str] = ("eu", "us"),
    ) -> Op:
        return self.recorder.write(session, key, value, region, placement, *self._span())

    def read(
        self,
        session: str,
        key: str,
        value: str | None,
        region: str = "eu",
        consistency: str = "causal",
    ) -> Op:
        return self.recorder.read(session, key, value, region, *self._span(), consistency)

    def check(self) -> list[Anomaly]:
        return check_causal(self.recorder.ops)


def kinds(anomalies: list[Anomaly]) -> list[str]:
    return [a.kind for a in anomalies]


def chat(t: Timeline) -> tuple[Op, Op]:
    """Session A posts a message; B reads it at eu and replies. Returns (message, reply)."""
    message = t.write("A", "msg:1", "hello", region="eu")
    t.read("B", "msg:1", "hello", region="eu", consistency="eventual")
    reply = t.write("B", "msg:2", "hi back", region="eu")
    return message, reply


# -- valid histories -------------------------------------------------------------------


def test_valid_sequential_history_has_no_anomalies() -> None:
    t = Timeline()
    t.read("A", "x", None)
    t.write("A", "x", "v1")
    t.read("A", "x", "v1")
    t.read("B", "x", "v1", region="us")
    t.write("B", "x", "v2", region="us")
    t.read("A", "x", "v2", region="us")
    t.read("C", "x", "v2", region="eu", consistency="eventual")
    t.read("C", "y", None, region="eu")
    assert t.check() == []


def test_concurrent_writes_resolved_either_way_are_not_anomalies() -> None:
    t = Timeline()
    t.write("A", "x", "a")
    t.write("B", "x", "b")
    # A's own write lost to a concurrent one: not stale, b is not causally before a
    t.read("A", "x", "b")
    t.read("B", "x", "a", region="us")
    # a region may flip between concurrent writes: neither precedes the other
    t.read("C", "x", "b", region="eu", consistency="eventual")
    t.read("D", "x", "a", region="eu", consistency="eventual")
    assert t.check() == []


def test_writes_not_placed_in_the_serving_region_need_not_be_visible_there() -> None:
    t = Timeline()
    t.write("A", "x", "v1", region="eu", placement=["eu"])
    t.read("A", "x", None, region="us")  # read-your-writes does not reach us
    message = t.write("A", "msg:1", "hello", region="eu", placement=["eu"])
    t.write("A", "msg:2", "reply", region="eu", placement=["eu", "us"])
    t.read("O", "msg:2", "reply", region="us", consistency="eventual")
    t.read("O", message.key, None, region="us")  # the dependency is never placed in us
    assert t.check() == []


def test_eventual_reads_are_not_held_to_session_guarantees() -> None:
    t = Timeline()
    t.write("A", "x", "v1")
    t.write("A", "x", "v2")
    t.read("A", "x", None, consistency="eventual")
    t.read("A", "x", "v1", region="us", consistency="bounded_staleness")
    assert t.check() == []


def test_reads_that_overlap_in_time_are_not_ordered() -> None:
    r = HistoryRecorder()
    r.write("A", "x", "v1", "eu", ["eu"], 0.0, 1.0)
    r.write("A", "x", "v2", "eu", ["eu"], 2.0, 3.0)
    r.read("B", "x", "v2", "eu", 4.0, 6.0)
    r.read("C", "x", "v1", "eu", 5.0, 7.0)  # invoked before B's read completed
    assert check_causal(r.ops) == []
    r.read("D", "x", "v1", "eu", 6.5, 8.0)  # invoked after it: the region went back
    assert kinds(check_causal(r.ops)) == ["visibility"]


def test_session_order_is_by_time_not_by_position_in_the_list() -> None:
    t = Timeline()
    t.write("A", "x", "v1")
    t.write("A", "x", "v2")
    stale = t.read("A", "x", "v1")
    ops = t.recorder.ops
    assert check_causal(list(reversed(ops))) == check_causal(ops)
    assert [a.ops[0] for a in check_causal(reversed(ops))] == [stale]


# -- session guarantees ----------------------------------------------------------------


def test_read_your_writes_violation_returning_the_overwritten_value_is_detected() -> None:
    t = Timeline()
    t.write("A", "x", "v1")
    v2 = t.write("A", "x", "v2")
    stale = t.read("A", "x", "v1")
    [anomaly] = t.check()
    assert anomaly.kind == "session"
    assert anomaly.ops[:2] == (stale, v2)
    assert "stale read" in anomaly.message and "'v2'" in anomaly.message


def test_read_your_writes_violation_returning_absent_is_detected() -> None:
    t = Timeline()
    v1 = t.write("A", "x", "v1", region="eu", placement=["eu", "us"])
    stale = t.read("A", "x", None, region="us")
    [anomaly] = t.check()
    assert (anomaly.kind, anomaly.ops[:2]) == ("session", (stale, v1))
    assert "absent" in anomaly.message


def test_monotonic_reads_violation_is_detected() -> None:
    t = Timeline()
    t.write("A", "x", "v1")
    v2 = t.write("A", "x", "v2")
    seen = t.read("B", "x", "v2", region="eu", consistency="eventual")
    stale = t.read("B", "x", "v1", region="us")
    [anomaly] = t.check()
    assert anomaly.kind == "session"
    assert anomaly.ops == (stale, v2, seen, t.recorder.ops[0])
    assert "through" in anomaly.message


def test_causal_read_of_a_message_absent_after_its_reply_was_seen_is_detected() -> None:
    t = Timeline()
    message, _ = chat(t)
    t.read("O", "msg:2", "hi back", region="eu", consistency="eventual")
    stale = t.read("O", "msg:1", None, region="us")  # another region: no visibility rule
    [anomaly] = t.check()
    assert (anomaly.kind, anomaly.ops[:2]) == ("session", (stale, message))


# -- region visibility -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply_read", "message_read"),
    [("causal", "causal"), ("eventual", "causal"), ("eventual", "eventual")],
)
def test_writes_follow_reads_reply_visible_before_its_message_is_detected(
    reply_read: str, message_read: str
) -> None:
    t = Timeline()
    message, _ = chat(t)
    seen = t.read("O", "msg:2", "hi back", region="us", consistency=reply_read)
    missing = t.read("O", "msg:1", None, region="us", consistency=message_read)
    anomalies = t.check()
    expected = ["session", "visibility"] if message_read == "causal" else ["visibility"]
    assert kinds(anomalies) == expected
    visibility = anomalies[-1]
    assert visibility.ops == (missing, seen, message)
    assert "visible before its dependency" in visibility.message


def test_dependency_missing_for_another_session_at_the_same_region_is_detected() -> None:
    t = Timeline()
    message, _ = chat(t)
    t.read("O", "msg:2", "hi back", region="us", consistency="eventual")
    missing = t.read("P", "msg:1", None, region="us", consistency="eventual")
    [anomaly] = t.check()
    assert (anomaly.kind, anomaly.ops[0], anomaly.ops[2]) == ("visibility", missing, message)


def test_region_going_back_in_time_is_detected() -> None:
    t = Timeline()
    v1 = t.write("A", "x", "v1")
    v2 = t.write("A", "x", "v2")
    seen = t.read("B", "x", "v2", consistency="eventual")
    older = t.read("C", "x", "v1", consistency="eventual")
    [anomaly] = t.check()
    assert anomaly.kind == "visibility"
    assert anomaly.ops == (older, seen, v2, v1)
    assert "went back in time" in anomaly.message


def test_region_losing_a_key_it_served_is_detected() -> None:
    t = Timeline()
    t.write("A", "x", "v1")
    t.read("B", "x", "v1", consistency="eventual")
    gone = t.read("C", "x", None, consistency="eventual")
    [anomaly] = t.check()
    assert (anomaly.kind, anomaly.ops[0]) == ("visibility", gone)
    assert "absent" in anomaly.message


# -- malformed histories ---------------------------------------------------------------


def test_phantom_read_is_detected() -> None:
    t = Timeline()
    t.write("A", "x", "v1")
    ghost = t.read("B", "x", "never written", consistency="eventual")
    [anomaly] = t.check()
    assert (anomaly.kind, anomaly.ops) == ("phantom", (ghost,))


def test_read_of_a_value_written_to_another_key_is_phantom() -> None:
    t = Timeline()
    y = t.write("A", "y", "v1")
    wrong = t.read("B", "x", "v1", consistency="eventual")
    [anomaly] = t.check()
    assert (anomaly.kind, anomaly.ops) == ("phantom", (wrong, y))


def test_read_served_by_a_region_the_write_is_not_placed_in_is_detected() -> None:
    t = Timeline()
    v1 = t.write("A", "x", "v1", placement=["eu"])
    leak = t.read("B", "x", "v1", region="us", consistency="eventual")
    [anomaly] = t.check()
    assert (anomaly.kind, anomaly.ops) == ("placement", (leak, v1))


def test_reads_of_values_that_depend_on_themselves_are_a_causality_cycle() -> None:
    r = HistoryRecorder()
    r.read("A", "x", "b", "eu", 0.0, 1.0)  # reads B's write before B made it
    a = r.write("A", "y", "a", "eu", ["eu"], 2.0, 3.0)
    r.read("B", "y", "a", "eu", 0.0, 1.0)
    b = r.write("B", "x", "b", "eu", ["eu"], 2.0, 3.0)
    anomalies = check_causal(r.ops)
    assert sorted(kinds(anomalies)) == ["cycle", "future", "future"]
    [cycle] = [anomaly for anomaly in anomalies if anomaly.kind == "cycle"]
    assert set(cycle.ops) == {a, b}


def test_read_returning_a_write_invoked_after_the_read_completed_is_detected() -> None:
    r = HistoryRecorder()
    early = r.read("A", "x", "v1", "eu", 0.0, 1.0)
    v1 = r.write("B", "x", "v1", "eu", ["eu"], 1.5, 2.0)
    r.read("C", "x", "v1", "eu", 1.0, 2.5)  # overlaps the write: fine
    assert [(a.kind, a.ops) for a in check_causal(r.ops)] == [("future", (early, v1))]


def test_duplicate_write_values_raise_value_error() -> None:
    ops = [
        Op("write", "A", "x", "v", "eu", 0.0, 1.0, placement=("eu",)),
        Op("write", "B", "y", "v", "us", 0.0, 1.0, placement=("us",)),
    ]
    with pytest.raises(ValueError, match="not unique"):
        check_causal(ops)
    recorder = HistoryRecorder()
    recorder.write("A", "x", "v", "eu", ["eu"], 0.0, 1.0)
    with pytest.raises(ValueError, match="twice"):
        recorder.write("A", "y", "v", "eu", ["eu"], 2.0, 3.0)


@pytest.mark.parametrize(
    ("op", "match"),
    [
        (Op("write", "A", "x", "v", "eu", 0.0, 1.0), "placement"),
        (Op("write", "A", "x", None, "eu", 0.0, 1.0, placement=("eu",)), "needs a value"),
        (Op("read", "A", "x", None, "eu", 2.0, 1.0), "completed before"),
        (Op("read", "A", "x", None, "eu", 0.0, 1.0, consistency="strong"), "consistency"),
        (Op("read", "A", "x", None, "eu", 0.0, float("nan")), "finite"),
    ],
)
def test_malformed_ops_raise_value_error(op: Op, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        check_causal([op])


# -- recording and reporting -----------------------------------------------------------


def test_jsonl_round_trip_of_two_recorders_merges_their_histories(tmp_path: Path) -> None:
    shared, other = tmp_path / "history.jsonl", tmp_path / "observer.jsonl"
    poster, replier, observer = Timeline(), Timeline(start=0.25), Timeline(start=10.0)
    poster.write("A", "msg:1", "hello", region="eu")
    poster.recorder.save_jsonl(shared)
    replier.read("B", "msg:1", "hello", region="eu", consistency="eventual")
    replier.recorder.save_jsonl(shared)  # a second process appends to the same file
    replier.write("B", "msg:2", "hi back")
    replier.recorder.save_jsonl(shared)  # appends only the op recorded since
    observer.read("O", "msg:2", "hi back", region="us", consistency="eventual")
    observer.read("O", "msg:1", None, region="us")
    observer.recorder.save_jsonl(other)

    merged = load_jsonl(shared, other)

    recorded = poster.recorder.ops + replier.recorder.ops + observer.recorder.ops
    assert len(shared.read_text().splitlines()) == 3
    assert sorted(merged, key=repr) == sorted(recorded, key=repr)
    assert [op.invoked for op in merged] == sorted(op.invoked for op in recorded)
    # the anomaly spans the three processes' records
    assert kinds(check_causal(merged)) == ["session", "visibility"]


def test_load_jsonl_names_the_file_and_line_of_a_malformed_record(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    good = Op("read", "A", "x", None, "eu", 0.0, 1.0)
    recorder = HistoryRecorder()
    recorder.read(good.session, good.key, None, good.region, good.invoked, good.completed)
    recorder.save_jsonl(path)
    with path.open("a") as f:
        f.write("\n" + json.dumps({"kind": "read"}) + "\n")
    with pytest.raises(ValueError, match=r"history\.jsonl:3"):
        load_jsonl(path)


def test_summarize_counts_by_kind_and_lists_the_first_ten() -> None:
    assert summarize([]) == "no anomalies"
    read = Op("read", "A", "x", "?", "eu", 0.0, 1.0)
    anomalies = [Anomaly("phantom", f"p{n}", (read,)) for n in range(11)]
    anomalies.append(Anomaly("session", "s0", (read,)))
    text = summarize(anomalies)
    lines = text.splitlines()
    assert lines[0] == "12 anomalies (phantom: 11, session: 1)"
    assert lines[1:11] == [f"{n + 1}. [phantom] p{n}" for n in range(10)]
    assert lines[11:] == ["... and 2 more"]


# -- simulation ------------------------------------------------------------------------

REGIONS = ("eu", "us", "ap")
SESSIONS = ("s0", "s1", "s2", "s3")
KEYS = ("x", "y", "z")


def _bits(x: int) -> Iterator[int]:
    while x:
        low = x & -x
        yield low.bit_length() - 1
        x ^= low


@dataclass
class _Planned:
    """An op of the simulation, linearized at ``step``; it runs from ``step - lead``
    to ``step + lag`` unless its session's neighbouring ops leave less room."""

    op: Op
    step: int
    lead: float
    lag: float


class CausalSim:
    """Regions that apply writes in a causally consistent order.

    A region applies a write placed in it only after every write in the write's causal
    past that is placed there. A read returns the applied write of the key with the
    highest index (index order extends causality: later causal write wins, concurrent
    ones by index); a causal read first makes the region apply the session's causal
    past. Pasts are bitsets over write indexes, as in the checker.
    """

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.values: list[str] = []
        self.pasts: list[int] = []
        self.session_past: dict[str, int] = defaultdict(int)
        self.placed: dict[str, int] = defaultdict(int)  # region -> writes placed there
        self.applied: dict[str, int] = defaultdict(int)  # region -> writes applied there
        self.current: dict[tuple[str, str], int] = {}  # (region, key) -> highest applied
        self.planned: list[_Planned] = []

    def _plan(self, op: Op, lead: float, lag: float) -> None:
        self.planned.append(_Planned(op, len(self.planned), lead, lag))

    def write(
        self,
        session: str,
        key: str,
        home: str,
        placement: Iterable[str],
        lead: float = 0.0,
        lag: float = 0.0,
        *,
        apply_at_home: bool = True,
    ) -> int:
        w = len(self.keys)
        value = f"{key}#{w}"
        places = frozenset(placement)
        self.keys.append(key)
        self.values.append(value)
        self.pasts.append(self.session_past[session])
        self.session_past[session] |= 1 << w
        for region in places:
            self.placed[region] |= 1 << w
        if apply_at_home and self.can_apply(home, w):  # placed at home: applied at once
            self.apply(home, w)
        op = Op("write", session, key, value, home, 0, 0, placement=tuple(sorted(places)))
        self._plan(op, lead, lag)
        return w

    def can_apply(self, region: str, w: int) -> bool:
        placed, applied = self.placed[region], self.applied[region]
        if not placed >> w & 1 or applied >> w & 1:
            return False
        return not self.pasts[w] & placed & ~applied

    def apply(self, region: str, w: int, *, causally: bool = True) -> None:
        assert not causally or self.can_apply(region, w), (region, w)
        self.applied[region] |= 1 << w
        slot = (region, self.keys[w])
        self.current[slot] = max(self.current.get(slot, -1), w)

    def pending(self, region: str) -> list[int]:
        return list(_bits(self.placed[region] & ~self.applied[region]))

    def sync(self, region: str) -> None:
        for w in self.pending(region):  # ascending: dependencies come first
            if self.can_apply(region, w):
                self.apply(region, w)

    def read(
        self,
        session: str,
        key: str,
        region: str,
        consistency: str = "eventual",
        lead: float = 0.0,
        lag: float = 0.0,
    ) -> int | None:
        if consistency == "causal":
            needed = self.session_past[session] & self.placed[region] & ~self.applied[region]
            for missing in _bits(needed):
                self.apply(region, missing)
        got = self.current.get((region, key))
        if got is not None:
            self.session_past[session] |= 1 << got | self.pasts[got]
        value = None if got is None else self.values[got]
        self._plan(Op("read", session, key, value, region, 0, 0, consistency), lead, lag)
        return got

    def ops(self) -> list[Op]:
        """The recorded ops, timed around their steps without overlapping in a session."""
        by_session: dict[str, list[_Planned]] = defaultdict(list)
        for planned in self.planned:
            by_session[planned.op.session].append(planned)
        timed: list[Op] = []
        for run in by_session.values():
            previous_end = float("-inf")
            for n, p in enumerate(run):
                next_step = run[n + 1].step if n + 1 < len(run) else float("inf")
                invoked = max(p.step - p.lead, previous_end + 0.001)
                completed = min(p.step + p.lag, next_step - 0.002)
                timed.append(replace(p.op, invoked=invoked, completed=completed))
                previous_end = completed
        return timed


ACTIONS = ("write", "read", "read", "apply", "apply", "sync")
small = st.integers(min_value=0, max_value=11)
# an action and its arguments as indexes, interpreted by simulations() (flat tuples of
# small integers generate and shrink far faster than nested choices)
actions = st.tuples(*[st.integers(min_value=0, max_value=len(ACTIONS) - 1)] + [small] * 7)


@st.composite
def simulations(draw: st.DrawFn) -> CausalSim:
    """A CausalSim after 1 to 40 actions; ops take 0 to 2.75 steps around their step."""
    sim = CausalSim()
    n = draw(st.integers(min_value=1, max_value=40))
    for act, s, k, r, places, c, lead, lag in draw(st.lists(actions, min_size=n, max_size=n)):
        action, region = ACTIONS[act], REGIONS[r % len(REGIONS)]
        session, key = SESSIONS[s % len(SESSIONS)], KEYS[k % len(KEYS)]
        if action == "write":
            mask = places % 7 + 1  # a non-empty subset of the regions
            placement = [x for n, x in enumerate(REGIONS) if mask >> n & 1]
            sim.write(session, key, region, placement, lead / 4, lag / 4)
        elif action == "read":
            consistency = CONSISTENCIES[c % len(CONSISTENCIES)]
            sim.read(session, key, region, consistency, lead / 4, lag / 4)
        elif action == "sync":
            sim.sync(region)
        elif ready := [w for w in sim.pending(region) if sim.can_apply(region, w)]:
            sim.apply(region, ready[c % len(ready)])
    return sim


@settings(deadline=None)
@given(simulations(), st.randoms(use_true_random=False))
def test_causally_consistent_simulated_histories_have_no_anomalies(
    sim: CausalSim, rnd: random.Random
) -> None:
    ops = sim.ops()
    rnd.shuffle(ops)
    anomalies = check_causal(ops)
    assert anomalies == [], summarize(anomalies)


@settings(deadline=None)
@given(
    simulations(),
    st.sampled_from(SESSIONS),
    st.sampled_from([*SESSIONS, "watcher"]),
    st.lists(st.sampled_from(KEYS), min_size=2, max_size=2, unique=True),
    st.sampled_from(REGIONS),
    st.sets(st.sampled_from(REGIONS)),
)
def test_a_region_applying_a_write_before_its_dependency_is_detected(
    sim: CausalSim,
    writer: str,
    observer: str,
    keys: list[str],
    region: str,
    elsewhere: set[str],
) -> None:
    dep_key, top_key = keys
    # the writer's past holds whatever the region has for dep_key (or it has nothing)
    sim.read(writer, dep_key, region, "causal")
    dep = sim.write(writer, dep_key, region, {region} | elsewhere, apply_at_home=False)
    top = sim.write(writer, top_key, region, {region} | elsewhere, apply_at_home=False)
    sim.apply(region, top, causally=False)  # the violation: dep is not applied yet
    assert sim.read(observer, top_key, region) == top
    assert sim.read(observer, dep_key, region) != dep

    ops = sim.ops()
    anomalies = check_causal(ops)

    dep_op = next(op for op in ops if op.value == sim.values[dep])
    assert any(a.kind == "visibility" and dep_op in a.ops for a in anomalies), summarize(anomalies)


def test_a_20000_op_simulated_history_checks_clean() -> None:
    rnd = random.Random(20_000)
    sim = CausalSim()
    sessions = [f"s{n}" for n in range(24)]
    keys = [f"k{n}" for n in range(40)]
    while len(sim.planned) < 20_000:
        roll = rnd.random()
        if roll < 0.35:
            placement = rnd.sample(REGIONS, rnd.randint(1, len(REGIONS)))
            sim.write(rnd.choice(sessions), rnd.choice(keys), rnd.choice(REGIONS), placement)
        elif roll < 0.95:
            consistency = rnd.choice(CONSISTENCIES)
            sim.read(rnd.choice(sessions), rnd.choice(keys), rnd.choice(REGIONS), consistency)
        else:
            sim.sync(rnd.choice(REGIONS))
    anomalies = check_causal(sim.ops())
    assert anomalies == [], summarize(anomalies)
