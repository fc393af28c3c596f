"""Strong writes from the SDK: two-phase commit across the write's placement.

The write is placed and encoded like any other (:class:`~edgebus.sdk.writes.Writer`),
then submitted to the commit log as a BEGIN; a coordinator decides (one embedded in
the bus by default, ``strong.embedded_coordinator``, or ``edgebus coordinator run``
processes) and the client waits for the decision (:mod:`edgebus.commit.client`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edgebus.config import EdgeConfig
from edgebus.core.commit_log import BeginRecord
from edgebus.core.envelope import Operation, new_event_id
from edgebus.core.hlc import HLCTimestamp
from edgebus.sdk.lazily import Lazily
from edgebus.sdk.options import WriteOptions
from edgebus.sdk.results import CommitResult
from edgebus.sdk.sessions import BusSession
from edgebus.sdk.writes import Writer
from edgebus.wire.event_codec import encode_payload

if TYPE_CHECKING:  # imported when the first strong write starts them
    from edgebus.commit.client import StrongClient
    from edgebus.commit.coordinator import Coordinator

__all__ = ["StrongWrites"]


@dataclass(frozen=True)
class _Started:
    client: StrongClient
    coordinator: Coordinator | None


class StrongWrites:
    """The strong writes of one EdgeBus: its commit-log client and, with
    ``strong.embedded_coordinator``, a coordinator in the coordinators' group."""

    def __init__(
        self, config: EdgeConfig, client_id: str, clusters: dict[str, str], writer: Writer,
        session: BusSession,
    ) -> None:
        self.config = config
        self.client_id = client_id
        self.writer = writer
        self.session = session
        self._bootstrap = clusters[config.strong_log_region]
        self._parts: Lazily[_Started] = Lazily(self._start)

    @property
    def coordinator(self) -> Coordinator | None:
        """The embedded coordinator, once started."""
        parts = self._parts.value
        return parts.coordinator if parts is not None else None

    async def _start(self) -> _Started:
        from edgebus.commit.client import StrongClient
        from edgebus.commit.coordinator import Coordinator

        client = StrongClient(self.config, self._bootstrap, self.client_id)
        await client.start()
        coordinator = None
        if self.config.strong.embedded_coordinator:
            coordinator = Coordinator(self.config, self._bootstrap)
            try:
                await coordinator.start()
            except BaseException:
                await client.stop()
                raise
        return _Started(client, coordinator)

    async def close(self) -> None:
        """Stop the client and the embedded coordinator."""
        await self._parts.stop(lambda parts: (parts.client, parts.coordinator))

    async def commit(self, key: str, data: Any, keywords: Mapping[str, Any]) -> CommitResult:
        """Commit a write in every region of its placement, or in none."""
        options = WriteOptions.of(keywords, "commit")
        timeout = self.config.strong.timeout_ms if options.timeout_ms is None else (
            options.timeout_ms
        )
        if options.session is not None:
            await self.session.check(options.session)
        prepared = self.writer.prepare(key, data, options)
        client = (await self._parts.get()).client
        now_ms = time.time_ns() // 1_000_000
        hlc = prepared.hlc
        begin = BeginRecord(
            txn_id=new_event_id(),
            key=key,
            operation=prepared.operation.value,
            payload=encode_payload(data) if prepared.operation is not Operation.DELETE else None,
            placement=prepared.placement.regions,
            classification=prepared.classification,
            expected_version=options.expected_version,
            deadline_ms=now_ms + timeout,
            hlc=(hlc.wall_ms << 16) | hlc.logical,
            writer=self.client_id,
            time_ms=now_ms,
        )
        decision = await client.commit(begin)
        outcome = decision.outcome
        if decision.committed:
            self.session.observe_hlc(decision.hlc)
        return CommitResult(
            txn_id=begin.txn_id,
            key=key,
            committed=decision.committed,
            reason=outcome.reason,
            conflict=outcome.conflict,
            version=decision.version,
            placement=begin.placement,
            classification=begin.classification,
            hlc=HLCTimestamp(decision.hlc >> 16, decision.hlc & 0xFFFF),
            session_token=self.session.current.encode(),
            decided_by=decision.writer,
        )
