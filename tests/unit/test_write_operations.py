"""The spec's conflict_resolution parameter picks a write's operation (no Kafka)."""

from __future__ import annotations

import pytest

from edgebus.core.envelope import Operation
from edgebus.errors import InvalidInput
from edgebus.sdk import EdgeBus


@pytest.fixture
def bus() -> EdgeBus:
    return EdgeBus()


@pytest.mark.parametrize(
    ("mode", "data", "operation"),
    [
        ("last_write_wins", {"a": 1}, Operation.SET),
        ("counter", -3, Operation.INCREMENT),
        ("append", "item", Operation.APPEND),
        ("merge", {"field": 1}, Operation.MERGE),
    ],
)
def test_conflict_resolution_mode_selects_the_operation(
    bus: EdgeBus, mode: str, data: object, operation: Operation
) -> None:
    assert bus.prepare_write("k", data, conflict_resolution=mode).operation is operation


def test_a_delete_stays_a_delete_under_any_conflict_resolution(bus: EdgeBus) -> None:
    prepared = bus.prepare_write("k", None, operation="delete", conflict_resolution="counter")
    assert prepared.operation is Operation.DELETE


def test_unknown_conflict_resolution_is_refused_naming_the_modes(bus: EdgeBus) -> None:
    with pytest.raises(InvalidInput, match="last_write_wins, counter, append, merge"):
        bus.prepare_write("k", 1, conflict_resolution="crdt")


def test_operation_contradicting_conflict_resolution_is_refused(bus: EdgeBus) -> None:
    with pytest.raises(InvalidInput, match="contradicts"):
        bus.prepare_write("k", 1, operation="append", conflict_resolution="counter")


def test_merge_of_a_non_object_is_refused(bus: EdgeBus) -> None:
    with pytest.raises(InvalidInput, match="must be an object"):
        bus.prepare_write("k", [1, 2], operation="merge")


def test_counter_of_a_non_number_is_refused(bus: EdgeBus) -> None:
    with pytest.raises(InvalidInput, match="must be a number"):
        bus.prepare_write("k", "3", conflict_resolution="counter")
