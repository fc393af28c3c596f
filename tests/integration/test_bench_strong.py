"""``edgebus bench strong`` at tiny sizes: it starts the region services and the
coordinator, measures every mode and reports the ratios. Only the code paths are
checked here, never the figures. The stage breakdown's arithmetic is checked without
a broker."""

from __future__ import annotations

import random
from pathlib import Path

from edgebus.bench.strong import (
    MODES,
    STAGES,
    LoggedRecord,
    compare,
    median_stages,
    schedule,
    stages_of,
    summarize,
)
from edgebus.core.commit_log import AckRecord, BeginRecord, DecisionRecord, VoteRecord
from edgebus.core.commit_vote import Decision, TxnOutcome, Vote
from tests.integration.regions import make_regions
from tests.integration.test_bench_region import bench, close_to


def test_bench_strong_reports_every_mode_and_the_ratios(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    env = make_regions(kafka_bootstrap, tmp_path).env
    result = bench(
        ["strong", "--rounds", "1", "--commits", "6", "--concurrency", "1,3",
         "--store-dir", str(tmp_path)],
        env, timeout=300,
    )
    assert result["broker"] == "configured" and result["concurrency"] == [1, 3]
    assert len(result["regions"]) == 3
    assert result["failed"] == 0, result["failure_examples"]
    rows = {(r["concurrency"], r["mode"]): r for r in result["rows"]}
    assert set(rows) == {(c, m) for c in (1, 3) for m in MODES}
    for row in rows.values():
        assert row["ops"] == 6
        assert 0 < row["p50_ms"] <= row["p99_ms"] <= row["max_ms"] and row["per_s"] > 0
    for c in result["comparisons"]:
        strong, raw = rows[(c["concurrency"], "strong")], rows[(c["concurrency"], "raw_rtt")]
        assert close_to(c["p50_vs_raw_rtt"], strong["p50_ms"], raw["p50_ms"])
        for name in ("p99_vs_raw_rtt", "p50_vs_kafka_txn", "p50_vs_eventual",
                     "per_s_vs_kafka_txn", "per_s_vs_eventual"):
            assert c[name] > 0
        assert c["goal_met"] == (c["p50_vs_raw_rtt"] <= result["goal_ratio"])
    assert isinstance(result["goal_met"], bool)
    # every measured commit is found in the commit log and broken into its stages
    assert {s["concurrency"]: s["commits"] for s in result["stages"]} == {1: 6, 3: 6}
    # what each process got from the machine meanwhile (Linux schedstat)
    assert {p["process"] for p in result["processes"]} == {
        *(f"region {r}" for r in result["regions"]), "coordinator", "benchmark"}
    assert list(tmp_path.glob("edgebus-bench-*")) == []  # the stores removed


def test_schedule_runs_every_pair_once_per_round() -> None:
    batches = list(schedule([1, 16], MODES, 3, random.Random(1)))
    assert len(batches) == 3 * 2 * len(MODES)
    for n in range(3):
        pairs = [(c, m) for r, c, m in batches if r == n]
        assert sorted(pairs) == sorted((c, m) for c in (1, 16) for m in MODES)


def test_summarize_takes_medians_over_rounds_and_compare_divides_them() -> None:
    rows = [
        summarize(1, "raw_rtt", [([1.0, 2.0, 3.0], 0.006), ([2.0, 2.0, 9.0], 0.013)]),
        summarize(1, "kafka_txn", [([10.0] * 3, 0.03)]),
        summarize(1, "eventual", [([4.0] * 3, 0.012)]),
        summarize(1, "strong", [([6.0] * 3, 0.018)]),
    ]
    raw = rows[0]
    assert raw.rounds_p50_ms == [2.0, 2.0] and raw.p50_ms == 2.0
    assert raw.p99_ms == 6.0 and raw.max_ms == 9.0 and raw.ops == 6
    (c,) = compare(rows, goal_ratio=3.0)
    assert c.p50_vs_raw_rtt == 3.0 and c.goal_met
    assert c.p50_vs_kafka_txn == 0.6 and c.p50_vs_eventual == 1.5
    assert c.per_s_vs_eventual == round((3 / 0.018) / (3 / 0.012), 3)


def _records(placement: tuple[str, ...]) -> list[LoggedRecord]:
    vote = {r: Vote("t", r, True, version=0) for r in placement}
    begin = BeginRecord("t", "k", "set", b"{}", placement, ("public",), None, 9_999, 0, "w", 102)
    return [
        LoggedRecord(begin, 103),
        LoggedRecord(VoteRecord("t", "k", vote["a"], "a", 110), 112),
        LoggedRecord(VoteRecord("t", "k", vote["b"], "b", 115), 116),
        LoggedRecord(DecisionRecord("t", "k", TxnOutcome(Decision.COMMIT), 0, 1, "c", 120), 121),
        LoggedRecord(AckRecord("t", "k", "a", "a:0:1", "a", 130), 131),
        LoggedRecord(AckRecord("t", "k", "b", "b:0:1", "b", 140), 141),
    ]


def test_stages_telescope_to_the_commit_latency() -> None:
    stages = stages_of(100.0, 125.0, _records(("a", "b")))
    assert stages is not None
    assert {name: stages[name] for name, _ in STAGES} == {
        "prepare": 2.0, "begin_send": 1.0, "begin_hop": 12.0, "vote": 1.0,
        "vote_hop": 4.0, "decide": 1.0, "decision_hop": 4.0,
    }
    assert sum(stages[name] for name, _ in STAGES) == 25.0
    assert stages["applied"] == 20.0
    figures = median_stages(1, [stages, stages])
    assert figures.total_ms == 25.0 and figures.applied_ms == 20.0 and figures.commits == 2


def test_stages_need_every_participants_vote() -> None:
    assert stages_of(100.0, 125.0, _records(("a", "b", "c"))) is None
    assert stages_of(100.0, 125.0, [r for r in _records(("a", "b"))
                                    if not isinstance(r.record, DecisionRecord)]) is None
