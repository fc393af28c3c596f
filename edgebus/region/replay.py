"""Replay: rebuild a region's state from its events topic into a new store; verify a
live store against such a replay.

Replay folds records with the same :class:`~edgebus.region.applier.BatchApplier` as the
live materializer, in the same (per-partition) order, so a replay to the live store's
positions equals the live store (invariant 2 of the design). Dead letters are counted,
not re-sent. Memory stays flat: records flow in bounded batches into an on-disk store.

Cut-offs (per partition, exclusive): ``until_offsets`` as given; ``until_time_ms``
becomes, for each partition, the first offset whose record timestamp is later than
that time (Kafka's ``offsets_for_times``): the region's log as it stood at that time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition

from connectors import Store, by_url
from connectors.base import Checksums
from edgebus.config import EdgeConfig
from edgebus.errors import InvalidInput, StoreNotEmpty
from edgebus.kafka.batching import partition_for
from edgebus.kafka.clients import Consumer, reader
from edgebus.kafka.clusters import resolve_clusters
from edgebus.kafka.dead_letter_view import list_dead_letters
from edgebus.kafka.reading import AlignedBatches, seek_to_first, topic_partitions
from edgebus.kafka.topics import events_topic
from edgebus.region.applier import BatchApplier
from edgebus.region.record_checks import RecordChecks
from edgebus.wire.watermark import is_watermark

__all__ = ["ReplaySummary", "VerifyReport", "compare_checksums", "replay", "verify_store"]


@dataclass
class ReplaySummary:
    """What a replay did."""

    region: str
    store: str
    events: int = 0
    #: watermark records read (not events: they only move frontiers)
    watermarks: int = 0
    applied: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    keys: int = 0
    seconds: float = 0.0
    positions: dict[int, int] = field(default_factory=dict)

    @property
    def events_per_s(self) -> float:
        """Replay throughput."""
        return self.events / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "region": self.region,
            "store": self.store,
            "events": self.events,
            "watermarks": self.watermarks,
            "applied": self.applied,
            "duplicates": self.duplicates,
            "dead_letters": self.dead_letters,
            "keys": self.keys,
            "seconds": round(self.seconds, 3),
            "events_per_s": round(self.events_per_s, 1),
            "positions": _positions_json(self.positions),
        }


def _positions_json(positions: dict[int, int]) -> dict[str, int]:
    """Next offset by partition, JSON-ready (partitions as strings, in order)."""
    return {str(p): o for p, o in sorted(positions.items())}


def parse_until_offsets(text: str) -> dict[int, int]:
    """``"0:120,1:98"`` -> ``{0: 120, 1: 98}`` (partition: exclusive end offset)."""
    out: dict[int, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            partition, offset = part.split(":")
            out[int(partition)] = int(offset)
        except ValueError:
            raise InvalidInput(
                f"--until-offsets item {part!r} is not PARTITION:OFFSET (e.g. 0:120,1:98)"
            ) from None
    if not out:
        raise InvalidInput("--until-offsets is empty: give PARTITION:OFFSET pairs")
    return out


async def replay(
    config: EdgeConfig,
    region: str,
    store: str | Store,
    *,
    until_time_ms: int | None = None,
    until_offsets: Mapping[int, int] | None = None,
    key: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    batch_records: int = 5000,
) -> ReplaySummary:
    """Rebuild ``region`` from ``edgebus.<region>.events`` into a new, empty store.

    The steps: refuse a store that already holds state (:func:`_refuse_used_store`),
    learn what the live region dead-lettered (:func:`dead_lettered_sources`), work out
    each partition's range to read (:func:`_plan`), read the ranges in batches
    (:func:`_take`) and fold each into the store (:meth:`_Fold.apply`).
    """
    if until_time_ms is not None and until_offsets is not None:
        raise InvalidInput("give --until or --until-offsets, not both")
    target = store if isinstance(store, Store) else by_url(store)
    bootstrap = resolve_clusters(config)[region]
    summary = ReplaySummary(region, target.url)
    started = time.perf_counter()
    async with target:
        await _refuse_used_store(target)
        # one key's events depend on records of other keys, which this replay skips
        applier = BatchApplier(
            region, config.compliance.rules(), target, causal=key is None,
            checks=RecordChecks.static(config, region), recent_keys=REPLAY_RECENT_KEYS,
        )
        fold = _Fold(applier, target, await dead_lettered_sources(config, region), summary)
        applier.before_read = fold.committed
        async with reader(config.kafka, bootstrap) as consumer:
            plan = await _plan(consumer, config, region, key, until_time_ms, until_offsets)
            try:
                await _read(consumer, plan, fold, key, progress, batch_records)
            finally:
                await fold.committed()
            await fold.flush()
        summary.keys = (await target.stats()).keys
    summary.seconds = time.perf_counter() - started
    return summary


async def _refuse_used_store(target: Store) -> None:
    if await target.positions():
        raise StoreNotEmpty(
            f"{target.url} already holds replayed state: replay builds a new store. "
            "Choose a new path, or delete that one first."
        )


#: states a replay keeps of those it folded lately (per generation): its keys come back
#: rarely (the million-event region: 218,082 keys), and 20,000 cost 60 MB of its peak
#: memory for no speed
REPLAY_RECENT_KEYS = 1_000


@dataclass
class _Plan:
    """What a replay reads: each partition's exclusive stop offset (partitions with
    nothing to read left out), and how many records that makes."""

    stops: dict[TopicPartition, int]
    total: int


async def _plan(
    consumer: Consumer,
    config: EdgeConfig,
    region: str,
    key: str | None,
    until_time_ms: int | None,
    until_offsets: Mapping[int, int] | None,
) -> _Plan:
    """The partitions of the region's events topic (only ``key``'s, given one), from
    their first offset to the cut-off."""
    tps = await topic_partitions(consumer, [events_topic(region)])
    if key is not None:
        wanted = partition_for(key.encode("utf-8"), config.kafka.partitions)
        tps = [tp for tp in tps if tp.partition == wanted]
    firsts = await consumer.beginning_offsets(tps) if tps else {}
    ends = dict(await consumer.end_offsets(tps)) if tps else {}
    stops = await _stops(consumer, tps, ends, until_time_ms, until_offsets)
    remaining = {tp: stop for tp, stop in stops.items() if stop > firsts[tp]}
    return _Plan(remaining, sum(stop - firsts[tp] for tp, stop in remaining.items()))


@dataclass
class _Fold:
    """Where replayed records go: the live materializer's applier over the new store,
    with the live region's dead letters, and the counts of the summary."""

    applier: BatchApplier
    target: Store
    known_dead: set[tuple[int, int]]
    summary: ReplaySummary
    #: the previous batch's commit, running on the store's thread while this one folds
    commit: asyncio.Future[None] | None = None

    async def apply(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        """Fold one batch (while the previous one commits), then start its commit."""
        result = await self.applier.apply(records, self.known_dead)
        await self.flush()
        self.commit = asyncio.ensure_future(self.target.commit(result.changes))
        marks = sum(1 for r in records if is_watermark(r))
        summary = self.summary
        summary.watermarks += marks
        summary.events += len(records) - marks
        summary.applied += len(result.applied)
        summary.duplicates += result.duplicates
        summary.dead_letters += len(result.dead)

    async def flush(self) -> None:
        """Wait for the commit in flight; its failure is raised."""
        commit, self.commit = self.commit, None
        if commit is not None:
            await commit

    async def committed(self) -> None:
        """Wait until the commit in flight is done, without raising its failure (the
        applier's store reads must see it; :meth:`flush` raises it)."""
        commit = self.commit
        if commit is not None and not commit.done():
            await asyncio.wait({commit})


async def _read(
    consumer: Consumer,
    plan: _Plan,
    fold: _Fold,
    key: str | None,
    progress: Callable[[int, int], None] | None,
    batch_records: int,
) -> None:
    """Read the planned ranges from their first offsets, batch by batch, into
    ``fold``, reporting ``progress(done, total)`` in records read."""
    remaining = plan.stops
    done = 0
    if progress:
        progress(0, plan.total)
    if remaining:
        consumer.assign(list(remaining))
        await seek_to_first(consumer, remaining)
    aligned = AlignedBatches()
    while remaining:
        batch = await aligned.fetch(consumer, timeout_ms=1000, max_records=batch_records)
        records, read = _take(consumer, batch, remaining, key, fold.summary.positions)
        done += read
        if records:
            await fold.apply(records)
        if progress:
            progress(done, plan.total)


def _take(
    consumer: Consumer,
    batch: Mapping[TopicPartition, list[ConsumerRecord[bytes, bytes]]],
    remaining: dict[TopicPartition, int],
    key: str | None,
    positions: dict[int, int],
) -> tuple[list[ConsumerRecord[bytes, bytes]], int]:
    """The records of ``batch`` before their partition's stop (only ``key``'s, given
    one), in partition order, and how many were read. A partition read up to its stop
    leaves ``remaining`` and is paused; ``positions`` get each partition's next offset.
    """
    records: list[ConsumerRecord[bytes, bytes]] = []
    read = 0
    for tp in sorted(batch, key=lambda t: t.partition):
        stop = remaining.get(tp)
        if stop is None:
            continue
        part = [r for r in batch[tp] if r.offset < stop]
        read += len(part)
        if batch[tp] and batch[tp][-1].offset + 1 >= stop:
            del remaining[tp]
            consumer.pause(tp)
        records.extend(r for r in part if key is None or r.key == key.encode("utf-8"))
        if part:
            positions[tp.partition] = part[-1].offset + 1
    return records, read


async def dead_lettered_sources(config: EdgeConfig, region: str) -> set[tuple[int, int]]:
    """(partition, offset) of every record of ``edgebus.<region>.events`` that the live
    region's materializer sent to ``edgebus.<region>.dlq``: part of the log's history."""
    topic = events_topic(region)
    out: set[tuple[int, int]] = set()
    for letter in await list_dead_letters(config, region):
        source = letter.source_position
        if letter.stage == "materialize" and source is not None and source[0] == topic:
            out.add(source[1:])
    return out


async def _stops(
    consumer: Any,
    tps: list[TopicPartition],
    ends: dict[TopicPartition, int],
    until_time_ms: int | None,
    until_offsets: Mapping[int, int] | None,
) -> dict[TopicPartition, int]:
    if until_offsets is not None:
        unknown = sorted(set(until_offsets) - {tp.partition for tp in tps})
        if unknown and not tps:
            raise InvalidInput("the region's events topic does not exist yet")
        return {tp: min(ends[tp], until_offsets.get(tp.partition, 0)) for tp in tps}
    if until_time_ms is not None:
        found = await consumer.offsets_for_times({tp: until_time_ms + 1 for tp in tps})
        return {tp: (ends[tp] if found.get(tp) is None else found[tp].offset) for tp in tps}
    return dict(ends)


@dataclass
class VerifyReport:
    """The outcome of comparing a live store with a replay to the same positions."""

    region: str
    ok: bool
    keys_live: int
    keys_replayed: int
    buckets_compared: int
    buckets_differing: list[int]
    differences: list[dict[str, Any]]
    positions: dict[int, int]
    replay: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: the fields, in order."""
        return {**vars(self), "positions": _positions_json(self.positions)}


def compare_checksums(live: Checksums, replayed: Checksums) -> list[int]:
    """Buckets whose digests differ (present on one side only included)."""
    buckets = set(live.buckets) | set(replayed.buckets)
    return sorted(b for b in buckets if live.buckets.get(b) != replayed.buckets.get(b))


async def verify_store(
    config: EdgeConfig,
    region: str,
    live: Checksums,
    live_rows: Callable[[set[int]], Any],
    scratch_url: str,
    max_differences: int = 50,
) -> VerifyReport:
    """Replay ``region`` to ``live``'s positions into ``scratch_url`` and compare.

    ``live_rows(buckets)`` is an async iterable of the live store's rows (dicts with
    ``key``) in those buckets, used only to name differing keys.
    """
    from connectors.base import bucket_of, row_digest

    topic = events_topic(region)
    positions = {p: o for (t, p), o in live.positions.items() if t == topic}
    summary = await replay(config, region, scratch_url, until_offsets=positions or {0: 0})
    async with by_url(scratch_url) as scratch:
        replayed = await scratch.checksums()
        differing = compare_checksums(live, replayed)
        differences: list[dict[str, Any]] = []
        if differing:
            wanted = set(differing)
            theirs: dict[str, bytes] = {}
            async for row in live_rows(wanted):
                theirs[row["key"]] = row["digest"]
            ours: dict[str, bytes] = {}
            async for state in scratch.scan():
                if bucket_of(state.key) in wanted:
                    ours[state.key] = row_digest(state)
            for k in sorted(set(theirs) | set(ours)):
                if theirs.get(k) != ours.get(k) and len(differences) < max_differences:
                    differences.append(
                        {
                            "key": k,
                            "live": None if k not in theirs else theirs[k].decode(),
                            "replay": None if k not in ours else ours[k].decode(),
                        }
                    )
    return VerifyReport(
        region=region,
        ok=not differing,
        keys_live=live.keys,
        keys_replayed=replayed.keys,
        buckets_compared=len(set(live.buckets) | set(replayed.buckets)),
        buckets_differing=differing,
        differences=differences,
        positions=positions,
        replay=summary.to_dict(),
    )
