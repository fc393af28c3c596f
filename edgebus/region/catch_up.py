"""A one-shot catch-up: the origin copies into a target region what the target lacks
of the origin's own events (``POST /v1/repair``, ``edgebus repair``).

Replication stays decided at the origin (invariant 7): region B being repaired never
reads A's topic; it tells A where its frontier for each of A's streams stands, and A's
service reads its own topic from there and pushes the copies B may hold, exactly as its
replicator does (:class:`~edgebus.region.copier.Copier`: the same decision, the same
headers, a replicator watermark after a partition's tail of events placed elsewhere,
refusals dead-lettered in A's own topic).

:func:`copy_missing` reads each named partition of ``edgebus.A.events`` with a plain
assigned consumer (no consumer group) from its start to the end offset taken when the
catch-up began, sends the copies, waits until the target's cluster acknowledged all of
them, and returns a :class:`CatchUpReport`: records examined, copied, refused,
watermarks, and per partition the range read and ``reach``, the highest origin offset
the target's frontier for that stream reaches once the copies are applied (what a
repair waits for, :mod:`edgebus.sdk.repair`).

It copies even while replication into the target is paused (``edgebus region
pause-replication``): a repair is an explicit operator action, and a pause stops only
the continuous replicators.

Why a catch-up racing the live replicator neither loses nor double-applies an event.
The target's causal gate treats its streams as FIFO: a copy of offset X passes every
position below X of its stream that it has not seen, as events placed elsewhere. That
is sound as long as every copy of offset X lands in the target's topic after a copy of
every earlier event of the stream placed there. Each sender (the replicator, each
catch-up) copies one deterministic set (:func:`copy_decision`) in increasing offset
order through one idempotent producer, from a start below which everything placed in
the target is already in the target's topic: the replicator resumes from its group's
committed offsets (committed only once the target acknowledged the copies), and a
catch-up starts no later than those committed offsets (:func:`plan_starts` lowers a
start past them), so a caller that names a start too far ahead cannot make the target
skip events. Interleaving two such in-order sequences keeps the property. An event
copied by both is applied once: the second copy's origin position is at or below the
target's frontier (or its last buffered unit), and the target's materializer drops it
as a duplicate.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from edgebus.config import EdgeConfig, KafkaConfig
from edgebus.errors import InfrastructureUnavailable, InvalidInput
from edgebus.kafka.acl_plan import replicator_group_prefix
from edgebus.kafka.clients import Producer, admin_client, reader
from edgebus.kafka.dead_letters import send_dead_letters
from edgebus.kafka.reading import records_below, wait_for_leaders
from edgebus.kafka.topics import events_topic
from edgebus.region.copier import Copier, Refusal

__all__ = [
    "MAX_OFFSET",
    "REPAIR_EXAMPLE",
    "CatchUpReport",
    "check_repair",
    "copy_missing",
    "parse_repair_body",
    "plan_starts",
]

#: the largest offset a request may name (Kafka offsets are signed 64-bit)
MAX_OFFSET = 2**63 - 1
#: the longest partition number a request may spell (config partitions are <= 1000)
_MAX_PARTITION_DIGITS = 4
#: what ``POST /v1/repair`` takes
REPAIR_EXAMPLE = '{"into": "eu-west-1", "from": {"0": 120, "1": 98}}'
#: records handed to the copier at once (one partition's run of a fetch)
CHUNK_RECORDS = 5000
#: copies sent before their acknowledgements are awaited
MAX_UNACKNOWLEDGED = 20_000
#: seconds without a record, while partitions are not read to their end, before failing
STALL_S = 30.0


@dataclass
class CatchUpReport:
    """What :func:`copy_missing` did (partitions of the origin's topic as keys)."""

    origin: str
    target: str
    examined: int = 0
    copied: int = 0
    refused: int = 0
    watermarks: int = 0
    #: the first offset read per partition (the requested start, lowered to what the
    #: replicator has copied for sure, raised to the partition's first offset)
    starts: dict[int, int] = field(default_factory=dict)
    #: the end offset per partition when the catch-up began (read up to, exclusive)
    ends: dict[int, int] = field(default_factory=dict)
    #: per partition, the highest origin offset the target's frontier for that stream
    #: reaches once the copies are applied (partitions where nothing reaches it: absent)
    reach: dict[int, int] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (partitions as strings)."""
        def by_partition(offsets: Mapping[int, int]) -> dict[str, int]:
            return {str(p): o for p, o in sorted(offsets.items())}

        return {
            "origin": self.origin,
            "target": self.target,
            "examined": self.examined,
            "copied": self.copied,
            "refused": self.refused,
            "watermarks": self.watermarks,
            "starts": by_partition(self.starts),
            "ends": by_partition(self.ends),
            "reach": by_partition(self.reach),
            "seconds": round(self.seconds, 3),
        }


def parse_repair_body(
    body: Mapping[str, Any], origin: str, config: EdgeConfig
) -> tuple[str, dict[int, int]]:
    """``(into, starts)`` from the JSON body of ``POST /v1/repair`` (see
    :data:`REPAIR_EXAMPLE`); InvalidInput, saying what is wrong, for anything else."""
    into, given = body.get("into"), body.get("from")
    if not isinstance(into, str):
        raise InvalidInput(
            f'"into" must be the name of the region to repair, e.g. {REPAIR_EXAMPLE}'
        )
    if not isinstance(given, dict):
        raise InvalidInput(
            '"from" must be an object of partition -> first offset to copy, e.g. '
            f"{REPAIR_EXAMPLE}"
        )
    starts: dict[int, int] = {}
    for key, offset in given.items():
        if not (isinstance(key, str) and key.isascii() and key.isdigit()
                and len(key) <= _MAX_PARTITION_DIGITS):
            raise InvalidInput(
                f'"from" names partition {str(key)[:40]!r}: partitions are numbers 0 to '
                f"{config.kafka.partitions - 1}"
            )
        partition = int(key)
        if partition in starts:
            raise InvalidInput(f'"from" names partition {partition} twice ({key!r})')
        if isinstance(offset, bool) or not isinstance(offset, int):
            raise InvalidInput(
                f'"from" gives partition {partition} the offset {str(offset)[:40]!r}: '
                "offsets are integers, 0 or more"
            )
        starts[partition] = offset
    return into, check_repair(origin, into, starts, config)


def check_repair(
    origin: str, into: str, starts: Mapping[int, int], config: EdgeConfig
) -> dict[int, int]:
    """``starts`` as a dict once checked: ``into`` is a configured region other than
    ``origin``, at least one partition is named, every partition exists and every offset
    is 0 or more (InvalidInput otherwise)."""
    if into not in config.regions or into == origin:
        others = [r for r in config.regions if r != origin]
        raise InvalidInput(
            f"into={into[:60]!r}: name the region to repair, another configured region "
            f"than {origin} ({', '.join(others)})"
        )
    if not starts:
        raise InvalidInput(
            f'"from" names no partition: give the first offset to copy of each, e.g. '
            f"{REPAIR_EXAMPLE}"
        )
    count = config.kafka.partitions
    for partition, offset in starts.items():
        if not 0 <= partition < count:
            raise InvalidInput(
                f"partition {partition} does not exist: {events_topic(origin)} has "
                f"partitions 0 to {count - 1}"
            )
        if not 0 <= offset <= MAX_OFFSET:
            raise InvalidInput(
                f"partition {partition}: offset {offset} is out of range (0 to {MAX_OFFSET})"
            )
    return dict(starts)


def plan_starts(
    requested: Mapping[int, int],
    replicated: Mapping[int, int],
    firsts: Mapping[int, int],
) -> dict[int, int]:
    """Where to start reading each requested partition: the requested offset, lowered
    to ``replicated[p]`` (the replicator's committed offset: everything before it was
    acknowledged by the target; no commit means the replicator starts, and so
    guarantees nothing before, at the partition's first offset), and never before the
    partition's first offset ``firsts[p]`` (what retention deleted is gone)."""
    out: dict[int, int] = {}
    for partition, wanted in requested.items():
        first = firsts.get(partition, 0)
        floor = replicated.get(partition, first)
        out[partition] = max(first, min(wanted, floor))
    return out


async def copy_missing(
    config: EdgeConfig,
    origin: str,
    target: str,
    origin_bootstrap: str,
    starts: Mapping[int, int],
    target_producer: Producer,
    origin_producer: Producer,
) -> CatchUpReport:
    """Copy into ``target`` the records of ``origin``'s topic it may hold, for each
    partition of ``starts`` from that offset (see :func:`plan_starts`) up to the end
    offset read now; dead-letter refusals in the origin's topic; wait for every
    acknowledgement. ``starts`` must have passed :func:`check_repair`."""
    began = time.monotonic()
    report = CatchUpReport(origin, target)
    topic = events_topic(origin)
    tps = [TopicPartition(topic, p) for p in sorted(starts)]
    replicated = await _replicated_through(config.kafka, origin_bootstrap, origin, target, tps)
    copier = Copier(origin, target, config, target_producer)
    async with reader(config.kafka, origin_bootstrap) as consumer:
        await wait_for_leaders(consumer, tps)
        try:
            firsts = await consumer.beginning_offsets(tps)
            ends = await consumer.end_offsets(tps)
        except KafkaError as e:
            raise _unreachable(origin_bootstrap, f"the offsets of {topic}", e) from e
        report.ends = {tp.partition: end for tp, end in ends.items()}
        report.starts = plan_starts(
            starts, replicated, {tp.partition: o for tp, o in firsts.items()}
        )
        wanted = {tp: ends[tp] for tp in tps}
        begin = {tp: report.starts[tp.partition] for tp in tps}
        records = records_below(consumer, wanted, begin, stall_s=STALL_S,
                                bootstrap=origin_bootstrap)
        pending: list[asyncio.Future[Any]] = []
        async for partition, chunk in _chunks(records):
            report.examined += len(chunk)
            sent = await copier.copy_records(partition, chunk)
            pending.extend(sent.futures)
            report.copied += sent.copied
            report.watermarks += sent.watermarks
            if sent.reach is not None:
                report.reach[partition] = sent.reach
            if sent.refused:
                report.refused += len(sent.refused)
                await _dead_letters(origin_producer, origin, sent.refused, target)
            if len(pending) >= MAX_UNACKNOWLEDGED:
                await _acknowledged(pending, target, report)
                pending = []
        await _acknowledged(pending, target, report)
    report.seconds = time.monotonic() - began
    return report


async def _chunks(
    records: AsyncIterator[ConsumerRecord[bytes, bytes]],
) -> AsyncIterator[tuple[int, list[ConsumerRecord[bytes, bytes]]]]:
    """Runs of consecutive records of one partition (at most CHUNK_RECORDS each), in
    the order read: each partition's records stay in offset order."""
    chunk: list[ConsumerRecord[bytes, bytes]] = []
    async for record in records:
        if chunk and (record.partition != chunk[0].partition or len(chunk) >= CHUNK_RECORDS):
            yield chunk[0].partition, chunk
            chunk = []
        chunk.append(record)
    if chunk:
        yield chunk[0].partition, chunk


async def _replicated_through(
    kafka: KafkaConfig, bootstrap: str, origin: str, target: str, tps: list[TopicPartition]
) -> dict[int, int]:
    """The committed offsets of the replicator from ``origin`` to ``target`` (group
    ``edgebus.<origin>.replicator.<target>``): partitions without one are left out."""
    group = f"{replicator_group_prefix(origin)}.{target}"
    try:
        async with admin_client(kafka, bootstrap) as admin:
            offsets = await admin.list_consumer_group_offsets(group, partitions=tps)
    except KafkaError as e:
        raise _unreachable(bootstrap, f"the committed offsets of group {group}", e) from e
    return {tp.partition: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}


async def _dead_letters(
    producer: Producer, origin: str, refused: list[Refusal], target: str
) -> None:
    try:
        await send_dead_letters(producer, origin, refused, target)
    except KafkaError as e:
        raise _unreachable("", f"the dead-letter topic of {origin}", e) from e


async def _acknowledged(
    futures: list[asyncio.Future[Any]], target: str, report: CatchUpReport
) -> None:
    """Wait for the target's acknowledgements; InfrastructureUnavailable if one failed
    (a repair run again copies what is missing; copies made twice are dropped)."""
    outcomes = await asyncio.gather(*futures, return_exceptions=True)
    failed = [o for o in outcomes if isinstance(o, BaseException)]
    if failed:
        raise InfrastructureUnavailable(
            f"{len(failed)} of {len(futures)} copies into {events_topic(target)} were not "
            f"acknowledged ({str(failed[0])[:200] or type(failed[0]).__name__}; "
            f"{report.copied} sent in all): check {target}'s cluster and repair again",
            [],
        )


def _unreachable(bootstrap: str, what: str, error: BaseException) -> InfrastructureUnavailable:
    detail = str(error)[:200] or type(error).__name__
    return InfrastructureUnavailable(
        f"cannot read {what}: {detail}", [bootstrap] if bootstrap else []
    )
