"""A causal-consistency checker for histories of writes and reads recorded by tests.

Histories
---------
Integration tests record every call they make as an :class:`Op` (a
:class:`HistoryRecorder` per process; :meth:`HistoryRecorder.save_jsonl` and
:func:`load_jsonl` merge several processes' records) and ask :func:`check_causal`
for anomalies. An op is either

* a *write* of a ``value`` to a ``key`` by a ``session``, made in its home ``region``
  and *placed* in the regions of ``placement``: it can only ever be visible there;
* a *read* of a ``key`` by a ``session``, *served by* ``region``, returning ``value``
  (``None``: the key was absent) at the consistency level ``consistency``
  (``"eventual"``, ``"causal"`` or ``"bounded_staleness"``).

``invoked`` and ``completed`` are ``time.monotonic()`` readings taken around the call;
on Linux that clock is shared by all processes of a host. A session is one sequential
client, so its ops do not overlap in time. Write values are unique across the whole
history, so a read names the write it observed (two writes with the same value are a
bug in the test and raise :class:`ValueError`, as do ops that cannot be valid at all).

Definitions
-----------
Causality is derived from the history alone (true causality, never list positions).
Write ``w`` *contributes* ``{w} | past(w)``; a read that returned ``w`` contributes the
same set; a read that returned nothing (or a phantom value) contributes nothing. The
*causal past* of an op ``o`` of session ``S`` is the union of the contributions of the
ops of ``S`` that completed before ``o`` was invoked (session order, by real time).
``w1 ≺ w2`` iff ``w1 ∈ past(w2)``; ``w1 ⪯ w2`` iff ``w1 ≺ w2`` or ``w1 == w2``. Pasts
are transitively closed: ``w1 ≺ w2`` implies ``past(w1) ⊆ past(w2)``.

The checker reports, as :class:`Anomaly` objects, each of these kinds:

``"phantom"``
    A read returned a value no write wrote, or one written to another key.
``"placement"``
    A read served by region ``R`` returned a write that is not placed in ``R``.
``"future"``
    A read returned a write that was invoked only after the read completed (all
    processes read the same monotonic clock, so this is a recording bug or worse).
``"cycle"``
    Writes that are in their own causal past: reads observed values that depend on
    those reads themselves. ``≺`` is then no order at all; the other checks still run,
    but never count ``w ≺ w`` against a read.
``"session"`` (only reads with consistency ``"causal"``)
    A read ``r`` of key ``k`` served by ``R`` in session ``S``. Let ``W`` be the
    writes to ``k`` in ``past(r)`` that are placed in ``R``. If ``W`` is not empty,
    ``r`` must not return nothing, nor a ``w_r`` with ``w_r ≺ w`` for some
    ``w ∈ W``: the session had seen something newer. Concurrent writes may be resolved
    either way, and returning a write of ``W`` itself is fine. This one rule covers
    read-your-writes, monotonic reads and writes-follow-reads.
``"visibility"`` (all reads, whatever their session or consistency)
    A region's state is monotone and causally closed. For reads ``r1`` and ``r2``
    served by the same region ``R`` with ``r2.invoked > r1.completed``: if ``r1``
    returned ``w``, then for every write ``w'`` to ``r2.key`` with ``w' ⪯ w`` that is
    placed in ``R``, ``r2`` must not return nothing, nor a ``w2`` with ``w2 ≺ w'``.
    When ``w' == w`` the region went back in time; otherwise a write was visible
    before its dependency ``w'``.

A violating read yields at most one anomaly per kind, with one witness write (and the
op through which the session or region had come to know it).

Complexity
----------
Pasts are Python ints used as bitsets over write indexes. With ``N`` ops, ``W``
writes, ``S`` sessions, ``R`` regions and ``P`` regions per placement: sorting is
``O(N log N)``; the pasts take ``O(N)`` bitset unions; each check walks a sequence
(a session's ops, or the reads one region served) once, in completion order, keeping
what it has learnt so far per (key, region), and every write enters the knowledge of
each sequence at most once, so both checks together cost ``O(N)`` bitset operations
plus ``O((S + R) · W · P)`` dictionary updates. A bitset operation costs
``O(W / 64)`` machine words; there are no pairs of reads. A simulated history of
20,000 ops (7,000 writes, 24 sessions, 3 regions) checks in under two seconds.
"""

from __future__ import annotations

import bisect
import fcntl
import json
import math
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

__all__ = [
    "CONSISTENCIES",
    "Anomaly",
    "HistoryRecorder",
    "Op",
    "check_causal",
    "load_jsonl",
    "summarize",
]

CONSISTENCIES = ("eventual", "causal", "bounded_staleness")

# value index of a read: a write index (>= 0), or one of these
_ABSENT = -1
_PHANTOM = -2


@dataclass(frozen=True, slots=True)
class Op:
    """One recorded call (see the module docstring for the meaning of each field)."""

    kind: Literal["write", "read"]
    session: str
    key: str
    value: str | None
    region: str
    invoked: float
    completed: float
    consistency: str = "eventual"
    placement: tuple[str, ...] = ()

    def describe(self) -> str:
        """The op on one line, e.g. ``A: write x='v1' at eu (placed eu,us) [1..1.5]``."""
        span = f"[{_fmt_time(self.invoked)}..{_fmt_time(self.completed)}]"
        if self.kind == "write":
            placed = ",".join(self.placement)
            return (
                f"{self.session}: write {self.key}={self.value!r} at {self.region} "
                f"(placed {placed}) {span}"
            )
        got = "absent" if self.value is None else repr(self.value)
        return (
            f"{self.session}: {self.consistency} read {self.key} at {self.region} -> {got} {span}"
        )


@dataclass(frozen=True, slots=True)
class Anomaly:
    """A violation found in a history; ``ops[0]`` is the offending read (or write)."""

    kind: str
    message: str
    ops: tuple[Op, ...]

    def __str__(self) -> str:
        return f"[{self.kind}] {self.message}"


def _fmt_time(t: float) -> str:
    return f"{t:.6f}".rstrip("0").rstrip(".")


def _validate(op: Op) -> None:
    if (
        op.kind in ("write", "read")
        and op.invoked <= op.completed  # False for NaN
        and math.isfinite(op.invoked)
        and math.isfinite(op.completed)
        and (
            (op.kind == "write" and op.value is not None and op.placement)
            or (op.kind == "read" and op.consistency in CONSISTENCIES and not op.placement)
        )
    ):
        return
    where = op.describe()
    if op.kind not in ("write", "read"):
        raise ValueError(f"op kind must be 'write' or 'read', not {op.kind!r}: {where}")
    if not (math.isfinite(op.invoked) and math.isfinite(op.completed)):
        raise ValueError(f"op times must be finite: {where}")
    if op.completed < op.invoked:
        raise ValueError(f"op completed before it was invoked: {where}")
    if op.kind == "write":
        if op.value is None:
            raise ValueError(f"a write needs a value: {where}")
        if not op.placement:
            raise ValueError(f"a write needs its placement (the regions it is placed in): {where}")
    else:
        if op.consistency not in CONSISTENCIES:
            raise ValueError(f"read consistency must be one of {', '.join(CONSISTENCIES)}: {where}")
        if op.placement:
            raise ValueError(f"a read has no placement: {where}")


# -- recording -------------------------------------------------------------------------


class HistoryRecorder:
    """Collects the ops of one process; merge processes with ``save_jsonl``/``load_jsonl``."""

    def __init__(self) -> None:
        self._ops: list[Op] = []
        self._values: set[str] = set()
        self._saved: dict[Path, int] = {}

    @property
    def ops(self) -> list[Op]:
        """The ops recorded so far, in recording order (a copy)."""
        return list(self._ops)

    def write(
        self,
        session: str,
        key: str,
        value: str,
        region: str,
        placement: Iterable[str],
        invoked: float,
        completed: float,
        consistency: str = "eventual",
    ) -> Op:
        """Record a write; raises ValueError if this recorder already saw ``value``."""
        op = Op(
            "write", session, key, value, region, invoked, completed, consistency,
            tuple(placement),
        )  # fmt: skip
        _validate(op)
        if value in self._values:
            raise ValueError(f"write value {value!r} recorded twice: {op.describe()}")
        self._values.add(value)
        self._ops.append(op)
        return op

    def read(
        self,
        session: str,
        key: str,
        value: str | None,
        region: str,
        invoked: float,
        completed: float,
        consistency: str = "eventual",
    ) -> Op:
        """Record a read that ``region`` served (``value=None``: the key was absent)."""
        op = Op("read", session, key, value, region, invoked, completed, consistency)
        _validate(op)
        self._ops.append(op)
        return op

    def save_jsonl(self, path: str | Path) -> None:
        """Append the ops not yet saved to ``path``, one JSON object a line.

        Several processes may append to the same file: each call writes all its lines
        with one ``write`` under an exclusive ``flock``, in append mode.
        """
        target = Path(path)
        start = self._saved.get(target.resolve(), 0)
        lines = "".join(
            json.dumps(_to_json(op), ensure_ascii=False) + "\n" for op in self._ops[start:]
        )
        if lines:
            with target.open("a", encoding="utf-8") as f:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX)
                try:
                    f.write(lines)
                    f.flush()
                finally:
                    fcntl.flock(f.fileno(), fcntl.LOCK_UN)
        self._saved[target.resolve()] = len(self._ops)


_FIELDS = (
    "kind", "session", "key", "value", "region", "invoked", "completed", "consistency",
    "placement",
)  # fmt: skip


def _to_json(op: Op) -> dict[str, Any]:
    record = asdict(op)
    record["placement"] = list(op.placement)
    return record


def _from_json(record: object, where: str) -> Op:
    if not isinstance(record, dict) or set(record) != set(_FIELDS):
        raise ValueError(f"{where}: expected an object with the fields {', '.join(_FIELDS)}")
    kind, value, placement = record["kind"], record["value"], record["placement"]
    strings = (record["session"], record["key"], record["region"], record["consistency"])
    times = (record["invoked"], record["completed"])
    if (
        kind not in ("write", "read")
        or not all(isinstance(s, str) for s in strings)
        or not (value is None or isinstance(value, str))
        or not all(isinstance(t, int | float) and not isinstance(t, bool) for t in times)
        or not (isinstance(placement, list) and all(isinstance(p, str) for p in placement))
    ):
        raise ValueError(f"{where}: a field has the wrong type: {record!r}")
    op = Op(
        "write" if kind == "write" else "read",
        record["session"], record["key"], value, record["region"],
        float(record["invoked"]), float(record["completed"]), record["consistency"],
        tuple(placement),
    )  # fmt: skip
    try:
        _validate(op)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    return op


def load_jsonl(*paths: str | Path) -> list[Op]:
    """The ops saved in all of ``paths``, merged and sorted by invocation time."""
    ops: list[Op] = []
    for path in paths:
        with Path(path).open(encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                where = f"{path}:{number}"
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{where}: not JSON: {e}") from None
                ops.append(_from_json(record, where))
    ops.sort(key=lambda op: (op.invoked, op.completed))
    return ops


# -- checking --------------------------------------------------------------------------


def _bits(x: int) -> Iterator[int]:
    """The indexes of the set bits of ``x >= 0``, ascending."""
    if x.bit_count() <= 16:
        while x:
            low = x & -x
            yield low.bit_length() - 1
            x ^= low
        return
    digits = format(x, "b")[::-1]
    i = digits.find("1")
    while i != -1:
        yield i
        i = digits.find("1", i + 1)


class _History:
    """A validated history: ops in a canonical order, write indexes, causal pasts."""

    def __init__(self, ops: Iterable[Op]) -> None:
        self.ops: list[Op] = sorted(
            ops,
            key=lambda o: (
                o.invoked, o.completed, o.session, o.kind, o.key, o.value or "", o.region,
            ),
        )  # fmt: skip
        for op in self.ops:
            _validate(op)
        self.write_op: list[int] = []  # write index -> op index
        self.write_of: dict[str, int] = {}  # value -> write index
        for i, op in enumerate(self.ops):
            if op.kind == "write":
                assert op.value is not None
                if op.value in self.write_of:
                    first = self.ops[self.write_op[self.write_of[op.value]]]
                    raise ValueError(
                        f"write value {op.value!r} is not unique: {first.describe()} "
                        f"and {op.describe()}"
                    )
                self.write_of[op.value] = len(self.write_op)
                self.write_op.append(i)
        # the write an op wrote or returned (reads: _ABSENT or _PHANTOM if none)
        self.target: list[int] = []
        for op in self.ops:
            if op.value is None:
                self.target.append(_ABSENT)
                continue
            w = self.write_of.get(op.value, _PHANTOM)
            if w != _PHANTOM and self.ops[self.write_op[w]].key != op.key:
                w = _PHANTOM
            self.target.append(w)
        # each session's ops by completion, and where each op's causal past ends in them
        self.session_ops: dict[str, list[int]] = {}
        for i, op in enumerate(self.ops):
            self.session_ops.setdefault(op.session, []).append(i)
        self.prefix: list[int] = [0] * len(self.ops)
        for members in self.session_ops.values():
            members.sort(key=lambda i: self.ops[i].completed)
            ends = [self.ops[i].completed for i in members]
            for i in members:
                self.prefix[i] = bisect.bisect_left(ends, self.ops[i].invoked)
        self.past: list[int] = [0] * len(self.ops)  # op index -> causal past
        self.write_past: list[int] = []  # write index -> causal past
        self._compute_pasts()
        # op index -> contribution to the knowledge of whoever completes the op
        self.contribution: list[int] = [
            0 if w < 0 else (1 << w) | self.write_past[w] for w in self.target
        ]

    def _compute_pasts(self) -> None:
        """``past`` of every op: ``cum[S][j]`` is the union of the contributions of the
        first ``j`` ops of session ``S`` by completion; an op's past is ``cum[S][prefix]``.

        ``cum[S][j + 1] = cum[S][j] | contribution(j-th op)``, where a write adds its own
        bit (its past is already in ``cum[S][j]``) and a read of ``w`` adds ``w`` and
        ``past(w) = cum[T][prefix(w)]`` of the writer's session ``T``. Nodes are
        evaluated in dependency (Kahn) order; nodes on cycles (reads of values that
        depend on themselves) get the least fixpoint.
        """
        base: dict[str, int] = {}
        count = 0
        for session, members in self.session_ops.items():
            base[session] = count
            count += len(members) + 1
        own = [0] * count  # bits a node adds
        deps: list[tuple[int, ...]] = [()] * count
        for session, members in self.session_ops.items():
            b = base[session]
            for j, i in enumerate(members):
                w = self.target[i]
                node = b + j + 1
                if w < 0:
                    deps[node] = (node - 1,)
                    continue
                own[node] = 1 << w
                if self.ops[i].kind == "write":
                    deps[node] = (node - 1,)
                else:
                    writer = self.write_op[w]
                    source = base[self.ops[writer].session] + self.prefix[writer]
                    deps[node] = (node - 1, source)
        indegree = [len(d) for d in deps]
        dependents: list[list[int]] = [[] for _ in range(count)]
        for node, d in enumerate(deps):
            for source in d:
                dependents[source].append(node)
        value = [0] * count
        ready = [node for node in range(count) if indegree[node] == 0]
        done = 0
        while ready:
            node = ready.pop()
            done += 1
            acc = own[node]
            for source in deps[node]:
                acc |= value[source]
            value[node] = acc
            for nxt in dependents[node]:
                indegree[nxt] -= 1
                if indegree[nxt] == 0:
                    ready.append(nxt)
        if done < count:
            stuck = [node for node in range(count) if indegree[node] > 0]
            changed = True
            while changed:
                changed = False
                for node in stuck:
                    acc = own[node]
                    for source in deps[node]:
                        acc |= value[source]
                    if acc != value[node]:
                        value[node] = acc
                        changed = True
        for session, members in self.session_ops.items():
            for i in members:
                self.past[i] = value[base[session] + self.prefix[i]]
        self.write_past = [self.past[i] for i in self.write_op]
        # write index -> the (key, region) slots it can be visible in
        self.write_slots: list[tuple[tuple[str, str], ...]] = [
            tuple((self.ops[i].key, region) for region in self.ops[i].placement)
            for i in self.write_op
        ]

    def write(self, w: int) -> Op:
        return self.ops[self.write_op[w]]


def _stale_reads(
    h: _History,
    sources: Sequence[int],
    queries: Iterable[tuple[int, int]],
    region: str | None,
) -> Iterator[tuple[int, int]]:
    """Reads that return less than what was known when they were invoked.

    ``sources`` are op indexes in completion order whose contributions make up the
    knowledge; a query ``(j, r)`` asks about read ``r`` knowing the first ``j`` sources.
    With ``W`` the known writes to ``r.key`` placed in ``r.region``, yields
    ``(r, w)`` for a witness ``w ∈ W`` when ``r`` returned nothing while ``W`` is not
    empty, or returned ``w_r ≺ w``. ``region`` limits the bookkeeping to one region.
    """
    ops, contribution, target = h.ops, h.contribution, h.target
    write_past, write_slots = h.write_past, h.write_slots
    known = 0
    placed: dict[tuple[str, str], list[int]] = {}  # (key, region) -> known writes placed there
    covered: dict[tuple[str, str], int] = {}  # (key, region) -> union of their pasts
    position = 0
    for j, r in sorted(queries):
        while position < j:
            new = contribution[sources[position]] & ~known
            position += 1
            if not new:
                continue
            known |= new
            for w in _bits(new):
                past = write_past[w]
                for slot in write_slots[w]:
                    if region is None or slot[1] == region:
                        if slot in placed:
                            placed[slot].append(w)
                            covered[slot] |= past
                        else:
                            placed[slot] = [w]
                            covered[slot] = past
        read = ops[r]
        slot = (read.key, read.region)
        writes = placed.get(slot)
        if not writes:
            continue
        got = target[r]
        if got == _ABSENT:
            yield r, max(writes)
        elif got >= 0 and covered[slot] >> got & 1:
            for w in sorted(writes, reverse=True):
                if w != got and write_past[w] >> got & 1:
                    yield r, w
                    break


def _first_source(h: _History, sources: Sequence[int], w: int) -> int:
    """The first of ``sources`` (op indexes) whose contribution holds write ``w``."""
    for i in sources:
        if h.contribution[i] >> w & 1:
            return i
    raise AssertionError(f"write {w} is contributed by none of the sources")


def _returned(h: _History, r: int) -> tuple[str, tuple[Op, ...]]:
    got = h.target[r]
    if got < 0:
        return "nothing", ()
    return h.write(got).describe(), (h.write(got),)


class _StaleRead(NamedTuple):
    """A stale read, the write it should have seen, where that write became known and
    what the read returned instead."""

    read: Op
    witness: int  #: the write it should have seen (write id)
    source: int  #: the first of the sources that holds the witness (op index)
    got: str  #: what the read returned, described ("nothing" if nothing)
    got_ops: tuple[Op, ...]  #: ... as ops (none if nothing)


def _stale_read_witnesses(
    h: _History,
    sources: Sequence[int],
    queries: Iterable[tuple[int, int]],
    region: str | None,
) -> Iterator[_StaleRead]:
    """:func:`_stale_reads`, each with the first of ``sources`` that holds its witness
    (one of those the read's query knew: they hold every witness) and what it returned."""
    for r, w in _stale_reads(h, sources, queries, region):
        yield _StaleRead(h.ops[r], w, _first_source(h, sources, w), *_returned(h, r))


def _check_reads(h: _History) -> list[Anomaly]:
    found: list[Anomaly] = []
    for i, op in enumerate(h.ops):
        if op.kind != "read":
            continue
        w = h.target[i]
        if w == _PHANTOM:
            assert op.value is not None
            if op.value in h.write_of:
                other = h.write(h.write_of[op.value])
                message = (
                    f"{op.describe()} returned a value written to key {other.key!r}, "
                    f"not {op.key!r}: {other.describe()}"
                )
                found.append(Anomaly("phantom", message, (op, other)))
            else:
                message = f"{op.describe()} returned a value that no write wrote"
                found.append(Anomaly("phantom", message, (op,)))
            continue
        if w < 0:
            continue
        write = h.write(w)
        if op.region not in write.placement:
            message = (
                f"{op.describe()} returned a write that is not placed in {op.region}: "
                f"{write.describe()}"
            )
            found.append(Anomaly("placement", message, (op, write)))
        if write.invoked > op.completed:
            message = (
                f"{op.describe()} returned a write invoked after the read completed: "
                f"{write.describe()}"
            )
            found.append(Anomaly("future", message, (op, write)))
    return found


def _check_cycles(h: _History) -> list[Anomaly]:
    cyclic = [w for w, past in enumerate(h.write_past) if past >> w & 1]
    found: list[Anomaly] = []
    grouped: set[int] = set()
    for w in cyclic:
        if w in grouped:
            continue
        group = [x for x in cyclic if h.write_past[w] >> x & 1 and h.write_past[x] >> w & 1]
        grouped.update(group)
        ops = tuple(h.write(x) for x in group)
        message = (
            "causality cycle: each of these writes is in the causal past of the others "
            "and its own (reads returned values that depend on those reads):\n    "
            + "\n    ".join(op.describe() for op in ops)
        )
        found.append(Anomaly("cycle", message, ops))
    return found


def _check_sessions(h: _History) -> list[Anomaly]:
    found: list[Anomaly] = []
    for members in h.session_ops.values():
        queries = [
            (h.prefix[i], i)
            for i in members
            if h.ops[i].kind == "read"
            and h.ops[i].consistency == "causal"
            and h.target[i] != _PHANTOM
        ]
        if not queries:
            continue
        for read, w, through, got, got_ops in _stale_read_witnesses(h, members, queries, None):
            seen, via = h.write(w), h.ops[through]
            how = "it wrote" if through == h.write_op[w] else f"through {via.describe()}"
            why = (
                f"placed in {read.region}, so the key cannot be absent there"
                if not got_ops
                else f"which causally follows the returned {got}"
            )
            message = (
                f"stale read: {read.describe()}\n"
                f"    but the session had already seen {seen.describe()} ({how}),\n"
                f"    {why}"
            )
            found.append(Anomaly("session", message, (read, seen, via, *got_ops)))
    return found


def _check_regions(h: _History) -> list[Anomaly]:
    found: list[Anomaly] = []
    served: dict[str, list[int]] = {}
    for i, op in enumerate(h.ops):
        if op.kind == "read" and h.target[i] != _PHANTOM:
            served.setdefault(op.region, []).append(i)
    for region, reads in served.items():
        sources = sorted((i for i in reads if h.target[i] >= 0), key=lambda i: h.ops[i].completed)
        ends = [h.ops[i].completed for i in sources]
        queries = [(bisect.bisect_left(ends, h.ops[r].invoked), r) for r in reads]
        for later, w, first, got, got_ops in _stale_read_witnesses(h, sources, queries, region):
            dep, earlier = h.write(w), h.ops[first]
            also = f",\n    and the returned {got} causally precedes it" if got_ops else ""
            if h.target[first] == w:
                what = f"region {region} went back in time: {earlier.describe()}"
            else:
                what = (
                    f"write visible before its dependency: {earlier.describe()}\n"
                    f"    observed a write that causally depends on {dep.describe()},"
                )
            message = f"{what}\n    but the later {later.describe()}{also}"
            found.append(Anomaly("visibility", message, (later, earlier, dep, *got_ops)))
    return found


_KIND_ORDER = {
    "cycle": 0, "phantom": 1, "placement": 2, "future": 3, "session": 4, "visibility": 5,
}  # fmt: skip


def check_causal(ops: Iterable[Op]) -> list[Anomaly]:
    """The anomalies of a history (see the module docstring), ordered by the time of the
    offending op; an empty list means the history is causally consistent.

    Raises ValueError if two writes have the same value, or an op is malformed.
    """
    h = _History(ops)
    found = _check_cycles(h) + _check_reads(h) + _check_sessions(h) + _check_regions(h)
    found.sort(key=lambda a: (a.ops[0].invoked, a.ops[0].completed, _KIND_ORDER[a.kind]))
    return found


def summarize(anomalies: Sequence[Anomaly], limit: int = 10) -> str:
    """A report for assertion messages: counts by kind and the first ``limit`` anomalies."""
    if not anomalies:
        return "no anomalies"
    counts = Counter(a.kind for a in anomalies)
    lines = [
        f"{len(anomalies)} anomalies ("
        + ", ".join(f"{kind}: {n}" for kind, n in sorted(counts.items()))
        + ")"
    ]
    lines += [f"{n}. {a}" for n, a in enumerate(anomalies[:limit], 1)]
    if len(anomalies) > limit:
        lines.append(f"... and {len(anomalies) - limit} more")
    return "\n".join(lines)
