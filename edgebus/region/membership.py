"""One service per region: static group membership that stops, rather than fights,
when another instance takes over.

Region consumers are static members (``group.instance.id`` fixed per region and
role), so a service restarted after kill -9 takes its partitions back at once. When a
second service starts with the same instance id, Kafka fences the first; left alone,
aiokafka's first member would rejoin and fence the second, and so on. Instead, when
partitions this member held are revoked, the listener parks the rejoin and the service
stops with :class:`~edgebus.errors.RegionFenced`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiokafka import ConsumerRebalanceListener

from edgebus.config import KafkaConfig
from edgebus.errors import RegionFenced
from edgebus.kafka.clients import Consumer, start_consumer
from edgebus.region.offset_commits import OffsetCommitter

__all__ = ["ExclusiveMember", "ExclusiveMembership", "start_exclusive_consumer", "stop_consumer"]


class ExclusiveMembership(ConsumerRebalanceListener):  # type: ignore[misc]
    """Rebalance listener for a group with exactly one (static) member."""

    def __init__(
        self, what: str, on_assigned: Callable[[list[Any]], Awaitable[None]] | None = None
    ) -> None:
        self.what = what
        self.on_assigned = on_assigned
        self.lost = asyncio.Event()

    async def on_partitions_revoked(self, revoked: Any) -> None:
        if not revoked:
            return  # the first join
        self.lost.set()
        await asyncio.Event().wait()  # never rejoin: the service is stopping

    async def on_partitions_assigned(self, assigned: Any) -> None:
        if self.on_assigned is not None:
            await self.on_assigned(list(assigned))

    def check(self) -> None:
        """Raise RegionFenced once this member has lost its partitions."""
        if self.lost.is_set():
            raise RegionFenced(
                f"{self.what} lost its partitions: another service for this region took "
                "over (same group.instance.id), or this one stalled past the session "
                "timeout. Stopping; run one service per region, then restart it."
            )


async def start_exclusive_consumer(
    kafka: KafkaConfig,
    bootstrap: str,
    group: str,
    instance: str,
    topics: Sequence[str],
    what: str,
    on_assigned: Callable[[list[Any]], Awaitable[None]] | None = None,
) -> tuple[Consumer, ExclusiveMembership]:
    """A started consumer subscribed to ``topics`` as the static member ``instance`` of
    ``group``, with the fetch settings of region services (no auto-commit; small fetch
    wait, so that new records are handed over at once)."""
    consumer = await start_consumer(
        kafka, bootstrap, "region", group_id=group, group_instance_id=instance,
        client_id=instance,
    )
    membership = ExclusiveMembership(what, on_assigned)
    consumer.subscribe(list(topics), listener=membership)
    return consumer, membership


async def stop_consumer(consumer: Consumer) -> None:
    """Stop a region consumer, bounded: a fenced one's coordinator may be parked."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(consumer.stop(), 10)


class ExclusiveMember:
    """Base of a service that consumes as the exclusive member of its group (the
    materializer, a replicator): its consumer and offset committer once started, and
    :meth:`stop`."""

    _consumer: Consumer | None = None
    _committer: OffsetCommitter | None = None

    async def stop(self) -> None:
        """Leave the group: commit the offsets noted so far (best effort), then stop the
        consumer. What the service applied or copied stays (the materializer's store
        keeps what it committed)."""
        if self._committer is not None:
            await self._committer.close()
            self._committer = None
        if self._consumer is not None:
            await stop_consumer(self._consumer)
            self._consumer = None
