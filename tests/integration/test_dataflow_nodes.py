"""DataFlow nodes on real Kafka (issue 7 item 5): the spec's UserProfile example.

Three region services run in this process (isolated names ``<tag>-us/-eu/-ap``, the
GDPR zone being ``<tag>-eu``); ``LocalRuntime(config).execute_async`` runs one
workflow of the generated nodes: create a profile with ``region: "eu"`` (placed in the
GDPR region only), read it back, update its preferences, list the model in every
region and in the US region alone, delete it, read again.

The model is the spec's ``UserProfile`` of tests/unit/test_dataflow.py: node type
names are process-wide, so it is declared once. Outcomes are asserted, never durations.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from edgebus.workflow import EdgeInfrastructure, LocalRuntime, WorkflowBuilder
from tests.integration.regions import make_regions
from tests.unit.test_dataflow import UserProfile

MODEL = UserProfile.__name__


async def test_the_spec_user_profile_lives_in_the_gdpr_region_only(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    regions = make_regions(kafka_bootstrap, tmp_path)
    config: dict[str, Any] = {**regions.config, "reads": {"wait_ms": 20_000},
                              "dataflow_integration": True}  # DataFlow nodes need it
    user_id = uuid.uuid4().hex[:8]

    builder = WorkflowBuilder()
    builder.add_node(f"{MODEL}CreateNode", "create_user", {
        "model": MODEL,
        "data": {"user_id": user_id, "region": "eu"},
    })
    builder.add_node(f"{MODEL}ReadNode", "read_user", {})
    builder.add_node(f"{MODEL}UpdateNode", "update_user", {
        "id": user_id, "data": {"preferences": {"theme": "dark"}},
    })
    builder.add_node(f"{MODEL}ListNode", "list_all", {})
    builder.add_node(f"{MODEL}ListNode", "list_us", {"location_id": regions.us})
    builder.add_node(f"{MODEL}DeleteNode", "delete_user", {"user_id": user_id})
    builder.add_node(f"{MODEL}ReadNode", "read_deleted", {"user_id": user_id})
    builder.add_connection("create_user", "result", "read_user", "input")
    builder.add_connection("create_user", "session_token", "read_user", "session_token")
    builder.add_connection("read_user", "session_token", "update_user", "session_token")
    builder.add_connection("update_user", "session_token", "list_all", "session_token")
    builder.add_connection("update_user", "session_token", "list_us", "session_token")
    builder.add_connection("list_all", "session_token", "delete_user", "session_token")
    builder.add_connection("delete_user", "session_token", "read_deleted", "session_token")
    flow = builder.build()
    assert set(flow.edge_node_ids) == set(flow.node_ids)

    runtime = LocalRuntime(config)
    try:
        async with regions.services(config):
            results, _ = await runtime.execute_async(flow)
    finally:
        await EdgeInfrastructure.close_all()

    key = f"{MODEL}:{user_id}"
    created = results["create_user"]["result"]
    assert created["success"] is True
    assert (created["key"], created["placement"]) == (key, [regions.eu])
    assert created["record"] == {"user_id": user_id, "region": "eu", "preferences": {}}
    assert created["session_token"]

    read = results["read_user"]["result"]
    assert (read["success"], read["found"], read["region"]) == (True, True, regions.eu)
    assert read["record"] == created["record"]

    updated = results["update_user"]["result"]
    assert (updated["success"], updated["placement"]) == (True, [regions.eu])
    assert updated["record"]["preferences"] == {"theme": "dark"}

    listed = results["list_all"]["result"]
    assert listed["count"] == 1
    assert listed["records"] == [updated["record"]]
    assert results["list_us"]["result"]["count"] == 0  # never placed in the US region

    assert results["delete_user"]["result"] == {
        "success": True, "found": True, "key": key, "placement": [regions.eu],
        "session_token": results["delete_user"]["session_token"],
    }
    gone = results["read_deleted"]["result"]
    assert (gone["success"], gone["found"], gone["record"]) == (True, False, None)
