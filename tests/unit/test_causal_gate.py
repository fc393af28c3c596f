"""The causal gate releases events only after their dependencies, per stream FIFO."""

from __future__ import annotations

from edgebus.core.causality import CausalGate, Unit
from edgebus.core.vector_clock import VectorClock


def ev(
    region: str, partition: int, offset: int, deps: dict[tuple[str, int], int] | None = None
) -> Unit[str]:
    item = f"{region}:{partition}:{offset}"
    return Unit((region, partition), offset, VectorClock(deps or {}), item)


def wm(region: str, partition: int, offset: int, origin_ms: int | None = None) -> Unit[str]:
    return Unit((region, partition), offset, None, f"wm {region}:{partition}:{offset}", origin_ms)


def items(units: list[Unit[str]] | None) -> list[str]:
    assert units is not None
    return [u.item for u in units]


def test_event_without_dependencies_is_released_at_once_and_moves_the_frontier() -> None:
    gate: CausalGate[str] = CausalGate()
    assert items(gate.offer(ev("us", 0, 5))) == ["us:0:5"]
    assert gate.frontier == {("us", 0): 5}
    assert gate.pending == 0


def test_event_waits_for_a_dependency_of_another_stream_then_is_released_by_it() -> None:
    gate: CausalGate[str] = CausalGate()
    reply = ev("eu", 1, 0, {("us", 2): 7})
    assert items(gate.offer(reply)) == []
    assert gate.pending == 1
    assert gate.blocked() == {("eu", 1): (0, {("us", 2): 7})}
    assert items(gate.offer(ev("us", 2, 7))) == ["us:2:7", "eu:1:0"]
    assert gate.pending == 0
    assert gate.frontier == {("us", 2): 7, ("eu", 1): 0}


def test_later_units_of_a_blocked_stream_wait_behind_its_head() -> None:
    gate: CausalGate[str] = CausalGate()
    gate.offer(ev("eu", 0, 1, {("us", 0): 3}))
    assert items(gate.offer(ev("eu", 0, 2))) == []  # no deps, but FIFO behind the head
    assert items(gate.offer(wm("eu", 0, 3, origin_ms=99))) == []
    assert gate.frontier.get(("eu", 0)) is None
    assert items(gate.offer(ev("us", 0, 3))) == ["us:0:3", "eu:0:1", "eu:0:2", "wm eu:0:3"]
    assert gate.frontier[("eu", 0)] == 3
    assert gate.fresh_ms == {("eu", 0): 99}


def test_a_watermark_passes_events_never_delivered_here() -> None:
    gate: CausalGate[str] = CausalGate()
    gate.offer(ev("eu", 0, 0, {("us", 0): 10}))  # us:0:10 is placed elsewhere
    assert items(gate.offer(wm("us", 0, 12))) == ["wm us:0:12", "eu:0:0"]


def test_own_stream_dependencies_are_satisfied_by_fifo_order() -> None:
    gate: CausalGate[str] = CausalGate()
    # the writer's previous write us:0:4 was placed elsewhere: the hole must not block
    assert items(gate.offer(ev("us", 0, 9, {("us", 0): 4}))) == ["us:0:9"]


def test_duplicates_of_applied_and_of_buffered_units_are_refused() -> None:
    gate: CausalGate[str] = CausalGate({("us", 0): 4})
    assert gate.offer(ev("us", 0, 4)) is None
    gate.offer(ev("eu", 0, 2, {("ap", 0): 1}))
    assert gate.offer(ev("eu", 0, 2, {("ap", 0): 1})) is None
    assert gate.offer(ev("eu", 0, 1)) is None
    assert gate.pending == 1


def test_chains_across_three_streams_release_in_dependency_order() -> None:
    gate: CausalGate[str] = CausalGate()
    assert items(gate.offer(ev("ap", 0, 0, {("eu", 0): 0}))) == []
    assert items(gate.offer(ev("eu", 0, 0, {("us", 0): 0}))) == []
    assert items(gate.offer(ev("us", 0, 0))) == ["us:0:0", "eu:0:0", "ap:0:0"]


def test_heartbeat_time_only_moves_forward() -> None:
    gate: CausalGate[str] = CausalGate()
    gate.offer(wm("us", 0, 5, origin_ms=200))
    gate.offer(wm("us", 0, 6, origin_ms=150))
    assert gate.fresh_ms[("us", 0)] == 200
    assert gate.frontier[("us", 0)] == 6


def test_pending_units_lists_every_buffered_unit() -> None:
    gate: CausalGate[str] = CausalGate()
    gate.offer(ev("eu", 0, 1, {("us", 0): 3}))
    gate.offer(ev("eu", 0, 2))
    gate.offer(ev("ap", 1, 7, {("us", 0): 1}))
    assert sorted(u.item for u in gate.pending_units()) == ["ap:1:7", "eu:0:1", "eu:0:2"]


def test_a_buffered_head_passes_the_positions_before_it_so_no_cycle_blocks() -> None:
    # a:1:4 is placed elsewhere; c:0:1 depends on it; a:1:6 depends on c:0:1.
    gate: CausalGate[str] = CausalGate({("a", 1): 3})
    assert items(gate.offer(ev("c", 0, 1, {("a", 1): 4}))) == []
    assert items(gate.offer(ev("a", 1, 6, {("c", 0): 1}))) == ["c:0:1", "a:1:6"]
    assert gate.pending == 0


def test_a_view_is_a_copy_that_later_offers_do_not_change() -> None:
    gate: CausalGate[str] = CausalGate()
    gate.offer(ev("us", 0, 1))
    gate.offer(ev("eu", 0, 5, {("ap", 0): 1}))
    view = gate.view()
    gate.offer(ev("us", 0, 2))
    assert view.passed(("us", 0)) == 1
    assert view.passed(("eu", 0)) == 4  # its buffered head at 5 passes 0..4
    assert gate.passed(("us", 0)) == 2


def test_heads_are_the_first_buffered_unit_of_each_blocked_stream() -> None:
    gate: CausalGate[str] = CausalGate()
    gate.offer(ev("eu", 0, 1, {("us", 0): 3}))
    gate.offer(ev("eu", 0, 2))
    gate.offer(ev("ap", 1, 7, {("us", 0): 1}))
    assert sorted(u.item for u in gate.heads()) == ["ap:1:7", "eu:0:1"]


def timed(
    region: str, partition: int, offset: int, deps: dict[tuple[str, int], int] | None,
    arrived_ms: int, size: int = 10,
) -> Unit[str]:
    return Unit((region, partition), offset, VectorClock(deps or {}),
                f"{region}:{partition}:{offset}", None, size, arrived_ms)


def test_the_buffer_counts_the_bytes_it_holds_and_gives_them_back_on_release() -> None:
    gate: CausalGate[str] = CausalGate()
    gate.offer(timed("eu", 1, 0, {("us", 2): 7}, 0, size=100))
    gate.offer(timed("eu", 1, 1, None, 0, size=50))
    assert (gate.pending, gate.pending_bytes) == (2, 150)
    gate.offer(timed("us", 2, 7, None, 0, size=1))
    assert (gate.pending, gate.pending_bytes) == (0, 0)


def test_a_head_waiting_past_the_cutoff_expires_and_its_stream_flows_again() -> None:
    gate: CausalGate[str] = CausalGate()
    gate.offer(timed("eu", 1, 0, {("ap", 3): 2**62}, 1_000))  # a dependency never met
    gate.offer(timed("eu", 1, 1, None, 1_500))
    gate.offer(timed("eu", 1, 2, None, 9_000))
    assert gate.oldest_head_ms() == 1_000
    assert gate.expire(999) == ([], [])
    expired, released = gate.expire(2_000)
    assert items(expired) == ["eu:1:0"]
    assert items(released) == ["eu:1:1", "eu:1:2"]
    assert gate.pending == gate.pending_bytes == 0
    assert gate.frontier == {("eu", 1): 2}
    assert gate.oldest_head_ms() is None


def test_expiry_takes_every_head_waiting_since_before_the_cutoff_and_no_later_one() -> None:
    gate: CausalGate[str] = CausalGate()
    gate.offer(timed("eu", 1, 0, {("ap", 3): 9}, 1_000))
    gate.offer(timed("eu", 1, 1, {("ap", 3): 9}, 1_100))
    gate.offer(timed("eu", 1, 2, {("ap", 3): 9}, 5_000))
    expired, released = gate.expire(2_000)
    assert items(expired) == ["eu:1:0", "eu:1:1"]
    assert released == []
    assert gate.blocked() == {("eu", 1): (2, {("ap", 3): 9})}
    assert gate.pending_bytes == 10


def test_an_expired_head_releases_the_streams_that_waited_on_the_positions_before_it() -> None:
    gate: CausalGate[str] = CausalGate()
    gate.offer(timed("eu", 1, 5, {("ap", 3): 2**62}, 0))  # eu:1 blocked at 5 ...
    gate.offer(timed("eu", 1, 9, None, 0))
    # ... and us:0 waits for eu:1 at 8: passed once the head moves to 9
    gate.offer(timed("us", 0, 0, {("eu", 1): 8}, 10_000))
    assert gate.pending == 3
    expired, released = gate.expire(0)
    assert items(expired) == ["eu:1:5"]
    assert items(released) == ["eu:1:9", "us:0:0"]
    assert gate.pending == 0


def test_restoring_a_snapshot_undoes_what_was_offered_since() -> None:
    gate: CausalGate[str] = CausalGate({("us", 0): 3})
    gate.offer(timed("eu", 1, 0, {("us", 0): 9}, 0))
    snap = gate.snapshot()
    gate.offer(timed("us", 0, 9, None, 0))
    gate.offer(timed("ap", 2, 4, {("us", 0): 20}, 0))
    assert gate.frontier[("us", 0)] == 9
    gate.restore(snap)
    assert gate.frontier == {("us", 0): 3}
    assert gate.blocked() == {("eu", 1): (0, {("us", 0): 9})}
    assert (gate.pending, gate.pending_bytes) == (1, 10)
    assert items(gate.offer(timed("us", 0, 9, None, 0))) == ["us:0:9", "eu:1:0"]


def test_an_event_behind_a_stuck_head_that_waits_for_another_stuck_stream_is_not_expired() -> (
    None
):
    gate: CausalGate[str] = CausalGate()
    gate.offer(timed("us", 0, 0, {("eu", 0): 2**40}, 0))  # forged, stuck
    gate.offer(timed("us", 1, 0, {("eu", 0): 2**40}, 0))  # forged, stuck
    gate.offer(timed("us", 1, 1, None, 1))  # a real write ...
    gate.offer(timed("us", 0, 1, {("us", 1): 1}, 2))  # ... and one that read it
    expired, released = gate.expire(10)
    assert sorted(items(expired)) == ["us:0:0", "us:1:0"]
    assert sorted(items(released)) == ["us:0:1", "us:1:1"]
    assert gate.pending == 0


def test_a_head_that_waits_for_a_position_behind_another_stuck_head_is_not_expired() -> None:
    gate: CausalGate[str] = CausalGate()
    gate.offer(timed("us", 2, 30, {("eu", 2): 2**40}, 0))  # forged, stuck
    gate.offer(timed("us", 2, 31, None, 1))  # a real write behind it ...
    gate.offer(timed("us", 0, 25, {("us", 2): 31}, 2))  # ... and one that read it
    expired, released = gate.expire(10)
    assert items(expired) == ["us:2:30"]
    assert items(released) == ["us:2:31", "us:0:25"]
