"""Multi-step sagas: run steps in order; when one fails, compensate the completed steps
in reverse order.

A :class:`Saga` is a sequence of :class:`Step` s, each an ``action`` and an optional
``compensation`` (both opaque here: the shell knows how to run them). The saga runs
step 0, 1, ... in order. If every step completes, the saga is COMPLETED. If step ``i``
fails, the compensations of steps ``i-1, ..., 0`` run, in that order (steps without a
compensation are passed over), and the saga ends COMPENSATED. A compensation that
fails is run again, up to ``max_attempts`` times; then the saga is STUCK and needs an
operator (:class:`NeedsOperator`): fix the cause and send :class:`OperatorRetry`, or
compensate by hand and send :class:`CompensationDone`.

Progress is logged before the next action runs
-----------------------------------------------
Every decision is a progress record, emitted as :class:`LogProgress` *before* the
:class:`RunStep` or :class:`RunCompensation` it leads to. The shell performs outputs
in order and makes each record durable before performing the next output. The state is
a fold of the records (:func:`recover` is that fold), so a saga host that crashes at
any point is rebuilt from its log and :func:`resume` re-issues the action the saga was
waiting for:

* a step that was started but not logged as completed runs again (steps must be
  idempotent: running a step that already took effect again succeeds without a
  second effect; and atomic: a step that reports failure took no effect);
* a compensation that was started but not logged as done runs again (compensations
  must be idempotent too).

Hence a compensation runs only for a step logged as completed, and every completed
step with a compensation is compensated before the saga ends COMPENSATED.

Stale results
-------------
Results may be duplicated or arrive late (from before a crash). A result for another
step or compensation than the one the saga waits for is ignored. Each run of a step
has a number (``run`` in :class:`RunStep`; a run after a restart is logged first as
:class:`StepRestarted`): pass it back in :class:`StepFailed` so that a failure
reported by an older run is ignored (a newer run may have succeeded). A success from
any run counts. Likewise pass ``attempt`` back in :class:`CompensationFailed`.

Pure: no I/O, no clock. Retry delays between compensation attempts are the shell's.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from edgebus.errors import InvalidInput

__all__ = [
    "CompensationAttemptFailed",
    "CompensationCompleted",
    "CompensationDone",
    "CompensationFailed",
    "Finished",
    "LogProgress",
    "NeedsOperator",
    "OperatorRetried",
    "OperatorRetry",
    "ProgressRecord",
    "RunCompensation",
    "RunStep",
    "Saga",
    "SagaBegun",
    "SagaMessage",
    "SagaOutcome",
    "SagaOutput",
    "SagaState",
    "SagaStatus",
    "Start",
    "Step",
    "StepAborted",
    "StepCompleted",
    "StepDone",
    "StepFailed",
    "StepRestarted",
    "decide_saga",
    "new_state",
    "recover",
    "recover_all",
    "resume",
]

DEFAULT_MAX_ATTEMPTS = 3


class SagaStatus(StrEnum):
    """Where a saga is."""

    NOT_STARTED = "not_started"
    RUNNING = "running"  #: running its steps
    COMPENSATING = "compensating"  #: a step failed: undoing the completed ones
    COMPLETED = "completed"  #: every step completed
    COMPENSATED = "compensated"  #: a step failed and every completed one was undone
    STUCK = "stuck"  #: a compensation failed ``max_attempts`` times: needs an operator

    @property
    def finished(self) -> bool:
        """True for the two outcomes a saga ends with."""
        return self in (SagaStatus.COMPLETED, SagaStatus.COMPENSATED)


@dataclass(frozen=True, slots=True)
class Step:
    """One step: ``action`` and its ``compensation`` (``None``: nothing to undo)."""

    name: str
    action: Any
    compensation: Any | None = None


@dataclass(frozen=True, slots=True)
class Saga:
    """A saga: its id and its steps, run in order."""

    saga_id: str
    steps: tuple[Step, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.steps, tuple):
            raise InvalidInput(
                f"saga {self.saga_id!r}: steps must be a tuple of Step, got "
                f"{type(self.steps).__name__}; pass tuple(steps)"
            )


# --------------------------------------------------------------------------- messages


@dataclass(frozen=True, slots=True)
class Start:
    """Start the saga (a second Start changes nothing)."""


@dataclass(frozen=True, slots=True)
class StepDone:
    """Step ``index`` completed with ``result`` (handed to its compensation later)."""

    index: int
    result: Any = None


@dataclass(frozen=True, slots=True)
class StepFailed:
    """Step ``index`` failed and took no effect. ``run``: the :class:`RunStep` run it
    answers (``None``: not checked)."""

    index: int
    error: str
    run: int | None = None


@dataclass(frozen=True, slots=True)
class CompensationDone:
    """The compensation of step ``index`` took effect (by the shell, or by hand)."""

    index: int


@dataclass(frozen=True, slots=True)
class CompensationFailed:
    """The compensation of step ``index`` failed. ``attempt``: the
    :class:`RunCompensation` attempt it answers (``None``: not checked)."""

    index: int
    error: str
    attempt: int | None = None


@dataclass(frozen=True, slots=True)
class OperatorRetry:
    """An operator fixed what made a compensation fail: try it again from attempt 1."""


SagaMessage = (
    Start | StepDone | StepFailed | CompensationDone | CompensationFailed | OperatorRetry
)


# --------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class SagaBegun:
    """The saga and its settings: the first record of its log."""

    saga: Saga
    max_attempts: int

    @property
    def saga_id(self) -> str:
        """The saga this record is about."""
        return self.saga.saga_id


@dataclass(frozen=True, slots=True)
class StepCompleted:
    """Step ``index`` completed with ``result``."""

    saga_id: str
    index: int
    result: Any


@dataclass(frozen=True, slots=True)
class StepRestarted:
    """Step ``index`` is run again (run number ``run``) after a restart."""

    saga_id: str
    index: int
    run: int


@dataclass(frozen=True, slots=True)
class StepAborted:
    """Step ``index`` failed: compensation starts."""

    saga_id: str
    index: int
    error: str


@dataclass(frozen=True, slots=True)
class CompensationCompleted:
    """The compensation of step ``index`` took effect."""

    saga_id: str
    index: int


@dataclass(frozen=True, slots=True)
class CompensationAttemptFailed:
    """Attempt number ``attempt`` at compensating step ``index`` failed."""

    saga_id: str
    index: int
    attempt: int
    error: str


@dataclass(frozen=True, slots=True)
class OperatorRetried:
    """An operator asked a stuck compensation to be tried again."""

    saga_id: str
    index: int


ProgressRecord = (
    SagaBegun
    | StepCompleted
    | StepRestarted
    | StepAborted
    | CompensationCompleted
    | CompensationAttemptFailed
    | OperatorRetried
)


# --------------------------------------------------------------------------- outputs


@dataclass(frozen=True, slots=True)
class LogProgress:
    """Append ``record`` to the saga's log; durable before the next output runs."""

    record: ProgressRecord


@dataclass(frozen=True, slots=True)
class RunStep:
    """Run step ``index`` (``results``: those of the steps before it); answer with
    :class:`StepDone` or :class:`StepFailed` (with this ``run``)."""

    saga_id: str
    index: int
    step: Step
    run: int
    results: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class RunCompensation:
    """Run the compensation of step ``index`` (``result``: what the step returned);
    answer with :class:`CompensationDone` or :class:`CompensationFailed`."""

    saga_id: str
    index: int
    step: Step
    result: Any
    attempt: int


@dataclass(frozen=True, slots=True)
class SagaOutcome:
    """How a saga ended: COMPLETED (``results`` of every step) or COMPENSATED
    (``failed_step`` failed with ``error``; the steps before it were undone)."""

    saga_id: str
    status: SagaStatus
    results: tuple[Any, ...]
    failed_step: int | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Finished:
    """The saga ended (emitted again by :func:`resume` after a restart: deduplicate)."""

    outcome: SagaOutcome


@dataclass(frozen=True, slots=True)
class NeedsOperator:
    """A compensation failed ``attempts`` times: the saga waits for an operator."""

    saga_id: str
    index: int
    step_name: str
    attempts: int
    error: str
    message: str


SagaOutput = LogProgress | RunStep | RunCompensation | Finished | NeedsOperator


# --------------------------------------------------------------------------- state


@dataclass(frozen=True, slots=True)
class SagaState:
    """One saga's progress, a fold of its progress records.

    ``results``: of the completed steps, in order (their count is the next step to
    run). ``run``: the number of the current run of that step. ``failed_step`` /
    ``failure``: the step that failed and why. ``compensating``: the step whose
    compensation runs (or is stuck); ``attempts``: its failed attempts so far.
    """

    saga: Saga
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    status: SagaStatus = SagaStatus.NOT_STARTED
    results: tuple[Any, ...] = ()
    run: int = 1
    failed_step: int | None = None
    failure: str | None = None
    compensating: int | None = None
    attempts: int = 0
    last_error: str | None = None

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise InvalidInput(
                f"saga {self.saga.saga_id!r}: max_attempts must be at least 1, got "
                f"{self.max_attempts}"
            )

    @property
    def saga_id(self) -> str:
        """The saga's id."""
        return self.saga.saga_id

    @property
    def outcome(self) -> SagaOutcome:
        """Where the saga is, as a :class:`SagaOutcome`."""
        return SagaOutcome(self.saga_id, self.status, self.results, self.failed_step, self.failure)

    @property
    def stuck_message(self) -> str | None:
        """What an operator must do, when the saga is STUCK."""
        if self.status is not SagaStatus.STUCK or self.compensating is None:
            return None
        i = self.compensating
        name = self.saga.steps[i].name
        return (
            f"saga {self.saga_id}: the compensation of step {i} ({name}) failed "
            f"{self.attempts} times, last with: {self.last_error}. Step {self.failed_step} "
            f"failed ({self.failure}); steps {i}..0 are not all undone. Fix the cause and "
            "retry (OperatorRetry), or undo the step by hand and report it done "
            f"(CompensationDone({i}))."
        )


def _next_compensation(saga: Saga, below: int) -> int | None:
    """The highest step index ``<= below`` that has a compensation."""
    for i in range(below, -1, -1):
        if saga.steps[i].compensation is not None:
            return i
    return None


def _start_compensating(state: SagaState, below: int) -> SagaState:
    nxt = _next_compensation(state.saga, below)
    status = SagaStatus.COMPENSATED if nxt is None else SagaStatus.COMPENSATING
    return replace(state, status=status, compensating=nxt, attempts=0, last_error=None)


def _evolve(state: SagaState, record: ProgressRecord) -> SagaState:
    """Apply one progress record; a record that does not fit (a duplicate) changes
    nothing."""
    status = state.status
    if isinstance(record, SagaBegun):
        if status is not SagaStatus.NOT_STARTED:
            return state
        done = not state.saga.steps
        return replace(state, status=SagaStatus.COMPLETED if done else SagaStatus.RUNNING)
    if isinstance(record, StepCompleted):
        if status is not SagaStatus.RUNNING or record.index != len(state.results):
            return state
        results = (*state.results, record.result)
        finished = len(results) == len(state.saga.steps)
        return replace(
            state, results=results, run=1,
            status=SagaStatus.COMPLETED if finished else SagaStatus.RUNNING,
        )
    if isinstance(record, StepRestarted):
        if (
            status is not SagaStatus.RUNNING
            or record.index != len(state.results)
            or record.run <= state.run
        ):
            return state
        return replace(state, run=record.run)
    if isinstance(record, StepAborted):
        if status is not SagaStatus.RUNNING or record.index != len(state.results):
            return state
        state = replace(state, failed_step=record.index, failure=record.error)
        return _start_compensating(state, record.index - 1)
    waiting = state.compensating
    if isinstance(record, CompensationCompleted):
        if status not in (SagaStatus.COMPENSATING, SagaStatus.STUCK) or record.index != waiting:
            return state
        return _start_compensating(state, record.index - 1)
    if isinstance(record, CompensationAttemptFailed):
        if (
            status is not SagaStatus.COMPENSATING
            or record.index != waiting
            or record.attempt != state.attempts + 1
        ):
            return state
        stuck = record.attempt >= state.max_attempts
        return replace(
            state, attempts=record.attempt, last_error=record.error,
            status=SagaStatus.STUCK if stuck else SagaStatus.COMPENSATING,
        )
    if isinstance(record, OperatorRetried):
        if status is not SagaStatus.STUCK or record.index != waiting:
            return state
        return replace(state, status=SagaStatus.COMPENSATING, attempts=0)
    raise InvalidInput(
        f"{type(record).__name__} is not a saga progress record: pass one of "
        "SagaBegun, StepCompleted, StepRestarted, StepAborted, CompensationCompleted, "
        "CompensationAttemptFailed, OperatorRetried"
    )


def _awaited(state: SagaState) -> list[SagaOutput]:
    """The action the saga waits for (or its end)."""
    status = state.status
    if status is SagaStatus.RUNNING:
        i = len(state.results)
        return [RunStep(state.saga_id, i, state.saga.steps[i], state.run, state.results)]
    if status is SagaStatus.COMPENSATING and state.compensating is not None:
        i = state.compensating
        return [RunCompensation(
            state.saga_id, i, state.saga.steps[i], state.results[i], state.attempts + 1
        )]
    if status is SagaStatus.STUCK and state.compensating is not None:
        i = state.compensating
        return [NeedsOperator(
            state.saga_id, i, state.saga.steps[i].name, state.attempts,
            state.last_error or "", state.stuck_message or "",
        )]
    if status.finished:
        return [Finished(state.outcome)]
    return []


# --------------------------------------------------------------------------- decide


def decide_saga(
    state: SagaState, message: SagaMessage
) -> tuple[SagaState, list[SagaOutput]]:
    """Handle one message; returns the new state and the outputs to perform, in order:
    the progress record first, then the next action."""
    record = _record_for(state, message)
    if record is None:
        return state, []
    new = _evolve(state, record)
    if new is state:  # a record that does not fit: stale or duplicate
        return state, []
    return new, [LogProgress(record), *_awaited(new)]


def _record_for(state: SagaState, message: SagaMessage) -> ProgressRecord | None:
    """The progress record a message makes, or ``None`` when it is stale or a duplicate."""
    sid, status = state.saga_id, state.status
    if isinstance(message, Start):
        return SagaBegun(state.saga, state.max_attempts)
    if isinstance(message, StepDone):
        return StepCompleted(sid, message.index, message.result)
    if isinstance(message, StepFailed):
        if message.run is not None and message.run != state.run:
            return None  # an older run failed; the current one may succeed
        return StepAborted(sid, message.index, message.error)
    if isinstance(message, CompensationDone):
        return CompensationCompleted(sid, message.index)
    if isinstance(message, CompensationFailed):
        attempt = state.attempts + 1
        if message.attempt is not None and message.attempt != attempt:
            return None
        return CompensationAttemptFailed(sid, message.index, attempt, message.error)
    if isinstance(message, OperatorRetry):
        if status is not SagaStatus.STUCK or state.compensating is None:
            return None
        return OperatorRetried(sid, state.compensating)
    raise InvalidInput(
        f"{type(message).__name__} is not a saga message: pass Start, StepDone, "
        "StepFailed, CompensationDone, CompensationFailed or OperatorRetry"
    )


def new_state(saga: Saga, max_attempts: int = DEFAULT_MAX_ATTEMPTS) -> SagaState:
    """A saga not started yet: send it :class:`Start`."""
    return SagaState(saga, max_attempts)


# --------------------------------------------------------------------------- recovery


def recover(progress_records: Iterable[ProgressRecord]) -> SagaState:
    """Rebuild one saga from its progress records, oldest first (duplicates are fine).

    The first record must be its :class:`SagaBegun`. A saga caught running a step
    gets a new run number for it: :func:`resume` logs the restart and runs it again.
    """
    records = iter(progress_records)
    first = next(records, None)
    if not isinstance(first, SagaBegun):
        raise InvalidInput(
            "a saga's progress log must start with its SagaBegun record, found "
            f"{type(first).__name__ if first is not None else 'no record'}: pass the "
            "records of one saga, oldest first"
        )
    state = _evolve(SagaState(first.saga, first.max_attempts), first)
    for record in records:
        if record.saga_id != state.saga_id:
            raise InvalidInput(
                f"a progress record of saga {record.saga_id!r} among those of saga "
                f"{state.saga_id!r}: recover one saga at a time (see recover_all)"
            )
        state = _evolve(state, record)
    if state.status is SagaStatus.RUNNING:
        state = replace(state, run=state.run + 1)
    return state


def recover_all(progress_records: Iterable[ProgressRecord]) -> dict[str, SagaState]:
    """Rebuild every saga of a log holding several (records grouped by saga id)."""
    by_saga: dict[str, list[ProgressRecord]] = {}
    for record in progress_records:
        by_saga.setdefault(record.saga_id, []).append(record)
    return {sid: recover(records) for sid, records in by_saga.items()}


def resume(state: SagaState) -> list[SagaOutput]:
    """What to do after :func:`recover`: log a restarted step and run it again, run the
    compensation again, ask the operator again, or report the end again."""
    outputs = _awaited(state)
    if state.status is SagaStatus.RUNNING and state.run > 1:
        i = len(state.results)
        outputs.insert(0, LogProgress(StepRestarted(state.saga_id, i, state.run)))
    return outputs
