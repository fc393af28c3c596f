"""Property: whatever the interleaving of FIFO streams (with re-deliveries), the causal
gate applies every event placed in a region exactly once, after all its dependencies."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from edgebus.core.causality import CausalGate, Unit
from edgebus.core.vector_clock import VectorClock

REGIONS = ("a", "b", "c")
PARTITIONS = 2
TARGET = "b"

Pos = tuple[str, int, int]


def build_history(
    rng: random.Random, n_writes: int
) -> tuple[list[tuple[Pos, VectorClock, bool]], dict[tuple[str, int], int]]:
    """Writes (position, deps, placed in TARGET) by 3 sessions that read each other."""
    sessions = [VectorClock() for _ in range(3)]
    heads: dict[tuple[str, int], int] = {}
    writes: list[tuple[Pos, VectorClock, bool]] = []
    for _ in range(n_writes):
        s = rng.randrange(3)
        if writes and rng.random() < 0.4:  # the session reads some earlier write
            pos, deps, _ = rng.choice(writes)
            sessions[s] = sessions[s].merge(deps).advance(_p(pos))
        origin, partition = rng.choice(REGIONS), rng.randrange(PARTITIONS)
        offset = heads.get((origin, partition), -1) + 1 + rng.randrange(2)  # gaps: other keys
        heads[(origin, partition)] = offset
        placed = origin == TARGET or rng.random() < 0.6
        writes.append(((origin, partition, offset), sessions[s], placed))
        sessions[s] = sessions[s].advance(_p((origin, partition, offset)))
    return writes, heads


def _p(pos: Pos):  # type: ignore[no-untyped-def]
    from edgebus.core.vector_clock import Position

    return Position(*pos)


@settings(deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 40))
def test_every_event_is_applied_once_after_its_dependencies(seed: int, n_writes: int) -> None:
    rng = random.Random(seed)
    writes, heads = build_history(rng, n_writes)
    streams: dict[tuple[str, int], list[Unit[Pos]]] = {}
    for pos, deps, placed in writes:
        stream = (pos[0], pos[1])
        if placed:
            streams.setdefault(stream, []).append(Unit(stream, pos[2], deps, pos))
        elif rng.random() < 0.5:  # a replicator watermark passes the hole now or later
            streams.setdefault(stream, []).append(Unit(stream, pos[2], None, pos))
    for stream, head in heads.items():  # heartbeats close every stream in the end
        heads[stream] = head + 1
        streams.setdefault(stream, []).append(Unit(stream, head + 1, None, (*stream, head), 1))
    # interleave FIFO streams; sometimes re-deliver a prefix (at-least-once)
    cursors = {s: 0 for s in streams}
    gate: CausalGate[Pos] = CausalGate()
    applied: list[Pos] = []
    while cursors:
        s = rng.choice(sorted(cursors))
        if cursors[s] and rng.random() < 0.1:
            cursors[s] = rng.randrange(cursors[s])
        unit = streams[s][cursors[s]]
        cursors[s] += 1
        if cursors[s] == len(streams[s]):
            del cursors[s]
        released = gate.offer(unit)
        for u in released or ():
            if not u.is_watermark:
                applied.append(u.item)
    placed_here = [pos for pos, _, placed in writes if placed]
    assert sorted(applied) == sorted(placed_here), "each placed event applied exactly once"
    assert gate.pending == 0
    order = {pos: i for i, pos in enumerate(applied)}
    for pos, deps, placed in writes:
        if not placed:
            continue
        for other in placed_here:
            stream = (other[0], other[1])
            if stream != (pos[0], pos[1]) and other[2] <= deps.get(*stream):
                assert order[other] < order[pos], f"{pos} applied before its dependency {other}"
    assert gate.frontier == heads
