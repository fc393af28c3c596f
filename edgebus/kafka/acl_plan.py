"""Who may do what on which cluster: the least-privilege ACL plan and the topic layout.

Pure (no I/O): from an :class:`~edgebus.config.EdgeConfig` and the region -> cluster
map (:func:`~edgebus.kafka.clusters.resolve_clusters`) it computes

* :func:`topic_layout`: every topic edgebus uses, on the cluster that holds it, with
  its partition count and topic configs (what ``edgebus kafka init`` creates);
* :func:`acl_plan`: every ACL of every principal on every cluster (what ``edgebus
  kafka acls --apply`` installs), as :class:`Grant` rows that say why.

One principal per role (DESIGN.md, "Trust boundaries"); the names are the SCRAM users
``edgebus kafka up --secure`` makes (:mod:`edgebus.localkafka.credentials` takes them
from here):

``region-<R>``
    R's region service: Read, Write and Describe on its own topics on R's cluster
    (events, dead letters, service announcements, staged strong-write payloads) and
    its consumer groups (materializer and push replicators on R's cluster, commit
    participant on the commit log's cluster); Write and Describe, never Read, on the
    other regions' events topics (replication pushes R's events into them, and their
    end offsets check the origin positions of the copies R receives); the commit log;
    the state logs of the classes R may host. Nothing else: no Read on another region's
    events, dead letters or staged payloads.
``coordinator``
    the commit coordinators: the commit log and their group.
``writer``
    the SDK: Write on every region's events and staged topics, never Read; Read on the
    service announcements; the commit log (BEGIN, decisions), saga progress and state
    logs (requests and answers); the coordinators' group unless ``strong.coordinator``
    is ``service`` (an SDK then runs no coordinator).
``admin``
    a super user (``super.users``): no ACL of its own. Creates topics (``edgebus kafka
    init``), applies ACLs, and runs the operator tools (tail, dlq, replay, saga,
    bench).

Nobody but admin may create topics, and no principal gets any cluster or
transactional-id ACL. Since Kafka 3.0 an idempotent producer needs Write on a topic,
not IdempotentWrite on the cluster (KIP-679).

Every grant names its topic in full (a literal ACL), not the prefix ``edgebus.R.``:
on the strong log region L that prefix would also cover the coordinators' group
``edgebus.L.coordinator`` and the saga progress topic ``edgebus.L.sagas`` (saga inputs
and step results, of every region), which L's service has no business with. The only
prefixed grant is a region's replicator groups, ``edgebus.R.replicator`` (one group per
target). Region names hold only letters, digits, ``-`` and ``_`` (the config refuses
others), so no name of one region's resources starts with another region's.

The state-log layout (which classes exist, where each one's log lives, who hosts it)
is :mod:`edgebus.kafka.state_layout`'s, the rules the state host follows too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from edgebus.config import EdgeConfig
from edgebus.kafka.state_layout import (
    TOPIC_CONFIGS,
    allowed_regions,
    home_region,
    hosted_classes,
    state_classes,
)
from edgebus.kafka.topics import (
    commit_log_topic,
    coordinator_group,
    dlq_topic,
    events_topic,
    saga_progress_topic,
    service_topic,
    staged_topic,
    state_log_topic,
)

__all__ = [
    "ADMIN",
    "COORDINATOR",
    "WRITER",
    "AclBinding",
    "AclPlan",
    "ClusterPlan",
    "Grant",
    "Operation",
    "PatternType",
    "ResourceType",
    "TopicKind",
    "TopicSpec",
    "acl_plan",
    "cluster_order",
    "managed_principals",
    "materializer_group",
    "participant_group",
    "region_principal",
    "replicator_group_prefix",
    "topic_layout",
]

#: the super user: creates topics, applies ACLs, runs the operator tools
ADMIN = "admin"
#: the commit coordinators' principal
COORDINATOR = "coordinator"
#: the SDK writers' principal
WRITER = "writer"

ResourceType = Literal["topic", "group", "cluster", "transactional_id"]
PatternType = Literal["literal", "prefixed"]
Operation = Literal["read", "write", "create", "describe", "idempotent_write"]
TopicKind = Literal[
    "events", "dlq", "service", "staged", "commit_log", "saga_progress", "state_log"
]

_COMPACTED: Mapping[str, str] = {"cleanup.policy": "compact"}

_RW: tuple[Operation, ...] = ("read", "write", "describe")
_W: tuple[Operation, ...] = ("write", "describe")
_R: tuple[Operation, ...] = ("read", "describe")


def region_principal(region: str) -> str:
    """The principal of the region service of ``region``: ``region-<region>``."""
    return f"region-{region}"


def managed_principals(regions: Iterable[str]) -> tuple[str, ...]:
    """The principals whose ACLs the plan decides (every one but admin): a region
    service per region, then the coordinators and the writers."""
    return (*(region_principal(r) for r in regions), COORDINATOR, WRITER)


# --------------------------------------------------------------------------- value types


class AclBinding(NamedTuple):
    """One Kafka ACL: ``User:<principal>`` is allowed ``operation`` on the resource,
    from any host."""

    principal: str
    resource_type: ResourceType
    pattern: PatternType
    name: str
    operation: Operation

    def covers(self, resource_type: ResourceType, name: str, operation: Operation) -> bool:
        """True when this binding allows ``operation`` on the resource ``name`` (Kafka's
        rule: Read and Write imply Describe)."""
        if self.resource_type != resource_type:
            return False
        if self.pattern == "literal" and self.name != name:
            return False
        if self.pattern == "prefixed" and not name.startswith(self.name):
            return False
        return self.operation == operation or (
            operation == "describe" and self.operation in ("read", "write")
        )


class Grant(NamedTuple):
    """A row of the plan: what one principal may do to one resource, and why."""

    principal: str
    resource_type: ResourceType
    pattern: PatternType
    name: str
    operations: tuple[Operation, ...]
    why: str

    def bindings(self) -> tuple[AclBinding, ...]:
        """One ACL per operation."""
        return tuple(
            AclBinding(self.principal, self.resource_type, self.pattern, self.name, op)
            for op in self.operations
        )

    def to_json(self) -> dict[str, Any]:
        """As printed by ``edgebus kafka acls --json``."""
        return {
            "principal": self.principal, "resource_type": self.resource_type,
            "pattern": self.pattern, "name": self.name,
            "operations": list(self.operations), "why": self.why,
        }  # fmt: skip


class TopicSpec(NamedTuple):
    """A topic of the layout: its name, what it is, the region in its name, its
    partition count and its topic configs (sorted pairs)."""

    name: str
    kind: TopicKind
    region: str
    partitions: int
    configs: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> dict[str, Any]:
        """As printed by ``edgebus kafka init --json``."""
        return {
            "name": self.name,
            "kind": self.kind,
            "partitions": self.partitions,
            "configs": dict(self.configs),
        }


@dataclass(frozen=True)
class ClusterPlan:
    """One cluster's part of the plan: the regions it serves, its topics, its grants."""

    bootstrap: str
    regions: tuple[str, ...]
    topics: tuple[TopicSpec, ...]
    grants: tuple[Grant, ...]

    def bindings(self) -> frozenset[AclBinding]:
        """Every ACL of this cluster."""
        return frozenset(b for g in self.grants for b in g.bindings())

    def allows(
        self, principal: str, resource_type: ResourceType, name: str, operation: Operation
    ) -> bool:
        """True when the plan lets ``principal`` do ``operation`` on the resource."""
        return any(
            b.principal == principal and b.covers(resource_type, name, operation)
            for b in self.bindings()
        )


@dataclass(frozen=True)
class AclPlan:
    """The whole plan: the principals it manages and each cluster's part."""

    principals: tuple[str, ...]
    clusters: tuple[ClusterPlan, ...]

    def cluster(self, bootstrap: str) -> ClusterPlan:
        """The part of the cluster at ``bootstrap`` (KeyError if it has none)."""
        for plan in self.clusters:
            if plan.bootstrap == bootstrap:
                return plan
        raise KeyError(bootstrap)

    def to_json(self) -> dict[str, Any]:
        """As printed by ``edgebus kafka acls --json``."""
        return {
            "principals": list(self.principals),
            "super_user": ADMIN,
            "clusters": [
                {"bootstrap": c.bootstrap, "regions": list(c.regions),
                 "grants": [g.to_json() for g in c.grants],
                 "acls": len(c.bindings())}
                for c in self.clusters
            ],
        }  # fmt: skip


# --------------------------------------------------------------------------- state logs


def _state_logs(config: EdgeConfig) -> list[tuple[str, str, str]]:
    """``(data class, home region, topic)`` of every state log that can exist."""
    out = []
    for data_class in state_classes(config):
        if allowed_regions(config, data_class):  # else no state of it can exist
            home = home_region(config, data_class)
            out.append((data_class, home, state_log_topic(home, data_class)))
    return out


# --------------------------------------------------------------------------- the layout


def cluster_order(clusters: Mapping[str, str]) -> tuple[str, ...]:
    """The distinct bootstrap addresses of ``clusters``, in the order of their first
    region."""
    return tuple(dict.fromkeys(clusters.values()))


def topic_layout(
    config: EdgeConfig, clusters: Mapping[str, str]
) -> dict[str, tuple[TopicSpec, ...]]:
    """bootstrap -> every topic edgebus uses on that cluster: per region R on R's
    cluster ``edgebus.R.events``, ``.dlq``, ``.staged`` (``kafka.partitions`` each)
    and ``.service`` (1 partition, compacted); on the strong log region L's cluster the
    commit log ``edgebus.L.saga`` and saga progress ``edgebus.L.sagas``; each state
    log on its home region's cluster. Benchmarks' own topics are not part of it."""
    count = config.kafka.partitions
    log_region = config.strong_log_region
    out: dict[str, list[TopicSpec]] = {b: [] for b in cluster_order(clusters)}
    for r in config.regions:
        out[clusters[r]] += [
            TopicSpec(events_topic(r), "events", r, count),
            TopicSpec(dlq_topic(r), "dlq", r, count),
            TopicSpec(service_topic(r), "service", r, 1, tuple(sorted(_COMPACTED.items()))),
            TopicSpec(staged_topic(r), "staged", r, count),
        ]
    out[clusters[log_region]] += [
        TopicSpec(commit_log_topic(log_region), "commit_log", log_region, count),
        TopicSpec(saga_progress_topic(log_region), "saga_progress", log_region, count),
    ]
    configs = tuple(sorted(TOPIC_CONFIGS.items()))
    for _, home, topic in _state_logs(config):
        out[clusters[home]].append(TopicSpec(topic, "state_log", home, count, configs))
    return {b: tuple(specs) for b, specs in out.items()}


# --------------------------------------------------------------------------- the plan


def materializer_group(region: str) -> str:
    """The consumer group of ``region``'s materializer (on its own cluster)."""
    return f"edgebus.{region}.materializer"


def participant_group(region: str) -> str:
    """The consumer group of ``region``'s commit participant (on the commit log's
    cluster)."""
    return f"edgebus.{region}.participant"


def replicator_group_prefix(region: str) -> str:
    """The prefix of the consumer groups of ``region``'s replicators: one per target
    region, ``edgebus.<region>.replicator.<target>``, on ``region``'s own cluster."""
    return f"edgebus.{region}.replicator"


_Key = tuple[str, str, ResourceType, PatternType, str]


class _Grants:
    """Grants being gathered: one row per (cluster, principal, resource), operations
    and reasons merged, in the order they were first added."""

    def __init__(self) -> None:
        self._rows: dict[_Key, tuple[list[Operation], list[str]]] = {}

    def add(
        self,
        bootstrap: str,
        principal: str,
        resource_type: ResourceType,
        pattern: PatternType,
        name: str,
        operations: tuple[Operation, ...],
        why: str,
    ) -> None:
        ops, whys = self._rows.setdefault(
            (bootstrap, principal, resource_type, pattern, name), ([], [])
        )
        ops += [o for o in operations if o not in ops]
        if why not in whys:
            whys.append(why)

    def of(self, bootstrap: str) -> tuple[Grant, ...]:
        """The grants on ``bootstrap``."""
        return tuple(
            Grant(p, t, pat, name, tuple(ops), "; ".join(whys))
            for (b, p, t, pat, name), (ops, whys) in self._rows.items() if b == bootstrap
        )  # fmt: skip


def acl_plan(config: EdgeConfig, clusters: Mapping[str, str]) -> AclPlan:
    """Every ACL of every principal on every cluster (``clusters``: region ->
    bootstrap, one entry per configured region)."""
    grants = _Grants()
    for region in config.regions:
        _region_grants(grants, config, clusters, region)
    _coordinator_grants(grants, config, clusters)
    _writer_grants(grants, config, clusters)
    layout = topic_layout(config, clusters)
    return AclPlan(
        managed_principals(config.regions),
        tuple(
            ClusterPlan(
                b, tuple(r for r in config.regions if clusters[r] == b), layout[b], grants.of(b)
            )
            for b in cluster_order(clusters)
        ),
    )


def _region_grants(
    g: _Grants, config: EdgeConfig, clusters: Mapping[str, str], region: str
) -> None:
    """What ``region``'s service reads and writes."""
    p = region_principal(region)
    own = clusters[region]
    log_region = config.strong_log_region
    log_cluster = clusters[log_region]

    def topic(bootstrap: str, name: str, ops: tuple[Operation, ...], why: str) -> None:
        g.add(bootstrap, p, "topic", "literal", name, ops, why)

    def group(bootstrap: str, pattern: PatternType, name: str, why: str) -> None:
        g.add(bootstrap, p, "group", pattern, name, _R, why)

    topic(
        own,
        events_topic(region),
        _RW,
        "materializer, heartbeats, strong commits' events; the source of its push replication",
    )
    topic(own, dlq_topic(region), _RW, "its dead letters (refused copies included)")
    topic(own, service_topic(region), _RW, "announces its query endpoint")
    topic(own, staged_topic(region), _RW, "commit participant: strong-write payloads staged for it")
    group(own, "literal", materializer_group(region), "materializer")
    group(
        own,
        "prefixed",
        replicator_group_prefix(region),
        "push replicators, one group per target region",
    )
    for other in config.regions:
        if other != region:
            topic(
                clusters[other],
                events_topic(other),
                _W,
                "push replication: copies of its events placed there; end offsets "
                "(ListOffsets) check the origin positions of the copies it receives",
            )
    topic(
        log_cluster,
        commit_log_topic(log_region),
        _RW,
        "commit participant: reads BEGIN records and decisions, appends votes and acks",
    )
    group(log_cluster, "literal", participant_group(region), "commit participant")
    for data_class in hosted_classes(config, region):
        home = home_region(config, data_class)
        assert home is not None  # region may host the class, so some region may
        topic(
            clusters[home],
            state_log_topic(home, data_class),
            _RW,
            f"state host: states of class {data_class}",
        )


def _coordinator_grants(g: _Grants, config: EdgeConfig, clusters: Mapping[str, str]) -> None:
    """What the commit coordinators read and write."""
    log_region = config.strong_log_region
    log_cluster = clusters[log_region]
    g.add(
        log_cluster,
        COORDINATOR,
        "topic",
        "literal",
        commit_log_topic(log_region),
        _RW,
        "reads BEGIN records and votes, appends decisions",
    )
    g.add(
        log_cluster,
        COORDINATOR,
        "group",
        "literal",
        coordinator_group(log_region),
        _R,
        "the coordinators' group",
    )


def _writer_grants(g: _Grants, config: EdgeConfig, clusters: Mapping[str, str]) -> None:
    """What the SDK reads and writes."""
    log_region = config.strong_log_region
    log_cluster = clusters[log_region]

    def topic(bootstrap: str, name: str, ops: tuple[Operation, ...], why: str) -> None:
        g.add(bootstrap, WRITER, "topic", "literal", name, ops, why)

    for region in config.regions:
        b = clusters[region]
        topic(b, events_topic(region), _W, "writes events; end offsets check session tokens")
        topic(b, staged_topic(region), _W, "stages strong-write payloads for the participant")
        topic(b, service_topic(region), _R, "finds the region's query endpoint")
    topic(log_cluster, commit_log_topic(log_region), _RW, "appends BEGIN records, reads decisions")
    topic(
        log_cluster,
        saga_progress_topic(log_region),
        _RW,
        "saga runner: appends and reads saga progress",
    )
    if config.strong.coordinator != "service":
        g.add(
            log_cluster,
            WRITER,
            "group",
            "literal",
            coordinator_group(log_region),
            _R,
            f"strong.coordinator = {config.strong.coordinator}: a coordinator in the SDK",
        )
    for data_class, home, name in _state_logs(config):
        topic(clusters[home], name, _RW, f"state calls: requests and answers (class {data_class})")
