"""A participant's vote on a strong write, and the outcome types of two-phase commit.

A strong write is one transaction (``txn_id``) on one key, committed in every region of
its placement by two-phase commit on the commit log (:mod:`edgebus.core.commit_log`):
the client appends a BEGIN (the PREPARE), each participant region appends its vote, a
coordinator appends COMMIT once every participant voted yes and ABORT on the first no
or once the deadline passed, and participants apply only a logged COMMIT.

The vote is the one step of the protocol that depends on more than the log: on the
key's version in the participant's store, on the region's compliance rules and on the
keys the region holds locked. :func:`vote` is that rule. It checks, in this order, and
the first check that fails is the refusal (:class:`Refusal`) the no vote carries:

1. ``LATE``: the PREPARE came after the transaction's deadline;
2. ``COMPLIANCE``: the data may not be held in the region (the region's compliance
   answer, or the region is not in the write's placement);
3. ``LOCKED``: another undecided transaction holds the key in the region (the region
   voted yes for it);
4. ``VERSION_CONFLICT``: the write is conditional on ``expected_version`` and the key's
   version in the region's store is another one.

Otherwise the vote is yes; once in the log, a yes vote holds the key locked in that
region until the decision is in the log too. Every vote reports the key's version in
the region, so a coordinator can report a conflict (:class:`VersionConflict`) and
compute the version after a commit.

:class:`Decision` and :class:`TxnOutcome` are what a transaction ends with and what the
client is told.

Pure: no I/O, no clock; ``now_ms`` is passed in.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "Decision",
    "Refusal",
    "TxnOutcome",
    "VersionConflict",
    "Vote",
    "vote",
]


class Decision(StrEnum):
    """The outcome of a transaction, once logged never changed."""

    COMMIT = "commit"
    ABORT = "abort"


class Refusal(StrEnum):
    """Why a participant voted no."""

    COMPLIANCE = "compliance"  #: the data may not be held in this region
    LOCKED = "locked"  #: another undecided transaction holds the key here
    VERSION_CONFLICT = "version_conflict"  #: ``expected_version`` is not the key's version
    LATE = "late"  #: the PREPARE came after the transaction's deadline


@dataclass(frozen=True, slots=True)
class VersionConflict:
    """A conditional write lost its race: the key was not at ``expected`` in ``region``."""

    region: str
    expected: int
    found: int


@dataclass(frozen=True, slots=True)
class TxnOutcome:
    """What the client is told: committed, or aborted with the reason.

    ``conflict`` is set when the abort is an ``expected_version`` mismatch: a result
    to report (the write lost a race), not an error.
    """

    decision: Decision
    reason: str | None = None
    conflict: VersionConflict | None = None

    @property
    def committed(self) -> bool:
        """True when the write was applied in every participant region."""
        return self.decision is Decision.COMMIT


@dataclass(frozen=True, slots=True)
class Vote:
    """A participant's vote. ``version``: the key's version there when it voted.
    ``refusal`` says why a no vote is no (``reason`` says it in words)."""

    txn_id: str
    region: str
    yes: bool
    reason: str | None = None
    version: int | None = None
    refusal: Refusal | None = None


def vote(
    txn_id: str,
    region: str,
    *,
    key: str,
    placement: Collection[str],
    classes: Sequence[str],
    expected_version: int | None,
    deadline_ms: int,
    current_version: int,
    may_hold: bool,
    holder: str | None,
    now_ms: int,
) -> Vote:
    """The vote of ``region`` on transaction ``txn_id``, a strong write to ``key``.

    ``placement``: the write's participant regions; ``classes``: the data's
    classification (named in a compliance refusal); ``current_version``: the key's
    version in the region's store (0 when absent); ``may_hold``: whether the region's
    compliance rules allow the data there; ``holder``: the undecided transaction that
    holds the key in the region, if any (the caller leaves out ``txn_id`` itself: any
    holder given refuses the vote). The checks and their order are in the module
    docstring; the vote carries ``current_version`` whether yes or no.
    """

    def no(refusal: Refusal, reason: str) -> Vote:
        return Vote(txn_id, region, False, reason, current_version, refusal)

    if now_ms > deadline_ms:
        return no(
            Refusal.LATE,
            f"the PREPARE came {now_ms - deadline_ms} ms after the transaction's deadline",
        )
    if not may_hold or region not in placement:
        classified = ", ".join(classes) or "unclassified"
        return no(
            Refusal.COMPLIANCE,
            f"compliance: region {region} may not hold data classified {classified}; "
            "place the write in regions its classification allows",
        )
    if holder is not None:
        return no(
            Refusal.LOCKED,
            f"key {key!r} locked by txn {holder} (prepared, waiting for its decision); "
            "retry the write",
        )
    if expected_version is not None and expected_version != current_version:
        return no(
            Refusal.VERSION_CONFLICT,
            f"expected version {expected_version}, found {current_version}",
        )
    return Vote(txn_id, region, True, version=current_version)
