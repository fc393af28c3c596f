"""Latency figures from samples, shared by the benchmarks: percentiles, the figures of
a mode over its rounds, and the stages of a measured operation (spans between the
timestamps it left, their medians)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "RoundFigures",
    "percentile",
    "round_figures",
    "stage_medians",
    "stage_spans",
    "stages_by_concurrency",
]


def percentile(samples: list[float], p: float) -> float:
    """Nearest-rank percentile of ``samples`` (``p`` in 0..100)."""
    ordered = sorted(samples)
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class RoundFigures:
    """The figures of one mode over its rounds (:func:`round_figures`; ms, ops/s), for a
    benchmark's result type to inherit. List it before the dataclass holding the fields
    that name the mode (``class ModeFigures(RoundFigures, _Mode)``): a dataclass's
    fields start with those of its last base, so the mode's come first."""

    ops: int
    p50_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    per_s: float
    rounds_p50_ms: list[float] = field(default_factory=list)
    rounds_p99_ms: list[float] = field(default_factory=list)
    rounds_per_s: list[float] = field(default_factory=list)


def round_figures(batches: Sequence[tuple[list[float], float]]) -> dict[str, Any]:
    """The figures of one mode from its batches, one per round: ``(latencies in ms,
    wall seconds)``. p50, p99 and rate are medians over the batches, mean and max over
    every sample; the per-round values are kept too. The keys are the fields of
    :class:`RoundFigures`."""
    p50s = [percentile(ms, 50) for ms, _ in batches]
    p99s = [percentile(ms, 99) for ms, _ in batches]
    rates = [len(ms) / seconds for ms, seconds in batches]
    every = [x for ms, _ in batches for x in ms]
    return {
        "ops": len(every),
        "p50_ms": round(statistics.median(p50s), 3),
        "p99_ms": round(statistics.median(p99s), 3),
        "mean_ms": round(statistics.fmean(every), 3),
        "max_ms": round(max(every), 3),
        "per_s": round(statistics.median(rates), 1),
        "rounds_p50_ms": [round(x, 3) for x in p50s],
        "rounds_p99_ms": [round(x, 3) for x in p99s],
        "rounds_per_s": [round(x, 1) for x in rates],
    }


def stage_spans(
    stages: Sequence[tuple[str, str]], marks: Sequence[float]
) -> dict[str, float]:
    """Each stage's time: ``marks`` are the operation's timestamps in order, one more
    than there are ``stages`` (``(name, description)``); stage i spans mark i to mark
    i + 1, so the stages telescope to ``marks[-1] - marks[0]``."""
    return {name: marks[i + 1] - marks[i] for i, (name, _) in enumerate(stages)}


def stage_medians(
    names: Sequence[str], per_op: Sequence[dict[str, float]]
) -> tuple[dict[str, float], float]:
    """``(median of each stage, median of the operations' totals)`` in ms, rounded to
    hundredths, over the operations' stages (:func:`stage_spans`)."""
    medians = {n: round(statistics.median(s[n] for s in per_op), 2) for n in names}
    total = round(statistics.median(sum(s[n] for n in names) for s in per_op), 2)
    return medians, total


def stages_by_concurrency(
    levels: Iterable[int], measured: Iterable[tuple[int, dict[str, float] | None]]
) -> dict[int, list[dict[str, float]]]:
    """The stages of the measured operations, ``(concurrency, stages or None)``, by
    concurrency: every level in order (empty where none was found), the operations
    without stages (a record missing) left out."""
    out: dict[int, list[dict[str, float]]] = {c: [] for c in levels}
    for concurrency, stages in measured:
        if stages is not None:
            out[concurrency].append(stages)
    return out
