"""Bus metrics: latency, throughput and errors of an EdgeBus's operations, in memory.

:class:`BusMetrics` is a small recorder without I/O. The bus
(:class:`~edgebus.sdk.bus.EdgeBus`, when ``monitoring.metrics_enabled``) records every
``write``, ``commit``, ``read`` and ``state`` call as one sample ``(time, latency_ms,
ok)`` under its *operation kind*:

* ``write.eventual``, ``write.causal``, ``write.strong`` (a commit, or a write with
  ``consistency="strong"``: recorded once);
* ``read.eventual``, ``read.causal``, ``read.bounded_staleness``, ``read.strong``;
* ``state``.

A sample is ``ok`` unless the call raised (a refused call, a region that does not
answer, a Kafka error); a strong write that lost a race (``outcome == "conflict"``)
or a lock not acquired is an answer, hence ok. Each kind keeps at most
``max_samples`` samples no older than ``max_age_s`` (older ones are dropped on the
next record). :meth:`BusMetrics.snapshot` summarizes the last ``window_s`` seconds::

    snap = bus.metrics.snapshot(60)
    snap.total.p99_ms, snap.total.error_rate, snap.total.ops_per_s
    snap.operations["write.eventual"].count
"""

from __future__ import annotations

import asyncio
import functools
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar, cast

__all__ = [
    "OPERATION_KINDS",
    "BusMetrics",
    "MetricsSnapshot",
    "OperationStats",
    "percentile",
    "recorded",
]

#: the operation kinds the bus records
OPERATION_KINDS: tuple[str, ...] = (
    "write.eventual",
    "write.causal",
    "write.strong",
    "read.eventual",
    "read.causal",
    "read.bounded_staleness",
    "read.strong",
    "state",
)

DEFAULT_MAX_SAMPLES = 10_000
DEFAULT_MAX_AGE_S = 3600.0


def percentile(ordered: list[float], p: float) -> float | None:
    """The nearest-rank ``p``-th percentile (0 < p <= 100) of sorted values; None if empty."""
    if not ordered:
        return None
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass(frozen=True)
class OperationStats:
    """One operation kind (or all of them) over a window.

    ``count`` calls, ``errors`` of them raised; ``error_rate`` = errors / count (None
    without calls); ``ops_per_s`` = count / ``span_s``; the latency percentiles are of
    the successful calls (None without any).
    """

    count: int = 0
    errors: int = 0
    error_rate: float | None = None
    ops_per_s: float = 0.0
    span_s: float = 0.0
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict."""
        return asdict(self)


@dataclass(frozen=True)
class MetricsSnapshot:
    """Per operation kind and in total, over the last ``window_s`` seconds."""

    window_s: float
    total: OperationStats
    operations: dict[str, OperationStats] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``window_s``, ``total`` and ``operations``."""
        return {
            "window_s": self.window_s,
            "total": self.total.to_dict(),
            "operations": {k: v.to_dict() for k, v in self.operations.items()},
        }


class BusMetrics:
    """A bounded, thread-safe window of samples per operation kind."""

    def __init__(
        self,
        max_samples: int = DEFAULT_MAX_SAMPLES,
        max_age_s: float = DEFAULT_MAX_AGE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_samples < 1:
            raise ValueError(f"max_samples must be at least 1, got {max_samples}")
        if max_age_s <= 0:
            raise ValueError(f"max_age_s must be positive, got {max_age_s}")
        self.max_samples = max_samples
        self.max_age_s = max_age_s
        self._clock = clock
        self._started = clock()
        self._samples: dict[str, deque[tuple[float, float, bool]]] = {}
        self._lock = threading.Lock()

    def record(self, operation: str, latency_ms: float, ok: bool = True) -> None:
        """One call of ``operation`` took ``latency_ms``; ``ok`` false if it failed."""
        # runs on every write: a deque append (atomic) and one comparison, without
        # the lock unless a kind is new or its oldest samples have aged out
        now = self._clock()
        samples = self._samples.get(operation)
        if samples is None:
            with self._lock:
                samples = self._samples.setdefault(operation, deque(maxlen=self.max_samples))
        samples.append((now, latency_ms, ok))
        if samples[0][0] < now - self.max_age_s:
            with self._lock:
                oldest = now - self.max_age_s
                while samples and samples[0][0] < oldest:
                    samples.popleft()

    def operations(self) -> list[str]:
        """The kinds recorded so far, sorted."""
        with self._lock:
            return sorted(self._samples)

    def reset(self) -> None:
        """Forget every sample (the span of throughput starts again)."""
        with self._lock:
            self._samples.clear()
            self._started = self._clock()

    def snapshot(
        self, window_s: float = 60.0, operations: Iterable[str] | None = None
    ) -> MetricsSnapshot:
        """The last ``window_s`` seconds, per kind and in total.

        ``operations`` limits it to those kinds (a name ending in ``.*`` or a bare
        prefix like ``write`` means every kind under it). Throughput divides by the
        window, or by the recorder's age when it is younger (at least 1 s).
        """
        if window_s <= 0:
            raise ValueError(f"window_s must be positive, got {window_s}")
        now = self._clock()
        since = now - window_s
        span = max(1.0, min(float(window_s), now - self._started))
        wanted = None if operations is None else list(operations)
        with self._lock:
            picked = {
                kind: [s for s in list(samples) if s[0] >= since]
                for kind, samples in self._samples.items()
                if wanted is None or _matches(kind, wanted)
            }
        per_kind = {kind: _stats(samples, span) for kind, samples in sorted(picked.items())}
        everything = [s for samples in picked.values() for s in samples]
        return MetricsSnapshot(float(window_s), _stats(everything, span), per_kind)


def _matches(kind: str, wanted: list[str]) -> bool:
    for name in wanted:
        prefix = name[:-2] if name.endswith(".*") else name
        if kind == prefix or kind.startswith(prefix + "."):
            return True
    return False


def _stats(samples: list[tuple[float, float, bool]], span_s: float) -> OperationStats:
    count = len(samples)
    if not count:
        return OperationStats(span_s=span_s)
    errors = sum(1 for s in samples if not s[2])
    latencies = sorted(s[1] for s in samples if s[2])
    return OperationStats(
        count=count,
        errors=errors,
        error_rate=errors / count,
        ops_per_s=count / span_s,
        span_s=span_s,
        p50_ms=percentile(latencies, 50),
        p95_ms=percentile(latencies, 95),
        p99_ms=percentile(latencies, 99),
        max_ms=latencies[-1] if latencies else None,
    )


F = TypeVar("F", bound=Callable[..., Coroutine[Any, Any, Any]])


def recorded(kind: Callable[[Mapping[str, Any]], str | None]) -> Callable[[F], F]:
    """Decorate an async bus method: record each call in ``self.metrics`` (if any).

    ``kind(kwargs)`` names the operation kind from the call's keyword arguments; None
    skips recording (the method delegates to another recorded one). A cancelled call
    is not recorded.
    """

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            metrics: BusMetrics | None = getattr(self, "metrics", None)
            name = kind(kwargs) if metrics is not None else None
            if metrics is None or name is None:
                return await fn(self, *args, **kwargs)
            started = time.perf_counter()
            try:
                result = await fn(self, *args, **kwargs)
            except asyncio.CancelledError:
                raise
            except BaseException:
                metrics.record(name, (time.perf_counter() - started) * 1000, ok=False)
                raise
            metrics.record(name, (time.perf_counter() - started) * 1000)
            return result

        return cast(F, wrapper)

    return decorate
