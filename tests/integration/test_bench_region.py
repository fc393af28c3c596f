"""``edgebus bench materialize|replicate|replay|read`` at tiny sizes: each runs and reports both
sides and their ratio. Only the code paths are checked here, never the figures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import run_cli
from tests.integration.regions import make_regions


def bench(args: list[str], env: dict[str, str], timeout: float = 180) -> dict[str, Any]:
    code, result, out, err = run_cli(["bench", *args, "--json"], env, timeout)
    assert code == 0, out + err
    assert isinstance(result, dict), out
    return result


def close_to(ratio: float, ours: float, theirs: float) -> bool:
    # the ratio comes from unrounded figures; the printed ones are rounded
    return abs(ratio - ours / theirs) <= 0.005 + 0.01 * ratio


def test_bench_materialize_reports_both_sides_and_their_ratio(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    env = make_regions(kafka_bootstrap, tmp_path).env
    result = bench(
        ["materialize", "--events", "300", "--rounds", "1", "--store-dir", str(tmp_path)], env
    )
    assert result["events"] == 300
    assert result["keys"] > 0  # the edgebus side built a store
    assert result["edgebus_events_per_s"] > 0 and result["raw_events_per_s"] > 0
    assert close_to(result["ratio"], result["edgebus_events_per_s"], result["raw_events_per_s"])
    assert list(tmp_path.glob("edgebus-bench-*")) == []  # round stores removed


def test_bench_replicate_reports_both_latencies_and_their_ratio(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    env = make_regions(kafka_bootstrap, tmp_path).env
    result = bench(["replicate", "--rate", "50", "--seconds", "1"], env)
    assert result["writes"] == 50
    assert result["source_region"] != result["target_region"]
    for side in ("edgebus", "raw"):
        assert 0 < result[f"{side}_p50_ms"] <= result[f"{side}_p99_ms"] <= result[f"{side}_max_ms"]
    assert close_to(result["p99_ratio"], result["edgebus_p99_ms"], result["raw_p99_ms"])


def test_bench_replay_reports_rate_and_peak_memory_per_prefix_and_reuses_a_named_region(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    env = make_regions(kafka_bootstrap, tmp_path).env
    first = bench(["replay", "--events", "400", "--fractions", "0.5,1"], env)
    assert first["filled"] == 400 and not first["reused"]
    small, big = first["sizes"]
    assert 0 < small["events"] < big["events"] == 400
    for size in (small, big):
        assert size["replay_events_per_s"] > 0 and size["raw_events_per_s"] > 0
        assert size["replay_peak_rss_mb"] > 0 and size["raw_peak_rss_mb"] > 0
        assert close_to(size["ratio"], size["replay_events_per_s"], size["raw_events_per_s"])
    # a second run named after the first one's region replays its events, writes none
    again = bench(
        ["replay", "--events", "400", "--fractions", "1", "--region", first["region"]], env
    )
    assert again["reused"] and again["filled"] == 0
    assert again["topic_events"] == 400 and again["sizes"][0]["events"] == 400


def test_bench_read_reports_every_level_embedded_and_over_http_without_violations(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    env = make_regions(kafka_bootstrap, tmp_path).env
    result = bench(
        ["read", "--reads", "50", "--keys", "10", "--warmup", "5", "--store-dir", str(tmp_path)],
        env,
    )
    assert result["reads"] == 50 and result["keys"] == 10
    assert result["violations"] == 0, result["violation_examples"]
    levels = ["eventual", "causal", "bounded_time", "bounded_versions"]
    rows = {(r["mode"], r["level"]): r for r in result["rows"]}
    assert set(rows) == {(m, lv) for m in ("local", "remote") for lv in levels}
    for (mode, level), row in rows.items():
        assert row["reads"] == 50 and row["violations"] == 0
        assert 0 < row["p50_ms"] <= row["p99_ms"] <= row["max_ms"]
        assert row["reads_per_s"] > 0
        eventual = rows[(mode, "eventual")]
        assert close_to(row["p50_ratio"], row["p50_ms"], eventual["p50_ms"])
        # the goal is judged for causal and the time bound only, never asserted here
        assert (row["goal_met"] is None) == (level in ("eventual", "bounded_versions"))
    assert isinstance(result["goal_met"], bool)
    assert list(tmp_path.glob("edgebus-bench-*")) == []  # the region's store removed
