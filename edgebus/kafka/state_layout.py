"""Where state-machine logs live: pure rules of the config, no I/O.

A state of class C is logged on ``edgebus.H.state.C`` on the cluster of its home
region H: the strong log region when C's zones allow it there, else the first region
that may hold C. The regions that may hold C own or copy its states (they *host* the
class). The state host (:mod:`edgebus.state.log`) and the ACL plan
(:mod:`edgebus.kafka.acl_plan`) both follow these rules, so they live here, below both.
"""

from __future__ import annotations

from edgebus.config import EdgeConfig
from edgebus.errors import ComplianceViolation
from edgebus.kafka.topics import state_log_topic

__all__ = [
    "TOPIC_CONFIGS",
    "allowed_regions",
    "home_region",
    "hosted_classes",
    "state_classes",
    "state_topic",
]

#: append times for leases; no retention limit: a state lives until deleted, and a host
#: that starts without a snapshot must find every record of its log
TOPIC_CONFIGS = {"message.timestamp.type": "LogAppendTime", "retention.ms": "-1"}


def state_classes(config: EdgeConfig) -> tuple[str, ...]:
    """Every data class a state may have: ``public``, the configured classes and the
    default class, sorted."""
    c = config.compliance
    return tuple(sorted({"public", c.default_classification, *c.data_classifications}))


def allowed_regions(config: EdgeConfig, data_class: str) -> tuple[str, ...]:
    """The regions (configured order) that may own or copy a state of ``data_class``."""
    return config.compliance.rules().allowed_regions(config.regions, [data_class])


def home_region(config: EdgeConfig, data_class: str) -> str:
    """The region whose cluster holds the log of ``data_class``'s states
    (ComplianceViolation when no configured region may hold the class)."""
    allowed = allowed_regions(config, data_class)
    if not allowed:
        rules = config.compliance.rules()
        raise ComplianceViolation(
            [data_class], rules.zones_required([data_class]), config.regions,
            f"no configured region may hold a state of class {data_class}",
        )
    preferred = config.strong_log_region
    return preferred if preferred in allowed else allowed[0]


def state_topic(config: EdgeConfig, data_class: str) -> str:
    """The log topic of ``data_class``'s states."""
    return state_log_topic(home_region(config, data_class), data_class)


def hosted_classes(config: EdgeConfig, region: str) -> tuple[str, ...]:
    """The classes whose states ``region`` may own or copy (so whose logs it reads)."""
    return tuple(c for c in state_classes(config) if region in allowed_regions(config, c))
