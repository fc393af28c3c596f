"""The one place edgebus builds Kafka clients.

Every aiokafka producer, consumer, admin and metadata client of edgebus (the SDK, the
services, the tooling, and the benchmarks' raw baselines, which must run with the same
settings as what they are compared with) is built here, so that:

* every connection to a cluster gets the same connection settings from the config's
  ``kafka`` section (:func:`_connection`: the bootstrap addresses, and the cluster's TLS
  and SASL settings from :mod:`edgebus.kafka.security`, once, for every client);
* each role gets its defaults in one table (:data:`PRODUCER_ROLES`,
  :data:`CONSUMER_ROLES`) instead of each call site choosing its own;
* a client is started with a deadline (``kafka.connect_timeout_s``), stopped again
  when its start fails, and the failure becomes
  :class:`~edgebus.errors.InfrastructureUnavailable` naming the addresses tried
  (:class:`~edgebus.errors.KafkaAuthFailed`, saying what to check, when the cluster
  refused its TLS handshake or SASL authentication).

The classes themselves are exported as types (:data:`Producer`, :data:`Consumer`,
:data:`Admin`, :data:`MetadataClient`) for annotations; ruff's banned-api rule refuses
importing them from aiokafka anywhere else in ``edgebus/`` and ``connectors/``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, Literal, TypeAlias

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # noqa: TID251
from aiokafka.admin import AIOKafkaAdminClient  # noqa: TID251
from aiokafka.client import AIOKafkaClient  # noqa: TID251
from aiokafka.errors import KafkaConnectionError, KafkaError

from edgebus.config import KafkaConfig
from edgebus.errors import InfrastructureUnavailable
from edgebus.kafka.security import auth_failure, client_security

__all__ = [
    "CONSUMER_ROLES",
    "PRODUCER_ROLES",
    "Admin",
    "Consumer",
    "ConsumerRole",
    "MetadataClient",
    "Producer",
    "ProducerRole",
    "admin_client",
    "reader",
    "start_consumer",
    "start_metadata_client",
    "start_producer",
    "start_transactional_producer",
    "stop_quietly",
]

Producer: TypeAlias = AIOKafkaProducer
Consumer: TypeAlias = AIOKafkaConsumer
Admin: TypeAlias = AIOKafkaAdminClient
MetadataClient: TypeAlias = AIOKafkaClient

ProducerRole = Literal["events", "service", "log"]
ConsumerRole = Literal["reader", "log", "coordinator", "state_log", "region"]

_Settings = Callable[[KafkaConfig], dict[str, Any]]

#: producer defaults per role; every producer is idempotent with ``acks=all`` (an
#: acknowledged record is on every in-sync replica and never duplicated by a retry)
PRODUCER_ROLES: Mapping[ProducerRole, _Settings] = {
    # the SDK's writes (and the produce benchmark's raw baseline): batched
    "events": lambda kafka: {
        "enable_idempotence": True, "acks": "all", "linger_ms": kafka.linger_ms,
        "max_batch_size": kafka.max_batch_bytes, **_delivery(kafka),
    },
    # a region service's appends: heartbeats, replicated copies, strong commits'
    # events, dead letters, redrives
    "service": lambda kafka: {
        "enable_idempotence": True, "acks": "all", "linger_ms": 1,
        "max_batch_size": kafka.max_batch_bytes, **_delivery(kafka),
    },
    # one record at a time on a log someone waits on: commit log, state logs, saga
    # progress
    "log": lambda kafka: {
        "enable_idempotence": True, "acks": "all", "linger_ms": 0, **_delivery(kafka),
    },
}


def _delivery(kafka: KafkaConfig) -> dict[str, Any]:
    """aiokafka's one producer timeout bounds the metadata wait of a send, the life of
    a batch whose partition has no leader, and each produce request; set to the
    delivery timeout, a record rides out a broker restart shorter than it (an
    idempotent producer retries a sent batch until it is acknowledged)."""
    return {"request_timeout_ms": kafka.delivery_timeout_ms}


#: consumer defaults per role; no consumer auto-commits (positions are committed
#: explicitly, or kept with the state they produced)
CONSUMER_ROLES: Mapping[ConsumerRole, _Settings] = {
    # reads what exists now (tail, replay, end offsets): assigns and seeks itself
    "reader": lambda kafka: {"enable_auto_commit": False},
    # follows the commit log: a long poll, answered as soon as a record arrives
    "log": lambda kafka: {
        "enable_auto_commit": False, "auto_offset_reset": "earliest", "fetch_max_wait_ms": 500,
    },
    # a commit-log coordinator, a member of the coordinators' group: a dead member's
    # partitions move to another coordinator within the session timeout
    "coordinator": lambda kafka: {
        "enable_auto_commit": False, "auto_offset_reset": "earliest", "fetch_max_wait_ms": 500,
        "session_timeout_ms": 6000, "heartbeat_interval_ms": 1000,
    },
    # follows a state log (shorter poll: claims and renewals are time-bound)
    "state_log": lambda kafka: {
        "enable_auto_commit": False, "auto_offset_reset": "earliest", "fetch_max_wait_ms": 200,
    },
    # a region service's member of its region's group (static membership: a restarted
    # service, even after kill -9, takes its partitions back at once instead of waiting
    # for the old session to expire); small fetch wait, so new records come at once
    "region": lambda kafka: {
        "enable_auto_commit": False, "auto_offset_reset": "earliest", "fetch_max_wait_ms": 100,
        "max_partition_fetch_bytes": 4 * 1024 * 1024, "session_timeout_ms": 6000,
        "heartbeat_interval_ms": 1500,
    },
}


def _connection(kafka: KafkaConfig, bootstrap: str) -> dict[str, Any]:
    """What every client of a cluster shares: where it is and how to reach it safely
    (TLS and SASL: ``kafka.cluster_security[bootstrap]``, else ``kafka.security``; its
    secrets are read now)."""
    return {"bootstrap_servers": bootstrap, **client_security(kafka, bootstrap)}


def _unreachable(bootstrap: str, what: str, error: BaseException) -> InfrastructureUnavailable:
    detail = str(error) or type(error).__name__
    return InfrastructureUnavailable(f"cannot reach {what}: {detail}", [bootstrap])


_START_ERRORS = (TimeoutError, KafkaConnectionError, KafkaError, OSError)
#: the longest the connection that finds out why a secured client failed may take
_DIAGNOSE_S = 5.0


async def _start(
    client: Any, kafka: KafkaConfig, bootstrap: str, what: str, timeout_s: float
) -> None:
    """Start ``client`` within ``timeout_s``; stop it and raise InfrastructureUnavailable
    (KafkaAuthFailed for a TLS or SASL refusal) if that fails."""
    try:
        await asyncio.wait_for(client.start(), timeout_s)
    except _START_ERRORS as e:
        await stop_quietly(client)
        refused = await auth_failure(kafka, bootstrap, min(timeout_s, _DIAGNOSE_S), what)
        raise (refused or _unreachable(bootstrap, what, e)) from e
    except BaseException:
        await stop_quietly(client)
        raise


async def start_producer(
    kafka: KafkaConfig,
    bootstrap: str,
    role: ProducerRole,
    *,
    client_id: str | None = None,
    what: str = "Kafka",
) -> Producer:
    """A started producer of ``role`` on the cluster at ``bootstrap``."""
    options = {**_connection(kafka, bootstrap), **PRODUCER_ROLES[role](kafka)}
    if client_id is not None:
        options["client_id"] = client_id
    producer = AIOKafkaProducer(**options)
    await _start(producer, kafka, bootstrap, what, kafka.connect_timeout_s)
    return producer


async def start_transactional_producer(
    kafka: KafkaConfig, bootstrap: str, transactional_id: str, *, what: str = "Kafka"
) -> Producer:
    """A started transactional producer (the strong benchmark's raw Kafka baseline:
    Kafka's own transactions, compared with edgebus's two-phase commit)."""
    producer = AIOKafkaProducer(
        **_connection(kafka, bootstrap), **PRODUCER_ROLES["log"](kafka),
        transactional_id=transactional_id,
    )
    await _start(producer, kafka, bootstrap, what, kafka.connect_timeout_s)
    return producer


async def start_consumer(
    kafka: KafkaConfig,
    bootstrap: str,
    role: ConsumerRole,
    *,
    group_id: str | None = None,
    group_instance_id: str | None = None,
    client_id: str | None = None,
    what: str = "Kafka",
) -> Consumer:
    """A started consumer of ``role`` (not subscribed, nothing assigned: the caller
    assigns or subscribes). ``group_id``: its consumer group (None: none);
    ``group_instance_id``: its static member id in that group."""
    options = {**_connection(kafka, bootstrap), **CONSUMER_ROLES[role](kafka)}
    options["group_id"] = group_id
    if group_instance_id is not None:
        options["group_instance_id"] = group_instance_id
    if client_id is not None:
        options["client_id"] = client_id
    consumer = AIOKafkaConsumer(**options)
    await _start(consumer, kafka, bootstrap, what, kafka.connect_timeout_s)
    # let the consumer's background task start: aiokafka's stop() right after start()
    # otherwise re-raises that task's cancellation
    await asyncio.sleep(0)
    return consumer


@asynccontextmanager
async def reader(
    kafka: KafkaConfig, bootstrap: str, *, client_id: str | None = None
) -> AsyncIterator[Consumer]:
    """A started consumer without a group (it assigns partitions itself), stopped after."""
    consumer = await start_consumer(kafka, bootstrap, "reader", client_id=client_id)
    try:
        yield consumer
    finally:
        await consumer.stop()


@asynccontextmanager
async def admin_client(
    kafka: KafkaConfig, bootstrap: str, *, client_id: str = "edgebus-admin",
    timeout_s: float | None = None,
) -> AsyncIterator[Admin]:
    """A started admin client (its requests time out after ``timeout_s``, default
    ``kafka.connect_timeout_s``), closed after."""
    timeout = kafka.connect_timeout_s if timeout_s is None else timeout_s
    admin = AIOKafkaAdminClient(
        **_connection(kafka, bootstrap), client_id=client_id,
        request_timeout_ms=max(1, int(timeout * 1000)),
    )
    await _start(admin, kafka, bootstrap, "Kafka", timeout)
    try:
        yield admin
    finally:
        await stop_quietly(admin)


async def start_metadata_client(
    kafka: KafkaConfig, bootstrap: str, *, client_id: str, timeout_s: float
) -> MetadataClient:
    """A bootstrapped low-level client for metadata requests (health probes), with
    requests timing out after ``timeout_s``. A failed bootstrap raises aiokafka's
    error, or KafkaAuthFailed when the cluster refused TLS or SASL."""
    client = AIOKafkaClient(
        **_connection(kafka, bootstrap), client_id=client_id,
        request_timeout_ms=max(1000, int(timeout_s * 1000)),
    )
    try:
        await client.bootstrap()
    except _START_ERRORS as e:
        await stop_quietly(client)
        refused = await auth_failure(kafka, bootstrap, min(timeout_s, _DIAGNOSE_S))
        if refused is not None:
            raise refused from e
        raise
    except BaseException:
        await stop_quietly(client)
        raise
    return client


async def stop_quietly(client: Any, timeout_s: float = 10.0) -> None:
    """Stop (or close) a client, bounded, ignoring its errors: a client being dropped
    must not mask the error that made the caller drop it."""
    stop = getattr(client, "stop", None) or client.close
    with contextlib.suppress(Exception):
        await asyncio.wait_for(stop(), timeout_s)
