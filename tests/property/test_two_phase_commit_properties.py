"""Properties of two-phase commit over a hostile network, with crashes.

A simulated coordinator and one to three participants exchange messages through a
network that duplicates, reorders and delays every message (a bag: any message in it
may be delivered next, and delivered again; a copy may come back up to 2 s later, after
both sides have forgotten the transaction, which they do soon after its deadline).
The saga log and each participant's log are durable; a log append is in flight until
flushed (the coordinator learns of it from BeginLogged / DecisionLogged, which are
themselves delayed and reordered). At random points the coordinator crashes (its
state, in-flight appends and unread acknowledgements are lost; it is rebuilt by
``recover`` from the log and carried on by ``resume``) and so do participants, even
between two outputs of one decision (rebuilt by ``recover_participant`` from their
log; their in-doubt transactions are looked up in the saga log). Clients whose
transaction never reached the log send it again, as a request topic re-read from its
last committed offset would.

Then the network calms down (no more crashes or duplicates, everything is delivered
eventually) and every transaction must terminate.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from edgebus.core.commit_vote import (
    ApplyWrite,
    Begin,
    BeginLogged,
    CoordinatorConfig,
    CoordinatorLogRecord,
    CoordinatorMessage,
    CoordinatorState,
    Decided,
    Decision,
    DecisionLogged,
    Expired,
    LogBegin,
    LogDecision,
    LogDone,
    LogPrepared,
    LogResolved,
    ParticipantConfig,
    ParticipantLogRecord,
    ParticipantState,
    QueryDecision,
    Reply,
    SendAck,
    SendDecision,
    SendPrepare,
    SendVote,
    Tick,
    TxnOutcome,
    decide_coordinator,
    decide_participant,
    in_doubt,
    recover,
    recover_participant,
    resume,
)

REGIONS = ("eu", "us", "ap")
COORDINATOR = "coordinator"
RETRY_MS = 40
# done transactions are kept only while their deadline runs: late duplicates must be refused
COORDINATOR_CONFIG = CoordinatorConfig(retry_ms=RETRY_MS, keep_done=0)
# finished transactions are forgotten soon after their deadline: late duplicates must be refused
PARTICIPANT_CONFIG = ParticipantConfig(finished_retention_ms=200, query_after_ms=100)
CALM_ROUNDS = 400


@dataclass
class Sim:
    """The world: coordinator, participants, logs, network, stores and what was seen."""

    rng: random.Random
    regions: tuple[str, ...]
    txns: dict[str, Begin]
    may_hold: dict[tuple[str, str], bool]
    chaos: bool = True
    now: int = 0
    coord: CoordinatorState = field(default_factory=lambda: CoordinatorState(COORDINATOR_CONFIG))
    coord_log: list[CoordinatorLogRecord] = field(default_factory=list)
    coord_appending: list[CoordinatorLogRecord] = field(default_factory=list)
    coord_acks: list[CoordinatorMessage] = field(default_factory=list)
    net: list[tuple[str, Any]] = field(default_factory=list)
    delayed: list[tuple[int, str, Any]] = field(default_factory=list)  # (due ms, dest, msg)
    parts: dict[str, ParticipantState] = field(default_factory=dict)
    part_logs: dict[str, list[ParticipantLogRecord]] = field(default_factory=dict)
    answers: dict[str, list[Decided]] = field(default_factory=dict)  # from the saga log
    versions: dict[str, dict[str, int]] = field(default_factory=dict)
    applied: dict[str, set[str]] = field(default_factory=dict)  # the store: by txn id
    applied_this_life: dict[str, set[str]] = field(default_factory=dict)
    voted_yes: set[tuple[str, str]] = field(default_factory=set)
    replies: dict[str, list[TxnOutcome]] = field(default_factory=dict)
    expired: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        for r in self.regions:
            self.parts[r] = ParticipantState(r, PARTICIPANT_CONFIG)
            self.part_logs[r], self.answers[r] = [], []
            self.versions[r], self.applied[r], self.applied_this_life[r] = {}, set(), set()
        for begin in self.txns.values():
            self.net.append((COORDINATOR, begin))

    # ------------------------------------------------------------------ the saga log

    def logged_decision(self, txn_id: str) -> Decision | None:
        for record in self.coord_log:
            if isinstance(record, LogDecision) and record.txn_id == txn_id:
                return record.decision
        return None

    def logged_begin(self, txn_id: str) -> bool:
        return any(isinstance(r, LogBegin) and r.txn_id == txn_id for r in self.coord_log)

    def flush_one(self) -> None:
        record = self.coord_appending.pop(self.rng.randrange(len(self.coord_appending)))
        if isinstance(record, LogDecision):
            first = self.logged_decision(record.txn_id)
            assert first in (None, record.decision), "a logged decision was changed"
        self.coord_log.append(record)
        if isinstance(record, LogBegin):
            self.coord_acks.append(BeginLogged(record.txn_id))
        elif isinstance(record, LogDecision):
            self.coord_acks.append(DecisionLogged(record.txn_id, record.decision))

    # ------------------------------------------------------------------ coordinator

    def to_coordinator(self, message: CoordinatorMessage) -> None:
        self.coord, outputs = decide_coordinator(self.coord, message, self.now)
        self.perform_coordinator(outputs)

    def perform_coordinator(self, outputs: list[Any]) -> None:
        for out in outputs:
            if isinstance(out, LogBegin | LogDecision | LogDone):
                self.coord_appending.append(out)
            elif isinstance(out, SendPrepare):
                self.net.append((out.region, out))
            elif isinstance(out, SendDecision):
                assert self.logged_decision(out.txn_id) is out.decision, "announced unlogged"
                self.net.append((out.region, out.to_decided()))
            elif isinstance(out, Reply):
                logged = self.logged_decision(out.txn_id)
                assert out.outcome.decision is logged, "the client heard another decision"
                self.replies.setdefault(out.txn_id, []).append(out.outcome)
            elif isinstance(out, Expired):  # never begun, or answered before
                assert out.txn_id in self.replies or not self.logged_begin(out.txn_id)
                self.expired.add(out.txn_id)
            else:
                raise AssertionError(f"unexpected coordinator output {out!r}")

    def crash_coordinator(self) -> None:
        self.coord = recover(self.coord_log, COORDINATOR_CONFIG)
        self.coord_appending.clear()  # a fenced instance's appends never land
        self.coord_acks.clear()
        self.perform_coordinator(resume(self.coord))
        for txn_id, begin in self.txns.items():  # requests not yet logged are read again
            answered = txn_id in self.replies or txn_id in self.expired
            if not answered and not self.logged_begin(txn_id):
                self.net.append((COORDINATOR, begin))

    # ------------------------------------------------------------------ participants

    def to_participant(self, region: str, message: Any) -> None:
        if isinstance(message, SendPrepare):
            message = message.to_prepare(
                current_version=self.versions[region].get(message.key, 0),
                may_hold=self.may_hold[(message.txn_id, region)],
            )
        self.parts[region], outputs = decide_participant(self.parts[region], message, self.now)
        for out in outputs:
            if self.chaos and self.rng.random() < 0.04:  # crash between two outputs
                self.crash_participant(region)
                return
            self.perform_participant(region, out)

    def perform_participant(self, region: str, out: Any) -> None:
        if isinstance(out, LogPrepared | LogResolved):
            self.part_logs[region].append(out)
        elif isinstance(out, SendVote):
            if out.vote.yes:
                self.voted_yes.add((region, out.vote.txn_id))
            self.net.append((COORDINATOR, out.vote))
        elif isinstance(out, ApplyWrite):
            txn = out.txn_id
            assert (region, txn) in self.voted_yes, "applied a write it did not vote yes for"
            assert self.logged_decision(txn) is Decision.COMMIT, "applied before a commit"
            assert txn not in self.applied_this_life[region], "applied twice in one life"
            self.applied_this_life[region].add(txn)
            if txn not in self.applied[region]:  # the store deduplicates by txn id
                expected = self.txns[txn].expected_version
                found = self.versions[region].get(out.key, 0)
                assert expected in (None, found), "the key moved between prepare and commit"
                self.applied[region].add(txn)
                self.versions[region][out.key] = self.versions[region].get(out.key, 0) + 1
        elif isinstance(out, SendAck):
            self.net.append((COORDINATOR, out.ack))
        elif isinstance(out, QueryDecision):
            self.ask_saga_log(region, out.txn_id)
        else:
            raise AssertionError(f"unexpected participant output {out!r}")

    def ask_saga_log(self, region: str, txn_id: str) -> None:
        decision = self.logged_decision(txn_id)
        if decision is not None:
            deadline = self.txns[txn_id].deadline_ms
            self.answers[region].append(Decided(txn_id, decision, deadline))

    def crash_participant(self, region: str) -> None:
        self.parts[region] = recover_participant(
            region, self.part_logs[region], PARTICIPANT_CONFIG
        )
        self.answers[region].clear()
        self.applied_this_life[region] = set()
        for txn_id in in_doubt(self.parts[region]):
            self.ask_saga_log(region, txn_id)

    # ------------------------------------------------------------------ scheduling

    def deliver(self, index: int, keep_copy: bool) -> None:
        dest, message = self.net[index] if keep_copy else self.net.pop(index)
        if keep_copy and self.rng.random() < 0.5:  # and a copy comes back much later
            self.net.pop(index)
            self.delayed.append((self.now + self.rng.randrange(2_000), dest, message))
        self.send_to(dest, message)

    def send_to(self, dest: str, message: Any) -> None:
        if dest == COORDINATOR:
            self.to_coordinator(message)
        else:
            self.to_participant(dest, message)

    def release_due(self) -> None:
        due = [d for d in self.delayed if d[0] <= self.now]
        self.delayed = [d for d in self.delayed if d[0] > self.now]
        self.rng.shuffle(due)
        for _, dest, message in due:
            self.send_to(dest, message)

    def step(self) -> None:
        """One random event of the chaotic phase."""
        rng = self.rng
        choices: list[tuple[str, float]] = [("time", 0.1), ("tick", 0.1), ("ptick", 0.05)]
        if self.net:
            choices.append(("net", 0.45))
        if self.delayed:
            choices.append(("late", 0.05))
        if self.coord_appending:
            choices.append(("flush", 0.15))
        if self.coord_acks:
            choices.append(("logged", 0.1))
        if any(self.answers.values()):
            choices.append(("answer", 0.05))
        choices += [("crash", 0.02), ("pcrash", 0.04)]
        (action,) = rng.choices([c for c, _ in choices], [w for _, w in choices])
        if action == "time":
            self.now += rng.randrange(1, 80)
        elif action == "tick":
            self.to_coordinator(Tick())
        elif action == "ptick":
            region = rng.choice(self.regions)
            self.to_participant(region, Tick())
        elif action == "late":
            self.release_due()
        elif action == "net":
            self.deliver(rng.randrange(len(self.net)), keep_copy=rng.random() < 0.2)
        elif action == "flush":
            self.flush_one()
        elif action == "logged":
            self.to_coordinator(self.coord_acks.pop(rng.randrange(len(self.coord_acks))))
        elif action == "answer":
            region = rng.choice([r for r in self.regions if self.answers[r]])
            answer = self.answers[region].pop(rng.randrange(len(self.answers[region])))
            self.to_participant(region, answer)
        elif action == "crash":
            self.crash_coordinator()
        else:
            self.crash_participant(rng.choice(self.regions))

    def quiet(self) -> bool:
        return (
            not self.coord.live
            and not self.net
            and not self.delayed
            and not self.coord_appending
            and not self.coord_acks
            and not any(self.answers.values())
            and not any(p.prepared for p in self.parts.values())
        )

    def calm_round(self) -> None:
        """Everything in flight is delivered (in a random order), then time passes."""
        self.chaos = False
        self.release_due()
        while self.net:
            self.deliver(self.rng.randrange(len(self.net)), keep_copy=False)
        while self.coord_appending:
            self.flush_one()
        while self.coord_acks:
            self.to_coordinator(self.coord_acks.pop(self.rng.randrange(len(self.coord_acks))))
        for region in self.regions:
            while self.answers[region]:
                self.to_participant(region, self.answers[region].pop())
            self.to_participant(region, Tick())
        self.now += RETRY_MS
        self.to_coordinator(Tick())


def make_sim(rng: random.Random, n_regions: int, n_txns: int, conflicts: bool) -> Sim:
    regions = REGIONS[:n_regions]
    txns: dict[str, Begin] = {}
    may_hold: dict[tuple[str, str], bool] = {}
    for i in range(n_txns):
        txn_id = f"t{i}"
        participants = tuple(r for r in regions if rng.random() < 0.7) or (rng.choice(regions),)
        key = f"k{rng.randrange(2)}" if conflicts else f"k{i}"
        expected = rng.choice((None, None, 0, 1)) if conflicts else None
        deadline = rng.randrange(100, 1_200) if conflicts else 10**9
        txns[txn_id] = Begin(txn_id, key, participants, {"n": i}, expected, deadline)
        for r in regions:
            may_hold[(txn_id, r)] = rng.random() < 0.9 if conflicts else True
    return Sim(rng, regions, txns, may_hold)


def check_outcomes(sim: Sim) -> None:
    for txn_id, begin in sim.txns.items():
        decision = sim.logged_decision(txn_id)
        decisions = {r.decision for r in sim.coord_log if isinstance(r, LogDecision)
                     and r.txn_id == txn_id}
        assert len(decisions) <= 1, f"{txn_id}: two different decisions logged"
        appliers = {r for r in sim.regions if txn_id in sim.applied[r]}
        if decision is Decision.COMMIT:
            assert appliers == set(begin.participants), f"{txn_id}: committed, not applied"
        else:
            assert appliers == set(), f"{txn_id}: applied without a commit"
        replies = sim.replies.get(txn_id, [])
        if not replies:  # refused as late before it ever reached the log
            assert txn_id in sim.expired, f"{txn_id}: the client never got an answer"
            assert not sim.logged_begin(txn_id) and not appliers
        else:
            assert {o.decision for o in replies} == {decision}


def run_until_quiet(sim: Sim) -> None:
    for _ in range(CALM_ROUNDS):
        sim.calm_round()
        if sim.quiet():
            return
    raise AssertionError(
        f"not terminated: live {sorted(sim.coord.live)}, "
        f"in doubt { {r: in_doubt(p) for r, p in sim.parts.items()} }"
    )


@settings(max_examples=500, deadline=None)
@given(
    st.integers(0, 2**32), st.integers(1, 3), st.integers(1, 4), st.integers(0, 400),
)
def test_commit_is_atomic_final_and_terminates_despite_duplicates_reordering_and_crashes(
    seed: int, n_regions: int, n_txns: int, chaos_steps: int
) -> None:
    rng = random.Random(seed)
    sim = make_sim(rng, n_regions, n_txns, conflicts=True)
    for _ in range(chaos_steps):
        sim.step()
    run_until_quiet(sim)
    check_outcomes(sim)


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 3), st.integers(1, 4), st.integers(0, 300))
def test_without_conflicts_or_crashes_every_transaction_commits_everywhere(
    seed: int, n_regions: int, n_txns: int, chaos_steps: int
) -> None:
    rng = random.Random(seed)
    sim = make_sim(rng, n_regions, n_txns, conflicts=False)
    for _ in range(chaos_steps):
        action = rng.random()
        if sim.net and action < 0.6:  # duplicated, reordered and delayed, never lost
            sim.deliver(rng.randrange(len(sim.net)), keep_copy=rng.random() < 0.3)
        elif sim.coord_appending and action < 0.75:
            sim.flush_one()
        elif sim.coord_acks and action < 0.9:
            sim.to_coordinator(sim.coord_acks.pop(rng.randrange(len(sim.coord_acks))))
        else:
            sim.now += rng.randrange(1, 80)
            sim.to_coordinator(Tick())
    run_until_quiet(sim)
    check_outcomes(sim)
    for txn_id, begin in sim.txns.items():
        assert sim.logged_decision(txn_id) is Decision.COMMIT
        assert all(txn_id in sim.applied[r] for r in begin.participants)


def test_the_simulated_network_exercises_crashes_and_every_outcome() -> None:
    """The random worlds above are not vacuous: across seeds they commit and abort,
    crash both sides, and leave participants in doubt across a restart."""
    commits = aborts = in_doubt_restarts = 0
    for seed in range(60):
        rng = random.Random(seed)
        sim = make_sim(rng, 3, 3, conflicts=True)
        original = sim.crash_participant

        def counting(region: str, sim: Sim = sim, original: Any = original) -> None:
            nonlocal in_doubt_restarts
            in_doubt_restarts += bool(sim.parts[region].prepared)
            original(region)

        sim.crash_participant = counting  # type: ignore[method-assign]
        for _ in range(300):
            sim.step()
        run_until_quiet(sim)
        check_outcomes(sim)
        for txn_id in sim.txns:
            decision = sim.logged_decision(txn_id)
            commits += decision is Decision.COMMIT
            aborts += decision is not Decision.COMMIT
    assert commits > 10 and aborts > 10 and in_doubt_restarts > 3

