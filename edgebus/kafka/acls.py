"""Reading and changing a cluster's ACLs through Kafka's admin protocol.

aiokafka's admin client has no ACL calls, but its protocol module defines the
requests (DescribeAcls, CreateAcls, DeleteAcls, v1: the first with pattern types, and
the oldest Kafka 4 still speaks). This module sends them through a metadata client of
:mod:`edgebus.kafka.clients`, like :mod:`edgebus.kafka.identity` sends its Metadata
requests, so ACLs are managed with the cluster's usual client settings (TLS, SASL):
no Java tool, no second way to connect.

:func:`apply_acls` makes the ACLs of a set of principals exactly a wanted set: it
reads what the cluster has, creates what is missing, deletes the rest of those
principals' ACLs (other principals' are never touched), then reads again until the
cluster shows the wanted set. Run twice, the second run changes nothing.

ACLs need a cluster that authenticates its clients and runs an authorizer:
:class:`AclsUnavailable` says so for a cluster reached in PLAINTEXT, or one whose
broker answers that security is disabled.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any, Final, NamedTuple

from aiokafka.errors import KafkaError, for_code
from aiokafka.protocol.admin import (
    CreateAclsRequest_v1,
    DeleteAclsRequest_v1,
    DescribeAclsRequest_v1,
)
from aiokafka.protocol.api import Request

from edgebus.config import KafkaConfig
from edgebus.errors import EdgebusError, InfrastructureUnavailable
from edgebus.kafka.acl_plan import AclBinding, Operation, PatternType, ResourceType
from edgebus.kafka.clients import MetadataClient, start_metadata_client, stop_quietly
from edgebus.kafka.security import settings_for

__all__ = [
    "AclChanges",
    "AclsUnavailable",
    "KafkaAcl",
    "add_acls",
    "apply_acls",
    "describe_acls",
    "require_authenticated",
]

# Kafka's codes (org.apache.kafka.common.resource.ResourceType, PatternType,
# org.apache.kafka.common.acl.AclOperation, AclPermissionType)
_ANY: Final = 1
_RESOURCE: Final[Mapping[ResourceType, int]] = {
    "topic": 2, "group": 3, "cluster": 4, "transactional_id": 5,
}  # fmt: skip
_PATTERN: Final[Mapping[PatternType, int]] = {"literal": 3, "prefixed": 4}
_OPERATION: Final[Mapping[Operation, int]] = {
    "read": 3, "write": 4, "create": 5, "describe": 8, "idempotent_write": 12,
}  # fmt: skip
_ALLOW: Final = 3
_ALL_HOSTS: Final = "*"
_SECURITY_DISABLED: Final = 54
_CLUSTER_AUTHORIZATION_FAILED: Final = 31
#: how long applied ACLs may take to show in the broker's answers
_SETTLE_S: Final = 15.0


class AclsUnavailable(EdgebusError):
    """The cluster has no ACLs to manage: it is reached without authentication
    (PLAINTEXT), or its brokers run no authorizer. The message says what to do."""

    exit_code = 2


class KafkaAcl(NamedTuple):
    """An ACL as Kafka holds it (its codes): resource type, name and pattern type,
    principal (``User:<name>``), host, operation and permission."""

    resource_type: int
    name: str
    pattern: int
    principal: str
    host: str
    operation: int
    permission: int

    @classmethod
    def allowing(cls, binding: AclBinding) -> KafkaAcl:
        """The ACL of ``binding``: allowed from any host."""
        return cls(
            _RESOURCE[binding.resource_type], binding.name, _PATTERN[binding.pattern],
            f"User:{binding.principal}", _ALL_HOSTS, _OPERATION[binding.operation], _ALLOW,
        )  # fmt: skip


class AclChanges(NamedTuple):
    """What :func:`apply_acls` did on one cluster, and the managed ACLs it has now."""

    created: tuple[KafkaAcl, ...]
    deleted: tuple[KafkaAcl, ...]
    now: frozenset[KafkaAcl]


# ------------------------------------------------------------------ wire requests


class _DescribeAll(Request[DescribeAclsRequest_v1]):  # type: ignore[misc]  # aiokafka is untyped
    """Every ACL of the cluster (all filters ANY)."""

    API_KEY = 29

    def build(self, request_struct_class: type[Any]) -> Any:
        """The v1 request struct."""
        return request_struct_class(_ANY, None, _ANY, None, None, _ANY, _ANY)


class _Create(Request[CreateAclsRequest_v1]):  # type: ignore[misc]  # aiokafka is untyped
    """Create ``acls`` (one request)."""

    API_KEY = 30

    def __init__(self, acls: Iterable[KafkaAcl]) -> None:
        self._acls = list(acls)

    def build(self, request_struct_class: type[Any]) -> Any:
        """The v1 request struct."""
        return request_struct_class([tuple(a) for a in self._acls])


class _Delete(Request[DeleteAclsRequest_v1]):  # type: ignore[misc]  # aiokafka is untyped
    """Delete ``acls``, each by an exact filter (one request)."""

    API_KEY = 31

    def __init__(self, acls: Iterable[KafkaAcl]) -> None:
        self._acls = list(acls)

    def build(self, request_struct_class: type[Any]) -> Any:
        """The v1 request struct (a filter's fields are in the ACL's order)."""
        return request_struct_class([tuple(a) for a in self._acls])


# ------------------------------------------------------------------ the calls


def require_authenticated(kafka: KafkaConfig, bootstrap: str) -> None:
    """Raise :class:`AclsUnavailable` when the clients of the cluster at ``bootstrap``
    connect in PLAINTEXT (no principal to tell apart)."""
    settings, where = settings_for(kafka, bootstrap)
    if settings.protocol == "PLAINTEXT":
        raise AclsUnavailable(
            f"the Kafka cluster at {bootstrap} is reached in PLAINTEXT ({where}): its "
            "clients are not authenticated, so ACLs per principal cannot hold. Start a "
            "secure local Kafka (`edgebus kafka down --wipe`, then `edgebus kafka up "
            "--secure`), or set kafka.security for a cluster with SASL and an authorizer "
            '(docs/security.md, "Principals and ACLs")'
        )


async def describe_acls(kafka: KafkaConfig, bootstrap: str) -> frozenset[KafkaAcl]:
    """Every ACL of the cluster at ``bootstrap``."""
    async with _client(kafka, bootstrap) as client:
        return await _describe(client, bootstrap)


async def add_acls(kafka: KafkaConfig, bootstrap: str, bindings: Iterable[AclBinding]) -> None:
    """Create the ACLs of ``bindings`` on the cluster at ``bootstrap`` (an ACL it has
    already stays as it is)."""
    acls = sorted({KafkaAcl.allowing(b) for b in bindings})
    async with _client(kafka, bootstrap) as client:
        await _send_changes(client, bootstrap, _Create(acls), "creation_responses")


async def apply_acls(
    kafka: KafkaConfig, bootstrap: str, bindings: Iterable[AclBinding], principals: Iterable[str]
) -> AclChanges:
    """Make the ACLs of ``principals`` (user names) on the cluster at ``bootstrap``
    exactly those of ``bindings``: create the missing ones first (nothing a running
    service needs is ever missing), then delete the others. Returns what changed once
    the broker shows the result."""
    require_authenticated(kafka, bootstrap)
    wanted = frozenset(KafkaAcl.allowing(b) for b in bindings)
    managed = {f"User:{p}" for p in principals}
    async with _client(kafka, bootstrap) as client:
        current = {a for a in await _describe(client, bootstrap) if a.principal in managed}
        create = sorted(wanted - current)
        delete = sorted(current - wanted)
        if create:
            await _send_changes(client, bootstrap, _Create(create), "creation_responses")
        if delete:
            await _send_changes(client, bootstrap, _Delete(delete), "filter_responses")
        now = await _settled(client, bootstrap, managed, wanted)
    return AclChanges(tuple(create), tuple(delete), now)


@asynccontextmanager
async def _client(kafka: KafkaConfig, bootstrap: str) -> AsyncIterator[MetadataClient]:
    timeout_s = kafka.connect_timeout_s
    try:
        async with asyncio.timeout(timeout_s):
            client = await start_metadata_client(
                kafka, bootstrap, client_id="edgebus-acls", timeout_s=timeout_s
            )
    except (TimeoutError, KafkaError, OSError) as e:
        raise InfrastructureUnavailable(
            f"cannot reach Kafka to manage ACLs: {str(e) or type(e).__name__}", [bootstrap]
        ) from e
    try:
        yield client
    finally:
        await stop_quietly(client)


async def _send(client: MetadataClient, bootstrap: str, request: Request[Any]) -> dict[str, Any]:
    node = client.get_random_node()
    if node is None:
        raise InfrastructureUnavailable("the cluster named no broker to ask", [bootstrap])
    try:
        response = await client.send(node, request)
    except (TimeoutError, KafkaError, OSError) as e:
        raise InfrastructureUnavailable(
            f"Kafka ACL request failed: {str(e) or type(e).__name__}", [bootstrap]
        ) from e
    result: dict[str, Any] = response.to_object()
    return result


async def _describe(client: MetadataClient, bootstrap: str) -> frozenset[KafkaAcl]:
    answer = await _send(client, bootstrap, _DescribeAll())
    _check(answer["error_code"], answer["error_message"], bootstrap)
    return frozenset(
        KafkaAcl(
            r["resource_type"], r["resource_name"], r["resource_pattern_type"],
            a["principal"], a["host"], a["operation"], a["permission_type"],
        )
        for r in answer["resources"]
        for a in r["acls"]
    )  # fmt: skip


async def _send_changes(
    client: MetadataClient, bootstrap: str, request: Request[Any], results: str
) -> None:
    answer = await _send(client, bootstrap, request)
    for result in answer[results]:
        _check(result["error_code"], result["error_message"], bootstrap)
        for match in result.get("matching_acls", ()):  # DeleteAcls: per deleted ACL
            _check(match["error_code"], match["error_message"], bootstrap)


async def _settled(
    client: MetadataClient, bootstrap: str, managed: set[str], wanted: frozenset[KafkaAcl]
) -> frozenset[KafkaAcl]:
    """The managed ACLs, once they are ``wanted`` (a broker applies ACL changes as it
    reads them from the metadata log); InfrastructureUnavailable if that takes longer
    than :data:`_SETTLE_S`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _SETTLE_S
    while True:
        now = frozenset(a for a in await _describe(client, bootstrap) if a.principal in managed)
        if now == wanted:
            return now
        if loop.time() >= deadline:
            raise InfrastructureUnavailable(
                f"the ACLs applied did not show within {_SETTLE_S:.0f} s ({len(now)} of the "
                f"principals' ACLs seen, {len(wanted)} wanted); run the command again",
                [bootstrap],
            )
        await asyncio.sleep(0.2)


def _check(code: int, message: str | None, bootstrap: str) -> None:
    """Raise the edgebus error for a Kafka error code (0: none)."""
    if code == 0:
        return
    if code == _SECURITY_DISABLED:
        raise AclsUnavailable(
            f"the Kafka cluster at {bootstrap} runs no authorizer (SECURITY_DISABLED), so "
            "it has no ACLs to apply. Start a secure local Kafka (`edgebus kafka down "
            "--wipe`, then `edgebus kafka up --secure`), or set authorizer.class.name on "
            'your brokers (docs/security.md, "Principals and ACLs")'
        )
    error = for_code(code)
    detail = f"{error.__name__}, error {code}" + (f": {message}" if message else "")
    if code == _CLUSTER_AUTHORIZATION_FAILED:
        raise AclsUnavailable(
            f"the Kafka cluster at {bootstrap} refused to let this principal manage ACLs "
            f"({detail}): connect as a super user (the admin of `edgebus kafka up "
            "--secure`, or kafka.security naming your cluster's admin)"
        )
    raise InfrastructureUnavailable(f"Kafka refused an ACL change ({detail})", [bootstrap])
