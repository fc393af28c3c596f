"""``edgebus bench state`` at tiny sizes: both phases run (the owner in the benchmark's
process, then in a region service), every answer is counted exactly, and the ratios
and stages are reported. Only the code paths are checked here, never the figures. The
arithmetic is checked without a broker."""

from __future__ import annotations

from pathlib import Path

from edgebus.bench.state import (
    MODES,
    PHASES,
    STAGES,
    check_phase,
    compare,
    median_stages,
    stages_of,
    summarize,
)
from tests.integration.regions import make_regions
from tests.integration.test_bench_region import bench, close_to


def test_bench_state_runs_both_phases_with_exact_counts(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    regions = make_regions(kafka_bootstrap, tmp_path)
    result = bench(
        ["state", "--seconds", "0.3", "--rounds", "1", "--concurrency", "3",
         "--store-dir", str(tmp_path)],
        regions.env, timeout=150,
    )
    assert result["passed"] is True
    assert result["concurrency"] == [1, 3] and result["rounds"] == 1
    assert result["fresh_region"] is True and result["region"] not in regions.names
    rows = {(r["phase"], r["mode"], r["concurrency"]): r for r in result["rows"]}
    assert set(rows) == {(p, m, c) for p in PHASES for m in MODES for c in (1, 3)}
    for row in rows.values():
        assert row["ops"] > 0 and row["per_s"] > 0
        assert 0 < row["p50_ms"] <= row["p99_ms"] <= row["max_ms"]
    # each phase incremented its own state; every answer counted once, on its path
    checks = {c["phase"]: c for c in result["checks"]}
    assert set(checks) == set(PHASES)
    assert checks["local"]["state_id"] != checks["forwarded"]["state_id"]
    for phase, check in checks.items():
        assert check["passed"] and check["exact"], check
        assert check["errors"] == 0 and check["wrong_path"] == 0, check["error_examples"]
        assert check["final_value"] == check["increments"] >= check["measured"] > 0
        assert check["measured"] == sum(rows[(phase, "state", c)]["ops"] for c in (1, 3))
        assert len(check["hosts"]) == 1  # one owner answered everything
    assert checks["local"]["hosts"] != checks["forwarded"]["hosts"]  # another process
    comparisons = {(c["phase"], c["concurrency"]): c for c in result["comparisons"]}
    assert set(comparisons) == {(p, c) for p in PHASES for c in (1, 3)}
    for (phase, c), comparison in comparisons.items():
        state, send = rows[(phase, "state", c)], rows[(phase, "raw_send", c)]
        assert close_to(comparison["p50_vs_raw_send"], state["p50_ms"], send["p50_ms"])
        assert close_to(comparison["per_s_vs_raw_send"], state["per_s"], send["per_s"])
        assert comparison["p99_vs_raw_send"] > 0 and comparison["p50_vs_raw_rtt"] > 0
    assert [f["concurrency"] for f in result["forwarded_vs_local"]] == [1, 3]
    # every measured call is found in the state log and split into its stages
    stages = {(s["phase"], s["concurrency"]): s for s in result["stages"]}
    for (phase, c), s in stages.items():
        assert s["calls"] == rows[(phase, "state", c)]["ops"]
        assert list(s["stages_ms"]) == [name for name, _ in STAGES[phase]]
    assert set(stages) == {(p, c) for p in PHASES for c in (1, 3)}
    assert {p["process"] for p in result["processes"]} == {
        "benchmark (local)", "benchmark (forwarded)", f"region {result['region']} (forwarded)"}
    assert list(tmp_path.glob("edgebus-bench-*")) == []  # the region's store removed
    # and the embedded host's snapshots of the run's own region
    assert not (tmp_path / "state" / "regions" / result["region"]).exists()


def test_check_phase_finds_lost_and_doubled_increments() -> None:
    assert check_phase("local", "s", [2, 1, 3], 3, measured=2).passed
    lost = check_phase("local", "s", [1, 3], 3)
    assert not lost.exact and not lost.passed
    doubled = check_phase("local", "s", [1, 2, 2], 3)
    assert not doubled.exact
    assert not check_phase("local", "s", [1, 2, 3], 4).exact  # an unanswered increment ran
    assert not check_phase("forwarded", "s", [1], 1, wrong_path=1).passed
    errored = check_phase("forwarded", "s", [1], 1, errors=["boom"])
    assert errored.exact and not errored.passed and errored.error_examples == ["boom"]


def test_summarize_takes_medians_over_rounds_and_compare_divides_them() -> None:
    rows = []
    for phase in PHASES:
        rows += [
            summarize(phase, "state", 1, [([4.0, 5.0, 6.0], 0.015), ([4.0, 8.0, 9.0], 0.021)]),
            summarize(phase, "raw_send", 1, [([1.0] * 4, 0.004)]),
            summarize(phase, "raw_rtt", 1, [([2.0] * 4, 0.008)]),
        ]
    state = rows[0]
    assert state.rounds_p50_ms == [5.0, 8.0] and state.p50_ms == 6.5
    assert state.ops == 6 and state.max_ms == 9.0
    assert state.per_s == round((200.0 + 3 / 0.021) / 2, 1)
    local, forwarded = compare(rows)
    assert (local.phase, forwarded.phase) == ("local", "forwarded")
    assert local.p50_vs_raw_send == 6.5 and local.p50_vs_raw_rtt == 3.25
    assert local.per_s_vs_raw_send == round(state.per_s / 1000, 3)


def test_stages_telescope_to_the_call_latency() -> None:
    local = stages_of("local", 100.0, 107.5, {"op": 104})
    assert local == {"append": 4.0, "acknowledge": 3.5}
    forwarded = stages_of("forwarded", 100.0, 120.0, {"request": 102, "op": 113})
    assert forwarded == {"request": 2.0, "owner": 11.0, "answer": 7.0}
    assert stages_of("forwarded", 100.0, 120.0, {"op": 113}) is None  # request not found
    assert stages_of("local", 100.0, 120.0, {}) is None
    figures = median_stages("forwarded", 16, [forwarded, forwarded])
    assert figures.calls == 2 and figures.total_ms == 20.0
