"""One service per region: static group membership that rides out broker restarts and
rebalances, and stops only when another instance really holds its partitions.

Region consumers are static members (``group.instance.id`` fixed per region and
role), so a service restarted after kill -9 takes its partitions back at once. A
revocation alone proves nothing: a broker restart, a coordinator move or a session
that expired during an outage revoke the partitions too, and the member then rejoins
and gets them back (the materializer seeks to its store's positions again, the
replicator resumes from its group's committed offsets). Only Kafka's own verdict
that another member joined with the same instance id (``FENCED_INSTANCE_ID``, raised
by the consumer) stops the service, with :class:`~edgebus.errors.RegionFenced`;
from then on the listener parks any rejoin, so the fenced member never fences the
newer one back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import ConsumerRebalanceListener
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaError,
    TopicAuthorizationFailedError,
)

from edgebus.config import KafkaConfig
from edgebus.errors import RegionFenced
from edgebus.kafka.clients import Consumer, admin_client, start_consumer
from edgebus.kafka.reading import AlignedBatches
from edgebus.region.offset_commits import OffsetCommitter

__all__ = [
    "ExclusiveMember",
    "ExclusiveMembership",
    "is_fenced",
    "start_exclusive_consumer",
    "stop_consumer",
]

log = logging.getLogger("edgebus.region")

#: seconds to wait before fetching again after the group reported an error
_ERROR_BACKOFF_S = 0.5


def is_fenced(error: BaseException) -> bool:
    """Whether a consumer error is Kafka's ``FENCED_INSTANCE_ID``: another member joined
    the group with this member's ``group.instance.id`` (aiokafka raises it wrapped in a
    plain KafkaError, so the name is looked for in the chain)."""
    seen: BaseException | None = error
    while seen is not None:
        if "FencedInstanceId" in type(seen).__name__ or "FencedInstanceId" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


@dataclass(frozen=True)
class MemberOf:
    """Where a member belongs: its cluster, group and static instance id."""

    kafka: KafkaConfig
    bootstrap: str
    group: str
    instance: str


class ExclusiveMembership(ConsumerRebalanceListener):  # type: ignore[misc]
    """Rebalance listener and fetch guard of a group with one (static) member."""

    def __init__(
        self,
        what: str,
        member_of: MemberOf,
        on_assigned: Callable[[list[Any]], Awaitable[None]] | None = None,
    ) -> None:
        self.what = what
        self.member_of = member_of
        self.on_assigned = on_assigned
        self.consumer: Consumer | None = None
        #: the member id Kafka gave this member at its last assignment
        self.member_id: str | None = None
        #: set once another member holds this member's instance id
        self.fenced = False
        #: done once fenced: wakes a fetch that waits for the assignment forever (the
        #: revoked listener of a fenced member never returns, so neither would it)
        self._fenced_now: asyncio.Future[None] | None = None
        #: rebalances ridden out (revocations followed by a rejoin)
        self.rebalances = 0
        self._episode_errors = 0
        self._episode_started = 0.0

    async def on_partitions_revoked(self, revoked: Any) -> None:
        if not self.fenced and revoked and await self._taken_over():
            self.fenced = True
            log.error("%s: another member holds this region's instance id %s: stopping",
                      self.what, self.member_of.instance)
            if self._fenced_now is not None and not self._fenced_now.done():
                self._fenced_now.set_result(None)
        if self.fenced:
            await asyncio.Event().wait()  # never rejoin: the newer member keeps them
        if revoked:
            self.rebalances += 1
            log.info("%s: partitions revoked (a rebalance: broker restart, coordinator "
                     "move or expired session); rejoining", self.what)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        coordinator = getattr(self.consumer, "_coordinator", None)
        self.member_id = getattr(coordinator, "member_id", None)
        if self.on_assigned is not None:
            await self.on_assigned(list(assigned))

    async def _taken_over(self) -> bool:
        """Whether the group has a member with this member's instance id (its client
        id) but another member id: a second service for the region replaced this one.
        Unknown (the broker does not answer) counts as no: the member rejoins."""
        where = self.member_of
        try:
            async with admin_client(where.kafka, where.bootstrap, timeout_s=5) as admin:
                described = await admin.describe_consumer_groups([where.group])
        except Exception as e:  # any failure means "cannot tell"
            log.info("%s: could not describe group %s (%s); rejoining", self.what,
                     where.group, e)
            return False
        return any(
            member["client_id"] == where.instance and member["member_id"] != self.member_id
            for response in described
            for group in response.to_object()["groups"]
            for member in group["members"]
        )

    async def _unless_fenced(
        self, fetching: Awaitable[dict[Any, list[Any]]]
    ) -> dict[Any, list[Any]]:
        """``fetching``'s batch, or RegionFenced as soon as this member is fenced: a
        fetch during the rebalance that fenced it waits for an assignment that never
        comes (aiokafka's ``getmany`` has no timeout for that)."""
        if self._fenced_now is None:
            self._fenced_now = asyncio.get_running_loop().create_future()
        task = asyncio.ensure_future(fetching)
        try:
            await asyncio.wait((task, self._fenced_now), return_when=asyncio.FIRST_COMPLETED)
        except BaseException:  # cancelled: the fetch goes with it
            task.cancel()
            raise
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            self.check()
        return task.result()

    def check(self) -> None:
        """Raise RegionFenced once Kafka has fenced this member."""
        if self.fenced:
            raise RegionFenced(
                f"{self.what} was fenced: another service for this region took over (it "
                "joined with the same group.instance.id and holds the partitions now). "
                "Stopping; run one service per region (stop the other one, then restart "
                "this one)."
            )

    async def fetch(
        self, consumer: Consumer, *, timeout_ms: int, max_records: int,
        aligned: AlignedBatches | None = None,
    ) -> dict[Any, list[Any]]:
        """A batch of records (``consumer.getmany``, or ``aligned``'s batch across the
        partitions), riding out group errors: a fenced member
        raises RegionFenced; any other group error (the coordinator restarted or moved,
        a rebalance) is logged once per episode and the fetch returns nothing while the
        consumer rejoins."""
        self.check()
        try:
            batch: dict[Any, list[Any]] = await self._unless_fenced(
                aligned.fetch(consumer, timeout_ms=timeout_ms, max_records=max_records)
                if aligned is not None
                else consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
            )
        except KafkaError as e:
            if is_fenced(e):
                self.fenced = True
                self.check()
            if isinstance(e, (GroupAuthorizationFailedError, TopicAuthorizationFailedError)):
                raise  # waiting will not help: the principal lacks an ACL
            self._group_error(e)
            await asyncio.sleep(_ERROR_BACKOFF_S)
            return {}
        if batch and self._episode_errors:
            log.warning("%s: consuming again after %d group error(s) in %.1f s",
                        self.what, self._episode_errors,
                        time.monotonic() - self._episode_started)
            self._episode_errors = 0
        return batch

    def _group_error(self, error: KafkaError) -> None:
        if not self._episode_errors:
            self._episode_started = time.monotonic()
            log.warning("%s: the consumer group reported %s; rejoining and resuming from "
                        "the stored positions", self.what, str(error).splitlines()[0][:200])
        self._episode_errors += 1


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
    membership = ExclusiveMembership(what, MemberOf(kafka, bootstrap, group, instance),
                                     on_assigned)
    membership.consumer = consumer
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
