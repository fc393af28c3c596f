"""A linearizability checker for histories of register operations (Jepsen-style tests).

Model
-----
Every key is an independent register holding one value, ``initial`` at the start
(default ``None``, meaning absent). Four operations:

* ``read``: returns the current value (``None`` = absent). A read with a known outcome
  must be linearized at a point where the register holds exactly ``result``.
* ``write``: sets the value to ``arg``.
* ``cas``: ``arg = (expected, new)``; succeeds iff the current value equals ``expected``
  and then sets ``new``. A cas that reported success (``ok=True``) must be linearized
  where the value equals ``expected``; one that reported a lost race (``ok=False``)
  must be linearized where it does not, and changes nothing.
* ``incr``: adds ``arg`` to a number (absent counts as 0). On a value that is not a
  number it cannot take effect. When ``result`` is given it must equal the new value.

Values are compared with ``==`` (so ``1 == 1.0``), except that booleans never equal
numbers. They need not be hashable.

Linearizability is local (Herlihy & Wing 1990): a history is linearizable iff the
sub-history of every object is, so each key is checked on its own.

Failed and unknown outcomes
---------------------------
* ``ok=False`` on a completed write or incr means it definitely took no effect: the
  call is dropped. A completed read with ``ok=False`` observed nothing and is dropped.
* A call with an unknown outcome (``completed is None``: the client crashed or timed
  out; or ``ok is None``: an ambiguous answer) may have taken effect at any instant
  after ``invoked`` -- even after ``completed``, as a request may still be in flight
  -- or never. It gets no return entry: the search may linearize it at any point after
  its invocation, or leave it out. Its ``result`` is ignored. An unknown cas can only
  matter when it succeeded (a failed cas changes nothing, like one never executed),
  so it is linearized only where the value equals ``expected``. Unknown reads are
  dropped: they constrain nothing.
* A client's calls do not overlap (checked for calls with a ``completed`` time); a
  client that gives up on a call may go on with the next one.

Algorithm
---------
Wing & Gong's search: the history of a key becomes a list of invocation and return
entries ordered by time (at equal times invocations come first, so touching intervals
count as concurrent). Walking the list, a call whose invocation is met is tried: if the
model accepts it in the current state it is linearized -- its entries are unlinked from
the list (dancing links) and pushed on a stack -- and the walk restarts from the head.
Reaching a return entry means that call had to be linearized by now: the unknown-
outcome calls invoked before that point are tried next, and when none helps the search
pops the last linearized call, restores its entries and tries the candidate after it.
The history is linearizable once every call with a known outcome is linearized
(unknown-outcome ones may be left out).

Plain Wing & Gong is exponential in the number of concurrent calls. As in Lowe's
just-in-time linearization search (which porcupine implements, with Horn & Kroening's
P-compositionality -- here: checking every key on its own), configurations are
memoized: (set of linearized calls as a bitset ``int``, register value) is recorded
and never explored twice, as what can follow depends on nothing else. Four
refinements each skip orders only when one at least as good is explored:

* observers first: a read that fits the current value, or a cas that reported a lost
  race and sees another value than it expected, changes nothing and could move before
  any other candidate; it is linearized at once, and the alternatives are not tried.
  Most of the branching in register histories is about where reads go.
* dominance: a configuration is skipped when one with the same linearized known-outcome
  calls and value, and a subset of its linearized unknown-outcome calls, was explored
  (an unknown-outcome call not yet linearized can still be, or not). Unknown-outcome
  calls are tried after the known-outcome candidates, so that configurations with
  fewer of them tend to be explored first.
* symmetry: identical unknown-outcome calls (same op and argument) are interchangeable
  once invoked, so only the earliest-invoked one not yet linearized is tried.
* no blind overwrite: a write is not linearized right after an unknown-outcome call,
  whose effect it would erase; the order without that call is explored instead.

Complexity: the configurations are bounded by the distinct (linearized set, value)
pairs. With n calls and at most c known-outcome calls in flight at any instant, that is
about n * 2**c * (distinct values), times the ways to have linearized the unknown-
outcome calls (up to 2**u for u of them). Each configuration costs O(c + u) model steps
and O(n / 64) for hashing the bitset. In practice the depth-first search finds a
linearization of a correct history almost directly: 400 calls of 16 clients, a tenth
of them with unknown outcomes, take up to some 25,000 configurations, a fraction of a
second. Proving that there is no linearization explores every configuration of the
shortest failing prefix: for 300 calls of 10 clients, some 5,000 to 20,000 when every
outcome is known, but easily over a million with a dozen unknown outcomes, which can
each take effect at any later point. ``max_states`` bounds the configurations explored
per key; past it :class:`HistoryTooConcurrentError` is raised. The problem is
NP-complete in general (Gibbons & Korach 1997).

When a key fails, the explanation names the call whose return entry the search could
never get past with every earlier-returning call linearized: the history up to that
return is the shortest prefix without a linearization (every shorter one has one). It
gives the register values the call was refused at, those it fitted but led nowhere,
the values possible when it returned, the calls in flight with it and the tail of one
linearization of what came before.

References
----------
* J. M. Wing and C. Gong, "Testing and verifying concurrent objects", Journal of
  Parallel and Distributed Computing 17(1-2), 1993.
* G. Lowe, "Testing for linearizability", Concurrency and Computation: Practice and
  Experience 29(4), 2017.
* A. Horn and D. Kroening, "Faster linearizability checking via P-compositionality",
  FORTE 2015.
* A. Athalye, porcupine, https://github.com/anishathalye/porcupine (Go).
* P. B. Gibbons and E. Korach, "Testing shared memories", SIAM Journal on Computing
  26(4), 1997.
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Op = Literal["read", "write", "cas", "incr"]
_OPS = frozenset({"read", "write", "cas", "incr"})

__all__ = [
    "Call",
    "HistoryTooConcurrentError",
    "KeyResult",
    "LinearizabilityResult",
    "Op",
    "check_linearizable",
]


@dataclass(frozen=True, slots=True)
class Call:
    """One client call on one key, as recorded by the test harness."""

    process: str  # client id; a client's calls do not overlap
    key: str
    op: Op
    arg: Any  # write: value; cas: (expected, new); incr: delta; read: None
    invoked: float  # time.monotonic() at call
    completed: float | None  # None = outcome unknown: may take effect any time after invoked
    ok: bool | None  # True: done; False: no effect (cas: lost race); None: unknown outcome
    result: Any = None  # read: value returned (None = absent); incr: new value if known

    @property
    def unknown(self) -> bool:
        """Whether the outcome is unknown (it may or may not have taken effect)."""
        return self.completed is None or self.ok is None


@dataclass(frozen=True, slots=True)
class KeyResult:
    """The verdict for one key."""

    key: str
    ok: bool
    calls: int  # calls the search considered (dropped ones excluded)
    states: int  # (linearized set, value) configurations explored
    explanation: str | None = None  # why not, when not ok
    failed_call: Call | None = None  # the call whose return could not be reached, when not ok


@dataclass(frozen=True, slots=True)
class LinearizabilityResult:
    """The verdict for a whole history: linearizable iff every key is."""

    key_results: dict[str, KeyResult]

    @property
    def ok(self) -> bool:
        return all(result.ok for result in self.key_results.values())

    @property
    def failed_keys(self) -> list[str]:
        return [key for key, result in self.key_results.items() if not result.ok]

    def summary(self) -> str:
        """One line when linearizable, else every failing key's explanation."""
        calls = sum(result.calls for result in self.key_results.values())
        states = sum(result.states for result in self.key_results.values())
        keys = len(self.key_results)
        if self.ok:
            return f"linearizable: {keys} key(s), {calls} call(s), {states} search state(s)"
        failed = self.failed_keys
        parts = [f"NOT linearizable: {len(failed)} of {keys} key(s) failed ({', '.join(failed)})"]
        parts.extend(str(self.key_results[key].explanation) for key in failed)
        return "\n\n".join(parts)


class HistoryTooConcurrentError(Exception):
    """The search for one key explored more than ``max_states`` configurations."""

    def __init__(
        self, key: str, calls: int, concurrency: int, unknown: int, max_states: int
    ) -> None:
        self.key = key
        self.calls = calls
        self.concurrency = concurrency  # most known-outcome calls in flight at once
        self.unknown = unknown  # calls with an unknown outcome that may take effect
        self.max_states = max_states
        super().__init__(
            f"key {key!r}: the history is too concurrent to check: the linearizability search "
            f"explored more than max_states={max_states:,} configurations ({calls} calls, up "
            f"to {concurrency} in flight at once, and {unknown} with an unknown outcome, which "
            "may take effect at any later point). Use fewer concurrent clients per key "
            "(spread them over more keys), crash or time out fewer calls, or run shorter "
            "histories."
        )


def check_linearizable(
    calls: Iterable[Call], initial: Any = None, *, max_states: int = 5_000_000
) -> LinearizabilityResult:
    """Check that ``calls`` are linearizable with respect to one register per key.

    Every key starts at ``initial``. Raises :class:`HistoryTooConcurrentError` when
    one key needs more than ``max_states`` search configurations, and ``ValueError``
    for malformed calls.
    """
    history = list(calls)
    _validate(history)
    by_key: dict[str, list[Call]] = {}
    for call in history:
        by_key.setdefault(call.key, []).append(call)
    origin = min((call.invoked for call in history), default=0.0)
    return LinearizabilityResult(
        {
            key: _KeySearch(key, key_calls, initial, origin).run(max_states)
            for key, key_calls in by_key.items()
        }
    )


# --------------------------------------------------------------------------- validation


def _validate(history: Sequence[Call]) -> None:
    for call in history:
        if call.op not in _OPS:
            raise ValueError(f"unknown op {call.op!r} in {call!r}")
        if call.completed is not None and call.completed < call.invoked:
            raise ValueError(f"call completed before it was invoked: {call!r}")
        if call.op == "cas" and not (isinstance(call.arg, Sequence) and len(call.arg) == 2):
            raise ValueError(f"cas needs arg=(expected, new): {call!r}")
        if call.op == "incr" and not _is_number(call.arg):
            raise ValueError(f"incr needs a numeric delta: {call!r}")
    by_process: dict[str, list[Call]] = {}
    for call in history:
        by_process.setdefault(call.process, []).append(call)
    for process_calls in by_process.values():
        process_calls.sort(key=_interval)
        for before, after in itertools.pairwise(process_calls):
            if before.completed is not None and after.invoked < before.completed:
                raise ValueError(
                    f"process {before.process!r} has overlapping calls: {before!r} and {after!r}"
                )


def _interval(call: Call) -> tuple[float, float]:
    return (call.invoked, math.inf if call.completed is None else call.completed)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Number) and not isinstance(value, bool)


# --------------------------------------------------------------------------- the search

_READ, _WRITE, _CAS_OK, _CAS_FAIL, _INCR = range(5)
_NO_RESULT = -1
# stack frame positions of known-outcome calls: chosen among candidates, or forced
_CHOSEN, _FORCED = -1, -2


class _Values:
    """Interns register values as small ints, so states hash and compare cheaply."""

    def __init__(self) -> None:
        self.values: list[Any] = []
        self.numeric: list[bool] = []  # whether an incr can apply (absent counts as 0)
        self._hashable: dict[tuple[bool, Any], int] = {}
        self._unhashable: list[int] = []

    def id(self, value: Any) -> int:
        try:
            return self._hashable[(isinstance(value, bool), value)]
        except KeyError:
            self._hashable[(isinstance(value, bool), value)] = len(self.values)
        except TypeError:  # unhashable: compare by ==, booleans apart as above
            for index in self._unhashable:
                known = self.values[index]
                if isinstance(known, bool) == isinstance(value, bool) and known == value:
                    return index
            self._unhashable.append(len(self.values))
        self.values.append(value)
        self.numeric.append(value is None or _is_number(value))
        return len(self.values) - 1


@dataclass(frozen=True, slots=True)
class _Failure:
    """Where the search for one key gave up."""

    deepest: int  # the deepest return entry the search never got past
    states: set[int]  # the values the register could hold there
    stack: list[int]  # the calls of one linearization that got there
    explored: int  # configurations explored
    refused: list[set[int]]  # per call: values the model refused it at
    fitted: list[set[int]]  # per call: values the model accepted it at


class _KeySearch:
    """Wing & Gong search with memoization over the history of one key."""

    def __init__(self, key: str, calls: Sequence[Call], initial: Any, origin: float) -> None:
        self.key = key
        self.origin = origin
        self.values = _Values()
        self.initial = self.values.id(initial)
        self.calls: list[Call] = [call for call in calls if not _dropped(call)]
        # per call: (kind, a, b, delta), a and b value ids (a: the expected incr result)
        self.ops: list[tuple[int, int, int, Any]] = [self._encode(call) for call in self.calls]
        # entries sorted by time, invocations before returns at equal times; entry 0 is
        # the head sentinel and entry len + 1 the tail sentinel
        order: list[tuple[float, int, int]] = []
        for index, call in enumerate(self.calls):
            order.append((call.invoked, 0, index))
            if not call.unknown:
                assert call.completed is not None
                order.append((call.completed, 1, index))
        order.sort()
        self.entry_call = [-1, *(index for _, _, index in order), -1]
        self.entry_is_return = [False, *(kind == 1 for _, kind, _ in order), False]
        self.tail = len(order) + 1
        self.invocation_entry = [0] * len(self.calls)
        self.return_entry = [0] * len(self.calls)  # 0: none (unknown outcome)
        for entry in range(1, self.tail):
            if self.entry_is_return[entry]:
                self.return_entry[self.entry_call[entry]] = entry
            else:
                self.invocation_entry[self.entry_call[entry]] = entry

    def _encode(self, call: Call) -> tuple[int, int, int, Any]:
        if call.op == "read":
            return (_READ, self.values.id(call.result), _NO_RESULT, None)
        if call.op == "write":
            return (_WRITE, self.values.id(call.arg), _NO_RESULT, None)
        if call.op == "cas":
            expected, new = call.arg
            kind = _CAS_FAIL if call.ok is False and not call.unknown else _CAS_OK
            return (kind, self.values.id(expected), self.values.id(new), None)
        known = not call.unknown and call.result is not None
        return (_INCR, self.values.id(call.result) if known else _NO_RESULT, _NO_RESULT, call.arg)

    def _concurrency(self) -> int:
        """The most known-outcome calls in flight at once."""
        level = peak = 0
        for entry in range(1, self.tail):
            if self.entry_is_return[entry]:
                level -= 1
            elif self.return_entry[self.entry_call[entry]]:
                level += 1
                peak = max(peak, level)
        return peak

    def run(self, max_states: int) -> KeyResult:
        outcome = self._search(max_states)
        if isinstance(outcome, int):
            return KeyResult(self.key, True, len(self.calls), outcome)
        return self._failure(outcome)

    def _search(self, max_states: int) -> int | _Failure:
        """The number of configurations explored when linearizable, else the failure.

        Known-outcome calls live in a dancing-links list of entries; unknown-outcome
        calls are tried once the walk reaches the first remaining return entry, after
        the known candidates (see the module docstring for the pruning).
        """
        ops = self.ops
        values = self.values.values
        numeric = self.values.numeric
        intern = self.values.id
        entry_call = self.entry_call
        entry_is_return = self.entry_is_return
        invocation_entry = self.invocation_entry
        return_entry = self.return_entry
        tail = self.tail
        unknown_calls = sorted(
            (call for call in range(len(self.calls)) if return_entry[call] == 0),
            key=invocation_entry.__getitem__,
        )
        unknown_invoked = [invocation_entry[call] for call in unknown_calls]
        # identical unknown-outcome calls are interchangeable once invoked: one is tried
        # only once the previous identical one is linearized
        same_before = [-1] * len(self.calls)
        latest: dict[tuple[int, int, int, Any], int] = {}
        for call in unknown_calls:
            same_before[call] = latest.get(ops[call], -1)
            latest[ops[call]] = call
        nxt = [tail] * (tail + 1)
        prv = [0] * (tail + 1)
        chain = [
            entry
            for entry in range(1, tail)
            if entry_is_return[entry] or return_entry[entry_call[entry]]
        ]
        for before, after in itertools.pairwise([0, *chain, tail]):
            nxt[before] = after
            prv[after] = before

        def lift(call: int) -> None:
            for entry in (invocation_entry[call], return_entry[call]):
                nxt[prv[entry]] = nxt[entry]
                prv[nxt[entry]] = prv[entry]

        def unlift(call: int) -> None:
            for entry in (return_entry[call], invocation_entry[call]):
                nxt[prv[entry]] = entry
                prv[nxt[entry]] = entry

        # (known set, value) -> the unknown sets explored with it, none a subset of another
        seen: dict[tuple[int, int], list[int]] = {}
        explored = 0

        def novel(known: int, unknown: int, state: int) -> bool:
            """Record the configuration unless it or one dominating it was explored."""
            nonlocal explored
            explored_sets = seen.get((known, state))
            if explored_sets is None:
                seen[(known, state)] = [unknown]
            else:
                for subset in explored_sets:
                    if subset & ~unknown == 0:
                        return False
                # keep an antichain: drop the sets the new one dominates
                explored_sets[:] = [subset for subset in explored_sets if unknown & ~subset]
                explored_sets.append(unknown)
            explored += 1
            if explored > max_states:
                raise HistoryTooConcurrentError(
                    self.key, len(self.calls), self._concurrency(), len(unknown_calls), max_states
                )
            return True

        # (call, state before it, its position in unknown_calls or _FORCED or _CHOSEN,
        # the blocking return entry when an unknown-outcome call)
        stack: list[tuple[int, int, int, int]] = []
        state = self.initial
        known = unknown = 0  # linearized calls, as bitsets by call index
        after_unknown = False  # whether the last linearized call has an unknown outcome
        fresh = True  # a configuration just entered: look for an observer that fits first
        incremented: dict[tuple[int, Any], int] = {}  # (state, delta) -> state
        refused: list[set[int]] = [set() for _ in self.calls]
        fitted: list[set[int]] = [set() for _ in self.calls]
        # the deepest return entry the search could not get past, and what it saw there
        deepest = 0
        deepest_states: set[int] = set()
        deepest_stack: list[int] = []
        exhausted = len(unknown_calls)  # as a position: no candidate left, backtrack

        entry = nxt[0]
        position = _CHOSEN  # >= 0: trying unknown-outcome calls from there, before `block`
        block = tail
        while True:
            if fresh:
                # A read (or a cas that lost its race) that fits the current value changes
                # nothing and could move before any candidate: linearizing it now is as
                # good as every alternative, which are then not explored.
                fresh = False
                scan = nxt[0]
                while scan != tail and not entry_is_return[scan]:
                    kind, a, _, _ = ops[entry_call[scan]]
                    if (kind == _READ and state == a) or (kind == _CAS_FAIL and state != a):
                        call = entry_call[scan]
                        fitted[call].add(state)
                        if novel(known | (1 << call), unknown, state):
                            stack.append((call, state, _FORCED, tail))
                            after_unknown = False
                            known |= 1 << call
                            lift(call)
                            fresh = True
                            entry = nxt[0]
                        else:
                            position = exhausted
                        break
                    scan = nxt[scan]
                if fresh or position == exhausted:
                    continue

            if position < 0:
                if entry == tail:
                    return explored  # every known-outcome call is linearized
                call = entry_call[entry]
                if entry_is_return[entry]:
                    # `call` had to be linearized by now: try unknown-outcome calls, then
                    # backtrack
                    block = entry
                    position = 0
                    if entry >= deepest:
                        if entry > deepest:
                            deepest = entry
                            deepest_states = set()
                            deepest_stack = [linearized for linearized, *_ in stack]
                        deepest_states.add(state)
                    continue
                next_known, next_unknown = known | (1 << call), unknown
            else:
                if position == exhausted or unknown_invoked[position] > block:
                    # no candidate left: backtrack
                    if not stack:
                        return _Failure(
                            deepest, deepest_states, deepest_stack, explored, refused, fitted
                        )
                    call, state, position, block = stack.pop()
                    after_unknown = bool(stack) and stack[-1][2] >= 0
                    if position < 0:
                        known ^= 1 << call
                        unlift(call)
                        if position == _FORCED:  # no alternative was left to try
                            position = exhausted
                        else:
                            entry = nxt[invocation_entry[call]]
                    else:
                        unknown ^= 1 << call
                        position += 1
                    continue
                call = unknown_calls[position]
                before = same_before[call]
                if (unknown >> call) & 1 or (before >= 0 and not (unknown >> before) & 1):
                    position += 1
                    continue
                next_known, next_unknown = known, unknown | (1 << call)

            # try to linearize `call` now
            kind, a, b, delta = ops[call]
            if kind == _WRITE and after_unknown:
                # a write right after an unknown-outcome call erases its effect: the
                # same order without that call is tried (or dominates) anyway
                new_state = -2
            elif kind == _READ:
                new_state = state if state == a else -1
            elif kind == _WRITE:
                new_state = a
            elif kind == _CAS_OK:
                new_state = b if state == a else -1
            elif kind == _CAS_FAIL:
                new_state = state if state != a else -1
            elif numeric[state]:
                new_state = incremented.get((state, delta), -1)
                if new_state < 0:
                    current = values[state]
                    try:
                        new_state = intern((0 if current is None else current) + delta)
                    except TypeError:  # numbers that do not add up, as Decimal and float
                        new_state = -1
                    incremented[(state, delta)] = new_state
                if a != _NO_RESULT and new_state != a:
                    new_state = -1
            else:
                new_state = -1
            if new_state == -1:
                refused[call].add(state)
            elif new_state >= 0:
                fitted[call].add(state)
                if novel(next_known, next_unknown, new_state):
                    stack.append((call, state, position, block))
                    after_unknown = position >= 0
                    state = new_state
                    known, unknown = next_known, next_unknown
                    if position < 0:
                        lift(call)
                    entry = nxt[0]
                    position = _CHOSEN
                    fresh = True
                    continue
            if position < 0:
                entry = nxt[entry]
            else:
                position += 1

    # ----------------------------------------------------------------------- explaining

    def _failure(self, failure: _Failure) -> KeyResult:
        deepest = failure.deepest
        failed_index = self.entry_call[deepest]
        failed = self.calls[failed_index]
        refused = failure.refused[failed_index]
        fitted = failure.fitted[failed_index]
        invoked_before = sum(1 for entry in range(1, deepest) if not self.entry_is_return[entry])
        lines = [
            f"key {self.key!r}: not linearizable ({len(self.calls)} calls checked).",
            f"The shortest prefix without a linearization ends at {self._time(failed.completed)}"
            f" ({invoked_before} call(s) invoked by then), when this call returned:",
            f"  {self._describe(failed)}",
        ]
        if not fitted:
            lines.append(
                "It fits none of the values the register could hold during its interval: "
                f"{self._values(refused)}."
            )
        else:
            if refused:
                lines.append(f"It does not fit the register value(s) {self._values(refused)}.")
            lines.append(
                f"Where it fits (at {self._values(fitted)}), another call that returned "
                "before it can no longer be linearized."
            )
        lines.append(
            "With every call that returned before it linearized, the register could hold "
            f"when it returned: {self._values(failure.states)}."
        )
        start = self.invocation_entry[failed_index]
        overlapping = [
            call
            for index, call in enumerate(self.calls)
            if index != failed_index
            and self.invocation_entry[index] < deepest
            and (self.return_entry[index] == 0 or self.return_entry[index] > start)
        ]
        if overlapping:
            lines.append("Calls in flight with it:")
            lines.extend(f"  {self._describe(call)}" for call in overlapping[:10])
            if len(overlapping) > 10:
                lines.append(f"  ... and {len(overlapping) - 10} more")
        stack = failure.stack
        if stack:
            lines.append("One linearization of the calls before it ends with:")
            if len(stack) > 8:
                lines.append(f"  ... {len(stack) - 8} earlier call(s)")
            lines.extend(f"  {self._describe(self.calls[index])}" for index in stack[-8:])
        else:
            lines.append(f"Nothing was linearized before it (initial value {self._initial()}).")
        return KeyResult(
            self.key, False, len(self.calls), failure.explored, "\n".join(lines), failed
        )

    def _initial(self) -> str:
        return repr(self.values.values[self.initial])

    def _values(self, states: set[int]) -> str:
        return ", ".join(sorted(repr(self.values.values[state]) for state in states))

    def _time(self, instant: float | None) -> str:
        return "?" if instant is None else f"t=+{instant - self.origin:.6f}s"

    def _describe(self, call: Call) -> str:
        if call.op == "read":
            what = f"read -> {call.result!r}"
        elif call.op == "write":
            what = f"write {call.arg!r}"
        elif call.op == "cas":
            expected, new = call.arg
            verdict = "unknown" if call.unknown else ("succeeded" if call.ok else "failed")
            what = f"cas {expected!r} -> {new!r} ({verdict})"
        else:
            result = "" if call.unknown or call.result is None else f" -> {call.result!r}"
            what = f"incr {call.arg!r}{result}"
        if call.unknown:
            completed = "unknown outcome"
            if call.completed is not None:
                completed = f"{self._time(call.completed)}, {completed}"
        else:
            completed = self._time(call.completed)
        return f"{what} by {call.process} [{self._time(call.invoked)}, {completed}]"


def _dropped(call: Call) -> bool:
    """Calls that constrain nothing: reads without a known result, no-effect writes/incrs."""
    if call.op == "read":
        return call.unknown or call.ok is False
    return call.op in ("write", "incr") and not call.unknown and call.ok is False
