"""Latency figures over a benchmark's rounds, shared by the latency benchmarks."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from edgebus.bench.replicate import percentile

__all__ = ["round_figures"]


def round_figures(batches: Sequence[tuple[list[float], float]]) -> dict[str, Any]:
    """The figures of one mode from its batches, one per round: ``(latencies in ms,
    wall seconds)``. p50, p99 and rate are medians over the batches, mean and max over
    every sample; the per-round values are kept too."""
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
