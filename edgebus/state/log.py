"""The state log of each data class: where it lives, appending to it, reading it.

A state machine's identity is its state id *and* its data class (its jurisdiction,
like a Durable Object's): the class decides the regions allowed to own or copy it, and
its log, ``edgebus.<home>.state.<class>``, lives on the cluster of the class's home
region (the strong log region if the class allows it, else the first allowed region).
So a PII state's records never leave the GDPR zone's clusters, and hosts read only the
logs of the classes their region may hold.

Topics use ``message.timestamp.type=LogAppendTime`` (ownership leases are in the
broker's append time, one clock for every reader) and ``retention.ms=-1``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import NamedTuple

from aiokafka import ConsumerRecord

from edgebus.config import EdgeConfig
from edgebus.core.state_machine import StateLogRecord
from edgebus.errors import (
    DecodeError,
    InfrastructureUnavailable,
    InvalidInput,
)
from edgebus.kafka import clients
from edgebus.kafka.batching import partition_for
from edgebus.kafka.clients import Consumer, Producer
from edgebus.kafka.clusters import resolve_clusters
from edgebus.kafka.state_layout import (
    TOPIC_CONFIGS,
    allowed_regions,
    home_region,
    hosted_classes,
    state_classes,
    state_topic,
)
from edgebus.kafka.topics import ensure_topics
from edgebus.wire.state_log import decode_state_record, encode_state_record, state_headers

__all__ = [
    "MAX_RECORD_BYTES",
    "Appended",
    "StateLogWriter",
    "allowed_regions",
    "decode_record",
    "ensure_state_log",
    "home_region",
    "hosted_classes",
    "read_record",
    "start_consumer",
    "state_classes",
    "state_partition",
    "state_topic",
]

log = logging.getLogger(__name__)
#: a state-log record's key, value and headers at most: below Kafka's default
#: ``message.max.bytes`` (1,048,588) and aiokafka's ``max_request_size`` (1,048,576),
#: which the log's producers and topics keep, with room for the record's own overhead
MAX_RECORD_BYTES = 1_000_000


class Appended(NamedTuple):
    """Where a record landed and the broker's append time."""

    partition: int
    offset: int
    append_ms: int


def state_partition(state_id: str, partitions: int) -> int:
    """The partition of ``state_id``'s records."""
    return partition_for(state_id.encode("utf-8"), partitions)


async def ensure_state_log(config: EdgeConfig, data_class: str) -> None:
    """Create the log topic of ``data_class`` (same partition count as the events
    topics, LogAppendTime)."""
    kafka = config.kafka
    bootstrap = resolve_clusters(config)[home_region(config, data_class)]
    await ensure_topics(kafka, bootstrap, [state_topic(config, data_class)],
                        configs=TOPIC_CONFIGS)


def read_record(record: ConsumerRecord[bytes, bytes]) -> tuple[str, StateLogRecord]:
    """``(state_id, record)``; DecodeError saying why for a record that is not one,
    whatever its bytes (a JSON text nested too deep for the decoder's stack included), or
    one no host may fold (:func:`~edgebus.wire.state_log.record_refusal`)."""
    try:
        return decode_state_record(record.value)
    except DecodeError:
        raise
    except Exception as e:  # a RecursionError, say: still not a record
        raise DecodeError(f"a state-log record that does not decode: {type(e).__name__}: "
                          f"{str(e)[:200]}") from None


def decode_record(record: ConsumerRecord[bytes, bytes]) -> tuple[str, StateLogRecord] | None:
    """``(state_id, record)``, or ``None`` (logged) for a record that is not one or that
    no host may fold (the hosts skip it too)."""
    try:
        return read_record(record)
    except DecodeError as e:
        log.error("state log %s %d:%d is not a state-log record, skipped: %s",
                  record.topic, record.partition, record.offset, e)
        return None


async def start_consumer(config: EdgeConfig, bootstrap: str, client_id: str) -> Consumer:
    """A started, unassigned consumer of a state log (no group: readers assign)."""
    return await clients.start_consumer(
        config.kafka, bootstrap, "state_log", client_id=client_id,
        what="a state log's Kafka",
    )


class StateLogWriter:
    """Appends state-log records (idempotent, ``acks=all``, no linger) to the state's
    partition of its class's log."""

    def __init__(self, config: EdgeConfig, client_id: str) -> None:
        self.config = config
        self.client_id = client_id
        self.clusters = resolve_clusters(config)
        self._producers: dict[str, Producer] = {}
        self._ready: set[str] = set()
        self._where: dict[str, tuple[str, str]] = {}  # class -> (topic, bootstrap)
        self._lock = asyncio.Lock()

    def _layout(self, data_class: str) -> tuple[str, str]:
        where = self._where.get(data_class)
        if where is None:
            where = self._where[data_class] = (
                state_topic(self.config, data_class),
                self.clusters[home_region(self.config, data_class)],
            )
        return where

    async def region_producer(self, region: str) -> Producer:
        """The producer for ``region``'s own cluster (where its dead letters go)."""
        bootstrap = self.clusters[region]
        async with self._lock:
            if bootstrap not in self._producers:
                self._producers[bootstrap] = await clients.start_producer(
                    self.config.kafka, bootstrap, "log", client_id=self.client_id,
                    what=f"{region}'s Kafka",
                )
        return self._producers[bootstrap]

    async def producer(self, data_class: str) -> Producer:
        """The producer for the cluster of ``data_class``'s log (its log created once)."""
        bootstrap = self._layout(data_class)[1]
        if data_class in self._ready and bootstrap in self._producers:
            return self._producers[bootstrap]
        async with self._lock:
            if data_class not in self._ready:
                await ensure_state_log(self.config, data_class)
                self._ready.add(data_class)
            if bootstrap not in self._producers:
                self._producers[bootstrap] = await clients.start_producer(
                    self.config.kafka, bootstrap, "log", client_id=self.client_id,
                    what="the state log's Kafka",
                )
        return self._producers[bootstrap]

    async def stop(self) -> None:
        """Flush and disconnect."""
        producers, self._producers = list(self._producers.values()), {}
        for producer in producers:
            await asyncio.gather(producer.stop(), return_exceptions=True)

    @staticmethod
    def encode(state_id: str, record: StateLogRecord) -> bytes:
        """The value of ``record`` in the state log. InvalidInput when it cannot be one
        (:func:`~edgebus.wire.state_log.encode_state_record` says why) or when the record
        would be over :data:`MAX_RECORD_BYTES`, too large for Kafka. Pure."""
        value = encode_state_record(state_id, record)
        size = (len(value) + len(state_id.encode("utf-8"))
                + sum(len(k) + len(v) for k, v in state_headers(record)))
        if size > MAX_RECORD_BYTES:
            raise InvalidInput(
                f"a {type(record).__name__} record of state {state_id[:100]!r} would be "
                f"{size} bytes, over the {MAX_RECORD_BYTES} a state-log record may take: "
                "keep large blobs elsewhere and a reference in the state"
            )
        return value

    async def send(
        self, data_class: str, state_id: str, record: StateLogRecord,
        *, value: bytes | None = None,
    ) -> asyncio.Future[Appended]:
        """Queue ``record`` (``value``: its :meth:`encode`, when the caller has it
        already); the future resolves to where and when it was appended."""
        if value is None:
            value = self.encode(state_id, record)
        producer = await self.producer(data_class)
        topic, bootstrap = self._layout(data_class)
        sent = await producer.send(
            topic,
            value,
            key=state_id.encode("utf-8"),
            partition=state_partition(state_id, self.config.kafka.partitions),
            headers=state_headers(record),
        )
        out: asyncio.Future[Appended] = asyncio.get_running_loop().create_future()

        def done(f: asyncio.Future[object]) -> None:
            if out.done():
                return
            if f.cancelled():
                out.cancel()
            elif (exc := f.exception()) is not None:
                out.set_exception(InfrastructureUnavailable(
                    f"the state log did not acknowledge a record of {state_id!r}: {exc}",
                    [bootstrap]))
            else:
                meta = f.result()
                out.set_result(Appended(meta.partition, meta.offset,  # type: ignore[attr-defined]
                                        int(meta.timestamp)))  # type: ignore[attr-defined]

        sent.add_done_callback(done)
        return out

    async def append(self, data_class: str, state_id: str, record: StateLogRecord) -> Appended:
        """Append and wait for the acknowledgement."""
        return await (await self.send(data_class, state_id, record))
