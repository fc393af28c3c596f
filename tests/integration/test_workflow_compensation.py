"""Saga compensations of a workflow's strong steps on real Kafka (issue 7 item 4).

Two region services run in this process, started side by side (participants of the
strong writes, placed on both of them); ``LocalRuntime.execute_async`` runs on the
test's loop:

* a workflow of two compensable strong writes (one key existed, one did not) and a
  processing node that fails: both keys are restored, which strong reads show (the
  previous value; the absent key absent again);
* a workflow whose failing node first changes the strong step's key as another writer
  would: that compensation is reported as a conflict and the other writer's value
  stays.

Deadlines are generous (a loaded machine); outcomes are asserted, never durations.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest

from edgebus.config import load_config
from edgebus.server.service import RegionService
from edgebus.workflow import (
    EdgeInfrastructure,
    EdgeNode,
    LocalRuntime,
    NodeParams,
    Workflow,
    WorkflowBuilder,
    processing_node,
    register_node,
)
from edgebus.workflow.compensation import CompensatedExecutionError
from tests.integration.regions import make_regions


@processing_node("compensation_it_charge")
def charge(input: Any = None) -> Any:
    raise RuntimeError("card declined")


class InterfereParams(NodeParams):
    key: str
    where: list[str]


@register_node("CompensationItInterfere")
class Interfere(EdgeNode):
    """Another writer commits to ``key`` (a strong write), then this node fails."""

    Params: ClassVar[type[NodeParams]] = InterfereParams

    async def async_run(self, **inputs: Any) -> Mapping[str, Any]:
        assert isinstance(self.params, InterfereParams)
        commit = await self.infrastructure.bus.commit(
            self.params.key, {"balance": 7}, region=self.params.where[0],
            preferred_locations=self.params.where, replication_factor=2,
        )
        assert commit.committed, commit
        raise RuntimeError("card declined after someone else's write")


def strong(key: str, data: Any, where: list[str], *, compensate: bool = True) -> dict[str, Any]:
    return {"action": "write", "consistency": "strong", "key": key, "data": data,
            "location_id": where[0], "preferred_locations": where, "replication_factor": 2,
            "compensate": compensate}


def reads(keys: list[str], where: str) -> Workflow:
    builder = WorkflowBuilder()
    for i, key in enumerate(keys):
        builder.add_node("EdgeDataNode", f"read{i}", {
            "action": "read", "consistency": "strong", "key": key, "location_id": where})
    return builder.build()


async def test_a_failure_restores_the_strong_steps_and_reports_a_conflict(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    regions = make_regions(kafka_bootstrap, tmp_path, partitions=1)
    config = load_config({
        **regions.config,
        "strong": {"timeout_ms": 30_000, "read_wait_ms": 30_000},
        "reads": {"wait_ms": 30_000},
    })
    where = [regions.us, regions.eu]
    tag = uuid.uuid4().hex[:8]
    existing, fresh, contested = f"{tag}:acct:a", f"{tag}:acct:b", f"{tag}:acct:c"

    seed = WorkflowBuilder()
    seed.add_node("EdgeDataNode", "seed_a", strong(existing, {"balance": 100}, where,
                                                   compensate=False))
    seed.add_node("EdgeDataNode", "seed_c", strong(contested, {"balance": 50}, where,
                                                   compensate=False))

    transfer = WorkflowBuilder()
    transfer.add_node("EdgeDataNode", "debit", strong(existing, {"balance": 90}, where))
    transfer.add_node("EdgeDataNode", "credit", strong(fresh, {"balance": 10}, where))
    transfer.add_node("compensation_it_charge", "charge", {})
    transfer.add_connection("credit", "result", "charge", "input")

    raced = WorkflowBuilder()
    raced.add_node("EdgeDataNode", "debit", strong(contested, {"balance": 40}, where))
    raced.add_node("CompensationItInterfere", "charge", {"key": contested, "where": where})
    raced.add_connection("debit", "result", "charge", "input")

    runtime = LocalRuntime(config)
    services = [RegionService(r, config, store=regions.store_url(r)) for r in where]
    try:
        await asyncio.gather(*(s.start() for s in services))  # side by side: faster
        seeded, _ = await runtime.execute_async(seed.build())
        with pytest.raises(CompensatedExecutionError) as undone:
            await runtime.execute_async(transfer.build())
        with pytest.raises(CompensatedExecutionError) as conflict:
            await runtime.execute_async(raced.build())
        after, _ = await runtime.execute_async(
            reads([existing, fresh, contested], regions.eu))
    finally:
        await EdgeInfrastructure.close_all()
        await asyncio.gather(*(s.stop() for s in services), return_exceptions=True)

    assert seeded["seed_a"]["result"]["committed"] is True
    error = undone.value
    assert (error.node_id, isinstance(error.cause, RuntimeError)) == ("charge", True)
    debit = error.results["debit"]["result"]
    assert debit["committed"] is True and set(debit["placement"]) == set(where)
    assert debit["compensation"]["previous"] == {
        "exists": True, "value": {"balance": 100}, "version": seeded["seed_a"]["result"][
            "version"]}
    assert error.results["credit"]["result"]["compensation"]["previous"]["exists"] is False
    assert [(c.node_id, c.key, c.status, c.action) for c in error.compensations] == [
        ("credit", fresh, "compensated", "delete"),
        ("debit", existing, "compensated", "set"),
    ], error.compensations
    assert "2 compensated" in str(error)

    [lost] = conflict.value.compensations
    assert (lost.node_id, lost.key, lost.status) == ("debit", contested, "conflict"), lost
    assert lost.found is not None and lost.found > lost.expected_version
    assert "debit: conflict" in str(conflict.value)

    a, b, c = (after[f"read{i}"]["result"] for i in range(3))
    assert (a["exists"], a["value"]) == (True, {"balance": 100}), a
    assert b["exists"] is False, b
    assert (c["exists"], c["value"]) == (True, {"balance": 7}), c
