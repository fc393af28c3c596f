"""Property: with forged events (dependencies never met) among real ones, expiring the
heads that waited too long accounts for every unit exactly once (released or expired),
never releases an event before a dependency that was released, and leaves nothing
buffered once every head has waited past the cutoff."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from edgebus.core.causality import CausalGate, Unit
from edgebus.core.vector_clock import VectorClock

STREAMS = [("a", 0), ("a", 1), ("b", 0), ("c", 1)]


@settings(deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 60))
def test_expiry_accounts_for_every_unit_once_and_keeps_causal_order(
    seed: int, n_units: int
) -> None:
    rng = random.Random(seed)
    gate: CausalGate[tuple[str, int, int]] = CausalGate()
    heads = {s: -1 for s in STREAMS}
    offered: list[Unit[tuple[str, int, int]]] = []
    released: list[tuple[str, int, int]] = []
    expired: list[tuple[str, int, int]] = []
    for now in range(n_units):
        stream = rng.choice(STREAMS)
        heads[stream] += 1
        deps: dict[tuple[str, int], int] = {}
        if rng.random() < 0.5:  # a real dependency on an earlier position of another stream
            other = rng.choice([s for s in STREAMS if s != stream])
            if heads[other] >= 0:
                deps[other] = rng.randrange(heads[other] + 1)
        if rng.random() < 0.15:  # forged: never met
            deps[rng.choice(STREAMS)] = 2**62
        deps.pop(stream, None)
        unit = Unit(stream, heads[stream], VectorClock(deps), (*stream, heads[stream]),
                    None, 1, now)
        offered.append(unit)
        out = gate.offer(unit)
        assert out is not None
        released += [u.item for u in out]
        if rng.random() < 0.3:
            gone, out = gate.expire(now - rng.randrange(10))
            expired += [u.item for u in gone]
            released += [u.item for u in out]
    gone, out = gate.expire(n_units)
    expired += [u.item for u in gone]
    released += [u.item for u in out]
    assert gate.pending == gate.pending_bytes == 0
    assert sorted(released + expired) == sorted(u.item for u in offered)
    order = {item: i for i, item in enumerate(released)}
    by_item = {u.item: u for u in offered}
    for item in released:
        deps_of = by_item[item].deps
        assert deps_of is not None
        for (region, partition), offset in deps_of.entries().items():
            dep = (region, partition, offset)
            if dep in order:  # a dependency released here is released before it
                assert order[dep] < order[item]
