"""Reading the state logs for ``edgebus state``: every record of a class's log, on its
home cluster, folded with :class:`~edgebus.core.state_machine.StateObject` exactly as
the hosts fold it (a record the decoder refuses, which no host folds, is skipped and
logged), with the ownership history and counts the CLI shows beside it; and the views of
a fold the commands print.

"Now" (is a lease running, is a lock held) is the caller's clock, compared with the
broker's append times the leases are measured in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgebus.config import EdgeConfig
from edgebus.core.ownership import Claim, Handoff, OwnerView, Release, Renew
from edgebus.core.state_machine import StateObject, StateOp, StateRequest
from edgebus.errors import InvalidInput

__all__ = ["Folded", "classes_to_read", "describe", "fold_logs", "found", "order", "ownership",
           "summary"]

#: a read makes no progress this long: the cluster stopped answering
_STALL_S = 30.0


@dataclass
class Folded:
    """One state's fold, plus what the CLI shows beside it."""

    data_class: str
    topic: str
    partition: int
    obj: StateObject
    history: list[dict[str, Any]] = field(default_factory=list)
    renewals: dict[str, int] = field(default_factory=lambda: {"granted": 0, "refused": 0})
    ops: dict[str, int] = field(
        default_factory=lambda: {"accepted": 0, "not_accepted": 0, "duplicates": 0})
    requests: int = 0
    records: int = 0


def classes_to_read(config: EdgeConfig, data_class: str | None) -> list[str]:
    """The classes to read: the one named (validated), else every class some region
    may hold (a class no region may hold has no log)."""
    from edgebus.state.log import allowed_regions, home_region, state_classes

    known = state_classes(config)
    if data_class is not None:
        name = data_class.lower()
        if name not in known:
            raise InvalidInput(f"unknown state class {data_class!r}: use one of "
                               f"{', '.join(known)}")
        home_region(config, name)  # raises ComplianceViolation when no region may hold it
        return [name]
    return [c for c in known if allowed_regions(config, c)]


async def fold_logs(config: EdgeConfig, classes: list[str],
                    state_id: str | None) -> dict[tuple[str, str], Folded]:
    """Fold every record of the classes' logs (only ``state_id``'s partition and
    records when given), read from their first offset to their end as of now."""
    from edgebus.kafka.clients import reader
    from edgebus.kafka.clusters import resolve_clusters
    from edgebus.kafka.reading import records_below, topic_partitions
    from edgebus.state.log import decode_record, home_region, state_partition, state_topic

    clusters = resolve_clusters(config)
    by_bootstrap: dict[str, dict[str, str]] = {}  # bootstrap -> topic -> class
    for data_class in classes:
        bootstrap = clusters[home_region(config, data_class)]
        by_bootstrap.setdefault(bootstrap, {})[state_topic(config, data_class)] = data_class
    wanted = None if state_id is None else state_partition(state_id, config.kafka.partitions)
    out: dict[tuple[str, str], Folded] = {}
    for bootstrap, topics in by_bootstrap.items():
        async with reader(config.kafka, bootstrap) as consumer:
            tps = [tp for tp in await topic_partitions(consumer, topics)
                   if wanted is None or tp.partition == wanted]
            if not tps:
                continue  # no state of these classes was ever written
            ends = await consumer.end_offsets(tps)
            async for record in records_below(
                consumer, ends, stall_s=_STALL_S, bootstrap=bootstrap
            ):
                decoded = decode_record(record)
                if decoded is None or (state_id is not None and decoded[0] != state_id):
                    continue
                sid, rec = decoded
                data_class = topics[record.topic]
                folded = out.get((data_class, sid))
                if folded is None:
                    folded = out[(data_class, sid)] = Folded(
                        data_class, record.topic, record.partition, StateObject(sid))
                _fold(folded, rec, int(record.timestamp))
    return out


def _fold(folded: Folded, rec: Any, append_ms: int) -> None:
    """Fold ``rec`` into the state, and note it in the history and counts."""
    obj = folded.obj
    folded.records += 1
    if isinstance(rec, StateRequest):
        folded.requests += 1
    elif isinstance(rec, StateOp):
        if rec.duplicate:
            folded.ops["duplicates"] += 1
        elif obj.accepts(rec, append_ms):
            folded.ops["accepted"] += 1
        else:
            folded.ops["not_accepted"] += 1
    else:
        _note_ownership(folded, obj.view, rec, append_ms)
    obj.fold(rec, append_ms)


def _refusal(view: OwnerView, rec: Claim | Renew | Handoff | Release, at: int) -> str | None:
    """Why the log does not grant ``rec`` at append time ``at`` (``None``: granted).
    The rules of :func:`edgebus.core.ownership.fold_ownership`."""
    if isinstance(rec, Claim):
        if rec.lease_ms <= 0:
            return "no lease (lease_ms <= 0)"
        if rec.epoch != view.epoch + 1:
            return f"epoch {rec.epoch} is not the next epoch ({view.epoch + 1})"
        if not view.free_for(rec.region, at):
            return f"{view.owner} ({view.holder}) owned it until {view.lease_until_ms}"
        return None
    if (rec.region, rec.host) != (view.owner, view.holder) or rec.epoch != view.epoch:
        return (f"not the owner at its epoch (the owner: {view.owner} ({view.holder}) at "
                f"epoch {view.epoch})")
    if isinstance(rec, Renew) and at > view.lease_until_ms:
        return f"too late: the lease ended at {view.lease_until_ms}"
    return None


def _note_ownership(folded: Folded, view: OwnerView,
                    rec: Claim | Renew | Handoff | Release, at: int) -> None:
    why = _refusal(view, rec, at)
    history = folded.history
    if isinstance(rec, Renew):
        folded.renewals["granted" if why is None else "refused"] += 1
        last = history[-1] if history else None
        if (last is not None and last["kind"] == "renew"
                and (last["region"], last["host"], last["epoch"])
                == (rec.region, rec.host, rec.epoch)):
            last["count"] += 1
            last["granted" if why is None else "refused"] += 1
            last["last_ms"] = at
            if why is not None:
                last["reason"] = why
            return
        entry: dict[str, Any] = {
            "kind": "renew", "region": rec.region, "host": rec.host, "epoch": rec.epoch,
            "count": 1, "granted": int(why is None), "refused": int(why is not None),
            "first_ms": at, "last_ms": at,
        }
    else:
        entry = {"kind": type(rec).__name__.lower(), "region": rec.region, "host": rec.host,
                 "epoch": rec.epoch, "append_ms": at, "granted": why is None}
        if isinstance(rec, Claim):
            entry["lease_ms"] = rec.lease_ms
        elif isinstance(rec, Handoff):
            entry["to_region"] = rec.to_region
    if why is not None:
        entry["reason"] = why
    history.append(entry)


def found(folded: dict[tuple[str, str], Folded], state_id: str,
          data_class: str | None) -> list[Folded]:
    """The folds of ``state_id`` (one per class it exists in), or InvalidInput."""
    states = [f for (_c, sid), f in sorted(folded.items()) if sid == state_id]
    if not states:
        where = f"of class {data_class.lower()}" if data_class else "in any class"
        raise InvalidInput(f"no state {state_id!r} {where}; `edgebus state ls` lists them")
    return states


def order(folded: Folded) -> tuple[str, str]:
    """How ``ls`` sorts: by class, then id."""
    return (folded.data_class, folded.obj.state_id)



def _lease(view: OwnerView, now_ms: int) -> str:
    if view.owner is None:
        return "free"
    return "running" if view.owner_at(now_ms) is not None else "lapsed"


def _owner_fields(folded: Folded, now_ms: int) -> dict[str, Any]:
    v = folded.obj.view
    return {
        "classification": folded.data_class, "state_id": folded.obj.state_id,
        "owner": v.owner, "host": v.holder or None, "epoch": v.epoch,
        "lease_until_ms": v.lease_until_ms, "lease": _lease(v, now_ms),
        "lease_running": v.owner_at(now_ms) is not None, "handed_to": v.handed_to,
    }


def describe(folded: Folded, now_ms: int, key: str | None) -> dict[str, Any]:
    obj = folded.obj
    out = _owner_fields(folded, now_ms)
    out.update({
        "topic": folded.topic, "partition": folded.partition,
        "key": key, "value": obj.value(key), "version": obj.version,
        "locks": [{"name": h.name, "holder": h.holder, "until_ms": h.until_ms,
                   "held": h.until_ms >= now_ms} for h in obj.locks.values()],
        "waiting": [
            {"req_id": r.req_id, "operation": r.operation, "from_region": r.from_region,
             "holder": r.holder, "key": r.key, "lock_name": r.lock_name,
             "appended_ms": at, "timeout_ms": r.timeout_ms}
            for r, at in obj.pending.values()
        ],
        "migratable": obj.migratable, "records": folded.records,
        "last_append_ms": obj.last_append_ms,
    })
    return out


def summary(folded: Folded, now_ms: int) -> dict[str, Any]:
    v = folded.obj.view
    return {
        "classification": folded.data_class, "state_id": folded.obj.state_id,
        "owner": v.owner, "epoch": v.epoch, "version": folded.obj.version,
        "lease": _lease(v, now_ms),
        "locks": sum(1 for h in folded.obj.locks.values() if h.until_ms >= now_ms),
        "waiting": len(folded.obj.pending),
    }


def ownership(folded: Folded, now_ms: int) -> dict[str, Any]:
    out = _owner_fields(folded, now_ms)
    out.update({"history": folded.history, "renewals": dict(folded.renewals),
                "ops": dict(folded.ops), "requests": folded.requests})
    return out
