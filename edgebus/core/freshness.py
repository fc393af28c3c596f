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

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from edgebus.core.session import SessionToken
from edgebus.core.vector_clock import VectorClock
from edgebus.errors import InvalidInput

__all__ = [
    "MAX_WAIT_MS", "ReadRequest", "key_streams", "missing", "staleness_ms", "versions_behind"
]


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """One read as a region service is asked it: the key, the consistency level, what
    the level must prove (the session to cover; the staleness and versions bounds) and
    how long the region may wait to prove it. Its query-string form is
    :meth:`params` / :meth:`from_params` (the region query endpoint's)."""

    key: str
    consistency: str = "eventual"
    session: SessionToken | None = None
    staleness_threshold_ms: float | None = None
    max_versions_behind: int | None = None
    wait_ms: float = 0.0

    def params(self) -> dict[str, str]:
        """The query parameters of ``GET /v1/keys/{key}`` (the key goes in the path)."""
        out = {"consistency": self.consistency}
        if self.session is not None and self.session.clock:
            out["session"] = self.session.encode()
        if self.staleness_threshold_ms is not None:
            out["staleness_threshold_ms"] = repr(float(self.staleness_threshold_ms))
        if self.max_versions_behind is not None:
            out["max_versions_behind"] = str(int(self.max_versions_behind))
        if self.wait_ms:
            out["wait_ms"] = repr(float(self.wait_ms))
        return out

    @classmethod
    def from_params(cls, key: str, params: Mapping[str, str]) -> ReadRequest:
        """The read a query string asks (InvalidInput for a value that is not one)."""
        token = params.get("session")
        return cls(
            key,
            params.get("consistency", "eventual"),
            session=SessionToken.decode(token) if token else None,
            staleness_threshold_ms=_number(params, "staleness_threshold_ms", float),
            max_versions_behind=_number(params, "max_versions_behind", int),
            wait_ms=_wait_ms(params),
        )


#: the longest a read may ask a region to wait (a request is a task held that long)
MAX_WAIT_MS = 600_000


def _wait_ms(params: Mapping[str, str]) -> float:
    wait = _number(params, "wait_ms", float) or 0.0
    if not 0 <= wait <= MAX_WAIT_MS:
        raise InvalidInput(f"wait_ms must be from 0 to {MAX_WAIT_MS} ms, got {wait!r}")
    return float(wait)


def _number(params: Mapping[str, str], name: str, kind: type[float] | type[int]) -> Any:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    if len(raw) > 40:
        raise InvalidInput(f"{name} must be a number, got {raw[:40]!r}... ({len(raw)} chars)")
    try:
        value = kind(raw)
    except ValueError:
        raise InvalidInput(f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value):
        raise InvalidInput(f"{name} must be a finite number, got {raw!r}")
    return value

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
