"""What folding one batch yields: its store changes, dead letters and applied events."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from aiokafka import ConsumerRecord

from connectors.base import BatchChanges
from edgebus.core.vector_clock import Position

__all__ = ["AppliedEvent", "BatchResult", "Checkpoint", "DeadLetter"]


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
    released: int = 0


class Checkpoint(NamedTuple):
    """The applier's state before a batch: its gate's snapshot and read positions."""

    gate: object | None
    read: dict[tuple[str, int], int]
