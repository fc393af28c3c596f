"""What a strong read at a region waits on: its participant's progress through the
commit log and its applies.

A strong read of key k at region R (``docs/consistency.md``, "Linearizable reads")
reads the end offset e of k's commit-log partition when it starts, then waits until R's
participant has processed every record before e and every commit of k so far is
applied in R's store. :class:`ReadBarrier` is that state, kept by the participant: the
offset processed per partition, the apply of each key's last commit, the placement of
each key's last committed write.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiokafka import TopicPartition

from edgebus.commit.log import commit_partition
from edgebus.core.commit_log import Txn
from edgebus.kafka.clients import Consumer

__all__ = ["ReadBarrier"]

#: keys whose last committed placement is remembered at most (then it starts over)
_MAX_PLACEMENTS = 100_000


class ReadBarrier:
    """The participant's progress of region ``region`` on ``topic`` (``partitions``
    partitions), for strong reads."""

    def __init__(self, region: str, topic: str, partitions: int) -> None:
        self.region = region
        self.topic = topic
        self.partitions = partitions
        self.processed: dict[int, int] = {}  #: per partition: next offset to process
        self.ready = asyncio.Event()  #: set once the participant caught up at its start
        self.applying: dict[str, asyncio.Future[None]] = {}  #: key -> its last commit applied
        self.placement: dict[str, tuple[str, ...]] = {}  #: key -> placement of last commit
        self._moved = asyncio.Event()

    def moved(self) -> None:
        """The participant processed more records: wake the reads that wait."""
        moved, self._moved = self._moved, asyncio.Event()
        moved.set()

    def committed(self, txn: Txn) -> None:
        """Remember the placement of ``txn`` if it is a committed write."""
        if txn.decision is not None and txn.decision.committed and txn.begin is not None:
            if len(self.placement) > _MAX_PLACEMENTS:
                self.placement.clear()
            self.placement[txn.key] = txn.begin.placement

    async def wait(self, key: str, timeout_s: float, offsets: Consumer) -> dict[str, Any]:
        """Wait until every commit-log record of ``key``'s partition appended before now
        (its end offset, asked of ``offsets``) is processed here and every commit of
        ``key`` so far is applied here.

        Returns ``{"served": True}``, or ``served`` false with ``reason``:
        ``not_placed_here`` (with ``placement``: the key's last strong write is not
        placed in this region) or ``barrier_timeout``.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        partition = commit_partition(key, self.partitions)
        tp = TopicPartition(self.topic, partition)
        end = (await offsets.end_offsets([tp]))[tp]
        while self.processed.get(partition, -1) < end or not self.ready.is_set():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return {
                    "served": False,
                    "reason": "barrier_timeout",
                    "behind": end - self.processed.get(partition, 0),
                }
            moved = self._moved
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(moved.wait(), min(remaining, 0.05))
        applying = self.applying.get(key)
        if applying is not None and not applying.done():
            try:
                await asyncio.wait_for(asyncio.shield(applying), max(0.0, deadline - loop.time()))
            except Exception:  # (TimeoutError included)
                return {"served": False, "reason": "barrier_timeout", "behind": 0}
        placement = self.placement.get(key)
        if placement is not None and self.region not in placement:
            return {"served": False, "reason": "not_placed_here", "placement": list(placement)}
        return {"served": True, "saga_offset": end}
