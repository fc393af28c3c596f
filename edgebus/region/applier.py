"""Turn a batch of records from ``edgebus.R.events`` into one store transaction.

Shared by the live materializer and by replay, so that a replay folds exactly as the
live region did. Per record, in topic order:

1. decode (Avro single-object + headers); a record that does not decode, whose key
   disagrees with its body, that is placed outside this region, that compliance no
   longer allows here, or whose operation cannot apply (``invalid_reason``) is a
   dead letter: the caller sends it to ``edgebus.R.dlq`` (replay only counts it);
   a watermark record (header ``eb-watermark``) is a unit of its stream too;
2. offer it to the region's :class:`~edgebus.core.causality.CausalGate`: duplicates
   (a replicated copy at or below its stream's frontier: the replicator is
   at-least-once) are dropped, an event whose dependencies (``eb-deps``) are not
   applied here yet is buffered with the rest of its stream, and the gate releases
   what may be applied now (a redriven dead letter already applied is dropped too);
3. fold each released event onto the key's state
   (:func:`edgebus.core.conflict.apply`), loading the key's retained ops only when the
   fold asks.

The result is one :class:`~connectors.base.BatchChanges` (new states, retained ops
added and dropped, next offsets, frontier, redriven) plus the dead letters. A
partition's next offset never passes a record still buffered in the gate, so after a
crash the buffered records are read again (the frontier drops what was applied).
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Container, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from aiokafka import ConsumerRecord

from connectors.base import BatchChanges, Store
from edgebus.core.causality import CausalGate, Stream, Unit
from edgebus.core.conflict import KeyOp, KeyState, NeedsHistory, Stamp, apply, invalid_reason
from edgebus.core.placement import ComplianceRules
from edgebus.core.vector_clock import Position, VectorClock
from edgebus.errors import EdgebusError
from edgebus.kafka.dead_letters import H_REDRIVE_OF
from edgebus.region.applied_once import once_marker, once_origin, parse_redrive, txn_marker
from edgebus.region.batch_results import AppliedEvent, BatchResult, Checkpoint, DeadLetter
from edgebus.region.compiled_fold import interleaved, native_fixed, native_run
from edgebus.region.record_checks import RecordChecks
from edgebus.wire.event_reader import ReadEvent, read_event
from edgebus.wire.headers import H_DEPS, H_ONCE, H_ORIGIN_POS, H_TXN, parse_position
from edgebus.wire.watermark import H_WATERMARK, decode_watermark

__all__ = ["AppliedEvent", "BatchApplier", "BatchResult", "Checkpoint", "DeadLetter"]


#: keys per generation of a live applier's recent states (two generations at most:
#: measured on bench materialize, 20,000 keys gave 15 % more events/s than 4,000)
STATE_CACHE_KEYS = 20_000


@dataclass(slots=True)
class _Fold:
    """One batch's fold: key states as folded so far (loaded from the store first),
    the retained ops to add, the keys known to have no stored state."""

    states: dict[str, KeyState]
    pending: dict[str, list[KeyOp]]
    absent: set[str]


class _Item(NamedTuple):
    """What the gate carries for one record: the record, its event (None for a
    watermark) and the dead letter it redrives, if any."""

    record: ConsumerRecord[bytes, bytes]
    event: ReadEvent | None
    redrive_of: tuple[int, int] | None
    #: the origin its stamp names (``eb-once``: the region first written to), else
    #: the event's own
    stamp_origin: str | None = None


class BatchApplier:
    """Folds batches of a region's events onto its store (one instance per store)."""

    def __init__(
        self, region: str, rules: ComplianceRules, store: Store, *, causal: bool = True,
        checks: RecordChecks | None = None, recent_keys: int = STATE_CACHE_KEYS,
    ) -> None:
        """``causal=False`` ignores dependencies (every event is released at once): for
        rebuilding a subset of keys, whose dependencies lie in records not read; the
        final state is the same, as folds converge in any order. ``checks``: what the
        control data of each record is checked against (None: nothing).
        ``recent_keys``: how many of the states it folded lately it keeps per
        generation (two at most), so that a batch reads only the others from the store:
        a live region's hot keys; a replay, whose keys come back rarely, keeps few."""
        self.region = region
        self.rules = rules
        self.store = store
        self.causal = causal
        self.checks = checks
        self._gate: CausalGate[_Item] | None = None
        #: (topic, partition) -> next offset read since the gate was loaded
        self._read: dict[tuple[str, int], int] = {}
        self._now_ms = 0
        #: the states this applier folded lately (newest first), as the store holds
        #: them once their batch is committed: a batch's keys are loaded from the store
        #: only when not here; dropped by rollback() and forget()
        self._recent: dict[str, KeyState] = {}
        self._older: dict[str, KeyState] = {}
        self._recent_keys = recent_keys
        #: whether every state of a batch not yet committed is among them (so a key
        #: that is not may be read from the store at once)
        self._complete = True
        self._allowed: dict[tuple[str, ...], bool] = {}
        self._deps_cache: dict[bytes, VectorClock] = {}
        #: what the compiled fold needs of this applier (None: fold in Python only)
        self._fixed = native_fixed(region, self._allowed, checks) if causal else None
        #: records the compiled fold took whole (the others were folded in Python)
        self.compiled_records = 0
        #: awaited before each store read (a pipelined caller's commit in flight)
        self.before_read: Callable[[], Awaitable[None]] | None = None

    async def gate(self) -> CausalGate[_Item]:
        """The region's causal gate: frontier from the store, then kept in memory."""
        if self._gate is None:
            await self._store_read()
            self._gate = CausalGate(await self.store.frontier(), _size)
        return self._gate

    @property
    def current_gate(self) -> CausalGate[_Item] | None:
        """The gate if loaded (for status and reads), without touching the store."""
        return self._gate

    async def frontier(self) -> dict[tuple[str, int], int]:
        """(origin region, partition) -> highest origin offset applied or passed."""
        return (await self.gate()).frontier

    async def apply(
        self,
        records: Sequence[ConsumerRecord[bytes, bytes]],
        known_dead: Container[tuple[int, int]] = (),
        *,
        poison: Mapping[tuple[int, int], str] | None = None,
        now_ms: int | None = None,
    ) -> BatchResult:
        """Fold ``records`` (topic order) into changes; the caller commits them.

        ``known_dead``: (partition, offset) of records the live region already sent to
        its dead-letter topic; replay treats them as dead letters too, whatever it
        could decode now, so that it folds exactly what the live region folded (a
        redriven copy of such a record is applied instead, once). ``poison``:
        (partition, offset) -> reason of records to dead-letter unread (a record the
        store refused). Buffered events that waited for a dependency longer than
        ``checks.dependency_timeout_ms`` are dead-lettered first.

        Records are offered to the gate one by one, and what each releases is folded
        at once; with the C module, runs of common records (see
        ``edgebus/_native/fold.c``) are offered and folded in one call, the others
        here, with the same result record for record.
        """
        gate = await self.gate()
        self._now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        records = interleaved(records)
        changes = BatchChanges(events=len(records))
        result = BatchResult(changes)
        fold = await self._loaded(records)
        touched: set[Stream] = set()
        released = self._expire(gate, result)
        touched.update(u.stream for u in released)
        await self._fold(released, fold, result)
        consumed = self._read
        run = self._fixed and native_run
        ends = self.checks.source_ends if self.checks is not None else None
        batch = (
            *gate.live_maps(), fold.states, changes.states, changes.frontier, fold.pending,
            result.applied, consumed, known_dead or None, poison or None,
            ends.trusted() if ends is not None else None,
        )
        i, n = 0, len(records)
        while i < n:
            if run:
                start = i
                i, duplicates, fast, cascade = run(records, i, self._fixed, batch)
                self.compiled_records += i - start
                result.duplicates += duplicates
                result.released += fast
                if cascade is not None:  # what waited for the stream of records[i - 1]
                    touched.add(cascade)
                    released = gate.release_after(cascade)
                    if released:
                        touched.update(u.stream for u in released)
                        await self._fold(released, fold, result)
                    continue
                if i >= n:
                    break
            released = self._offer(gate, records[i], known_dead, poison, consumed, result)
            if released:
                touched.update(u.stream for u in released)
                await self._fold(released, fold, result)
            i += 1
        for key, ops in fold.pending.items():
            changes.retain.extend((key, op) for op in ops)
        self._positions(gate, touched, consumed, changes)
        self._remember(changes.states)
        return result

    async def _loaded(self, records: list[ConsumerRecord[bytes, bytes]]) -> _Fold:
        """A fold holding the states of the keys ``records`` name: as this applier
        folded them lately, else from the store (one query)."""
        raw = {r.key for r in records}
        keys = {k.decode("utf-8", "replace") for k in raw if k}
        states = await self._states(keys)
        return _Fold(states, {}, keys - states.keys())

    async def _states(self, keys: set[str]) -> dict[str, KeyState]:
        """The current states of ``keys`` (those that have one)."""
        recent, older = self._recent, self._older
        states: dict[str, KeyState] = {}
        wanted = []
        for key in keys:
            state = recent.get(key) or older.get(key)
            if state is None:
                wanted.append(key)
            else:
                states[key] = state
        if wanted:
            if not self._complete:
                # the states of a batch still committing may be missing here: wait
                await self._store_read()
                self._complete = True
            states.update(await self.store.load(wanted))
        return states

    async def _store_read(self) -> None:
        if self.before_read is not None:
            await self.before_read()

    def _remember(self, states: dict[str, KeyState]) -> None:
        """Keep a batch's new states for the next batches (two generations of at most
        ``recent_keys`` keys each: the older is dropped when the newer fills)."""
        recent = self._recent
        if len(recent) + len(states) > self._recent_keys:
            # what the older generation held was committed before this batch's fold
            # began (a pipelined caller has at most the previous batch in flight, and
            # it is all in the newer generation)
            self._older, self._recent = recent, {}
            recent = self._recent
        recent.update(states)

    def _offer(
        self,
        gate: CausalGate[_Item],
        record: ConsumerRecord[bytes, bytes],
        known_dead: Container[tuple[int, int]],
        poison: Mapping[tuple[int, int], str] | None,
        consumed: dict[tuple[str, int], int],
        result: BatchResult,
    ) -> list[Unit[_Item]]:
        """Decode one record and offer it to the causal gate: the units released, in
        causal order (or a dead letter, or a duplicate dropped)."""
        consumed[(record.topic, record.partition)] = record.offset + 1
        if (record.partition, record.offset) in known_dead:
            result.dead.append(DeadLetter(record, "dead-lettered by the live region"))
            return []
        if poison and (record.partition, record.offset) in poison:
            result.dead.append(DeadLetter(record, poison[(record.partition, record.offset)]))
            return []
        try:
            unit = self._unit(record)
        except _Dead as e:
            result.dead.append(DeadLetter(record, str(e)))
            return []
        if unit.item.redrive_of is not None and gate.is_duplicate(unit.stream, unit.offset):
            return [unit]  # an old event again: outside the stream order
        out = gate.offer(unit)
        if out is None:
            result.duplicates += 1  # a replicator retry's second copy
            return []
        return out

    async def _fold(
        self, released: list[Unit[_Item]], fold: _Fold, result: BatchResult
    ) -> None:
        """Fold the released events into the keys' states (conflict resolution)."""
        if not released:
            return
        result.released += len(released)
        changes = result.changes
        # the applied-once markers of the units released: a unit buffered in an earlier
        # batch (waiting for a dependency) is checked too
        redrives = [u.item.redrive_of for u in released if u.item.redrive_of is not None]
        done_redrives: Container[tuple[int, int]] = set()
        if redrives:
            await self._store_read()
            done_redrives = await self.store.was_redriven(redrives)
        states = fold.states
        missing = {
            u.item.event.key for u in released
            if u.item.event is not None and u.item.event.key not in states
        } - fold.absent
        if missing:  # buffered in an earlier batch, or a key the batch did not name
            states.update(await self._states(missing))
            fold.absent.update(missing - states.keys())
        pending = fold.pending
        for unit in released:
            record, event, redrive_of, stamp_origin = unit.item
            if event is None:
                continue  # a watermark: the gate moved the frontier
            if redrive_of is not None:
                if redrive_of in done_redrives or redrive_of in changes.redriven:
                    result.duplicates += 1
                    continue
                changes.redriven.add(redrive_of)
            stamp = Stamp.of(event.hlc, stamp_origin or event.origin_region, event.event_id)
            op = KeyOp(stamp, event.operation, event.payload)
            key = event.key
            state = states.get(key)
            try:
                try:
                    applied = apply(state, key, op)
                except NeedsHistory:
                    assert state is not None
                    state = state.with_ops(await self._retained(key, changes, pending))
                    applied = apply(state, key, op)
            except Exception as e:  # a poison pill: the record, not the region, is at fault
                result.dead.append(DeadLetter(
                    record, f"cannot apply to {key!r:.80}: {type(e).__name__}: {e!s:.300}"
                ))
                continue
            value = applied.state.value
            if type(value) is int and not _INT64_MIN <= value <= _INT64_MAX:
                result.dead.append(DeadLetter(
                    record,
                    f"increment would take {key!r:.80} beyond 64-bit integers; counters are "
                    "limited to -2**63 .. 2**63-1 (reset it with a set, or use a float)",
                ))
                continue
            if type(value) is float and not math.isfinite(value):
                result.dead.append(DeadLetter(
                    record,
                    f"increment would take {key!r:.80} to {value}, which JSON cannot hold; "
                    "counters stay finite (reset it with a set)",
                ))
                continue
            if applied.drop_before is not None:
                _drop_before(changes, pending, key, applied.drop_before)
            if applied.retain is not None:
                pending.setdefault(key, []).append(applied.retain)
            states[key] = applied.state
            changes.states[key] = applied.state
            result.applied.append(
                AppliedEvent(key, event.event_id, Position(*unit.stream, unit.offset), stamp.hlc)
            )

    @staticmethod
    def _positions(
        gate: CausalGate[_Item], touched: set[Stream],
        consumed: dict[tuple[str, int], int], changes: BatchChanges,
    ) -> None:
        """The frontier of the streams the batch touched, and the positions to commit
        (the compiled fold notes its streams' frontier in ``changes`` itself)."""
        for stream in touched:
            offset = gate.frontier.get(stream)
            if offset is not None:
                changes.frontier[stream] = offset
        # never commit a position past a record still buffered: a stream arrives in one
        # partition in record order, so its first buffered unit is its earliest record
        positions = changes.positions
        positions.update(consumed)
        if gate.pending:
            for unit in gate.heads():
                r = unit.item.record
                tp = (r.topic, r.partition)
                if tp in positions and r.offset < positions[tp]:
                    positions[tp] = r.offset

    def _expire(self, gate: CausalGate[_Item], result: BatchResult) -> list[Unit[_Item]]:
        """Dead-letter the buffered events that waited too long for a dependency; the
        units their removal released."""
        timeout = self.checks.dependency_timeout_ms if self.checks else None
        oldest = gate.oldest_head_ms()
        if timeout is None or oldest is None or oldest > self._now_ms - timeout:
            return []
        expired, released = gate.expire(self._now_ms - timeout)
        for unit in expired:
            deps = unit.deps.entries() if unit.deps is not None else {}
            lacking = ", ".join(
                f"{r}:{p}>={o}" for (r, p), o in deps.items()
                if (r, p) != unit.stream and gate.passed((r, p)) < o
            )
            result.dead.append(DeadLetter(
                unit.item.record,
                f"dependency timeout: waited over replication.dependency_timeout_ms="
                f"{timeout} for {lacking[:300] or 'its stream'}; redrive it once that "
                "position is applied here (edgebus dlq redrive)",
            ))
        return released

    def ready_to_expire(self) -> bool:
        """True when a buffered event has waited past the dependency timeout (the
        caller then applies an empty batch, so that it is dead-lettered)."""
        gate = self._gate
        timeout = self.checks.dependency_timeout_ms if self.checks else None
        oldest = gate.oldest_head_ms() if gate is not None else None
        return (timeout is not None and oldest is not None
                and oldest <= int(time.time() * 1000) - timeout)

    def checkpoint(self) -> Checkpoint:
        """What :meth:`rollback` needs to undo the next :meth:`apply` (its commit failed)."""
        gate = self._gate
        return Checkpoint(gate.snapshot() if gate is not None else None, dict(self._read))

    def rollback(self, checkpoint: Checkpoint) -> None:
        """Back to :meth:`checkpoint` (the gate as it was, the records since unread)."""
        if checkpoint.gate is None or self._gate is None:
            self._gate = None
        else:
            self._gate.restore(checkpoint.gate)
        self._read = checkpoint.read
        self._forget_states()

    def forget(self) -> None:
        """Drop the gate (frontier and buffered records) and the states folded lately:
        after a failed commit or a new partition assignment the store is the truth and
        buffered records are read again from the store's positions."""
        self._gate = None
        self._read = {}
        self._forget_states()

    def _forget_states(self) -> None:
        self._recent, self._older = {}, {}
        self._complete = False

    async def _retained(
        self, key: str, changes: BatchChanges, pending: dict[str, list[KeyOp]]
    ) -> list[KeyOp]:
        await self._store_read()
        stored = await self.store.load_ops(key)
        cut = changes.drop_before.get(key)
        if cut is not None:
            stored = [o for o in stored if o.stamp >= cut]
        return [*stored, *pending.get(key, ())]

    def _unit(self, record: ConsumerRecord[bytes, bytes]) -> Unit[_Item]:
        origin_raw = redrive_raw = deps_raw = watermark = txn_raw = once_raw = None
        for name, raw in record.headers or ():
            if name == H_ORIGIN_POS:
                origin_raw = raw
            elif name == H_ONCE:
                once_raw = raw
            elif name == H_DEPS:
                deps_raw = raw
            elif name == H_REDRIVE_OF:
                redrive_raw = raw
            elif name == H_TXN:
                txn_raw = raw
            elif name == H_WATERMARK:
                watermark = raw
        try:
            origin = (
                parse_position(origin_raw)
                if origin_raw is not None
                else Position(self.region, record.partition, record.offset)
            )
            if watermark is not None:
                return self._watermark(record, origin, origin_raw is not None)
            event = read_event(record.value)
            redrive_of = parse_redrive(redrive_raw) if redrive_raw is not None else None
            stamp_origin = None
            if txn_raw is not None:  # a strong commit: applied once, however often written
                redrive_of = txn_marker(txn_raw)
            elif once_raw is not None:  # one write, maybe sent twice (any_available)
                stamp_origin = once_origin(
                    once_raw, self.checks.regions if self.checks is not None else None
                )
                redrive_of = once_marker(event.event_id)
            deps = self._deps(deps_raw) if self.causal else _NO_DEPS
        except EdgebusError as e:
            raise _Dead(str(e)) from None
        key = record.key.decode("utf-8", "replace") if record.key is not None else None
        if key != event.key:
            raise _Dead(f"record key {key!r:.80} differs from the event's key {event.key!r:.80}")
        if origin_raw is None and event.origin_region != self.region:
            raise _Dead(
                f"event from origin {event.origin_region} has no {H_ORIGIN_POS} header: "
                "only edgebus's replicator may copy events between regions"
            )
        if origin.region != event.origin_region:
            raise _Dead(
                f"origin position {origin.region} differs from origin_region "
                f"{event.origin_region}"
            )
        if self.region not in event.placement:
            raise _Dead(
                f"placed in {', '.join(event.placement)}, not in {self.region}: it must not "
                "be stored here"
            )
        if not self._may_hold(event.classification):
            raise _Dead(
                f"compliance no longer allows {', '.join(event.classification) or 'public'} "
                f"data in {self.region}"
            )
        reason = invalid_reason(event.operation, event.payload)
        if reason is not None:
            raise _Dead(reason)
        checks = self.checks
        if checks is not None and origin_raw is not None:
            problem = checks.origin_problem(origin, record.partition)
            if problem is not None:
                raise _Dead(problem)
        return Unit(
            (origin.region, origin.partition),
            origin.offset,
            deps,
            _Item(record, event, redrive_of, stamp_origin),
            None,
            0,
            self._now_ms,
        )

    def _watermark(
        self, record: ConsumerRecord[bytes, bytes], origin: Position, copied: bool
    ) -> Unit[_Item]:
        mark = decode_watermark(record.value)
        if mark.origin_region != origin.region or mark.partition != origin.partition:
            raise _Dead(
                f"watermark of {mark.origin_region}:{mark.partition} sits in the stream of "
                f"{origin.region}:{origin.partition}"
            )
        checks = self.checks
        if checks is not None:
            problem = checks.origin_problem(origin, record.partition) if copied else None
            if problem is None and mark.origin_time_ms is not None:
                problem = checks.heartbeat_problem(mark.origin_time_ms, self._now_ms)
            if problem is not None:
                raise _Dead(problem)
        return Unit(
            (origin.region, origin.partition),
            origin.offset,
            None,
            _Item(record, None, None),
            mark.origin_time_ms,
            0,
            self._now_ms,
        )

    def _deps(self, raw: bytes | None) -> VectorClock:
        if raw is None or raw == _EMPTY_CLOCK:
            return _NO_DEPS
        cache = self._deps_cache
        deps = cache.get(raw)
        if deps is None:
            deps = VectorClock.decode(raw)
            problem = self.checks.deps_problem(deps) if self.checks is not None else None
            if problem is not None:
                raise EdgebusError(problem)
            if len(cache) >= 4096:
                cache.clear()
            cache[raw] = deps
        return deps

    def _may_hold(self, classes: tuple[str, ...]) -> bool:
        allowed = self._allowed.get(classes)
        if allowed is None:
            allowed = bool(self.rules.allowed_regions((self.region,), classes))
            self._allowed[classes] = allowed
        return allowed


_EMPTY_CLOCK = b"\x01\x00"
_NO_DEPS = VectorClock.empty()
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class _Dead(Exception):
    pass


def _size(unit: Unit[_Item]) -> int:
    """The bytes a buffered record holds: key, value and headers."""
    record = unit.item.record
    size = len(record.key or b"") + len(record.value or b"")
    for name, value in record.headers or ():
        size += len(name) + len(value or b"")
    return size


def state_row(state: KeyState, region: str) -> dict[str, Any]:
    """A key state as a read result (JSON-ready)."""
    top = state.top
    return {
        "key": state.key,
        "region": region,
        "exists": state.exists,
        "value": state.value if state.exists else None,
        "version": state.version,
        "origin": top.origin,
        "hlc": {"wall_ms": top.hlc >> 16, "logical": top.hlc & 0xFFFF},
        "event_id": top.event_id,
    }


def _drop_before(
    changes: BatchChanges, pending: dict[str, list[KeyOp]], key: str, cut: Stamp
) -> None:
    """The key's ops older than ``cut`` are no longer needed: in the store (on commit)
    nor among the ops this batch would retain."""
    previous = changes.drop_before.get(key)
    if previous is None or cut > previous:
        changes.drop_before[key] = cut
    if key in pending:
        pending[key] = [o for o in pending[key] if o.stamp >= cut]
