"""A local Apache Kafka (KRaft mode, jars from Maven Central, no Docker) for edgebus.

Development tooling: ``edgebus kafka up | status | down | fetch`` drive
:mod:`edgebus.localkafka.launcher`. The library and the services never import this
package; they find the brokers it runs through the state file it writes
(:func:`edgebus.kafka.clusters.recorded_regions`), and, for ``edgebus kafka up
--secure`` (SASL_SSL, SCRAM users, the StandardAuthorizer), how to reach them
(:func:`edgebus.kafka.clusters.recorded_security`).
"""

from __future__ import annotations

from edgebus.localkafka.launcher import (
    DEFAULT_KAFKA_VERSION,
    DEFAULT_REGIONS,
    FetchResult,
    StatusReport,
    UpResult,
    down,
    fetch,
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
    "status",
    "up",
]
