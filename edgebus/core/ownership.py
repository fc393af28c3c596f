"""Ownership of a state machine (a durable object): one owner region, a lease, a fencing
epoch, decided by a Kafka-ordered log. Groundwork for EdgeStateMachine (issue 6).

Each state id's ownership records sit in one partition of an ownership log, in one
order every reader sees, each with the broker's append time (``LogAppendTime``: one
clock for every reader, not the writers'). The fold of that order decides:

* :class:`Claim` ``(region, epoch, lease_ms, host)``: granted iff ``epoch`` is the current epoch + 1
  and the state is free at the claim's append time: never owned, released, handed to
  this region, or the lease expired. A granted claim makes ``region`` the owner, with a
  lease of ``lease_ms`` from the append time. Any other claim changes nothing (a lost
  race, a stale or duplicate claim).
* :class:`Renew` by the owner at the current epoch extends the lease from its append
  time; anyone else's renew changes nothing.
* :class:`Handoff` by the owner names the next owner (migration): only that region may
  claim the next epoch, at once, without waiting for the lease.
* :class:`Release` by the owner frees the state: anyone may claim the next epoch.

Fencing: every state event carries the epoch it was written under; a reader applies
an event only if its epoch is the owner's epoch at that point of the log
(:func:`accepts`), so an old owner that comes back after losing its lease writes
nothing anyone applies. An owner serves only while its lease is valid by its own
clock, measured from when it *sent* the claim or renew (the append time is later, so
its lease in the log lasts at least as long): :func:`lease_valid_until`.

Pure: no I/O, no clock; times are passed in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from edgebus.errors import InvalidInput

__all__ = [
    "MAX_LEASE_MS",
    "MIN_LEASE_MS",
    "Claim",
    "Handoff",
    "LeaseRecord",
    "OwnerView",
    "OwnershipRecord",
    "Release",
    "Renew",
    "accepts",
    "check_lease_duration",
    "claim_lease_ms",
    "fold_ownership",
    "lease_asked",
    "lease_valid_until",
    "migration_target",
]


#: the shortest and the longest lease a call may ask for (``lease_duration_ms``): the
#: range ``state.lease_ms`` itself takes. Shorter than a claim's round trip would leave
#: an owner no time to serve; longer than an hour would keep a state without an owner
#: for that long after its host died.
MIN_LEASE_MS = 500
MAX_LEASE_MS = 3_600_000


def check_lease_duration(lease_ms: object, name: str = "lease_duration_ms") -> int:
    """``lease_ms`` if it is an int (ms) within :data:`MIN_LEASE_MS` ..
    :data:`MAX_LEASE_MS`; else InvalidInput giving the bounds."""
    if (
        isinstance(lease_ms, bool)
        or not isinstance(lease_ms, int)
        or not MIN_LEASE_MS <= lease_ms <= MAX_LEASE_MS
    ):
        raise InvalidInput(
            f"{name} must be a whole number of milliseconds from {MIN_LEASE_MS} to "
            f"{MAX_LEASE_MS} (one hour), got {lease_ms!r}: pass a lease within these bounds "
            "(leave it out for state.lease_ms)"
        )
    return lease_ms


def lease_asked(lease_ms: int) -> int | None:
    """The owner's lease a call asks for, given its request's ``lease_ms`` (the call's
    ``lease_duration_ms``; 0: it names none, so None): held to :data:`MIN_LEASE_MS` ..
    :data:`MAX_LEASE_MS` (callers through the SDK are refused outside them; a record
    from elsewhere is held to them).

    The owner's lease becomes exactly this on every call that names one: a host that
    claims the state for it claims with this lease (:func:`claim_lease_ms`), and the
    owner that runs it renews with this lease from then on, longer or shorter (a
    shorter one takes over when the running lease ends: the log never shortens a
    lease). A call that names none leaves the lease as it is."""
    if lease_ms <= 0:
        return None
    return min(max(lease_ms, MIN_LEASE_MS), MAX_LEASE_MS)


def claim_lease_ms(waiting: Iterable[int], configured_ms: int) -> int:
    """The lease a host claims a state with, given the ``lease_ms`` of the requests
    waiting for it (in log order): the one the oldest asks for (:func:`lease_asked`),
    the call whose wait makes the host claim and that runs first; ``configured_ms``
    (``state.lease_ms``) when it names none or none waits. (A later waiting call that
    names a lease sets it when it runs.)"""
    asked = lease_asked(next(iter(waiting), 0))
    return configured_ms if asked is None else asked


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    """What a :class:`Claim` and a :class:`Renew` hold: the region (and its ``host``)
    asking for a lease of ``lease_ms`` at ``epoch``."""

    region: str
    epoch: int
    lease_ms: int
    host: str = ""


@dataclass(frozen=True, slots=True)
class Claim(LeaseRecord):
    """``region`` asks to own the state at ``epoch`` with a lease of ``lease_ms``."""


@dataclass(frozen=True, slots=True)
class Renew(LeaseRecord):
    """The owner extends its lease by ``lease_ms`` from this record's append time."""


@dataclass(frozen=True, slots=True)
class Handoff:
    """The owner hands the state to ``to_region`` (it may claim ``epoch + 1`` at once)."""

    region: str
    epoch: int
    to_region: str
    host: str = ""


@dataclass(frozen=True, slots=True)
class Release:
    """The owner gives the state up (anyone may claim ``epoch + 1``)."""

    region: str
    epoch: int
    host: str = ""


OwnershipRecord = Claim | Renew | Handoff | Release


@dataclass(frozen=True, slots=True)
class OwnerView:
    """What the log says about one state id so far.

    ``owner`` is ``None`` when never owned or released; ``lease_until_ms`` is in append
    time; ``handed_to`` names the only region that may claim next while the owner's
    lease runs (a hand-off in progress). ``holder`` names the owner's host (process)
    within its region: a region may run several hosts, and only the one whose claim
    was granted serves.
    """

    epoch: int = 0
    owner: str | None = None
    lease_until_ms: int = 0
    handed_to: str | None = None
    holder: str = ""

    def free_for(self, region: str, at_ms: int) -> bool:
        """Whether ``region`` may claim the next epoch at append time ``at_ms``."""
        if self.owner is None or at_ms > self.lease_until_ms:
            return True
        return self.handed_to == region

    def owner_at(self, at_ms: int) -> str | None:
        """The owner whose lease runs at ``at_ms`` (``None``: nobody may act)."""
        if self.owner is None or at_ms > self.lease_until_ms:
            return None
        return self.owner


def fold_ownership(view: OwnerView, record: OwnershipRecord, append_ms: int) -> OwnerView:
    """The view after ``record``, appended at ``append_ms`` (the broker's clock)."""
    if isinstance(record, Claim):
        if record.lease_ms <= 0:
            return view  # malformed: no lease; a reader never fails on a log record
        if record.epoch != view.epoch + 1 or not view.free_for(record.region, append_ms):
            return view  # lost race, stale or duplicate
        return OwnerView(record.epoch, record.region, append_ms + record.lease_ms, None,
                         record.host)
    if (record.region, record.host) != (view.owner, view.holder) or record.epoch != view.epoch:
        return view  # only the current owner renews, hands off or releases
    if isinstance(record, Renew):
        if append_ms > view.lease_until_ms:
            return view  # too late: the lease had run out (another may claim)
        return replace(view, lease_until_ms=max(view.lease_until_ms,
                                                append_ms + record.lease_ms))
    if isinstance(record, Handoff):
        return replace(view, handed_to=record.to_region)
    return replace(view, owner=None, lease_until_ms=0, handed_to=None, holder="")


def accepts(view: OwnerView, event_epoch: int) -> bool:
    """Whether a state event written under ``event_epoch`` is applied at this point of
    the log: only the current epoch's owner writes events anyone applies."""
    return event_epoch == view.epoch and view.epoch > 0


def lease_valid_until(sent_monotonic_ms: float, lease_ms: int, margin_ms: int) -> float:
    """Until when (the owner's monotonic clock) the owner may serve after sending, at
    ``sent_monotonic_ms``, a claim or renew that the log then shows granted (a renew
    appended after the lease ran out is not: check the fold before relying on it). The
    log's lease starts at the append, which is later than the send, so stopping
    ``margin_ms`` (clock-rate drift, pauses) before ``sent + lease`` never overlaps the
    next owner's lease. A hand-off ends the sender's right to serve when it is sent."""
    if margin_ms < 0 or margin_ms >= lease_ms:
        raise InvalidInput(
            f"the lease margin ({margin_ms} ms) must be at least 0 and less than the lease "
            f"({lease_ms} ms)"
        )
    return sent_monotonic_ms + lease_ms - margin_ms


def migration_target(
    accesses: Mapping[str, int],
    owner: str,
    *,
    threshold: float,
    min_accesses: int,
    allowed: frozenset[str] | None = None,
) -> str | None:
    """The region ownership should move to, or ``None``: the region (not the owner,
    and in ``allowed`` when given: compliance) with the largest share of ``accesses``
    over the window, if that share is at least ``threshold`` and the window holds at
    least ``min_accesses`` accesses. Ties go to the first region by name."""
    if not 0 < threshold <= 1:
        raise InvalidInput(f"threshold must be in (0, 1], got {threshold}")
    total = sum(accesses.values())
    if total < max(1, min_accesses):
        return None
    candidates = sorted(
        (r for r in accesses if r != owner and (allowed is None or r in allowed)),
        key=lambda r: (-accesses[r], r),
    )
    if not candidates:
        return None
    best = candidates[0]
    return best if accesses[best] / total >= threshold else None
