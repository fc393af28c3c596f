"""What a saga's actions are handed (:class:`SagaContext`) and what a runner call
returns (:class:`SagaResult`); the checks of a saga's steps as given, and the calling of
its actions."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from edgebus.core.saga import (
    CompensationAttemptFailed,
    CompensationCompleted,
    RunCompensation,
    RunStep,
    SagaState,
    SagaStatus,
    Step,
)
from edgebus.errors import InvalidInput
from edgebus.sagas.inspection import step_names
from edgebus.sagas.progress import SagaLog
from edgebus.wire.saga_progress import ProgressEntry

__all__ = [
    "SagaAction",
    "SagaContext",
    "SagaResult",
    "StepSpec",
    "action_context",
    "call_action",
    "result_of",
    "saga_steps_of",
    "unreadable",
]


@dataclass(frozen=True, slots=True)
class SagaContext:
    """What an action is handed.

    ``input``: the saga's context (as given to :meth:`SagaRunner.run`, after a JSON
    round trip). ``phase``: ``"step"`` or ``"compensation"``. ``results``: what the
    completed steps returned, in order (for a step: the steps before it). ``result``:
    for a compensation, what its step returned. ``run``: the step's run number (2 and
    more after a restart). ``attempt``: the compensation's attempt number (from 1).
    """

    saga_id: str
    saga_name: str
    input: Any
    phase: Literal["step", "compensation"]
    step_index: int
    step_name: str
    results: tuple[Any, ...]
    result: Any = None
    run: int = 1
    attempt: int = 1

    @property
    def idempotency_key(self) -> str:
        """The same for every run of this step (or attempt of this compensation): hand
        it to the systems the action calls so that a re-run takes effect once."""
        return f"{self.saga_id}/{self.step_index}/{self.phase}"


#: an action: called with a :class:`SagaContext`, returns a JSON-able result (or None);
#: raising means the step (or compensation) failed. Async, or a plain function.
SagaAction = Callable[[SagaContext], Awaitable[Any] | Any]

#: a step as :meth:`SagaRunner.run` takes it: ``(action, compensation or None)``, or a
#: :class:`~edgebus.core.saga.Step` whose action and compensation are names
StepSpec = tuple[str, str | None] | Step


@dataclass(frozen=True, slots=True)
class SagaResult:
    """Where a saga stands after a runner call.

    ``status``: ``completed``, ``compensated`` or ``stuck`` once driven as far as it
    goes; ``running``/``compensating`` for a saga :meth:`SagaRunner.resume_all` did not
    touch (``missing_actions`` or ``problem`` says why). ``completed_steps``: the
    steps logged complete (indices, in order); ``compensated_steps``: the steps whose
    compensation took effect, in the order they ran. ``failed_step``/``error``: the
    step that failed and why. ``compensation_errors``: ``(step, attempt, error)`` of
    every failed compensation attempt. ``acted``: whether this call ran anything or
    logged anything (False for a saga that had already finished).
    """

    saga_id: str
    name: str
    status: SagaStatus
    steps: tuple[str, ...]
    results: tuple[Any, ...] = ()
    completed_steps: tuple[int, ...] = ()
    compensated_steps: tuple[int, ...] = ()
    failed_step: int | None = None
    error: str | None = None
    compensation_errors: tuple[tuple[int, int, str], ...] = ()
    stuck_message: str | None = None
    missing_actions: tuple[str, ...] = ()
    problem: str | None = None
    acted: bool = False

    @property
    def finished(self) -> bool:
        """True when the saga ended: COMPLETED or COMPENSATED."""
        return self.status.finished

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able view (for ``--json`` output)."""
        return {
            "saga_id": self.saga_id,
            "name": self.name,
            "status": str(self.status),
            "steps": list(self.steps),
            "results": list(self.results),
            "completed_steps": list(self.completed_steps),
            "compensated_steps": list(self.compensated_steps),
            "failed_step": self.failed_step,
            "error": self.error,
            "compensation_errors": [
                {"step": i, "attempt": a, "error": e} for i, a, e in self.compensation_errors
            ],
            "stuck_message": self.stuck_message,
            "missing_actions": list(self.missing_actions),
            "problem": self.problem,
            "acted": self.acted,
        }


def result_of(
    state: SagaState,
    entries: Sequence[ProgressEntry],
    name: str,
    *,
    acted: bool = False,
    missing: tuple[str, ...] = (),
) -> SagaResult:
    compensated: list[int] = []
    errors: list[tuple[int, int, str]] = []
    for entry in entries:
        record = entry.record
        if isinstance(record, CompensationCompleted) and record.index not in compensated:
            compensated.append(record.index)
        elif isinstance(record, CompensationAttemptFailed):
            errors.append((record.index, record.attempt, record.error))
    return SagaResult(
        saga_id=state.saga_id,
        name=name,
        status=state.status,
        steps=tuple(step_names(state.saga.steps)),
        results=state.results,
        completed_steps=tuple(range(len(state.results))),
        compensated_steps=tuple(compensated),
        failed_step=state.failed_step,
        error=state.failure,
        compensation_errors=tuple(errors),
        stuck_message=state.stuck_message,
        missing_actions=missing,
        acted=acted,
    )


def unreadable(saga_id: str, recorded: SagaLog) -> SagaResult:
    begun = recorded.begun
    return SagaResult(
        saga_id=saga_id,
        name=begun.name if begun is not None else "",
        status=SagaStatus.NOT_STARTED,
        steps=tuple(step_names(begun.steps)) if begun is not None else (),
        problem="; ".join(recorded.problems) or "its log cannot be read",
    )


def saga_steps_of(saga_id: str, name: str, steps: Sequence[StepSpec]) -> tuple[Step, ...]:
    """The steps of saga ``saga_id`` as :meth:`SagaRunner.run` takes them, checked:
    InvalidInput for an empty id or name, or a step that is not a pair of names."""
    if not isinstance(saga_id, str) or not saga_id:
        raise InvalidInput(f"a saga id must be a non-empty string, got {saga_id!r}")
    if not isinstance(name, str) or not name:
        raise InvalidInput(f"saga {saga_id!r}: its name must be a non-empty string")
    if isinstance(steps, (str, bytes)) or not isinstance(steps, Sequence):
        raise InvalidInput(
            f"saga {saga_id!r}: steps must be a list of (action, compensation) pairs"
        )
    out: list[Step] = []
    for i, spec in enumerate(steps):
        if isinstance(spec, Step):
            step = spec
        elif isinstance(spec, (tuple, list)) and len(spec) == 2:
            step = Step(spec[0], spec[0], spec[1])
        else:
            raise InvalidInput(
                f"saga {saga_id!r}, step {i}: expected (action, compensation or None) or a "
                f"Step, got {spec!r}"
            )
        names = (step.name, step.action) + (
            () if step.compensation is None else (step.compensation,)
        )
        if not all(isinstance(n, str) and n for n in names):
            raise InvalidInput(
                f"saga {saga_id!r}, step {i}: the name, action and compensation must be "
                "non-empty strings (the action and compensation: names of registered actions; "
                f"the compensation may be None), got {spec!r}"
            )
        out.append(step)
    return tuple(out)


def action_context(
    output: RunStep | RunCompensation,
    name: str,
    context: Any,
    phase: Literal["step", "compensation"],
    results: tuple[Any, ...],
    *,
    result: Any = None,
    run: int = 1,
    attempt: int = 1,
) -> SagaContext:
    """What the action of ``output`` (a step or a compensation) is handed."""
    return SagaContext(
        saga_id=output.saga_id,
        saga_name=name,
        input=context,
        phase=phase,
        step_index=output.index,
        step_name=output.step.name,
        results=results,
        result=result,
        run=run,
        attempt=attempt,
    )


async def call_action(action: SagaAction, ctx: SagaContext) -> Any:
    """Call ``action`` with ``ctx``; await what it returns if it is awaitable."""
    value = action(ctx)
    if inspect.isawaitable(value):
        value = await value
    return value
