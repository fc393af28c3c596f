"""`edgebus status` names each region's health in one word, worst first."""

from __future__ import annotations

from edgebus.cli.status import health_of


def test_a_region_is_healthy_only_when_it_answers_healthy_unpaused_and_not_rebuilding() -> None:
    assert health_of({"region": "a", "error": "no service"}) == "down"
    assert health_of({"healthy": False, "replication_paused": True}) == "unhealthy"
    assert health_of({"healthy": True, "rebuilding": {"applied": 1, "target": 9}}) == (
        "rebuilding"
    )
    assert health_of({"healthy": True, "replication_paused": True}) == "paused"
    assert health_of({"healthy": True, "replication_paused": False}) == "healthy"
