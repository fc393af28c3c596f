"""What a state host keeps for each state it owns, and the requests it runs on them.

:class:`OwnedState` is the owner's side of one state: its epoch, its lease (in append
time, and by this host's monotonic clock), its working copy and the lock requests
parked on it. :class:`Work` is one request on the host's serial queue. :class:`NotOwner`
tells a local caller to send its request through the log instead. :class:`HostPart` is
the base of the host's parts, which share its :class:`HostContext`; :class:`Folds` is
what the host folded from its logs, which its log reader updates and its snapshots save.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition

from edgebus.config import EdgeConfig
from edgebus.core.state_machine import StateObject, StateOp, StateRequest
from edgebus.errors import EdgebusError
from edgebus.state.log import Appended, StateLogWriter

__all__ = [
    "Folds",
    "HostContext",
    "HostPart",
    "Key",
    "NotOwner",
    "OwnedState",
    "Parked",
    "Work",
    "tell_not_owner",
    "wall_ms",
]

Key = tuple[str, str]  # (data class, state id)
#: a lock request waiting at its owner: the request, when it was sent, its local caller
Parked = tuple[StateRequest, int, asyncio.Future[Any] | None]


class NotOwner(EdgebusError):
    """This host does not (or no longer) own the state: send the request through the
    log instead."""

    retriable = True


def wall_ms() -> int:
    """This host's wall clock, in milliseconds."""
    return int(time.time() * 1000)


def tell_not_owner(local: asyncio.Future[Any] | None, message: str) -> None:
    """Fail a local caller's future (if any, and still waiting) with :class:`NotOwner`:
    it then forwards its request through the log."""
    if local is not None and not local.done():
        local.set_exception(NotOwner(message))


@dataclass
class OwnedState:
    """A state this host owns: the lease it knows and its working copy."""

    data_class: str
    state_id: str
    epoch: int
    lease_ms: int
    lease_until_ms: int  # in append time
    valid_until: float  # monotonic seconds
    work: StateObject
    renew_sent: float = 0.0
    renewing: bool = False
    handing_off: bool = False
    inflight: int = 0
    parked: list[Parked] = field(default_factory=list)


@dataclass
class Work:
    """One request for the serial executor: forwarded (read from the log) or local."""

    key: Key
    request: StateRequest
    sent_ms: int
    local: asyncio.Future[tuple[StateOp, Appended]] | None = None


@dataclass
class Folds:
    """A host's fold of the state logs it reads: each state's
    :class:`~edgebus.core.state_machine.StateObject` (``objects``), the next offset to
    fold in each partition (``positions``) and the states folded since the last
    snapshot (``dirty``); ``topic_class`` names the data class of each log."""

    topic_class: Mapping[str, str]
    objects: dict[Key, StateObject] = field(default_factory=dict)
    positions: dict[TopicPartition, int] = field(default_factory=dict)
    dirty: set[Key] = field(default_factory=set)


@dataclass(frozen=True)
class HostContext:
    """What every part of one state host shares: the config, the host's region and id,
    its state-log writer and its counters (updated in place)."""

    config: EdgeConfig
    region: str
    host_id: str
    writer: StateLogWriter
    counters: dict[str, int]


class HostPart:
    """Base of a part of a state host (its ownership loop, executor, log reader)."""

    def __init__(self, host: HostContext) -> None:
        self.config = host.config
        self.region = host.region
        self.host_id = host.host_id
        self._writer = host.writer
        self._counters = host.counters
