"""Properties of the ownership fold: whatever the records and their order, epochs only
grow, a state has at most one owner at any append time, and a new owner's lease never
overlaps the previous owner's unless the previous one released or handed it off."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from edgebus.core.ownership import (
    Claim,
    Handoff,
    OwnershipRecord,
    OwnerView,
    Release,
    Renew,
    fold_ownership,
)

REGIONS = ("us", "eu", "ap")
region = st.sampled_from(REGIONS)
epoch = st.integers(0, 6)
lease = st.integers(1, 500)
record: st.SearchStrategy[OwnershipRecord] = st.one_of(
    st.builds(Claim, region, epoch, lease),
    st.builds(Renew, region, epoch, lease),
    st.builds(Handoff, region, epoch, region),
    st.builds(Release, region, epoch),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(record, st.integers(0, 300)), max_size=60))
def test_one_owner_at_a_time_and_leases_never_overlap_without_a_hand_over(
    steps: list[tuple[OwnershipRecord, int]],
) -> None:
    view, now = OwnerView(), 0
    previous_epoch = 0
    for rec, gap in steps:
        now += gap
        before = view
        view = fold_ownership(view, rec, now)
        assert view.epoch >= previous_epoch
        previous_epoch = view.epoch
        if view.epoch != before.epoch:  # a new owner was granted
            assert isinstance(rec, Claim) and view.epoch == before.epoch + 1
            assert view.owner == rec.region
            handed_over = before.owner is None or before.handed_to == rec.region
            # the old owner's lease had run out, or it gave the state up first
            assert handed_over or now > before.lease_until_ms
        elif view.owner != before.owner:
            assert isinstance(rec, Release) and view.owner is None
