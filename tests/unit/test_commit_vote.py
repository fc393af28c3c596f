"""A participant's vote on a strong write: the checks (late, compliance, lock,
``expected_version``) in their order, the refusal each gives, and the outcome types."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from edgebus.core.commit_vote import Decision, Refusal, TxnOutcome, VersionConflict, Vote, vote

REGIONS = ("eu", "us", "ap")
DEADLINE = 10_000


def cast(
    txn: str = "t1",
    region: str = "eu",
    *,
    key: str = "acct:1",
    placement: Sequence[str] = REGIONS,
    classes: Sequence[str] = ("pii",),
    expected: int | None = None,
    deadline: int = DEADLINE,
    current: int = 0,
    may_hold: bool = True,
    holder: str | None = None,
    now_ms: int = 0,
) -> Vote:
    return vote(
        txn, region, key=key, placement=tuple(placement), classes=tuple(classes),
        expected_version=expected, deadline_ms=deadline, current_version=current,
        may_hold=may_hold, holder=holder, now_ms=now_ms,
    )


# --------------------------------------------------------------------------- yes


def test_a_valid_prepare_votes_yes_with_the_current_version() -> None:
    assert cast(current=7) == Vote("t1", "eu", True, version=7)


def test_a_matching_expected_version_votes_yes() -> None:
    assert cast(expected=4, current=4).yes


def test_a_prepare_at_the_deadline_itself_votes_yes() -> None:
    assert cast(now_ms=DEADLINE).yes


# --------------------------------------------------------------------------- refusals


def test_a_prepare_after_its_deadline_is_refused() -> None:
    v = cast(current=2, now_ms=DEADLINE + 30)
    assert v == Vote(
        "t1", "eu", False,
        "the PREPARE came 30 ms after the transaction's deadline", 2, Refusal.LATE,
    )


def test_data_compliance_keeps_out_of_the_region_is_refused() -> None:
    v = cast(may_hold=False)
    assert not v.yes and v.refusal is Refusal.COMPLIANCE
    assert "region eu may not hold data classified pii" in (v.reason or "")
    v = cast(region="mars")
    assert v.refusal is Refusal.COMPLIANCE  # not in the placement


def test_a_compliance_refusal_names_every_class_and_says_what_to_do() -> None:
    assert cast(classes=("pii", "health"), may_hold=False, current=1) == Vote(
        "t1", "eu", False,
        "compliance: region eu may not hold data classified pii, health; "
        "place the write in regions its classification allows",
        1, Refusal.COMPLIANCE,
    )
    assert "classified unclassified;" in (cast(classes=(), may_hold=False).reason or "")


def test_a_participant_refuses_a_key_locked_by_another_transaction() -> None:
    v = cast("t2", holder="t1", current=3)
    assert not v.yes and v.refusal is Refusal.LOCKED and v.version == 3
    assert "key 'acct:1' locked by txn t1" in (v.reason or "")
    assert v.reason == (
        "key 'acct:1' locked by txn t1 (prepared, waiting for its decision); retry the write"
    )
    # another key is free
    assert cast("t3", key="acct:2").yes


def test_an_expected_version_mismatch_votes_no_naming_both_versions() -> None:
    v = cast(expected=3, current=4)
    assert not v.yes and v.refusal is Refusal.VERSION_CONFLICT and v.version == 4
    assert v.reason == "expected version 3, found 4"


def test_the_checks_run_deadline_then_compliance_then_lock_then_version() -> None:
    late = cast(expected=3, current=5, may_hold=False, holder="t0", now_ms=DEADLINE + 1)
    assert late.refusal is Refusal.LATE
    barred = cast(expected=3, current=5, may_hold=False, holder="t0")
    assert barred.refusal is Refusal.COMPLIANCE
    assert cast(expected=3, current=5, holder="t0").refusal is Refusal.LOCKED
    assert cast(expected=3, current=5).refusal is Refusal.VERSION_CONFLICT


# --------------------------------------------------------------------------- properties


@dataclass(frozen=True)
class Ballot:
    """The arguments of one vote."""

    region: str
    placement: tuple[str, ...]
    classes: tuple[str, ...]
    expected: int | None
    current: int
    deadline: int
    now_ms: int
    may_hold: bool
    holder: str | None

    def cast(self) -> Vote:
        return cast(
            region=self.region, placement=self.placement, classes=self.classes,
            expected=self.expected, current=self.current, deadline=self.deadline,
            now_ms=self.now_ms, may_hold=self.may_hold, holder=self.holder,
        )

    def failing_checks(self) -> list[Refusal]:
        """Every check this ballot fails, in the order the vote runs them."""
        checks = [
            (Refusal.LATE, self.now_ms > self.deadline),
            (Refusal.COMPLIANCE, not self.may_hold or self.region not in self.placement),
            (Refusal.LOCKED, self.holder is not None),
            (Refusal.VERSION_CONFLICT,
             self.expected is not None and self.expected != self.current),
        ]
        return [refusal for refusal, fails in checks if fails]


# each check about as likely to pass as to fail
ballots = st.builds(
    Ballot,
    region=st.sampled_from((*REGIONS, "mars")),
    placement=st.lists(st.sampled_from(REGIONS), unique=True, max_size=3).map(tuple),
    classes=st.lists(st.sampled_from(("pii", "health", "financial")), max_size=2).map(tuple),
    expected=st.none() | st.integers(0, 3),
    current=st.integers(0, 3),
    deadline=st.integers(0, 100),
    now_ms=st.integers(0, 200),
    may_hold=st.booleans(),
    holder=st.none() | st.sampled_from(("t0", "t9")),
)


@given(ballots)
def test_a_vote_is_yes_exactly_when_every_check_passes(b: Ballot) -> None:
    v = b.cast()
    assert v.yes is (b.failing_checks() == [])
    assert (v.txn_id, v.region, v.version) == ("t1", b.region, b.current)
    if v.yes:
        assert v.refusal is None and v.reason is None
    else:
        assert v.refusal is not None and v.reason


@given(ballots)
def test_a_no_vote_carries_the_first_check_that_failed(b: Ballot) -> None:
    failed = b.failing_checks()
    assert b.cast().refusal is (failed[0] if failed else None)


# --------------------------------------------------------------------------- outcome types


def test_an_outcome_is_committed_only_for_a_commit() -> None:
    assert TxnOutcome(Decision.COMMIT).committed
    conflict = VersionConflict("eu", expected=3, found=4)
    aborted = TxnOutcome(Decision.ABORT, "region eu voted no: expected version 3, found 4",
                         conflict)
    assert not aborted.committed and aborted.conflict == conflict
