"""A repair's catch-up racing the live replicator applies every event placed in the
target exactly once (the argument of :mod:`edgebus.region.catch_up`), checked on the
real causal gate with arbitrary interleavings of the two senders' copies."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from edgebus.core.causality import CausalGate, Unit
from edgebus.core.vector_clock import VectorClock
from edgebus.region.catch_up import plan_starts

STREAM = ("us", 0)


def sender(start: int, end: int, placed: list[bool]) -> list[Unit[str]]:
    """What one sender (the replicator, a catch-up) copies of offsets [start, end): the
    events placed in the target in order, then a replicator watermark at the last
    origin event not copied if no copy follows it."""
    out: list[Unit[str]] = []
    hole = None
    for offset in range(start, end):
        if placed[offset]:
            out.append(Unit(STREAM, offset, VectorClock.empty(), f"ev {offset}"))
            hole = None
        else:
            hole = offset
    if hole is not None:
        out.append(Unit(STREAM, hole, None, f"wm {hole}"))
    return out


def applied(frontier: int, arrivals: list[Unit[str]]) -> list[int]:
    """The event offsets the target's gate releases, in order, from ``arrivals``."""
    gate: CausalGate[str] = CausalGate({STREAM: frontier} if frontier >= 0 else {})
    out: list[int] = []
    for unit in arrivals:
        for released in gate.offer(unit) or []:
            if not released.is_watermark:
                out.append(released.offset)
    return out


def interleave(a: list[Unit[str]], b: list[Unit[str]], picks: list[bool]) -> list[Unit[str]]:
    """``a`` and ``b`` merged, each in its own order, taking from ``a`` where ``picks``
    says so."""
    out: list[Unit[str]] = []
    i = j = 0
    for take_a in picks:
        if take_a and i < len(a):
            out.append(a[i])
            i += 1
        elif j < len(b):
            out.append(b[j])
            j += 1
    return out + a[i:] + b[j:]


@st.composite
def races(draw: st.DrawFn) -> tuple[list[bool], int, int, int, int, list[bool]]:
    """(placed per offset, the target's frontier F, the replicator's committed offset
    C, its position P (copies up to it are in the target's topic), the start a repair
    asks for, interleaving picks)."""
    n = draw(st.integers(1, 30))
    placed = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    position = draw(st.integers(0, n))
    committed = draw(st.integers(0, position))
    frontier = draw(st.integers(-1, position - 1))
    requested = draw(st.integers(0, n + 3))  # frontier + 1, or anything a caller sends
    picks = draw(st.lists(st.booleans(), max_size=2 * n + 2))
    return placed, frontier, committed, position, requested, picks


@settings(max_examples=400, deadline=None)
@given(races())
def test_a_repair_racing_the_replicator_applies_every_placed_event_exactly_once(
    race: tuple[list[bool], int, int, int, int, list[bool]],
) -> None:
    placed, frontier, committed, position, requested, picks = race
    n = len(placed)
    # copies the replicator sent before the race, not applied yet (those up to the
    # frontier are): they precede everything else in the target's topic
    in_topic = [u for u in sender(frontier + 1, position, placed) if not u.is_watermark]
    live = sender(position, n, placed)
    start = plan_starts({0: requested}, {0: committed}, {0: 0})[0]
    repair = sender(start, n, placed)
    got = applied(frontier, in_topic + interleave(live, repair, picks))
    assert got == [o for o in range(frontier + 1, n) if placed[o]]


def test_a_start_past_what_the_replicator_copied_would_lose_events_so_it_is_lowered() -> None:
    placed = [True, True, True]
    # replication was paused before copying anything (committed 0); a caller asks to
    # start at 2: taken as given, the copy of 2 lands first and 0 and 1 become
    # "duplicates" when the replicator resumes
    naive = applied(-1, sender(2, 3, placed) + sender(0, 3, placed))
    assert naive == [2]
    start = plan_starts({0: 2}, {0: 0}, {0: 0})[0]
    assert start == 0
    assert applied(-1, sender(start, 3, placed) + sender(0, 3, placed)) == [0, 1, 2]
