"""What a state host keeps for each state it owns, and the requests it runs on them.

:class:`OwnedState` is the owner's side of one state: its epoch, its lease (in append
time, and by this host's monotonic clock), its working copy and the lock requests
parked on it. :class:`Work` is one request on the host's serial queue. :class:`NotOwner`
tells a local caller to send its request through the log instead.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from edgebus.core.state_machine import StateObject, StateOp, StateRequest
from edgebus.errors import EdgebusError
from edgebus.state.log import Appended

__all__ = ["Key", "NotOwner", "OwnedState", "Parked", "Work", "tell_not_owner", "wall_ms"]

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
