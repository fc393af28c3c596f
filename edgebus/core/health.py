"""Region health: latency windows, health assessment and read ranking.

Discovery measures each region (probes, consumer lag, watermarks, latencies) and
hands the figures to this module, which decides; the shell does the measuring:

* :class:`LatencyWindow` keeps the last ``capacity`` latency samples of one path
  (produce, read, probe) and answers percentiles and an EWMA.
* :func:`assess` turns the :class:`RegionFigures` of one region into a
  :class:`RegionHealth`: may writes go there (``healthy``), may reads go there
  (``readable``), and why not, in words an operator can act on.
* :func:`rank_for_reads` orders the regions a read should try.

Decisions:

* One failed broker probe is not enough to call a region unhealthy (a probe can time
  out on a busy network); ``HealthThresholds.max_probe_failures`` consecutive
  failures are.
* A region not probed yet is healthy: discovery is optimistic until it knows better,
  so a fresh process can write before the first probe round has finished.
* ``readable`` implies ``healthy``: a region whose broker is down or whose consumer
  lags beyond the thresholds serves stale reads, so reads route elsewhere too. A
  region whose *service* is unreachable but whose broker is fine stays ``healthy``
  (writes go through Kafka) but is not ``readable`` (reads are served by the service).
* A region is as fast as its slowest path we use: ``RegionHealth.latency_ms`` is the
  largest known of the produce, read and probe p50s, so a region with a fast broker
  but a slow service does not win a lowest-latency ranking it would then lose.
* Thresholds are exclusive: a lag equal to ``max_lag_events`` is still healthy.

Pure: no I/O, no clock; times (``checked_at_ms``) are passed in.
"""

from __future__ import annotations

import math
import zlib
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from edgebus.core.placement import STRATEGIES, Strategy
from edgebus.errors import InvalidInput

__all__ = [
    "EWMA_ALPHA",
    "HealthThresholds",
    "LatencyWindow",
    "RegionFigures",
    "RegionHealth",
    "assess",
    "rank_for_reads",
]

#: Weight of the newest sample in :attr:`LatencyWindow.ewma`.
EWMA_ALPHA: Final = 0.2


def _sample(value: object, what: str) -> float:
    """A finite, non-negative number as a float, or InvalidInput saying what is wrong."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInput(f"{what} must be a number of milliseconds, got {value!r}.")
    number = float(value)
    if not (0.0 <= number < math.inf):  # also false for NaN
        raise InvalidInput(f"{what} must be a finite number of at least 0, got {value!r}.")
    return number


class LatencyWindow:
    """The last ``capacity`` latency samples (ms) of one path, with percentiles.

    :meth:`add` is O(1) (it runs on every produce and read); :meth:`percentile`
    sorts the window, at most once between two adds. ``ewma`` weighs every sample
    ever added (newest by :data:`EWMA_ALPHA`), not only those still in the window.
    """

    __slots__ = ("_ewma", "_samples", "_sorted")

    def __init__(self, capacity: int = 256) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise InvalidInput(
                f"LatencyWindow capacity must be a whole number of at least 1, got {capacity!r}."
            )
        self._samples: deque[float] = deque(maxlen=capacity)
        self._sorted: list[float] | None = None
        self._ewma: float | None = None

    def add(self, ms: float) -> None:
        """Record one sample; negative, NaN and infinite values are InvalidInput."""
        value = _sample(ms, "a latency sample")
        self._samples.append(value)
        self._sorted = None
        previous = self._ewma
        self._ewma = value if previous is None else previous + EWMA_ALPHA * (value - previous)

    @property
    def capacity(self) -> int:
        """How many samples the window keeps."""
        maxlen = self._samples.maxlen
        assert maxlen is not None
        return maxlen

    @property
    def count(self) -> int:
        """How many samples the window holds now (at most ``capacity``)."""
        return len(self._samples)

    def percentile(self, q: float) -> float | None:
        """The nearest-rank ``q``-th percentile (``q`` in 0..100) or None when empty.

        Nearest rank: the smallest sample with at least ``q`` percent of the samples
        at or below it, i.e. the ``ceil(q / 100 * n)``-th smallest (the smallest for 0).
        """
        if isinstance(q, bool) or not isinstance(q, (int, float)) or not 0 <= q <= 100:
            raise InvalidInput(f"percentile must be between 0 and 100, got {q!r}.")
        if not self._samples:
            return None
        ordered = self._sorted
        if ordered is None:
            ordered = self._sorted = sorted(self._samples)
        rank = max(1, math.ceil(q / 100 * len(ordered)))
        return ordered[rank - 1]

    @property
    def p50(self) -> float | None:
        """The median (nearest rank), None when empty."""
        return self.percentile(50)

    @property
    def p99(self) -> float | None:
        """The 99th percentile (nearest rank), None when empty."""
        return self.percentile(99)

    @property
    def ewma(self) -> float | None:
        """Exponentially weighted moving average (alpha 0.2), None before any sample."""
        return self._ewma

    def __repr__(self) -> str:
        return f"LatencyWindow(capacity={self.capacity}, count={self.count}, p50={self.p50})"


def _count(value: object, what: str, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidInput(f"{what} must be a whole number of at least {minimum}, got {value!r}.")


@dataclass(frozen=True, slots=True)
class HealthThresholds:
    """When a region stops being healthy. Exceeding a limit (not reaching it) counts."""

    max_lag_events: int = 10_000
    max_watermark_age_ms: float = 10_000
    #: consecutive failed broker probes before the region is unhealthy
    max_probe_failures: int = 2

    def __post_init__(self) -> None:
        _count(self.max_lag_events, "max_lag_events", 0)
        object.__setattr__(
            self, "max_watermark_age_ms", _sample(self.max_watermark_age_ms, "max_watermark_age_ms")
        )
        _count(self.max_probe_failures, "max_probe_failures", 1)


@dataclass(frozen=True, slots=True)
class RegionFigures:
    """What discovery measured about one region at one instant (``checked_at_ms``).

    ``None`` means not measured (yet). ``broker_reachable``/``service_reachable`` are
    the outcome of the latest probe; ``consecutive_failures`` counts the broker
    probes that failed in a row up to it. ``watermark_age_ms`` is the age of the
    oldest origin watermark the region has applied, i.e. its worst staleness.
    ``produce_ms``, ``read_ms`` and ``probe_ms`` are p50s.
    """

    region: str
    broker_reachable: bool | None
    service_reachable: bool | None
    consecutive_failures: int = 0
    lag_events: int | None = None
    watermark_age_ms: float | None = None
    produce_ms: float | None = None
    read_ms: float | None = None
    probe_ms: float | None = None
    checked_at_ms: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.region, str) or not self.region:
            raise InvalidInput(f"region must be a non-empty name, got {self.region!r}.")
        _count(self.consecutive_failures, "consecutive_failures", 0)
        if self.lag_events is not None:
            _count(self.lag_events, "lag_events", 0)
        for name in ("watermark_age_ms", "produce_ms", "read_ms", "probe_ms"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _sample(value, name))
        if self.checked_at_ms is not None and (
            isinstance(self.checked_at_ms, bool)
            or not isinstance(self.checked_at_ms, (int, float))
            or not math.isfinite(self.checked_at_ms)
        ):
            raise InvalidInput(f"checked_at_ms must be a finite time, got {self.checked_at_ms!r}.")


@dataclass(frozen=True, slots=True)
class RegionHealth:
    """The verdict on one region.

    ``healthy``: writes may go there. ``readable``: reads may go there (implies
    ``healthy``). ``reasons`` explain anything short of fully healthy, or say that
    nothing is known yet. ``latency_ms`` is what lowest-latency ranking uses: the
    largest known p50 of the paths we use (produce, read, probe) — a region is as fast
    as its slowest path — or None when nothing was measured.
    """

    region: str
    healthy: bool
    readable: bool
    reasons: tuple[str, ...] = ()
    latency_ms: float | None = None

    def __post_init__(self) -> None:
        if type(self.reasons) is not tuple:
            if isinstance(self.reasons, str):
                raise InvalidInput(f"reasons must be a list of sentences, got {self.reasons!r}.")
            object.__setattr__(self, "reasons", tuple(self.reasons))
        if self.readable and not self.healthy:
            raise InvalidInput(
                f"region {self.region!r} cannot be readable and unhealthy: an unhealthy "
                "region serves stale reads, so readable implies healthy."
            )
        if self.latency_ms is not None:
            object.__setattr__(self, "latency_ms", _sample(self.latency_ms, "latency_ms"))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (reasons as a list)."""
        return {
            "region": self.region,
            "healthy": self.healthy,
            "readable": self.readable,
            "reasons": list(self.reasons),
            "latency_ms": self.latency_ms,
        }


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def assess(figures: RegionFigures, thresholds: HealthThresholds) -> RegionHealth:
    """Decide whether a region takes writes (``healthy``) and reads (``readable``)."""
    reasons: list[str] = []
    healthy = True
    failures = figures.consecutive_failures
    if figures.broker_reachable is None:
        reasons.append("not probed yet")
    elif figures.broker_reachable is False:
        failures = max(failures, 1)  # the latest probe itself failed
        counted = _plural(failures, "consecutive probe failure")
        if failures >= thresholds.max_probe_failures:
            healthy = False
            reasons.append(f"broker unreachable ({counted})")
        else:
            reasons.append(
                f"broker probe failed ({counted}; unhealthy after {thresholds.max_probe_failures})"
            )
    lag = figures.lag_events
    if lag is not None and lag > thresholds.max_lag_events:
        healthy = False
        reasons.append(f"consumer lag {lag} events > {thresholds.max_lag_events}")
    age = figures.watermark_age_ms
    if age is not None and age > thresholds.max_watermark_age_ms:
        healthy = False
        reasons.append(
            f"watermarks {age / 1000:.1f} s old > {thresholds.max_watermark_age_ms / 1000:.1f} s"
        )
    readable = healthy
    if figures.service_reachable is False:
        readable = False
        reasons.append("region service unreachable: reads will route elsewhere")
    known = [m for m in (figures.produce_ms, figures.read_ms, figures.probe_ms) if m is not None]
    return RegionHealth(
        region=figures.region,
        healthy=healthy,
        readable=readable,
        reasons=tuple(reasons),
        latency_ms=max(known) if known else None,
    )


def rank_for_reads(
    candidates: Sequence[str],
    health: Mapping[str, RegionHealth],
    strategy: Strategy,
    preferred: Sequence[str] = (),
    excluded: Sequence[str] = (),
    key: str = "",
) -> tuple[str, ...]:
    """The regions a read should try, best first.

    Excluded regions are dropped. So are regions that are not ``readable`` (which
    includes every unhealthy one) — unless that leaves none: then the not-readable,
    not-excluded regions are returned in the same order, since a stale or slow
    answer beats none and the caller's own attempt is the final word on reachability.
    A region missing from ``health`` was not probed yet and counts as readable.

    Order: ``preferred`` (in its order) first, then by ``strategy``:
    ``lowest_latency`` by ``latency_ms`` (unknown last, ties in ``candidates``
    order); ``balanced`` rotates ``candidates`` by ``crc32(key) % len(candidates)``
    before dropping, like placement, so a region going down moves only its own keys;
    ``compliance_first`` keeps ``candidates`` order.
    """
    if isinstance(candidates, str):
        raise InvalidInput(f"candidates must be a list of region names, got {candidates!r}.")
    if strategy not in STRATEGIES:
        raise InvalidInput(f"edge_strategy {strategy!r} is not one of {', '.join(STRATEGIES)}.")
    if not isinstance(key, str):
        raise InvalidInput(f"key must be a string, got {key!r}.")
    ring = tuple(dict.fromkeys(candidates))
    dropped = {excluded} if isinstance(excluded, str) else set(excluded)
    remaining = [r for r in ring if r not in dropped]
    readable = [r for r in remaining if r not in health or health[r].readable]
    chosen = readable or remaining
    if not chosen:
        return ()
    usable = set(chosen)
    first = (preferred,) if isinstance(preferred, str) else preferred
    ranked = list(dict.fromkeys(r for r in first if r in usable))
    taken = set(ranked)
    if strategy == "lowest_latency":
        order = {r: i for i, r in enumerate(ring)}

        def latency(region: str) -> tuple[float, int]:
            known = health.get(region)
            ms = None if known is None else known.latency_ms
            return (math.inf if ms is None else ms, order[region])

        rest = sorted((r for r in chosen if r not in taken), key=latency)
    elif strategy == "balanced":
        shift = zlib.crc32(key.encode("utf-8")) % len(ring)
        rest = [r for r in ring[shift:] + ring[:shift] if r in usable and r not in taken]
    else:
        rest = [r for r in chosen if r not in taken]
    return (*ranked, *rest)
