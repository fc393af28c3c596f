"""Prometheus ``/metrics`` on real Kafka (issue 7 item 6): a region service's query
endpoint and a coordinator's metrics server, scraped over HTTP and parsed with
prometheus_client's parser.

One region (its own name, so its topics, commit log and coordinator group are new) runs
in this process with a commit participant, and one coordinator with its metrics server;
a strong write commits in that region alone. No durations are asserted.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from edgebus.commit.coordinator import Coordinator
from edgebus.commit.metrics import CoordinatorMetrics
from edgebus.config import load_config
from edgebus.kafka.clusters import resolve_clusters
from edgebus.prometheus import serve_metrics
from edgebus.sdk import EdgeBus
from edgebus.server.service import RegionService
from tests.integration.regions import eventually

WRITES = 3


def _config(bootstrap: str, region: str) -> dict[str, Any]:
    return {
        "discovery": {"locations": [region]},
        "compliance": {"zones": {"gdpr": [region], "hipaa": [region], "sox": [region]}},
        "kafka": {"bootstrap": bootstrap, "partitions": 2, "connect_timeout_s": 20},
        "strong": {"coordinator": "service", "timeout_ms": 15_000,
                   "read_wait_ms": 15_000},
    }


async def _scrape(url: str) -> tuple[str, dict[tuple[str, frozenset[tuple[str, str]]], float]]:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        assert response.status == 200
        content_type = response.headers["Content-Type"]
        assert content_type.startswith("text/plain; version=0.0.4"), content_type
        text = await response.text()
    families: Iterable[Any] = text_string_to_metric_families(text)
    return text, {
        (s.name, frozenset(s.labels.items())): s.value for f in families for s in f.samples
    }


async def test_region_and_coordinator_metrics_over_http(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    region = "m" + uuid.uuid4().hex[:6]
    config = load_config(_config(kafka_bootstrap, region))
    coordinator = Coordinator(config, resolve_clusters(config)[config.strong_log_region])
    runner, metrics_url = await serve_metrics(
        CoordinatorMetrics(coordinator).render, "127.0.0.1:0"
    )
    try:
        async with (
            RegionService(region, config, store=f"sqlite://{tmp_path / 'store.db'}",
                          host_states=False) as service,
            coordinator,
            EdgeBus(config, discovery=False) as bus,
        ):
            for i in range(WRITES):
                await bus.write(f"visits:{i}", i, region=region)
            result = await bus.commit("strong:1", {"n": 1})
            assert result.committed, result
            assert service.url is not None

            only = frozenset({("region", region)})

            async def applied_all() -> bool:
                _, samples = await _scrape(f"{service.url}/metrics")
                return samples[("edgebus_events_applied_total", only)] >= WRITES + 1

            await eventually(applied_all, 15, "the writes counted as applied")
            text, samples = await _scrape(f"{service.url}/metrics")
            names = {name for name, _ in samples}
            assert samples[("edgebus_region_healthy", only)] == 1
            assert ("edgebus_replication_lag_events", only) in samples
            assert ("edgebus_staleness_ms", only | {("origin", region)}) in samples
            assert samples[("edgebus_dead_letters_total", only | {("stage", "materialize")})] \
                == 0
            assert samples[("edgebus_saga_votes_total", only | {("vote", "yes")})] >= 1
            assert samples[
                ("edgebus_saga_participant_outcomes_total", only | {("outcome", "commit")})
            ] >= 1
            assert samples[("edgebus_apply_delay_ms_count", only | {("origin", region)})] >= 1
            assert {"edgebus_causal_buffer_pending", "edgebus_store_keys"} <= names
            assert "# TYPE edgebus_events_applied_total counter" in text

            _, decisions = await _scrape(metrics_url)
            me = frozenset({("coordinator", coordinator.name)})
            assert decisions[("edgebus_saga_decisions_total", me | {("outcome", "commit")})] == 1
            assert decisions[("edgebus_saga_decisions_total", me | {("outcome", "abort")})] == 0
            assert decisions[("edgebus_saga_timeouts_total", me)] == 0
            assert decisions[("edgebus_saga_partitions_assigned", me)] == 2
            assert decisions[
                ("edgebus_strong_write_latency_ms_count", me | {("outcome", "commit")})
            ] == 1
    finally:
        await runner.cleanup()
