"""The admin steps of a deployment: create the topic layout, apply the ACL plan.

``edgebus kafka init`` and ``edgebus kafka acls --apply`` run these as an admin (a
super user, or a principal allowed to create topics and alter ACLs), once per
deployment and again after the layout changes (a region, a data class added). Both are
idempotent: run again, they find everything in place and change nothing.

Services and writers never need these rights: :func:`~edgebus.kafka.topics.ensure_topics`
creates nothing that exists.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from edgebus.config import KafkaConfig
from edgebus.kafka.acl_plan import AclPlan, TopicSpec
from edgebus.kafka.acls import apply_acls, require_authenticated
from edgebus.kafka.topics import ensure_topics

__all__ = ["ClusterAcls", "ClusterTopics", "apply_plan", "init_topics"]


class ClusterTopics(NamedTuple):
    """What ``init`` found on one cluster: the topics it created and those there before."""

    bootstrap: str
    created: tuple[str, ...]
    existing: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """As printed by ``edgebus kafka init --json``."""
        return {"bootstrap": self.bootstrap, "created": list(self.created),
                "existing": list(self.existing)}  # fmt: skip


class ClusterAcls(NamedTuple):
    """What ``acls --apply`` changed on one cluster, and how many ACLs the plan's
    principals have there now."""

    bootstrap: str
    created: int
    deleted: int
    acls: int

    def to_json(self) -> dict[str, Any]:
        """As printed by ``edgebus kafka acls --apply --json``."""
        return self._asdict()


async def init_topics(
    kafka: KafkaConfig, layout: Mapping[str, Sequence[TopicSpec]]
) -> list[ClusterTopics]:
    """Create every missing topic of ``layout`` (bootstrap -> topics, as
    :func:`~edgebus.kafka.acl_plan.topic_layout` gives it) with its partition count and
    configs; existing topics are checked for their partition count and kept."""

    async def one(bootstrap: str, specs: Sequence[TopicSpec]) -> ClusterTopics:
        groups: dict[tuple[int, tuple[tuple[str, str], ...]], list[str]] = {}
        for spec in specs:
            groups.setdefault((spec.partitions, spec.configs), []).append(spec.name)
        created: list[str] = []
        for (partitions, configs), names in groups.items():
            created += await ensure_topics(
                kafka, bootstrap, names, partitions, configs=dict(configs)
            )
        existing = [s.name for s in specs if s.name not in created]
        return ClusterTopics(bootstrap, tuple(sorted(created)), tuple(sorted(existing)))

    return list(await asyncio.gather(*(one(b, specs) for b, specs in layout.items())))


async def apply_plan(kafka: KafkaConfig, plan: AclPlan) -> list[ClusterAcls]:
    """Make the ACLs of the plan's principals on each of its clusters exactly the
    plan's (other principals' ACLs are kept). Every cluster is checked to take
    authenticated clients before any is changed."""
    for cluster in plan.clusters:
        require_authenticated(kafka, cluster.bootstrap)

    async def one(bootstrap: str) -> ClusterAcls:
        cluster = plan.cluster(bootstrap)
        changes = await apply_acls(kafka, bootstrap, cluster.bindings(), plan.principals)
        return ClusterAcls(bootstrap, len(changes.created), len(changes.deleted), len(changes.now))

    return list(await asyncio.gather(*(one(c.bootstrap) for c in plan.clusters)))
