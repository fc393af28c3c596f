"""What the commit log says about recent strong writes (``edgebus saga list/show``).

The log is folded as every reader folds it (:class:`edgebus.core.commit_log.PartitionLog`):
a COMMIT without a yes vote of every participant before it (forged: no coordinator
wrote it) is not the transaction's decision; it is listed under ``refused``.

A strong write's BEGIN carries no payload (the data is staged in each participant's own
region: :mod:`edgebus.core.staged_write`): ``saga show`` says where it is staged
(``staged_in``) and shows ``payload`` only for an old BEGIN that carried it inline.
"""

from __future__ import annotations

import time
from typing import Any

from edgebus.commit.log import decode_record
from edgebus.config import EdgeConfig
from edgebus.core.commit_log import PartitionLog, Txn
from edgebus.kafka.clients import reader
from edgebus.kafka.reading import records_below, topic_partitions
from edgebus.kafka.topics import commit_log_topic, staged_topic

__all__ = ["read_transactions", "txn_detail", "txn_summary"]


async def read_transactions(
    config: EdgeConfig, bootstrap: str, window: int | None = 5_000
) -> list[Txn]:
    """The transactions of the last ``window`` records of each commit-log partition
    (``None``: the whole log), newest begin first. A transaction whose begin is older
    than the window is left out."""
    logs: dict[int, PartitionLog] = {}
    topic = commit_log_topic(config.strong_log_region)
    async with reader(config.kafka, bootstrap) as consumer:
        tps = await topic_partitions(consumer, [topic])
        if not tps:
            return []
        ends = await consumer.end_offsets(tps)
        firsts = await consumer.beginning_offsets(tps)
        starts = {
            tp: firsts[tp] if window is None else max(firsts[tp], ends[tp] - window) for tp in tps
        }
        for tp in tps:
            logs[tp.partition] = PartitionLog()
        async for record in records_below(consumer, ends, starts, max_records=10_000):
            decoded = decode_record(record)
            if decoded is not None:
                logs[record.partition].fold(record.offset, decoded)
    txns = [t for plog in logs.values() for t in plog.txns.values() if t.begin is not None]
    txns.sort(key=lambda t: t.begin.time_ms if t.begin else 0, reverse=True)
    return txns


def txn_summary(txn: Txn, now_ms: int | None = None) -> dict[str, Any]:
    """One line of ``edgebus saga list``."""
    now_ms = now_ms if now_ms is not None else time.time_ns() // 1_000_000
    begin = txn.begin
    assert begin is not None
    decision = txn.decision
    return {
        "txn_id": txn.txn_id,
        "key": txn.key,
        "status": txn.status,
        "operation": begin.operation,
        "participants": list(begin.placement),
        "votes": {r: ("yes" if v.yes else f"no ({v.refusal})") for r, v in txn.votes.items()},
        "acks": sorted(txn.acks),
        "decided_by": decision.writer if decision else None,
        "reason": decision.outcome.reason if decision else None,
        "age_ms": now_ms - begin.time_ms,
        "decided_after_ms": (decision.time_ms - begin.time_ms) if decision else None,
        "writer": begin.writer,
        "refused_commits": len(txn.refused),
    }


def txn_detail(txn: Txn) -> dict[str, Any]:
    """Everything the log holds about one transaction (``edgebus saga show``)."""
    begin = txn.begin
    assert begin is not None
    t0 = begin.time_ms
    decision = txn.decision
    out = txn_summary(txn)
    out.update(
        payload=begin.payload.decode("utf-8", "replace") if begin.payload is not None else None,
        staged=begin.staged,
        staged_in=[staged_topic(r) for r in begin.placement] if begin.staged else [],
        classification=list(begin.classification),
        expected_version=begin.expected_version,
        deadline_in_ms=begin.deadline_ms - t0,
        begin_offset=txn.begin_offset,
        votes=[
            {
                "region": r,
                "yes": v.yes,
                "reason": v.reason,
                "refusal": None if v.refusal is None else v.refusal.value,
                "version": v.version,
            }
            for r, v in txn.votes.items()
        ],
        decision=None
        if decision is None
        else {
            "commit": decision.committed,
            "by": decision.writer,
            "reason": decision.outcome.reason,
            "conflict": None
            if decision.outcome.conflict is None
            else {
                "region": decision.outcome.conflict.region,
                "expected": decision.outcome.conflict.expected,
                "found": decision.outcome.conflict.found,
            },
            "version": decision.version,
            "at_ms": decision.time_ms - t0,
            "offset": txn.decision_offset,
        },
        acks=[
            {"region": a.region, "event": a.position, "at_ms": a.time_ms - t0}
            for a in txn.acks.values()
        ],
        refused=[
            {
                "by": r.record.writer,
                "reason": r.reason,
                "offset": r.offset,
                "at_ms": r.record.time_ms - t0,
            }
            for r in txn.refused
        ],
    )
    return out
