"""The applier's glue to the C module's fold (``edgebus/_native/fold.c``,
``interleave.c``): what it needs of an applier, and the merge of a batch's partitions.

Both have a pure-Python side that gives the same result: the applier's own fold for
every record the compiled fold does not take, and :func:`interleaved`'s merge
(``tests/property/test_compiled_fold.py`` compares them).
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import fields
from typing import Any

import orjson
from aiokafka import ConsumerRecord

from edgebus.core.conflict import KeyOp, KeyState, Stamp
from edgebus.core.speedups import NATIVE
from edgebus.core.vector_clock import Position
from edgebus.region.batch_results import AppliedEvent
from edgebus.region.record_checks import RecordChecks
from edgebus.wire.event_reader import EVENT_V2_PREFIX, READ_OPERATIONS

__all__ = ["interleaved", "native_fixed", "native_run"]


def native_fixed(
    region: str, allowed: dict[tuple[str, ...], bool], checks: RecordChecks | None
) -> tuple[Any, ...] | None:
    """The per-applier arguments of the compiled fold (``edgebus/_native/fold.c``), or
    None without the C module (or if the classes it fills are not as it expects)."""
    if native_run is None:
        return None
    state_fields = tuple(f.name for f in fields(KeyState))
    applied_fields = tuple(f.name for f in fields(AppliedEvent))
    if state_fields != _STATE_FIELDS or applied_fields != _APPLIED_FIELDS:
        return None  # the C fold writes these slots in this order
    slots = tuple(vars(KeyState)[name] for name in state_fields)
    applied_slots = tuple(vars(AppliedEvent)[name] for name in applied_fields)
    return (
        region, EVENT_V2_PREFIX, orjson.loads, READ_OPERATIONS, KeyState, slots, Stamp,
        KeyOp, AppliedEvent, applied_slots, Position, allowed,
        checks.regions if checks is not None else None,
        checks.partitions if checks is not None else 0,
    )


_STATE_FIELDS = ("key", "exists", "value", "base", "top", "version", "n_ops", "int_counter",
                 "ops", "base_exists", "base_value")
_APPLIED_FIELDS = ("key", "event_id", "origin", "hlc")
#: the compiled fold of common records (edgebus._speedups.apply_run), when compiled
native_run: Any = getattr(NATIVE, "apply_run", None)


def interleaved(
    records: Sequence[ConsumerRecord[bytes, bytes]],
) -> list[ConsumerRecord[bytes, bytes]]:
    """``records`` (grouped by partition, each partition's in offset order, as a batch
    comes) merged by record timestamp, each partition's order kept; ties go to the
    partition that comes first. Records not grouped so are returned as they are.

    An event's dependencies were acknowledged before it was written, so they usually
    carry an earlier timestamp: offered in this order, few events wait in the causal
    gate for a record later in the same batch (offered partition after partition, most
    events of a session that writes to several partitions would). Only the order
    changes what is buffered, never what is applied.
    """
    if _native_interleave is not None and type(records) is list:
        merged: list[ConsumerRecord[bytes, bytes]] = _native_interleave(records)
        return merged
    runs: list[list[ConsumerRecord[bytes, bytes]]] = []
    seen: set[int] = set()
    for record in records:
        if runs and runs[-1][-1].partition == record.partition:
            runs[-1].append(record)
            continue
        if record.partition in seen or len(runs) == _MAX_RUNS:
            return list(records)
        seen.add(record.partition)
        runs.append([record])
    if len(runs) < 2:
        return list(records)
    return list(heapq.merge(*runs, key=_timestamp))


#: partitions a batch may interleave (more: left in partition order)
_MAX_RUNS = 64
#: the C module's interleaved (edgebus._speedups.interleave), when compiled
_native_interleave: Any = getattr(NATIVE, "interleave", None)


def _timestamp(record: ConsumerRecord[bytes, bytes]) -> int:
    stamp: int = record.timestamp
    return stamp
