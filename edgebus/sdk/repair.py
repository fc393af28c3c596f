"""Repairing a region: it pulls from its peers what it lacks (``EdgeBus.sync``,
``edgebus repair --region R``, the ``sync`` action of ``EdgeDataNode``).

Replication stays decided at the origin: the repaired region R never reads another
region's topic. :func:`repair_region`

1. reads R's frontier (``GET /v1/status``: ``"<origin>:<partition>"`` -> the highest
   origin offset R has passed, -1 none);
2. asks every other configured region A's service to copy into R what R may hold of
   A's events from frontier + 1 of each partition to the end of A's topic now
   (``POST /v1/repair``, admin token; :mod:`edgebus.region.catch_up`), all origins at
   once, even while replication into R is paused. An origin whose service does not
   answer is reported as such; the others are still repaired;
3. waits (polling R's status, up to the deadline) until R's frontier for each of those
   streams reaches the ``reach`` the origin reported: the last position of the stream
   it copied, or passed with a watermark;
4. compares R's per-bucket checksums (``GET /v1/checksums``) with each peer's.

What proves that nothing placed in R is missing is step 3: R's frontier for A's
partition p covers every event of A placed in R up to the end A read, so once it reaches
``reach`` for every stream of every origin, R lacks nothing written before the repair
began (:attr:`RepairReport.ok`). The checksum comparison of step 4 is exact only when
every key is placed in both regions: a key placed in one of them only (residency,
replication_factor) makes its bucket differ by design, and so do writes that land while
the two snapshots are taken. It is reported for the operator, and does not decide
:attr:`RepairReport.ok`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from connectors.base import Checksums
from edgebus.config import EdgeConfig
from edgebus.errors import EdgebusError, InvalidInput, UnknownRegion
from edgebus.region.replay import compare_checksums
from edgebus.sdk.region_client import RegionClient

__all__ = [
    "SYNC_TIMEOUT_S",
    "OriginRepair",
    "PeerChecksums",
    "RepairReport",
    "frontier_lacking",
    "repair_region",
    "starts_from_frontier",
    "unexamined",
]

#: how long a repair waits, by default, for the origins and for the region's frontier
SYNC_TIMEOUT_S = 30.0
#: seconds between two readings of the region's frontier
POLL_S = 0.2


@dataclass
class OriginRepair:
    """One origin's part of a repair."""

    origin: str
    #: whether its service ran the catch-up (False: ``error`` says why not)
    answered: bool
    error: str | None = None
    #: the origin's catch-up report (:class:`~edgebus.region.catch_up.CatchUpReport`)
    copy: dict[str, Any] | None = None
    #: ``"origin:partition"`` -> the offset the region's frontier must reach for that
    #: stream but has not reached (empty: everything the origin copied is applied)
    lacking: dict[str, int] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """The origin copied from where it was asked to, and the region applied
        everything up to its reach."""
        return self.answered and self.error is None and not self.lacking

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"origin": self.origin, "answered": self.answered, "complete": self.complete,
                "error": self.error, "copy": self.copy, "lacking": dict(self.lacking)}


@dataclass
class PeerChecksums:
    """The region's checksums compared with one peer's."""

    peer: str
    answered: bool
    error: str | None = None
    keys: int | None = None
    buckets_compared: int = 0
    buckets_differing: list[int] = field(default_factory=list)

    @property
    def same(self) -> bool:
        """Every bucket's digest is equal in both regions."""
        return self.answered and not self.buckets_differing

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"peer": self.peer, "answered": self.answered, "same": self.same,
                "error": self.error, "keys": self.keys,
                "buckets_compared": self.buckets_compared,
                "buckets_differing": list(self.buckets_differing)}


@dataclass
class RepairReport:
    """What :func:`repair_region` did and found."""

    region: str
    frontier_before: dict[str, int]
    frontier_after: dict[str, int]
    origins: list[OriginRepair]
    checksums: list[PeerChecksums]
    #: the region's keys at the checksum snapshot (None: not read)
    keys: int | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Nothing placed in the region is missing: every origin copied and the region's
        frontier reached every stream's reach."""
        return all(o.complete for o in self.origins)

    @property
    def copied(self) -> int:
        """Copies the origins made, in all."""
        return sum(int((o.copy or {}).get("copied", 0)) for o in self.origins)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "region": self.region,
            "ok": self.ok,
            "copied": self.copied,
            "frontier_before": dict(sorted(self.frontier_before.items())),
            "frontier_after": dict(sorted(self.frontier_after.items())),
            "origins": [o.to_dict() for o in self.origins],
            "checksums": [c.to_dict() for c in self.checksums],
            "keys": self.keys,
            "seconds": round(self.seconds, 3),
        }


def starts_from_frontier(
    frontier: Mapping[str, int], origin: str, partitions: int
) -> dict[int, int]:
    """Where ``origin`` starts copying each partition: one past the region's frontier
    for that stream (0 where the region has passed nothing of it)."""
    return {p: max(0, frontier.get(f"{origin}:{p}", -1) + 1) for p in range(partitions)}


def frontier_lacking(
    frontier: Mapping[str, int], origin: str, reach: Mapping[int, int]
) -> dict[str, int]:
    """The streams of ``origin`` whose frontier in the region is below ``reach`` (what
    the origin's copies take it to): ``"origin:partition"`` -> the offset to reach."""
    out: dict[str, int] = {}
    for partition, offset in sorted(reach.items()):
        stream = f"{origin}:{partition}"
        if frontier.get(stream, -1) < offset:
            out[stream] = offset
    return out


async def repair_region(
    config: EdgeConfig,
    region: str,
    *,
    timeout_s: float = SYNC_TIMEOUT_S,
    client: RegionClient | None = None,
) -> RepairReport:
    """Make ``region`` pull from every other region what it lacks, wait (up to
    ``timeout_s`` in all) until it applied it, and compare checksums (see the module
    doc). ``client``: the region client to use (default: one of its own, closed after).

    Raises UnknownRegion, InvalidInput (``timeout_s`` not positive) and
    RegionUnavailable when ``region``'s own service does not answer; an origin or a
    peer that does not answer is reported in the result instead.
    """
    if region not in config.regions:
        raise UnknownRegion(region, config.regions)
    if not timeout_s > 0:
        raise InvalidInput(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
    own = client is None
    if client is None:
        client = RegionClient(config, timeout_s=min(config.kafka.connect_timeout_s, timeout_s))
    try:
        return await _repair(config, region, client, time.monotonic() + timeout_s)
    finally:
        if own:
            await client.close()


async def _repair(
    config: EdgeConfig, region: str, client: RegionClient, deadline: float
) -> RepairReport:
    began = time.monotonic()
    before = _frontier(await client.status(region))
    origins = [r for r in config.regions if r != region]
    partitions = config.kafka.partitions
    repairs = list(await asyncio.gather(*(
        _ask(client, origin, region, starts_from_frontier(before, origin, partitions),
             deadline)
        for origin in origins
    )))
    after = await _wait_for_frontier(client, region, repairs, before, deadline)
    keys, checksums = await _compare(client, region, origins)
    return RepairReport(region, before, after, repairs, checksums, keys,
                        time.monotonic() - began)


async def _ask(
    client: RegionClient, origin: str, region: str, starts: dict[int, int], deadline: float
) -> OriginRepair:
    """``origin``'s catch-up into ``region`` (its failure, as the result's ``error``)."""
    remaining = max(0.1, deadline - time.monotonic())
    try:
        copy = await asyncio.wait_for(
            client.repair(origin, region, starts, timeout_s=remaining), remaining
        )
    except TimeoutError:
        return OriginRepair(origin, False, f"no answer within {remaining:.0f} s")
    except EdgebusError as e:
        return OriginRepair(origin, False, str(e))
    reach = _reach(copy)
    if reach is None:
        return OriginRepair(origin, False, "its answer has no valid reach (partition -> "
                                           "offset): not an edgebus region service?")
    lacking = {f"{origin}:{p}": o for p, o in reach.items()}  # until the frontier is read
    return OriginRepair(origin, True, unexamined(copy, starts), copy, lacking)


def unexamined(copy: Mapping[str, Any], asked: Mapping[int, int]) -> str | None:
    """Why an origin's catch-up report does not cover what it was ``asked`` (partition
    -> first offset): a partition it did not read, or read from later than asked (its
    copies alone then prove nothing); None when it covers it."""
    starts, ends = _offsets(copy.get("starts")), _offsets(copy.get("ends"))
    if starts is None or ends is None:
        return "its answer has no valid starts and ends (partition -> offset)"
    for partition, wanted in sorted(asked.items()):
        start, end = starts.get(partition), ends.get(partition)
        if start is None or end is None:
            return f"it did not read partition {partition}"
        if start > min(wanted, end):
            return (f"it read partition {partition} from offset {start}, not from "
                    f"{wanted} as asked (what lies before was not read, or retention "
                    "deleted it): its copies do not prove the region lacks nothing")
    return None


async def _wait_for_frontier(
    client: RegionClient,
    region: str,
    repairs: Sequence[OriginRepair],
    frontier: dict[str, int],
    deadline: float,
) -> dict[str, int]:
    """Poll the region's frontier until it reaches every answered origin's reach, or
    the deadline; each repair's ``lacking`` is what is still missing. The frontier last
    read is returned."""
    while True:
        for repair in repairs:
            if repair.answered:
                reach = _reach(repair.copy or {}) or {}
                repair.lacking = frontier_lacking(frontier, repair.origin, reach)
        if all(not r.lacking for r in repairs) or time.monotonic() >= deadline:
            return frontier
        await asyncio.sleep(POLL_S)
        try:
            frontier = _frontier(await client.status(region))
        except EdgebusError:
            continue  # the region's service may be busy: read it again until the deadline


async def _compare(
    client: RegionClient, region: str, peers: Sequence[str]
) -> tuple[int | None, list[PeerChecksums]]:
    """The region's key count and its checksums compared with each peer's."""
    async def read(name: str) -> Checksums | str:
        try:
            return _checksums(await client.checksums(name))
        except (EdgebusError, KeyError, TypeError, ValueError) as e:
            return str(e) or type(e).__name__

    ours, *theirs = await asyncio.gather(read(region), *(read(p) for p in peers))
    out: list[PeerChecksums] = []
    for peer, other in zip(peers, theirs, strict=True):
        if isinstance(ours, str) or isinstance(other, str):
            why = f"{region}: {ours}" if isinstance(ours, str) else f"{peer}: {other}"
            out.append(PeerChecksums(peer, False, why))
            continue
        differing = compare_checksums(ours, other)
        out.append(PeerChecksums(peer, True, None, other.keys,
                                 len(set(ours.buckets) | set(other.buckets)), differing))
    return (None if isinstance(ours, str) else ours.keys), out


def _frontier(status: Mapping[str, Any]) -> dict[str, int]:
    """``status["frontier"]`` (``"origin:partition"`` -> offset), its valid entries."""
    raw = status.get("frontier")
    if not isinstance(raw, Mapping):
        return {}
    return {str(k): v for k, v in raw.items()
            if isinstance(v, int) and not isinstance(v, bool)}


def _reach(copy: Mapping[str, Any]) -> dict[int, int] | None:
    """A catch-up report's ``reach`` (partition -> offset), or None if it is not one."""
    return _offsets(copy.get("reach"))


def _offsets(raw: Any) -> dict[int, int] | None:
    """A JSON object of partition -> offset, or None if ``raw`` is not one."""
    if not isinstance(raw, Mapping):
        return None
    out: dict[int, int] = {}
    for key, offset in raw.items():
        if not (isinstance(key, str) and key.isdigit()) or isinstance(offset, bool) \
                or not isinstance(offset, int):
            return None
        out[int(key)] = offset
    return out


def _checksums(document: Mapping[str, Any]) -> Checksums:
    """A ``GET /v1/checksums`` answer as :class:`Checksums` (positions left out)."""
    buckets = document["buckets"]
    return Checksums(positions={}, buckets={int(b): str(h) for b, h in buckets.items()},
                     keys=int(document["keys"]))
