"""aiokafka's repeated messages, logged once per episode instead of as a stream.

A consumer group that rebalances makes aiokafka log the same warning again and again
("Heartbeat failed for group ... because it is rebalancing", "OffsetCommit failed ...
will rejoin", "Marking the coordinator dead ..."): once per heartbeat, per member, for
as long as the rebalance lasts. A program that configured no logging gets every one of
them on its stderr (Python's last-resort handler prints WARNING and above), so a fleet
of SDK clients would stream them to their users' terminals.

:func:`install` puts one :class:`KafkaNoiseFilter` on every aiokafka logger:

* group churn (:data:`GROUP_CHURN`: rebalances, heartbeats refused during one, the
  group's coordinator broker moving) is how a consumer group heals itself, not a
  failure: it is logged at INFO, and only where INFO is enabled for its logger;
* every message (by logger and format string) is logged once per episode
  (:class:`NoiseGate`): again only after ``quiet_s`` without it, or once every
  ``repeat_s`` while it never stops, saying how many like it were left out;
* the first time a message is left out, edgebus says so, once, on ``edgebus.kafka``.

Other messages keep their level. ``edgebus.sdk`` and the commit coordinator install
it when they start; :func:`uninstall` takes it off again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass

__all__ = [
    "GROUP_CHURN",
    "KafkaNoiseFilter",
    "NoiseGate",
    "install",
    "is_group_churn",
    "uninstall",
]

#: parts of the format strings of aiokafka's consumer-group messages that a rebalance,
#: or the group's coordinator broker moving, produces (aiokafka/consumer/group_coordinator.py)
GROUP_CHURN = (
    "Heartbeat failed",
    "Heartbeat session expired",
    "Heartbeat send request failed",
    "marking coordinator dead",
    "Marking the coordinator dead",
    "due to group error",
    "OffsetCommit failed before join",
    "Failed to commit on finallization",
    "LeaveGroup request failed",
    "Group Coordinator Request failed",
    "obsolete coordinator information",
)

_CHURN_LOGGER = "aiokafka.consumer.group_coordinator"


def is_group_churn(logger_name: str, template: str) -> bool:
    """Whether a message of aiokafka's group coordinator (its format string) is group
    churn: expected during a rebalance, healed by it."""
    return logger_name == _CHURN_LOGGER and any(part in template for part in GROUP_CHURN)


@dataclass
class _Episode:
    last: float  #: when the message was last seen
    reported: float  #: when it was last let through
    left_out: int  #: seen since then, not let through


class NoiseGate:
    """Which repeats of a message to let through: the first of an episode, then one
    every ``repeat_s`` while the episode goes on. An episode ends after ``quiet_s``
    without the message. Pure bookkeeping: the caller passes the time."""

    def __init__(self, *, quiet_s: float = 60.0, repeat_s: float = 600.0) -> None:
        self.quiet_s = quiet_s
        self.repeat_s = repeat_s
        self._episodes: dict[Hashable, _Episode] = {}
        self._lock = threading.Lock()

    def admit(self, key: Hashable, now: float) -> tuple[bool, int]:
        """``(let through, how many like it were left out before)`` for a message
        seen at ``now``."""
        with self._lock:
            episode = self._episodes.get(key)
            if episode is None or now - episode.last >= self.quiet_s:
                left_out = episode.left_out if episode is not None else 0
                self._episodes[key] = _Episode(now, now, 0)
                return True, left_out
            episode.last = now
            if now - episode.reported >= self.repeat_s:
                left_out, episode.left_out, episode.reported = episode.left_out, 0, now
                return True, left_out
            episode.left_out += 1
            return False, 0


class KafkaNoiseFilter(logging.Filter):
    """The filter :func:`install` puts on aiokafka's loggers (see the module)."""

    def __init__(
        self, gate: NoiseGate | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.gate = gate or NoiseGate()
        self.clock = clock
        self.left_out = 0  #: messages left out so far
        self._announced = False

    def filter(self, record: logging.LogRecord) -> bool:
        """Let ``record`` through (perhaps at INFO), or leave it out."""
        if record.levelno < logging.WARNING:
            return True
        template = str(record.msg)
        admitted, before = self.gate.admit((record.name, template), self.clock())
        if not admitted:
            self.left_out += 1
            self._announce()
            return False
        if before:
            record.msg = f"{template} [{before} more like this were not logged]"
        if is_group_churn(record.name, template):
            record.levelno, record.levelname = logging.INFO, logging.getLevelName(logging.INFO)
            return logging.getLogger(record.name).isEnabledFor(logging.INFO)
        return True

    def _announce(self) -> None:
        if self._announced:
            return
        self._announced = True
        logging.getLogger("edgebus.kafka").info(
            "aiokafka repeats a message: each is logged once per episode from now on "
            "(consumer-group rebalances and heartbeats at INFO); "
            "edgebus.kafka.log_noise.uninstall() shows every one"
        )


_FILTER = KafkaNoiseFilter()


def _aiokafka_loggers() -> list[logging.Logger]:
    names = [
        name for name in list(logging.root.manager.loggerDict)
        if name == "aiokafka" or name.startswith("aiokafka.")
    ]
    return [logging.getLogger(name) for name in names]


def install() -> KafkaNoiseFilter:
    """Put the filter on every aiokafka logger that exists (once each; call again
    after importing more of aiokafka). Returns it."""
    for logger in _aiokafka_loggers():
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
    return _FILTER


def uninstall() -> None:
    """Take the filter off again: every aiokafka message at its own level."""
    for logger in _aiokafka_loggers():
        logger.removeFilter(_FILTER)
