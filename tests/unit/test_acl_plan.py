"""The least-privilege ACL plan and the topic layout (pure), without a broker.

Properties over random layouts (regions, clusters, log region, coordinator mode): no
region principal may read another region's events, dead letters or staged payloads;
the writer reads none of them either; nobody may create topics; every topic of the
layout is read and written by the principals that need it, and nothing else is
granted. Plus the rules the plan repeats from layers above it (state logs, group
names) held equal to theirs, and the small I/O helpers' error mapping.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgebus.config import EdgeConfig, KafkaConfig
from edgebus.errors import ComplianceViolation, InfrastructureUnavailable, TopicLayoutMismatch
from edgebus.kafka import acls as acls_module
from edgebus.kafka import topics as topics_module
from edgebus.kafka.acl_plan import (
    ADMIN,
    COORDINATOR,
    WRITER,
    AclBinding,
    AclPlan,
    ClusterPlan,
    acl_plan,
    managed_principals,
    materializer_group,
    participant_group,
    region_principal,
    replicator_group_prefix,
    topic_layout,
)
from edgebus.kafka.acls import AclsUnavailable, KafkaAcl, require_authenticated
from edgebus.kafka.state_layout import TOPIC_CONFIGS, home_region, hosted_classes
from edgebus.kafka.topics import (
    TopicsMissing,
    commit_log_topic,
    coordinator_group,
    dlq_topic,
    events_topic,
    saga_progress_topic,
    service_topic,
    staged_topic,
)
from edgebus.localkafka.credentials import principals_for
from edgebus.localkafka.default_acls import default_bindings

REPO = Path(__file__).resolve().parents[2]
REGION_POOL = ["us-east-1", "eu-west-1", "ap-south-1", "eu-central-1", "us-west-2", "sa_east"]
PRIVATE_KINDS = ("events", "dlq", "staged")


def config_of(
    regions: list[str], log_region: str | None = None, coordinator: str = "auto"
) -> EdgeConfig:
    return EdgeConfig.from_mapping({
        "discovery": {"locations": regions},
        "strong": {"log_region": log_region, "coordinator": coordinator},
    })  # fmt: skip


@st.composite
def layouts(draw: st.DrawFn) -> tuple[EdgeConfig, dict[str, str]]:
    """A config (1-5 regions, any log region and coordinator mode) and a region ->
    cluster map (1 to 3 clusters)."""
    regions = draw(st.lists(st.sampled_from(REGION_POOL), min_size=1, max_size=5, unique=True))
    log_region = draw(st.sampled_from(regions))
    coordinator = draw(st.sampled_from(["auto", "embedded", "service"]))
    count = draw(st.integers(1, 3))
    clusters = {r: f"kafka-{draw(st.integers(0, count - 1))}:9092" for r in regions}
    return config_of(regions, log_region, coordinator), clusters


def private_topics(region: str) -> list[str]:
    """A region's topics no other region's service may read."""
    return [events_topic(region), dlq_topic(region), staged_topic(region)]


def readers(plan: AclPlan, cluster: ClusterPlan, topic: str) -> set[str]:
    return {p for p in plan.principals if cluster.allows(p, "topic", topic, "read")}


def writers(plan: AclPlan, cluster: ClusterPlan, topic: str) -> set[str]:
    return {p for p in plan.principals if cluster.allows(p, "topic", topic, "write")}


# --------------------------------------------------------------------------- properties


@given(layouts())
def test_no_region_principal_may_read_another_regions_events_dlq_or_staged(
    layout: tuple[EdgeConfig, dict[str, str]],
) -> None:
    config, clusters = layout
    plan = acl_plan(config, clusters)
    for cluster in plan.clusters:
        for region in config.regions:
            for other in config.regions:
                if other == region:
                    continue
                for topic in private_topics(other):
                    assert not cluster.allows(region_principal(region), "topic", topic, "read")
                # and no Describe on the private ones but events (end offsets)
                for topic in (dlq_topic(other), staged_topic(other)):
                    assert not cluster.allows(region_principal(region), "topic", topic, "describe")


@given(layouts())
def test_the_writer_reads_no_events_dead_letters_or_staged_payloads(
    layout: tuple[EdgeConfig, dict[str, str]],
) -> None:
    config, clusters = layout
    plan = acl_plan(config, clusters)
    for cluster in plan.clusters:
        for region in config.regions:
            for topic in private_topics(region):
                assert not cluster.allows(WRITER, "topic", topic, "read")
            assert not cluster.allows(WRITER, "topic", dlq_topic(region), "write")


@given(layouts())
def test_nobody_may_create_and_nothing_but_topics_and_groups_is_granted(
    layout: tuple[EdgeConfig, dict[str, str]],
) -> None:
    config, clusters = layout
    plan = acl_plan(config, clusters)
    assert ADMIN not in plan.principals
    for cluster in plan.clusters:
        for b in cluster.bindings():
            assert b.operation in ("read", "write", "describe"), b
            assert b.resource_type in ("topic", "group"), b
            assert b.principal in plan.principals


@given(layouts())
def test_every_topic_of_the_layout_is_read_and_written_by_who_needs_it_and_no_one_else(
    layout: tuple[EdgeConfig, dict[str, str]],
) -> None:
    config, clusters = layout
    plan = acl_plan(config, clusters)
    regions = set(map(region_principal, config.regions))
    for cluster in plan.clusters:
        for spec in cluster.topics:
            own = region_principal(spec.region)
            want_read, want_write = {
                "events": ({own}, regions | {WRITER}),
                "dlq": ({own}, {own}),
                "staged": ({own}, {own, WRITER}),
                "service": ({own, WRITER}, {own}),
                "commit_log": (regions | {COORDINATOR, WRITER}, regions | {COORDINATOR, WRITER}),
                "saga_progress": ({WRITER}, {WRITER}),
                "state_log": (set(), set()),
            }[spec.kind]
            if spec.kind == "state_log":
                data_class = spec.name.rsplit(".", 1)[1]
                hosts = {region_principal(r) for r in config.regions
                         if data_class in hosted_classes(config, r)}  # fmt: skip
                want_read = want_write = hosts | {WRITER}
            assert readers(plan, cluster, spec.name) == want_read, spec
            assert writers(plan, cluster, spec.name) == want_write, spec


@given(layouts())
def test_every_grant_names_a_topic_of_its_cluster_or_a_group_of_its_principal(
    layout: tuple[EdgeConfig, dict[str, str]],
) -> None:
    config, clusters = layout
    plan = acl_plan(config, clusters)
    log_region = config.strong_log_region
    for cluster in plan.clusters:
        names = {s.name for s in cluster.topics}
        for g in cluster.grants:
            if g.resource_type == "topic":
                assert g.pattern == "literal" and g.name in names, g
                continue
            if g.principal in (COORDINATOR, WRITER):
                assert (g.pattern, g.name) == ("literal", coordinator_group(log_region))
                assert cluster.bootstrap == clusters[log_region]
                continue
            region = g.principal.removeprefix("region-")
            assert g.name.startswith(f"edgebus.{region}.")
            assert not g.name.startswith(coordinator_group(log_region))


@given(layouts())
def test_the_layout_puts_each_topic_on_the_cluster_of_its_region(
    layout: tuple[EdgeConfig, dict[str, str]],
) -> None:
    config, clusters = layout
    every = topic_layout(config, clusters)
    assert set(every) == set(clusters.values())
    names = [s.name for specs in every.values() for s in specs]
    assert len(names) == len(set(names))
    for bootstrap, specs in every.items():
        for spec in specs:
            assert clusters[spec.region] == bootstrap
            assert spec.name.startswith(f"edgebus.{spec.region}.")
            assert spec.partitions == (1 if spec.kind == "service" else config.kafka.partitions)
    for region in config.regions:
        for topic in (*private_topics(region), service_topic(region)):
            assert topic in names
    assert commit_log_topic(config.strong_log_region) in names
    assert saga_progress_topic(config.strong_log_region) in names


# --------------------------------------------------------------------------- examples


def test_the_default_plan_of_ap_south_1_on_one_cluster() -> None:
    config = EdgeConfig()
    plan = acl_plan(config, {r: "k:9092" for r in config.regions})
    [cluster] = plan.clusters
    mine = {(g.resource_type, g.pattern, g.name): g.operations
            for g in cluster.grants if g.principal == "region-ap-south-1"}  # fmt: skip
    rw, w, r = ("read", "write", "describe"), ("write", "describe"), ("read", "describe")
    assert mine == {
        ("topic", "literal", "edgebus.ap-south-1.events"): rw,
        ("topic", "literal", "edgebus.ap-south-1.dlq"): rw,
        ("topic", "literal", "edgebus.ap-south-1.service"): rw,
        ("topic", "literal", "edgebus.ap-south-1.staged"): rw,
        ("group", "literal", "edgebus.ap-south-1.materializer"): r,
        ("group", "prefixed", "edgebus.ap-south-1.replicator"): r,
        ("topic", "literal", "edgebus.us-east-1.events"): w,
        ("topic", "literal", "edgebus.eu-west-1.events"): w,
        ("topic", "literal", "edgebus.us-east-1.saga"): rw,
        ("group", "literal", "edgebus.ap-south-1.participant"): r,
        ("topic", "literal", "edgebus.us-east-1.state.public"): rw,
    }
    assert plan.principals == (
        "region-us-east-1",
        "region-eu-west-1",
        "region-ap-south-1",
        COORDINATOR,
        WRITER,
    )
    json.dumps(plan.to_json())  # printable as is


def test_with_a_cluster_per_region_each_cluster_gets_only_its_part() -> None:
    config = EdgeConfig()
    clusters = {"us-east-1": "us:9092", "eu-west-1": "eu:9092", "ap-south-1": "ap:9092"}
    plan = acl_plan(config, clusters)
    eu = plan.cluster("eu:9092")
    assert [s.name for s in eu.topics] == [
        "edgebus.eu-west-1.events", "edgebus.eu-west-1.dlq", "edgebus.eu-west-1.service",
        "edgebus.eu-west-1.staged", "edgebus.eu-west-1.state.pii",
    ]  # fmt: skip
    ap_on_eu = {(g.name, g.operations) for g in eu.grants if g.principal == "region-ap-south-1"}
    assert ap_on_eu == {("edgebus.eu-west-1.events", ("write", "describe"))}
    # the commit log, its groups and saga progress live on the log region's cluster only
    us = plan.cluster("us:9092")
    assert us.allows("region-eu-west-1", "group", participant_group("eu-west-1"), "read")
    assert not eu.allows("region-eu-west-1", "group", participant_group("eu-west-1"), "read")
    assert us.allows(WRITER, "topic", saga_progress_topic("us-east-1"), "write")
    with pytest.raises(KeyError):
        plan.cluster("elsewhere:9092")


def test_the_log_region_gets_neither_the_coordinators_group_nor_saga_progress() -> None:
    config = EdgeConfig()  # us-east-1 is the log region
    [cluster] = acl_plan(config, {r: "k:9092" for r in config.regions}).clusters
    us = region_principal("us-east-1")
    assert not cluster.allows(us, "group", coordinator_group("us-east-1"), "describe")
    assert not cluster.allows(us, "topic", saga_progress_topic("us-east-1"), "describe")
    assert cluster.allows(us, "topic", commit_log_topic("us-east-1"), "read")


def test_a_service_only_coordinator_mode_keeps_the_writer_out_of_the_coordinators_group() -> None:
    regions = ["us-east-1", "eu-west-1"]
    for mode, expected in (("auto", True), ("embedded", True), ("service", False)):
        [cluster] = acl_plan(config_of(regions, coordinator=mode),
                             {r: "k:9092" for r in regions}).clusters  # fmt: skip
        group = coordinator_group("us-east-1")
        assert cluster.allows(WRITER, "group", group, "read") is expected
        assert cluster.allows(COORDINATOR, "group", group, "read")


def test_a_class_no_configured_region_may_hold_has_no_state_log() -> None:
    config = config_of(["ap-south-1"])  # pii needs gdpr, phi hipaa, financial sox
    [cluster] = acl_plan(config, {"ap-south-1": "k:9092"}).clusters
    assert [s.name for s in cluster.topics if s.kind == "state_log"] == [
        "edgebus.ap-south-1.state.public"
    ]
    with pytest.raises(ComplianceViolation):
        home_region(config, "pii")


def test_bindings_allow_describe_through_read_and_write_and_match_prefixes() -> None:
    prefixed = AclBinding("region-x", "group", "prefixed", "edgebus.x.replicator", "read")
    assert prefixed.covers("group", "edgebus.x.replicator.y", "describe")
    assert not prefixed.covers("group", "edgebus.x.materializer", "read")
    assert not prefixed.covers("topic", "edgebus.x.replicator.y", "read")
    literal = AclBinding("writer", "topic", "literal", "edgebus.x.events", "write")
    assert literal.covers("topic", "edgebus.x.events", "describe")
    assert not literal.covers("topic", "edgebus.x.events", "read")
    assert not literal.covers("topic", "edgebus.x.events.more", "write")


def test_state_log_topics_are_made_with_the_state_logs_configs() -> None:
    config = EdgeConfig()
    layout = topic_layout(config, {r: "k:9092" for r in config.regions})["k:9092"]
    for spec in layout:
        if spec.kind == "state_log":
            assert dict(spec.configs) == TOPIC_CONFIGS


@pytest.mark.parametrize(
    ("path", "pattern"),
    [
        ("edgebus/region/materializer.py", r'f"edgebus\.\{self\.region\}\.materializer"'),
        ("edgebus/commit/participant.py", r'f"edgebus\.\{self\.region\}\.participant"'),
        ("edgebus/region/replicator.py",
         r'f"edgebus\.\{self\.origin\}\.replicator\.\{self\.target\}"'),
    ],
)  # fmt: skip
def test_the_group_names_are_those_the_services_join(path: str, pattern: str) -> None:
    """The services name their groups inline; the plan's names must match them."""
    assert re.search(pattern, (REPO / path).read_text()), f"{path} renamed its group"
    assert materializer_group("r") == "edgebus.r.materializer"
    assert participant_group("r") == "edgebus.r.participant"
    assert "edgebus.r.replicator.t".startswith(replicator_group_prefix("r"))


def test_the_local_kafka_makes_a_scram_user_per_principal_of_the_plan() -> None:
    assert principals_for(["eu-west-1", "ap-south-1"]) == (
        ADMIN,
        *managed_principals(["eu-west-1", "ap-south-1"]),
    )
    assert managed_principals(["eu-west-1"]) == ("region-eu-west-1", COORDINATOR, WRITER)


def test_the_permissive_defaults_let_each_principal_create_edgebus_topics() -> None:
    bindings = default_bindings(["writer"])
    assert len(bindings) == 10
    assert AclBinding("writer", "topic", "prefixed", "edgebus.", "create") in bindings
    assert all(b.principal == "writer" for b in bindings)


# --------------------------------------------------------------------------- I/O helpers


def test_an_acl_has_kafkas_codes() -> None:
    binding = AclBinding("writer", "topic", "prefixed", "edgebus.", "read")
    assert KafkaAcl.allowing(binding) == KafkaAcl(2, "edgebus.", 4, "User:writer", "*", 3, 3)
    group = AclBinding("region-x", "group", "literal", "g", "describe")
    assert KafkaAcl.allowing(group) == KafkaAcl(3, "g", 3, "User:region-x", "*", 8, 3)


def test_acls_need_an_authenticated_cluster() -> None:
    with pytest.raises(AclsUnavailable, match="PLAINTEXT") as refused:
        require_authenticated(KafkaConfig(), "kafka.example:9092")
    assert "edgebus kafka up --secure" in str(refused.value)
    assert refused.value.exit_code == 2
    secured = EdgeConfig.from_mapping({"kafka": {"security": {
        "protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "username": "admin",
        "password_env": "NOT_READ_HERE",
    }}}).kafka  # fmt: skip
    require_authenticated(secured, "kafka.example:9092")


@pytest.mark.parametrize(
    ("code", "error", "says"),
    [
        (54, AclsUnavailable, "runs no authorizer"),
        (31, AclsUnavailable, "connect as a super user"),
        (87, InfrastructureUnavailable, "Kafka refused an ACL change"),
    ],
)
def test_kafkas_acl_errors_become_edgebus_errors(code: int, error: type, says: str) -> None:
    acls_module._check(0, None, "k:9092")
    with pytest.raises(error, match=says):
        acls_module._check(code, "no", "k:9092")


def test_a_topic_creation_refused_for_lack_of_an_acl_says_to_run_init() -> None:
    answer: list[Any] = [
        ("edgebus.x.events", 0, None), ("edgebus.x.dlq", 36, "exists"),
        ("edgebus.x.staged", 29, "denied"), ("edgebus.x.service", 29, "denied"),
    ]  # fmt: skip
    with pytest.raises(TopicsMissing, match="edgebus kafka init") as refused:
        topics_module._check_created(answer, "k:9092")
    assert refused.value.topics == ("edgebus.x.service", "edgebus.x.staged")
    assert isinstance(refused.value, TopicLayoutMismatch)
    with pytest.raises(TopicLayoutMismatch, match="error 37") as other:
        topics_module._check_created([("edgebus.x.events", 37, "bad")], "k:9092")
    assert not isinstance(other.value, TopicsMissing)
