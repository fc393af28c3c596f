"""What ``edgebus saga list | show`` print of multi-step sagas: JSON-able summaries
and details read from the progress log's index (:mod:`edgebus.sagas.progress`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from edgebus.core.saga import (
    CompensationAttemptFailed,
    CompensationCompleted,
    SagaBegun,
    SagaState,
    SagaStatus,
    Step,
    StepAborted,
    StepCompleted,
    StepRestarted,
)
from edgebus.errors import InvalidInput
from edgebus.sagas.progress import SagaLog
from edgebus.wire.saga_progress import ProgressEntry

__all__ = ["STATUSES", "check_status", "detail", "step_names", "summary"]

#: what a listing may filter on: a saga's status, or ``unreadable``
STATUSES: tuple[str, ...] = (*(s.value for s in SagaStatus), "unreadable")


def check_status(status: str | None) -> None:
    """InvalidInput unless ``status`` is None or one of :data:`STATUSES`."""
    if status is not None and status not in STATUSES:
        raise InvalidInput(f"unknown saga status {status!r}: pick one of {', '.join(STATUSES)}")


def step_names(steps: Iterable[Step]) -> list[str]:
    """The steps' names, in order."""
    return [s.name for s in steps]


def summary(saga_id: str, recorded: SagaLog) -> dict[str, Any]:
    """One saga in a line: id, name, status, step counts, failure, times."""
    state = recorded.fold()
    begun = recorded.begun
    entries = recorded.entries
    return {
        "saga_id": saga_id,
        "name": begun.name if begun is not None else None,
        "status": str(state.status) if state is not None else "unreadable",
        "steps": step_names(state.saga.steps) if state is not None else [],
        "completed_steps": len(state.results) if state is not None else 0,
        "failed_step": state.failed_step if state is not None else None,
        "error": state.failure if state is not None else None,
        "started_ms": entries[0].time_ms if entries else None,
        "updated_ms": entries[-1].time_ms if entries else None,
        "writer_id": entries[-1].writer_id if entries else None,
        "records": len(entries),
        "problem": "; ".join(recorded.problems) or None,
    }


def detail(saga_id: str, recorded: SagaLog) -> dict[str, Any]:
    """One saga in full: its summary, input, each step's status and result, the
    operator message if stuck, and every record with its time."""
    out = summary(saga_id, recorded)
    state = recorded.fold()
    begun = recorded.begun
    compensated = {
        e.record.index for e in recorded.entries if isinstance(e.record, CompensationCompleted)
    }
    out["context"] = begun.context if begun is not None else None
    out["max_attempts"] = state.max_attempts if state is not None else None
    out["stuck_message"] = state.stuck_message if state is not None else None
    out["step_details"] = (
        [_step_view(state, i, compensated) for i in range(len(state.saga.steps))]
        if state is not None
        else []
    )
    out["records"] = [_record_view(e) for e in recorded.entries]
    out["problems"] = list(recorded.problems)
    return out


def _step_view(state: SagaState, index: int, compensated: set[int]) -> dict[str, Any]:
    step = state.saga.steps[index]
    done = index < len(state.results)
    if index in compensated:
        status = "compensated"
    elif index == state.compensating and state.status is SagaStatus.STUCK:
        status = "stuck"
    elif index == state.compensating and state.status is SagaStatus.COMPENSATING:
        status = "compensating"
    elif done:
        status = "completed"
    elif index == state.failed_step:
        status = "failed"
    elif state.status is SagaStatus.RUNNING and index == len(state.results):
        status = "running"
    else:
        status = "not_run"
    return {
        "index": index,
        "name": step.name,
        "action": step.action,
        "compensation": step.compensation,
        "status": status,
        "result": state.results[index] if done else None,
    }


def _record_view(entry: ProgressEntry) -> dict[str, Any]:
    record = entry.record
    out: dict[str, Any] = {
        "type": entry.type,
        "time_ms": entry.time_ms,
        "writer_id": entry.writer_id,
    }
    if isinstance(record, SagaBegun):
        out["max_attempts"] = record.max_attempts
        return out
    out["step"] = record.index
    if isinstance(record, StepCompleted):
        out["result"] = record.result
    elif isinstance(record, StepRestarted):
        out["run"] = record.run
    elif isinstance(record, (StepAborted, CompensationAttemptFailed)):
        out["error"] = record.error
        if isinstance(record, CompensationAttemptFailed):
            out["attempt"] = record.attempt
    return out
