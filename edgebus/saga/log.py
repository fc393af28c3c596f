"""Reading and appending the saga log topic (``edgebus.<log region>.saga``).

One key's records all go to one partition (the key's partition, computed like Kafka's
default partitioner), so every reader folds a key's transactions in the same order.
Appends are idempotent-producer, ``acks=all``, no linger: a strong write waits on
each hop.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaConnectionError, KafkaError

from edgebus.config import EdgeConfig
from edgebus.core.saga_log import LogRecord
from edgebus.errors import DecodeError, InfrastructureUnavailable
from edgebus.kafka.batching import partition_for
from edgebus.kafka.topics import ensure_topics, saga_log_topic
from edgebus.wire.saga_log import H_SAGA, decode_saga_record, encode_saga_record, saga_headers

__all__ = [
    "SagaLogWriter",
    "decode_record",
    "ensure_saga_log",
    "saga_partition",
    "saga_partitions",
    "start_consumer",
]

log = logging.getLogger(__name__)


def saga_partition(key: str, partitions: int) -> int:
    """The saga-log partition of ``key``."""
    return partition_for(key.encode("utf-8"), partitions)


def saga_partitions(config: EdgeConfig) -> list[TopicPartition]:
    """Every partition of the saga log."""
    topic = saga_log_topic(config.saga_log_region)
    return [TopicPartition(topic, p) for p in range(config.kafka.partitions)]


async def ensure_saga_log(config: EdgeConfig, bootstrap: str) -> None:
    """Create the saga log topic (same partition count as the events topics)."""
    kafka = config.kafka
    await ensure_topics(
        bootstrap, [saga_log_topic(config.saga_log_region)], kafka.partitions,
        kafka.topic_replication_factor, timeout_s=kafka.connect_timeout_s,
    )


def decode_record(record: ConsumerRecord[bytes, bytes]) -> LogRecord | None:
    """The saga-log record in ``record``, or ``None`` (logged) for one that is not."""
    try:
        return decode_saga_record(record.value)
    except DecodeError as e:
        log.error("saga log %d:%d is not a saga-log record, skipped: %s",
                  record.partition, record.offset, e)
        return None


def kind_of(record: ConsumerRecord[bytes, bytes]) -> bytes | None:
    """The ``eb-saga`` header (``b"begin"``, ``b"vote"``, ...), without decoding."""
    for name, raw in record.headers or ():
        if name == H_SAGA:
            return bytes(raw)
    return None


async def start_consumer(
    config: EdgeConfig, bootstrap: str, *, group_id: str | None = None, **options: object
) -> AIOKafkaConsumer:
    """A started consumer of the saga log (not subscribed: the caller assigns or
    subscribes). Kafka errors become InfrastructureUnavailable."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=500,  # a long poll: answered as soon as a record arrives
        **options,
    )
    try:
        await asyncio.wait_for(consumer.start(), config.kafka.connect_timeout_s)
    except (TimeoutError, KafkaConnectionError, KafkaError, OSError) as e:
        await asyncio.gather(consumer.stop(), return_exceptions=True)
        raise InfrastructureUnavailable(f"cannot reach the saga log's Kafka: {e}",
                                        [bootstrap]) from e
    await asyncio.sleep(0)
    return consumer


class SagaLogWriter:
    """Appends saga-log records to the key's partition."""

    def __init__(self, config: EdgeConfig, bootstrap: str, client_id: str) -> None:
        self.config = config
        self.bootstrap = bootstrap
        self.client_id = client_id
        self.partitions = config.kafka.partitions
        self.topic = saga_log_topic(config.saga_log_region)
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        """Create the topic if needed and connect."""
        await ensure_saga_log(self.config, self.bootstrap)
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            client_id=self.client_id,
            enable_idempotence=True,
            acks="all",
            linger_ms=0,
        )
        try:
            await asyncio.wait_for(producer.start(), self.config.kafka.connect_timeout_s)
        except (TimeoutError, KafkaConnectionError, KafkaError, OSError) as e:
            await asyncio.gather(producer.stop(), return_exceptions=True)
            raise InfrastructureUnavailable(f"cannot reach the saga log's Kafka: {e}",
                                            [self.bootstrap]) from e
        self._producer = producer

    async def stop(self) -> None:
        """Flush and disconnect."""
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()

    def partition(self, key: str) -> int:
        """The partition ``key``'s records go to."""
        return saga_partition(key, self.partitions)

    async def send(self, record: LogRecord) -> asyncio.Future[object]:
        """Queue ``record``; the returned future resolves when Kafka acknowledged it."""
        if self._producer is None:
            raise InfrastructureUnavailable("the saga log writer is not started", [self.bootstrap])
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
                f"the saga log did not acknowledge {type(record).__name__} of txn "
                f"{record.txn_id}: {e}", [self.bootstrap]
            ) from e
        return meta.partition, meta.offset  # type: ignore[attr-defined]

