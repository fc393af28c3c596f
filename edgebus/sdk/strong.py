"""Strong writes from the SDK: two-phase commit across the write's placement.

The write is placed and encoded like any other (:class:`~edgebus.sdk.writes.Writer`);
its payload is staged in every placement region's own topic ``edgebus.<region>.staged``
(never in the commit log, which may lie in a region the data may not be held in), then
the write is submitted to the commit log as a BEGIN without payload, carrying the
staged payload's digest (:mod:`edgebus.core.staged_write`); a coordinator decides and
the client waits for the decision (:mod:`edgebus.commit.client`). Which coordinator is
``strong.coordinator``'s choice: ``auto`` (default) the ``edgebus coordinator run``
processes when one runs, else one bus among those writing strongly
(:class:`~edgebus.commit.coordinator.AutoCoordinator`: this bus looks again whenever a
write of its own waits for its decision, and takes over when nobody coordinates);
``embedded`` a coordinator in this bus; ``service`` only the processes.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edgebus.config import EdgeConfig
from edgebus.core.commit_log import BeginRecord
from edgebus.core.envelope import Operation, new_event_id
from edgebus.core.hlc import HLCTimestamp
from edgebus.core.staged_write import SALT_BYTES, StagedWrite
from edgebus.sdk.lazily import Lazily
from edgebus.sdk.options import WriteOptions
from edgebus.sdk.results import CommitResult
from edgebus.sdk.sessions import BusSession
from edgebus.sdk.writes import Writer
from edgebus.wire.event_codec import encode_payload
from edgebus.wire.headers import H_DECLASSIFIED

if TYPE_CHECKING:  # imported when the first strong write starts them
    from edgebus.commit.client import StrongClient
    from edgebus.commit.coordinator import AutoCoordinator, Coordinator

__all__ = ["StrongWrites"]


@dataclass(frozen=True)
class _Started:
    client: StrongClient
    embedded: Coordinator | None  #: strong.coordinator = "embedded"
    auto: AutoCoordinator | None  #: strong.coordinator = "auto"


class StrongWrites:
    """The strong writes of one EdgeBus: its commit-log client and, by
    ``strong.coordinator``, a coordinator in the coordinators' group (``embedded``) or
    one that joins it only while no other coordinator runs (``auto``)."""

    def __init__(
        self,
        config: EdgeConfig,
        client_id: str,
        clusters: dict[str, str],
        writer: Writer,
        session: BusSession,
    ) -> None:
        self.config = config
        self.client_id = client_id
        self.writer = writer
        self.session = session
        self._bootstrap = clusters[config.strong_log_region]
        self._clusters = clusters
        self._parts: Lazily[_Started] = Lazily(self._start)

    @property
    def coordinator(self) -> Coordinator | None:
        """The coordinator running in this bus now, if any."""
        parts = self._parts.value
        if parts is None:
            return None
        return parts.auto.coordinator if parts.auto is not None else parts.embedded

    async def _start(self) -> _Started:
        from edgebus.commit.client import StrongClient
        from edgebus.commit.coordinator import AutoCoordinator, Coordinator
        from edgebus.kafka import log_noise

        log_noise.install()  # the group's rebalances never stream to a user's terminal
        mode = self.config.strong.coordinator
        embedded = (
            Coordinator(self.config, self._bootstrap, kind="embedded")
            if mode == "embedded"
            else None
        )
        auto = AutoCoordinator(self.config, self._bootstrap) if mode == "auto" else None
        client = StrongClient(
            self.config,
            self._bootstrap,
            self.client_id,
            on_slow=auto.nudge if auto is not None else None,
            clusters=self._clusters,
        )
        await client.start()
        try:
            for coordinator in (embedded, auto):
                if coordinator is not None:
                    await coordinator.start()
        except BaseException:
            for part in (client, embedded, auto):
                if part is not None:
                    with contextlib.suppress(Exception):
                        await part.stop()
            raise
        return _Started(client, embedded, auto)

    async def close(self) -> None:
        """Stop the client and the coordinator in this bus."""
        await self._parts.stop(lambda parts: (parts.client, parts.embedded, parts.auto))

    async def commit(self, key: str, data: Any, keywords: Mapping[str, Any]) -> CommitResult:
        """Commit a write in every region of its placement, or in none."""
        options = WriteOptions.of(keywords, "commit")
        timeout = options.timeout_ms
        if timeout is None:
            timeout = self.config.strong.timeout_ms
        if options.session is not None:
            await self.session.check(options.session)
        prepared = self.writer.prepare(key, data, options)
        client = (await self._parts.get()).client
        now_ms = time.time_ns() // 1_000_000
        hlc = prepared.hlc
        txn_id = new_event_id()
        staged = None
        if prepared.operation is not Operation.DELETE:
            payload = encode_payload(data) or b"null"  # (a set of None: JSON null)
            staged = StagedWrite(
                txn_id,
                key,
                prepared.operation.value,
                payload,
                dict(prepared.encoded.headers).get(H_DECLASSIFIED),
                secrets.token_bytes(SALT_BYTES),
                now_ms + timeout,
                self.client_id,
                now_ms,
            )
        begin = BeginRecord(
            txn_id=txn_id,
            key=key,
            operation=prepared.operation.value,
            payload=None,  # staged in the participants' own regions, never in the log
            placement=prepared.placement.regions,
            classification=prepared.classification,
            expected_version=options.expected_version,
            deadline_ms=now_ms + timeout,
            hlc=(hlc.wall_ms << 16) | hlc.logical,
            writer=self.client_id,
            time_ms=now_ms,
            staged_digest=staged.digest if staged is not None else None,
        )
        decision = await client.commit(begin, staged)
        outcome = decision.outcome
        if decision.committed:
            self.session.observe_hlc(decision.hlc)
            # reads of the key fall back only to where it was committed
            self.session.remember_placement(key, begin.placement, decision.hlc)
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
