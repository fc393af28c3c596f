"""Topic names and creation: every regional events topic has the same partition count.

The same partition count in every region means one key maps to the same partition
number everywhere (Kafka's murmur2 partitioner depends only on key and count), which
per-(origin, partition) ordering and vector clocks rely on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any

from aiokafka.admin import NewTopic
from aiokafka.errors import KafkaError

from edgebus.config import KafkaConfig
from edgebus.errors import InfrastructureUnavailable, TopicLayoutMismatch
from edgebus.kafka.clients import Admin, admin_client

__all__ = [
    "TopicsMissing",
    "commit_log_topic",
    "coordinator_group",
    "dlq_topic",
    "ensure_topics",
    "events_topic",
    "saga_progress_topic",
    "service_topic",
    "staged_topic",
    "state_log_topic",
]


def commit_log_topic(log_region: str) -> str:
    """The commit log: two-phase-commit records of strong writes (begin, vote, decision,
    ack), keyed by the written key; it lives on ``log_region``'s cluster
    (``strong.log_region``, default the first region)."""
    return f"edgebus.{log_region}.saga"


def saga_progress_topic(log_region: str) -> str:
    """Progress records of multi-step sagas, keyed by saga id (``log_region``'s
    cluster)."""
    return f"edgebus.{log_region}.sagas"


def state_log_topic(home_region: str, data_class: str) -> str:
    """The log of the state machines of data class ``data_class`` (ownership records,
    requests and operations, keyed by state id), on ``home_region``'s cluster."""
    return f"edgebus.{home_region}.state.{data_class}"


def coordinator_group(log_region: str) -> str:
    """The consumer group of the commit coordinators of the commit log of ``log_region``."""
    return f"edgebus.{log_region}.coordinator"


_TOPIC_ALREADY_EXISTS = 36


def events_topic(region: str) -> str:
    """The topic that holds every event placed in ``region``."""
    return f"edgebus.{region}.events"


def staged_topic(region: str) -> str:
    """Region ``region``'s staged strong-write payloads (keyed by transaction id): the
    data of a strong write waits here, in each participant's own cluster, while the
    global commit log carries only its control records."""
    return f"edgebus.{region}.staged"


def dlq_topic(region: str) -> str:
    """The dead-letter topic of ``region``."""
    return f"edgebus.{region}.dlq"


def service_topic(region: str) -> str:
    """The compacted topic where ``region``'s service announces its query endpoint."""
    return f"edgebus.{region}.service"


class TopicsMissing(TopicLayoutMismatch):
    """Topics edgebus needs are not on a cluster (or hidden from this client's
    principal), and this principal may not create them: topic creation is an admin
    step (``edgebus kafka init``). ``topics``: the topics; ``bootstrap``: the cluster."""

    def __init__(self, detail: str, topics: Sequence[str], bootstrap: str) -> None:
        self.topics = tuple(topics)
        self.bootstrap = bootstrap
        super().__init__(detail)


#: CreateTopics / Metadata error codes of a principal without the ACL
_NOT_AUTHORIZED = frozenset({29, 31})  # TOPIC_ / CLUSTER_AUTHORIZATION_FAILED


async def ensure_topics(
    kafka: KafkaConfig,
    bootstrap: str,
    topics: Iterable[str],
    partitions: int | None = None,
    *,
    compacted: bool = False,
    configs: dict[str, str] | None = None,
) -> list[str]:
    """Create the missing ones of ``topics`` on the cluster at ``bootstrap``; refuse
    existing ones whose partition count differs. Returns the topics created now.

    ``partitions`` defaults to ``kafka.partitions`` (every regional topic has that
    many); topics get ``kafka.topic_replication_factor`` replicas. ``compacted``
    creates them with ``cleanup.policy=compact`` (keep the last record per key);
    ``configs`` adds topic configs (e.g. ``message.timestamp.type``).

    Existing topics need no Create right: the cluster's topic list is read first (a
    Metadata request for all topics, which never creates one, whereas naming them
    would on a broker with ``auto.create.topics.enable``), and only topics absent from
    it are created. When the cluster refuses that for lack of an ACL (a service's or
    writer's principal on a cluster where an admin has not run ``edgebus kafka init``
    yet), :class:`TopicsMissing` names them and says what to run."""
    count = kafka.partitions if partitions is None else partitions
    topic_configs = {**({"cleanup.policy": "compact"} if compacted else {}), **(configs or {})}
    wanted = sorted(set(topics))
    async with admin_client(kafka, bootstrap) as admin:
        try:
            existing = set(await admin.list_topics())
            missing = [t for t in wanted if t not in existing]
            if missing:
                response = await admin.create_topics(
                    [
                        NewTopic(
                            t,
                            count,
                            kafka.topic_replication_factor,
                            topic_configs=topic_configs or None,
                        )
                        for t in missing
                    ]
                )
                _check_created(response.topic_errors, bootstrap)
            await _check_partitions(admin, bootstrap, wanted, count)
        except KafkaError as e:
            raise InfrastructureUnavailable(f"Kafka admin request failed: {e}", [bootstrap]) from e
    return missing


def _check_created(topic_errors: Iterable[Any], bootstrap: str) -> None:
    """Raise for a topic Kafka did not create (one that exists meanwhile is fine)."""
    refused: list[str] = []
    for topic, code, *rest in topic_errors:
        if code in _NOT_AUTHORIZED:
            refused.append(topic)
        elif code not in (0, _TOPIC_ALREADY_EXISTS):
            message = rest[0] if rest else ""
            raise TopicLayoutMismatch(
                f"Kafka refused to create topic {topic} (error {code}: {message})"
            )
    if refused:
        raise TopicsMissing(
            f"Topics {', '.join(sorted(refused))} are missing on the Kafka cluster at "
            f"{bootstrap} (or hidden from this client's principal), and Kafka refused to "
            "create them (not authorized): creating topics is an admin step. Run `edgebus "
            "kafka init` as an admin (then `edgebus kafka acls --apply` to grant each "
            "principal its topics), and start this again.",
            sorted(refused),
            bootstrap,
        )


async def _check_partitions(
    admin: Admin, bootstrap: str, topics: list[str], partitions: int
) -> None:
    for attempt in range(50):
        described = await admin.describe_topics(topics)
        pending = False
        hidden = sorted(e["topic"] for e in described if e.get("error_code") in _NOT_AUTHORIZED)
        if hidden:
            raise TopicsMissing(
                f"This client's principal may not see topics {', '.join(hidden)} on the "
                f"Kafka cluster at {bootstrap} (not authorized to Describe them): run "
                "`edgebus kafka acls --apply` as an admin to grant each principal its "
                "topics, or connect as the principal of this role.",
                hidden,
                bootstrap,
            )
        for entry in described:
            described_partitions = entry.get("partitions") or []
            count = len(described_partitions)
            leaderless = any(p.get("leader", -1) < 0 for p in described_partitions)
            if entry.get("error_code", 0) != 0 or count == 0 or leaderless:
                # a just-created topic: metadata still propagating, leaders not elected
                pending = True
            elif count != partitions:
                raise TopicLayoutMismatch(
                    f"Topic {entry['topic']} on {bootstrap} has {count} partitions, but "
                    f"edgebus is configured for {partitions} (kafka.partitions). Every "
                    "regional topic must have the same count: set kafka.partitions to "
                    f"{count}, or recreate the topic."
                )
        if not pending:
            return
        await asyncio.sleep(0.05 * min(attempt + 1, 10))
    raise InfrastructureUnavailable(f"topics {', '.join(topics)} did not appear", [bootstrap])
