"""The placement options of EdgeNode.ensure_compliance, without a node or a broker:
options become a PlacementRequest (names as tuples, config defaults, discovery's
health read when there is one), classification knows the config's classes."""

from __future__ import annotations

import pytest

from edgebus.config import EdgeConfig
from edgebus.errors import InvalidInput
from edgebus.workflow.placement_options import (
    check_placement_options,
    classify_for_placement,
    placement_request,
)

CONFIG = EdgeConfig.from_mapping({"edge_strategy": "balanced"})


class Health:
    def latencies_ms(self) -> dict[str, float]:
        return {"eu-west-1": 12.0}

    def unhealthy(self) -> frozenset[str]:
        return frozenset({"ap-south-1"})


def test_options_become_a_request_with_the_config_defaults() -> None:
    request = placement_request(
        CONFIG,
        frozenset({"pii"}),
        {"location_id": "eu-west-1", "preferred_locations": "us-east-1", "key": 7},
        None,
    )
    assert request.home == "eu-west-1"
    assert request.preferred == ("us-east-1",)
    assert request.excluded == () and request.compliance_zones == ()
    assert request.strategy == "balanced"
    assert request.fallback == "none"
    assert request.key == "7"
    assert request.regions == CONFIG.regions
    assert not request.latencies_ms and request.unhealthy == frozenset()


def test_the_request_carries_what_discovery_knows_of_region_health() -> None:
    request = placement_request(CONFIG, frozenset(), {"exclude_locations": ["us-east-1"]}, Health())
    assert dict(request.latencies_ms) == {"eu-west-1": 12.0}
    assert request.unhealthy == frozenset({"ap-south-1"})
    assert request.excluded == ("us-east-1",)


def test_unknown_options_are_refused_with_a_did_you_mean() -> None:
    check_placement_options("n", {"location_id": "eu-west-1", "min_replicas": 1})
    with pytest.raises(InvalidInput, match=r"node 'n' got unknown option\(s\) 'zones'"):
        check_placement_options("n", {"zones": ["gdpr"]})


def test_classification_uses_the_rules_default_and_the_configs_classes() -> None:
    rules = CONFIG.compliance.rules()
    assert classify_for_placement({"email": "a@b.example"}, None, CONFIG, rules).classes == {"pii"}
    with pytest.raises(InvalidInput):
        classify_for_placement({}, "no-such-class", CONFIG, rules)
