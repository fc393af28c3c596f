"""The commit log as ``edgebus bench strong`` reads it: the participants'
acknowledgements between batches (so that no batch pays for the one before), and every
record read back after the run (the stages of each measured commit)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence

from aiokafka import TopicPartition

from edgebus.bench.children import READY_TIMEOUT_S
from edgebus.bench.strong_figures import LoggedRecord
from edgebus.config import EdgeConfig
from edgebus.core.commit_log import AckRecord
from edgebus.errors import DecodeError, EdgebusError
from edgebus.kafka.clients import Consumer, start_consumer, stop_quietly
from edgebus.kafka.reading import seek_to_first, seek_to_last
from edgebus.kafka.topics import commit_log_topic
from edgebus.wire.commit_log import H_SAGA, decode_saga_record

__all__ = ["AckWatch", "read_commit_log"]


class AckWatch:
    """Reads the ACKs of the commit log between batches (paused while one runs): which
    participants have applied which transactions."""

    def __init__(self, config: EdgeConfig, bootstrap: str) -> None:
        self.config = config
        self.bootstrap = bootstrap
        self.topic = commit_log_topic(config.strong_log_region)
        self.partitions = config.kafka.partitions
        self._consumer: Consumer | None = None
        self.expected: set[str] = set()  #: committed txns not yet acknowledged by all
        self._acked: dict[str, set[str]] = {}

    async def start(self) -> None:
        """From the log's current end, paused."""
        self._consumer = await start_consumer(
            self.config.kafka, self.bootstrap, "log", client_id="edgebus-bench-strong-acks"
        )
        tps = [TopicPartition(self.topic, p) for p in range(self.partitions)]
        self.consumer.assign(tps)
        await seek_to_last(self.consumer, tps)
        self.consumer.pause(*tps)

    @property
    def consumer(self) -> Consumer:
        """The started consumer of the commit log."""
        assert self._consumer is not None, "start() first"
        return self._consumer

    async def stop(self) -> None:
        if self._consumer is not None:
            await stop_quietly(self._consumer)

    async def wait(self, participants: Sequence[str], timeout_s: float) -> None:
        """Until every participant acknowledged every expected transaction."""
        tps = self.consumer.assignment()
        self.consumer.resume(*tps)
        deadline = time.monotonic() + timeout_s
        try:
            while self.expected:
                if time.monotonic() > deadline:
                    raise EdgebusError(
                        f"{len(self.expected)} committed strong writes were not applied by "
                        f"every region {timeout_s:.0f} s after the batch: are the region "
                        "services overloaded?"
                    )
                batch = await self.consumer.getmany(timeout_ms=200, max_records=10_000)
                for records in batch.values():
                    for record in records:
                        if (H_SAGA, b"ack") not in (record.headers or ()):
                            continue
                        with contextlib.suppress(DecodeError):
                            ack = decode_saga_record(record.value)
                            if isinstance(ack, AckRecord):
                                self._acked.setdefault(ack.txn_id, set()).add(ack.region)
                done = {t for t in self.expected
                        if all(p in self._acked.get(t, ()) for p in participants)}
                self.expected -= done
                for t in done:
                    self._acked.pop(t, None)
        finally:
            self.consumer.pause(*tps)


async def read_commit_log(config: EdgeConfig, bootstrap: str) -> dict[str, list[LoggedRecord]]:
    """Every record of the commit log, by transaction id (in log order)."""
    consumer = await start_consumer(config.kafka, bootstrap, "reader")
    out: dict[str, list[LoggedRecord]] = {}
    try:
        tps = [TopicPartition(commit_log_topic(config.strong_log_region), p)
               for p in range(config.kafka.partitions)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await seek_to_first(consumer, tps)
        remaining = {tp for tp in tps if ends[tp] > 0}
        deadline = time.monotonic() + READY_TIMEOUT_S
        while remaining and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
            for tp, records in batch.items():
                for record in records:
                    with contextlib.suppress(DecodeError):
                        decoded = decode_saga_record(record.value)
                        out.setdefault(decoded.txn_id, []).append(
                            LoggedRecord(decoded, record.timestamp))
                    if record.offset + 1 >= ends[tp]:
                        remaining.discard(tp)
    finally:
        await consumer.stop()
    return out
