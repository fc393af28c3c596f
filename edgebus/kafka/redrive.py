"""Redrive: ``edgebus dlq redrive`` puts a dead letter's record back on its events topic.

Redrive appends a letter's original record back to ``edgebus.R.events``: the same key
and value and the original headers except those only edgebus may set on such an append,
with ``eb-redrive-of: <dlq partition>:<dlq offset>`` of its own:

* every ``eb-dlq-*`` header and any ``eb-redrive-of`` the original carried are dropped
  (they are edgebus's, never the record's), and so are ``eb-saga`` and ``eb-state``
  (other topics' headers); a watermark (``eb-watermark``) is not redriven at all (the
  next heartbeat supersedes it), nor is a state-log record;
* ``eb-origin-pos`` and ``eb-deps`` of a replicated copy are kept (without them the copy
  would be applied as an event of this region, outside its stream's order), once each,
  and only when the position names another configured region, the partition the copy
  sits in, and an offset below the end of that region's events topic: a forged position
  would otherwise let the redrive skip the region's duplicate check;
* ``eb-txn`` of a strong commit's event is kept, once, when every letter of the record
  carries the same one: it is the event's applied-once marker (another copy of the same
  commit, written by the participant again, must not apply twice), and without it the
  replicator would copy the event to regions whose participants wrote their own.

Applied once. The materializer remembers the ``eb-redrive-of`` markers it applied (in
the store, in the same transaction as their effect) and drops a record whose marker it
has seen. The marker is the *record's* first dead letter, not necessarily the one
redriven: the letters of one record (the same ``eb-dlq-source``, or a failed redrive's
letter whose ``eb-redrive-of`` names a letter with the same key and value) share one
marker, so redriving any of them, twice, after a crash, or after a redrive that failed
again, applies the record at most once; a forged ``eb-redrive-of`` is dropped, and
one naming a letter of other content is not followed. A record that still cannot be
applied goes back to the dead-letter topic as a new letter.

Only letters refused by the materializer (stage ``materialize``) are redriven; a copy
the replicator refused for compliance (stage ``replicate``) must not be forced into the
region: fix the compliance rules and the replicator's next copies flow again; commit-log
(``participant``) and state-log (``state``) records are not events. Letters are read
with :mod:`edgebus.kafka.dead_letter_view`; the headers are those of
:mod:`edgebus.kafka.dead_letters`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from edgebus.config import EdgeConfig
from edgebus.errors import EdgebusError, InvalidInput
from edgebus.kafka.clients import Producer, start_producer
from edgebus.kafka.clusters import resolve_clusters
from edgebus.kafka.dead_letter_view import (
    _MAX_SOURCE_BYTES,
    DeadLetterView,
    _ascii,
    _shown,
    list_dead_letters,
)
from edgebus.kafka.dead_letters import _DLQ_PREFIX, H_DLQ_SOURCE, H_DLQ_STAGE, H_REDRIVE_OF, Header
from edgebus.kafka.reading import end_offsets
from edgebus.kafka.topics import dlq_topic, events_topic

__all__ = ["RedrivePlan", "plan_redrive", "redrive"]

# the control headers of edgebus.wire.headers and .watermark that redrive reads (this
# layer may not import edgebus.wire; tests/unit/test_dead_letter_fuzz.py checks the names)
_H_ORIGIN_POS = "eb-origin-pos"
_H_TXN = "eb-txn"
_H_WATERMARK = "eb-watermark"
#: headers of other topics' records, never of an event: dropped on redrive
_NOT_EVENT_HEADERS = frozenset({"eb-saga", "eb-state"})
_MANY = b"\0more than one"


@dataclass(frozen=True)
class RedrivePlan:
    """What redrive does with one letter: send ``headers`` to ``partition`` of the
    events topic (``why_not`` None), or refuse it (``why_not`` says why)."""

    letter: DeadLetterView
    why_not: str | None = None
    #: the applied-once marker: ``(dlq partition, dlq offset)`` of the record's first letter
    marker: tuple[int, int] | None = None
    partition: int | None = None
    headers: tuple[Header, ...] = ()
    #: a replicated copy's claimed origin position, checked before sending
    origin: tuple[str, int, int] | None = None

    def refused(self, why: str) -> RedrivePlan:
        return RedrivePlan(self.letter, why)


class _Groups:
    """Union-find over letter positions: the letters of one record."""

    def __init__(self) -> None:
        self.parent: dict[tuple[int, int], tuple[int, int]] = {}

    def find(self, x: tuple[int, int]) -> tuple[int, int]:
        root = x
        while self.parent.get(root, root) != root:
            root = self.parent[root]
        while x != root:  # path compression, iteratively
            self.parent[x], x = root, self.parent.get(x, x)
        return root

    def union(self, a: tuple[int, int], b: tuple[int, int]) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:  # the smaller position is the root: the record's first letter
            low, high = min(ra, rb), max(ra, rb)
            self.parent[high] = low


def _record_groups(letters: Sequence[DeadLetterView]) -> _Groups:
    """Letters of the same record: the same source, or a failed redrive's letter whose
    ``eb-redrive-of`` names a letter of the same key and value."""
    groups = _Groups()
    by_source: dict[str, tuple[int, int]] = {}
    by_position = {(d.partition, d.offset): d for d in letters}
    for d in letters:
        here = (d.partition, d.offset)
        groups.find(here)
        if d.source is not None:
            first = by_source.setdefault(d.source, here)
            groups.union(first, here)
        claims = [v for k, v in d.record.headers or () if k == H_REDRIVE_OF]
        if len(claims) != 1 or claims[0] is None:
            continue
        named = _parse_marker(claims[0])
        if named is None or named == here:
            continue
        other = by_position.get(named)
        if (other is not None and not other.reference and not d.reference
                and other.record.key == d.record.key and other.record.value == d.record.value):
            groups.union(named, here)
    return groups


def _parse_marker(raw: bytes) -> tuple[int, int] | None:
    text = _ascii(raw, 40)
    if text is None:
        return None
    partition, _, offset = text.partition(":")
    if partition.isdigit() and offset.isdigit() and len(partition) <= 10 and len(offset) <= 19:
        return int(partition), int(offset)
    return None


def plan_redrive(
    letters: Sequence[DeadLetterView],
    region: str,
    regions: Sequence[str],
    partitions: int,
    selected: Iterable[tuple[int, int]] | None = None,
) -> list[RedrivePlan]:
    """What redrive does with each selected letter (all when ``selected`` is None), in
    listing order; pure. ``letters`` is the whole dead-letter topic (the letters of one
    record are found among all of them)."""
    groups = _record_groups(letters)
    wanted = None if selected is None else set(selected)
    # the eb-txn of each record's letters (None: none; _MANY: more than one)
    txns: dict[tuple[int, int], set[bytes | None]] = {}
    for d in letters:
        values = [v for k, v in d.record.headers or () if k == _H_TXN]
        root = groups.find((d.partition, d.offset))
        txns.setdefault(root, set()).add(
            None if not values else values[0] if len(values) == 1 else _MANY
        )
    done: dict[tuple[int, int], str] = {}
    plans: list[RedrivePlan] = []
    for d in letters:
        here = (d.partition, d.offset)
        if wanted is not None and here not in wanted:
            continue
        root = groups.find(here)
        plan = _plan_one(d, root, region, regions, partitions, txns[root])
        if plan.why_not is None:
            if root in done:
                plan = plan.refused(f"another dead letter of the same record ({done[root]}) "
                                    "is redriven: one record, one redrive")
            else:
                done[root] = f"{d.partition}:{d.offset}"
        plans.append(plan)
    return plans


def _plan_one(
    d: DeadLetterView,
    root: tuple[int, int],
    region: str,
    regions: Sequence[str],
    partitions: int,
    txns: set[bytes | None],
) -> RedrivePlan:
    plan = RedrivePlan(d)
    if d.stage != "materialize":
        if d.stage == "replicate":
            return plan.refused("refused at the replication hop by compliance: fix the rules; "
                                "the replicator copies new events, it is never forced")
        if d.stage == "state":
            return plan.refused("a state-log record, not an event: it is not redriven")
        if d.stage == "participant":
            return plan.refused("a commit-log record, not an event: it is not redriven (the "
                                "commit log decides; a client may write again)")
        return plan.refused(f"its {H_DLQ_STAGE} header is {d.invalid.get(H_DLQ_STAGE)}: "
                            "only materialize-stage letters are redriven")
    if d.reference:
        where = d.source or "its source topic"
        return plan.refused(
            f"a reference letter: the record ({d.truncated} bytes) was too large to keep in "
            f"the dead-letter topic; it stays at {where} until that topic's retention "
            "removes it: read it there (e.g. `kcat -C -t TOPIC -p P -o OFFSET -c 1`), fix "
            "it and write it again"
        )
    source = d.source_position
    topic = events_topic(region)
    if source is None or source[0] != topic or source[1] >= partitions:
        return plan.refused(
            f"its {H_DLQ_SOURCE} ({d.source or d.invalid.get(H_DLQ_SOURCE)}) does not name a "
            f"record of {topic}: not a letter this region's materializer wrote"
        )
    kept: list[Header] = []
    origins: list[bytes | None] = []
    for name, value in d.record.headers or ():
        if name == _H_WATERMARK:
            return plan.refused("a watermark, not an event: the next heartbeat supersedes it")
        if name.startswith(_DLQ_PREFIX) or name == H_REDRIVE_OF or name in _NOT_EVENT_HEADERS:
            continue
        if name == _H_ORIGIN_POS:
            origins.append(value)
        if name == _H_TXN and (len(txns) != 1 or _MANY in txns):
            return plan.refused(f"the letters of this record disagree on {_H_TXN}, or carry "
                                "it more than once: not a strong commit's event edgebus wrote")
        kept.append((name, value))
    origin: tuple[str, int, int] | None = None
    if origins:
        claim = _origin(origins, region, regions, partitions, source[1])
        if isinstance(claim, str):
            return plan.refused(claim)
        origin = claim
    if len([k for k, _ in kept if k == "eb-deps"]) > 1:
        return plan.refused("it carries eb-deps more than once: not a record edgebus wrote")
    kept.append((H_REDRIVE_OF, f"{root[0]}:{root[1]}".encode("ascii")))
    return RedrivePlan(d, None, root, source[1], tuple(kept), origin)


def _origin(
    raws: list[bytes | None], region: str, regions: Sequence[str], partitions: int,
    partition: int,
) -> tuple[str, int, int] | str:
    """The claimed origin position of a replicated copy, or why it is refused."""
    if len(raws) != 1 or raws[0] is None:
        return f"it carries {_H_ORIGIN_POS} more than once: not a copy the replicator made"
    text = _ascii(raws[0], _MAX_SOURCE_BYTES) or ""
    origin, _, rest = text.partition(":")
    where, _, offset = rest.partition(":")
    bad = f"its {_H_ORIGIN_POS} {_shown(raws[0], 60)!r}"
    if not (where.isdigit() and offset.isdigit() and len(offset) <= 19):
        return f"{bad} is not region:partition:offset"
    if origin == region or origin not in regions:
        return f"{bad} names no other configured region: not a copy the replicator made"
    if int(where) != partition or int(where) >= partitions:
        return (f"{bad} names partition {where}, but the copy sits in partition {partition}: "
                "the replicator keeps partitions")
    return origin, int(where), int(offset)


async def redrive(
    config: EdgeConfig, region: str, positions: Iterable[tuple[int, int]] | None = None
) -> list[dict[str, Any]]:
    """Put dead letters (all materialize-stage ones, or those at ``positions``) back on
    the region's events topic; returns one result per letter (see the module docstring
    for what is refused and which headers go back)."""
    letters = await list_dead_letters(config, region)
    if positions is not None:
        positions = list(positions)
        found = {(d.partition, d.offset) for d in letters}
        missing = sorted(set(positions) - found)
        if missing:
            raise InvalidInput(
                "no dead letter at "
                + ", ".join(f"{p}:{o}" for p, o in missing)
                + f" in {dlq_topic(region)}: see `edgebus dlq list --region {region}`"
            )
    plans = plan_redrive(letters, region, config.regions, config.kafka.partitions, positions)
    plans = await _check_origins(config, plans)
    clusters = resolve_clusters(config)
    results: list[dict[str, Any]] = []
    producer: Producer | None = None
    try:
        for plan in plans:
            d = plan.letter
            if plan.why_not is not None:
                results.append({**d.to_dict(), "redriven": False, "why": plan.why_not})
                continue
            if producer is None:
                producer = await start_producer(config.kafka, clusters[region], "service",
                                                client_id=f"edgebus-dlq-redrive-{region}")
            meta = await producer.send_and_wait(
                events_topic(region),
                value=d.record.value,
                key=d.record.key,
                partition=plan.partition,
                headers=list(plan.headers),
            )
            assert plan.marker is not None
            results.append({
                **d.to_dict(), "redriven": True, "marker": f"{plan.marker[0]}:{plan.marker[1]}",
                "to": f"{meta.topic}:{meta.partition}:{meta.offset}",
            })
    finally:
        if producer is not None:
            await producer.stop()
    return results


async def _check_origins(config: EdgeConfig, plans: list[RedrivePlan]) -> list[RedrivePlan]:
    """Refuse the copies whose claimed origin offset is not below the end of the origin
    region's events topic (read now)."""
    claimed = {p.origin[0] for p in plans if p.why_not is None and p.origin is not None}
    if not claimed:
        return plans
    clusters = resolve_clusters(config)
    ends: dict[tuple[str, int], int] = {}
    unreachable: dict[str, str] = {}
    for origin in sorted(claimed):
        try:
            found = await end_offsets(config.kafka, clusters[origin], [events_topic(origin)])
        except EdgebusError as e:
            unreachable[origin] = str(e)
            continue
        ends.update({(origin, tp.partition): o for tp, o in found.items()})
    out = []
    for plan in plans:
        if plan.why_not is None and plan.origin is not None:
            origin, partition, offset = plan.origin
            if origin in unreachable:
                plan = plan.refused(f"cannot check its {_H_ORIGIN_POS} against "
                                    f"{events_topic(origin)}: {unreachable[origin]}")
            elif offset >= ends.get((origin, partition), 0):
                plan = plan.refused(
                    f"its {_H_ORIGIN_POS} {origin}:{partition}:{offset} lies beyond the end of "
                    f"{events_topic(origin)} partition {partition} "
                    f"({ends.get((origin, partition), 0)}): not a copy the replicator made"
                )
        out.append(plan)
    return out
