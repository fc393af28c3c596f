"""A local Apache Kafka (KRaft mode, jars from Maven Central, no Docker) for edgebus.

``edgebus kafka up | status | down | fetch`` drive :mod:`edgebus.kafka.launcher`;
other code finds the brokers it runs with :func:`recorded_regions`.
"""

from __future__ import annotations

from edgebus.kafka.launcher import (
    DEFAULT_KAFKA_VERSION,
    DEFAULT_REGIONS,
    FetchResult,
    StatusReport,
    UpResult,
    down,
    fetch,
    recorded_regions,
    status,
    up,
)

__all__ = [
    "DEFAULT_KAFKA_VERSION",
    "DEFAULT_REGIONS",
    "FetchResult",
    "StatusReport",
    "UpResult",
    "down",
    "fetch",
    "recorded_regions",
    "status",
    "up",
]
