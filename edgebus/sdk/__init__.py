"""The producer SDK: :class:`EdgeBus` (asynchronous) and :class:`EdgeBusSync` (blocking).

Writes, reads at every consistency level, strong commits and state-machine calls, with
health-aware placement (:mod:`edgebus.sdk.discovery`) and per-call metrics
(:mod:`edgebus.sdk.metrics`). It talks to Kafka directly and to region services over
their query endpoints (:mod:`edgebus.sdk.region_client`).
"""

from edgebus.sdk.bus import EdgeBus
from edgebus.sdk.results import CommitResult, PreparedWrite, ReadResult, WriteReceipt
from edgebus.sdk.sync import EdgeBusSync

__all__ = [
    "CommitResult",
    "EdgeBus",
    "EdgeBusSync",
    "PreparedWrite",
    "ReadResult",
    "WriteReceipt",
]
