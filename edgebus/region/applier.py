"""Turn a batch of records from ``edgebus.R.events`` into one store transaction.

Shared by the live materializer and by replay, so that a replay folds exactly as the
live region did. Per record, in topic order:

1. decode (Avro single-object + headers); a record that does not decode, whose key
   disagrees with its body, that is placed outside this region, that compliance no
   longer allows here, or whose operation cannot apply (``invalid_reason``) is a
   dead letter: the caller sends it to ``edgebus.R.dlq`` (replay only counts it);
2. skip duplicates: a replicated copy whose origin position is not past the origin
   frontier (the replicator is at-least-once), a redriven dead letter already applied;
3. fold it onto the key's state (:func:`edgebus.core.conflict.apply`), loading the
   key's retained ops only when the fold asks.

The result is one :class:`~connectors.base.BatchChanges` (new states, retained ops
added and dropped, next offsets, frontier, redriven) plus the dead letters.
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import ConsumerRecord

from connectors.base import BatchChanges, Store
from edgebus.core.conflict import KeyOp, KeyState, NeedsHistory, Stamp, apply, invalid_reason
from edgebus.core.placement import ComplianceRules
from edgebus.core.vector_clock import Position
from edgebus.errors import EdgebusError
from edgebus.wire.event_reader import read_event
from edgebus.wire.headers import H_ORIGIN_POS, parse_position

__all__ = ["H_REDRIVE_OF", "AppliedEvent", "BatchApplier", "BatchResult", "DeadLetter"]

#: header a redriven record carries: ``partition:offset`` of its dead letter
H_REDRIVE_OF = "eb-redrive-of"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record that cannot be applied, and why."""

    record: ConsumerRecord[bytes, bytes]
    reason: str
    stage: str = "materialize"


@dataclass(frozen=True, slots=True)
class AppliedEvent:
    """An event that reached the store (for waiters and benchmarks)."""

    key: str
    event_id: str
    origin: Position
    hlc: int


@dataclass(slots=True)
class BatchResult:
    """One batch's store changes, dead letters and applied events."""

    changes: BatchChanges
    dead: list[DeadLetter] = field(default_factory=list)
    applied: list[AppliedEvent] = field(default_factory=list)
    duplicates: int = 0


class BatchApplier:
    """Folds batches of a region's events onto its store (one instance per store)."""

    def __init__(self, region: str, rules: ComplianceRules, store: Store) -> None:
        self.region = region
        self.rules = rules
        self.store = store
        self._frontier: dict[tuple[str, int], int] | None = None
        self._allowed: dict[tuple[str, ...], bool] = {}

    async def frontier(self) -> dict[tuple[str, int], int]:
        """(origin region, partition) -> highest origin offset applied (cached)."""
        if self._frontier is None:
            self._frontier = dict(await self.store.frontier())
        return self._frontier

    async def apply(
        self,
        records: Sequence[ConsumerRecord[bytes, bytes]],
        known_dead: Container[tuple[int, int]] = (),
    ) -> BatchResult:
        """Fold ``records`` (topic order) into changes; the caller commits them.

        ``known_dead``: (partition, offset) of records the live region already sent to
        its dead-letter topic; replay treats them as dead letters too, whatever it
        could decode now, so that it folds exactly what the live region folded (a
        redriven copy of such a record is applied instead, once).
        """
        frontier = await self.frontier()
        changes = BatchChanges(events=len(records))
        result = BatchResult(changes)
        decoded: list[tuple[ConsumerRecord[bytes, bytes], Any, Position, tuple[int, int] | None]]
        decoded = []
        redrives: list[tuple[int, int]] = []
        for record in records:
            changes.positions[(record.topic, record.partition)] = record.offset + 1
            if (record.partition, record.offset) in known_dead:
                result.dead.append(DeadLetter(record, "dead-lettered by the live region"))
                continue
            try:
                event, origin, redrive_of = self._check(record)
            except _Dead as e:
                result.dead.append(DeadLetter(record, str(e)))
                continue
            decoded.append((record, event, origin, redrive_of))
            if redrive_of is not None:
                redrives.append(redrive_of)
        done_redrives = await self.store.was_redriven(redrives) if redrives else set()
        states = await self.store.load({event.key for _, event, _, _ in decoded})
        pending: dict[str, list[KeyOp]] = {}
        batch_frontier = changes.frontier
        for record, event, origin, redrive_of in decoded:
            slot = (origin.region, origin.partition)
            if redrive_of is not None:
                if redrive_of in done_redrives or redrive_of in changes.redriven:
                    result.duplicates += 1
                    continue
                changes.redriven.add(redrive_of)
            seen = batch_frontier.get(slot)
            if seen is None:
                seen = frontier.get(slot, -1)
            if origin.offset > seen:
                batch_frontier[slot] = origin.offset
            elif redrive_of is None:
                result.duplicates += 1  # a replicator retry's second copy
                continue
            stamp = Stamp.of(event.hlc, event.origin_region, event.event_id)
            op = KeyOp(stamp, event.operation, event.payload)
            key = event.key
            state = states.get(key)
            try:
                applied = apply(state, key, op)
            except NeedsHistory:
                assert state is not None
                state = state.with_ops(await self._retained(key, changes, pending))
                applied = apply(state, key, op)
            value = applied.state.value
            if type(value) is int and not _INT64_MIN <= value <= _INT64_MAX:
                result.dead.append(DeadLetter(
                    record,
                    f"increment would take {key!r:.80} beyond 64-bit integers; counters are "
                    "limited to -2**63 .. 2**63-1 (reset it with a set, or use a float)",
                ))
                continue
            if applied.drop_before is not None:
                previous = changes.drop_before.get(key)
                if previous is None or applied.drop_before > previous:
                    changes.drop_before[key] = applied.drop_before
                if key in pending:
                    cut = applied.drop_before
                    pending[key] = [o for o in pending[key] if o.stamp >= cut]
            if applied.retain is not None:
                pending.setdefault(key, []).append(applied.retain)
            states[key] = applied.state
            changes.states[key] = applied.state
            result.applied.append(AppliedEvent(key, event.event_id, origin, stamp.hlc))
        for key, ops in pending.items():
            changes.retain.extend((key, op) for op in ops)
        frontier.update(batch_frontier)
        return result

    def forget(self) -> None:
        """Drop cached frontier (after a failed commit the store is the truth)."""
        self._frontier = None

    async def _retained(
        self, key: str, changes: BatchChanges, pending: dict[str, list[KeyOp]]
    ) -> list[KeyOp]:
        stored = await self.store.load_ops(key)
        cut = changes.drop_before.get(key)
        if cut is not None:
            stored = [o for o in stored if o.stamp >= cut]
        return [*stored, *pending.get(key, ())]

    def _check(
        self, record: ConsumerRecord[bytes, bytes]
    ) -> tuple[Any, Position, tuple[int, int] | None]:
        origin_raw = redrive_raw = None
        for name, raw in record.headers or ():
            if name == H_ORIGIN_POS:
                origin_raw = raw
            elif name == H_REDRIVE_OF:
                redrive_raw = raw
        try:
            event = read_event(record.value)
            origin = (
                parse_position(origin_raw)
                if origin_raw is not None
                else Position(self.region, record.partition, record.offset)
            )
            redrive_of = _parse_redrive(redrive_raw) if redrive_raw is not None else None
        except EdgebusError as e:
            raise _Dead(str(e)) from None
        key = record.key.decode("utf-8", "replace") if record.key is not None else None
        if key != event.key:
            raise _Dead(f"record key {key!r:.80} differs from the event's key {event.key!r:.80}")
        if origin_raw is None and event.origin_region != self.region:
            raise _Dead(
                f"event from origin {event.origin_region} has no {H_ORIGIN_POS} header: "
                "only edgebus's replicator may copy events between regions"
            )
        if origin.region != event.origin_region:
            raise _Dead(
                f"origin position {origin.region} differs from origin_region "
                f"{event.origin_region}"
            )
        if self.region not in event.placement:
            raise _Dead(
                f"placed in {', '.join(event.placement)}, not in {self.region}: it must not "
                "be stored here"
            )
        if not self._may_hold(event.classification):
            raise _Dead(
                f"compliance no longer allows {', '.join(event.classification) or 'public'} "
                f"data in {self.region}"
            )
        reason = invalid_reason(event.operation, event.payload)
        if reason is not None:
            raise _Dead(reason)
        return event, origin, redrive_of

    def _may_hold(self, classes: tuple[str, ...]) -> bool:
        allowed = self._allowed.get(classes)
        if allowed is None:
            allowed = bool(self.rules.allowed_regions((self.region,), classes))
            self._allowed[classes] = allowed
        return allowed


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class _Dead(Exception):
    pass


def _parse_redrive(raw: bytes) -> tuple[int, int]:
    try:
        partition, offset = raw.decode("ascii").split(":")
        return int(partition), int(offset)
    except (UnicodeDecodeError, ValueError):
        raise EdgebusError(f"Bad {H_REDRIVE_OF} header {raw!r}") from None


def state_row(state: KeyState, region: str) -> dict[str, Any]:
    """A key state as a read result (JSON-ready)."""
    top = state.top
    return {
        "key": state.key,
        "region": region,
        "exists": state.exists,
        "value": state.value if state.exists else None,
        "version": state.version,
        "origin": top.origin,
        "hlc": {"wall_ms": top.hlc >> 16, "logical": top.hlc & 0xFFFF},
        "event_id": top.event_id,
    }
