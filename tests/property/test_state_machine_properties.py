"""Properties of durable state machines (the pure core, :mod:`edgebus.core.state_machine`).

A simulated state log: hosts of two or three regions claim, renew, hand off and release
the state, callers append requests (re-sent ones too), owners run them with
:func:`execute` and append the records, sometimes late (in flight while other records
are appended), sometimes from an old copy of the state (a stale owner that did not read
the log), and forged records with any epoch turn up; any record may be appended again
(a producer's retry). Append times never decrease.

* Convergence: readers that fold the same records agree, and a reader that resumes from
  a (persisted) snapshot taken anywhere agrees with one that folded everything.
* Fencing: per epoch, only one (region, host) has operations accepted, never one
  appended after the lease at that point of the log; and an operation its owner
  acknowledged (appended within the lease it knew) is the answer the fold applies.
* Exactly-once: requests re-sent through crashes and fail-overs count once.
* Locks: two holders never hold the same lock at once, and every lock request is
  answered by its deadline.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field, replace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from edgebus.core.ownership import Claim, Handoff, Release, Renew
from edgebus.core.state_machine import (
    LockHold,
    StateLogRecord,
    StateObject,
    StateOp,
    StateRequest,
    acknowledged,
    execute,
)

STATE = "s"
REGIONS = ("us", "eu", "ap")
ACTORS = (("us", "h1"), ("us", "h2"), ("eu", "h1"), ("ap", "h1"))
REQUESTS = (
    StateRequest(STATE, "q0", "increment", "us", increment=2),
    StateRequest(STATE, "q1", "set", "eu", key="k", value={"a": [1, None]}),
    StateRequest(STATE, "q2", "append", "ap", value="x"),
    StateRequest(STATE, "q3", "lock", "us", holder="alice", lock_name="L", lease_ms=300,
                 timeout_ms=200),
    StateRequest(STATE, "q4", "lock", "eu", holder="bob", lock_name="L", lease_ms=300,
                 timeout_ms=0),
    StateRequest(STATE, "q5", "unlock", "us", holder="alice", lock_name="L"),
    StateRequest(STATE, "q6", "delete", "ap", key="k"),
    StateRequest(STATE, "q7", "update", "eu", value={"m": 1.5}, enable_migration=True),
    StateRequest(STATE, "q8", "get", "us"),
    StateRequest(STATE, "q9", "set", "ap", value={"fresh": True}),
    StateRequest(STATE, "q10", "increment", "eu", key="k", increment=-1),
)

Log = list[tuple[StateLogRecord, int]]


def fold(records: Log, obj: StateObject | None = None) -> StateObject:
    obj = StateObject(STATE) if obj is None else obj
    for record, at in records:
        obj.fold(record, at)
    return obj


def norm(obj: StateObject) -> Any:
    return json.loads(json.dumps(obj.snapshot()))


# -- the simulated log ----------------------------------------------------------------

actor = st.integers(0, len(ACTORS) - 1)
#: ``None``: the host the log names the owner (the step is skipped when there is none)
who = st.one_of(st.none(), actor)
request_index = st.integers(0, len(REQUESTS) - 1)
lease = st.integers(50, 600)
action = st.one_of(
    st.tuples(st.just("tick"), st.integers(0, 400)),
    st.tuples(st.just("claim"), actor, lease),
    st.tuples(st.just("renew"), who, lease),
    st.tuples(st.just("handoff"), who, st.sampled_from(REGIONS)),
    st.tuples(st.just("release"), who),
    st.tuples(st.just("request"), request_index),
    st.tuples(st.just("request"), request_index),
    st.tuples(st.just("serve"), who, request_index, st.booleans()),
    st.tuples(st.just("serve"), who, request_index, st.booleans()),
    st.tuples(st.just("deliver"), who),
    st.tuples(st.just("stale"), who, request_index),
    st.tuples(st.just("forge"), actor, request_index, st.integers(0, 4)),
    st.tuples(st.just("repeat"), st.integers(0, 1_000)),
)
actions = st.lists(action, min_size=20, max_size=60)


@dataclass
class Actor:
    region: str
    host: str
    obj: StateObject = field(default_factory=lambda: StateObject(STATE))
    in_flight: list[StateOp] = field(default_factory=list)
    #: the epoch in which it sent a hand-off or release (it must stop serving then)
    resigned: int = -1


@dataclass
class Simulation:
    """Runs the actions, appending to ``log``; ``truth`` folds the log as it grows."""

    log: Log = field(default_factory=list)
    #: whether each record is an honest owner's answer (the acknowledgement property)
    honest: list[bool] = field(default_factory=list)
    truth: StateObject = field(default_factory=lambda: StateObject(STATE))
    actors: list[Actor] = field(default_factory=lambda: [Actor(r, h) for r, h in ACTORS])
    now: int = 0

    def append(self, record: StateLogRecord, *, honest: bool = False,
               by: Actor | None = None) -> None:
        if by is not None:  # one producer: its earlier records go first
            self.flush(by)
        self.log.append((record, self.now))
        self.honest.append(honest)
        self.truth.fold(record, self.now)

    def flush(self, a: Actor) -> None:
        """The actor's records in flight reach the log, in the order it wrote them."""
        flight, a.in_flight = a.in_flight, []
        for op in flight:
            self.append(op, honest=not op.duplicate)

    def sync(self, a: Actor) -> None:
        """The actor reads the log; its copy keeps its own writes still in flight."""
        a.obj = self.truth.copy()
        for op in a.in_flight:
            if not op.duplicate:
                a.obj.apply(op, self.now)

    def serve(self, a: Actor, request: StateRequest) -> StateOp | None:
        """The actor runs ``request`` if it has it (pending, or re-sent after its
        answer), else the oldest pending request, on its copy of the state."""
        obj = a.obj
        if request.req_id in obj.pending:
            sent = obj.pending[request.req_id][1]
        elif request.req_id in obj.applied:
            sent = self.now  # a re-send reached the owner
        elif obj.pending:
            request, sent = next(iter(obj.pending.values()))
        else:
            return None
        op = execute(obj, request, region=a.region, host=a.host,
                     lease_until_ms=obj.view.lease_until_ms, now_ms=self.now, sent_ms=sent)
        if op is not None and not op.duplicate:
            obj.apply(op, self.now)
        return op

    def run(self, step: tuple[Any, ...]) -> None:
        kind = step[0]
        if kind == "tick":
            self.now += step[1]
            return
        if kind == "request":
            self.append(REQUESTS[step[1]])
            return
        if kind == "repeat":
            if self.log:
                self.append(self.log[step[1] % len(self.log)][0])
            return
        if step[1] is None:
            v = self.truth.view
            if (v.owner, v.holder) not in ACTORS:
                return
            a = self.actors[ACTORS.index((v.owner, v.holder))]
        else:
            a = self.actors[step[1]]
        if kind == "deliver":
            self.flush(a)
            return
        if kind == "stale":  # serves from its old copy, without reading the log
            v = a.obj.view
            if (v.owner, v.holder) == (a.region, a.host) and v.epoch > 0:
                op = self.serve(a, REQUESTS[step[2]])
                if op is not None:
                    self.append(op, honest=a.resigned != v.epoch and not op.duplicate, by=a)
            return
        self.sync(a)
        v = a.obj.view
        if kind == "claim":
            self.append(Claim(a.region, v.epoch + 1, step[2], a.host), by=a)
        elif kind == "renew":
            self.append(Renew(a.region, v.epoch, step[2], a.host), by=a)
        elif kind in ("handoff", "release"):
            if (v.owner, v.holder) == (a.region, a.host):
                a.resigned = v.epoch
            self.append(Handoff(a.region, v.epoch, step[2], a.host) if kind == "handoff"
                        else Release(a.region, v.epoch, a.host), by=a)
        elif kind == "serve":
            owner = (v.owner_at(self.now), v.holder) == (a.region, a.host)
            if owner and v.handed_to is None and a.resigned != v.epoch:
                op = self.serve(a, REQUESTS[step[2]])
                if op is not None:
                    if step[3]:
                        self.append(op, honest=not op.duplicate, by=a)
                    else:
                        a.in_flight.append(op)
        elif kind == "forge":
            if (a.region, a.host, step[3]) == (v.owner, v.holder, v.epoch):
                return  # that would be the owner's own record, not a forgery
            op = execute(a.obj, REQUESTS[step[2]], region=a.region, host=a.host,
                         lease_until_ms=self.now + 10_000, now_ms=self.now,
                         sent_ms=self.now)
            if op is not None:
                self.append(replace(op, epoch=step[3], duplicate=False), by=a)


def simulate(steps: list[tuple[Any, ...]]) -> Simulation:
    sim = Simulation()
    for step in steps:
        sim.run(step)
    return sim


# -- convergence ----------------------------------------------------------------------


@settings(deadline=None)
@given(actions, st.floats(0, 1))
def test_readers_of_the_same_records_agree_and_resuming_from_a_snapshot_changes_nothing(
    steps: list[tuple[Any, ...]], where: float
) -> None:
    log = simulate(steps).log
    assert all(a[1] <= b[1] for a, b in itertools.pairwise(log))  # append times
    first, second = fold(log), fold(list(log))
    assert norm(first) == norm(second)
    cut = int(where * len(log))
    persisted = json.loads(json.dumps(fold(log[:cut]).snapshot(), allow_nan=False))
    resumed = fold(log[cut:], StateObject.from_snapshot(persisted))
    assert norm(resumed) == norm(first)
    assert resumed.view == first.view and resumed.locks == first.locks
    # a copy taken midway folds the rest the same way too
    midway = fold(log[:cut])
    assert norm(fold(log[cut:], midway.copy())) == norm(first)


# -- fencing --------------------------------------------------------------------------


@settings(deadline=None)
@given(actions)
def test_one_owner_per_epoch_has_ops_accepted_and_only_within_its_lease(
    steps: list[tuple[Any, ...]],
) -> None:
    sim = simulate(steps)
    reader = StateObject(STATE)
    claims: set[tuple[str, str, int]] = set()
    served_in: dict[int, set[tuple[str, str]]] = {}
    for (record, at), honest in zip(sim.log, sim.honest, strict=True):
        if isinstance(record, Claim):
            claims.add((record.region, record.host, record.epoch))
        if isinstance(record, StateOp):
            lease_end = reader.view.lease_until_ms
            accepted = reader.fold(record, at)
            if accepted:
                assert at <= lease_end
                assert (record.region, record.host, record.epoch) in claims
                served_in.setdefault(record.epoch, set()).add((record.region, record.host))
            if honest and acknowledged(at, record.lease_until_ms):
                # what the owner answered is what every reader applied
                answer = reader.applied[record.req_id]
                assert (answer.outcome, answer.result, answer.version, answer.epoch) == (
                    record.outcome, record.result, record.version, record.epoch)
        else:
            reader.fold(record, at)
    assert all(len(owners) == 1 for owners in served_in.values())


# -- exactly once ---------------------------------------------------------------------

OWNER_LEASE = 1_000
HOSTS = (("us", "h1"), ("eu", "h2"))


@dataclass
class Owner:
    region: str
    host: str
    obj: StateObject


@dataclass
class Cluster:
    """One owner at a time serving increments; it may crash, losing its last answer,
    and a record may be appended twice (a producer's retry)."""

    amounts: list[int]
    log: Log = field(default_factory=list)
    owner: Owner | None = None
    now: int = 0
    next_host: int = 0
    answers: dict[str, Any] = field(default_factory=dict)

    def append(self, record: StateLogRecord) -> None:
        self.log.append((record, self.now))
        if self.owner is not None:
            self.owner.obj.fold(record, self.now)  # the owner reads the log

    def request(self, i: int) -> StateRequest:
        return StateRequest(STATE, f"r{i}", "increment", "us", increment=self.amounts[i])

    def take_over(self) -> None:
        """A host claims the state once the last owner's lease is over (fail-over)."""
        view = fold(self.log).view
        if view.owner_at(self.now) is not None:
            self.now = view.lease_until_ms + 1
        region, host = HOSTS[self.next_host % len(HOSTS)]
        self.next_host += 1
        self.append(Claim(region, view.epoch + 1, OWNER_LEASE, host))
        obj = fold(self.log)
        assert (obj.view.owner, obj.view.holder) == (region, host)
        self.owner = Owner(region, host, obj)
        for request, _ in list(obj.pending.values()):  # requests that wait for an owner
            self.handle(request)

    def handle(self, request: StateRequest, *, crash: bool = False) -> None:
        assert self.owner is not None
        obj = self.owner.obj
        op = execute(obj, request, region=self.owner.region, host=self.owner.host,
                     lease_until_ms=obj.view.lease_until_ms, now_ms=self.now,
                     sent_ms=self.now)
        assert op is not None and op.outcome == "ok"
        if crash:  # it ran the request but died before its record reached the log
            self.owner = None
            return
        self.append(op)
        if acknowledged(self.now, op.lease_until_ms):
            first = self.answers.setdefault(op.req_id, op.result)
            assert op.result == first  # a re-send is answered as the first time

    def send(self, i: int, *, crash: bool = False) -> None:
        request = self.request(i)
        self.append(request)
        if self.owner is not None:
            self.handle(request, crash=crash)

    def tick(self, gap: int) -> None:
        self.now += gap
        if self.owner is not None:
            self.append(Renew(self.owner.region, self.owner.obj.view.epoch, OWNER_LEASE,
                              self.owner.host))


@settings(deadline=None)
@given(
    st.lists(st.integers(-5, 10), min_size=1, max_size=6),
    st.lists(
        st.one_of(
            st.tuples(st.just("send"), st.integers(0, 5), st.booleans()),
            st.tuples(st.just("send"), st.integers(0, 5), st.just(False)),
            st.tuples(st.just("crash"), st.just(0), st.just(False)),
            st.tuples(st.just("retry"), st.integers(0, 1_000), st.just(False)),
            st.tuples(st.just("tick"), st.integers(0, 600), st.just(False)),
        ),
        max_size=40,
    ),
)
def test_increments_re_sent_through_crashes_and_fail_overs_count_once(
    amounts: list[int], script: list[tuple[str, int, bool]]
) -> None:
    cluster = Cluster(amounts)
    cluster.take_over()
    sent: set[int] = set()
    for kind, n, crash in script:
        if kind == "send":
            i = n % len(amounts)
            sent.add(i)
            cluster.send(i, crash=crash)
        elif kind == "crash":
            cluster.owner = None
        elif kind == "retry":  # a producer's retry appends an earlier answer again, late
            ops = [record for record, _ in cluster.log if isinstance(record, StateOp)]
            if ops:
                cluster.append(ops[n % len(ops)])
        else:
            cluster.tick(n)
    for i in sorted(sent):  # callers re-send until answered
        for _ in range(3):
            if f"r{i}" in cluster.answers:
                break
            if cluster.owner is None:
                cluster.take_over()
            cluster.send(i)
        assert f"r{i}" in cluster.answers
    reader = fold(cluster.log)
    assert reader.value("value") == (sum(amounts[i] for i in sent) if sent else None)
    assert reader.version == len(sent)
    assert sum(reader.access_counts(0).values()) == len(sent)
    assert reader.pending == {}
    for i in sent:
        assert reader.applied[f"r{i}"].result == cluster.answers[f"r{i}"]


# -- locks ----------------------------------------------------------------------------

HOLDERS = ("alice", "bob", "carol")
LOCKS = ("A", "B")


@dataclass
class Hold:
    holder: str
    start: int
    end: int  # inclusive


@settings(deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(("lock", "lock", "unlock")),
            st.sampled_from(HOLDERS),
            st.sampled_from(LOCKS),
            st.integers(1, 300),  # lease
            st.integers(0, 300),  # timeout
            st.integers(0, 150),  # time passing before the request
        ),
        max_size=40,
    )
)
def test_two_holders_never_hold_a_lock_at_once_and_every_request_is_answered(
    script: list[tuple[str, str, str, int, int, int]],
) -> None:
    owner = StateObject(STATE)
    owner.fold(Claim("us", 1, 10**9, "h1"), 0)
    reader = fold([(Claim("us", 1, 10**9, "h1"), 0)])
    holds: dict[str, list[Hold]] = {name: [] for name in LOCKS}
    waiting: list[tuple[StateRequest, int]] = []
    now = 0

    def current(name: str, at: int) -> Hold | None:
        hold = holds[name][-1] if holds[name] else None
        return hold if hold is not None and hold.end >= at else None

    def run_waiting() -> None:
        still: list[tuple[StateRequest, int]] = []
        for request, sent in waiting:
            op = execute(owner, request, region="us", host="h1",
                         lease_until_ms=owner.view.lease_until_ms, now_ms=now, sent_ms=sent)
            name, holder = request.lock_name, request.holder
            assert name is not None
            held = current(name, now)
            if op is None:  # waits: someone else holds it, and its deadline is ahead
                assert held is not None and held.holder != holder
                assert now < sent + request.timeout_ms
                still.append((request, sent))
                continue
            owner.apply(op, now)
            assert reader.fold(op, now)
            if request.operation == "lock" and op.outcome == "ok":
                assert held is None or held.holder == holder  # mutual exclusion
                if held is not None:
                    held.end = now - 1  # renewed: the old hold ends here
                holds[name].append(Hold(holder, now, now + request.lease_ms))
            elif request.operation == "lock":
                assert op.outcome == "timeout" and now >= sent + request.timeout_ms
                assert held is not None and held.holder != holder
            elif op.outcome == "ok":
                assert held is not None and held.holder == holder
                held.end = now - 1  # released: another may take it now
            else:
                assert op.outcome == "refused" and (held is None or held.holder != holder)
        waiting[:] = still
        live = {name: h for name in LOCKS if (h := current(name, now)) is not None}
        table = {n: h for n, h in owner.locks.items() if h.until_ms >= now}
        assert table == {n: LockHold(n, h.holder, h.end) for n, h in live.items()}
        assert reader.locks == owner.locks

    for n, (kind, holder, name, lease_ms, timeout_ms, gap) in enumerate(script):
        now += gap
        waiting.append((StateRequest(STATE, f"l{n}", kind, "us", holder=holder, lock_name=name,
                                     lease_ms=lease_ms, timeout_ms=timeout_ms), now))
        run_waiting()
    if waiting:  # past every deadline, every request has its answer
        now = max(sent + r.timeout_ms for r, sent in waiting)
        run_waiting()
    assert waiting == []
    for name in LOCKS:  # no two holders' holds overlap in time
        for x in holds[name]:
            for y in holds[name]:
                if x is not y and x.holder != y.holder:
                    assert x.end < y.start or y.end < x.start
