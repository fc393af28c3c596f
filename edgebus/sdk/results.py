"""What the SDK's calls return: receipts of writes, outcomes of strong commits, read
results, and prepared writes (immutable values, each with a JSON-ready ``to_dict``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from edgebus.core.commit_vote import VersionConflict
from edgebus.core.envelope import CURRENT_SCHEMA_VERSION, EventEnvelope, Operation
from edgebus.core.hlc import HLCTimestamp
from edgebus.core.placement import Placement
from edgebus.core.session import SessionToken
from edgebus.core.vector_clock import Position
from edgebus.wire.event_codec import EncodedEvent

__all__ = ["CommitResult", "PreparedWrite", "ReadResult", "WriteReceipt"]


class WriteReceipt(NamedTuple):
    """What Kafka acknowledged for one write (immutable).

    ``session_token`` covers this write and everything the writer's session had seen:
    pass it to a later read or write (any process) for read-your-writes.
    """

    event_id: str
    key: str
    region: str
    topic: str
    partition: int
    offset: int
    placement: tuple[str, ...]
    classification: tuple[str, ...]
    hlc: HLCTimestamp
    dependencies: SessionToken
    rerouted: bool
    #: compliant regions left out of the placement because they were unhealthy
    degraded: tuple[str, ...] = ()
    #: why the placement holds fewer regions than ``replication.min_regions`` (only in
    #: non-strict mode: strict refuses), else ``""``
    shortfall: str = ""

    @property
    def replicas(self) -> dict[str, str]:
        """Region -> ``written`` (the home: Kafka acknowledged it), ``pending`` (placed
        there, replication under way) or ``failed`` (left out: unhealthy). Ask
        :meth:`EdgeBus.replication_status` for where it has been applied since."""
        out = {r: "pending" for r in self.placement}
        out[self.region] = "written"
        out.update((r, "failed") for r in self.degraded)
        return out

    @property
    def session(self) -> SessionToken:
        """The writer's session after this write: its dependencies plus this event."""
        hlc = (self.hlc.wall_ms << 16) | self.hlc.logical
        return self.dependencies.after_write(self.position, hlc)

    @property
    def session_token(self) -> str:
        """The session token as a string, to pass to another process or service."""
        return self.session.encode()

    @property
    def position(self) -> Position:
        """Where the event sits in its origin topic."""
        return Position(self.region, self.partition, self.offset)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready form."""
        return {
            "event_id": self.event_id,
            "key": self.key,
            "region": self.region,
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "placement": list(self.placement),
            "classification": list(self.classification),
            "hlc": {"wall_ms": self.hlc.wall_ms, "logical": self.hlc.logical},
            "session_token": self.session_token,
            "rerouted": self.rerouted,
            "replicas": self.replicas,
            "shortfall": self.shortfall,
        }


class CommitResult(NamedTuple):
    """The outcome of a strong write (two-phase commit across its placement).

    ``committed``: applied in every placement region (each applies it, then
    acknowledges; a strong read anywhere sees it from now on). Otherwise nothing was
    applied anywhere: ``reason`` says why, and ``conflict`` is set when
    ``expected_version`` did not match (a lost race: read again and retry).
    ``version``: the key's version after the commit.
    """

    txn_id: str
    key: str
    committed: bool
    reason: str | None
    conflict: VersionConflict | None
    version: int | None
    placement: tuple[str, ...]
    classification: tuple[str, ...]
    hlc: HLCTimestamp
    session_token: str
    decided_by: str

    @property
    def outcome(self) -> str:
        """``committed``, ``conflict`` or ``aborted``."""
        if self.committed:
            return "committed"
        return "conflict" if self.conflict is not None else "aborted"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        out = self._asdict()
        out["outcome"] = self.outcome
        out["placement"] = list(self.placement)
        out["classification"] = list(self.classification)
        out["hlc"] = self.hlc._asdict()
        out["conflict"] = None if self.conflict is None else {
            "region": self.conflict.region, "expected": self.conflict.expected,
            "found": self.conflict.found,
        }
        return out


class ReadResult(NamedTuple):
    """A key's value as one region holds it (immutable).

    ``exists`` is false when the region has no value (never written there, or
    deleted). ``version`` counts the events applied to the key in that region;
    ``origin`` and ``hlc`` are those of the newest of them (the one that decided the
    value under last-write-wins). ``session_token`` covers what this read saw (pass it
    to later reads and writes, in any process); ``staleness_ms`` is the measured bound
    on the answer's age (``None`` when the region cannot prove one); ``routed_from`` is
    the region asked first when another one served the read.
    """

    key: str
    region: str
    exists: bool
    value: Any
    version: int
    origin: str | None
    hlc: HLCTimestamp | None
    event_id: str | None
    consistency: str = "eventual"
    session_token: str | None = None
    staleness_ms: float | None = None
    waited_ms: float = 0.0
    routed_from: str | None = None
    versions_behind: int | None = None

    @property
    def session(self) -> SessionToken:
        """The session after this read, as a token object."""
        if self.session_token is None:
            return SessionToken.empty()
        return SessionToken.decode(self.session_token)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        out = self._asdict()
        out["hlc"] = None if self.hlc is None else self.hlc._asdict()
        return out

    @classmethod
    def from_row(
        cls, row: Mapping[str, Any], consistency: str = "eventual", routed_from: str | None = None
    ) -> ReadResult:
        """From a region query answer."""
        hlc = row.get("hlc")
        return cls(
            key=row["key"],
            region=row["region"],
            exists=bool(row["exists"]),
            value=row.get("value"),
            version=int(row.get("version") or 0),
            origin=row.get("origin"),
            hlc=None if not hlc else HLCTimestamp(hlc["wall_ms"], hlc["logical"]),
            event_id=row.get("event_id"),
            consistency=row.get("consistency", consistency),
            session_token=row.get("session_token"),
            staleness_ms=row.get("staleness_ms"),
            waited_ms=float(row.get("waited_ms") or 0.0),
            routed_from=routed_from,
            versions_behind=row.get("versions_behind"),
        )


class PreparedWrite(NamedTuple):
    """A write that passed every check, encoded and ready to send (immutable)."""

    event_id: str
    key: str
    operation: Operation
    payload: Any
    classification: tuple[str, ...]
    hlc: HLCTimestamp
    encoded: EncodedEvent
    topic: str
    placement: Placement
    dependencies: SessionToken
    writer: str | None

    @property
    def event(self) -> EventEnvelope:
        """The envelope of this write (built on demand: every field was checked already)."""
        return EventEnvelope.model_construct(
            event_id=self.event_id,
            key=self.key,
            operation=self.operation,
            payload=self.payload,
            origin_region=self.placement.home,
            placement=self.placement.regions,
            classification=self.classification,
            hlc=self.hlc,
            dependencies=self.dependencies.clock,
            schema_version=CURRENT_SCHEMA_VERSION,
            writer=self.writer,
        )
