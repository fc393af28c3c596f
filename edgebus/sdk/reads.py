"""Reads at every consistency level, served by the regions' services.

A read asks the region's service (the one in this process if any, else the one
announced on ``edgebus.<region>.service``, over its HTTP query endpoint), waits when
the region is not fresh enough, and then routes to another region or raises: nothing
staler than asked is ever returned. Strong reads pass the commit log's read barrier.

Where a read may go is decided by the pure :func:`route_read`: it falls back only to
regions of the key's placement when the bus knows it (its own writes), and a "not
found" counts only from a region that may hold the key (:meth:`ReadRoute.settles`);
otherwise the read raises :class:`~edgebus.errors.RegionUnavailable` naming the
regions tried. ``docs/consistency.md`` states the guarantees.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from edgebus.config import EdgeConfig
from edgebus.core.freshness import ReadRequest
from edgebus.core.health import rank_for_reads
from edgebus.core.session import SessionToken
from edgebus.core.vector_clock import VectorClock
from edgebus.errors import (
    EdgebusError,
    InvalidInput,
    RegionUnavailable,
    SessionNotCovered,
    StalenessBoundExceeded,
    StrongReadUnavailable,
    UnknownRegion,
)
from edgebus.sdk.discovery import Discovery
from edgebus.sdk.options import NO_READ_OPTIONS, ReadOptions
from edgebus.sdk.results import ReadResult, WriteReceipt
from edgebus.sdk.sessions import BusSession

if TYPE_CHECKING:  # imported on first use: the HTTP client is not needed to write
    from edgebus.sdk.region_client import RegionClient

__all__ = ["ReadRoute", "Reader", "read_kind", "route_read"]

log = logging.getLogger("edgebus.edge")

_READ_LEVELS = ("eventual", "causal", "bounded_staleness", "strong")


def read_kind(consistency: Any) -> str:
    """The metrics kind of a read (``read.invalid`` for a level that is not one)."""
    consistency = consistency or "eventual"
    return f"read.{consistency}" if consistency in _READ_LEVELS else "read.invalid"


class ReadRoute(NamedTuple):
    """Where one read goes, and whose "not found" is its answer (immutable)."""

    #: the regions to ask, in order: the one asked (or the bus's choice) first
    order: tuple[str, ...]
    #: regions whose "not found" is the answer: the region asked, the key's known
    #: placement, or (no region asked, every region readable) the bus's choice
    conclusive: frozenset[str]
    #: the regions that may hold the key: once every one said "not found", it is so
    holders: frozenset[str]
    #: the key's placement as the bus knows it (None: unknown)
    placement: frozenset[str] | None = None

    def settles(self, target: str, row: Mapping[str, Any], absent: Collection[str]) -> bool:
        """Whether ``target``'s served answer ``row`` is the read's answer: a value, or
        a tombstone (``target`` holds the key's events), or a "not found" from a
        conclusive region, or one that completes the holders' "not found"
        (``absent``: the regions that said so before)."""
        if row.get("exists") or row.get("version"):
            return True
        if target in self.conclusive:
            return True
        return all(r == target or r in absent for r in self.holders)


def route_read(
    region: str | None,
    ranked: Sequence[str],
    candidates: Sequence[str],
    placement: Collection[str] | None,
) -> ReadRoute:
    """The route of a read (pure).

    ``region``: the region asked (None: the bus chooses); ``candidates``: the regions
    the read may fall back to (the configured ones not excluded, within ``placement``
    when the key's placement is known); ``ranked``: discovery's order of them (the
    readable ones, or all when none is; other names are ignored). The candidates left
    out of ``ranked`` come last: when the others cannot answer, asking them is the only
    way to an answer, and a failure names them. A "not found" from a region other than
    the one asked counts only if the region is in the known placement, or if every
    candidate said so. With no region asked and the placement unknown, no single "not
    found" counts: the bus's first choice may be a region the key was never placed in,
    so a miss there asks the others (a hit is one request, as before).
    """
    asked = (region,) if region is not None else ()
    holders = frozenset(candidates)
    usable = [r for r in ranked if r in holders]
    order = tuple(dict.fromkeys((*asked, *usable, *candidates)))
    known = None if placement is None else frozenset(placement)
    if region is not None:
        conclusive = frozenset(asked) | (known or frozenset())
    elif known is not None:
        conclusive = known
    else:
        conclusive = frozenset()
    return ReadRoute(order, conclusive, holders, known)


class Reader:
    """The read path of one EdgeBus."""

    def __init__(self, config: EdgeConfig, session: BusSession) -> None:
        self.config = config
        self.session = session
        #: health and latency of the regions (set while the bus runs with discovery)
        self.discovery: Discovery | None = None
        self._regions = frozenset(config.regions)
        self._client: RegionClient | None = None

    @property
    def client(self) -> RegionClient:
        """The client of the regions' query endpoints (made on first use)."""
        if self._client is None:
            from edgebus.sdk.region_client import RegionClient

            self._client = RegionClient(self.config, self.config.kafka.connect_timeout_s)
        return self._client

    async def close(self) -> None:
        """Close the query endpoints' HTTP session."""
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def read(self, key: str, region: str | None, options: ReadOptions) -> ReadResult:
        """The key's value as a region holds it, at ``options.consistency``."""
        if options.consistency == "strong":
            return await self._read_strong(key, region, options)
        if not isinstance(key, str) or not key:
            raise InvalidInput(f"key must be a non-empty string, got {key!r:.80}")
        if region is not None and region not in self._regions:
            raise UnknownRegion(region, self.config.regions)
        reads = self.config.reads
        wait = reads.wait_ms if options.wait_ms is None else options.wait_ms
        mode = options.fallback or reads.fallback
        token = self.session.current
        if options.session is not None:
            token = token.merge(self.session.decode(options.session))
        route = self.route(key, region, options.exclude_locations, options)
        first = route.order[0]
        verdicts: list[tuple[str, Mapping[str, Any]]] = []
        unavailable: list[tuple[str, str]] = []
        absent: list[str] = []
        for i, target in enumerate(route.order):
            if verdicts and mode == "raise":
                break
            started = time.perf_counter()
            try:
                row = await self.client.read_at(target, ReadRequest(
                    key, options.consistency, session=token,
                    staleness_threshold_ms=options.staleness_threshold_ms,
                    max_versions_behind=options.max_versions_behind,
                    wait_ms=wait if i == 0 else 0.0,
                ))
            except RegionUnavailable as e:
                self._observe(target, None)
                if mode == "raise" and i == 0:
                    raise
                unavailable.append((target, str(e)))
                continue
            self._observe(target, (time.perf_counter() - started) * 1000)
            if not row.get("served", True):
                verdicts.append((target, row))
            elif route.settles(target, row, absent):
                return self._served(key, options.consistency, row, target, first)
            else:
                absent.append(target)
        if verdicts:
            others = [f"{r} unavailable: {why.rstrip('.')}" for r, why in unavailable]
            raise _not_fresh(
                key, options.consistency, verdicts, others + _absent_note(absent), wait, mode
            )
        raise _unavailable(key, route, unavailable, absent)

    def _served(
        self, key: str, consistency: str, row: Mapping[str, Any], target: str, first: str
    ) -> ReadResult:
        result = ReadResult.from_row(row, consistency, first if target != first else None)
        if result.session_token:
            self.session.merge(result.session)
        if self.config.debug or log.isEnabledFor(logging.DEBUG):
            log.debug(
                "read key=%s consistency=%s served by %s%s staleness_ms=%s waited_ms=%s",
                key, consistency, target,
                f" (routed from {first})" if target != first else "",
                result.staleness_ms, result.waited_ms,
            )
        return result

    async def _read_strong(
        self, key: str, region: str | None, options: ReadOptions
    ) -> ReadResult:
        """A linearizable read: the first region (``region``, then the best ranked)
        whose participant passes the commit-log read barrier serves it."""
        if not isinstance(key, str) or not key:
            raise InvalidInput(f"key must be a non-empty string, got {key!r:.80}")
        if region is not None and region not in self._regions:
            raise UnknownRegion(region, self.config.regions)
        wait = self.config.strong.read_wait_ms if options.wait_ms is None else options.wait_ms
        order = list(self.route(key, region, options.exclude_locations, options).order)
        problems: list[str] = []
        tried: set[str] = set()
        while order:
            target = order.pop(0)
            if target in tried:
                continue
            tried.add(target)
            started = time.perf_counter()
            try:
                row = await self.client.read_at(target, ReadRequest(key, "strong", wait_ms=wait))
            except RegionUnavailable as e:
                problems.append(f"{target}: {e}")
                self._observe(target, None)
                continue
            self._observe(target, (time.perf_counter() - started) * 1000)
            if row.get("served", True):
                result = ReadResult.from_row(row, "strong", None)
                if result.hlc is not None:
                    self.session.observe_hlc((result.hlc.wall_ms << 16) | result.hlc.logical)
                return result
            if row.get("reason") == "not_placed_here":
                placed = [r for r in row.get("placement", ()) if r not in tried]
                order = placed + [r for r in order if r not in placed]
                problems.append(f"{target}: not placed there")
            else:
                problems.append(f"{target}: {row.get('reason')} ({row.get('behind')} behind)")
        raise StrongReadUnavailable(
            f"no region could serve a strong read of {key!r:.80} within {wait:.0f} ms: "
            f"{'; '.join(problems) or 'no region to ask'}. Check `edgebus status` (saga "
            "participant positions), retry, or read at a weaker consistency."
        )

    def route(
        self,
        key: str,
        region: str | None,
        excluded: Sequence[str] = (),
        options: ReadOptions | None = None,
    ) -> ReadRoute:
        """Where a read of ``key`` goes (:func:`route_read`): ``region`` first, then the
        regions of the key's placement if this bus knows it (it wrote the key), else
        every region, leaving out ``excluded``: the read's ``preferred_locations``
        first, then by its ``edge_strategy`` (default the config's) and health."""
        regions = self.config.regions
        placement = self.session.placement_of(key)
        if placement is not None:
            regions = tuple(r for r in regions if r in placement)
        candidates = [r for r in regions if r not in excluded]
        if not candidates and region is None:
            what = "every configured region" if placement is None else (
                f"every region of the key's placement ({', '.join(placement)})"
            )
            raise InvalidInput(f"exclude_locations removed {what}: nothing is left to read")
        ranked = self._rank(key, candidates, options or NO_READ_OPTIONS)
        return route_read(region, ranked, candidates, placement)

    def _rank(self, key: str, candidates: Sequence[str], options: ReadOptions) -> Sequence[str]:
        """``candidates`` best first: preferred, then the strategy over discovery's
        health and latency (every region counts as healthy when discovery does not
        run)."""
        strategy = options.edge_strategy or self.config.edge_strategy
        preferred = options.preferred_locations
        if self.discovery is None:
            if not preferred and strategy == "compliance_first":
                return candidates
            return rank_for_reads(candidates, {}, strategy, preferred, key=key)
        return self.discovery.rank_for_reads(
            strategy, preferred, key=key, candidates=candidates
        )

    def _observe(self, region: str, ms: float | None) -> None:
        if self.discovery is not None:
            self.discovery.observe_read(region, ms)

    async def replication_status(
        self, receipt: WriteReceipt, wait_ms: float
    ) -> dict[str, str]:
        """Where a write is now: region -> completed | pending | failed."""
        token = SessionToken(VectorClock({(receipt.region, receipt.partition): receipt.offset}))

        async def one(region: str) -> str:
            try:
                row = await self.client.read_at(
                    region, ReadRequest(receipt.key, "causal", session=token, wait_ms=wait_ms)
                )
            except RegionUnavailable:
                return "failed"
            return "completed" if row.get("served") else "pending"

        states = await asyncio.gather(*(one(r) for r in receipt.placement))
        out = dict(zip(receipt.placement, states, strict=True))
        for region in receipt.degraded:
            out[region] = "failed"
        return out


def _describe_verdict(verdict: Mapping[str, Any]) -> str:
    if verdict.get("reason") == "session_not_covered":
        lacking = verdict.get("missing") or {}
        shown = ", ".join(f"{s}>={o}" for s, o in list(lacking.items())[:4])
        return f"lacks {shown}"
    stale = verdict.get("staleness_ms")
    behind = verdict.get("versions_behind")
    parts = ["staleness unknown" if stale is None else f"{stale:.0f} ms stale"]
    if behind is not None:
        parts.append(f"up to {behind} versions behind")
    return ", ".join(parts)


def _not_fresh(
    key: str,
    consistency: str,
    verdicts: list[tuple[str, Mapping[str, Any]]],
    others: list[str],
    wait_ms: float,
    mode: str,
) -> EdgebusError:
    """The error of a read no region could serve fresh enough in time (``others``:
    what the regions that did not give a verdict said)."""
    asked = ", ".join(f"{r} ({_describe_verdict(v)})" for r, v in verdicts)
    down = f"; {'; '.join(others)}" if others else ""
    advice = (
        "Retry later, raise wait_ms, or read with fallback='route'"
        if mode == "raise"
        else "Retry later or raise wait_ms; check `edgebus status` for paused or "
        "stopped regions"
    )
    if consistency == "causal":
        lacking: dict[str, int] = {}
        for _, v in verdicts:
            for stream, offset in (v.get("missing") or {}).items():
                lacking[stream] = max(lacking.get(stream, -1), offset)
        return SessionNotCovered(
            f"No region covers the session for a causal read of {key!r:.80} after "
            f"waiting {wait_ms:g} ms: asked {asked}{down}. {advice}.",
            lacking,
        )
    known = [v["staleness_ms"] for _, v in verdicts if v.get("staleness_ms") is not None]
    behind = [v["versions_behind"] for _, v in verdicts if v.get("versions_behind") is not None]
    return StalenessBoundExceeded(
        f"No region can prove a fresh enough answer for {key!r:.80} after waiting "
        f"{wait_ms:g} ms: asked {asked}{down}. {advice}.",
        min(known) if known else None,
        min(behind) if behind else None,
    )


def _absent_note(absent: Sequence[str]) -> list[str]:
    """What the "not found" answers that settle nothing say (empty: there were none)."""
    if not absent:
        return []
    return [
        f"{', '.join(absent)} answered \"not found\", which does not count: the key "
        "may be placed elsewhere"
    ]


def _unavailable(
    key: str, route: ReadRoute, unavailable: Sequence[tuple[str, str]], absent: Sequence[str]
) -> RegionUnavailable:
    """The error of a read that no region able to answer for the key answered: it names
    the regions tried and what each said, and says what to do."""
    down = [r for r, _ in unavailable]
    tried = [r for r in route.order if r in down or r in absent]
    if route.placement is not None:
        head = f"no region of its placement ({', '.join(sorted(route.placement))}) answered"
    else:
        head = f"{', '.join(down) or 'no region'} did not answer"
    said = [f"{r}: {why.rstrip('.')}" for r, why in unavailable] + _absent_note(absent)
    start = " and ".join(f"`edgebus region run --region {r}`" for r in down)
    todo = f"Start {start} (or check that it runs and answers), then retry" if down else "Retry"
    return RegionUnavailable(
        f"Cannot read {key!r:.80}: {head} (tried {', '.join(tried) or 'none'}). "
        f"{'; '.join(said)}. {todo}: a region outside the key's placement cannot say "
        "that the key does not exist."
    )
