"""Saga compensations of a workflow's strong steps (issue 7 item 4), on a fake bus.

The fake bus keeps one versioned value per key and implements the strong read and the
compare-and-set commit the way the saga participants do: a commit with
``expected_version`` conflicts when the key is at another version.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest

from edgebus.config import EdgeConfig
from edgebus.workflow import (
    EdgeNode,
    LocalRuntime,
    NodeParams,
    WorkflowBuilder,
    WorkflowExecutionError,
    register_node,
)
from edgebus.workflow.compensation import (
    CompensatedExecutionError,
    Compensation,
    UndoWrite,
    outcome_of,
    step_record,
    summarize,
    undo_of,
)


class Commit(SimpleNamespace):
    def to_dict(self) -> dict[str, Any]:
        out = dict(vars(self))
        conflict = getattr(self, "conflict", None)
        out["conflict"] = None if conflict is None else vars(conflict)
        return out


class VersionedBus:
    """One (exists, value, version) per key; strong reads and compare-and-set commits."""

    regions = ("us-east-1", "eu-west-1", "ap-southeast-1")

    def __init__(self) -> None:
        self.data: dict[str, tuple[bool, Any, int]] = {}
        self.commits: list[tuple[str, Any, dict[str, Any]]] = []

    def put(self, key: str, value: Any) -> None:
        """Another writer's strong write."""
        _, _, version = self.data.get(key, (False, None, 0))
        self.data[key] = (True, value, version + 1)

    async def write(self, key: str, data: Any, **options: Any) -> Commit:
        """An eventual write: nothing a compensation undoes."""
        return Commit(key=key, session_token="tok-w")

    async def read(self, key: str, region: str | None = None, **options: Any) -> Any:
        assert options["consistency"] == "strong"
        exists, value, version = self.data.get(key, (False, None, 0))
        return SimpleNamespace(exists=exists, value=value, version=version)

    async def commit(
        self, key: str, data: Any, *, expected_version: int | None = None, **options: Any
    ) -> Commit:
        self.commits.append((key, data, {"expected_version": expected_version, **options}))
        _, _, version = self.data.get(key, (False, None, 0))
        base = {"key": key, "placement": ("eu-west-1",), "classification": ("public",),
                "session_token": "tok"}
        if expected_version is not None and expected_version != version:
            return Commit(committed=False, version=None, reason="version conflict",
                          conflict=SimpleNamespace(region="eu-west-1",
                                                   expected=expected_version, found=version),
                          **base)
        if options.get("operation") == "delete":
            self.data[key] = (False, None, version + 1)
        else:
            self.data[key] = (True, data, version + 1)
        return Commit(committed=True, version=version + 1, reason=None, conflict=None, **base)


class Infrastructure:
    def __init__(self) -> None:
        self.config = EdgeConfig()
        self.bus = VersionedBus()


class BreakParams(NodeParams):
    #: a key another writer changes just before this node fails
    bump_key: str | None = None


@register_node("CompensationTestBreak")
class Break(EdgeNode):
    """Fails (after, optionally, another writer's write)."""

    Params: ClassVar[type[NodeParams]] = BreakParams
    inputs: ClassVar[tuple[str, ...]] = ("input",)

    async def async_run(self, **inputs: Any) -> Mapping[str, Any]:
        assert isinstance(self.params, BreakParams)
        if self.params.bump_key:
            self.infrastructure.bus.put(self.params.bump_key, "someone else's")
        raise ValueError("payment provider said no")


def strong(key: str, data: Any) -> dict[str, Any]:
    """A strong write: compensable by default (no ``compensate`` param)."""
    return {"action": "write", "consistency": "strong", "key": key, "data": data}


def run_failing(infra: Infrastructure, bump_key: str | None = None) -> CompensatedExecutionError:
    builder = WorkflowBuilder()
    builder.add_node("EdgeDataNode", "debit", strong("acct:a", {"balance": 90}))
    builder.add_node("EdgeDataNode", "credit", strong("acct:b", {"balance": 10}))
    builder.add_node("EdgeDataNode", "note", {"action": "write", "key": "n", "data": 1})
    builder.add_node("CompensationTestBreak", "pay", {"bump_key": bump_key})
    builder.add_connection("debit", "result", "pay", "input")
    with pytest.raises(WorkflowExecutionError) as info:
        LocalRuntime(infrastructure=infra).execute(builder.build())
    assert isinstance(info.value, CompensatedExecutionError)
    return info.value


# ------------------------------------------------------------------ pure pieces


def test_the_undo_restores_the_previous_value_or_deletes_a_key_that_did_not_exist() -> None:
    existed = step_record("k", 5, True, {"v": 1}, 4)
    assert existed == {"key": "k", "version": 5,
                       "previous": {"exists": True, "value": {"v": 1}, "version": 4}}
    assert undo_of(existed) == UndoWrite("k", "set", {"v": 1}, 5)
    absent = step_record("k", 1, False, "ignored", 0)
    assert absent["previous"] == {"exists": False, "value": None, "version": 0}
    assert undo_of(absent) == UndoWrite("k", "delete", None, 1)


def test_a_commit_outcome_is_compensated_conflict_or_failed() -> None:
    undo = UndoWrite("k", "set", 1, 5)
    ok = outcome_of("n", undo, Commit(committed=True, version=6, conflict=None, reason=None))
    assert (ok.status, ok.version, ok.expected_version) == ("compensated", 6, 5)
    lost = outcome_of("n", undo, Commit(
        committed=False, version=None, reason="version conflict",
        conflict=SimpleNamespace(region="r", expected=5, found=7)))
    assert (lost.status, lost.found) == ("conflict", 7)
    assert "not overwritten" in lost.describe()
    aborted = outcome_of("n", undo, Commit(committed=False, version=None, conflict=None,
                                           reason="deadline passed"))
    assert (aborted.status, aborted.detail) == ("failed", "aborted: deadline passed")


def test_the_error_message_lists_the_compensations_and_nothing_when_there_were_none() -> None:
    plain = CompensatedExecutionError("n", "T", ValueError("boom"), {}, "run1")
    assert plain.compensations == () and "Compensations" not in str(plain)
    assert summarize([]) == ""
    one = Compensation("debit", "acct:a", "compensated", "set", 5, version=6)
    two = Compensation("credit", "acct:b", "conflict", "delete", 1, found=2)
    error = CompensatedExecutionError("n", "T", ValueError("boom"), {}, "run1", (),
                                      [one, two])
    message = str(error)
    assert "(1 compensated, 1 conflict)" in message
    assert "debit: compensated (key 'acct:a'" in message
    assert "credit: conflict (key 'acct:b'" in message
    assert [c.to_dict()["status"] for c in error.compensations] == ["compensated", "conflict"]


def test_compensate_is_for_strong_writes_only() -> None:
    from edgebus.workflow import WorkflowValidationError

    builder = WorkflowBuilder()
    builder.add_node("EdgeDataNode", "w", {"action": "write", "data": 1, "compensate": True})
    with pytest.raises(WorkflowValidationError) as info:
        builder.build()
    assert "compensate applies to strong writes only" in str(info.value)


# ------------------------------------------------------------- through the runtime


def test_a_failure_restores_the_strong_steps_before_it_newest_first() -> None:
    infra = Infrastructure()
    bus = infra.bus
    bus.put("acct:a", {"balance": 100})  # existed; acct:b did not
    error = run_failing(infra)

    assert (error.node_id, error.not_run) == ("pay", ())
    assert [(c.node_id, c.status, c.action) for c in error.compensations] == [
        ("credit", "compensated", "delete"), ("debit", "compensated", "set")]
    assert bus.data["acct:a"] == (True, {"balance": 100}, 3)
    assert bus.data["acct:b"] == (False, None, 2)
    # the step committed as a compare-and-set on what it read; each undo expected the
    # version its step committed, in the step's placement
    forward = [c for c in bus.commits if c[2].get("operation") is None]
    assert [(k, c["expected_version"]) for k, _, c in forward] == [("acct:a", 1), ("acct:b", 0)]
    undo_b, undo_a = bus.commits[-2:]
    assert (undo_b[0], undo_b[1], undo_b[2]["expected_version"]) == ("acct:b", None, 1)
    assert (undo_a[0], undo_a[1], undo_a[2]["expected_version"]) == ("acct:a",
                                                                     {"balance": 100}, 2)
    assert undo_a[2]["region"] == "eu-west-1" and undo_a[2]["replication_factor"] == 1
    assert "Compensations of the strong steps before it" in str(error)
    record = error.results["debit"]["result"]["compensation"]
    assert record["previous"] == {"exists": True, "value": {"balance": 100}, "version": 1}


def test_a_key_another_writer_changed_is_reported_as_a_conflict_not_overwritten() -> None:
    infra = Infrastructure()
    error = run_failing(infra, bump_key="acct:b")
    by_node = {c.node_id: c for c in error.compensations}
    assert (by_node["credit"].status, by_node["credit"].found) == ("conflict", 2)
    assert infra.bus.data["acct:b"] == (True, "someone else's", 2)
    assert by_node["debit"].status == "compensated"
    assert infra.bus.data["acct:a"] == (False, None, 2)
    assert "credit: conflict" in str(error) and "not overwritten" in str(error)


def test_an_undo_that_raises_is_failed_and_the_others_still_run() -> None:
    infra = Infrastructure()
    builder = WorkflowBuilder()
    builder.add_node("EdgeDataNode", "debit", strong("acct:a", 1))
    builder.add_node("EdgeDataNode", "credit", strong("acct:b", 2))
    builder.add_node("CompensationTestBreak", "pay", {})
    original = infra.bus.commit

    async def flaky(key: str, data: Any, **options: Any) -> Commit:
        if key == "acct:b" and options.get("operation") == "delete":
            raise TimeoutError("no decision")
        return await original(key, data, **options)

    infra.bus.commit = flaky  # type: ignore[method-assign]
    with pytest.raises(CompensatedExecutionError) as info:
        LocalRuntime(infrastructure=infra).execute(builder.build())
    credit, debit = info.value.compensations
    assert (credit.status, credit.detail) == ("failed", "TimeoutError: no decision")
    assert debit.status == "compensated"


def test_with_compensate_false_a_strong_write_is_a_plain_commit_with_nothing_to_undo() -> None:
    infra = Infrastructure()
    builder = WorkflowBuilder()
    builder.add_node("EdgeDataNode", "debit", {"action": "write", "consistency": "strong",
                                               "key": "acct:a", "data": 1,
                                               "compensate": False})
    builder.add_node("CompensationTestBreak", "pay", {})
    with pytest.raises(CompensatedExecutionError) as info:
        LocalRuntime(infrastructure=infra).execute(builder.build())
    assert info.value.compensations == ()
    assert "compensation" not in info.value.results["debit"]["result"]
    [(_, _, options)] = infra.bus.commits
    assert options["expected_version"] is None
