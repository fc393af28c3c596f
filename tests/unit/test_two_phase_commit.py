"""Two-phase commit: coordinator and participant decisions, message by message."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TypeVar

import pytest

from edgebus.core.commit_vote import (
    Ack,
    ApplyWrite,
    Begin,
    BeginLogged,
    CoordinatorConfig,
    CoordinatorLogRecord,
    CoordinatorMessage,
    CoordinatorOutput,
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
    ParticipantOutput,
    ParticipantState,
    Phase,
    Prepare,
    QueryDecision,
    Refusal,
    Reply,
    SendAck,
    SendDecision,
    SendPrepare,
    SendVote,
    Tick,
    TxnOutcome,
    VersionConflict,
    Vote,
    decide_coordinator,
    decide_participant,
    in_doubt,
    overdue,
    recover,
    recover_participant,
    resume,
)
from edgebus.errors import InvalidInput

T = TypeVar("T")
REGIONS = ("eu", "us", "ap")
DEADLINE = 10_000
WRITE = {"balance": 1000}


def begin(
    txn: str = "t1",
    participants: Sequence[str] = REGIONS,
    expected: int | None = None,
    deadline: int = DEADLINE,
) -> Begin:
    return Begin(txn, "acct:1", tuple(participants), WRITE, expected, deadline, ("pii",))


def coordinate(
    messages: Iterable[CoordinatorMessage],
    state: CoordinatorState | None = None,
    now_ms: int = 0,
) -> tuple[CoordinatorState, list[CoordinatorOutput]]:
    """Feed messages in order; returns the last state and every output."""
    state = state or CoordinatorState(CoordinatorConfig(retry_ms=100))
    outputs: list[CoordinatorOutput] = []
    for m in messages:
        state, out = decide_coordinator(state, m, now_ms)
        outputs += out
    return state, outputs


def preparing(
    txn: str = "t1", participants: Sequence[str] = REGIONS, expected: int | None = None
) -> CoordinatorState:
    state, _ = coordinate([begin(txn, participants, expected), BeginLogged(txn)])
    return state


def yes(region: str, txn: str = "t1") -> Vote:
    return Vote(txn, region, True, version=0)


def of_type(outputs: Iterable[object], kind: type[T]) -> list[T]:
    return [o for o in outputs if isinstance(o, kind)]


# --------------------------------------------------------------------------- coordinator


def test_begin_is_logged_first_and_prepares_go_out_only_once_the_log_acknowledges_it() -> None:
    state, out = coordinate([begin()])
    assert out == [LogBegin(begin())]
    assert state.live["t1"].phase is Phase.LOGGING_BEGIN
    state, out = coordinate([BeginLogged("t1")], state)
    prepares = of_type(out, SendPrepare)
    assert len(prepares) == len(out)
    assert [(p.region, p.key, p.write, p.placement, p.classes) for p in prepares] == [
        (r, "acct:1", WRITE, REGIONS, ("pii",)) for r in REGIONS
    ]


def test_all_yes_votes_commit() -> None:
    state, out = coordinate([yes(r) for r in REGIONS], preparing())
    assert out == [LogDecision("t1", Decision.COMMIT)]
    state, out = coordinate([DecisionLogged("t1", Decision.COMMIT)], state)
    assert of_type(out, Reply) == [Reply("t1", TxnOutcome(Decision.COMMIT))]
    assert of_type(out, Reply)[0].outcome.committed


def test_a_commit_waits_for_every_participant_vote() -> None:
    _, out = coordinate([yes("eu"), yes("us")], preparing())
    assert out == []


def test_one_no_vote_aborts_with_its_reason_without_waiting_for_the_others() -> None:
    no = Vote("t1", "us", False, "key 'acct:1' locked by txn t0", 0, Refusal.LOCKED)
    _, out = coordinate([yes("eu"), no], preparing())
    assert out == [
        LogDecision("t1", Decision.ABORT, "region us voted no: key 'acct:1' locked by txn t0")
    ]


def test_expected_version_conflict_aborts_with_a_conflict_result_naming_both_versions() -> None:
    state = preparing(participants=("eu",), expected=3)
    (prep,) = of_type(coordinate([Tick()], state, now_ms=100)[1], SendPrepare)  # asked again
    _, votes = decide_participant(
        ParticipantState("eu"), prep.to_prepare(current_version=4, may_hold=True), 0
    )
    state, _ = coordinate([v.vote for v in of_type(votes, SendVote)], state)
    _, out = coordinate([DecisionLogged("t1", Decision.ABORT)], state)
    (reply,) = of_type(out, Reply)
    assert not reply.outcome.committed
    assert reply.outcome.conflict == VersionConflict("eu", expected=3, found=4)
    assert "expected version 3, found 4" in (reply.outcome.reason or "")


def test_an_undecided_transaction_past_its_deadline_aborts_naming_the_regions_not_heard() -> None:
    state, out = coordinate([yes("eu"), Tick()], preparing(), now_ms=DEADLINE)
    assert of_type(out, LogDecision) == []  # at the deadline: not past it yet
    _, out = coordinate([Tick()], state, now_ms=DEADLINE + 1)
    assert out == [
        LogDecision("t1", Decision.ABORT, "timed out waiting for votes from us, ap")
    ]


def test_the_decision_is_logged_before_any_participant_or_client_hears_of_it() -> None:
    state, out = coordinate([yes(r) for r in REGIONS], preparing())
    state, again = coordinate([Tick()], state, now_ms=100)  # the log has not acknowledged
    out += again
    assert of_type(out, SendDecision) == [] and of_type(out, Reply) == []
    assert out == [LogDecision("t1", Decision.COMMIT)] * 2
    state, out = coordinate([DecisionLogged("t1", Decision.COMMIT)], state)
    assert out == [
        *(SendDecision(r, "t1", Decision.COMMIT, DEADLINE) for r in REGIONS),
        Reply("t1", TxnOutcome(Decision.COMMIT)),
    ]


def test_an_acknowledgement_of_another_decision_than_the_chosen_one_announces_nothing() -> None:
    state, _ = coordinate([yes(r) for r in REGIONS], preparing())
    _, out = coordinate([DecisionLogged("t1", Decision.ABORT)], state)
    assert out == []


def test_votes_after_the_decision_and_repeated_votes_change_nothing() -> None:
    no = Vote("t1", "eu", False, "no", 0)
    state, _ = coordinate([no], preparing())
    decided = state.live["t1"]
    state, out = coordinate([yes("us"), yes("ap"), yes("eu"), no], state)
    assert out == [] and state.live["t1"] == decided
    # a region's first vote counts: a duplicate yes is not a second yes
    state, out = coordinate([yes("eu"), yes("eu"), yes("us")], preparing())
    assert out == [] and set(state.live["t1"].votes) == {"eu", "us"}


def test_votes_for_unknown_transactions_or_from_outside_the_placement_are_ignored() -> None:
    state = preparing()
    assert coordinate([yes("eu", txn="other"), yes("mars")], state) == (state, [])


def test_a_vote_before_the_prepare_was_sent_is_ignored() -> None:
    state, _ = coordinate([begin()])
    assert coordinate([yes("eu")], state) == (state, [])


def test_duplicate_decision_acknowledgements_announce_once() -> None:
    state, _ = coordinate([yes(r) for r in REGIONS], preparing())
    state, out = coordinate([DecisionLogged("t1", Decision.COMMIT)] * 3, state)
    assert len(of_type(out, SendDecision)) == 3 and len(of_type(out, Reply)) == 1


def test_the_transaction_is_done_once_every_participant_acknowledged_duplicates_or_not() -> None:
    state, _ = coordinate([yes(r) for r in REGIONS], preparing())
    state, _ = coordinate([DecisionLogged("t1", Decision.COMMIT)], state)
    state, out = coordinate([Ack("t1", "eu"), Ack("t1", "eu"), Ack("t1", "mars")], state)
    assert out == [] and state.live["t1"].waiting_for() == ("us", "ap")
    state, out = coordinate([Ack("t1", "ap"), Ack("t1", "us"), Ack("t1", "us")], state)
    assert out == [LogDone("t1")]
    assert "t1" not in state.live and state.history["t1"].phase is Phase.DONE


def test_an_acknowledgement_before_the_decision_is_announced_is_ignored() -> None:
    state, _ = coordinate([yes(r) for r in REGIONS], preparing())
    state2, out = coordinate([Ack("t1", r) for r in REGIONS], state)
    assert out == [] and state2 == state


def test_unacknowledged_decisions_are_sent_again_to_the_silent_regions_on_tick() -> None:
    state, _ = coordinate([yes(r) for r in REGIONS], preparing())
    state, _ = coordinate([DecisionLogged("t1", Decision.COMMIT), Ack("t1", "us")], state)
    state, out = coordinate([Tick()], state, now_ms=50)
    assert out == []  # retry_ms is 100
    state, out = coordinate([Tick()], state, now_ms=100)
    assert out == [SendDecision(r, "t1", Decision.COMMIT, DEADLINE) for r in ("eu", "ap")]
    _, out = coordinate([Tick()], state, now_ms=150)
    assert out == []


def test_missing_votes_are_asked_for_again_on_tick() -> None:
    state, _ = coordinate([yes("eu")], preparing())
    _, out = coordinate([Tick()], state, now_ms=100)
    assert [p.region for p in of_type(out, SendPrepare)] == ["us", "ap"] and len(out) == 2


def test_a_begin_the_log_has_not_acknowledged_is_logged_again_on_tick() -> None:
    state, _ = coordinate([begin()])
    _, out = coordinate([Tick()], state, now_ms=100)
    assert out == [LogBegin(begin())]


def test_a_deadline_passing_before_the_begin_is_logged_aborts_once_it_is_logged() -> None:
    state, _ = coordinate([begin()])
    state, out = coordinate([Tick()], state, now_ms=DEADLINE + 1)
    assert of_type(out, LogDecision) == []  # a decision never precedes its begin in the log
    _, out = coordinate([BeginLogged("t1")], state, now_ms=DEADLINE + 1)
    (decision,) = of_type(out, LogDecision)
    assert len(out) == 1 and decision.decision is Decision.ABORT
    assert "after its deadline" in (decision.reason or "")


def test_a_duplicate_begin_does_not_start_the_transaction_again_and_repeats_the_reply() -> None:
    state = preparing()
    assert coordinate([begin()], state) == (state, [])
    state, _ = coordinate([yes(r) for r in REGIONS], state)
    assert coordinate([begin()], state)[1] == []  # decided, not yet logged: no answer yet
    state, _ = coordinate([DecisionLogged("t1", Decision.COMMIT)], state)
    state, _ = coordinate([Ack("t1", r) for r in REGIONS], state)
    assert coordinate([begin()], state)[1] == [Reply("t1", TxnOutcome(Decision.COMMIT))]


def test_a_begin_arriving_after_its_deadline_is_refused_without_a_decision() -> None:
    state, out = coordinate([begin()], now_ms=DEADLINE + 5)
    assert state.live == {} and state.history == {}
    (expired,) = out
    assert isinstance(expired, Expired)
    assert "arrived 5 ms after its deadline" in expired.reason
    assert "answered before, that answer stands" in expired.reason


def test_a_late_duplicate_of_a_forgotten_transaction_is_expired_not_run_again() -> None:
    state = CoordinatorState(CoordinatorConfig(retry_ms=100, keep_done=0))
    state, _ = coordinate(
        [begin(participants=("eu",)), BeginLogged("t1"), yes("eu"),
         DecisionLogged("t1", Decision.COMMIT), Ack("t1", "eu")],
        state,
    )
    state, _ = coordinate([Tick()], state, now_ms=DEADLINE + 1)
    assert state.get("t1") is None
    _, out = coordinate([begin(participants=("eu",))], state, now_ms=DEADLINE + 1)
    assert [type(o) for o in out] == [Expired]


def test_done_transactions_are_kept_while_their_deadline_runs_then_only_the_newest() -> None:
    state = CoordinatorState(CoordinatorConfig(retry_ms=100, keep_done=1))
    for txn in ("a", "b", "c"):
        state, _ = coordinate(
            [begin(txn, ("eu",)), BeginLogged(txn), yes("eu", txn),
             DecisionLogged(txn, Decision.COMMIT), Ack(txn, "eu")],
            state,
        )
    assert list(state.history) == ["a", "b", "c"]
    state, _ = coordinate([Tick()], state, now_ms=DEADLINE + 1)
    assert list(state.history) == ["c"]


def test_begin_needs_participants_named_once() -> None:
    with pytest.raises(InvalidInput, match="no participant region"):
        begin(participants=())
    with pytest.raises(InvalidInput, match="names a participant region twice"):
        begin(participants=("eu", "eu"))


def test_a_message_of_the_wrong_side_is_refused_with_what_to_pass() -> None:
    with pytest.raises(InvalidInput, match="not a coordinator message"):
        decide_coordinator(CoordinatorState(), Decided("t1", Decision.COMMIT, 0), 0)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="not a participant message"):
        decide_participant(ParticipantState("eu"), Ack("t1", "eu"), 0)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- recovery


def test_recovery_announces_a_logged_decision_again_and_answers_the_client() -> None:
    log: list[CoordinatorLogRecord] = [LogBegin(begin()), LogDecision("t1", Decision.COMMIT)]
    state = recover(log)
    assert state.live["t1"].phase is Phase.ANNOUNCING
    assert resume(state) == [
        *(SendDecision(r, "t1", Decision.COMMIT, DEADLINE) for r in REGIONS),
        Reply("t1", TxnOutcome(Decision.COMMIT)),
    ]


def test_recovery_presumes_abort_for_a_transaction_begun_but_not_decided() -> None:
    state = recover([LogBegin(begin())])
    (out,) = resume(state)
    assert isinstance(out, LogDecision) and out.decision is Decision.ABORT
    assert "presumed abort" in (out.reason or "")
    state, sent = coordinate([DecisionLogged("t1", Decision.ABORT)], state)
    assert of_type(sent, SendDecision) == [
        SendDecision(r, "t1", Decision.ABORT, DEADLINE) for r in REGIONS
    ]
    assert of_type(sent, Reply)[0].outcome.decision is Decision.ABORT


def test_recovery_ignores_votes_for_a_presumed_abort() -> None:
    state = recover([LogBegin(begin())])
    assert coordinate([yes(r) for r in REGIONS], state) == (state, [])


def test_recovery_keeps_the_first_logged_decision_and_reproduces_the_conflict_result() -> None:
    conflict = VersionConflict("eu", 3, 4)
    log: list[CoordinatorLogRecord] = [
        LogBegin(begin(expected=3)),
        LogBegin(begin(expected=3)),
        LogDecision("t1", Decision.ABORT, "region eu voted no: ...", conflict),
        LogDecision("t1", Decision.COMMIT),
    ]
    state = recover(log)
    assert state.live["t1"].outcome == TxnOutcome(
        Decision.ABORT, "region eu voted no: ...", conflict
    )
    assert of_type(resume(state), Reply)[0].outcome.conflict == conflict


def test_recovery_keeps_done_transactions_as_history_and_announces_nothing_for_them() -> None:
    log: list[CoordinatorLogRecord] = [
        LogBegin(begin()), LogDecision("t1", Decision.COMMIT), LogDone("t1")
    ]
    state = recover(log)
    assert state.live == {} and state.history["t1"].decision is Decision.COMMIT
    assert resume(state) == []
    assert coordinate([begin()], state)[1] == [Reply("t1", TxnOutcome(Decision.COMMIT))]


def test_recovery_refuses_a_record_that_is_not_from_the_saga_log() -> None:
    with pytest.raises(InvalidInput, match="not a saga log record"):
        recover([Tick()])  # type: ignore[list-item]


# --------------------------------------------------------------------------- participant


def prepare(
    txn: str = "t1",
    key: str = "acct:1",
    expected: int | None = None,
    current: int = 0,
    may_hold: bool = True,
    deadline: int = DEADLINE,
) -> Prepare:
    return Prepare(txn, key, WRITE, expected, ("pii",), REGIONS, deadline, current, may_hold)


def participate(
    messages: Iterable[Prepare | Decided | Tick],
    state: ParticipantState | None = None,
    now_ms: int = 0,
) -> tuple[ParticipantState, list[ParticipantOutput]]:
    state = state or ParticipantState("eu")
    outputs: list[ParticipantOutput] = []
    for m in messages:
        state, out = decide_participant(state, m, now_ms)
        outputs += out
    return state, outputs


def votes(outputs: Iterable[object]) -> list[Vote]:
    return [o.vote for o in of_type(outputs, SendVote)]


def test_a_valid_prepare_locks_the_key_and_logs_before_voting_yes() -> None:
    state, out = participate([prepare(current=7)])
    assert out == [
        LogPrepared("t1", "acct:1", WRITE, DEADLINE, 7),
        SendVote(Vote("t1", "eu", True, version=7)),
    ]
    assert state.locks == {"acct:1": "t1"}


def test_a_participant_refuses_a_key_locked_by_another_transaction() -> None:
    state, _ = participate([prepare("t1")])
    state, out = participate([prepare("t2")], state)
    (vote,) = votes(out)
    assert not vote.yes and vote.refusal is Refusal.LOCKED
    assert "key 'acct:1' locked by txn t1" in (vote.reason or "")
    assert state.locks == {"acct:1": "t1"}
    # another key is free
    assert votes(participate([prepare("t3", key="acct:2")], state)[1])[0].yes


def test_a_participant_votes_yes_again_for_the_same_transaction_without_logging_again() -> None:
    state, _ = participate([prepare("t1", current=2)])
    state2, out = participate([prepare("t1", current=2)], state)
    assert out == [SendVote(Vote("t1", "eu", True, version=2))] and state2 == state


def test_an_expected_version_mismatch_votes_no_naming_both_versions() -> None:
    state, out = participate([prepare(expected=3, current=4)])
    (vote,) = votes(out)
    assert not vote.yes and vote.refusal is Refusal.VERSION_CONFLICT and vote.version == 4
    assert vote.reason == "expected version 3, found 4"
    assert state.locks == {} and of_type(out, LogPrepared) == []


def test_a_matching_expected_version_votes_yes() -> None:
    assert votes(participate([prepare(expected=4, current=4)])[1])[0].yes


def test_data_compliance_keeps_out_of_the_region_is_refused() -> None:
    (vote,) = votes(participate([prepare(may_hold=False)])[1])
    assert not vote.yes and vote.refusal is Refusal.COMPLIANCE
    assert "region eu may not hold data classified pii" in (vote.reason or "")
    (vote,) = votes(participate([prepare()], ParticipantState("mars"))[1])
    assert vote.refusal is Refusal.COMPLIANCE  # not in the placement


def test_a_prepare_after_its_deadline_is_refused() -> None:
    state, out = participate([prepare()], now_ms=DEADLINE + 1)
    assert votes(out)[0].refusal is Refusal.LATE and state.locks == {}


def test_commit_applies_the_write_then_logs_and_acknowledges_and_releases_the_key() -> None:
    state, _ = participate([prepare()])
    state, out = participate([Decided("t1", Decision.COMMIT, DEADLINE)], state)
    assert out == [
        ApplyWrite("t1", "acct:1", WRITE),
        LogResolved("t1", Decision.COMMIT),
        SendAck(Ack("t1", "eu")),
    ]
    assert state.locks == {} and in_doubt(state) == []


def test_commit_applies_once_even_when_the_decision_arrives_twice() -> None:
    state, _ = participate([prepare()])
    _, out = participate([Decided("t1", Decision.COMMIT, DEADLINE)] * 3, state)
    assert len(of_type(out, ApplyWrite)) == 1 and len(of_type(out, SendAck)) == 3


def test_abort_releases_the_key_without_applying() -> None:
    state, _ = participate([prepare()])
    state, out = participate([Decided("t1", Decision.ABORT, DEADLINE)], state)
    assert out == [LogResolved("t1", Decision.ABORT), SendAck(Ack("t1", "eu"))]
    assert state.locks == {}
    assert votes(participate([prepare("t2")], state)[1])[0].yes


def test_a_decision_for_an_unknown_transaction_is_just_acknowledged() -> None:
    state, out = participate([Decided("t9", Decision.ABORT, DEADLINE)])
    assert out == [SendAck(Ack("t9", "eu"))]
    # and its PREPARE, arriving late, is refused rather than locking the key forever
    state, out = participate([prepare("t9")], state)
    assert not votes(out)[0].yes and state.locks == {}


def test_a_duplicate_prepare_after_the_decision_repeats_the_vote_given() -> None:
    state, _ = participate([prepare(), Decided("t1", Decision.COMMIT, DEADLINE)])
    _, out = participate([prepare()], state)
    assert out == [SendVote(Vote("t1", "eu", True, version=0))]
    state, _ = participate([prepare("t2", expected=5)])
    _, out = participate([prepare("t2", expected=5), prepare("t2", expected=0)], state)
    assert [v.refusal for v in votes(out)] == [Refusal.VERSION_CONFLICT] * 2


def test_in_doubt_lists_prepared_transactions_without_a_decision() -> None:
    state, _ = participate(
        [prepare("t2", key="b"), prepare("t1", key="a"), prepare("t3", key="c"),
         Decided("t3", Decision.ABORT, DEADLINE)]
    )
    assert in_doubt(state) == ["t1", "t2"]


def test_a_restarted_participant_is_in_doubt_and_holds_its_locks_until_the_decision() -> None:
    _, out = participate(
        [prepare("t1", key="a"), prepare("t2", key="b"), Decided("t2", Decision.COMMIT, DEADLINE)]
    )
    log = [o for o in out if isinstance(o, LogPrepared | LogResolved)]  # what it logged
    state = recover_participant("eu", log)
    assert in_doubt(state) == ["t1"] and state.locks == {"a": "t1"}
    assert not votes(participate([prepare("t4", key="a")], state)[1])[0].yes
    state, out = participate([Decided("t1", Decision.COMMIT, DEADLINE)], state)
    assert of_type(out, ApplyWrite) == [ApplyWrite("t1", "a", WRITE)]
    # t2 was resolved before the crash: its decision again is only acknowledged
    assert participate([Decided("t2", Decision.COMMIT, DEADLINE)], state)[1] == [
        SendAck(Ack("t2", "eu"))
    ]


def test_an_overdue_in_doubt_transaction_is_looked_up_in_the_decision_log_on_tick() -> None:
    config = ParticipantConfig(query_after_ms=500)
    state, _ = participate([prepare()], ParticipantState("eu", config))
    assert overdue(state, DEADLINE + 500) == []
    _, out = participate([Tick()], state, now_ms=DEADLINE + 501)
    assert out == [QueryDecision("t1")]


def test_finished_transactions_are_forgotten_after_the_retention_and_refused_as_late() -> None:
    config = ParticipantConfig(finished_retention_ms=1_000)
    state, _ = participate(
        [prepare(), Decided("t1", Decision.COMMIT, DEADLINE)], ParticipantState("eu", config)
    )
    state, _ = participate([Tick()], state, now_ms=DEADLINE + 1_000)
    assert "t1" in state.finished
    state, _ = participate([Tick()], state, now_ms=DEADLINE + 1_001)
    assert state.finished == {}
    _, out = participate([prepare()], state, now_ms=DEADLINE + 1_001)
    assert votes(out)[0].refusal is Refusal.LATE
