"""Read routing: where a read may fall back, and whose "not found" is its answer (pure
rule, then the read path against scripted regions; no broker)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgebus.config import load_config
from edgebus.core.freshness import ReadRequest
from edgebus.errors import InvalidInput, RegionUnavailable, SessionNotCovered
from edgebus.sdk.options import ReadOptions
from edgebus.sdk.reads import Reader, ReadRoute, route_read
from edgebus.sdk.sessions import PLACEMENTS_MAX, BusSession

US, EU, AP = "us-east-1", "eu-west-1", "ap-south-1"
REGIONS = (US, EU, AP)

NOT_FOUND: Mapping[str, Any] = {"exists": False, "version": 0}
FOUND: Mapping[str, Any] = {"exists": True, "version": 1}
DELETED: Mapping[str, Any] = {"exists": False, "version": 2}


# ------------------------------------------------------------------ the rule


def test_a_region_asked_that_is_down_falls_back_only_within_the_known_placement() -> None:
    route = route_read(EU, [US, AP], [EU], placement=[EU])
    assert route.order == (EU,)
    assert route.placement == frozenset({EU})


def test_with_the_placement_known_every_region_of_it_answers_for_the_key() -> None:
    route = route_read(None, [AP, US], [US, AP], placement=[US, AP])
    assert route.order == (AP, US)
    assert route.settles(US, NOT_FOUND, ())
    assert route.settles(AP, NOT_FOUND, ())


def test_a_region_asked_outside_the_placement_still_answers_for_itself() -> None:
    route = route_read(US, [EU], [EU], placement=[EU])
    assert route.order == (US, EU)
    assert route.settles(US, NOT_FOUND, ())  # "as us-east-1 holds it"
    assert route.settles(EU, NOT_FOUND, ())


def test_with_the_placement_unknown_only_the_region_asked_may_say_not_found() -> None:
    route = route_read(EU, [US, AP], list(REGIONS), placement=None)
    assert route.order == (EU, US, AP)
    assert route.settles(EU, NOT_FOUND, ())
    assert not route.settles(US, NOT_FOUND, ())
    assert not route.settles(AP, NOT_FOUND, [US])  # EU never said so
    assert route.settles(US, FOUND, ())  # a value is a value, wherever it is
    assert route.settles(US, DELETED, ())  # so is a tombstone: us-east-1 holds the key


def test_not_found_from_every_region_that_may_hold_the_key_is_the_answer() -> None:
    route = route_read(None, [US, AP], list(REGIONS), placement=None)
    assert not route.settles(AP, NOT_FOUND, [US])
    assert route.settles(EU, NOT_FOUND, [US, AP])


def test_with_no_region_asked_and_no_placement_a_miss_asks_every_region() -> None:
    healthy = route_read(None, [AP, US, EU], list(REGIONS), placement=None)
    assert healthy.order == (AP, US, EU) and healthy.conclusive == frozenset()
    # the bus's first choice may be a region the key was never placed in
    assert not healthy.settles(AP, NOT_FOUND, ())
    assert not healthy.settles(US, NOT_FOUND, (AP,))
    assert healthy.settles(EU, NOT_FOUND, (AP, US))  # every region said so
    # discovery left eu-west-1 out: it is tried last, and may be the one holding the key
    degraded = route_read(None, [US, AP], list(REGIONS), placement=None)
    assert degraded.order == (US, AP, EU)
    assert not degraded.settles(AP, NOT_FOUND, (US,))


regions = st.sampled_from(REGIONS)
subsets = st.lists(regions, unique=True)


@given(
    asked=st.one_of(st.none(), regions),
    ranked=subsets,
    placement=st.one_of(st.none(), subsets.filter(bool)),
    absent=subsets,
    target=regions,
)
def test_a_not_found_settles_only_where_the_answer_can_be_true(
    asked: str | None,
    ranked: list[str],
    placement: list[str] | None,
    absent: list[str],
    target: str,
) -> None:
    candidates = [r for r in REGIONS if placement is None or r in placement]
    ranked = [r for r in ranked if r in candidates]
    route = route_read(asked, ranked, candidates, placement)
    # every candidate is asked, and nothing outside the placement but the region asked
    assert set(candidates) <= set(route.order)
    assert set(route.order) <= set(candidates) | {asked}
    assert len(route.order) == len(set(route.order))
    if asked is not None:
        assert route.order[0] == asked
    settled = route.settles(target, NOT_FOUND, absent)
    may = (
        target == asked
        or (placement is not None and target in placement)
        or set(candidates) <= {target, *absent}
    )
    assert settled == may


# ------------------------------------------------------------------ the session's memory


def _session() -> BusSession:
    return BusSession(load_config({}), {})


def test_the_session_remembers_the_newest_placement_of_a_key() -> None:
    session = _session()
    assert session.placement_of("user:42") is None
    session.remember_placement("user:42", (EU,), hlc=10)
    session.remember_placement("user:42", REGIONS, hlc=5)  # older: ignored
    assert session.placement_of("user:42") == (EU,)
    session.remember_placement("user:42", (US, AP), hlc=11)
    assert session.placement_of("user:42") == (US, AP)


def test_the_placement_memory_is_bounded_and_forgets_the_least_recently_written() -> None:
    session = _session()
    for i in range(PLACEMENTS_MAX):
        session.remember_placement(f"k{i}", (US,), hlc=i)
    session.remember_placement("k0", (EU,), hlc=PLACEMENTS_MAX)  # written again: kept
    session.remember_placement("new", (AP,), hlc=PLACEMENTS_MAX + 1)
    assert session.placement_of("k0") == (EU,)
    assert session.placement_of("k1") is None
    assert session.placement_of("new") == (AP,)


# ------------------------------------------------------------------ the read path


class ScriptedRegions:
    """A region client whose regions answer as scripted: a row, or down."""

    def __init__(self, rows: Mapping[str, Mapping[str, Any] | None]) -> None:
        self.rows = rows
        self.asked: list[str] = []

    async def read_at(self, region: str, request: ReadRequest) -> dict[str, Any]:
        self.asked.append(region)
        row = self.rows[region]
        if row is None:
            raise RegionUnavailable(
                f"The {region} region service does not answer. Start it again."
            )
        return {"key": request.key, "region": region, "value": None, "origin": None,
                "hlc": None, "event_id": None, "served": True, **row}

    async def close(self) -> None:
        """Nothing to close."""


def _reader(rows: Mapping[str, Mapping[str, Any] | None]) -> tuple[Reader, ScriptedRegions]:
    config = load_config({})
    reader = Reader(config, BusSession(config, {}))
    client = ScriptedRegions(rows)
    reader._client = client  # type: ignore[assignment]
    return reader, client


async def test_a_down_region_asked_is_never_another_regions_not_found() -> None:
    reader, client = _reader({EU: None, US: NOT_FOUND, AP: NOT_FOUND})
    with pytest.raises(RegionUnavailable) as caught:
        await reader.read("user:42", EU, ReadOptions())
    message = str(caught.value)
    assert "edgebus region run --region eu-west-1" in message
    assert f"tried {EU}, {US}, {AP}" in message
    assert client.asked == [EU, US, AP]


async def test_with_the_placement_known_the_read_asks_no_region_outside_it() -> None:
    reader, client = _reader({EU: None, US: NOT_FOUND, AP: NOT_FOUND})
    reader.session.remember_placement("user:42", (EU,), hlc=1)
    for region in (EU, None):
        with pytest.raises(RegionUnavailable, match=r"placement \(eu-west-1\)"):
            await reader.read("user:42", region, ReadOptions())
    assert client.asked == [EU, EU]


async def test_a_replicated_value_is_still_read_from_another_region() -> None:
    reader, _ = _reader({EU: None, US: FOUND, AP: FOUND})
    got = await reader.read("news", EU, ReadOptions())
    assert (got.exists, got.region, got.routed_from) == (True, US, EU)


async def test_a_region_of_the_known_placement_may_say_not_found_for_a_down_one() -> None:
    reader, _ = _reader({EU: None, US: NOT_FOUND, AP: FOUND})
    reader.session.remember_placement("gone", REGIONS, hlc=1)
    got = await reader.read("gone", EU, ReadOptions())  # us-east-1 holds it: its answer
    assert (got.exists, got.region, got.routed_from) == (False, US, EU)


async def test_the_region_asked_answers_without_asking_any_other() -> None:
    reader, client = _reader({EU: NOT_FOUND, US: FOUND, AP: FOUND})
    got = await reader.read("user:42", EU, ReadOptions())
    assert (got.exists, got.region, got.routed_from) == (False, EU, None)
    got = await reader.read("user:42", None, ReadOptions())
    assert got.region == US and client.asked == [EU, US]


async def test_raise_mode_raises_the_first_regions_unavailability() -> None:
    reader, client = _reader({EU: None, US: FOUND, AP: FOUND})
    with pytest.raises(RegionUnavailable, match="Start it again"):
        await reader.read("k", EU, ReadOptions(fallback="raise"))
    assert client.asked == [EU]


async def test_a_region_not_fresh_then_only_not_found_elsewhere_is_not_an_answer() -> None:
    stale = {"served": False, "reason": "session_not_covered", "missing": {f"{EU}:0": 3}}
    reader, _ = _reader({EU: stale, US: NOT_FOUND, AP: NOT_FOUND})
    with pytest.raises(SessionNotCovered, match="does not count"):
        await reader.read("user:42", EU, ReadOptions(consistency="causal", wait_ms=0))


def test_excluding_every_region_of_the_known_placement_is_refused() -> None:
    reader, _ = _reader({})
    reader.session.remember_placement("user:42", (EU,), hlc=1)
    with pytest.raises(InvalidInput, match="placement"):
        reader.route("user:42", None, (EU,))
    assert reader.route("user:42", US, (EU,)) == ReadRoute((US,), frozenset({US, EU}),
                                                          frozenset(), frozenset({EU}))


# ------------------------------------------------------------------ strategy, preferred


async def test_a_read_asks_its_preferred_locations_first() -> None:
    reader, client = _reader({US: FOUND, EU: FOUND, AP: FOUND})
    got = await reader.read("news", None, ReadOptions.of({"preferred_locations": [AP]}))
    assert got.region == AP and client.asked == [AP]


async def test_a_read_skips_its_excluded_locations_even_when_preferred() -> None:
    reader, client = _reader({US: FOUND, EU: FOUND, AP: FOUND})
    options = ReadOptions.of({"preferred_locations": [AP], "exclude_locations": [AP]})
    got = await reader.read("news", None, options)
    assert got.region == US and client.asked == [US]


async def test_a_region_asked_goes_before_the_preferred_ones() -> None:
    reader, client = _reader({US: FOUND, EU: FOUND, AP: FOUND})
    got = await reader.read("news", EU, ReadOptions.of({"preferred_locations": [AP]}))
    assert got.region == EU and client.asked == [EU]


def test_a_balanced_read_spreads_keys_over_the_regions_as_placement_does() -> None:
    reader, _ = _reader({})
    options = ReadOptions.of({"edge_strategy": "balanced"})
    firsts = {reader.route(f"k{i}", None, (), options).order[0] for i in range(60)}
    assert firsts == set(REGIONS)
    default = {reader.route(f"k{i}", None).order[0] for i in range(60)}
    assert default == {US}  # compliance_first: the configured order


def test_an_unknown_read_strategy_is_refused_naming_the_strategies() -> None:
    with pytest.raises(InvalidInput, match="lowest_latency, balanced, compliance_first"):
        ReadOptions.of({"edge_strategy": "nearest"})
