"""DataFlow (issue 7 item 5): ``@db.model`` registers five edge nodes per model,
checks their params at build(), finds the primary key, maps a record's ``region`` to
placement options, and refuses records that fail the model naming model and field
(nothing written). Run-time behaviour on a recording bus; Kafka in
tests/integration/test_dataflow_nodes.py."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from edgebus.config import load_config
from edgebus.dataflow import DataFlow
from edgebus.errors import InvalidInput
from edgebus.workflow import (
    EdgeNode,
    LocalRuntime,
    WorkflowBuilder,
    WorkflowExecutionError,
    WorkflowValidationError,
    is_edge_node,
    node_class,
)

# DataFlow nodes run only with DataFlow integration on (the spec's "Enable DataFlow hooks")
CONFIG = {"discovery": {"locations": ["us-east-1", "eu-west-1"]}, "dataflow_integration": True}

db = DataFlow(CONFIG)


@db.model
class UserProfile:
    user_id: str
    region: str
    preferences: dict


@db.model
class Order:
    id: int
    total: float
    note: str = ""


@db.model
class Ticket:
    __primary_key__: ClassVar[str] = "code"
    code: str
    title: str


def problems(type_name: str, params: dict[str, Any]) -> list[str]:
    builder = WorkflowBuilder()
    builder.add_node(type_name, "n", params)
    with pytest.raises(WorkflowValidationError) as info:
        builder.build()
    return list(info.value.problems)


def test_a_model_registers_five_edge_node_types() -> None:
    names = [f"UserProfile{op}Node" for op in ("Create", "Read", "Update", "Delete", "List")]
    for name in names:
        cls = node_class(name)
        assert issubclass(cls, EdgeNode)
        assert is_edge_node(name, cls)
    assert db.info("UserProfile").node_types["Create"] == "UserProfileCreateNode"
    assert UserProfile.__dataflow__.primary_key == "user_id"  # type: ignore[attr-defined]


def test_the_spec_snippet_builds() -> None:
    builder = WorkflowBuilder()
    builder.add_node("UserProfileCreateNode", "create_user", {
        "model": "UserProfile",
        "data": {"user_id": "123", "region": "eu"},
    })
    builder.add_node("UserProfileReadNode", "read", {"user_id": "123"})
    builder.add_node("UserProfileUpdateNode", "update", {"id": "123", "data": {"preferences": {}}})
    builder.add_node("UserProfileDeleteNode", "delete", {"id": "123", "user_id": "123"})
    builder.add_node("UserProfileListNode", "list", {"limit": 10, "location_id": "eu-west-1"})
    assert len(builder.build().node_ids) == 5


@pytest.mark.parametrize(("type_name", "params", "field"), [
    ("UserProfileCreateNode", {"model": "Order"}, "model"),
    ("UserProfileCreateNode", {"data": "not a dict"}, "data"),
    ("UserProfileCreateNode", {"consistency": "bounded_staleness"}, "consistency"),
    ("UserProfileCreateNode", {"limit": 3}, "limit"),
    ("UserProfileReadNode", {"data": {}}, "data"),
    ("UserProfileReadNode", {"consistency": "strong"}, "consistency"),
    ("UserProfileListNode", {"limit": 0}, "limit"),
    ("UserProfileListNode", {"id": "1"}, "id"),
    ("UserProfileDeleteNode", {"id": "1", "user_id": "2"}, "differ"),
    ("OrderReadNode", {"user_id": "1"}, "user_id"),
])
def test_build_refuses_bad_params_naming_node_and_field(
    type_name: str, params: dict[str, Any], field: str
) -> None:
    found = problems(type_name, params)
    assert len(found) == 1
    assert "'n'" in found[0] and type_name in found[0] and field in found[0], found


def test_primary_key_rules() -> None:
    assert db.info(Order).primary_key == "id"
    assert db.info("Ticket").primary_key == "code"
    other = DataFlow()
    with pytest.raises(TypeError, match=r"no primary key.*'<sensor_reading>_id'"):

        @other.model
        class SensorReading:
            device_id: str
            value: float

    with pytest.raises(TypeError, match="__primary_key__ = 'nope'"):

        @other.model
        class Badge:
            __primary_key__: ClassVar[str] = "nope"
            name: str

    with pytest.raises(TypeError, match="no annotated fields"):

        @other.model
        class Empty:
            pass

    @other.model
    class SensorReadingLog:
        sensor_reading_id: str
        sensor_id: str

    assert other.info(SensorReadingLog).primary_key == "sensor_reading_id"


def test_region_aliases_map_to_zones_and_region_names_to_homes() -> None:
    config = load_config(CONFIG)
    assert db.routing("eu", config) == {"compliance_zones": ("gdpr",)}
    assert db.routing("EU", config) == {"compliance_zones": ("gdpr",)}
    assert db.routing("us-east-1", config) == {"region": "us-east-1"}
    assert db.routing(None, config) == {}
    with pytest.raises(InvalidInput) as refused:
        db.routing("mars", config)
    message = str(refused.value)
    assert "'mars'" in message and "'eu' (zone gdpr)" in message and "'eu-west-1'" in message
    custom = DataFlow(region_aliases={"Europe": "gdpr", "us": "hipaa"})
    assert custom.routing("europe", config) == {"compliance_zones": ("gdpr",)}
    assert custom.routing("us", config) == {"compliance_zones": ("hipaa",)}


def test_validation_names_model_and_field() -> None:
    info = db.info("UserProfile")
    assert info.validate({"user_id": "1", "region": "eu"}) == {
        "user_id": "1", "region": "eu", "preferences": {}}
    with pytest.raises(InvalidInput, match=r"UserProfile record refused.*field 'region'"):
        info.validate({"user_id": "1"})
    with pytest.raises(InvalidInput, match=r"UserProfile record refused.*field 'age'"):
        info.validate({"user_id": "1", "region": "eu", "age": 3})
    with pytest.raises(InvalidInput, match=r"Order record refused.*field 'total'"):
        db.info(Order).validate({"id": 1, "total": "lots"})


# ------------------------------------------------------------------ run time, fake bus


class Receipt:
    def __init__(self, placement: tuple[str, ...]) -> None:
        self.placement = placement
        self.session_token = "tok-w"


class Read:
    def __init__(self, key: str, region: str, value: Any, version: int) -> None:
        self.key, self.region, self.value, self.version = key, region, value, version
        self.exists = value is not None
        self.hlc = (version, 0)
        self.session_token = "tok-r"


class MemoryBus:
    """Writes land in a dict (one 'region'); reads answer from it."""

    def __init__(self) -> None:
        self.writes: list[tuple[str, Any, dict[str, Any]]] = []
        self.data: dict[str, tuple[Any, int]] = {}

    async def write(self, key: str, data: Any, **options: Any) -> Receipt:
        self.writes.append((key, data, options))
        version = self.data.get(key, (None, 0))[1] + 1
        self.data[key] = (None if options.get("operation") == "delete" else data, version)
        zones = options.get("compliance_zones")
        return Receipt(("eu-west-1",) if zones else (options.get("region") or "us-east-1",))

    async def read(self, key: str, region: str | None = None, **options: Any) -> Read:
        value, version = self.data.get(key, (None, 0))
        return Read(key, region or "us-east-1", value, version)


class FakeInfrastructure:
    def __init__(self) -> None:
        self.config = load_config(CONFIG)
        self.bus = MemoryBus()


def test_create_routes_read_updates_and_delete_on_a_memory_bus() -> None:
    builder = WorkflowBuilder()
    builder.add_node("UserProfileCreateNode", "create", {
        "model": "UserProfile", "data": {"user_id": "123", "region": "eu"},
    })
    builder.add_node("UserProfileUpdateNode", "update", {"data": {"preferences": {"a": 1}}})
    builder.add_node("UserProfileReadNode", "read", {"location_id": "eu-west-1"})
    builder.add_node("UserProfileDeleteNode", "delete", {})
    builder.add_connection("create", "result", "update", "input")
    builder.add_connection("create", "result", "read", "input")
    builder.add_connection("update", "result", "delete", "input")
    infra = FakeInfrastructure()
    results, _ = LocalRuntime(infrastructure=infra).execute(builder.build())

    created = results["create"]["result"]
    assert created["key"] == "UserProfile:123"
    assert created["record"] == {"user_id": "123", "region": "eu", "preferences": {}}
    assert created["placement"] == ["eu-west-1"]
    updated = results["update"]["result"]
    assert updated["record"]["preferences"] == {"a": 1}
    read = results["read"]["result"]
    assert (read["found"], read["record"]["preferences"]) == (True, {"a": 1})
    assert results["delete"]["result"]["success"] is True
    kinds = [(key, options.get("compliance_zones"), options.get("operation"))
             for key, _, options in infra.bus.writes]
    assert kinds == [("UserProfile:123", ("gdpr",), None)] * 2 + [
        ("UserProfile:123", ("gdpr",), "delete")]


@pytest.mark.parametrize(("data", "field"), [
    ({"user_id": "9", "region": "mars"}, "'mars'"),
    ({"user_id": "9", "region": 5}, "field 'region'"),
    ({"region": "eu"}, "field 'user_id'"),
])
def test_refused_records_name_model_and_field_and_write_nothing(
    data: dict[str, Any], field: str
) -> None:
    builder = WorkflowBuilder()
    builder.add_node("UserProfileCreateNode", "create", {"data": data})
    infra = FakeInfrastructure()
    with pytest.raises(WorkflowExecutionError) as failed:
        LocalRuntime(infrastructure=infra).execute(builder.build())
    assert isinstance(failed.value.cause, InvalidInput)
    assert field in str(failed.value.cause)
    assert infra.bus.writes == []


def test_an_update_may_not_move_a_record_or_change_its_key() -> None:
    infra = FakeInfrastructure()
    infra.bus.data["UserProfile:1"] = ({"user_id": "1", "region": "eu", "preferences": {}}, 1)
    for data, message in (({"region": "us-east-1"}, "cannot move"),
                          ({"user_id": "2"}, "cannot change the primary key")):
        builder = WorkflowBuilder()
        builder.add_node("UserProfileUpdateNode", "u", {"id": "1", "data": data})
        with pytest.raises(WorkflowExecutionError, match=message):
            LocalRuntime(infrastructure=infra).execute(builder.build())
    assert infra.bus.writes == []


class PagedClient:
    """A region query endpoint stand-in: sorted rows, pages of ``page`` rows."""

    def __init__(self, keys: dict[str, bool], page: int) -> None:
        self.rows = [{"key": k, "exists": alive, "value": {"k": k}} for k, alive in
                     sorted(keys.items())]
        self.page = page
        self.paths: list[str] = []

    async def get(self, region: str, path: str) -> dict[str, Any]:
        from urllib.parse import parse_qs, urlsplit

        self.paths.append(path)
        start = parse_qs(urlsplit(path).query)["start"][0]
        rows = [r for r in self.rows if r["key"] >= start]
        nxt = rows[self.page]["key"] if len(rows) > self.page else None
        return {"region": region, "rows": rows[: self.page], "next": nxt}


async def test_a_listing_pages_through_the_prefix_and_stops_after_it() -> None:
    from edgebus.workflow.dataflow import _scan

    client = PagedClient({"Order:1": True, "Order:2": False, "Order:3": True,
                          "Order:4": True, "OrderX:1": True, "Alpha:1": True}, page=2)
    rows = await _scan(client, "r", "Order:", limit=100)
    assert [r["key"] for r in rows] == ["Order:1", "Order:2", "Order:3", "Order:4"]
    assert client.paths[0] == "/v1/keys?start=Order%3A&limit=500"
    client.paths.clear()
    rows = await _scan(client, "r", "Order:", limit=1)
    assert [r["key"] for r in rows] == ["Order:1", "Order:2"]  # one page: a live one found
    assert len(client.paths) == 1


def test_reading_a_missing_record_finds_nothing_and_deleting_it_writes_nothing() -> None:
    builder = WorkflowBuilder()
    builder.add_node("OrderReadNode", "read", {"id": 7})
    builder.add_node("OrderDeleteNode", "delete", {"id": 7})
    infra = FakeInfrastructure()
    results, _ = LocalRuntime(infrastructure=infra).execute(builder.build())
    assert results["read"]["result"] == {
        "success": True, "found": False, "key": "Order:7", "record": None, "version": 0,
        "region": None}
    assert results["delete"]["result"] == {"success": False, "found": False, "key": "Order:7"}
    assert infra.bus.writes == []
