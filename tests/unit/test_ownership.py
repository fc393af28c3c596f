"""The ownership fold of state machines: claims, leases, renewals, hand-offs, releases,
fencing epochs and the migration rule."""

from __future__ import annotations

import pytest

from edgebus.core.ownership import (
    Claim,
    Handoff,
    OwnershipRecord,
    OwnerView,
    Release,
    Renew,
    accepts,
    fold_ownership,
    lease_valid_until,
    migration_target,
)
from edgebus.errors import InvalidInput

LEASE = 1_000


def fold(*records: tuple[OwnershipRecord, int]) -> OwnerView:
    view = OwnerView()
    for record, at in records:
        view = fold_ownership(view, record, at)
    return view


def test_the_first_claim_of_epoch_1_owns_the_state_with_a_lease_from_its_append_time() -> None:
    view = fold((Claim("eu", 1, LEASE), 100))
    assert view == OwnerView(1, "eu", 1_100, None)
    assert view.owner_at(1_100) == "eu" and view.owner_at(1_101) is None


def test_a_racing_claim_for_the_same_epoch_loses_and_changes_nothing() -> None:
    view = fold((Claim("eu", 1, LEASE), 100), (Claim("us", 1, LEASE), 101))
    assert view.owner == "eu" and view.epoch == 1


def test_a_claim_while_the_lease_runs_is_refused_and_after_it_expires_is_granted() -> None:
    base = (Claim("eu", 1, LEASE), 100)
    assert fold(base, (Claim("us", 2, LEASE), 1_100)).owner == "eu"  # lease still runs
    taken = fold(base, (Claim("us", 2, LEASE), 1_101))
    assert taken == OwnerView(2, "us", 2_101, None)


def test_stale_and_skipping_epochs_are_ignored() -> None:
    base = (Claim("eu", 1, LEASE), 100)
    assert fold(base, (Claim("us", 1, LEASE), 5_000)).epoch == 1  # stale epoch
    assert fold(base, (Claim("us", 3, LEASE), 5_000)).epoch == 1  # skips epoch 2


def test_only_the_owner_renews_and_a_renew_after_expiry_is_too_late() -> None:
    base = (Claim("eu", 1, LEASE), 100)
    assert fold(base, (Renew("eu", 1, LEASE), 900)).lease_until_ms == 1_900
    assert fold(base, (Renew("us", 1, LEASE), 900)).lease_until_ms == 1_100
    assert fold(base, (Renew("eu", 0, LEASE), 900)).lease_until_ms == 1_100
    late = fold(base, (Renew("eu", 1, LEASE), 1_200))
    assert late.lease_until_ms == 1_100 and late.owner_at(1_200) is None
    # a shorter renewal never shortens the lease
    assert fold(base, (Renew("eu", 1, 10), 200)).lease_until_ms == 1_100


def test_a_hand_off_lets_only_the_named_region_claim_at_once() -> None:
    base = [(Claim("eu", 1, LEASE), 100), (Handoff("eu", 1, "ap"), 200)]
    assert fold(*base, (Claim("us", 2, LEASE), 300)).owner == "eu"
    moved = fold(*base, (Claim("ap", 2, LEASE), 300))
    assert moved == OwnerView(2, "ap", 1_300, None)
    assert fold((Claim("eu", 1, LEASE), 100), (Handoff("us", 1, "ap"), 200)).handed_to is None


def test_a_release_frees_the_state_for_anyone() -> None:
    released = fold((Claim("eu", 1, LEASE), 100), (Release("eu", 1), 200))
    assert released.owner is None and released.owner_at(200) is None
    assert fold((Claim("eu", 1, LEASE), 100), (Release("eu", 1), 200),
                (Claim("us", 2, LEASE), 201)).owner == "us"


def test_events_are_accepted_only_under_the_current_epoch() -> None:
    view = fold((Claim("eu", 1, LEASE), 100), (Claim("us", 2, LEASE), 2_000))
    assert accepts(view, 2)
    assert not accepts(view, 1)  # the fenced old owner
    assert not accepts(view, 3)
    assert not accepts(OwnerView(), 0)


def test_the_owner_serves_until_send_time_plus_lease_minus_margin() -> None:
    assert lease_valid_until(5_000.0, LEASE, 100) == 5_900.0
    with pytest.raises(InvalidInput, match="margin"):
        lease_valid_until(0.0, LEASE, LEASE)


def test_a_claim_without_a_positive_lease_changes_nothing_and_never_fails_a_reader() -> None:
    assert fold_ownership(OwnerView(), Claim("eu", 1, 0), 0) == OwnerView()
    assert fold_ownership(OwnerView(), Claim("eu", 1, -5), 0) == OwnerView()


def test_migration_moves_to_the_region_with_most_accesses_past_the_threshold() -> None:
    accesses = {"eu": 20, "us": 70, "ap": 10}
    assert migration_target(accesses, "eu", threshold=0.6, min_accesses=50) == "us"
    assert migration_target(accesses, "eu", threshold=0.8, min_accesses=50) is None
    assert migration_target(accesses, "eu", threshold=0.6, min_accesses=101) is None
    assert migration_target(accesses, "us", threshold=0.6, min_accesses=50) is None  # owner
    assert migration_target(accesses, "eu", threshold=0.6, min_accesses=50,
                            allowed=frozenset({"eu", "ap"})) is None  # compliance
    assert migration_target({"a": 5, "b": 5}, "c", threshold=0.5, min_accesses=1) == "a"
    with pytest.raises(InvalidInput, match="threshold"):
        migration_target(accesses, "eu", threshold=0, min_accesses=1)
