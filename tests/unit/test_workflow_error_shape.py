"""The one shape of a failed run (issue 19): what ``LocalRuntime.execute`` raises once
a run has started is a WorkflowExecutionError (a CompensatedExecutionError, keeping
node_id, results, run_id, not_run, cause, compensations) that is also an instance of
its cause's class when the cause is an edgebus error, so ``except
ComplianceViolation:`` around ``execute`` works. The start that finds no broker has the
same shape, with no node. No Kafka: nodes raise the errors, the infrastructure is
fake."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import pytest

from edgebus.config import EdgeConfig
from edgebus.errors import (
    ComplianceViolation,
    EdgebusError,
    InfrastructureUnavailable,
    InvalidInput,
    StateOperationRefused,
)
from edgebus.workflow import (
    EdgeNode,
    LocalRuntime,
    Node,
    WorkflowBuilder,
    WorkflowExecutionError,
    register_node,
)
from edgebus.workflow.compensation import CompensatedExecutionError, Compensation
from edgebus.workflow.errors import joined_class


class PickyError(EdgebusError):
    """An edgebus error of an application's own: an __init__ with its own arguments
    (never called by the runtime's error) and its own __str__."""

    retriable = True
    exit_code = 7

    def __init__(self, order_id: int) -> None:
        self.order_id = order_id
        super().__init__(f"order {order_id} refused")

    def __str__(self) -> str:
        return f"picky about order {self.order_id}"


def violation() -> ComplianceViolation:
    return ComplianceViolation(["pii"], ["gdpr"], ["us-east-1"], "no GDPR region")


#: what the node ``Raiser`` raises, by node id
RAISES: dict[str, BaseException] = {}


@register_node("ErrorShapeRaiser")
class Raiser(Node):
    def run(self, **inputs: Any) -> Mapping[str, Any]:
        raise RAISES[self.node_id]


@register_node("ErrorShapeUndoable")
class Undoable(Node):
    """A completed step whose compensation runs when a later node fails."""

    def run(self, **inputs: Any) -> Mapping[str, Any]:
        return {"result": "done"}

    async def compensate(self, output: Mapping[str, Any]) -> Compensation:
        return Compensation(self.node_id, "k", "compensated", "set", 1, version=2)


@register_node("ErrorShapeEdgeProbe")
class EdgeProbe(EdgeNode):
    ran: ClassVar[list[str]] = []

    async def async_run(self, **inputs: Any) -> Mapping[str, Any]:
        self.ran.append(self.node_id)
        return {"result": None}


def failing_run(cause: BaseException, *, undo: bool = False) -> WorkflowExecutionError:
    """Run first (a passthrough, or an undoable step), then ``broken`` raising
    ``cause``, then ``after``; the error raised."""
    builder = WorkflowBuilder()
    builder.add_node("ErrorShapeUndoable" if undo else "Passthrough", "first", {})
    builder.add_node("ErrorShapeRaiser", "broken", {})
    builder.add_node("Passthrough", "after", {})
    builder.add_connection("first", "result", "broken", "input")
    builder.add_connection("broken", "result", "after", "input")
    RAISES["broken"] = cause
    with pytest.raises(WorkflowExecutionError) as info:
        LocalRuntime().execute(builder.build(), {"first": {"input": 1}})
    return info.value


def test_except_compliance_violation_around_execute_catches_a_nodes_violation() -> None:
    cause = violation()
    builder = WorkflowBuilder()
    builder.add_node("ErrorShapeRaiser", "writer", {})
    RAISES["writer"] = cause
    with pytest.raises(ComplianceViolation) as info:  # the cause's own class
        LocalRuntime().execute(builder.build())
    error = info.value
    assert isinstance(error, WorkflowExecutionError)
    assert isinstance(error, CompensatedExecutionError)
    assert isinstance(error, InvalidInput)  # the cause's bases too
    assert error.node_id == "writer" and error.cause is cause
    # the cause's attributes are on the error too
    assert (error.classification, error.zones_required, error.reason) == (
        ("pii",), ("gdpr",), "no GDPR region")
    assert str(error).startswith(
        "Node 'writer' (ErrorShapeRaiser) failed: ComplianceViolation: Compliance violation:")
    assert str(error.cause).startswith("Compliance violation: cannot place data classified pii")


@pytest.mark.parametrize("cause", [
    violation(),
    InfrastructureUnavailable("the broker went away", ["127.0.0.1:1"]),
    InvalidInput("key must be a string"),
    StateOperationRefused("not a number", "cart:1", "req-1"),
    PickyError(42),
])
def test_a_node_failing_with_an_edgebus_error_raises_one_error_of_both_classes(
    cause: EdgebusError,
) -> None:
    error = failing_run(cause)
    assert isinstance(error, type(cause)) and isinstance(error, CompensatedExecutionError)
    assert error.node_id == "broken" and error.type_name == "ErrorShapeRaiser"
    assert error.cause is cause and error.__cause__ is cause
    assert error.results == {"first": {"result": 1}}
    assert error.not_run == ("after",) and len(error.run_id) == 32
    assert error.compensations == ()
    assert (error.retriable, error.exit_code) == (cause.retriable, cause.exit_code)
    assert str(error).startswith(f"Node 'broken' (ErrorShapeRaiser) failed: "
                                 f"{type(cause).__name__}: {cause}.")
    for name, value in vars(cause).items():  # addresses, state_id, order_id, ...
        assert getattr(error, name) == value


def test_the_cause_class_init_is_never_called_and_its_str_does_not_replace_the_runs() -> None:
    cause = PickyError(42)
    error = failing_run(cause)
    assert isinstance(error, PickyError)
    assert error.order_id == 42  # copied, not made by PickyError.__init__ (which needs it)
    assert str(error).startswith("Node 'broken' (ErrorShapeRaiser) failed: PickyError: "
                                 "picky about order 42.")
    assert error.args == (str(error),)


def test_the_joined_class_is_made_once_per_cause_class() -> None:
    first, second = failing_run(violation()), failing_run(violation())
    assert type(first) is type(second)
    assert type(first) is joined_class(CompensatedExecutionError, ComplianceViolation)
    assert type(first).__name__ == "CompensatedExecutionError[ComplianceViolation]"
    assert type(failing_run(InvalidInput("x"))) is not type(first)


def test_an_error_that_is_no_edgebus_error_is_a_workflow_execution_error_only() -> None:
    error = failing_run(ValueError("bad value"))
    assert type(error) is CompensatedExecutionError
    assert not isinstance(error, ValueError)
    assert isinstance(error.cause, ValueError) and error.exit_code == 1


def test_a_failure_after_a_compensated_step_keeps_its_compensations_and_the_cause_class(
) -> None:
    error = failing_run(violation(), undo=True)
    assert isinstance(error, ComplianceViolation)
    assert isinstance(error, CompensatedExecutionError)
    [undone] = error.compensations
    assert (undone.node_id, undone.status) == ("first", "compensated")
    assert "Compensations of the strong steps before it, newest first (1 compensated)" in str(
        error)


class DeadInfrastructure:
    """An edge infrastructure whose start finds no broker."""

    def __init__(self) -> None:
        self.config = EdgeConfig()

    async def start(self) -> None:
        raise InfrastructureUnavailable("no broker answered within 1 s", ["127.0.0.1:1"])


def test_the_start_without_a_broker_has_the_same_shape_with_no_node() -> None:
    EdgeProbe.ran.clear()
    builder = WorkflowBuilder()
    builder.add_node("Passthrough", "first", {})
    builder.add_node("ErrorShapeEdgeProbe", "edge", {})
    runtime = LocalRuntime(infrastructure=DeadInfrastructure())
    with pytest.raises(InfrastructureUnavailable) as info:
        runtime.execute(builder.build())
    error = info.value
    assert isinstance(error, WorkflowExecutionError)
    assert isinstance(error, CompensatedExecutionError)
    assert (error.node_id, error.type_name) == (None, None)
    assert isinstance(error.cause, InfrastructureUnavailable)
    assert error.results == {} and error.not_run == ("first", "edge")
    assert error.retriable is True and error.addresses == ("127.0.0.1:1",)
    message = str(error)
    assert message.startswith("No edge infrastructure available: no broker answered")
    assert "edgebus kafka up" in message
    assert message.endswith(f"No node ran (run {error.run_id}; not run: first, edge).")
    assert EdgeProbe.ran == []


def test_a_failed_run_inside_a_node_keeps_its_own_class() -> None:
    inner = failing_run(violation())
    error = failing_run(inner)
    assert type(error) is type(inner)  # already both: not joined again
    assert isinstance(error, ComplianceViolation)
    assert error.cause is inner and error.node_id == "broken"
    assert joined_class(WorkflowExecutionError, ValueError) is WorkflowExecutionError
