"""Is a region fresh enough for a read? Session coverage, staleness, versions behind.

A region's *frontier* says, per origin stream ``(origin region, partition)``, the
highest origin offset it has passed (applied, or known to be placed elsewhere); a
stream's *heartbeat time* is the newest origin clock reading it has passed (see
:mod:`edgebus.core.causality`). All three questions a read asks are answered from
those two maps, with no I/O:

* causal: does the frontier cover the session token? (:func:`missing`)
* bounded staleness: how old can the answer be? Every write to the key lies in the
  key's partition of some origin's topic; for each origin, the region has everything
  that origin acknowledged before the heartbeat time it passed on that partition, so
  the answer is at most ``now - min(heartbeat times)`` old. An origin without a
  heartbeat passed makes the staleness unknown (``None``), never small.
  (:func:`staleness_ms`)
* versions behind: the origin heads (end offsets read when the read began) minus the
  frontier bound the number of records, hence of versions of the key, the region may
  lack. (:func:`versions_behind`)

Pure: time is passed in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from edgebus.core.vector_clock import VectorClock

__all__ = ["key_streams", "missing", "staleness_ms", "versions_behind"]

Stream = tuple[str, int]


def key_streams(regions: Iterable[str], partition: int) -> list[Stream]:
    """The streams that can hold writes to a key of ``partition``: one per origin."""
    return [(r, partition) for r in regions]


def missing(token: VectorClock, passed: Callable[[Stream], int]) -> dict[Stream, int]:
    """The token's entries the region has not passed yet (empty: it covers the token)."""
    return {s: o for s, o in token.entries().items() if passed(s) < o}


def staleness_ms(
    streams: Iterable[Stream], fresh_ms: Mapping[Stream, int], now_ms: float
) -> float | None:
    """How old an answer from these streams can be, in ms; ``None`` when unknown."""
    oldest: float | None = None
    for stream in streams:
        t = fresh_ms.get(stream)
        if t is None:
            return None
        if oldest is None or t < oldest:
            oldest = t
    if oldest is None:
        return None
    return max(0.0, now_ms - oldest)


def versions_behind(heads: Mapping[Stream, int], passed: Callable[[Stream], int]) -> int:
    """An upper bound on the versions of a key the region lacks.

    ``heads`` maps each stream to its origin topic's end offset (the next offset to
    be written) read when the read began; every record below it that the region has
    not passed may be a write to the key.
    """
    return sum(max(0, head - 1 - passed(stream)) for stream, head in heads.items())
