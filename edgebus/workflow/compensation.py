"""Saga compensations of a workflow's strong steps (issue 7 item 4).

A committed strong write of an :class:`~edgebus.workflow.nodes.data.EdgeDataNode`
records in its result (``result["compensation"]``, see :func:`step_record`) what it
changed: the key, the version it committed, and the key's previous state (value,
version, whether it existed) read strongly just before the commit; the commit is a
compare-and-set on that version, so the recorded previous state is exactly the one the
write replaced.

When a later node fails, :class:`~edgebus.workflow.LocalRuntime` runs the
compensations of the completed strong steps in reverse order: each restores the
previous value (or deletes the key when it did not exist) as a strong commit with
``expected_version`` = the version the step committed. A compensation therefore never
overwrites a later write by someone else: that is a ``conflict``, reported and left
alone. The :class:`CompensatedExecutionError` raised carries ``compensations``, and
is also an instance of the failed node's error class when that is an edgebus error
(``except ComplianceViolation:`` catches it; see :mod:`edgebus.workflow.errors`).

Everything here but the error is pure data: the node performs the commit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from edgebus.workflow.errors import WorkflowExecutionError

__all__ = [
    "CompensatedExecutionError",
    "Compensation",
    "UndoWrite",
    "failed",
    "outcome_of",
    "step_record",
    "summarize",
    "undo_of",
]

Status = Literal["compensated", "conflict", "failed"]


def step_record(
    key: str, version: int, previous_exists: bool, previous_value: Any, previous_version: int
) -> dict[str, Any]:
    """What a committed strong step changed, JSON-ready (kept in its result)."""
    return {
        "key": key,
        "version": version,
        "previous": {
            "exists": previous_exists,
            "value": previous_value if previous_exists else None,
            "version": previous_version,
        },
    }


@dataclass(frozen=True)
class UndoWrite:
    """The strong commit that undoes one step: ``operation`` set (restore ``data``)
    or delete, only if the key is still at ``expected_version``."""

    key: str
    operation: Literal["set", "delete"]
    data: Any
    expected_version: int


def undo_of(record: Mapping[str, Any]) -> UndoWrite:
    """The undo of a step record (from :func:`step_record`)."""
    previous = record["previous"]
    if previous["exists"]:
        return UndoWrite(record["key"], "set", previous["value"], int(record["version"]))
    return UndoWrite(record["key"], "delete", None, int(record["version"]))


@dataclass(frozen=True)
class Compensation:
    """How one strong step's compensation ended.

    ``status``: ``compensated`` (the previous state is back, at ``version``),
    ``conflict`` (the key moved past the step's version: another writer changed it;
    nothing was overwritten; ``found`` is the version met) or ``failed`` (the undo
    aborted or raised: ``detail`` says why).
    """

    node_id: str
    key: str
    status: Status
    action: Literal["set", "delete"]
    expected_version: int
    version: int | None = None
    found: int | None = None
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)

    def describe(self) -> str:
        """One line for messages."""
        what = "restored the previous value" if self.action == "set" else "deleted it again"
        if self.status == "compensated":
            return (f"{self.node_id}: compensated (key {self.key!r}: {what}, "
                    f"version {self.expected_version} -> {self.version})")
        if self.status == "conflict":
            found = "" if self.found is None else f", found version {self.found}"
            return (f"{self.node_id}: conflict (key {self.key!r} was changed by another "
                    f"writer after version {self.expected_version}{found}; not overwritten)")
        return f"{self.node_id}: failed (key {self.key!r}: {self.detail})"


def outcome_of(node_id: str, undo: UndoWrite, commit: Any) -> Compensation:
    """The compensation of ``undo`` given its :class:`~edgebus.sdk.CommitResult`."""
    def make(status: Status, **extra: Any) -> Compensation:
        return Compensation(node_id=node_id, key=undo.key, status=status,
                            action=undo.operation, expected_version=undo.expected_version,
                            **extra)

    if commit.committed:
        return make("compensated", version=commit.version)
    if commit.conflict is not None:
        return make("conflict", found=commit.conflict.found, detail=str(commit.reason or ""))
    return make("failed", detail=f"aborted: {commit.reason}")


def failed(node_id: str, undo: UndoWrite, error: BaseException) -> Compensation:
    """The compensation of ``undo`` that raised ``error``."""
    return Compensation(
        node_id=node_id, key=undo.key, status="failed", action=undo.operation,
        expected_version=undo.expected_version,
        detail=f"{type(error).__name__}: {error}",
    )


def summarize(compensations: Sequence[Compensation]) -> str:
    """The sentence the error message ends with (empty when there were none)."""
    if not compensations:
        return ""
    counts = {s: sum(1 for c in compensations if c.status == s)
              for s in ("compensated", "conflict", "failed")}
    head = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    lines = "; ".join(c.describe() for c in compensations)
    return f" Compensations of the strong steps before it, newest first ({head}): {lines}."


class CompensatedExecutionError(WorkflowExecutionError):
    """A :class:`WorkflowExecutionError` after the runtime ran the compensations of the
    completed strong steps: ``compensations`` lists them newest first (empty when no
    strong step had completed).

    ``LocalRuntime`` makes it with :meth:`~WorkflowExecutionError.of`, so when the
    cause is an edgebus error it is also an instance of the cause's class (see
    :mod:`edgebus.workflow.errors`)."""

    def __init__(
        self,
        node_id: str | None,
        type_name: str | None,
        cause: BaseException,
        results: Mapping[str, Mapping[str, Any]],
        run_id: str,
        not_run: Sequence[str] = (),
        compensations: Sequence[Compensation] = (),
    ) -> None:
        super().__init__(node_id, type_name, cause, results, run_id, not_run)
        self.compensations = tuple(compensations)
        if self.compensations:
            self.args = (str(self.args[0]) + summarize(self.compensations),)
