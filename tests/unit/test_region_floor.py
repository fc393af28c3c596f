"""``replication.min_regions`` and ``replication.strategy`` as placement applies them
(edgebus.core.region_floor): refused in strict mode with the setting named, reported
short in non-strict mode, single_region one region at most."""

from __future__ import annotations

import pytest

from edgebus.config import EdgeConfig
from edgebus.core.placement import (
    DEFAULT_DATA_CLASSIFICATIONS,
    DEFAULT_REGIONS,
    DEFAULT_ZONES,
    ComplianceRules,
    PlacementRequest,
    place,
)
from edgebus.errors import ComplianceViolation, ConfigError, InfrastructureUnavailable, InvalidInput
from edgebus.sdk import EdgeBus


def rules(strict: bool) -> ComplianceRules:
    return ComplianceRules.from_mappings(
        DEFAULT_ZONES, DEFAULT_DATA_CLASSIFICATIONS, strict_mode=strict
    )


def request(classes: set[str], **kwargs: object) -> PlacementRequest:
    return PlacementRequest(regions=DEFAULT_REGIONS, classes=frozenset(classes), **kwargs)  # type: ignore[arg-type]


def test_strict_min_regions_refuses_pii_that_only_one_gdpr_region_may_hold() -> None:
    with pytest.raises(ComplianceViolation) as refused:
        place(rules(True), request({"pii"}, replication_factor=3, min_regions=2))
    message = str(refused.value)
    assert "replication.min_regions is 2" in message
    assert "only 1 region(s) may hold data classified pii (eu-west-1)" in message
    assert "lower replication.min_regions to 1" in message
    assert refused.value.allowed == ("eu-west-1",)


def test_non_strict_min_regions_places_pii_and_says_it_fell_short() -> None:
    placement = place(rules(False), request({"pii"}, replication_factor=3, min_regions=2))
    assert placement.regions == ("eu-west-1",)
    assert placement.shortfall.startswith("placed in 1 region(s) (eu-west-1), below "
                                          "replication.min_regions 2")


def test_min_regions_met_leaves_no_shortfall() -> None:
    placement = place(rules(True), request({"public"}, replication_factor=3, min_regions=2))
    assert len(placement.regions) == 3 and placement.shortfall == ""


def test_strict_min_regions_with_too_few_healthy_regions_is_retriable() -> None:
    with pytest.raises(InfrastructureUnavailable) as refused:
        place(
            rules(True),
            request({"financial"}, min_regions=2, unhealthy=frozenset({"eu-west-1"})),
        )
    assert "replication.min_regions is 2" in str(refused.value)
    assert refused.value.retriable


def test_strict_min_regions_refuses_a_replication_factor_below_it() -> None:
    with pytest.raises(InvalidInput, match=r"below replication\.min_regions"):
        place(rules(True), request({"public"}, replication_factor=1, min_regions=2))


def test_single_region_places_one_region_by_default() -> None:
    placement = place(rules(True), request({"public"}, single_region=True))
    assert placement.regions == ("us-east-1",)


def test_single_region_refuses_a_replication_factor_above_one() -> None:
    with pytest.raises(InvalidInput, match=r"replication\.strategy is single_region"):
        request({"public"}, replication_factor=3, single_region=True)


def test_config_refuses_single_region_with_a_floor_above_one() -> None:
    with pytest.raises(ConfigError, match="single_region places every write in one region"):
        EdgeConfig.from_mapping(
            {"replication": {"strategy": "single_region", "min_regions": 2}}
        )


def test_strict_refusal_of_a_home_outside_the_zones_says_how_to_fix_it() -> None:
    """The spec's Quick Start: strict, default_classification pii, home us-east-1."""
    pii_default = ComplianceRules.from_mappings(
        DEFAULT_ZONES, DEFAULT_DATA_CLASSIFICATIONS, strict_mode=True, default_classification="pii"
    )
    with pytest.raises(ComplianceViolation) as refused:
        place(pii_default, request(set(), home="us-east-1"))
    message = str(refused.value)
    assert "To fix: write it with location_id one of eu-west-1" in message
    assert "compliance.strict_mode false" in message
    assert "Regions that may hold it: eu-west-1." in message


def spec_bus(strict: bool, **replication: object) -> EdgeBus:
    """The spec's multi-region example config, with strict_mode as given."""
    return EdgeBus(
        {
            "discovery": {"locations": list(DEFAULT_REGIONS)},
            "compliance": {"strict_mode": strict},
            "replication": {"strategy": "multi_region", "min_regions": 2, **replication},
        }
    )


def test_a_bus_refuses_a_pii_write_below_min_regions_in_strict_mode_naming_the_setting() -> None:
    with pytest.raises(ComplianceViolation, match=r"replication\.min_regions is 2"):
        spec_bus(True).prepare_write(
            "user:1", {"email": "ana@example.com"}, replication_factor=3
        )


def test_a_bus_writes_pii_below_min_regions_in_non_strict_mode_and_the_receipt_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    prepared = spec_bus(False).prepare_write(
        "user:1", {"email": "ana@example.com"}, replication_factor=3
    )
    assert prepared.placement.regions == ("eu-west-1",)
    assert "below replication.min_regions 2" in prepared.placement.shortfall
    assert "below replication.min_regions 2" in caplog.text


def test_the_spec_multi_region_example_places_public_data_in_three_regions() -> None:
    prepared = spec_bus(True).prepare_write(
        "global", {"content": "global_update"}, replication_factor=3
    )
    assert len(prepared.placement.regions) == 3 and prepared.placement.shortfall == ""
