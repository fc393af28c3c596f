"""The mixed load of the process-kill chaos test (``test_chaos_kill_services.py``) and
what it records for the checkers.

Four kinds of clients run in the test process, each a sequential coroutine with a
seeded ``random.Random`` of its own, until ``Load.stop`` is set:

* eventual writers: ``increment`` writes of 1 to a few counter keys placed in all
  three regions (``replication_factor=3``), homes spread over the regions. Afterwards
  every region must hold, for each key, the number of acknowledged increments (plus
  at most the unknown ones) as value and version: applied once each, everywhere;
* causal sessions (one ``EdgeBus`` each: a session is a bus) writing unique values
  and reading at ``consistency="causal"`` in random regions, and observers reading
  eventually in one region each; all recorded for the causal checker
  (``tests/checkers/causal_history.py``);
* strong clients (Jepsen style, as in ``test_jepsen_strong.py``): strong reads,
  writes and compare-and-set by version on a few keys, recorded for the
  linearizability checker (``tests/checkers/linearizability.py``); a write whose
  outcome the client cannot know is an unknown-outcome call;
* state clients: ``increment`` (each with a request id of the test's, so that an
  unanswered one can be asked again without running twice) and ``get`` on one
  counter state machine, recorded for the linearizability checker as well.

Failures are expected while processes are killed: an operation that fails is recorded
as the checkers want it (an unknown outcome where it may have taken effect, nothing
where it observed nothing) and counted.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from edgebus.errors import EdgebusError, StrongOutcomeUnknown
from edgebus.sdk import EdgeBus
from tests.checkers.causal_history import HistoryRecorder
from tests.checkers.linearizability import Call

__all__ = ["Load", "StateCall", "abort_kind", "state_count"]

#: how long a state call waits for its answer (longer: its outcome is unknown)
STATE_TIMEOUT_MS = 2000
#: how long an unanswered increment is asked again before the client gives up (its
#: outcome is then unknown until the test asks again after the load)
RETRY_S = 20.0
#: pause between two operations of one client (the machine is small and shared)
THINK_S = (0.01, 0.06)


@dataclass
class StateCall:
    """One state call: ``result`` None = no answer (unknown outcome for an increment)."""

    client: str
    op: str  # "incr" | "read"
    req_id: str
    invoked: float
    completed: float | None = None
    result: Any = None  # a StateResult
    asked_again: int = 0  #: how often it was asked again with its request id


@dataclass
class Load:
    """The keys of one run, and everything its clients recorded."""

    tag: str
    regions: tuple[str, str, str]
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    # eventual
    counter_keys: list[str] = field(default_factory=list)
    eventual_acked: Counter[str] = field(default_factory=Counter)
    eventual_unknown: Counter[str] = field(default_factory=Counter)
    # causal
    causal_keys: list[str] = field(default_factory=list)
    causal: HistoryRecorder = field(default_factory=HistoryRecorder)
    causal_acked: Counter[str] = field(default_factory=Counter)
    causal_unknown: Counter[str] = field(default_factory=Counter)
    causal_reads_failed: int = 0
    # strong
    strong_keys: list[str] = field(default_factory=list)
    strong_calls: list[Call] = field(default_factory=list)
    strong_txns: set[str] = field(default_factory=set)
    strong_committed: int = 0
    strong_aborted: int = 0
    strong_conflicts: int = 0
    strong_unknown: int = 0
    strong_refused: int = 0
    strong_abort_reasons: Counter[str] = field(default_factory=Counter)
    strong_reads_failed: int = 0
    # state
    state_id: str = ""
    state_calls: list[StateCall] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    _values: int = 0

    def __post_init__(self) -> None:
        self.counter_keys = [f"{self.tag}:counter:{i}" for i in range(3)]
        self.causal_keys = [f"{self.tag}:causal:{i}" for i in range(3)]
        self.strong_keys = [f"{self.tag}:strong:{i}" for i in range(3)]
        self.state_id = f"{self.tag}-state-counter"

    def unique(self) -> int:
        """A value no other strong write of the run stores."""
        self._values += 1
        return self._values

    def _error(self, kind: str, e: BaseException) -> None:
        self.errors[f"{kind}: {type(e).__name__}"] += 1

    async def _think(self, rng: random.Random) -> None:
        await asyncio.sleep(rng.uniform(*THINK_S))

    # ------------------------------------------------------------------ eventual

    async def eventual_writer(self, bus: EdgeBus, rng: random.Random) -> None:
        while not self.stop.is_set():
            key = rng.choice(self.counter_keys)
            try:
                await bus.write(key, 1, region=rng.choice(self.regions), operation="increment",
                                replication_factor=3, classification="public")
            except EdgebusError as e:  # may or may not be in Kafka
                self._error("eventual write", e)
                self.eventual_unknown[key] += 1
            else:
                self.eventual_acked[key] += 1
            await self._think(rng)

    # ------------------------------------------------------------------ causal

    async def causal_session(self, bus: EdgeBus, name: str, rng: random.Random) -> None:
        """One session (``bus`` is its own). After a write that failed (it may have
        taken effect) the session goes on under a new name: the checker must not count
        that write in the past of what the session does next."""
        session, generation, i = name, 0, 0
        while not self.stop.is_set():
            key, region = rng.choice(self.causal_keys), rng.choice(self.regions)
            i += 1
            invoked = time.monotonic()
            if rng.random() < 0.4:
                value = f"{name}-{i}"
                try:
                    receipt = await bus.write(key, {"v": value}, region=region,
                                              consistency="causal", replication_factor=3,
                                              classification="public")
                except EdgebusError as e:
                    self._error("causal write", e)
                    self.causal_unknown[key] += 1
                    self.causal.write(session, key, value, region, self.regions, invoked,
                                      time.monotonic(), "causal")
                    generation += 1
                    session = f"{name}.{generation}"
                else:
                    self.causal_acked[key] += 1
                    self.causal.write(session, key, value, receipt.region, receipt.placement,
                                      invoked, time.monotonic(), "causal")
            else:
                try:
                    result = await bus.read(key, region, consistency="causal")
                except EdgebusError as e:  # observed nothing: no constraint
                    self._error("causal read", e)
                    self.causal_reads_failed += 1
                else:
                    self.causal.read(session, key, _causal_value(result), result.region,
                                     invoked, time.monotonic(), "causal")
            await self._think(rng)

    async def observer(self, bus: EdgeBus, region: str, rng: random.Random) -> None:
        """Eventual reads in ``region`` only: what anyone there sees (each read its own
        session, so it only feeds the checker's visibility rule)."""
        n = 0
        while not self.stop.is_set():
            key = rng.choice(self.causal_keys)
            invoked = time.monotonic()
            try:
                result = await bus.read(key, region, fallback="raise")
            except EdgebusError:
                pass  # the region is down or restarting: observed nothing
            else:
                n += 1
                self.causal.read(f"observer-{region}-{n}", key, _causal_value(result),
                                 result.region, invoked, time.monotonic(), "eventual")
            await asyncio.sleep(rng.uniform(0.05, 0.15))

    # ------------------------------------------------------------------ strong

    async def strong_client(
        self, bus: EdgeBus, name: str, region: str, rng: random.Random
    ) -> None:
        """Strong reads in ``region``, writes and cas by version, one at a time (as in
        ``test_jepsen_strong.py``; every write stores a value of its own, so a version
        read names one value and a cas on it is ``cas(value, new)``)."""
        seen: dict[str, tuple[Any, int]] = {}
        while not self.stop.is_set():
            key = rng.choice(self.strong_keys)
            roll = rng.random()
            invoked = time.monotonic()
            if roll < 0.4 or (roll < 0.7 and key not in seen):
                try:
                    r = await bus.read(key, region, consistency="strong")
                except EdgebusError as e:
                    self._error("strong read", e)
                    self.strong_reads_failed += 1
                else:
                    value = r.value if r.exists else None
                    seen[key] = (value, r.version)
                    self.strong_calls.append(Call(name, key, "read", None, invoked,
                                                  time.monotonic(), True, value))
                await self._think(rng)
                continue
            new = self.unique()
            if roll < 0.7:
                expected_value, version = seen.pop(key)
                op, arg, kwargs = "cas", (expected_value, new), {"expected_version": version}
            else:
                op, arg, kwargs = "write", new, {}
            try:
                result = await bus.commit(key, new, **kwargs)
            except StrongOutcomeUnknown as e:
                self.strong_txns.add(e.txn_id)
                self.strong_unknown += 1
                self.strong_calls.append(Call(name, key, op, arg, invoked, None, None))
            except EdgebusError as e:
                # most likely refused before a BEGIN was logged, but under process kills
                # the test does not assume it: an unknown outcome constrains less
                self._error("strong commit", e)
                self.strong_refused += 1
                self.strong_calls.append(Call(name, key, op, arg, invoked, None, None))
            else:
                self.strong_txns.add(result.txn_id)
                completed = time.monotonic()
                if result.committed:
                    self.strong_committed += 1
                    self.strong_calls.append(Call(name, key, op, arg, invoked, completed, True))
                elif op == "cas" and result.conflict is not None:
                    self.strong_conflicts += 1
                    self.strong_abort_reasons[abort_kind(result.reason)] += 1
                    self.strong_calls.append(Call(name, key, op, arg, invoked, completed, False))
                else:  # a logged ABORT (locked, timed out, a region down): no effect
                    self.strong_aborted += 1
                    self.strong_abort_reasons[abort_kind(result.reason)] += 1
            await self._think(rng)

    # ------------------------------------------------------------------ state

    async def state_client(self, bus: EdgeBus, name: str, region: str,
                           rng: random.Random) -> None:
        """Increments and gets of the state, one at a time. An increment that gets no
        answer is asked again with its request id (it runs at most once; a duplicate
        answer repeats the first one) until answered, as a careful client would: its
        call then spans from the first ask to the answer. Gets are not asked again (an
        unanswered one observed nothing)."""
        while not self.stop.is_set():
            op = "incr" if rng.random() < 0.7 else "read"
            call = StateCall(name, op, uuid.uuid4().hex, time.monotonic())
            self.state_calls.append(call)
            give_up = call.invoked + RETRY_S
            while True:
                try:
                    if op == "incr":
                        result = await bus.state(self.state_id, "increment", key="count",
                                                 region=region, req_id=call.req_id,
                                                 timeout_ms=STATE_TIMEOUT_MS)
                    else:
                        result = await bus.state(self.state_id, "get", region=region,
                                                 req_id=call.req_id,
                                                 timeout_ms=STATE_TIMEOUT_MS)
                except EdgebusError as e:  # may still run: the request waits in the log
                    self._error(f"state {op}", e)
                    if op == "incr" and time.monotonic() < give_up:
                        call.asked_again += 1
                        continue
                else:
                    call.completed, call.result = time.monotonic(), result
                break
            await self._think(rng)

    def state_answers(self, after: float = 0.0) -> list[Any]:
        """The state answers of calls invoked after ``after``, in completion order."""
        done = [c for c in self.state_calls if c.result is not None and c.invoked >= after]
        return [c.result for c in sorted(done, key=lambda c: c.completed or 0.0)]

    def state_history(self) -> list[Call]:
        """The state calls as the linearizability checker's counter model wants them."""
        calls = []
        for c in self.state_calls:
            if c.result is None:
                if c.op == "incr":
                    calls.append(Call(c.client, self.state_id, "incr", 1, c.invoked, None,
                                      None))
                continue  # an unanswered get observed nothing
            if c.op == "incr":
                calls.append(Call(c.client, self.state_id, "incr", 1, c.invoked, c.completed,
                                  True, c.result.value))
            else:
                calls.append(Call(c.client, self.state_id, "read", None, c.invoked,
                                  c.completed, True, state_count(c.result.value)))
        return calls


def _causal_value(result: Any) -> str | None:
    return str(result.value["v"]) if result.exists else None


def abort_kind(reason: str | None) -> str:
    """Why a strong write aborted, in a word or two (the reasons name keys and txns)."""
    text = reason or ""
    for needle, kind in (("timed out", "deadline (a region did not vote)"),
                         ("locked by txn", "locked"), ("expected version", "version conflict"),
                         ("after the transaction's deadline", "late prepare")):
        if needle in text:
            return kind
    return text[:80] or "no reason"


def state_count(value: Any) -> Any:
    """The counter of a state ``{"count": n}`` (``None``: no state yet)."""
    return value.get("count") if isinstance(value, dict) else value
