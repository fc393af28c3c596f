"""BusMetrics: percentiles, throughput, error rate, the window and pruning (a fake
clock, no I/O), and the bus's hooks (a recorded call per operation kind)."""

from __future__ import annotations

from typing import Any

import pytest

from edgebus.errors import InvalidInput
from edgebus.sdk import EdgeBus
from edgebus.sdk.metrics import BusMetrics, percentile, recorded


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 50) == 50.0
    assert percentile(values, 95) == 95.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None


def test_snapshot_counts_latencies_errors_and_throughput() -> None:
    clock = Clock()
    m = BusMetrics(clock=clock)
    clock.now += 100  # the recorder is older than the window: throughput per window
    for ms in range(1, 101):
        m.record("write.eventual", float(ms))
    m.record("write.eventual", 5000.0, ok=False)  # a failure: no latency sample
    m.record("read.causal", 3.0)
    snap = m.snapshot(10)
    w = snap.operations["write.eventual"]
    assert (w.count, w.errors) == (101, 1)
    assert w.error_rate == pytest.approx(1 / 101)
    assert (w.p50_ms, w.p95_ms, w.p99_ms, w.max_ms) == (50.0, 95.0, 99.0, 100.0)
    assert w.ops_per_s == pytest.approx(101 / 10)
    assert snap.total.count == 102
    assert snap.total.errors == 1
    assert snap.total.ops_per_s == pytest.approx(102 / 10)
    assert snap.total.max_ms == 100.0
    assert sorted(snap.operations) == ["read.causal", "write.eventual"]
    assert snap.to_dict()["operations"]["read.causal"]["p50_ms"] == 3.0


def test_throughput_of_a_young_recorder_divides_by_its_age_at_least_one_second() -> None:
    clock = Clock()
    m = BusMetrics(clock=clock)
    for _ in range(20):
        m.record("state", 1.0)
    clock.now += 4
    assert m.snapshot(60).total.ops_per_s == pytest.approx(20 / 4)
    fresh = BusMetrics(clock=clock)
    fresh.record("state", 1.0)
    assert fresh.snapshot(60).total.ops_per_s == pytest.approx(1.0)


def test_the_window_leaves_out_older_samples() -> None:
    clock = Clock()
    m = BusMetrics(clock=clock)
    m.record("write.causal", 500.0, ok=False)
    clock.now += 30
    m.record("write.causal", 2.0)
    recent = m.snapshot(10).operations["write.causal"]
    assert (recent.count, recent.errors, recent.error_rate, recent.max_ms) == (1, 0, 0.0, 2.0)
    both = m.snapshot(60).operations["write.causal"]
    assert (both.count, both.errors, both.error_rate) == (2, 1, 0.5)


def test_an_empty_window_has_no_rates_and_no_latencies() -> None:
    clock = Clock()
    m = BusMetrics(clock=clock)
    m.record("write.eventual", 1.0)
    clock.now += 100
    snap = m.snapshot(10)
    assert snap.total.count == 0
    assert snap.total.error_rate is None
    assert snap.total.p99_ms is None
    assert snap.total.ops_per_s == 0.0
    assert snap.operations["write.eventual"].count == 0


def test_pruning_keeps_at_most_max_samples_and_nothing_older_than_max_age() -> None:
    clock = Clock()
    m = BusMetrics(max_samples=5, max_age_s=50, clock=clock)
    for ms in range(10):
        m.record("write.eventual", float(ms))
    kept = m.snapshot(1000).operations["write.eventual"]
    assert kept.count == 5
    assert kept.p50_ms == 7.0  # 5..9 kept
    clock.now += 60
    m.record("write.eventual", 1.0)  # the old five are older than max_age_s: dropped
    assert m.snapshot(1000).operations["write.eventual"].count == 1
    m.reset()
    assert m.operations() == []


def test_operations_filter_by_kind_or_prefix() -> None:
    m = BusMetrics(clock=Clock())
    for kind in ("write.eventual", "write.strong", "read.eventual", "state"):
        m.record(kind, 1.0)
    assert sorted(m.snapshot(60, ["write"]).operations) == ["write.eventual", "write.strong"]
    assert sorted(m.snapshot(60, ["write.*", "state"]).operations) == [
        "state", "write.eventual", "write.strong",
    ]
    assert m.snapshot(60, ["read.eventual"]).total.count == 1


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="max_samples"):
        BusMetrics(max_samples=0)
    with pytest.raises(ValueError, match="window_s"):
        BusMetrics().snapshot(0)


class Recording:
    def __init__(self, metrics: BusMetrics | None) -> None:
        self.metrics = metrics

    @recorded(lambda kw: f"op.{kw.get('mode', 'a')}")
    async def op(self, fail: bool = False, *, mode: str = "a") -> str:
        if fail:
            raise RuntimeError("no")
        return "done"

    @recorded(lambda kw: None)
    async def delegating(self) -> str:
        return "skipped"


async def test_recorded_times_successes_and_failures() -> None:
    m = BusMetrics(clock=Clock())
    r = Recording(m)
    assert await r.op() == "done"
    assert await r.op(mode="b") == "done"
    with pytest.raises(RuntimeError):
        await r.op(True)
    assert await r.delegating() == "skipped"
    snap = m.snapshot(60)
    assert (snap.operations["op.a"].count, snap.operations["op.a"].errors) == (2, 1)
    assert snap.operations["op.b"].count == 1
    assert sorted(snap.operations) == ["op.a", "op.b"]
    assert await Recording(None).op() == "done"  # no recorder: nothing to do


def config(**monitoring: Any) -> dict[str, Any]:
    return {"monitoring": monitoring}


async def test_the_bus_records_refused_calls_by_kind() -> None:
    bus = EdgeBus(config(), discovery=False)  # not started: every call is refused early
    assert bus.metrics is not None
    for call in (
        bus.read("", consistency="causal"),
        bus.read("k", consistency="nonsense"),
        bus.write("k", 1, operation="nonsense"),
        bus.write("k", 1, consistency="strong", expected_version=-1),
        bus.state("", "get"),
    ):
        with pytest.raises(InvalidInput):
            await call
    snap = bus.metrics.snapshot(60)
    assert {k: (s.count, s.errors) for k, s in snap.operations.items()} == {
        "read.causal": (1, 1),
        "read.invalid": (1, 1),
        "write.eventual": (1, 1),
        "write.strong": (1, 1),  # the strong write is recorded once, by commit
        "state": (1, 1),
    }
    await bus.close()


def test_metrics_disabled_means_no_recorder() -> None:
    assert EdgeBus(config(metrics_enabled=False), discovery=False).metrics is None
