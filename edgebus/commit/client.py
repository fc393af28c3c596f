"""The client side of a strong write: stage the payload, append the BEGIN, wait for the
first decision.

A write's payload never goes to the commit log (it lies in the log region's cluster,
which may be one the data may not be held in): the client first stages it in every
participant region's own topic (:class:`~edgebus.commit.staging.StagedWriter`, Kafka
acknowledges each) and then appends a BEGIN without payload, carrying the staged
payload's digest (:mod:`edgebus.core.staged_write`).

A :class:`StrongClient` reads every partition of the commit log from where it was when
it started and folds the records of the transactions it began (BEGIN, votes,
decisions: it skips other keys' records and acknowledgements without decoding them),
as every reader does (:class:`edgebus.core.commit_log.PartitionLog`): it resolves the
future of each transaction with the first decision the fold takes. A COMMIT without a
yes vote of every participant before it (forged: no coordinator wrote it) is refused
and logged; the write goes on waiting for the coordinator's decision. Its BEGIN is
appended after the client started reading, and votes and decisions follow it in its
key's partition, so the fold sees them all. While a write waits longer than
:data:`SLOW_S`, it calls ``on_slow`` every :data:`SLOW_S` (the SDK's ``auto``
coordinator then looks whether any coordinator runs); it never waits past the
deadline plus ``strong.decision_grace_ms``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping

from aiokafka import ConsumerRecord

from edgebus.commit.log import (
    CommitLogWriter,
    commit_partitions,
    decode_record,
    kind_of,
    start_consumer,
)
from edgebus.commit.staging import StagedWriter
from edgebus.config import EdgeConfig
from edgebus.core.commit_log import BeginRecord, DecisionRecord, PartitionLog
from edgebus.core.staged_write import StagedWrite
from edgebus.errors import StrongOutcomeUnknown
from edgebus.kafka.clients import Consumer

__all__ = ["SLOW_S", "StrongClient"]

log = logging.getLogger(__name__)

_FOLDED = (b"begin", b"vote", b"decision")  #: what tells a write's decision

#: a write waiting this long for its decision is slow: ``on_slow`` is called, and again
#: after each further SLOW_S
SLOW_S = 1.0


class StrongClient:
    """Begins strong writes and learns their decisions."""

    def __init__(
        self,
        config: EdgeConfig,
        bootstrap: str,
        client_id: str,
        *,
        on_slow: Callable[[], None] | None = None,
        clusters: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config
        self.on_slow = on_slow
        self.bootstrap = bootstrap
        self.client_id = client_id
        self._writer = CommitLogWriter(config, bootstrap, f"{client_id}-saga")
        self._staging = StagedWriter(config, client_id, clusters)
        self._consumer: Consumer | None = None
        self._waiting: dict[str, asyncio.Future[DecisionRecord]] = {}
        self._keys: dict[bytes, int] = {}  #: key -> how many of its writes wait
        self._logs: dict[int, PartitionLog] = {}  #: the fold of the waiting writes' records
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Connect and start reading decisions from the log's current end."""
        await self._writer.start()
        try:
            consumer = await start_consumer(
                self.config, self.bootstrap, client_id=f"{self.client_id}-saga"
            )
            tps = commit_partitions(self.config)
            consumer.assign(tps)
            ends = await consumer.end_offsets(tps)
            for tp in tps:
                consumer.seek(tp, ends[tp])
        except BaseException:
            await self._writer.stop()
            raise
        self._consumer = consumer
        self._task = asyncio.create_task(self._read(), name="strong client decisions")

    async def stop(self) -> None:
        """Stop reading; writes waiting for a decision get StrongOutcomeUnknown."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                await self._consumer.stop()
        await self._writer.stop()
        await self._staging.stop()
        for txn_id, future in self._waiting.items():
            if not future.done():
                future.set_exception(
                    StrongOutcomeUnknown(
                        f"the client closed before txn {txn_id} was decided; read the key "
                        "strongly (or `edgebus saga show`) to learn its outcome",
                        txn_id,
                    )
                )

    async def commit(self, begin: BeginRecord, staged: StagedWrite | None = None) -> DecisionRecord:
        """Stage ``staged`` (the payload of a staged ``begin``) in every participant
        region, append ``begin`` and return the transaction's decision.

        Raises InfrastructureUnavailable when a participant region's Kafka does not take
        the staged payload (no BEGIN is appended: nothing was begun), StrongOutcomeUnknown
        when no decision is in the log by the deadline plus ``strong.decision_grace_ms``
        (no coordinator running).
        """
        future: asyncio.Future[DecisionRecord] = asyncio.get_running_loop().create_future()
        self._waiting[begin.txn_id] = future
        key = begin.key.encode("utf-8", "surrogatepass")
        self._keys[key] = self._keys.get(key, 0) + 1
        try:
            if staged is not None:
                await self._staging.stage(staged, begin.placement)
            await self._writer.append(begin)
            wait_s = (
                begin.deadline_ms - time.time() * 1000 + self.config.strong.decision_grace_ms
            ) / 1000
            try:
                return await self._decision(future, wait_s)
            except TimeoutError:
                raise StrongOutcomeUnknown(self._no_decision(begin), begin.txn_id) from None
        finally:
            self._waiting.pop(begin.txn_id, None)
            if self._keys.get(key, 0) > 1:
                self._keys[key] -= 1
            else:
                self._keys.pop(key, None)
            for plog in self._logs.values():
                plog.txns.pop(begin.txn_id, None)

    async def _decision(
        self, future: asyncio.Future[DecisionRecord], wait_s: float
    ) -> DecisionRecord:
        """The decision, within ``wait_s`` (TimeoutError after), calling ``on_slow``
        every SLOW_S while it waits."""
        loop = asyncio.get_running_loop()
        end = loop.time() + max(0.0, wait_s)
        while True:
            left = end - loop.time()
            step = left if self.on_slow is None else min(SLOW_S, left)
            try:
                return await asyncio.wait_for(asyncio.shield(future), max(0.0, step))
            except TimeoutError:
                if step >= left:
                    raise
                if self.on_slow is not None:
                    self.on_slow()

    def _no_decision(self, begin: BeginRecord) -> str:
        """What StrongOutcomeUnknown says: why there may be no decision, what to do."""
        strong = self.config.strong
        if strong.coordinator == "service":
            where = (
                "is a coordinator running? Start one with `edgebus coordinator run`, "
                'or set strong.coordinator to "auto" to have clients run one while '
                "none runs"
            )
        else:
            runs = "while no other runs" if strong.coordinator == "auto" else "always"
            where = (
                f'strong.coordinator = "{strong.coordinator}" runs a coordinator in '
                f"this client {runs}: is the commit log's Kafka reachable? "
                "`edgebus coordinator run` starts one of its own"
            )
        return (
            f"txn {begin.txn_id} on key {begin.key!r} has no decision "
            f"{strong.decision_grace_ms} ms past its deadline: {where}. A coordinator "
            "that starts decides it (commit if every participant voted yes, else abort); "
            "`edgebus saga show` tells its outcome, a strong read of the key its effect"
        )

    async def _read(self) -> None:
        consumer = self._consumer
        if consumer is None:
            return  # stopped before it ran
        while True:
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            if not self._waiting:
                continue
            for records in batch.values():
                for record in records:
                    self._take(record)

    def _take(self, record: ConsumerRecord[bytes, bytes]) -> None:
        """Fold ``record`` if it belongs to a waiting write; resolve the write once the
        fold holds its decision."""
        if record.key not in self._keys or kind_of(record) not in _FOLDED:
            return
        decoded = decode_record(record)
        if decoded is None or decoded.txn_id not in self._waiting:
            return
        plog = self._logs.setdefault(record.partition, PartitionLog())
        txn = plog.fold(record.offset, decoded)
        if (refused := plog.last_refused) is not None:
            log.warning(
                "commit log %d:%d: COMMIT of txn %s by %r refused, the write waits "
                "for its coordinator's decision: %s",
                record.partition,
                record.offset,
                decoded.txn_id,
                decoded.writer,
                refused.reason,
            )
        future = self._waiting[decoded.txn_id]
        if txn is not None and txn.decision is not None and not future.done():
            future.set_result(txn.decision)
