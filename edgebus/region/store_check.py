"""Before a region's materializer trusts its store: was it built from this Kafka?

A store's positions mean something only on the topic they were read from. On start
and on every partition assignment the materializer compares the store's recorded
:class:`~edgebus.core.lineage.StoreLineage` and positions with what the broker says
now (:func:`check_store`). On a mismatch (another cluster, a recreated topic, another
partition count, a position past the topic's end) the default is Kafka Streams' answer
to a corrupted store: wipe it and rebuild it from the topic, which is the log
(``rebuild``); ``refuse`` stops the service with :class:`~edgebus.errors.StoreMismatch`
instead, saying what differs and what to do.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal, get_args

from connectors.base import Store
from edgebus.config import KafkaConfig
from edgebus.core.lineage import StoreLineage, lineage_mismatch
from edgebus.errors import InfrastructureUnavailable, StoreMismatch
from edgebus.kafka.identity import topic_identities
from edgebus.kafka.reading import end_offsets

__all__ = ["ON_STORE_MISMATCH", "OnStoreMismatch", "StoreCheck", "check_store", "settle"]

log = logging.getLogger("edgebus.region")

OnStoreMismatch = Literal["rebuild", "refuse"]
#: what a service may do with a store built from another Kafka
ON_STORE_MISMATCH: tuple[OnStoreMismatch, ...] = get_args(OnStoreMismatch)


@dataclass(frozen=True)
class StoreCheck:
    """The store against the broker: what was recorded, what is, and what differs."""

    actual: StoreLineage
    recorded: StoreLineage | None
    #: why the store cannot be used as it is (empty: it can)
    reasons: tuple[str, ...]
    #: the topic's end offsets per partition when checked
    ends: dict[int, int]
    #: the store's positions of the topic when checked
    positions: dict[int, int]


async def check_store(
    store: Store, kafka: KafkaConfig, bootstrap: str, topic: str
) -> StoreCheck:
    """Compare ``store`` with ``topic`` on the cluster at ``bootstrap`` now."""
    identities = await topic_identities(kafka, bootstrap, [topic])
    identity = identities.get(topic)
    if identity is None:
        raise InfrastructureUnavailable(
            f"topic {topic} does not exist on the cluster at {bootstrap} (deleted while "
            "the service started?): start the service again to create it", [bootstrap]
        )
    # positions first: they only grow, and never past the end, so the ends read after
    # them cover them (read the other way round, a batch committed in between would
    # look like a position past the end)
    positions = {p: o for (t, p), o in (await store.positions()).items() if t == topic}
    ends = {tp.partition: o for tp, o in (await end_offsets(kafka, bootstrap, [topic])).items()}
    text = await store.lineage()
    recorded = StoreLineage.from_json(text) if text else None
    actual = StoreLineage(
        bootstrap, identity.cluster_id, topic, identity.topic_id, identity.partitions
    )
    reasons = lineage_mismatch(recorded, actual, positions, ends)
    return StoreCheck(actual, recorded, tuple(reasons), ends, positions)


async def settle(
    store: Store, check: StoreCheck, policy: OnStoreMismatch, region: str
) -> bool:
    """Act on ``check``: record the lineage of a new (or pre-lineage) store, or, on a
    mismatch, wipe the store for a rebuild (``rebuild``: True is returned) or raise
    StoreMismatch (``refuse``)."""
    if not check.reasons:
        if check.recorded != check.actual:
            await store.set_lineage(check.actual.to_json())
        return False
    what = "; ".join(check.reasons)
    if policy == "refuse":
        raise StoreMismatch(
            f"{region}'s store {store.url} was not built from the Kafka it reads now: "
            f"{what}. Its data and positions would be served as if current while new "
            "writes stay invisible. Rebuild it from the topic: start the service without "
            "--on-store-mismatch refuse (or with --on-store-mismatch rebuild), or move "
            "the store file away; or point EDGEBUS_BOOTSTRAP / kafka.clusters back at "
            "the cluster it was built from."
        )
    log.warning(
        "%s: store %s was not built from the Kafka it reads now (%s): wiping it and "
        "rebuilding it from %s (%d events)", region, store.url, what, check.actual.topic,
        sum(check.ends.values()),
    )
    await store.reset(check.actual.to_json())
    return True
