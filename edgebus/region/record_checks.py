"""What a region checks in the control data of each record it reads from its topic.

A region's topic is written by its own SDK writers, its replicators and its
participants, but a buggy writer, an old client or a compromised host can append
anything. The body is checked by the decoders; the control data that steers the
causal gate and the frontier is checked here, where it is read (``docs/operations.md``,
"Dead letters"):

- an origin position (``eb-origin-pos``) names another configured region, the
  record's own partition (copies keep their partition), and an offset below that
  region's topic end as this region knows it (:class:`SourceEnds`, read again from
  the origin's cluster when a copy lies past it): a forged position
  would move the frontier past real events, which would then be dropped as duplicates;
- dependencies (``eb-deps``) name configured regions and partitions that exist;
- a heartbeat's origin time is not ahead of this region's clock by more than
  ``replication.max_clock_drift_ms`` (a heartbeat from the future would make every
  bounded-staleness read of its origin look fresh).

A record that fails a check is a dead letter with the reason; nothing of it applies.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from aiokafka.errors import KafkaError

from edgebus.config import EdgeConfig
from edgebus.core.vector_clock import Position, VectorClock
from edgebus.errors import EdgebusError

__all__ = ["EndsOutdated", "RecordChecks", "SourceEnds"]

log = logging.getLogger("edgebus.region")


#: reads the end offsets of a region's topic (partition -> end), from its cluster
Reread = Callable[[str], Awaitable[Mapping[int, int]]]
#: after a failed re-read, how long a region's positions go unchecked before the next
RETRY_REREAD_S = 30.0


class EndsOutdated(Exception):
    """A copy's origin position lies past what this region knows of its origin's topic:
    read the origin's end offsets again (:meth:`SourceEnds.refresh`), then decide."""

    def __init__(self, region: str) -> None:
        super().__init__(region)
        self.region = region


@dataclass(slots=True)
class SourceEnds:
    """The end offset of other regions' topic partitions, as this region knows it:
    read from their clusters (a Describe, never a Read of their records) when the
    first copy of a region's event comes, and again when a copy names a position past
    them.
    The origins push their copies, so a real copy always lies below its origin's end
    once that end is read after the copy was made; a position past the end read *for
    this batch* is forged. A region whose ends cannot be read is not checked (and is
    read again after ``RETRY_REREAD_S``)."""

    ends: dict[tuple[str, int], int] = field(default_factory=dict)
    known: set[str] = field(default_factory=set)
    #: how to read a region's ends again (None: never; positions past them are forged)
    reread: Reread | None = None
    #: regions read again during the current batch
    fresh: set[str] = field(default_factory=set)
    #: region -> monotonic time before which a failed re-read is not tried again
    retry_after: dict[str, float] = field(default_factory=dict)

    def note(self, region: str, partition: int, end: int) -> None:
        """``end`` (an offset one past a record seen) of ``region``'s partition."""
        key = (region, partition)
        if end > self.ends.get(key, 0):
            self.ends[key] = end

    def load(self, region: str, ends: Mapping[int, int]) -> None:
        """Every partition's end offset of ``region``'s topic, just read: from now on
        the region's positions are checked."""
        for partition, end in ends.items():
            self.note(region, partition, end)
        self.known.add(region)

    def past_end(self, position: Position) -> int | None:
        """The known end when ``position`` lies at or past it, else None (also None
        when the region's ends are not known, or could not be read again lately: what
        was read before may be stale by now)."""
        if position.region not in self.known or self._backing_off(position.region):
            return None
        end = self.ends.get((position.region, position.partition), 0)
        return end if position.offset >= end else None

    def trusted(self) -> dict[tuple[str, int], int]:
        """The ends a copy's position may be checked against as they are: (region,
        partition) -> end, for the regions whose ends are known and whose last re-read
        did not fail lately. A position below its end is no forgery whatever is read
        again later (for the compiled fold; anything else goes through
        :meth:`RecordChecks.origin_problem`)."""
        return {
            key: end for key, end in self.ends.items()
            if key[0] in self.known and not self._backing_off(key[0])
        }

    def begin_batch(self) -> None:
        """A new batch: positions past the ends may be worth a re-read again."""
        self.fresh.clear()

    def outdated(self, position: Position) -> bool:
        """Whether ``position`` calls for reading its region's ends again first: it lies
        past them (or they are unknown), and they were not read for this batch yet."""
        region = position.region
        if self.reread is None or region in self.fresh:
            return False
        if self._backing_off(region):
            return False
        return region not in self.known or self.past_end(position) is not None

    def _backing_off(self, region: str) -> bool:
        """A re-read of ``region``'s ends failed less than ``RETRY_REREAD_S`` ago."""
        until = self.retry_after.get(region)
        return until is not None and time.monotonic() < until

    async def refresh(self, region: str) -> None:
        """Read ``region``'s ends again (once per batch); a failure is logged and its
        positions go unchecked until a later read succeeds."""
        self.fresh.add(region)
        if self.reread is None:
            return
        try:
            self.load(region, await self.reread(region))
            self.retry_after.pop(region, None)
        except (EdgebusError, KafkaError, OSError, TimeoutError) as e:
            self.retry_after[region] = time.monotonic() + RETRY_REREAD_S
            log.warning("could not read the end offsets of %s again (%s): its origin "
                        "positions are not checked against them for %.0f s", region, e,
                        RETRY_REREAD_S)


@dataclass(frozen=True, slots=True)
class RecordChecks:
    """The checks of one region's reader; ``None`` limits are not checked (replay
    checks what does not depend on when it runs)."""

    region: str
    regions: frozenset[str]
    partitions: int
    max_clock_drift_ms: int | None = None
    dependency_timeout_ms: int | None = None
    source_ends: SourceEnds | None = None

    @classmethod
    def live(cls, config: EdgeConfig, region: str, ends: SourceEnds | None) -> RecordChecks:
        """Every check, with the configured limits (a running region service)."""
        replication = config.replication
        return cls(
            region, frozenset(config.regions), config.kafka.partitions,
            replication.max_clock_drift_ms, replication.dependency_timeout_ms, ends,
        )

    @classmethod
    def static(cls, config: EdgeConfig, region: str) -> RecordChecks:
        """The checks whose answer does not depend on the clock nor on the brokers."""
        return cls(region, frozenset(config.regions), config.kafka.partitions)

    def origin_problem(self, origin: Position, partition: int) -> str | None:
        """Why an ``eb-origin-pos`` read on a record of ``partition`` cannot be true."""
        if origin.region == self.region:
            return (f"forged origin position {_pos(origin)}: it names this region, and "
                    "only the replicator writes origin positions, for other regions' events")
        if origin.region not in self.regions:
            return (f"forged origin position {_pos(origin)}: {origin.region!r:.40} is not "
                    f"a configured region ({', '.join(sorted(self.regions))})")
        if origin.partition != partition:
            return (f"forged origin position {_pos(origin)}: a copy keeps its partition, "
                    f"and this record is in partition {partition}")
        ends = self.source_ends
        if ends is not None and ends.outdated(origin):
            raise EndsOutdated(origin.region)
        end = ends.past_end(origin) if ends is not None else None
        if end is not None:
            return (f"forged origin position {_pos(origin)}: {origin.region}'s partition "
                    f"{origin.partition} ends at offset {end}, so no copy of offset "
                    f"{origin.offset} can exist")
        return None

    def deps_problem(self, deps: VectorClock) -> str | None:
        """Why dependencies cannot be real (an unknown region, a missing partition)."""
        for (region, partition), offset in deps.entries().items():
            if region not in self.regions:
                return (f"dependency on {region!r:.40}:{partition} names no configured "
                        f"region ({', '.join(sorted(self.regions))})")
            if not 0 <= partition < self.partitions:
                return (f"dependency on {region}:{partition}: the topics have "
                        f"{self.partitions} partitions")
            if offset < 0:
                return f"dependency on {region}:{partition} at negative offset {offset}"
        return None

    def heartbeat_problem(self, origin_ms: int, now_ms: int) -> str | None:
        """Why a heartbeat's origin time cannot be taken (too far in the future)."""
        drift = self.max_clock_drift_ms
        if drift is None or origin_ms <= now_ms + drift:
            return None
        return (f"clock drift: the heartbeat's time is {origin_ms - now_ms} ms ahead of "
                f"{self.region}'s clock, over replication.max_clock_drift_ms={drift}; "
                "taken, it would make reads of its origin look fresh. Synchronise the "
                "clocks (NTP) of the origin's service and this one")


def _pos(origin: Position) -> str:
    return f"{origin.region:.40}:{origin.partition}:{origin.offset}"
