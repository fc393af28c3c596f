"""Placement: compliance decides where data may live; preferences only rank it."""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Iterable

import pytest

from edgebus.core.placement import (
    DEFAULT_DATA_CLASSIFICATIONS,
    DEFAULT_REGIONS,
    DEFAULT_ZONES,
    ComplianceRules,
    FrozenMap,
    Placement,
    PlacementRequest,
    place,
)
from edgebus.errors import (
    ComplianceViolation,
    ConfigError,
    InfrastructureUnavailable,
    InvalidInput,
    UnknownRegion,
)

STRICT = ComplianceRules.from_mappings()
LENIENT = ComplianceRules.from_mappings(strict_mode=False)
WIDE = ("us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-south-1")


def request(classes: Iterable[str] = (), **kw: object) -> PlacementRequest:
    kw.setdefault("regions", DEFAULT_REGIONS)
    return PlacementRequest(classes=frozenset(classes), **kw)  # type: ignore[arg-type]


def fall_back(classes: Iterable[str], **kw: object) -> Placement:
    """Strict placement over the WIDE regions with ``fallback="any_available"``."""
    return place(STRICT, request(classes, regions=WIDE, fallback="any_available", **kw))


def by_latency(latencies_ms: dict[str, float], classes: Iterable[str], **kw: object) -> Placement:
    """Strict placement ranked by the ``lowest_latency`` strategy over ``latencies_ms``."""
    return place(
        STRICT, request(classes, strategy="lowest_latency", latencies_ms=latencies_ms, **kw)
    )


# ------------------------------------------------------------------ defaults, rules


def test_defaults_are_the_spec_compliance_config_and_read_only() -> None:
    assert DEFAULT_REGIONS == ("us-east-1", "eu-west-1", "ap-south-1")
    assert dict(DEFAULT_ZONES) == {
        "gdpr": ("eu-west-1", "eu-central-1"),
        "hipaa": ("us-east-1", "us-west-2"),
        "sox": ("us-east-1", "eu-west-1"),
    }
    assert dict(DEFAULT_DATA_CLASSIFICATIONS) == {
        "pii": ("gdpr",),
        "phi": ("hipaa",),
        "financial": ("sox",),
    }
    with pytest.raises(TypeError):
        DEFAULT_ZONES["gdpr"] = ()  # type: ignore[index]


def test_rules_are_frozen_hashable_and_equal_by_content() -> None:
    a = ComplianceRules.from_mappings({"z": ["r1", "r2"]}, {"PII": ["z"]})
    b = ComplianceRules.from_mappings({"z": ("r1", "r2")}, {"pii": ("z",)})
    assert a == b
    assert hash(a) == hash(b)
    assert a.data_classifications["pii"] == ("z",)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.strict_mode = False  # type: ignore[misc]


def test_a_bare_string_instead_of_a_region_list_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"must be a list of names.*\[\"eu-west-1\"\]"):
        ComplianceRules.from_mappings({"gdpr": "eu-west-1"}, {})


def test_zones_required_is_the_sorted_union_including_extra_zones() -> None:
    assert STRICT.zones_required({"pii", "financial"}, ("hipaa",)) == ("gdpr", "hipaa", "sox")
    assert STRICT.zones_required({"public"}) == ()


def test_allowed_regions_keep_config_order_and_need_every_required_zone() -> None:
    assert STRICT.allowed_regions(WIDE, {"pii"}) == ("eu-west-1", "eu-central-1")
    assert STRICT.allowed_regions(WIDE, {"pii", "financial"}) == ("eu-west-1",)
    assert STRICT.allowed_regions(WIDE, {"public"}) == WIDE


def test_an_empty_class_set_uses_the_default_classification() -> None:
    rules = ComplianceRules.from_mappings(default_classification="PII")
    placement = place(rules, request())
    assert placement.classes == {"pii"}
    assert placement.regions == ("eu-west-1",)


# ------------------------------------------------------------------ compliance


def test_pii_goes_to_eu_west_1_only_with_default_rules_and_regions() -> None:
    placement = place(STRICT, request({"pii"}))
    assert placement == Placement(
        home="eu-west-1",
        regions=("eu-west-1",),
        classes=frozenset({"pii"}),
        zones_required=("gdpr",),
        allowed=("eu-west-1",),
        rerouted=False,
    )


def test_phi_goes_to_us_east_1_only() -> None:
    placement = place(STRICT, request({"phi"}))
    assert placement.regions == ("us-east-1",)
    assert placement.zones_required == ("hipaa",)


def test_pii_and_financial_go_to_eu_west_1_the_only_region_in_gdpr_and_sox() -> None:
    placement = place(STRICT, request({"pii", "financial"}))
    assert placement.regions == ("eu-west-1",)
    assert placement.zones_required == ("gdpr", "sox")


def test_public_data_goes_everywhere_in_config_order() -> None:
    placement = place(STRICT, request({"public"}))
    assert placement.regions == DEFAULT_REGIONS
    assert placement.zones_required == ()


def test_strict_refuses_a_non_compliant_home_naming_class_zones_and_regions() -> None:
    with pytest.raises(ComplianceViolation) as caught:
        place(STRICT, request({"pii"}, home="us-east-1"))
    error = caught.value
    message = str(error)
    assert message.startswith("Compliance violation: cannot place data")
    assert "classified pii" in message
    assert "'us-east-1' is not in the zones required" in message
    assert "Zones required: gdpr." in message
    assert "Regions considered: us-east-1, eu-west-1, ap-south-1." in message
    assert error.classification == ("pii",)
    assert error.zones_required == ("gdpr",)
    assert error.regions_considered == DEFAULT_REGIONS


def test_non_strict_reroutes_a_non_compliant_home_to_the_best_compliant_region() -> None:
    placement = place(LENIENT, request({"pii"}, home="us-east-1"))
    assert placement.home == "eu-west-1"
    assert placement.regions == ("eu-west-1",)
    assert placement.rerouted is True


def test_non_strict_still_never_places_outside_the_allowed_regions() -> None:
    with pytest.raises(ComplianceViolation, match="no configured region lies in every"):
        place(LENIENT, request({"pii", "phi"}))


def test_a_compliant_home_is_kept_and_not_rerouted() -> None:
    placement = place(STRICT, request({"financial"}, home="eu-west-1"))
    assert placement.home == "eu-west-1"
    assert placement.regions == ("eu-west-1", "us-east-1")
    assert placement.rerouted is False


def test_a_zone_missing_from_the_rules_has_no_regions() -> None:
    rules = ComplianceRules.from_mappings({"gdpr": ["eu-west-1"]}, {"pii": ["gdpr", "ccpa"]})
    with pytest.raises(ComplianceViolation, match="ccpa have no regions"):
        place(rules, request({"pii"}))


def test_compliance_zones_asked_by_the_caller_narrow_the_allowed_regions() -> None:
    placement = place(STRICT, request({"public"}, compliance_zones=("sox",)))
    assert placement.regions == ("us-east-1", "eu-west-1")
    assert placement.zones_required == ("sox",)


def test_unknown_home_region_is_refused_with_known_regions() -> None:
    with pytest.raises(UnknownRegion, match="eu-west-9"):
        place(STRICT, request({"public"}, home="eu-west-9"))


# ------------------------------------------------------------------ exclude, health


def test_excluded_regions_are_never_used() -> None:
    placement = place(STRICT, request({"public"}, excluded=("us-east-1",)))
    assert placement.regions == ("eu-west-1", "ap-south-1")


def test_excluding_every_compliant_region_is_a_compliance_violation() -> None:
    with pytest.raises(ComplianceViolation, match="exclude_locations removed every compliant"):
        place(STRICT, request({"pii"}, excluded=("eu-west-1",)))


def test_strict_refuses_an_excluded_home() -> None:
    with pytest.raises(ComplianceViolation, match="excluded by exclude_locations"):
        place(STRICT, request({"public"}, home="us-east-1", excluded=("us-east-1",)))


def test_non_strict_reroutes_an_excluded_home() -> None:
    placement = place(LENIENT, request({"public"}, home="us-east-1", excluded=("us-east-1",)))
    assert placement.home == "eu-west-1"
    assert placement.rerouted is True


def test_unknown_names_in_preferred_and_excluded_are_ignored() -> None:
    placement = place(
        STRICT, request({"public"}, preferred=("mars-1", "ap-south-1"), excluded=("moon-2",))
    )
    assert placement.regions == ("ap-south-1", "us-east-1", "eu-west-1")


def test_every_compliant_region_unhealthy_is_infrastructure_unavailable() -> None:
    with pytest.raises(InfrastructureUnavailable, match="No edge infrastructure available") as e:
        place(STRICT, request({"pii"}, unhealthy=frozenset({"eu-west-1"})))
    assert "eu-west-1" in str(e.value)
    assert e.value.retriable is True


def test_unhealthy_regions_are_skipped() -> None:
    placement = place(STRICT, request({"public"}, unhealthy=frozenset({"us-east-1"})))
    assert placement.regions == ("eu-west-1", "ap-south-1")


def test_strict_refuses_an_unhealthy_home_as_retriable_rather_than_rerouting() -> None:
    with pytest.raises(InfrastructureUnavailable, match="'us-east-1' is unhealthy"):
        place(STRICT, request({"public"}, home="us-east-1", unhealthy=frozenset({"us-east-1"})))


def test_non_strict_reroutes_away_from_an_unhealthy_home() -> None:
    placement = place(
        LENIENT, request({"public"}, home="us-east-1", unhealthy=frozenset({"us-east-1"}))
    )
    assert placement.home == "eu-west-1"
    assert placement.rerouted is True


# ------------------------------------------------------------------ fallback, min_replicas


def test_defaults_keep_todays_behaviour() -> None:
    r = request({"public"})
    assert r.fallback == "none"
    assert r.min_replicas is None
    placement = place(STRICT, r)
    assert placement.degraded == ()
    assert placement == Placement(
        home="us-east-1",
        regions=DEFAULT_REGIONS,
        classes=frozenset({"public"}),
        zones_required=(),
        allowed=DEFAULT_REGIONS,
        rerouted=False,
    )
    with pytest.raises(InfrastructureUnavailable, match="strict_mode refuses to reroute"):
        place(STRICT, request({"public"}, home="us-east-1", unhealthy={"us-east-1"}))


def test_fallback_moves_an_unhealthy_home_to_a_healthy_compliant_region_in_strict_mode() -> None:
    placement = fall_back({"pii"}, home="eu-west-1", unhealthy={"eu-west-1"})
    assert placement.home == "eu-central-1"
    assert placement.regions == ("eu-central-1",)
    assert placement.rerouted is True
    assert placement.degraded == ("eu-west-1",)


def test_fallback_keeps_a_healthy_home() -> None:
    placement = fall_back({"pii"}, home="eu-central-1")
    assert placement.home == "eu-central-1"
    assert placement.rerouted is False


def test_fallback_never_leaves_the_compliance_zone() -> None:
    with pytest.raises(InfrastructureUnavailable) as caught:
        fall_back({"pii"}, home="eu-west-1", unhealthy={"eu-west-1", "eu-central-1"})
    message = str(caught.value)
    assert message.startswith("No edge infrastructure available: every compliant region")
    assert "(eu-west-1, eu-central-1)" in message
    assert "no compliant region is healthy (zones required: gdpr)" in message
    assert "never leaves its zones" in message
    assert caught.value.retriable is True


def test_fallback_does_not_override_compliance_for_the_home() -> None:
    with pytest.raises(ComplianceViolation, match="'us-east-1' is not in the zones required"):
        fall_back({"pii"}, home="us-east-1")
    with pytest.raises(ComplianceViolation, match="excluded by exclude_locations"):
        fall_back({"pii"}, home="eu-west-1", excluded=("eu-west-1",))


def test_fallback_ranks_the_replacement_home_by_the_edge_strategy() -> None:
    placement = fall_back(
        {"public"}, home="us-east-1", unhealthy={"us-east-1"}, replication_factor=2,
        strategy="lowest_latency", latencies_ms={"ap-south-1": 4.0, "eu-west-1": 9.0},
    )
    assert placement.regions == ("ap-south-1", "eu-west-1")
    assert placement.rerouted is True


def test_min_replicas_refuses_when_too_few_healthy_compliant_regions_remain() -> None:
    with pytest.raises(InfrastructureUnavailable) as caught:
        place(
            STRICT,
            request({"financial"}, replication_factor=2, min_replicas=2, unhealthy={"us-east-1"}),
        )
    message = str(caught.value)
    assert "only 1 healthy compliant region(s) (eu-west-1) for min_replicas 2" in message
    assert "unhealthy: us-east-1" in message
    assert caught.value.retriable is True


def test_min_replicas_met_places_normally() -> None:
    placement = place(STRICT, request({"financial"}, min_replicas=2))
    assert placement.regions == ("us-east-1", "eu-west-1")


def test_min_replicas_beyond_what_compliance_allows_is_a_compliance_violation() -> None:
    # retrying cannot help: even with every region healthy only eu-west-1 takes PII
    with pytest.raises(ComplianceViolation, match=r"only 1 compliant region.*min_replicas 2"):
        place(STRICT, request({"pii"}, min_replicas=2))


@pytest.mark.parametrize("floor", [0, -1, True, 1.5, "2"])
def test_min_replicas_below_one_or_not_an_integer_is_invalid_input(floor: object) -> None:
    with pytest.raises(InvalidInput, match="min_replicas must be a whole number"):
        request({"public"}, min_replicas=floor)


def test_min_replicas_above_replication_factor_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match=r"min_replicas \(3\) is larger than replication_factor"):
        request({"public"}, replication_factor=2, min_replicas=3)


def test_an_unknown_fallback_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="fallback 'anywhere'"):
        request({"public"}, fallback="anywhere")


def test_degraded_lists_the_unhealthy_regions_the_placement_would_have_used() -> None:
    placement = place(
        STRICT, request({"public"}, regions=WIDE, unhealthy={"us-east-1", "eu-central-1"})
    )
    assert placement.regions == ("us-west-2", "eu-west-1", "ap-south-1")
    assert placement.degraded == ("us-east-1", "eu-central-1")


def test_degraded_leaves_out_regions_beyond_the_replication_factor_and_excluded_ones() -> None:
    down = {"us-east-1", "us-west-2", "ap-south-1"}
    placement = place(
        STRICT,
        request({"public"}, regions=WIDE, replication_factor=2, excluded=("us-west-2",),
                unhealthy=down),
    )
    # without failures: us-east-1, eu-west-1; ap-south-1 was never in it; us-west-2 excluded
    assert placement.regions == ("eu-west-1", "eu-central-1")
    assert placement.degraded == ("us-east-1",)


def test_degraded_names_a_rerouted_unhealthy_home() -> None:
    placement = place(
        LENIENT,
        request({"public"}, home="ap-south-1", unhealthy={"ap-south-1"}, replication_factor=1),
    )
    assert placement.regions == ("us-east-1",)
    assert placement.degraded == ("ap-south-1",)


def test_requests_with_fallback_and_min_replicas_stay_hashable() -> None:
    a = request({"public"}, fallback="any_available", min_replicas=1)
    b = request({"public"}, fallback="any_available", min_replicas=1)
    assert hash(a) == hash(b)
    assert a == b
    assert a != request({"public"})
    assert hash(place(STRICT, a)) == hash(place(STRICT, b))


# ------------------------------------------------------------------ ranking


def test_preferred_regions_come_first_in_preferred_order() -> None:
    placement = place(STRICT, request({"public"}, preferred=("ap-south-1", "eu-west-1")))
    assert placement.regions == ("ap-south-1", "eu-west-1", "us-east-1")


def test_preferred_never_adds_a_non_compliant_region() -> None:
    placement = place(STRICT, request({"pii"}, preferred=("us-east-1",)))
    assert placement.regions == ("eu-west-1",)


def test_home_comes_first_even_ahead_of_preferred() -> None:
    placement = place(STRICT, request({"public"}, home="eu-west-1", preferred=("ap-south-1",)))
    assert placement.regions == ("eu-west-1", "ap-south-1", "us-east-1")


def test_replication_factor_truncates_after_home() -> None:
    placement = place(STRICT, request({"public"}, home="ap-south-1", replication_factor=2))
    assert placement.regions == ("ap-south-1", "us-east-1")
    assert placement.replicas == ("us-east-1",)
    assert placement.allowed == DEFAULT_REGIONS


def test_replication_factor_larger_than_the_allowed_regions_uses_them_all() -> None:
    assert place(STRICT, request({"pii"}, replication_factor=3)).regions == ("eu-west-1",)


@pytest.mark.parametrize("rf", [0, -1, True, 1.5])
def test_replication_factor_below_one_or_not_an_integer_is_invalid_input(rf: object) -> None:
    with pytest.raises(InvalidInput, match="replication_factor must be a whole number"):
        request({"public"}, replication_factor=rf)


def test_unknown_strategy_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="edge_strategy 'fastest'"):
        request({"public"}, strategy="fastest")


def test_lowest_latency_orders_by_measured_latency_missing_last_ties_by_config() -> None:
    latencies = {"ap-south-1": 5.0, "eu-west-1": 20.0, "us-west-2": 5.0}
    placement = by_latency(latencies, {"public"}, regions=WIDE)
    assert placement.regions == (
        "us-west-2",
        "ap-south-1",
        "eu-west-1",
        "us-east-1",
        "eu-central-1",
    )


def test_lowest_latency_keeps_preferred_first() -> None:
    latencies = {"us-east-1": 90.0, "eu-west-1": 10.0}
    placement = by_latency(latencies, {"public"}, preferred=("us-east-1",))
    assert placement.regions == ("us-east-1", "eu-west-1", "ap-south-1")


def test_balanced_rotates_config_order_by_crc32_of_the_key() -> None:
    key = "order-42"
    shift = zlib.crc32(key.encode()) % len(DEFAULT_REGIONS)
    expected = DEFAULT_REGIONS[shift:] + DEFAULT_REGIONS[:shift]
    placement = place(STRICT, request({"public"}, strategy="balanced", key=key))
    assert placement.regions == expected


def test_balanced_is_stable_for_a_key_and_spreads_keys_over_regions() -> None:
    homes = [
        place(STRICT, request({"public"}, strategy="balanced", key=f"k{i}")).home for i in range(60)
    ]
    again = [
        place(STRICT, request({"public"}, strategy="balanced", key=f"k{i}")).home for i in range(60)
    ]
    assert homes == again
    assert set(homes) == set(DEFAULT_REGIONS)


def test_balanced_moves_only_the_keys_of_an_unhealthy_region() -> None:
    keys = [f"k{i}" for i in range(60)]
    before = {k: place(STRICT, request({"public"}, strategy="balanced", key=k)).home for k in keys}
    down = frozenset({"eu-west-1"})
    after = {
        k: place(STRICT, request({"public"}, strategy="balanced", key=k, unhealthy=down)).home
        for k in keys
    }
    assert all(after[k] == before[k] for k in keys if before[k] != "eu-west-1")


def test_compliance_first_uses_config_order() -> None:
    placement = place(STRICT, request({"public"}, regions=WIDE))
    assert placement.regions == WIDE


# ------------------------------------------------------------------ value types


def test_place_is_deterministic_and_requests_are_hashable() -> None:
    a = request({"financial"}, strategy="lowest_latency", latencies_ms={"eu-west-1": 1.0})
    b = request({"financial"}, strategy="lowest_latency", latencies_ms={"eu-west-1": 1.0})
    assert a == b
    assert hash(a) == hash(b)
    assert place(STRICT, a) == place(STRICT, b)
    assert len({place(STRICT, a), place(STRICT, b)}) == 1


def test_request_normalizes_lists_and_case() -> None:
    r = PlacementRequest(
        regions=["us-east-1", "us-east-1", "eu-west-1"],  # type: ignore[arg-type]
        classes={"PII"},  # type: ignore[arg-type]
        preferred=["eu-west-1"],  # type: ignore[arg-type]
    )
    assert r.regions == ("us-east-1", "eu-west-1")
    assert r.classes == frozenset({"pii"})
    assert r.preferred == ("eu-west-1",)
    assert isinstance(r.latencies_ms, FrozenMap)


def test_nan_latency_counts_as_unmeasured() -> None:
    placement = by_latency({"us-east-1": float("nan"), "ap-south-1": 3.0}, {"public"})
    assert placement.regions == ("ap-south-1", "us-east-1", "eu-west-1")


def test_a_single_class_or_zone_given_as_a_string_is_one_name_not_letters() -> None:
    assert STRICT.zones_required("pii", "sox") == ("gdpr", "sox")
    assert STRICT.allowed_regions(WIDE, "pii") == ("eu-west-1", "eu-central-1")
