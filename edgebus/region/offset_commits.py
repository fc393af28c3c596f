"""Group offset commits off the data path.

A region's materializer keeps its positions in its store (the truth) and commits them
to its Kafka group only so that standard tools show lag; the replicator commits source
offsets after their copies were acknowledged (at-least-once; the target's origin
frontier removes the duplicates a late commit causes). Neither needs to wait for the
commit before handling the next batch: :class:`OffsetCommitter` commits the newest
offsets it was given at most every ``interval_s``, in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiokafka.errors import KafkaError

__all__ = ["OffsetCommitter"]

log = logging.getLogger("edgebus.region")


class OffsetCommitter:
    """Commits the newest noted offsets of one consumer, in the background."""

    def __init__(self, consumer: Any, interval_s: float = 0.5) -> None:
        self.consumer = consumer
        self.interval_s = interval_s
        self._pending: dict[Any, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._commit_running: asyncio.Future[None] | None = None

    def note(self, offsets: dict[Any, int]) -> None:
        """Offsets (next to consume) that may be committed now."""
        self._pending.update(offsets)
        if self._task is None:
            self._task = asyncio.ensure_future(self._loop())
        self._wake.set()

    async def _loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            # shielded: cancelling mid-commit would leave aiokafka's commit task to
            # fail unobserved ("Task exception was never retrieved") once we disconnect
            self._commit_running = asyncio.ensure_future(self._commit())
            try:
                await asyncio.shield(self._commit_running)
            finally:
                if self._commit_running.done():
                    self._commit_running = None
            await asyncio.sleep(self.interval_s)

    async def _commit(self) -> None:
        if not self._pending:
            return
        offsets, self._pending = self._pending, {}
        try:
            await self.consumer.commit(offsets)
        except KafkaError as e:  # the next commit carries newer offsets anyway
            log.info("offset commit failed (will retry with newer offsets): %s",
                     str(e).splitlines()[0][:200])
            for tp, offset in offsets.items():
                self._pending.setdefault(tp, offset)

    async def close(self) -> None:
        """Stop the background task and commit what is pending (best effort)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
            self._task = None
        if self._commit_running is not None:  # let a commit in flight finish first
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self._commit_running, 5)
            self._commit_running = None
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._commit(), 5)
