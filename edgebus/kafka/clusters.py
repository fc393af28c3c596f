"""Which Kafka cluster serves each region.

Resolution, first match wins: ``kafka.clusters[region]`` in the edge_config, then
``kafka.bootstrap``, then ``EDGEBUS_BOOTSTRAP``, then the clusters that
``edgebus kafka up`` recorded, then ``127.0.0.1:9092``.
"""

from __future__ import annotations

import os

from edgebus.config import EdgeConfig

__all__ = ["ENV_BOOTSTRAP", "FALLBACK_BOOTSTRAP", "resolve_clusters"]

ENV_BOOTSTRAP = "EDGEBUS_BOOTSTRAP"
FALLBACK_BOOTSTRAP = "127.0.0.1:9092"


def resolve_clusters(config: EdgeConfig) -> dict[str, str]:
    """A bootstrap address for every configured region."""
    from edgebus.kafka.launcher import recorded_regions

    shared = config.kafka.bootstrap or os.environ.get(ENV_BOOTSTRAP) or None
    recorded = None if shared else recorded_regions()
    out: dict[str, str] = {}
    for region in config.regions:
        if region in config.kafka.clusters:
            out[region] = config.kafka.clusters[region]
        elif shared:
            out[region] = shared
        elif recorded:
            # a region the launcher did not map shares the first recorded cluster
            out[region] = recorded.get(region) or next(iter(recorded.values()))
        else:
            out[region] = FALLBACK_BOOTSTRAP
    return out
