"""The commit log as a fold: first vote per region and first decision per transaction count,
and what coordinators, participants and tools read from it."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import pytest

from edgebus.core.commit_log import (
    MAX_REFUSED_KEPT,
    RETENTION_MS,
    AckRecord,
    BeginRecord,
    DecisionRecord,
    LogRecord,
    PartitionLog,
    Txn,
    TxnStatus,
    VoteRecord,
    committed_version,
    coordinator_decision,
    lock_holders,
    participant_vote,
    recent,
    unbacked_commit,
)
from edgebus.core.commit_vote import Decision, Refusal, TxnOutcome, VersionConflict, Vote

REGIONS = ("eu", "us", "ap")
DEADLINE = 10_000


def begin(
    txn: str = "t1",
    key: str = "acct:1",
    placement: Sequence[str] = REGIONS,
    expected: int | None = None,
    deadline: int = DEADLINE,
    classification: Sequence[str] = ("pii",),
    writer: str = "client-1",
) -> BeginRecord:
    return BeginRecord(
        txn, key, "set", b'{"balance": 1000}', tuple(placement), tuple(classification),
        expected, deadline, 1 << 16, writer, 0,
    )


def vote(
    region: str,
    txn: str = "t1",
    yes: bool = True,
    version: int | None = 0,
    refusal: Refusal | None = None,
    reason: str | None = None,
    key: str = "acct:1",
) -> VoteRecord:
    return VoteRecord(txn, key, Vote(txn, region, yes, reason, version, refusal), region, 1)


def no(
    region: str,
    txn: str = "t1",
    refusal: Refusal = Refusal.LOCKED,
    reason: str | None = "key 'acct:1' locked by txn t0",
    version: int | None = 0,
) -> VoteRecord:
    return vote(region, txn, False, version, refusal, reason)


def decision(
    txn: str = "t1",
    outcome: Decision = Decision.COMMIT,
    reason: str | None = None,
    version: int | None = 1,
    writer: str = "coordinator-a",
    key: str = "acct:1",
) -> DecisionRecord:
    return DecisionRecord(txn, key, TxnOutcome(outcome, reason), 2 << 16, version, writer, 2)


def abort(txn: str = "t1", reason: str = "region us voted no") -> DecisionRecord:
    return decision(txn, Decision.ABORT, reason, None)


def ack(region: str, txn: str = "t1", key: str = "acct:1") -> AckRecord:
    return AckRecord(txn, key, region, f"{region}:0:7", region, 3)


def fold_all(records: Iterable[LogRecord], log: PartitionLog | None = None) -> PartitionLog:
    """Fold records at offsets 0, 1, 2, ... (continuing after ``log.position``)."""
    log = log or PartitionLog()
    for r in records:
        log.fold(log.position, r)
    return log


def txn_of(records: Iterable[LogRecord], txn: str = "t1") -> Txn:
    return fold_all(records).txns[txn]


# --------------------------------------------------------------------------- fold


def test_a_begin_is_folded_with_its_offset_and_names_the_participants() -> None:
    log = PartitionLog()
    changed = log.fold(5, begin())
    assert changed is log.txns["t1"]
    assert changed.begin == begin()
    assert changed.begin_offset == 5
    assert changed.key == "acct:1"
    assert changed.participants == REGIONS
    assert log.position == 6


def test_participants_are_empty_before_the_begin_is_read() -> None:
    assert Txn("t1", "acct:1").participants == ()


def test_a_duplicate_begin_is_ignored_and_the_first_one_counts() -> None:
    log = fold_all([begin()])
    retried = begin(placement=("eu",), expected=7, deadline=1, writer="client-2")
    assert log.fold(1, retried) is None
    txn = log.txns["t1"]
    assert txn.begin == begin()
    assert txn.begin_offset == 0
    assert txn.participants == REGIONS
    assert log.position == 2  # an ignored record is read all the same


def test_votes_are_recorded_by_region() -> None:
    log = fold_all([begin()])
    assert log.fold(1, vote("eu", version=3)) is log.txns["t1"]
    assert log.txns["t1"].votes == {"eu": Vote("t1", "eu", True, None, 3, None)}


def test_the_second_vote_of_a_region_is_ignored_even_when_it_contradicts_the_first() -> None:
    log = fold_all([begin(), vote("eu")])
    assert log.fold(2, no("eu")) is None
    assert log.fold(3, vote("eu", version=9)) is None
    assert log.txns["t1"].votes["eu"] == vote("eu").vote


def test_a_first_no_vote_is_not_overturned_by_a_later_yes() -> None:
    txn = txn_of([begin(), no("us"), vote("us")])
    assert txn.votes["us"].yes is False


def test_a_vote_from_a_region_outside_the_placement_is_ignored() -> None:
    log = fold_all([begin(placement=("eu", "us"))])
    assert log.fold(1, vote("ap")) is None
    assert log.fold(2, no("ap")) is None
    assert log.txns["t1"].votes == {}


def test_a_vote_after_the_decision_is_ignored() -> None:
    log = fold_all([begin(), vote("eu"), abort()])
    assert log.fold(3, vote("us")) is None
    assert log.fold(4, no("ap")) is None
    assert set(log.txns["t1"].votes) == {"eu"}


def test_the_first_decision_wins_over_a_later_contradicting_one() -> None:
    log = fold_all([begin(), *(vote(r) for r in REGIONS), decision(writer="coordinator-a")])
    late = abort()  # a second coordinator racing on the same transaction
    assert log.fold(5, late) is None
    txn = log.txns["t1"]
    assert txn.decision == decision(writer="coordinator-a")
    assert txn.decision_offset == 4
    assert txn.status == TxnStatus.COMMITTED


def test_a_first_abort_is_not_overturned_by_a_later_commit() -> None:
    txn = txn_of([begin(), abort(), decision()])
    assert txn.decision == abort()
    assert txn.decision_offset == 1
    assert txn.status == TxnStatus.ABORTED


def test_a_second_ack_of_a_region_is_ignored() -> None:
    log = fold_all([begin(), abort(), ack("eu")])
    second = AckRecord("t1", "acct:1", "eu", "eu:3:99", "eu", 9)
    assert log.fold(3, second) is None
    assert log.txns["t1"].acks == {"eu": ack("eu")}


def test_records_of_different_transactions_are_folded_apart() -> None:
    log = fold_all([
        begin("t1", placement=("eu",)), begin("t2", key="acct:2", placement=("eu",)),
        vote("eu", "t1"), no("eu", "t2"), decision("t1"), abort("t2"),
    ])
    assert log.txns["t1"].votes["eu"].yes and not log.txns["t2"].votes["eu"].yes
    assert log.txns["t1"].decision == decision("t1")
    assert log.txns["t2"].decision == abort("t2")
    assert log.txns["t2"].key == "acct:2"


def test_the_position_is_the_offset_after_the_last_record_when_offsets_skip() -> None:
    log = PartitionLog()
    assert log.position == 0
    log.fold(10, begin())
    assert log.position == 11
    log.fold(42, vote("eu"))  # compaction, aborted Kafka transactions, other kinds
    assert log.position == 43
    log.fold(43, vote("eu"))  # a duplicate moves the position too
    assert log.position == 44


def test_folding_a_record_twice_in_a_row_changes_nothing_the_second_time() -> None:
    records: list[LogRecord] = [begin(), vote("eu"), no("us"), abort(), ack("eu"), ack("us")]
    log = PartitionLog()
    for offset, record in enumerate(records):
        assert log.fold(2 * offset, record) is not None
        assert log.fold(2 * offset + 1, record) is None


def test_undecided_lists_begun_transactions_without_a_decision_in_log_order() -> None:
    log = fold_all([
        begin("t3"), begin("t1"), begin("t2"), abort("t1"),
        ack("eu", "t9"),  # never begun (its begin was not read): not listed
    ])
    assert [t.txn_id for t in log.undecided()] == ["t3", "t2"]


# --------------------------------------------------------------------------- forged decisions


def forged(txn: str = "t1", key: str = "acct:1") -> DecisionRecord:
    """A COMMIT written straight to the log by someone who is no coordinator."""
    return decision(txn, writer="forger", key=key)


def test_a_commit_without_a_yes_vote_of_every_participant_is_refused_and_changes_nothing() -> None:
    log = fold_all([begin(), vote("eu"), vote("us")])  # ap has not voted
    assert log.fold(3, forged()) is None
    txn = log.txns["t1"]
    assert txn.decision is None and txn.decision_offset == -1
    assert txn.status == TxnStatus.PREPARING
    assert log.undecided() == [txn]
    assert log.position == 4  # read all the same


def test_a_refused_commit_is_reported_with_its_reason_and_kept_on_the_transaction() -> None:
    log = fold_all([begin(), vote("eu")])
    log.fold(2, forged())
    refused = log.last_refused
    assert refused is not None
    assert (refused.offset, refused.record) == (2, forged())
    assert refused.reason == ("a COMMIT without a yes vote of us, ap before it in the log: "
                              "no coordinator decided it")
    assert log.txns["t1"].refused == [refused]
    log.fold(3, vote("us"))  # the next record, refused or not, says so
    assert log.last_refused is None


def test_a_commit_after_a_no_vote_of_a_participant_is_refused() -> None:
    log = fold_all([begin(), vote("eu"), no("us"), vote("ap")])
    assert log.fold(4, forged()) is None
    assert log.last_refused is not None and "us" in log.last_refused.reason
    assert "eu" not in log.last_refused.reason and "ap" not in log.last_refused.reason
    assert log.txns["t1"].decision is None


def test_yes_votes_of_regions_outside_the_placement_do_not_back_a_commit() -> None:
    log = fold_all([begin(placement=("eu", "us")), vote("eu"), vote("ap")])
    assert log.fold(3, forged()) is None
    assert log.last_refused is not None and log.txns["t1"].decision is None


def test_a_commit_of_a_transaction_whose_begin_was_never_seen_is_refused() -> None:
    log = PartitionLog()
    assert log.fold(0, forged("t9")) is None
    assert log.last_refused is not None and "BEGIN" in log.last_refused.reason
    assert log.txns == {} and log.position == 1  # not remembered: nothing to remember it by
    # one whose other records (not its begin) were read: refused all the same
    fold_all([vote("eu", "t8"), vote("us", "t8"), vote("ap", "t8")], log)
    assert log.fold(log.position, forged("t8")) is None
    assert log.last_refused is not None and log.txns["t8"].decision is None
    assert log.txns["t8"].refused == [log.last_refused]


def test_a_commit_of_a_write_without_participants_is_refused() -> None:
    log = fold_all([begin(placement=())])
    assert log.fold(1, forged()) is None
    assert log.last_refused is not None and "without participant" in log.last_refused.reason


def test_a_commit_after_every_yes_vote_counts_whoever_wrote_it() -> None:
    """The rule is the log's: a COMMIT with a yes vote of every participant before it is
    what any coordinator would decide, so it counts (its writer is not checked)."""
    log = fold_all([begin(), *(vote(r) for r in REGIONS)])
    assert log.fold(4, forged()) is log.txns["t1"]
    assert log.last_refused is None
    assert log.txns["t1"].decision == forged()


def test_an_abort_counts_whenever_it_comes() -> None:
    before_any_vote = txn_of([begin(), abort(reason="eu gave up")])
    assert before_any_vote.decision == abort(reason="eu gave up")
    after_every_yes = txn_of([begin(), *(vote(r) for r in REGIONS), abort()])
    assert after_every_yes.decision == abort()
    log = PartitionLog()
    assert log.fold(0, abort("t9")) is not None  # even of a transaction never begun here
    assert log.last_refused is None and log.txns["t9"].decision == abort("t9")


def test_votes_after_a_refused_commit_are_folded_and_the_coordinator_commits_on_them() -> None:
    log = fold_all([begin(), vote("eu"), forged()])
    fold_all([vote("us"), vote("ap")], log)
    txn = log.txns["t1"]
    assert set(txn.votes) == set(REGIONS)  # not "after the decision": there was none
    outcome = coordinator_decision(txn, 0)
    assert outcome == TxnOutcome(Decision.COMMIT)
    assert log.fold(log.position, decision()) is txn  # the coordinator's: it counts
    assert txn.decision == decision() and txn.decision_offset == 5
    assert txn.refused[0].offset == 2


def test_a_transaction_whose_forged_commit_was_refused_is_aborted_at_its_deadline() -> None:
    """As if no decision had come: the key stays locked, the coordinator waits for the
    silent participants until the deadline, then aborts naming them."""
    log = fold_all([begin(), vote("eu"), forged()])
    txn = log.txns["t1"]
    assert lock_holders(log.txns.values(), "eu") == {"acct:1": "t1"}
    assert coordinator_decision(txn, DEADLINE) is None
    outcome = coordinator_decision(txn, DEADLINE + 1)
    assert outcome is not None and outcome.decision is Decision.ABORT
    assert outcome.reason is not None and outcome.reason.startswith("timed out: us, ap")
    fold_all([abort(reason=outcome.reason)], log)
    assert txn.status == TxnStatus.ABORTED
    assert lock_holders(log.txns.values(), "eu") == {}


def test_a_duplicate_commit_after_a_valid_one_is_ignored_and_not_reported() -> None:
    log = fold_all([begin(), *(vote(r) for r in REGIONS), decision()])
    assert log.fold(5, decision(writer="coordinator-b")) is None
    assert log.last_refused is None
    assert log.txns["t1"].decision == decision() and log.txns["t1"].refused == []


def test_a_forged_commit_after_a_valid_abort_is_ignored_as_a_duplicate() -> None:
    log = fold_all([begin(), vote("eu"), abort()])
    assert log.fold(3, forged()) is None
    assert log.txns["t1"].decision == abort()
    assert log.last_refused is None  # decided: any later decision is a duplicate


def test_a_refused_commit_sent_again_is_kept_once_and_at_most_a_few_are_kept() -> None:
    log = fold_all([begin(), forged(), forged()])
    assert [r.offset for r in log.txns["t1"].refused] == [1]
    assert log.last_refused is not None and log.last_refused.offset == 2  # reported again
    for i in range(2 * MAX_REFUSED_KEPT):
        log.fold(log.position, DecisionRecord("t1", "acct:1", TxnOutcome(Decision.COMMIT),
                                              i, 1, f"forger-{i}", i))
        assert log.last_refused is not None
    assert len(log.txns["t1"].refused) == MAX_REFUSED_KEPT


def test_unbacked_commit_says_why_a_commit_would_be_refused_now() -> None:
    assert unbacked_commit(Txn("t1", "acct:1")) is not None
    assert unbacked_commit(txn_of([begin(), vote("eu")])) is not None
    assert unbacked_commit(txn_of([begin(), *(vote(r) for r in REGIONS)])) is None


def test_a_reader_resuming_at_resume_offset_refuses_the_same_forged_commit() -> None:
    records: list[LogRecord] = [
        begin("t0", key="k0", placement=("eu",)), vote("eu", "t0", key="k0"),
        decision("t0", key="k0"),
        begin("t1", placement=("eu", "us")), vote("eu", "t1"), forged("t1"),
    ]
    full = fold_all(records)
    start = fold_all(records[:5]).resume_offset(0, undecided)
    resumed = fold_from(records, start)
    assert resumed.last_refused is not None and full.last_refused is not None
    assert resumed.txns["t1"].decision is None and full.txns["t1"].decision is None


# --------------------------------------------------------------------------- status


def test_a_begun_transaction_is_preparing_even_once_every_participant_voted_yes() -> None:
    txn = txn_of([begin(), *(vote(r) for r in REGIONS)])
    assert txn.status == TxnStatus.PREPARING
    assert not txn.finished


def test_status_goes_from_preparing_to_committed_to_done_once_every_participant_acked() -> None:
    log = fold_all([begin(), *(vote(r) for r in REGIONS)])
    txn = log.txns["t1"]
    assert txn.status == TxnStatus.PREPARING
    fold_all([decision()], log)
    assert txn.status == TxnStatus.COMMITTED
    fold_all([ack("eu"), ack("us")], log)
    assert txn.status == TxnStatus.COMMITTED
    assert not txn.finished
    fold_all([ack("ap")], log)
    assert txn.status == TxnStatus.DONE_COMMITTED
    assert txn.finished


def test_status_goes_from_aborted_to_done_aborted_once_every_participant_acked() -> None:
    log = fold_all([begin(placement=("eu", "us")), no("us"), abort()])
    txn = log.txns["t1"]
    assert txn.status == TxnStatus.ABORTED
    fold_all([ack("us")], log)
    assert txn.status == TxnStatus.ABORTED
    fold_all([ack("eu")], log)
    assert txn.status == TxnStatus.DONE_ABORTED
    assert txn.finished


def test_an_ack_from_a_region_outside_the_placement_does_not_finish_a_transaction() -> None:
    txn = txn_of([begin(placement=("eu", "us")), abort(), ack("eu"), ack("ap")])
    assert txn.status == TxnStatus.ABORTED


def test_acks_before_the_decision_leave_a_transaction_preparing() -> None:
    txn = txn_of([begin(placement=("eu",)), ack("eu")])
    assert txn.status == TxnStatus.PREPARING
    assert not txn.finished


def test_a_decision_record_says_whether_it_committed() -> None:
    assert decision().committed
    assert not abort().committed


# --------------------------------------------------------------------------- coordinator


def test_the_coordinator_waits_for_a_transaction_whose_begin_it_has_not_read() -> None:
    assert coordinator_decision(Txn("t1", "acct:1"), DEADLINE + 1) is None
    txn = txn_of([vote("eu"), no("us")])  # records of a txn whose begin is not folded
    assert coordinator_decision(txn, DEADLINE + 1) is None


def test_the_coordinator_commits_only_when_every_participant_voted_yes() -> None:
    log = fold_all([begin()])
    txn = log.txns["t1"]
    for region in REGIONS:
        assert coordinator_decision(txn, 0) is None
        fold_all([vote(region)], log)
    assert coordinator_decision(txn, 0) == TxnOutcome(Decision.COMMIT)


def test_yes_votes_of_regions_outside_the_placement_do_not_complete_a_commit() -> None:
    txn = txn_of([begin(placement=("eu", "us")), vote("eu"), vote("ap")])
    assert coordinator_decision(txn, 0) is None


def test_the_coordinator_commits_every_yes_even_when_it_looks_after_the_deadline() -> None:
    txn = txn_of([begin(), *(vote(r) for r in REGIONS)])
    assert coordinator_decision(txn, DEADLINE + 5_000) == TxnOutcome(Decision.COMMIT)


def test_the_coordinator_aborts_on_the_first_no_with_a_reason_naming_the_region() -> None:
    txn = txn_of([begin(), vote("eu"), no("us")])  # ap has not voted: no need to wait
    outcome = coordinator_decision(txn, 0)
    assert outcome == TxnOutcome(
        Decision.ABORT, "region us voted no: key 'acct:1' locked by txn t0"
    )
    assert outcome is not None and not outcome.committed and outcome.conflict is None


def test_a_no_vote_without_a_reason_says_no_reason_was_given() -> None:
    txn = txn_of([begin(), no("ap", refusal=Refusal.COMPLIANCE, reason=None)])
    assert coordinator_decision(txn, 0) == TxnOutcome(
        Decision.ABORT, "region ap voted no: no reason given"
    )


def test_a_no_vote_aborts_with_its_reason_even_after_the_deadline() -> None:
    txn = txn_of([begin(), no("eu", reason="late")])  # us and ap silent too
    outcome = coordinator_decision(txn, DEADLINE + 1)
    assert outcome == TxnOutcome(Decision.ABORT, "region eu voted no: late")


def test_a_version_conflict_refusal_is_reported_as_a_version_conflict() -> None:
    refusal = no("us", refusal=Refusal.VERSION_CONFLICT, reason="expected version 3, found 5",
                 version=5)
    txn = txn_of([begin(expected=3), vote("eu", version=3), refusal])
    assert coordinator_decision(txn, 0) == TxnOutcome(
        Decision.ABORT,
        "region us voted no: expected version 3, found 5",
        VersionConflict("us", 3, 5),
    )


def test_a_version_conflict_refusal_without_an_expected_version_carries_no_conflict() -> None:
    refusal = no("us", refusal=Refusal.VERSION_CONFLICT, reason="odd", version=5)
    outcome = coordinator_decision(txn_of([begin(expected=None), refusal]), 0)
    assert outcome == TxnOutcome(Decision.ABORT, "region us voted no: odd")


def test_a_version_conflict_refusal_without_the_found_version_carries_no_conflict() -> None:
    refusal = no("us", refusal=Refusal.VERSION_CONFLICT, reason="odd", version=None)
    outcome = coordinator_decision(txn_of([begin(expected=3), refusal]), 0)
    assert outcome is not None and outcome.conflict is None
    assert outcome.decision is Decision.ABORT


@pytest.mark.parametrize("refusal", [Refusal.LOCKED, Refusal.COMPLIANCE, Refusal.LATE])
def test_other_refusals_of_a_conditional_write_carry_no_conflict(refusal: Refusal) -> None:
    txn = txn_of([begin(expected=3), no("eu", refusal=refusal, reason="r", version=5)])
    assert coordinator_decision(txn, 0) == TxnOutcome(Decision.ABORT, "region eu voted no: r")


def test_the_coordinator_waits_for_silent_participants_until_the_deadline() -> None:
    txn = txn_of([begin(), vote("eu")])
    assert coordinator_decision(txn, 0) is None
    assert coordinator_decision(txn, DEADLINE) is None  # the deadline itself still counts


def test_the_coordinator_aborts_after_the_deadline_naming_the_silent_regions() -> None:
    txn = txn_of([begin(), vote("us")])
    outcome = coordinator_decision(txn, DEADLINE + 1)
    assert outcome is not None
    assert outcome.decision is Decision.ABORT
    assert outcome.conflict is None
    assert outcome.reason is not None
    assert outcome.reason.startswith("timed out: eu, ap did not vote before the deadline")
    assert "us" not in outcome.reason


def test_the_coordinator_aborts_a_write_without_participants() -> None:
    txn = txn_of([begin(placement=())])
    assert coordinator_decision(txn, 0) == TxnOutcome(
        Decision.ABORT, "the write has no participant region"
    )


def test_the_coordinator_returns_none_once_the_transaction_is_decided() -> None:
    all_yes: list[LogRecord] = [begin(), *(vote(r) for r in REGIONS)]
    assert coordinator_decision(txn_of([*all_yes, decision()]), 0) is None
    assert coordinator_decision(txn_of([*all_yes, abort()]), 0) is None  # aborted all the same
    silent = txn_of([begin(), abort(reason="timed out")])
    assert coordinator_decision(silent, DEADLINE + 1) is None


# --------------------------------------------------------------------------- committed version


def test_the_committed_version_is_one_more_than_the_largest_yes_version() -> None:
    txn = txn_of([begin(), vote("eu", version=4), vote("us", version=6), vote("ap", version=5)])
    assert committed_version(txn) == 7


def test_the_committed_version_ignores_no_votes_and_yes_votes_without_a_version() -> None:
    txn = txn_of([
        begin(), vote("eu", version=2), vote("us", version=None), no("ap", version=40),
    ])
    assert committed_version(txn) == 3


def test_there_is_no_committed_version_without_a_yes_vote_carrying_one() -> None:
    assert committed_version(txn_of([begin()])) is None
    assert committed_version(txn_of([begin(), no("eu", version=3)])) is None
    assert committed_version(txn_of([begin(), vote("eu", version=None)])) is None


def test_the_committed_version_of_a_new_key_is_one() -> None:
    assert committed_version(txn_of([begin(), *(vote(r, version=0) for r in REGIONS)])) == 1


# --------------------------------------------------------------------------- participant


def participant(
    record: BeginRecord,
    region: str = "eu",
    *,
    current_version: int = 0,
    may_hold: bool = True,
    holder: str | None = None,
    now_ms: int = 0,
) -> Vote:
    return participant_vote(
        record, region, current_version=current_version, may_hold=may_hold, holder=holder,
        now_ms=now_ms,
    )


def test_a_participant_votes_yes_with_the_current_version() -> None:
    assert participant(begin(), "us", current_version=4) == Vote("t1", "us", True, version=4)


def test_a_participant_votes_yes_when_the_expected_version_is_the_current_one() -> None:
    assert participant(begin(expected=4), current_version=4) == Vote("t1", "eu", True, version=4)


def test_a_participant_votes_yes_at_the_deadline_itself() -> None:
    assert participant(begin(), now_ms=DEADLINE).yes


def test_a_participant_refuses_a_begin_read_after_its_deadline_as_late() -> None:
    v = participant(begin(), current_version=2, now_ms=DEADLINE + 30)
    assert (v.yes, v.refusal, v.version, v.region, v.txn_id) == (
        False, Refusal.LATE, 2, "eu", "t1"
    )
    assert v.reason is not None and "30 ms after" in v.reason


def test_a_participant_refuses_data_compliance_does_not_allow_there() -> None:
    v = participant(begin(classification=("pii", "health")), may_hold=False)
    assert (v.yes, v.refusal) == (False, Refusal.COMPLIANCE)
    assert v.reason is not None and "region eu" in v.reason and "pii, health" in v.reason


def test_a_region_outside_the_placement_refuses_on_compliance() -> None:
    v = participant(begin(placement=("us", "ap")), "eu")
    assert (v.yes, v.refusal) == (False, Refusal.COMPLIANCE)


def test_a_participant_refuses_a_key_another_transaction_holds() -> None:
    v = participant(begin(), holder="t0", current_version=3)
    assert (v.yes, v.refusal, v.version) == (False, Refusal.LOCKED, 3)
    assert v.reason is not None and "t0" in v.reason and "acct:1" in v.reason


def test_a_participant_refuses_a_conditional_write_on_another_version() -> None:
    v = participant(begin(expected=3), current_version=5)
    assert (v.yes, v.refusal, v.version) == (False, Refusal.VERSION_CONFLICT, 5)
    assert v.reason == "expected version 3, found 5"


def test_a_participant_checks_deadline_then_compliance_then_lock_then_version() -> None:
    b = begin(expected=3)
    late = participant(b, may_hold=False, holder="t0", current_version=5, now_ms=DEADLINE + 1)
    assert late.refusal is Refusal.LATE
    barred = participant(b, may_hold=False, holder="t0", current_version=5)
    assert barred.refusal is Refusal.COMPLIANCE
    assert participant(b, holder="t0", current_version=5).refusal is Refusal.LOCKED


def test_a_participant_vote_refused_for_a_version_conflict_aborts_with_the_conflict() -> None:
    """The vote a participant computes, once logged, gives the coordinator the conflict."""
    b = begin(placement=("eu",), expected=3)
    v = participant(b, current_version=4)
    txn = txn_of([b, VoteRecord("t1", "acct:1", v, "eu", 1)])
    outcome = coordinator_decision(txn, 0)
    assert outcome is not None and outcome.conflict == VersionConflict("eu", 3, 4)


# --------------------------------------------------------------------------- locks


def test_lock_holders_lists_the_keys_of_undecided_transactions_the_region_voted_yes_on() -> None:
    log = fold_all([
        begin("t1", key="a"), vote("eu", "t1"),
        begin("t2", key="b"), vote("eu", "t2"),
        begin("t3", key="c"), no("eu", "t3"),  # refused: holds nothing
        begin("t4", key="d"), vote("us", "t4"),  # another region's lock
        begin("t5", key="e", placement=("eu",)), vote("eu", "t5"),
        decision("t5", key="e"),  # decided: released
        begin("t6", key="f"), vote("eu", "t6"), abort("t6"),
        begin("t7", key="g"),  # not voted yet
    ])
    assert lock_holders(log.txns.values(), "eu") == {"a": "t1", "b": "t2"}
    assert lock_holders(log.txns.values(), "us") == {"d": "t4"}
    assert lock_holders(log.txns.values(), "ap") == {}


def test_a_participant_folding_the_log_refuses_a_second_write_on_a_key_it_holds() -> None:
    log = fold_all([begin("t1"), vote("eu", "t1"), begin("t2")])
    holder = lock_holders(log.txns.values(), "eu").get("acct:1")
    assert holder == "t1"
    v = participant(log.txns["t2"].begin or begin(), holder=holder)
    assert v.refusal is Refusal.LOCKED
    fold_all([abort("t1")], log)  # t1 decided: the key is free again
    assert lock_holders(log.txns.values(), "eu") == {}


def test_a_late_duplicate_vote_read_after_a_restart_at_low_water_holds_no_lock() -> None:
    """A participant votes again (a producer retry, or a restart that re-read the begin):
    the duplicate lands after the decision. A reader that resumes at ``low_water`` (past
    the decided transaction's begin and decision) folds that vote alone: it must not
    take it for a lock on the key, which no decision would ever release."""
    records: list[LogRecord] = [
        begin("t0", key="k0", placement=("eu",)), vote("eu", "t0", key="k0"),
        decision("t0", key="k0"),
        begin("t1", key="k1"), vote("eu", "t0", key="k0"),  # the duplicate, after t1's begin
    ]
    full = fold_all(records)
    assert lock_holders(full.txns.values(), "eu") == {}
    start = full.low_water(lambda t: t.decision is None)
    assert start == 3
    resumed = PartitionLog()
    for offset in range(start, len(records)):
        resumed.fold(offset, records[offset])
    assert lock_holders(resumed.txns.values(), "eu") == {}
    assert participant(begin("t2", key="k0"), holder=lock_holders(
        resumed.txns.values(), "eu").get("k0")).yes


def test_a_late_duplicate_vote_of_a_pruned_transaction_holds_no_lock() -> None:
    """A tool prunes finished transactions; a duplicate yes vote of one of them read later
    must not lock its key for good (no decision for it will be read again)."""
    log = fold_all([
        begin("t0", key="k0", placement=("eu",)), vote("eu", "t0", key="k0"),
        decision("t0", key="k0"), ack("eu", "t0", key="k0"),
    ])
    assert log.prune(lambda t: not t.finished) == 1
    log.fold(log.position, vote("eu", "t0", key="k0"))
    assert lock_holders(log.txns.values(), "eu") == {}


def undecided(txn: Txn) -> bool:
    """What a coordinator needs to read again: the transactions it has to decide."""
    return txn.decision is None


def unfinished(region: str) -> Callable[[Txn], bool]:
    """What participant ``region`` needs to read again: its transactions it has not
    acknowledged (to vote on, apply or drop)."""
    return lambda txn: region in txn.participants and region not in txn.acks


def fold_from(records: Sequence[LogRecord], start: int) -> PartitionLog:
    """A reader restarted at offset ``start`` (record ``i`` sits at offset ``i``)."""
    log = PartitionLog()
    for offset in range(start, len(records)):
        log.fold(offset, records[offset])
    return log


@pytest.mark.parametrize("now", [DEADLINE // 2, DEADLINE + RETENTION_MS])
def test_a_client_retry_read_after_resuming_at_resume_offset_does_not_decide_a_txn_again(
    now: int,
) -> None:
    """t1 aborts (eu's key was locked). Coordinator and participant restart at
    ``resume_offset`` at ``now`` (before t1's deadline, or at the last millisecond of the
    retention after it); then the client, unanswered, sends its begin again, and it lands
    after the decision. Every transaction was decided, so ``low_water`` would be the
    position and the retried begin the first record of t1 they read: taken for a new
    transaction (before the deadline the key is free now, eu votes yes and the
    coordinator commits; after it, eu votes late and the coordinator aborts again) while
    every reader that never stopped knows t1's first decision. ``resume_offset`` reads t1
    again from its begin: the retry is a duplicate, nothing is voted or decided again."""
    records: list[LogRecord] = [
        begin("t1", placement=("eu",)), no("eu", "t1"), abort("t1"),
        begin("t1", placement=("eu",), writer="client-1-retry"),
    ]
    at_restart = fold_all(records[:3])
    assert at_restart.low_water(undecided) == 3  # nothing undecided: the position
    start = at_restart.resume_offset(now, undecided)
    assert start == 0  # t1's begin: decided, but its deadline not RETENTION_MS ago yet
    resumed = fold_from(records, start)
    for txn in resumed.undecided():  # what the restarted participant and coordinator act on
        assert txn.begin is not None
        holder = lock_holders(resumed.txns.values(), "eu").get(txn.key)
        v = participant(txn.begin, "eu", holder=holder, now_ms=now)
        records.append(VoteRecord(txn.txn_id, txn.key, v, "eu", now))
        resumed.fold(len(records) - 1, records[-1])
        outcome = coordinator_decision(txn, now)
        if outcome is not None:
            records.append(DecisionRecord(
                txn.txn_id, txn.key, outcome, now << 16, 1, "coordinator-b", now,
            ))
            resumed.fold(len(records) - 1, records[-1])
    full = fold_all(records)
    assert full.txns["t1"].decision == abort("t1")
    assert resumed.txns["t1"].decision == abort("t1"), (
        "a restarted reader believes a second decision of t1; every other reader the first"
    )
    assert len(records) == 4  # the retry was recognised: nothing voted or decided again


def test_a_participant_restarted_at_resume_offset_before_a_client_retry_holds_no_lock() -> None:
    """t0 commits quickly and eu acknowledges it. Participant eu restarts at
    ``resume_offset`` (before t0's deadline); then the client's retried begin of t0 lands.
    ``low_water`` of eu's unacknowledged transactions would be the position: eu would
    read the retry as a new transaction and vote yes, and, the coordinator (which never
    stopped) taking the begin and the vote for duplicates of a decided transaction, no
    decision would ever release the key: every later strong write of it refused as
    locked. Resumed at t0's begin, eu recognises the retry and does not vote."""
    records: list[LogRecord] = [
        begin("t0", placement=("eu",)), vote("eu", "t0"), decision("t0"), ack("eu", "t0"),
    ]
    now = DEADLINE // 2
    at_restart = fold_all(records)
    assert at_restart.low_water(unfinished("eu")) == 4  # eu is done with t0: the position
    start = at_restart.resume_offset(now, unfinished("eu"))
    assert start == 0
    resumed = fold_from(records, start)
    records.append(begin("t0", placement=("eu",), writer="client-1-retry"))
    changed = resumed.fold(len(records) - 1, records[-1])
    if changed is not None and changed.begin is not None and changed.decision is None:
        holder = lock_holders(resumed.txns.values(), "eu").get(changed.key)
        v = participant(changed.begin, "eu", holder=holder, now_ms=now)  # taken for new
        records.append(VoteRecord("t0", "acct:1", v, "eu", now))
        resumed.fold(len(records) - 1, records[-1])
    coordinator = fold_all(records)
    assert coordinator_decision(coordinator.txns["t0"], DEADLINE + 1) is None  # decided
    assert lock_holders(coordinator.txns.values(), "eu") == {}
    assert lock_holders(resumed.txns.values(), "eu") == {}, "eu holds acct:1 for t0 for good"
    assert changed is None  # the retry was recognised as one


def test_a_duplicate_begin_later_than_the_retention_after_the_deadline_is_out_of_contract() -> None:
    """The documented limit: duplicates are recognised when they arrive within
    RETENTION_MS after their transaction's deadline (edgebus's client never sends a begin
    twice; Kafka's idempotent producer drops its own retries). A reader restarted later
    than that resumes past the decided transaction, and a duplicate begin arriving then is
    a new transaction for it, though every reader that never stopped ignores it."""
    records: list[LogRecord] = [
        begin("t1", placement=("eu",)), no("eu", "t1"), abort("t1"),
        begin("t1", placement=("eu",), writer="client-1-retry"),
    ]
    at_restart = fold_all(records[:3])
    assert at_restart.resume_offset(DEADLINE + RETENTION_MS, undecided) == 0  # still kept
    start = at_restart.resume_offset(DEADLINE + RETENTION_MS + 1, undecided)
    assert start == 3  # t1 forgotten: past its begin and its decision
    resumed = fold_from(records, start)
    assert [t.txn_id for t in resumed.undecided()] == ["t1"]  # out of contract: a new txn
    assert resumed.txns["t1"].begin == records[3]
    full = fold_all(records)
    assert full.undecided() == [] and full.txns["t1"].decision == abort("t1")


def test_a_duplicate_begin_read_in_time_is_not_read_again_alone_after_a_later_restart() -> None:
    """Within the contract: t0's retried begin arrives within RETENTION_MS after t0's
    deadline, and every reader recognises it. But it lies past the begin of t1, whose
    timeout is long (up to 600 s is allowed): t1 is still undecided when the coordinator
    restarts, more than RETENTION_MS after t0's deadline. ``resume_offset`` would start at
    t1's begin, past t0's, and the retried begin would be read again alone (a new t0 to
    decide); it goes back to t0's begin, since t0 has a record past t1's begin."""
    records: list[LogRecord] = [
        begin("t0", placement=("eu",)), no("eu", "t0"), abort("t0"),
        begin("t1", key="acct:2", placement=("eu",), deadline=DEADLINE + 2 * RETENTION_MS),
        begin("t0", placement=("eu",), writer="client-1-retry"),  # in time: a duplicate
    ]
    at_restart = fold_all(records)
    assert [t.txn_id for t in at_restart.undecided()] == ["t1"]
    start = at_restart.resume_offset(DEADLINE + RETENTION_MS + 1, undecided)
    resumed = fold_from(records, start)
    assert [t.txn_id for t in resumed.undecided()] == ["t1"], f"resumed at {start}"


def test_recent_holds_until_the_retention_has_passed_since_the_deadline() -> None:
    assert RETENTION_MS == 120_000
    for txn in (txn_of([begin()]), txn_of([begin(), abort()])):  # decided or not
        assert recent(txn, 0)  # before the deadline
        assert recent(txn, DEADLINE + RETENTION_MS)  # the last millisecond kept
        assert not recent(txn, DEADLINE + RETENTION_MS + 1)
        assert recent(txn, DEADLINE + 50, retention_ms=50)
        assert not recent(txn, DEADLINE + 51, retention_ms=50)
        assert recent(txn, DEADLINE, retention_ms=0)
        assert not recent(txn, DEADLINE + 1, retention_ms=0)
    assert not recent(txn_of([vote("eu"), abort()]), 0)  # its begin was not read
    assert not recent(Txn("t1", "acct:1"), 0)


def test_resume_offset_keeps_needed_and_recent_transactions_else_falls_back_to_position() -> None:
    log = PartitionLog()
    assert log.resume_offset(0, undecided) == 0
    log.fold(2, begin("t1", deadline=1_000))
    log.fold(3, abort("t1"))
    log.fold(5, begin("t2", deadline=5_000))
    log.fold(6, abort("t2"))
    log.fold(8, begin("t3", deadline=2_000))  # undecided, its deadline long passed
    log.fold(9, vote("eu", "t0"))  # its begin was before where this reader started
    assert log.low_water(undecided) == 8
    assert log.resume_offset(0, undecided) == 2  # decided, within the retention: kept
    assert log.resume_offset(1_000 + RETENTION_MS, undecided) == 2
    assert log.resume_offset(1_001 + RETENTION_MS, undecided) == 5  # t1 forgotten
    assert log.resume_offset(5_001 + RETENTION_MS, undecided) == 8  # t3 needed, however old
    assert log.resume_offset(1_500, undecided, retention_ms=0) == 5  # t1 passed, t2 not
    assert log.resume_offset(0, lambda t: False) == 2  # recent though not needed
    assert log.resume_offset(10**9, lambda t: False) == 10  # nothing: the position
    assert log.resume_offset(10**9, lambda t: t.txn_id == "t0") == 10  # no begin read
    assert log.resume_offset(10**9, lambda t: t.txn_id == "t2") == 5
    log.fold(10, abort("t3"))
    assert log.resume_offset(2_000 + RETENTION_MS, undecided) == 5
    assert log.resume_offset(10**9, undecided) == 11


# --------------------------------------------------------------------------- low water, prune


def test_low_water_is_the_smallest_begin_offset_among_the_needed_transactions() -> None:
    log = PartitionLog()
    log.fold(3, begin("t1"))
    log.fold(5, begin("t2"))
    log.fold(8, begin("t3"))
    log.fold(9, abort("t1"))
    assert log.low_water(lambda t: t.decision is None) == 5
    assert log.low_water(lambda t: True) == 3
    assert log.low_water(lambda t: t.txn_id == "t3") == 8


def test_low_water_is_the_position_when_no_transaction_is_needed() -> None:
    log = PartitionLog()
    assert log.low_water(lambda t: True) == 0
    log.fold(3, begin("t1"))
    log.fold(7, abort("t1"))
    assert log.low_water(lambda t: t.decision is None) == 8


def test_low_water_ignores_transactions_whose_begin_was_not_read() -> None:
    log = PartitionLog()
    log.fold(4, vote("eu", "t0"))  # its begin is before where this reader started
    log.fold(6, begin("t1"))
    assert log.low_water(lambda t: t.decision is None) == 6
    assert log.low_water(lambda t: t.txn_id == "t0") == 7


def test_resuming_at_low_water_folds_every_needed_transaction_whole() -> None:
    records: list[LogRecord] = [
        begin("t0"), decision("t0", Decision.ABORT, "x", None),
        begin("t1"), vote("eu", "t1"), begin("t2", key="acct:2"), vote("us", "t1"),
        no("eu", "t2"),
    ]
    full = fold_all(records)
    start = full.low_water(lambda t: t.decision is None)
    assert start == 2
    resumed = PartitionLog()
    for offset in range(start, len(records)):
        resumed.fold(offset, records[offset])
    for txn_id in ("t1", "t2"):
        a, b = full.txns[txn_id], resumed.txns[txn_id]
        assert (a.begin, a.begin_offset, a.votes) == (b.begin, b.begin_offset, b.votes)
        assert coordinator_decision(a, DEADLINE + 1) == coordinator_decision(b, DEADLINE + 1)
    assert "t0" not in resumed.txns
    assert resumed.position == full.position


def test_prune_forgets_the_transactions_keep_rejects_and_counts_them() -> None:
    log = fold_all([
        begin("t1", placement=("eu",)), abort("t1"), ack("eu", "t1"),
        begin("t2"), abort("t2"),
        begin("t3"),
    ])
    assert log.prune(lambda t: not t.finished) == 1
    assert set(log.txns) == {"t2", "t3"}
    assert log.prune(lambda t: True) == 0
    assert log.prune(lambda t: t.decision is None) == 1
    assert set(log.txns) == {"t3"}
    assert log.position == 6  # pruning forgets state, not where the reader is


def test_a_record_of_a_pruned_transaction_starts_it_afresh() -> None:
    log = fold_all([begin("t1"), decision("t1")])
    log.prune(lambda t: False)
    assert log.txns == {}
    assert log.fold(2, abort("t1")) is not None
    assert log.txns["t1"].begin is None
    assert log.undecided() == []


def test_compact_forgets_only_transactions_entirely_before_the_resume_offset() -> None:
    log = PartitionLog()
    log.fold(0, begin("t0", deadline=1_000))
    log.fold(1, abort("t0"))
    log.fold(2, begin("t1", key="acct:2", deadline=10 * RETENTION_MS))  # undecided
    log.fold(3, begin("t0", deadline=1_000, writer="client-1-retry"))  # t0 again, later
    log.fold(4, begin("t2", key="acct:3", deadline=1_000))
    log.fold(5, abort("t2"))
    now = 1_000 + RETENTION_MS + 1  # t0 and t2 no longer recent; t1 still needed
    assert log.resume_offset(now, undecided) == 0  # back to t0's begin: it has a record at 3
    assert log.compact(now, undecided) == 0
    log.fold(6, decision("t1", Decision.ABORT, "timed out", None, key="acct:2"))
    assert log.resume_offset(now, undecided) == 0  # t1 decided but recent: kept, so t0 too
    later = 11 * RETENTION_MS + 1  # nothing needed or recent any more
    assert log.resume_offset(later, undecided) == 7  # the position
    assert log.compact(later, undecided) == 3
    assert log.txns == {}
