"""Region health: latency windows, assessment and read ranking (pure, no broker)."""

from __future__ import annotations

import dataclasses
import math
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgebus.core.health import (
    HealthThresholds,
    LatencyWindow,
    RegionFigures,
    RegionHealth,
    assess,
    rank_for_reads,
)
from edgebus.errors import InvalidInput

DEFAULTS = HealthThresholds()
REGIONS = ("us-east-1", "eu-west-1", "ap-south-1")


def reference_percentile(samples: list[float], q: float) -> float:
    """Nearest rank, straight from the definition: smallest x with >= q% at or below it."""
    ordered = sorted(samples)
    n = len(ordered)
    for x in ordered:
        if sum(1 for s in ordered if s <= x) * 100 >= q * n:
            return x
    return ordered[-1]


def figures(**kw: object) -> RegionFigures:
    kw.setdefault("region", "eu-west-1")
    kw.setdefault("broker_reachable", True)
    kw.setdefault("service_reachable", True)
    return RegionFigures(**kw)  # type: ignore[arg-type]


def health(
    region: str, *, healthy: bool = True, readable: bool | None = None, **kw: object
) -> RegionHealth:
    return RegionHealth(
        region=region,
        healthy=healthy,
        readable=healthy if readable is None else readable,
        **kw,  # type: ignore[arg-type]
    )


# ------------------------------------------------------------------ LatencyWindow


def test_an_empty_window_has_no_figures() -> None:
    window = LatencyWindow()
    assert window.count == 0
    assert window.capacity == 256
    assert window.percentile(50) is None
    assert window.p50 is None
    assert window.p99 is None
    assert window.ewma is None


def test_nearest_rank_percentiles_on_one_to_a_hundred() -> None:
    window = LatencyWindow()
    for ms in range(100, 0, -1):
        window.add(ms)
    assert window.p50 == 50
    assert window.p99 == 99
    assert window.percentile(100) == 100
    assert window.percentile(0) == 1
    assert window.percentile(0.5) == 1
    assert window.percentile(1.5) == 2


def test_the_window_keeps_only_the_last_capacity_samples() -> None:
    window = LatencyWindow(capacity=3)
    for ms in (1000.0, 1.0, 2.0, 3.0):
        window.add(ms)
    assert window.count == 3
    assert window.percentile(100) == 3.0
    window.add(0.5)
    assert window.percentile(0) == 0.5
    assert window.percentile(100) == 3.0


def test_ewma_starts_at_the_first_sample_and_weighs_the_newest_by_a_fifth() -> None:
    window = LatencyWindow()
    window.add(10.0)
    assert window.ewma == 10.0
    window.add(20.0)
    assert window.ewma == pytest.approx(12.0)
    window.add(20.0)
    assert window.ewma == pytest.approx(13.6)


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), "5", True, None])
def test_negative_nan_or_non_numeric_samples_are_invalid_input(bad: object) -> None:
    window = LatencyWindow()
    with pytest.raises(InvalidInput, match="latency sample"):
        window.add(bad)  # type: ignore[arg-type]
    assert window.count == 0


@pytest.mark.parametrize("capacity", [0, -3, 2.5, True])
def test_a_capacity_below_one_is_invalid_input(capacity: object) -> None:
    with pytest.raises(InvalidInput, match="capacity"):
        LatencyWindow(capacity)  # type: ignore[arg-type]


@pytest.mark.parametrize("q", [-1, 100.5, float("nan")])
def test_a_percentile_outside_0_to_100_is_invalid_input(q: float) -> None:
    window = LatencyWindow()
    window.add(1.0)
    with pytest.raises(InvalidInput, match="between 0 and 100"):
        window.percentile(q)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.floats(min_value=0, max_value=1e6), min_size=1, max_size=80),
    st.integers(min_value=1, max_value=40),
    st.floats(min_value=0, max_value=100),
)
def test_window_percentile_matches_a_sorted_reference_of_the_last_samples(
    samples: list[float], capacity: int, q: float
) -> None:
    window = LatencyWindow(capacity)
    for ms in samples:
        window.add(ms)
    kept = samples[-capacity:]
    assert window.count == len(kept)
    assert window.percentile(q) == reference_percentile(kept, q)
    assert window.p50 == reference_percentile(kept, 50)
    assert window.p99 == reference_percentile(kept, 99)
    ewma = window.ewma
    assert ewma is not None
    assert min(samples) - 1e-6 <= ewma <= max(samples) + 1e-6


# ------------------------------------------------------------------ thresholds, figures


def test_threshold_defaults() -> None:
    assert DEFAULTS.max_lag_events == 10_000
    assert DEFAULTS.max_watermark_age_ms == 10_000.0
    assert DEFAULTS.max_probe_failures == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULTS.max_lag_events = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    "kw",
    [{"max_probe_failures": 0}, {"max_lag_events": -1}, {"max_watermark_age_ms": float("nan")}],
)
def test_nonsense_thresholds_are_invalid_input(kw: dict[str, object]) -> None:
    with pytest.raises(InvalidInput):
        HealthThresholds(**kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kw",
    [{"consecutive_failures": -1}, {"lag_events": -5}, {"read_ms": -1.0}, {"probe_ms": math.nan}],
)
def test_nonsense_figures_are_invalid_input(kw: dict[str, object]) -> None:
    with pytest.raises(InvalidInput):
        figures(**kw)


# ------------------------------------------------------------------ assess


def test_a_region_with_good_figures_is_healthy_and_readable_without_reasons() -> None:
    verdict = assess(figures(lag_events=10_000, watermark_age_ms=10_000.0), DEFAULTS)
    assert verdict == RegionHealth("eu-west-1", healthy=True, readable=True, reasons=())


def test_a_region_not_probed_yet_is_optimistically_healthy_and_says_so() -> None:
    verdict = assess(
        RegionFigures("eu-west-1", broker_reachable=None, service_reachable=None), DEFAULTS
    )
    assert verdict.healthy is True
    assert verdict.readable is True
    assert verdict.reasons == ("not probed yet",)
    assert verdict.latency_ms is None


def test_one_failed_broker_probe_is_not_enough_to_be_unhealthy() -> None:
    verdict = assess(figures(broker_reachable=False, consecutive_failures=1), DEFAULTS)
    assert verdict.healthy is True
    assert verdict.readable is True
    assert verdict.reasons == (
        "broker probe failed (1 consecutive probe failure; unhealthy after 2)",
    )


def test_max_probe_failures_in_a_row_make_the_region_unhealthy_and_unreadable() -> None:
    verdict = assess(figures(broker_reachable=False, consecutive_failures=2), DEFAULTS)
    assert verdict.healthy is False
    assert verdict.readable is False
    assert verdict.reasons == ("broker unreachable (2 consecutive probe failures)",)


def test_a_reachable_broker_ignores_a_stale_failure_count() -> None:
    assert assess(figures(consecutive_failures=5), DEFAULTS).healthy is True


def test_consumer_lag_beyond_the_threshold_is_unhealthy() -> None:
    verdict = assess(figures(lag_events=12_000), DEFAULTS)
    assert verdict.healthy is False
    assert verdict.reasons == ("consumer lag 12000 events > 10000",)


def test_old_watermarks_are_unhealthy_and_the_reason_is_in_seconds() -> None:
    verdict = assess(figures(watermark_age_ms=15_200.0), DEFAULTS)
    assert verdict.healthy is False
    assert verdict.reasons == ("watermarks 15.2 s old > 10.0 s",)


def test_every_problem_is_reported_not_only_the_first() -> None:
    verdict = assess(
        figures(
            broker_reachable=False,
            service_reachable=False,
            consecutive_failures=3,
            lag_events=50_000,
            watermark_age_ms=60_000.0,
        ),
        DEFAULTS,
    )
    assert verdict.reasons == (
        "broker unreachable (3 consecutive probe failures)",
        "consumer lag 50000 events > 10000",
        "watermarks 60.0 s old > 10.0 s",
        "region service unreachable: reads will route elsewhere",
    )


def test_an_unreachable_service_keeps_writes_but_routes_reads_elsewhere() -> None:
    verdict = assess(figures(service_reachable=False), DEFAULTS)
    assert verdict.healthy is True
    assert verdict.readable is False
    assert verdict.reasons == ("region service unreachable: reads will route elsewhere",)


def test_custom_thresholds_apply() -> None:
    strict = HealthThresholds(max_lag_events=10, max_watermark_age_ms=500, max_probe_failures=1)
    assert assess(figures(broker_reachable=False, consecutive_failures=1), strict).healthy is False
    assert assess(figures(lag_events=11), strict).healthy is False
    assert assess(figures(watermark_age_ms=501.0), strict).healthy is False


def test_latency_is_the_slowest_known_path() -> None:
    assert assess(figures(produce_ms=4.0, read_ms=9.0, probe_ms=2.0), DEFAULTS).latency_ms == 9.0
    assert assess(figures(probe_ms=2.0), DEFAULTS).latency_ms == 2.0
    assert assess(figures(), DEFAULTS).latency_ms is None


def test_region_health_to_dict_is_json_ready() -> None:
    verdict = assess(figures(service_reachable=False, produce_ms=3.5), DEFAULTS)
    assert verdict.to_dict() == {
        "region": "eu-west-1",
        "healthy": True,
        "readable": False,
        "reasons": ["region service unreachable: reads will route elsewhere"],
        "latency_ms": 3.5,
    }


def test_readable_but_unhealthy_is_a_contradiction() -> None:
    with pytest.raises(InvalidInput, match="readable implies healthy"):
        RegionHealth("eu-west-1", healthy=False, readable=True)


# ------------------------------------------------------------------ rank_for_reads


def test_lowest_latency_ranks_by_latency_unknown_last_ties_in_candidate_order() -> None:
    known = {
        "us-east-1": health("us-east-1", latency_ms=30.0),
        "eu-west-1": health("eu-west-1", latency_ms=5.0),
        "ap-south-1": health("ap-south-1", latency_ms=30.0),
    }
    candidates = ("us-west-2", *REGIONS)
    assert rank_for_reads(candidates, known, "lowest_latency") == (
        "eu-west-1",
        "us-east-1",
        "ap-south-1",
        "us-west-2",
    )


def test_preferred_regions_come_first_in_preferred_order() -> None:
    known = {r: health(r, latency_ms=float(i)) for i, r in enumerate(REGIONS)}
    ranked = rank_for_reads(REGIONS, known, "lowest_latency", preferred=("ap-south-1", "moon-1"))
    assert ranked == ("ap-south-1", "us-east-1", "eu-west-1")


def test_excluded_regions_are_dropped() -> None:
    ranked = rank_for_reads(REGIONS, {}, "compliance_first", excluded=("eu-west-1",))
    assert ranked == ("us-east-1", "ap-south-1")


def test_unhealthy_and_unreadable_regions_are_dropped_and_unknown_ones_kept() -> None:
    known = {
        "us-east-1": health("us-east-1", healthy=False),
        "eu-west-1": health("eu-west-1", healthy=True, readable=False),
    }
    assert rank_for_reads(REGIONS, known, "compliance_first") == ("ap-south-1",)


def test_unhealthy_regions_are_a_fallback_only_when_nothing_else_is_left() -> None:
    known = {
        "us-east-1": health("us-east-1", healthy=False, latency_ms=50.0),
        "eu-west-1": health("eu-west-1", healthy=True, readable=False, latency_ms=10.0),
        "ap-south-1": health("ap-south-1", healthy=False, latency_ms=20.0),
    }
    assert rank_for_reads(REGIONS, known, "lowest_latency") == (
        "eu-west-1",
        "ap-south-1",
        "us-east-1",
    )
    # excluded stays excluded even as a fallback
    assert rank_for_reads(REGIONS, known, "lowest_latency", excluded=("eu-west-1",)) == (
        "ap-south-1",
        "us-east-1",
    )
    assert rank_for_reads(REGIONS, known, "lowest_latency", excluded=REGIONS) == ()


def test_compliance_first_keeps_candidate_order_without_duplicates() -> None:
    candidates = ("ap-south-1", "us-east-1", "ap-south-1")
    assert rank_for_reads(candidates, {}, "compliance_first") == ("ap-south-1", "us-east-1")


def test_balanced_rotates_by_crc32_of_the_key_like_placement() -> None:
    key = "order-42"
    shift = zlib.crc32(key.encode()) % len(REGIONS)
    assert rank_for_reads(REGIONS, {}, "balanced", key=key) == REGIONS[shift:] + REGIONS[:shift]


def test_balanced_moves_only_the_keys_of_an_unreadable_region() -> None:
    keys = [f"k{i}" for i in range(60)]
    before = {k: rank_for_reads(REGIONS, {}, "balanced", key=k)[0] for k in keys}
    down = {"eu-west-1": health("eu-west-1", healthy=False)}
    after = {k: rank_for_reads(REGIONS, down, "balanced", key=k)[0] for k in keys}
    assert set(before.values()) == set(REGIONS)
    assert all(after[k] == before[k] for k in keys if before[k] != "eu-west-1")
    assert "eu-west-1" not in after.values()


def test_rank_for_reads_refuses_a_bare_string_and_unknown_strategies() -> None:
    with pytest.raises(InvalidInput, match="list of region names"):
        rank_for_reads("eu-west-1", {}, "balanced")
    with pytest.raises(InvalidInput, match="edge_strategy 'fastest'"):
        rank_for_reads(REGIONS, {}, "fastest")  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from([f"r{i}" for i in range(6)]), max_size=8),
    st.dictionaries(
        st.sampled_from([f"r{i}" for i in range(6)]),
        st.tuples(st.booleans(), st.booleans(), st.none() | st.floats(0, 100)),
        max_size=6,
    ),
    st.sampled_from(["lowest_latency", "balanced", "compliance_first"]),
    st.lists(st.sampled_from([f"r{i}" for i in range(7)]), max_size=3),
    st.lists(st.sampled_from([f"r{i}" for i in range(7)]), max_size=3),
    st.text(max_size=6),
)
def test_rank_for_reads_is_a_permutation_of_the_usable_regions(
    candidates: list[str],
    raw: dict[str, tuple[bool, bool, float | None]],
    strategy: str,
    preferred: list[str],
    excluded: list[str],
    key: str,
) -> None:
    known = {
        r: RegionHealth(r, healthy=h, readable=h and rd, latency_ms=ms)
        for r, (h, rd, ms) in raw.items()
    }
    ranked = rank_for_reads(candidates, known, strategy, preferred, excluded, key)  # type: ignore[arg-type]
    remaining = [r for r in dict.fromkeys(candidates) if r not in excluded]
    readable = [r for r in remaining if r not in known or known[r].readable]
    assert sorted(ranked) == sorted(readable or remaining)
    head = [r for r in dict.fromkeys(preferred) if r in ranked]
    assert list(ranked[: len(head)]) == head
