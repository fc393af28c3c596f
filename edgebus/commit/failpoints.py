"""Failpoints: kill this process at a named step, for crash tests.

``EDGEBUS_FAILPOINTS=name[,name...]`` (environment, read once) makes :func:`hit`
``SIGKILL`` the process the first time it reaches one of those steps: no cleanup, no
flush, as a power cut or ``kill -9``. Unset (always, outside tests) it costs one
set lookup. Steps:

* ``coordinator.before_decision``: every vote is in, the decision not appended;
* ``coordinator.after_decision``: the decision is acknowledged by Kafka;
* ``participant.after_vote``: the vote is acknowledged by Kafka;
* ``participant.after_apply``: the commit's event is applied here, not acknowledged.
"""

from __future__ import annotations

import os
import signal

__all__ = ["armed", "hit"]

_ARMED = frozenset(p.strip() for p in os.environ.get("EDGEBUS_FAILPOINTS", "").split(",")
                   if p.strip())


def armed(name: str) -> bool:
    """True if ``name`` is set to kill this process."""
    return name in _ARMED


def hit(name: str) -> None:
    """Kill this process with SIGKILL if the failpoint ``name`` is armed."""
    if name in _ARMED:
        os.kill(os.getpid(), signal.SIGKILL)
