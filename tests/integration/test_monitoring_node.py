"""EdgeMonitoringNode in a workflow on real Kafka (issue 7 item 4).

Two of the test's three regions run a region service in this process; the third has
none. A workflow writes three events (EdgeDataNode), then, after them, an
EdgeMonitoringNode with ``latency_p99_ms: 0`` (a write takes more than 0 ms: the alert
is certain) and ``error_rate: 1.0`` (a fraction is never above 1: no alert possible).
Replication lag is reported for the two running regions from their status and as
unknown (not 0) for the one without a service.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgebus.workflow import EdgeInfrastructure, LocalRuntime, WorkflowBuilder
from tests.integration.regions import make_regions


async def test_monitoring_node_alerts_on_latency_and_reports_replication_lag(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    regions = make_regions(kafka_bootstrap, tmp_path)
    config: dict[str, Any] = {**regions.config, "monitoring": {"metrics_enabled": True}}
    builder = WorkflowBuilder()
    for i in range(3):
        builder.add_node("EdgeDataNode", f"w{i}", {
            "action": "write", "key": f"monitored:{i}", "data": {"n": i},
            "location_id": regions.us,
        })
        builder.add_connection(f"w{i}", "result", "written", f"w{i}")
    builder.add_node("Merge", "written", {})
    builder.add_node("EdgeMonitoringNode", "monitor", {
        "alert_thresholds": {"latency_p99_ms": 0, "error_rate": 1.0},
        "status_timeout_ms": 10_000,
    })
    builder.add_connection("written", "result", "monitor", "input")
    runtime = LocalRuntime(config)
    try:
        async with regions.services(config, regions.us, regions.eu):
            results, _ = await runtime.execute_async(builder.build())
    finally:
        await EdgeInfrastructure.close_all()

    assert all(results[f"w{i}"]["result"]["success"] for i in range(3))
    report = results["monitor"]["result"]
    metrics = report["metrics"]
    assert set(metrics) == {"latency", "throughput", "error_rate", "replication_lag"}
    assert metrics["latency"]["count"] == 3
    assert metrics["latency"]["p99_ms"] > 0
    assert metrics["latency"]["by_operation"]["write.eventual"]["count"] == 3
    assert metrics["throughput"]["count"] == 3
    assert metrics["throughput"]["ops_per_s"] > 0
    assert (metrics["error_rate"]["error_rate"], metrics["error_rate"]["errors"]) == (0.0, 0)

    assert [a["metric"] for a in report["alerts"]] == ["latency_p99_ms"], report["alerts"]
    alert = report["alerts"][0]
    assert (alert["threshold"], alert["value"]) == (0, metrics["latency"]["p99_ms"])
    assert report["healthy"] is False
    assert report["window_s"] == 60
    assert report["source"]["metrics_enabled"] is True
    assert report["source"]["operations"] == ["write.eventual"]

    lag = metrics["replication_lag"]
    assert set(lag) == {regions.us, regions.eu, regions.ap}
    for region in (regions.us, regions.eu):
        assert "error" not in lag[region], lag[region]
        assert isinstance(lag[region]["lag_events"], int)
        assert set(lag[region]["by_origin"]) == set(regions.names)
    assert lag[regions.ap]["staleness_ms"] is None
    assert lag[regions.ap]["lag_events"] is None
    assert lag[regions.ap]["error"]
