"""The figures of ``edgebus bench state``: its result types and the pure functions
that make them from the samples and the answers (:func:`summarize`, :func:`compare`,
:func:`forwarded_vs_local`, :func:`check_phase`, :func:`stages_of`,
:func:`median_stages`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from edgebus.bench.figures import RoundFigures, round_figures, stage_medians, stage_spans
from edgebus.bench.machine import ProcessTime

__all__ = [
    "MODES",
    "PHASES",
    "STAGES",
    "Comparison",
    "ModeFigures",
    "PhaseCheck",
    "StageFigures",
    "StateBenchResult",
    "check_phase",
    "compare",
    "forwarded_vs_local",
    "median_stages",
    "stages_of",
    "summarize",
]

#: where the owner runs: in the benchmark's process, or in a region service
PHASES: tuple[str, ...] = ("local", "forwarded")
#: the measured modes of each phase: the state calls, then the baselines
MODES: tuple[str, ...] = ("state", "raw_send", "raw_rtt")
#: how many failed calls are kept verbatim
ERROR_EXAMPLES = 10
#: the stages of a call in each phase, in order (their sum is the call's latency)
STAGES: dict[str, tuple[tuple[str, str], ...]] = {
    "local": (
        ("append", "call -> the state event appended to the log (queue, run, produce)"),
        ("acknowledge", "event appended -> call returned (produce response, lease check)"),
    ),
    "forwarded": (
        ("request", "call -> the request appended to the log"),
        ("owner", "request appended -> the state event appended (the owner's fetch of "
                  "the request, run, produce)"),
        ("answer", "event appended -> call returned (the caller's fetch of the event)"),
    ),
}


@dataclass
class _Mode:
    phase: str
    mode: str
    concurrency: int


@dataclass
class ModeFigures(RoundFigures, _Mode):
    """One mode of one phase at one concurrency: medians over the rounds (ms, ops/s)."""


@dataclass
class Comparison:
    """A phase's state calls against the baselines measured in that phase."""

    phase: str
    concurrency: int
    p50_ms: float
    p99_ms: float
    per_s: float
    raw_send_p50_ms: float
    raw_send_per_s: float
    raw_rtt_p50_ms: float
    p50_vs_raw_send: float
    p99_vs_raw_send: float
    per_s_vs_raw_send: float
    p50_vs_raw_rtt: float


@dataclass
class PhaseCheck:
    """Whether a phase's answers add up: every increment counted once, each call on the
    expected path."""

    phase: str
    state_id: str
    #: the hosts that answered (one expected: the owner)
    hosts: list[str]
    #: increments answered, warm-up included, and of those measured
    increments: int
    measured: int
    final_value: float | None
    #: the answers are exactly 1..increments, each once, and the final value matches
    exact: bool
    #: measured calls not on the phase's path (local: forwarded; forwarded: local)
    wrong_path: int
    #: answers to a re-sent request (the caller waited longer than state.resend_ms)
    duplicates: int
    errors: int
    error_examples: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Exact, every call on its path, no error."""
        return self.exact and self.wrong_path == 0 and self.errors == 0


@dataclass
class StageFigures:
    """Median time (ms) of each stage of a phase's measured calls at one concurrency."""

    phase: str
    concurrency: int
    calls: int
    stages_ms: dict[str, float]
    total_ms: float


@dataclass
class StateBenchResult:
    """Figures of one ``bench state`` run."""

    region: str
    #: whether the region is the run's own (a scratch config) or a configured one
    fresh_region: bool
    bootstrap: str
    seconds: float
    rounds: int
    concurrency: list[int]
    value_bytes: int
    state_ids: dict[str, str] = field(default_factory=dict)
    setup_seconds: float = 0.0
    total_seconds: float = 0.0
    phase_seconds: dict[str, float] = field(default_factory=dict)
    #: the machine's 1, 5 and 15 minute load averages when the run began and ended
    load_average_start: list[float] = field(default_factory=list)
    load_average: list[float] = field(default_factory=list)
    rows: list[ModeFigures] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)
    #: per concurrency: forwarded p50 / local p50 and local ops/s / forwarded ops/s
    forwarded_vs_local: list[dict[str, float]] = field(default_factory=list)
    checks: list[PhaseCheck] = field(default_factory=list)
    stages: list[StageFigures] = field(default_factory=list)
    #: CPU and run-queue wait of each process while a phase's batches ran
    processes: list[ProcessTime] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Whether every phase's checks passed."""
        return bool(self.checks) and all(c.passed for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready figures."""
        out = asdict(self)
        for check, data in zip(self.checks, out["checks"], strict=True):
            data["passed"] = check.passed
        out["passed"] = self.passed
        out["stage_names"] = {phase: dict(stages) for phase, stages in STAGES.items()}
        return out


def summarize(
    phase: str, mode: str, concurrency: int, batches: Sequence[tuple[list[float], float]]
) -> ModeFigures:
    """The figures of one mode at one concurrency from its batches, one per round
    (:func:`~edgebus.bench.figures.round_figures`)."""
    return ModeFigures(phase=phase, mode=mode, concurrency=concurrency, **round_figures(batches))


def compare(rows: Sequence[ModeFigures]) -> list[Comparison]:
    """Per phase and concurrency: the state calls against that phase's baselines."""
    by = {(r.phase, r.mode, r.concurrency): r for r in rows}
    out = []
    for phase, c in sorted({(r.phase, r.concurrency) for r in rows},
                           key=lambda pc: (PHASES.index(pc[0]), pc[1])):
        state, send, rtt = (by[(phase, m, c)] for m in MODES)
        out.append(Comparison(
            phase=phase,
            concurrency=c,
            p50_ms=state.p50_ms,
            p99_ms=state.p99_ms,
            per_s=state.per_s,
            raw_send_p50_ms=send.p50_ms,
            raw_send_per_s=send.per_s,
            raw_rtt_p50_ms=rtt.p50_ms,
            p50_vs_raw_send=round(state.p50_ms / send.p50_ms, 3),
            p99_vs_raw_send=round(state.p99_ms / send.p99_ms, 3),
            per_s_vs_raw_send=round(state.per_s / send.per_s, 3),
            p50_vs_raw_rtt=round(state.p50_ms / rtt.p50_ms, 3),
        ))
    return out


def forwarded_vs_local(rows: Sequence[ModeFigures]) -> list[dict[str, float]]:
    """Per concurrency measured in both phases: what forwarding costs."""
    by = {(r.phase, r.concurrency): r for r in rows if r.mode == "state"}
    out: list[dict[str, float]] = []
    for c in sorted({c for _, c in by}):
        local, forwarded = by.get(("local", c)), by.get(("forwarded", c))
        if local is None or forwarded is None:
            continue
        out.append({"concurrency": c,
                    "p50_ratio": round(forwarded.p50_ms / local.p50_ms, 3),
                    "per_s_ratio": round(local.per_s / forwarded.per_s, 3)})
    return out


def check_phase(
    phase: str,
    state_id: str,
    answers: Sequence[float],
    final_value: float | None,
    *,
    hosts: Sequence[str] = (),
    measured: int = 0,
    wrong_path: int = 0,
    duplicates: int = 0,
    errors: Sequence[str] = (),
) -> PhaseCheck:
    """The check of one phase from the values its increments returned (each the
    field's value after it) and the final ``get``."""
    n = len(answers)
    exact = sorted(answers) == list(range(1, n + 1)) and final_value == n
    return PhaseCheck(
        phase=phase, state_id=state_id, hosts=sorted(set(hosts)), increments=n,
        measured=measured, final_value=final_value, exact=exact, wrong_path=wrong_path,
        duplicates=duplicates, errors=len(errors),
        error_examples=list(errors[:ERROR_EXAMPLES]),
    )


def stages_of(
    phase: str, started_ms: float, ended_ms: float, logged: Mapping[str, int]
) -> dict[str, float] | None:
    """The stages (:data:`STAGES`, ms) of one call from its wall-clock start and end
    (ms) and the append times of its records (``logged``: ``request`` for a forwarded
    call, ``op``: the state event); ``None`` when one is missing. They telescope: the
    sum is ``ended_ms - started_ms``."""
    kinds = ("op",) if phase == "local" else ("request", "op")
    if any(k not in logged for k in kinds):
        return None
    marks = [started_ms, *(float(logged[k]) for k in kinds), ended_ms]
    return stage_spans(STAGES[phase], marks)


def median_stages(
    phase: str, concurrency: int, per_call: Sequence[dict[str, float]]
) -> StageFigures:
    """Median of each stage over the calls of one phase at one concurrency."""
    stages_ms, total_ms = stage_medians([name for name, _ in STAGES[phase]], per_call)
    return StageFigures(
        phase=phase, concurrency=concurrency, calls=len(per_call), stages_ms=stages_ms,
        total_ms=total_ms,
    )
