"""Which cluster, which incarnation of a topic, how many partitions: topic identities.

A store built from a topic is only valid against that topic (:mod:`edgebus.core.lineage`):
the same name on another cluster, or a topic deleted and recreated under the same
name, holds other records at the same offsets. Kafka tells them apart by the cluster
id and the topic id (a UUID given to each topic when it is created, KIP-516).

aiokafka speaks Metadata up to v5, which has the cluster id but no topic ids, so this
module defines Metadata v10 and v12 itself (the first flexible versions carrying topic
ids; fields as in Kafka's ``MetadataRequest.json`` / ``MetadataResponse.json``) from
aiokafka's protocol building blocks, and sends them through a metadata client from
:mod:`edgebus.kafka.clients`. The connection picks the newest version both sides
speak.

Topic ids are given as Kafka prints them (``Uuid.toString()``, ``kafka-topics.sh
--describe``): the 16 bytes in base64url without padding, 22 characters.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from io import BytesIO
from typing import Any, Final

from aiokafka.errors import IncompatibleBrokerVersion, KafkaError, for_code
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (
    Boolean,
    CompactArray,
    CompactString,
    Int16,
    Int32,
    Schema,
    TaggedFields,
)

from edgebus.config import KafkaConfig
from edgebus.errors import InfrastructureUnavailable
from edgebus.kafka.clients import MetadataClient, start_metadata_client, stop_quietly

__all__ = ["TopicIdentity", "topic_id_text", "topic_identities"]

_METADATA: Final = 3
_UUID_BYTES: Final = 16
_ZERO_UUID: Final = bytes(_UUID_BYTES)
#: topic errors that mean "no such topic": the topic is left out of the answer
_ABSENT: Final = frozenset({3, 17})  # UNKNOWN_TOPIC_OR_PARTITION, INVALID_TOPIC_EXCEPTION
_UNREACHABLE: Final = (TimeoutError, KafkaError, OSError)


@dataclass(frozen=True, slots=True)
class TopicIdentity:
    """What a topic is, beyond its name: the cluster holding it, the id Kafka gave
    this incarnation of it (base64url, as Kafka prints it) and its partition count."""

    cluster_id: str
    topic_id: str
    partitions: int


def topic_id_text(raw: bytes) -> str:
    """A topic id's 16 bytes as Kafka prints them: base64url without padding."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


# ------------------------------------------------------------------ wire format


class _Uuid:
    """Kafka's ``uuid`` field type: 16 raw bytes (aiokafka has none)."""

    @classmethod
    def encode(cls, value: bytes) -> bytes:
        """The 16 bytes as they are."""
        if len(value) != _UUID_BYTES:
            raise ValueError(f"a UUID is {_UUID_BYTES} bytes, not {len(value)}")
        return value

    @classmethod
    def decode(cls, data: BytesIO) -> bytes:
        """The next 16 bytes."""
        value = data.read(_UUID_BYTES)
        if len(value) != _UUID_BYTES:
            raise ValueError("Buffer underrun decoding a UUID")
        return value

    @classmethod
    def repr(cls, value: bytes) -> str:
        """As Kafka prints it."""
        return topic_id_text(value)


_REQUEST_TOPICS: Final = (
    "topics",
    CompactArray(("topic_id", _Uuid), ("name", CompactString("utf-8")), ("tags", TaggedFields)),
)
_BROKERS: Final = (
    "brokers",
    CompactArray(
        ("node_id", Int32),
        ("host", CompactString("utf-8")),
        ("port", Int32),
        ("rack", CompactString("utf-8")),
        ("tags", TaggedFields),
    ),
)
_PARTITIONS: Final = CompactArray(
    ("error_code", Int16),
    ("partition_index", Int32),
    ("leader_id", Int32),
    ("leader_epoch", Int32),
    ("replica_nodes", CompactArray(Int32)),
    ("isr_nodes", CompactArray(Int32)),
    ("offline_replicas", CompactArray(Int32)),
    ("tags", TaggedFields),
)
_RESPONSE_TOPICS: Final = (
    "topics",
    CompactArray(
        ("error_code", Int16),
        ("name", CompactString("utf-8")),
        ("topic_id", _Uuid),
        ("is_internal", Boolean),
        ("partitions", _PARTITIONS),
        ("topic_authorized_operations", Int32),
        ("tags", TaggedFields),
    ),
)


class _MetadataResponse_v10(Response):  # type: ignore[misc]  # aiokafka is untyped
    API_KEY = _METADATA
    API_VERSION = 10
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        _BROKERS,
        ("cluster_id", CompactString("utf-8")),
        ("controller_id", Int32),
        _RESPONSE_TOPICS,
        ("cluster_authorized_operations", Int32),
        ("tags", TaggedFields),
    )


class _MetadataResponse_v12(Response):  # type: ignore[misc]  # aiokafka is untyped
    """v11 dropped ``cluster_authorized_operations``; v12 made topic names nullable."""

    API_KEY = _METADATA
    API_VERSION = 12
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        _BROKERS,
        ("cluster_id", CompactString("utf-8")),
        ("controller_id", Int32),
        _RESPONSE_TOPICS,
        ("tags", TaggedFields),
    )


class _MetadataRequest_v10(RequestStruct):  # type: ignore[misc]  # aiokafka is untyped
    API_KEY = _METADATA
    API_VERSION = 10
    FLEXIBLE_VERSION = True
    RESPONSE_TYPE = _MetadataResponse_v10
    SCHEMA = Schema(
        _REQUEST_TOPICS,
        ("allow_auto_topic_creation", Boolean),
        ("include_cluster_authorized_operations", Boolean),
        ("include_topic_authorized_operations", Boolean),
        ("tags", TaggedFields),
    )


class _MetadataRequest_v12(RequestStruct):  # type: ignore[misc]  # aiokafka is untyped
    API_KEY = _METADATA
    API_VERSION = 12
    FLEXIBLE_VERSION = True
    RESPONSE_TYPE = _MetadataResponse_v12
    SCHEMA = Schema(
        _REQUEST_TOPICS,
        ("allow_auto_topic_creation", Boolean),
        ("include_topic_authorized_operations", Boolean),
        ("tags", TaggedFields),
    )


class _TopicIdsRequest(
    Request[_MetadataRequest_v10 | _MetadataRequest_v12]  # type: ignore[misc]  # untyped
):
    """Metadata of the named topics, never creating them; v12 where the broker speaks
    it, else v10."""

    API_KEY = _METADATA

    def __init__(self, topics: Sequence[str]) -> None:
        self._topics = list(topics)

    def build(self, request_struct_class: type[Any]) -> Any:
        """The request struct of the version the connection chose."""
        topics: list[tuple[bytes, str, dict[int, bytes]]] = [
            (_ZERO_UUID, name, {}) for name in self._topics
        ]
        if request_struct_class.API_VERSION >= 11:
            return request_struct_class(topics, False, False, {})
        return request_struct_class(topics, False, False, False, {})


# ------------------------------------------------------------------ the query


async def topic_identities(
    kafka: KafkaConfig, bootstrap: str, topics: Sequence[str]
) -> dict[str, TopicIdentity]:
    """The identity of each of ``topics`` on the cluster at ``bootstrap``; a topic
    that does not exist is absent from the answer (it is not created).

    Raises :class:`~edgebus.errors.InfrastructureUnavailable` when no broker answers
    within ``kafka.connect_timeout_s``, when a topic's metadata stays unsettled that
    long (e.g. no leader yet), or when the broker refuses it (e.g. not authorized).
    """
    wanted = sorted(set(topics))
    if not wanted:
        return {}
    async with _metadata_client(kafka, bootstrap) as client:
        return await _settled_identities(client, bootstrap, wanted, kafka.connect_timeout_s)


@asynccontextmanager
async def _metadata_client(kafka: KafkaConfig, bootstrap: str) -> AsyncIterator[MetadataClient]:
    """A bootstrapped metadata client, closed after; InfrastructureUnavailable if the
    cluster does not answer within ``kafka.connect_timeout_s``."""
    timeout_s = kafka.connect_timeout_s
    try:
        async with asyncio.timeout(timeout_s):
            client = await start_metadata_client(
                kafka, bootstrap, client_id="edgebus-identity", timeout_s=timeout_s
            )
    except _UNREACHABLE as e:
        raise _unavailable(bootstrap, f"cannot reach Kafka: {str(e) or type(e).__name__}") from e
    try:
        yield client
    finally:
        await stop_quietly(client)


async def _settled_identities(
    client: MetadataClient, bootstrap: str, topics: list[str], timeout_s: float
) -> dict[str, TopicIdentity]:
    """Ask until no topic has a retriable error (a topic still electing its leaders),
    for up to ``timeout_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    attempt = 0
    while True:
        response = await _ask(client, bootstrap, topics)
        found, pending = _identities(response, bootstrap)
        if not pending:
            return found
        if loop.time() >= deadline:
            errors = ", ".join(f"{t}: {for_code(c).__name__}" for t, c in sorted(pending.items()))
            raise _unavailable(bootstrap, f"topic metadata did not settle ({errors})")
        attempt += 1
        await asyncio.sleep(min(0.05 * attempt, 0.5))


async def _ask(client: MetadataClient, bootstrap: str, topics: list[str]) -> dict[str, Any]:
    """One Metadata request to any broker of the cluster, as a dict of its fields."""
    node = client.get_random_node()
    if node is None:
        raise _unavailable(bootstrap, "the cluster named no broker to ask")
    try:
        response = await client.send(node, _TopicIdsRequest(topics))
    except (IncompatibleBrokerVersion, NotImplementedError) as e:
        raise _unavailable(
            bootstrap, "the broker does not give topic ids (Metadata v10 or newer, Kafka 2.8+)"
        ) from e
    except _UNREACHABLE as e:
        detail = str(e) or type(e).__name__
        raise _unavailable(bootstrap, f"Kafka metadata request failed: {detail}") from e
    result: dict[str, Any] = response.to_object()
    return result


def _identities(
    response: Mapping[str, Any], bootstrap: str
) -> tuple[dict[str, TopicIdentity], dict[str, int]]:
    """The identities of the topics in a Metadata response, and the topics whose
    metadata is not settled yet (topic -> retriable error code)."""
    cluster_id = response["cluster_id"]
    if not cluster_id:
        raise _unavailable(bootstrap, "the broker did not name its cluster id")
    found: dict[str, TopicIdentity] = {}
    pending: dict[str, int] = {}
    for topic in response["topics"]:
        name, code = topic["name"], topic["error_code"]
        if name is None or code in _ABSENT:
            continue
        if code == 0:
            found[name] = TopicIdentity(
                cluster_id, topic_id_text(topic["topic_id"]), len(topic["partitions"])
            )
        elif for_code(code).retriable:
            pending[name] = code
        else:
            raise _unavailable(
                bootstrap,
                f"Kafka refused the metadata of topic {name} ({for_code(code).__name__}, "
                f"error {code})",
            )
    return found, pending


def _unavailable(bootstrap: str, detail: str) -> InfrastructureUnavailable:
    return InfrastructureUnavailable(detail, [bootstrap])
