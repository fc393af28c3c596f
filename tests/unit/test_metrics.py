"""Prometheus metrics (edgebus.server.metrics, edgebus.commit.metrics): a region
service's and a coordinator's collectors render their live counters, in registries of
their own."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from edgebus.commit.metrics import CoordinatorMetrics
from edgebus.core.commit_log import PartitionLog
from edgebus.core.vector_clock import Position
from edgebus.region.applier import AppliedEvent
from edgebus.server.metrics import ApplyDelay, RegionMetrics


def _status(region: str) -> dict[str, Any]:
    return {
        "region": region, "healthy": True, "broker_reachable": True, "lag": 7,
        "keys": 3, "store_bytes": 4096, "uptime_s": 12.5, "replication_paused": False,
        "staleness_ms": {region: 120.0, "us": 340.0, "ap": None},
        "causal_buffer": {"pending": 2, "bound": 10_000, "full": False},
        "materializer": {"batches": 4, "events": 20, "applied": 11, "duplicates": 1,
                         "dead_letters": 2, "causal_buffer_full": 0},
        "replicators": [{"target": "us", "seen": 30, "copied": 9, "refused": 1,
                         "watermarks": 5}],
        "saga_participant": {"votes_yes": 3, "votes_no": 1, "commits": 2, "aborts": 1,
                             "in_doubt": 0, "processed": {}},
        "state_host": {"states": 4, "owned": ["c/a", "c/b"],
                       "counters": {"ops": 6, "takeovers": 1, "handoffs": 2,
                                    "dead_letters": 3}},
    }


class FakeMaterializer:
    def __init__(self) -> None:
        self.listeners: list[Any] = []

    def on_applied(self, listener: Any) -> None:
        self.listeners.append(listener)


class FakeService:
    def __init__(self, region: str) -> None:
        self.region = region
        self.materializer = FakeMaterializer()

    async def status(self) -> dict[str, Any]:
        return _status(self.region)


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """(sample name, label set) -> value."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_region_collector_renders_the_service_counters() -> None:
    service = FakeService("eu")
    metrics = RegionMetrics(service)
    [listener] = service.materializer.listeners
    listener([AppliedEvent("k", "e1", Position("us", 0, 5), 0)])  # written long ago
    text = (await metrics.render()).decode()
    samples = _samples(text)

    def value(name: str, **labels: str) -> float:
        return samples[(name, frozenset({"region": "eu", **labels}.items()))]

    assert value("edgebus_events_applied_total") == 11
    assert value("edgebus_replication_lag_events") == 7
    assert value("edgebus_region_healthy") == 1
    assert value("edgebus_causal_buffer_pending") == 2
    assert value("edgebus_staleness_ms", origin="us") == 340
    assert value("edgebus_staleness_ms", origin="eu") == 120
    assert ("edgebus_staleness_ms", frozenset({("region", "eu"), ("origin", "ap")})) \
        not in samples  # unknown: no sample
    for stage, count in (("materialize", 2), ("replicate", 1), ("state", 3)):
        assert value("edgebus_dead_letters_total", stage=stage) == count
    assert value("edgebus_replicated_events_total", target="us") == 9
    assert value("edgebus_saga_votes_total", vote="yes") == 3
    assert value("edgebus_saga_votes_total", vote="no") == 1
    assert value("edgebus_saga_participant_outcomes_total", outcome="commit") == 2
    assert value("edgebus_saga_participant_outcomes_total", outcome="abort") == 1
    assert value("edgebus_state_ops_total") == 6
    assert value("edgebus_state_takeovers_total") == 1
    assert value("edgebus_state_handoffs_total") == 2
    assert value("edgebus_states_owned") == 2
    assert value("edgebus_apply_delay_ms_count", origin="us") == 1
    assert value("edgebus_apply_delay_ms_bucket", origin="us", le="+Inf") == 1
    assert value("edgebus_apply_delay_ms_bucket", origin="us", le="60000") == 0
    assert "# TYPE edgebus_events_applied_total counter" in text
    assert "# TYPE edgebus_apply_delay_ms histogram" in text


async def test_a_service_without_participant_state_host_or_kafka() -> None:
    class Bare(FakeService):
        async def status(self) -> dict[str, Any]:
            s = _status(self.region)
            s.update(saga_participant=None, state_host=None, broker_reachable=False,
                     healthy=False, replicators=[])
            return s

    samples = _samples((await RegionMetrics(Bare("us")).render()).decode())
    names = {name for name, _ in samples}
    assert samples[("edgebus_region_healthy", frozenset((("region", "us"),)))] == 0
    assert "edgebus_replication_lag_events" not in names  # unknown, not 0
    assert not any(n.startswith(("edgebus_saga_", "edgebus_state_")) for n in names)
    state = ("edgebus_dead_letters_total", frozenset({("region", "us"), ("stage", "state")}))
    assert state not in samples


async def test_two_services_in_one_process_do_not_clash() -> None:
    eu, us = RegionMetrics(FakeService("eu")), RegionMetrics(FakeService("us"))
    eu_text, us_text = (await eu.render()).decode(), (await us.render()).decode()
    assert 'region="eu"' in eu_text and 'region="us"' not in eu_text
    assert 'region="us"' in us_text and 'region="eu"' not in us_text


def test_apply_delay_buckets_are_cumulative() -> None:
    delay = ApplyDelay((10, 100))
    for ms in (5, 10, 50, 500, -3):
        delay.observe("eu", ms)
    sample_set = delay.family("eu")
    buckets = {s.labels["le"]: s.value for s in sample_set.samples if s.name.endswith("_bucket")}
    assert buckets == {"10": 3, "100": 4, "+Inf": 5}
    [total] = [s.value for s in sample_set.samples if s.name.endswith("_sum")]
    assert total == 5 + 10 + 50 + 500


async def test_coordinator_collector_counts_decisions_by_outcome() -> None:
    coordinator = SimpleNamespace(
        name="c1", outcomes={"commit": 4, "abort": 2}, timeouts=1,
        logs={0: PartitionLog(), 2: PartitionLog()},
    )
    samples = _samples((await CoordinatorMetrics(coordinator).render()).decode())

    def value(name: str, **labels: str) -> float:
        return samples[(name, frozenset({"coordinator": "c1", **labels}.items()))]

    assert value("edgebus_saga_decisions_total", outcome="commit") == 4
    assert value("edgebus_saga_decisions_total", outcome="abort") == 2
    assert value("edgebus_saga_timeouts_total") == 1
    assert value("edgebus_saga_partitions_assigned") == 2
    assert value("edgebus_saga_undecided") == 0


async def test_coordinator_exports_strong_write_latency_by_outcome() -> None:
    latency = ApplyDelay()
    for ms in (3, 40):
        latency.observe("commit", ms)
    latency.observe("abort", 5_000)
    coordinator = SimpleNamespace(
        name="c1", outcomes={"commit": 2, "abort": 1}, timeouts=0, logs={},
        write_latency=latency,
    )
    samples = _samples((await CoordinatorMetrics(coordinator).render()).decode())
    commit = frozenset({("coordinator", "c1"), ("outcome", "commit")})
    abort = frozenset({("coordinator", "c1"), ("outcome", "abort")})
    assert samples[("edgebus_strong_write_latency_ms_count", commit)] == 2
    assert samples[("edgebus_strong_write_latency_ms_sum", commit)] == 43
    assert samples[("edgebus_strong_write_latency_ms_count", abort)] == 1
