"""The spec's ``edge_config``, validated.

An ``edge_config`` is a plain dict (the spec passes one to the runtime), a JSON or
TOML file (``--config PATH`` or ``EDGEBUS_CONFIG``), or nothing at all: zero-config
gives three regions on the local Kafka that ``edgebus kafka up`` started, the spec's
compliance zones and classifications, and strict mode.

Unknown keys are refused with the nearest valid key, so a typo never silently turns
a safety setting off (``strickt_mode`` would otherwise leave strict mode at its
default without a word).

One module per section, named as the section (``discovery``, ``compliance``,
``replication``, ``reads``, ``strong``, ``state``, ``monitoring``, ``kafka``,
``query``) on a common base (``section``); ``edge`` the whole config and its checks of
a plain dict; ``load`` files, ``EDGEBUS_CONFIG`` and zero-config; ``local_state``
where this machine's edgebus state lives. Import from here: ``edgebus.config``.
"""

from edgebus.config.compliance import ComplianceConfig
from edgebus.config.discovery import DiscoveryConfig
from edgebus.config.edge import MAX_CONFIG_DEPTH, EdgeConfig
from edgebus.config.kafka import KafkaConfig, KafkaSecurityConfig
from edgebus.config.load import ENV_CONFIG, MAX_CONFIG_BYTES, load_config
from edgebus.config.local_state import ENV_STATE_DIR, default_state_dir
from edgebus.config.monitoring import MonitoringConfig
from edgebus.config.query import QueryConfig
from edgebus.config.reads import ReadsConfig
from edgebus.config.replication import ReplicationConfig
from edgebus.config.state import StateConfig
from edgebus.config.strong import StrongConfig

__all__ = [
    "ENV_CONFIG",
    "ENV_STATE_DIR",
    "MAX_CONFIG_BYTES",
    "MAX_CONFIG_DEPTH",
    "ComplianceConfig",
    "DiscoveryConfig",
    "EdgeConfig",
    "KafkaConfig",
    "KafkaSecurityConfig",
    "MonitoringConfig",
    "QueryConfig",
    "ReadsConfig",
    "ReplicationConfig",
    "StateConfig",
    "StrongConfig",
    "default_state_dir",
    "load_config",
]
