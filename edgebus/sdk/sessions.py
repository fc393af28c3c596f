"""The session of one EdgeBus: everything it has written or read, as a session token,
the placements of the keys it wrote (so that reads fall back only to regions that may
hold them), and the checks of the tokens callers pass in (from any process)."""

from __future__ import annotations

from collections.abc import Sequence

from aiokafka import TopicPartition

from edgebus.config import EdgeConfig
from edgebus.core.session import SessionToken
from edgebus.core.vector_clock import Position
from edgebus.errors import InvalidInput
from edgebus.kafka.reading import end_offsets
from edgebus.kafka.topics import events_topic

__all__ = ["PLACEMENTS_MAX", "BusSession"]

#: how many checked tokens are remembered (a token is checked against Kafka once)
_CHECKED_MAX = 1024
#: how many keys' placements are remembered (the least recently written is forgotten)
PLACEMENTS_MAX = 10_000


class BusSession:
    """The bus's session token and the checks of foreign ones.

    ``token`` covers every acknowledged write of the bus and every read's answer;
    ``own_hlc`` is the newest HLC of the bus's own writes, kept apart so that a write
    need not build a new token (:attr:`current` joins them). :meth:`placement_of` is
    the placement of the newest write of a key the bus knows of (bounded memory).
    """

    def __init__(self, config: EdgeConfig, clusters: dict[str, str]) -> None:
        self.config = config
        self.clusters = clusters
        self.token = SessionToken.empty()
        self.own_hlc = 0
        self._regions = frozenset(config.regions)
        self._topic_regions = {events_topic(r): r for r in config.regions}
        self._checked: set[SessionToken] = set()
        self._placements: dict[str, tuple[int, tuple[str, ...]]] = {}

    @property
    def current(self) -> SessionToken:
        """Everything this bus has written and read: its session token."""
        return self.token.with_hlc(self.own_hlc)

    def merge(self, other: SessionToken) -> None:
        """Add what ``other`` covers (a read's answer, another session's write)."""
        self.token = self.token.merge(other)

    def observe_hlc(self, packed: int) -> None:
        """A strong commit or read saw this (packed) HLC: later writes stamp after it."""
        self.token = self.token.with_hlc(max(packed, self.token.hlc))

    def acknowledged(self, topic: str, partition: int, last_offset: int) -> str | None:
        """Kafka acknowledged a batch of this bus's writes up to ``last_offset``: the
        session covers them (the writes prepared until the next batch share one
        session clock, whose encodings are computed once). Returns the region."""
        region = self._topic_regions.get(topic)
        if region is not None:
            self.token = self.token.after_write(Position(region, partition, last_offset))
        return region

    def remember_placement(self, key: str, regions: Sequence[str], hlc: int = 0) -> None:
        """A write of ``key`` stamped ``hlc`` (packed HLC) was placed in ``regions`` (a
        receipt's ``placement``): reads of the key fall back only there. An older write
        than the one remembered changes nothing; past :data:`PLACEMENTS_MAX` keys the
        least recently written is forgotten (its reads fall back as for any unknown key).
        """
        known = self._placements.pop(key, None)
        if known is not None and known[0] > hlc:
            self._placements[key] = known
            return
        if known is None and len(self._placements) >= PLACEMENTS_MAX:
            del self._placements[next(iter(self._placements))]
        self._placements[key] = (hlc, tuple(regions))

    def placement_of(self, key: str) -> tuple[str, ...] | None:
        """The regions of the newest remembered write of ``key`` (None: unknown)."""
        known = self._placements.get(key)
        return None if known is None else known[1]

    def decode(self, session: SessionToken | str) -> SessionToken:
        """A token passed in, decoded, naming only configured regions."""
        token = session if isinstance(session, SessionToken) else SessionToken.decode(session)
        unknown = sorted({r for r, _ in token.clock.entries()} - self._regions)
        if unknown:
            raise InvalidInput(
                f"The session token names region(s) {', '.join(unknown)}, which this "
                f"configuration does not have ({', '.join(self.config.regions)}): pass a "
                "token issued by this deployment."
            )
        return token

    async def check(self, session: SessionToken | str) -> None:
        """Refuse a token naming positions that do not exist (forged, or from another
        deployment): a write depending on them could never be applied anywhere."""
        token = self.decode(session)
        if not token.clock or token in self._checked:
            return
        wanted: dict[str, dict[tuple[str, int], int]] = {}
        for (region, partition), offset in token.clock.entries().items():
            wanted.setdefault(self.clusters[region], {})[(region, partition)] = offset
        for bootstrap, entries in wanted.items():
            ends = await end_offsets(
                self.config.kafka, bootstrap, {events_topic(r) for r, _ in entries}
            )
            for (region, partition), offset in entries.items():
                end = ends.get(TopicPartition(events_topic(region), partition), 0)
                if offset >= end:
                    raise InvalidInput(
                        f"The session token names {region}:{partition}:{offset}, beyond the "
                        f"end of {events_topic(region)} partition {partition} (next offset "
                        f"{end}): it was not issued by this deployment (or the topic was "
                        "recreated). Pass a token from a write or read made here."
                    )
        if len(self._checked) >= _CHECKED_MAX:
            self._checked.clear()
        self._checked.add(token)
