"""The figures of ``edgebus bench strong``: its result types and the pure functions
that make them from the samples (:func:`summarize`, :func:`compare`,
:func:`stages_of`, :func:`median_stages`)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from edgebus.bench.figures import RoundFigures, round_figures, stage_medians, stage_spans
from edgebus.bench.machine import ProcessTime
from edgebus.core.commit_log import AckRecord, BeginRecord, DecisionRecord, LogRecord, VoteRecord

__all__ = [
    "GOAL_RATIO",
    "MODES",
    "STAGES",
    "Comparison",
    "LoggedRecord",
    "ModeFigures",
    "StageFigures",
    "StrongBenchResult",
    "compare",
    "median_stages",
    "stages_of",
    "summarize",
]

#: strong p50 should be at most this many times the raw round trip's p50
GOAL_RATIO = 3.0
#: the measured modes, the baseline first
MODES: tuple[str, ...] = ("raw_rtt", "kafka_txn", "eventual", "strong")
#: the stages of a strong commit, in order (their sum is the commit's latency)
STAGES: tuple[tuple[str, str], ...] = (
    ("prepare", "commit() called -> BEGIN built (placement, encoding)"),
    ("begin_send", "BEGIN built -> handed to the producer"),
    ("begin_hop", "BEGIN handed over -> fetched by the last participant"),
    ("vote", "fetched -> vote handed to the producer (the slowest participant)"),
    ("vote_hop", "last vote handed over -> fetched by the coordinator"),
    ("decide", "fetched -> decision handed to the producer"),
    ("decision_hop", "decision handed over -> commit() returned"),
)


@dataclass
class _Mode:
    concurrency: int
    mode: str


@dataclass
class ModeFigures(RoundFigures, _Mode):
    """One mode at one concurrency: medians over the rounds (milliseconds, ops/s)."""


@dataclass
class Comparison:
    """Strong against the baselines at one concurrency."""

    concurrency: int
    strong_p50_ms: float
    raw_rtt_p50_ms: float
    #: strong p50 / raw round-trip p50: the goal's ratio
    p50_vs_raw_rtt: float
    p99_vs_raw_rtt: float
    p50_vs_kafka_txn: float
    p50_vs_eventual: float
    per_s_vs_kafka_txn: float
    per_s_vs_eventual: float
    goal_met: bool


@dataclass
class StageFigures:
    """Median time (ms) of each stage of the measured strong commits at one concurrency."""

    concurrency: int
    commits: int
    stages_ms: dict[str, float]
    total_ms: float
    #: decision handed over -> the last participant's ACK handed over (applied
    #: everywhere; after commit() returned, not part of its latency)
    applied_ms: float | None


@dataclass
class StrongBenchResult:
    """Figures of one ``bench strong`` run."""

    bootstrap: str
    broker: str
    regions: list[str]
    rounds: int
    commits: int
    concurrency: list[int]
    goal_ratio: float
    setup_seconds: float = 0.0
    #: time spent between batches waiting for the region services to finish the
    #: previous batch's work (replication, applying commits)
    drain_seconds: float = 0.0
    seconds: float = 0.0
    #: the machine's 1, 5 and 15 minute load averages when the run began and ended
    load_average_start: list[float] = field(default_factory=list)
    load_average: list[float] = field(default_factory=list)
    rows: list[ModeFigures] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)
    stages: list[StageFigures] = field(default_factory=list)
    #: wall seconds of the batches (warm-up and drains included) and each process's share
    measure_seconds: float = 0.0
    processes: list[ProcessTime] = field(default_factory=list)
    failed: int = 0
    failure_examples: list[str] = field(default_factory=list)

    @property
    def goal_met(self) -> bool:
        """Whether strong's p50 met the goal at every concurrency."""
        return all(c.goal_met for c in self.comparisons)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready figures."""
        out = asdict(self)
        out["goal_met"] = self.goal_met
        out["stage_names"] = dict(STAGES)
        return out


def summarize(
    concurrency: int, mode: str, batches: Sequence[tuple[list[float], float]]
) -> ModeFigures:
    """The figures of one mode at one concurrency from its batches, one per round
    (:func:`~edgebus.bench.figures.round_figures`)."""
    return ModeFigures(concurrency=concurrency, mode=mode, **round_figures(batches))


def compare(rows: Sequence[ModeFigures], goal_ratio: float = GOAL_RATIO) -> list[Comparison]:
    """Per concurrency: strong against raw_rtt (the goal), kafka_txn and eventual."""
    by = {(r.concurrency, r.mode): r for r in rows}
    out = []
    for c in sorted({r.concurrency for r in rows}):
        strong, raw = by[(c, "strong")], by[(c, "raw_rtt")]
        txn, eventual = by[(c, "kafka_txn")], by[(c, "eventual")]
        ratio = strong.p50_ms / raw.p50_ms
        out.append(Comparison(
            concurrency=c,
            strong_p50_ms=strong.p50_ms,
            raw_rtt_p50_ms=raw.p50_ms,
            p50_vs_raw_rtt=round(ratio, 3),
            p99_vs_raw_rtt=round(strong.p99_ms / raw.p99_ms, 3),
            p50_vs_kafka_txn=round(strong.p50_ms / txn.p50_ms, 3),
            p50_vs_eventual=round(strong.p50_ms / eventual.p50_ms, 3),
            per_s_vs_kafka_txn=round(strong.per_s / txn.per_s, 3),
            per_s_vs_eventual=round(strong.per_s / eventual.per_s, 3),
            goal_met=ratio <= goal_ratio,
        ))
    return out


@dataclass
class LoggedRecord:
    """One commit-log record as read back: the record and its Kafka timestamp (ms)."""

    record: LogRecord
    timestamp_ms: int


def stages_of(
    started_ms: float, ended_ms: float, records: Sequence[LoggedRecord]
) -> dict[str, float] | None:
    """The stages (:data:`STAGES`, ms) of one strong commit that committed, from its
    wall-clock start and end (ms) and its commit-log records; ``None`` when a record is
    missing (a BEGIN, a vote of every participant, a decision).

    The stages telescope: their sum is ``ended_ms - started_ms``. Vote and decision
    ``time_ms`` are taken when the participant (coordinator) got the batch holding
    the record it answers, so ``*_hop`` is a produce plus a fetch, and ``vote`` /
    ``decide`` the work (and queueing) in that process. Also ``"applied"``: decision
    handed over -> the last ACK handed over, when every participant acknowledged.
    """
    begin = next((r for r in records if isinstance(r.record, BeginRecord)), None)
    decision = next((r for r in records if isinstance(r.record, DecisionRecord)), None)
    if begin is None or decision is None:
        return None
    assert isinstance(begin.record, BeginRecord)
    participants = begin.record.placement
    votes: dict[str, LoggedRecord] = {}
    acks: dict[str, LoggedRecord] = {}
    for r in records:
        if isinstance(r.record, VoteRecord):
            votes.setdefault(r.record.vote.region, r)
        elif isinstance(r.record, AckRecord):
            acks.setdefault(r.record.region, r)
    if any(p not in votes for p in participants) or not participants:
        return None
    vote_fetched = max(votes[p].record.time_ms for p in participants)
    vote_sent = max(votes[p].timestamp_ms for p in participants)
    marks = [
        started_ms, begin.record.time_ms, begin.timestamp_ms, vote_fetched, vote_sent,
        decision.record.time_ms, decision.timestamp_ms, ended_ms,
    ]
    out = stage_spans(STAGES, marks)
    if all(p in acks for p in participants):
        out["applied"] = max(acks[p].timestamp_ms for p in participants) - decision.timestamp_ms
    return out


def median_stages(concurrency: int, per_commit: Sequence[dict[str, float]]) -> StageFigures:
    """Median of each stage over the commits of one concurrency."""
    stages_ms, total_ms = stage_medians([name for name, _ in STAGES], per_commit)
    applied = [s["applied"] for s in per_commit if "applied" in s]
    return StageFigures(
        concurrency=concurrency,
        commits=len(per_commit),
        stages_ms=stages_ms,
        total_ms=total_ms,
        applied_ms=round(statistics.median(applied), 2) if applied else None,
    )
