"""EdgeMonitoringNode: params checked at build (unknown metrics, thresholds and
operations refused with a did-you-mean), and the metrics, alerts and no-data notes of a
run on a fake bus (a BusMetrics with a fake clock, fake region services)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from edgebus.errors import RegionUnavailable
from edgebus.sdk.metrics import BusMetrics
from edgebus.workflow import (
    EdgeMonitoringNode,
    WorkflowBuilder,
    WorkflowValidationError,
    is_edge_node,
    node_class,
)
from edgebus.workflow.nodes import EdgeMonitoringParams


def build(params: dict[str, Any]) -> None:
    builder = WorkflowBuilder()
    builder.add_node("EdgeMonitoringNode", "monitor", params)
    builder.build()


def test_registered_edge_node_and_the_spec_snippet_builds() -> None:
    assert node_class("EdgeMonitoringNode") is EdgeMonitoringNode
    assert is_edge_node("EdgeMonitoringNode")
    build({"metrics": ["latency", "throughput", "error_rate"],
           "alert_thresholds": {"latency_p99_ms": 100, "error_rate": 0.01}})
    p = EdgeMonitoringParams()
    assert p.metrics == ["latency", "throughput", "error_rate", "replication_lag"]
    assert p.window_s == 60 and p.alert_thresholds == {} and p.operations is None


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"metrics": ["latancy"]}, "did you mean 'latency'"),
        ({"metrics": []}, "metrics"),
        ({"alert_thresholds": {"latency_p99": 100}}, "did you mean 'latency_p99_ms'"),
        ({"alert_thresholds": {"error_rate": 2}}, "fraction"),
        ({"alert_thresholds": {"latency_p50_ms": -1}}, ">= 0"),
        ({"alert_thresholds": {"latency_p50_ms": True}}, ">= 0"),
        ({"metrics": ["throughput"], "alert_thresholds": {"latency_p99_ms": 1}},
         "needs metric 'latency'"),
        ({"operations": ["writes"]}, "did you mean 'write"),
        ({"window_s": 0}, "window_s"),
        ({"interval": 3}, "interval"),
    ],
)
def test_bad_params_are_refused_at_build(params: dict[str, Any], expected: str) -> None:
    with pytest.raises(WorkflowValidationError) as e:
        build(params)
    assert "monitor" in str(e.value)
    assert expected in str(e.value)


def test_operations_accept_kinds_prefixes_and_wildcards() -> None:
    build({"operations": ["write", "read.causal", "state", "write.*"]})


class Clock:
    now = 500.0

    def __call__(self) -> float:
        return self.now


class Reader:
    """Region services: us and eu answer, ap does not."""

    async def status(self, region: str) -> dict[str, Any]:
        if region == "ap":
            raise RegionUnavailable("No region service has announced itself for ap")
        return {"region": region, "healthy": True, "lag": 3 if region == "us" else 0,
                "staleness_ms": {"us": 40.0, "eu": 250.0 if region == "eu" else 10.0,
                                 "ap": None}}


def fake_bus(metrics: BusMetrics | None) -> Any:
    return SimpleNamespace(metrics=metrics, regions=("us", "eu", "ap"), client_id="test-bus",
                           discovery=SimpleNamespace(reader=Reader()))


async def run(params: dict[str, Any], metrics: BusMetrics | None) -> dict[str, Any]:
    node = EdgeMonitoringNode("monitor", params)
    await node.initialize(SimpleNamespace(bus=fake_bus(metrics)))
    out = await node.async_run()
    result: dict[str, Any] = out["result"]
    return result


def recorder() -> BusMetrics:
    clock = Clock()
    m = BusMetrics(clock=clock)
    clock.now += 100
    for ms in range(1, 101):
        m.record("write.eventual", float(ms))
    m.record("read.causal", 7.0, ok=False)
    return m


async def test_metrics_from_the_recorder_and_the_region_services() -> None:
    result = await run({"window_s": 10}, recorder())
    m = result["metrics"]
    assert m["latency"]["p50_ms"] == 50.0
    assert m["latency"]["p99_ms"] == 99.0
    assert m["latency"]["max_ms"] == 100.0
    assert m["latency"]["count"] == 100
    assert m["throughput"]["ops_per_s"] == pytest.approx(101 / 10)
    assert m["error_rate"]["error_rate"] == pytest.approx(1 / 101)
    assert m["error_rate"]["by_operation"]["read.causal"]["errors"] == 1
    lag = m["replication_lag"]
    assert lag["us"]["staleness_ms"] == 40.0 and lag["us"]["lag_events"] == 3
    assert lag["us"]["unknown_origins"] == ["ap"]
    assert lag["eu"]["staleness_ms"] == 250.0
    assert lag["ap"]["staleness_ms"] is None and lag["ap"]["lag_events"] is None
    assert "ap" in lag["ap"]["error"]
    assert result["alerts"] == [] and result["healthy"] is True
    assert result["window_s"] == 10
    assert result["source"]["bus"] == "test-bus"
    assert result["source"]["operations"] == ["read.causal", "write.eventual"]


async def test_thresholds_crossed_alert_and_others_do_not() -> None:
    result = await run({
        "window_s": 10,
        "alert_thresholds": {
            "latency_p99_ms": 98,  # 99 > 98
            "latency_p50_ms": 50,  # 50 is not above 50
            "error_rate": 0.001,  # 1/101 > 0.001
            "throughput_min": 1000,  # 10.1 ops/s < 1000
            "replication_lag_ms": 100,  # eu 250 > 100; us 40 not; ap unknown
        },
    }, recorder())
    alerts = {(a["metric"], a.get("region")): a for a in result["alerts"]}
    assert set(alerts) == {("latency_p99_ms", None), ("error_rate", None),
                           ("throughput_min", None), ("replication_lag_ms", "eu")}
    assert alerts[("latency_p99_ms", None)]["value"] == 99.0
    assert alerts[("latency_p99_ms", None)]["threshold"] == 98
    assert "above" in alerts[("latency_p99_ms", None)]["message"]
    assert "below" in alerts[("throughput_min", None)]["message"]
    assert alerts[("replication_lag_ms", "eu")]["value"] == 250.0
    assert result["healthy"] is False
    assert result["no_data"] == [
        {"threshold": "replication_lag_ms", "regions": ["ap"],
         "reason": "staleness unknown (no service answered, or no watermark seen yet)"},
    ]


async def test_no_data_raises_no_alert_but_says_so() -> None:
    empty = BusMetrics(clock=Clock())
    result = await run({"metrics": ["latency", "error_rate"],
                        "alert_thresholds": {"latency_p99_ms": 0, "error_rate": 0}}, empty)
    assert result["alerts"] == [] and result["healthy"] is True
    assert {n["threshold"] for n in result["no_data"]} == {"latency_p99_ms", "error_rate"}
    assert set(result["metrics"]) == {"latency", "error_rate"}
    disabled = await run({"metrics": ["latency"], "alert_thresholds": {"latency_p99_ms": 0}},
                         None)
    assert disabled["alerts"] == []
    assert "metrics_enabled is false" in disabled["no_data"][0]["reason"]
    assert disabled["source"]["metrics_enabled"] is False
    assert disabled["metrics"]["latency"]["p99_ms"] is None


async def test_operations_filter_what_is_measured() -> None:
    result = await run({"metrics": ["error_rate"], "operations": ["write"],
                        "alert_thresholds": {"error_rate": 0}}, recorder())
    assert result["metrics"]["error_rate"]["error_rate"] == 0.0  # the failed read left out
    assert result["alerts"] == []


async def test_no_operations_is_a_throughput_of_zero() -> None:
    result = await run({"metrics": ["throughput"], "alert_thresholds": {"throughput_min": 1}},
                       BusMetrics(clock=Clock()))
    assert [(a["metric"], a["value"]) for a in result["alerts"]] == [("throughput_min", 0.0)]
    assert result["no_data"] == []


class CountingReader(Reader):
    def __init__(self) -> None:
        self.asked: list[str] = []

    async def status(self, region: str) -> dict[str, Any]:
        self.asked.append(region)
        return await super().status(region)


async def lag_twice(interval: float) -> tuple[CountingReader, dict[str, Any]]:
    reader = CountingReader()

    class Bus:  # weakly referenceable, as EdgeBus is
        metrics = None
        regions = ("us", "eu", "ap")
        client_id = "b"
        discovery = SimpleNamespace(reader=reader)
        config = SimpleNamespace(monitoring=SimpleNamespace(health_check_interval=interval))

    bus = Bus()
    node = EdgeMonitoringNode("monitor", {"metrics": ["replication_lag"]})
    await node.initialize(SimpleNamespace(bus=bus))
    await node.async_run()
    second = (await node.async_run())["result"]["metrics"]["replication_lag"]
    return reader, second


async def test_health_check_interval_spaces_the_probes_of_answering_region_services() -> None:
    reader, lag = await lag_twice(interval=3600)
    # us and eu answered the first run and are reused; ap did not and is asked again
    assert sorted(reader.asked) == ["ap", "ap", "eu", "us"]
    assert lag["us"]["probed_ago_s"] >= 0 and lag["us"]["staleness_ms"] == 40.0
    assert lag["ap"]["staleness_ms"] is None


async def test_a_run_after_the_health_check_interval_probes_again() -> None:
    reader, _ = await lag_twice(interval=1e-9)
    assert sorted(reader.asked) == ["ap", "ap", "eu", "eu", "us", "us"]
