"""Reading and appending the commit log topic (``edgebus.<log region>.saga``).

One key's records all go to one partition (the key's partition, computed like Kafka's
default partitioner), so every reader folds a key's transactions in the same order.
Appends are idempotent-producer, ``acks=all``, no linger: a strong write waits on
each hop.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from edgebus.config import EdgeConfig
from edgebus.core.commit_log import LogRecord, PartitionLog, Txn
from edgebus.errors import DecodeError, InfrastructureUnavailable
from edgebus.kafka import clients
from edgebus.kafka.batching import partition_for
from edgebus.kafka.clients import Consumer, ConsumerRole, Producer
from edgebus.kafka.topics import commit_log_topic, ensure_topics
from edgebus.wire.commit_log import H_SAGA, decode_saga_record, encode_saga_record, saga_headers

__all__ = [
    "CommitLogWriter",
    "commit_partition",
    "commit_partitions",
    "decode_record",
    "ensure_commit_log",
    "kind_of",
    "participant_offsets",
    "read_record",
    "start_consumer",
]

log = logging.getLogger(__name__)


def commit_partition(key: str, partitions: int) -> int:
    """The commit-log partition of ``key``."""
    return partition_for(key.encode("utf-8"), partitions)


def commit_partitions(config: EdgeConfig) -> list[TopicPartition]:
    """Every partition of the commit log."""
    topic = commit_log_topic(config.strong_log_region)
    return [TopicPartition(topic, p) for p in range(config.kafka.partitions)]


async def ensure_commit_log(config: EdgeConfig, bootstrap: str) -> None:
    """Create the commit log topic (same partition count as the events topics)."""
    kafka = config.kafka
    await ensure_topics(kafka, bootstrap, [commit_log_topic(config.strong_log_region)])


def read_record(record: ConsumerRecord[bytes, bytes]) -> LogRecord:
    """The commit-log record in ``record``; DecodeError saying why for one that is not
    (whatever the bytes: a reader never fails otherwise on a record)."""
    try:
        return decode_saga_record(record.value)
    except DecodeError:
        raise
    except Exception as e:  # the decoder's own checks missed it: still not a record
        raise DecodeError(
            f"a commit-log record that does not decode: {type(e).__name__}: {e}"
        ) from e


def decode_record(record: ConsumerRecord[bytes, bytes]) -> LogRecord | None:
    """The commit-log record in ``record``, or ``None`` (logged) for one that is not."""
    try:
        return read_record(record)
    except DecodeError as e:
        log.error(
            "commit log %d:%d is not a commit-log record, skipped: %s",
            record.partition,
            record.offset,
            e,
        )
        return None


def participant_offsets(
    logs: dict[int, PartitionLog], processed: dict[int, int], topic: str, region: str, now_ms: int
) -> dict[TopicPartition, int]:
    """Where ``region``'s participant resumes each partition of the commit log: before
    every transaction it has to vote on, apply or acknowledge, never past what it
    processed. Compacts each fold to what a restart would read again."""

    def unfinished(t: Txn) -> bool:  # ours to vote on, apply or acknowledge
        return region in t.participants and region not in t.acks

    offsets = {}
    for p, plog in logs.items():
        plog.compact(now_ms, lambda t: t.decision is None or unfinished(t))
        offsets[TopicPartition(topic, p)] = min(
            plog.resume_offset(now_ms, unfinished), processed.get(p, plog.position)
        )
    return offsets


def kind_of(record: ConsumerRecord[bytes, bytes]) -> bytes | None:
    """The ``eb-saga`` header (``b"begin"``, ``b"vote"``, ...), without decoding."""
    for name, raw in record.headers or ():
        if name == H_SAGA:
            return bytes(raw)
    return None


async def start_consumer(
    config: EdgeConfig,
    bootstrap: str,
    *,
    role: ConsumerRole = "log",
    group_id: str | None = None,
    group_instance_id: str | None = None,
    client_id: str | None = None,
) -> Consumer:
    """A started consumer of the commit log (not subscribed: the caller assigns or
    subscribes). Kafka errors become InfrastructureUnavailable."""
    return await clients.start_consumer(
        config.kafka,
        bootstrap,
        role,
        group_id=group_id,
        group_instance_id=group_instance_id,
        client_id=client_id,
        what="the commit log's Kafka",
    )


class CommitLogWriter:
    """Appends commit-log records to the key's partition."""

    def __init__(self, config: EdgeConfig, bootstrap: str, client_id: str) -> None:
        self.config = config
        self.bootstrap = bootstrap
        self.client_id = client_id
        self.partitions = config.kafka.partitions
        self.topic = commit_log_topic(config.strong_log_region)
        self._producer: Producer | None = None

    async def start(self) -> None:
        """Create the topic if needed and connect."""
        await ensure_commit_log(self.config, self.bootstrap)
        self._producer = await clients.start_producer(
            self.config.kafka,
            self.bootstrap,
            "log",
            client_id=self.client_id,
            what="the commit log's Kafka",
        )

    async def stop(self) -> None:
        """Flush and disconnect."""
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()

    def partition(self, key: str) -> int:
        """The partition ``key``'s records go to."""
        return commit_partition(key, self.partitions)

    async def send(self, record: LogRecord) -> asyncio.Future[object]:
        """Queue ``record``; the returned future resolves when Kafka acknowledged it."""
        if self._producer is None:
            raise InfrastructureUnavailable(
                "the commit log writer is not started", [self.bootstrap]
            )
        future: asyncio.Future[object] = await self._producer.send(
            self.topic,
            encode_saga_record(record),
            key=record.key.encode("utf-8"),
            partition=self.partition(record.key),
            headers=saga_headers(record),
        )
        return future

    async def append(self, record: LogRecord) -> tuple[int, int]:
        """Append and wait for the acknowledgement: ``(partition, offset)``."""
        try:
            meta = await (await self.send(record))
        except KafkaError as e:
            raise InfrastructureUnavailable(
                f"the commit log did not acknowledge {type(record).__name__} of txn "
                f"{record.txn_id}: {e}",
                [self.bootstrap],
            ) from e
        return meta.partition, meta.offset  # type: ignore[attr-defined]
