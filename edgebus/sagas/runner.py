"""The saga runner: multi-step sagas with compensations, their progress in Kafka.

The decisions are the pure state machine's (:mod:`edgebus.core.saga`); this module
performs its outputs, in order: it appends each progress record to the topic
``edgebus.<log region>.sagas`` (key: the saga id; on the cluster of
``strong.log_region``, default the first region) and waits
for Kafka's acknowledgement (idempotent producer, ``acks=all``) *before* it runs the
step or compensation the record leads to. A runner that crashes at any point leaves a
log from which another runner (:meth:`SagaRunner.resume_all`) rebuilds every saga and
finishes it: a step started but not logged complete runs again, and so does a
compensation started but not logged done.

Actions are registered by name: the log holds names, not code, so any process that
registers the same names can resume a saga::

    async def reserve(ctx: SagaContext) -> dict:
        return {"reservation": await hotel.reserve(ctx.input["room"], ctx.idempotency_key)}

    async with SagaRunner(config, actions={"reserve": reserve, "release": release}) as runner:
        result = await runner.run("trip-42", "book-trip", [("reserve", "release")],
                                  context={"room": 12})

Every action must be idempotent (run twice, it takes effect once:
:attr:`SagaContext.idempotency_key` is stable across re-runs) and a step that raises
must have taken no effect. Results and the saga's input must be JSON-able.

The log holds only data its region may hold (:mod:`edgebus.sagas.residency`): a saga
whose input, id or names hold data the log's region may not hold is refused with
ComplianceViolation before anything is written; a step whose result holds such data
fails (its result is not logged; its own compensation runs first, since it took
effect; then the steps before it are compensated); an error text holding such data is
logged withheld (the exception's type and the classes found). Pass keys, not personal
data, between actions, and read the data inside the steps, in a region that may hold it.

One runner drives a saga at a time: :meth:`SagaRunner.run` refuses a saga id that is
unfinished in the log, and :meth:`SagaRunner.resume_all` is for the process that hosts
the sagas (call it at start-up), not for several processes at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
import uuid
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from edgebus.config import EdgeConfig, load_config
from edgebus.core.lifecycle import Lifecycle
from edgebus.core.saga import (
    DEFAULT_MAX_ATTEMPTS,
    CompensationDone,
    CompensationFailed,
    Finished,
    LogProgress,
    NeedsOperator,
    OperatorRetry,
    RunCompensation,
    RunStep,
    Saga,
    SagaBegun,
    SagaMessage,
    SagaOutput,
    SagaState,
    SagaStatus,
    Start,
    StepDone,
    StepFailed,
    decide_saga,
    new_state,
    resume,
)
from edgebus.errors import InvalidInput
from edgebus.sagas.inspection import check_status, detail, step_names, summary
from edgebus.sagas.progress import ProgressLog, SagaLog
from edgebus.sagas.residency import Held, LogResidency
from edgebus.sagas.results import (
    SagaAction,
    SagaContext,
    SagaResult,
    StepSpec,
    action_context,
    call_action,
    result_of,
    saga_steps_of,
    unreadable,
)
from edgebus.wire.saga_progress import (
    ProgressEntry,
    to_json_text,
)

__all__ = [
    "DEFAULT_RETRY_DELAY_MS",
    "SagaAction",
    "SagaContext",
    "SagaResult",
    "SagaRunner",
    "StepSpec",
]

log = logging.getLogger(__name__)

#: the pause before each new attempt at a compensation that failed
DEFAULT_RETRY_DELAY_MS = 200.0


class SagaRunner(Lifecycle):
    """Runs multi-step sagas and resumes those a crashed runner left unfinished.

    ``config``: an :class:`~edgebus.config.EdgeConfig` (or anything
    :func:`~edgebus.config.load_config` takes); the progress topic lives on the
    cluster of ``config.strong_log_region``. ``actions``: name -> :data:`SagaAction`
    (more with :meth:`register`). ``max_attempts``: how many times a failing
    compensation is tried before the saga is STUCK (recorded per saga).
    ``retry_delay_ms``: the pause before each new attempt. ``writer_id``: names this
    runner in the records it writes (default ``host:pid:random``).

    Use as ``async with SagaRunner(...) as runner:`` (or :meth:`start` / :meth:`stop`).
    """

    def __init__(
        self,
        config: EdgeConfig | Mapping[str, Any] | str | Path | None = None,
        actions: Mapping[str, SagaAction] | None = None,
        *,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        retry_delay_ms: float = DEFAULT_RETRY_DELAY_MS,
        writer_id: str | None = None,
    ) -> None:
        self.config = load_config(config)
        if max_attempts < 1:
            raise InvalidInput(f"max_attempts must be at least 1, got {max_attempts}")
        if retry_delay_ms < 0:
            raise InvalidInput(f"retry_delay_ms must be 0 or more, got {retry_delay_ms}")
        self.max_attempts = max_attempts
        self.retry_delay_ms = retry_delay_ms
        self.writer_id = writer_id or (
            f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        )
        self._log = ProgressLog(self.config, self.writer_id)
        self._residency = LogResidency.of(self.config)
        self.topic = self._log.topic
        self.bootstrap = self._log.bootstrap
        self._actions: dict[str, SagaAction] = {}
        for name, action in (actions or {}).items():
            self.register(name, action)
        self._active: set[str] = set()

    # ----------------------------------------------------------------- set-up

    def register(self, name: str, action: SagaAction) -> None:
        """Register ``action`` under ``name`` (replacing any action of that name)."""
        if not isinstance(name, str) or not name:
            raise InvalidInput(f"an action's name must be a non-empty string, got {name!r}")
        if not callable(action):
            raise InvalidInput(
                f"action {name!r} must be callable (an async function taking a "
                f"SagaContext), got {type(action).__name__}"
            )
        self._actions[name] = action

    @property
    def actions(self) -> tuple[str, ...]:
        """The names of the registered actions, sorted."""
        return tuple(sorted(self._actions))

    async def start(self) -> None:
        """Connect to the saga log's cluster; create the progress topic if missing."""
        await self._log.start()

    async def stop(self) -> None:
        """Disconnect (a saga being run is left where its log says: resume it later)."""
        await self._log.stop()

    # ----------------------------------------------------------------- running

    async def run(
        self,
        saga_id: str,
        name: str,
        steps: Sequence[StepSpec],
        context: Any = None,
        *,
        max_attempts: int | None = None,
    ) -> SagaResult:
        """Run a saga to its end: every step in order, or, when one fails, the
        compensations of the completed ones in reverse order.

        Returns ``completed``, ``compensated`` or ``stuck`` (a compensation failed
        ``max_attempts`` times: see :meth:`retry_stuck` and :meth:`mark_compensated`).
        A ``saga_id`` that already finished is not run again: its recorded result is
        returned (``acted`` False). InvalidInput for unknown action names, input that
        is not JSON-able, a ``saga_id`` recorded with another definition, or one that
        is unfinished in the log (resume it with :meth:`resume`); ComplianceViolation
        (nothing written) when the input, id or names hold data the log's region
        (``strong.log_region``) may not hold.
        """
        saga_steps = saga_steps_of(saga_id, name, steps)
        named = {s.action for s in saga_steps}
        named |= {s.compensation for s in saga_steps if s.compensation is not None}
        missing = sorted(named - set(self._actions))
        if missing:
            raise InvalidInput(
                f"saga {saga_id!r} ({name}): no action is registered under "
                f"{', '.join(map(repr, missing))}. Registered: "
                f"{', '.join(self.actions) or 'none'}. Register them (actions={{...}} or "
                "register()) or fix the step names."
            )
        given = json.loads(to_json_text(context, f"the context of saga {saga_id!r}"))
        self._residency.check_begun(saga_id, name, saga_steps, given)
        attempts = self.max_attempts if max_attempts is None else max_attempts
        if attempts < 1:
            raise InvalidInput(f"saga {saga_id!r}: max_attempts must be at least 1")
        self._check_started()
        with self._driving(saga_id):
            await self._log.catch_up()
            recorded = self._log.sagas.get(saga_id)
            if recorded is not None:
                state = self._log.recorded_state(saga_id, recorded)
                begun = recorded.begun
                assert begun is not None  # a state was folded from it
                if (begun.name, begun.steps, begun.context) != (name, saga_steps, given):
                    raise InvalidInput(
                        f"saga id {saga_id!r} is already recorded for another saga "
                        f"({begun.name}, steps {step_names(begun.steps)}, or another "
                        "context): pick a new saga id"
                    )
                if not state.status.finished:
                    raise InvalidInput(
                        f"saga {saga_id!r} is unfinished in the log ({state.status}, last "
                        f"record by {recorded.entries[-1].writer_id}): another runner may "
                        "be driving it. If none is, call resume(saga_id) to finish it."
                    )
                return result_of(state, recorded.entries, begun.name)
            state, outputs = decide_saga(new_state(Saga(saga_id, saga_steps), attempts), Start())
            return await self._drive(state, outputs, name, given, [])

    async def resume(self, saga_id: str) -> SagaResult:
        """Finish one saga from its log (a crashed runner's): the step or compensation
        it waits for runs again. A finished saga is reported, not run (``acted``
        False); a stuck one is reported (see :meth:`retry_stuck`). InvalidInput when
        the saga is unknown, or needs actions not registered here."""
        self._check_started()
        with self._driving(saga_id):
            await self._log.catch_up()
            recorded = self._log.known(saga_id)
            state = self._log.recorded_state(saga_id, recorded)
            missing = self._missing_actions(state)
            if missing:
                raise InvalidInput(
                    f"saga {saga_id!r} needs actions not registered here: "
                    f"{', '.join(missing)} (registered: {', '.join(self.actions) or 'none'})"
                )
            return await self._resume(state, recorded)

    async def resume_all(self) -> list[SagaResult]:
        """Read the progress topic from the beginning and finish every unfinished saga.

        For each saga not finished (and not being run by this runner): the step or
        compensation it waits for runs again (a restarted step is logged first as
        StepRestarted), then the saga goes on to its end. Returns one result per
        unfinished saga: those finished now; those still stuck (needing an operator);
        and, untouched, those needing actions not registered here (``missing_actions``)
        or whose log cannot be read (``problem``). Finished sagas are not listed.
        """
        self._check_started()
        await self._log.catch_up()
        out: list[SagaResult] = []
        for saga_id, recorded in list(self._log.sagas.items()):
            state = recorded.fold()
            if saga_id in self._active or (state is not None and state.status.finished):
                continue  # a finished saga stays finished: no need to read again
            with self._driving(saga_id):
                result = await self._resume_if_needed(saga_id)
            if result is not None:
                out.append(result)
        return out

    async def _resume_if_needed(self, saga_id: str) -> SagaResult | None:
        """Resume one saga for :meth:`resume_all` (``None``: it is finished)."""
        # read again: the saga may have been run by this runner since the first read
        await self._log.catch_up()
        recorded = self._log.sagas[saga_id]
        state = recorded.fold()
        if state is None:
            return unreadable(saga_id, recorded)
        if state.status.finished:
            return None
        begun = recorded.begun
        name = begun.name if begun is not None else ""
        missing = self._missing_actions(state)
        if missing:
            log.warning(
                "saga %s (%s) left as is: needs actions not registered here: %s",
                saga_id,
                name,
                ", ".join(missing),
            )
            return result_of(state, recorded.entries, name, missing=missing)
        return await self._resume(state, recorded)

    async def retry_stuck(self, saga_id: str) -> SagaResult:
        """An operator fixed what made a compensation fail: try it again (from attempt
        1), then go on compensating. InvalidInput when the saga is not stuck."""
        return await self._operator(saga_id, OperatorRetry())

    async def mark_compensated(self, saga_id: str, step: int) -> SagaResult:
        """An operator undid step ``step`` by hand: log its compensation as done, then
        go on compensating. InvalidInput when the saga does not wait for that step's
        compensation."""
        return await self._operator(saga_id, CompensationDone(step))

    async def _operator(self, saga_id: str, message: SagaMessage) -> SagaResult:
        self._check_started()
        with self._driving(saga_id):
            await self._log.catch_up()
            recorded = self._log.known(saga_id)
            state = self._log.recorded_state(saga_id, recorded)
            new, outputs = decide_saga(state, message)
            if new is state:
                waiting = (
                    f"the compensation of step {state.compensating}"
                    if state.compensating is not None and not state.status.finished
                    else "no compensation"
                )
                raise InvalidInput(
                    f"saga {saga_id!r} is {state.status} and waits for {waiting}: "
                    f"{type(message).__name__} changes nothing"
                )
            missing = self._missing_actions(new)
            if missing:
                raise InvalidInput(
                    f"saga {saga_id!r} needs actions not registered here: {', '.join(missing)}"
                )
            begun = recorded.begun
            assert begun is not None
            entries = list(recorded.entries)
            return await self._drive(new, outputs, begun.name, begun.context, entries)

    async def _resume(self, state: SagaState, recorded: SagaLog) -> SagaResult:
        begun = recorded.begun
        assert begun is not None
        if not state.status.finished:
            log.info("resuming saga %s (%s) at %s", state.saga_id, begun.name, state.status)
        return await self._drive(
            state, resume(state), begun.name, begun.context, list(recorded.entries)
        )

    async def _drive(
        self,
        state: SagaState,
        outputs: list[SagaOutput],
        name: str,
        context: Any,
        entries: list[ProgressEntry],
    ) -> SagaResult:
        """Perform ``outputs`` in order, feeding each action's answer back to the state
        machine, until the saga ends or waits for an operator."""
        acted = False
        queue: deque[SagaOutput] = deque(outputs)
        while queue:
            output = queue.popleft()
            message: SagaMessage | None = None
            if isinstance(output, LogProgress):
                begun = isinstance(output.record, SagaBegun)
                entry = ProgressEntry(
                    output.record,
                    _now_ms(),
                    self.writer_id,
                    name if begun else "",
                    context if begun else None,
                )
                await self._log.append(entry)
                entries.append(entry)
                acted = True
            elif isinstance(output, RunStep):
                message = await self._run_step(output, name, context, state.max_attempts)
                acted = True
            elif isinstance(output, RunCompensation):
                if output.attempt > 1 and self.retry_delay_ms:
                    await asyncio.sleep(self.retry_delay_ms / 1000)
                message = await self._run_compensation(output, name, context, state)
                acted = True
            elif isinstance(output, NeedsOperator):
                log.error("%s", output.message)
            elif isinstance(output, Finished):
                log.debug("saga %s %s", state.saga_id, output.outcome.status)
            if message is not None:
                state, more = decide_saga(state, message)
                queue.extend(more)
        return result_of(state, entries, name, acted=acted)

    async def _run_step(
        self, output: RunStep, name: str, context: Any, max_attempts: int
    ) -> SagaMessage:
        step = output.step
        ctx = action_context(output, name, context, "step", output.results, run=output.run)
        try:
            value = await call_action(self._actions[step.action], ctx)
        except Exception as e:  # the step failed (and, by contract, took no effect)
            error = self._loggable(e)
            log.warning(
                "saga %s step %d (%s) failed: %s", output.saga_id, output.index, step.name, error
            )
            return StepFailed(output.index, error, output.run)
        what = f"the result of step {output.index} ({step.action}) of saga {output.saga_id!r}"
        try:
            result = json.loads(to_json_text(value, what))
        except InvalidInput as e:
            raise InvalidInput(
                f"{e}. The step is left as started in the log: fix the action, then "
                "resume the saga (it runs the step again)."
            ) from e
        refusal = self._residency.result_refusal(output.index, step.name, result)
        if refusal is None:
            return StepDone(output.index, result)
        return await self._unloggable(output, name, context, result, refusal, max_attempts)

    async def _unloggable(
        self,
        output: RunStep,
        name: str,
        context: Any,
        result: Any,
        refusal: Held | str,
        max_attempts: int,
    ) -> SagaMessage:
        """A step ran, but its result holds data the log's region may not hold: the
        result is not logged, and the step fails. Later steps and the compensation would
        need the result, and a resumed runner has only the log, so the saga cannot go on
        with the result withheld. Unlike a step that raised, this one took effect: its
        own compensation runs first, here, with the result (up to ``max_attempts``
        times); then the saga compensates the steps before it. When undoing it fails
        every time, ComplianceViolation: the step is left as started in the log."""
        index, step = output.index, output.step
        text = self._residency.refusal_text(index, step.name, refusal)
        log.warning("saga %s: %s", output.saga_id, text)
        failed = await self._undo_step(output, name, context, result, max_attempts)
        classes = refusal.classes if isinstance(refusal, Held) else ()
        if failed is not None:
            raise self._residency.violation(
                classes,
                f"saga {output.saga_id!r}: {text}. The step took effect and undoing it "
                f"({step.compensation}) failed {max_attempts} times, last with: {failed}. "
                "The step is left as started in the log: fix the compensation or undo "
                "the step by hand, make the step return no such data, then resume the "
                "saga (it runs the step again)",
            )
        effect = (
            "its effect was undone (its compensation ran with the result)"
            if step.compensation is not None
            else "it has no compensation: its effect stays"
        )
        advice = self._residency.advice(classes)
        return StepFailed(index, f"{text}. The step took effect: {effect}. {advice}", output.run)

    async def _undo_step(
        self, output: RunStep, name: str, context: Any, result: Any, max_attempts: int
    ) -> str | None:
        """Run the compensation of the step of ``output`` (if it has one) with its
        unlogged ``result`` until it succeeds (``None``) or has failed ``max_attempts``
        times (the last error, as it may be logged)."""
        compensation = output.step.compensation
        if compensation is None:
            return None
        error = ""
        for attempt in range(1, max_attempts + 1):
            if attempt > 1 and self.retry_delay_ms:
                await asyncio.sleep(self.retry_delay_ms / 1000)
            ctx = action_context(output, name, context, "compensation", output.results,
                           result=result, attempt=attempt)
            try:
                await call_action(self._actions[compensation], ctx)
            except Exception as e:  # this attempt failed: try again
                error = self._loggable(e)
                log.warning("saga %s: undoing step %d, attempt %d failed: %s",
                            output.saga_id, output.index, attempt, error)
                continue
            return None
        return error

    async def _run_compensation(
        self, output: RunCompensation, name: str, context: Any, state: SagaState
    ) -> SagaMessage:
        step = output.step
        assert step.compensation is not None  # the state machine runs only those
        ctx = action_context(output, name, context, "compensation", state.results,
                       result=output.result, attempt=output.attempt)
        try:
            await call_action(self._actions[step.compensation], ctx)
        except Exception as e:  # this attempt failed: the state machine decides what next
            error = self._loggable(e)
            log.warning(
                "saga %s: compensating step %d (%s), attempt %d failed: %s",
                output.saga_id,
                output.index,
                step.name,
                output.attempt,
                error,
            )
            return CompensationFailed(output.index, error, output.attempt)
        return CompensationDone(output.index)

    async def list_sagas(self, status: str | None = None) -> list[dict[str, Any]]:
        """Every saga of the log (optionally only those with ``status``), oldest first,
        as JSON-able summaries: id, name, status, step counts, failure, times."""
        check_status(status)
        self._check_started()
        await self._log.catch_up()
        out = [summary(sid, recorded) for sid, recorded in self._log.sagas.items()]
        if status is not None:
            out = [s for s in out if s["status"] == status]
        out.sort(key=lambda s: (s["started_ms"] or 0, s["saga_id"]))
        return out

    async def show(self, saga_id: str) -> dict[str, Any]:
        """One saga in full, JSON-able: its summary, input, each step's status and
        result, the operator message if stuck, and every record with its time."""
        self._check_started()
        await self._log.catch_up()
        return detail(saga_id, self._log.known(saga_id))

    def _missing_actions(self, state: SagaState) -> tuple[str, ...]:
        """The actions the saga may still need that are not registered here."""
        steps = state.saga.steps
        if state.status is SagaStatus.RUNNING:
            needed = {s.action for s in steps[len(state.results) :]}
            needed |= {s.compensation for s in steps if s.compensation is not None}
        elif state.compensating is not None and not state.status.finished:
            needed = {
                s.compensation
                for s in steps[: state.compensating + 1]
                if s.compensation is not None
            }
        else:
            needed = set()
        return tuple(sorted(n for n in needed if n not in self._actions))

    def _loggable(self, error: BaseException) -> str:
        """``error`` described for the log: its type and message, or, when the message
        holds data the log's region may not hold, its type and the classes found."""
        if log.isEnabledFor(logging.DEBUG):
            log.debug("saga action failed", exc_info=error)
        return self._residency.loggable_error(_describe(error), type(error).__name__)

    def _check_started(self) -> None:
        if not self._log.started:
            raise InvalidInput(
                "the saga runner is not started: use `async with SagaRunner(...) as runner`"
                " or await runner.start() first"
            )

    @contextlib.contextmanager
    def _driving(self, saga_id: str) -> Iterator[None]:
        if saga_id in self._active:
            raise InvalidInput(f"saga {saga_id!r} is already being run by this runner")
        self._active.add(saga_id)
        try:
            yield
        finally:
            self._active.discard(saga_id)


# --------------------------------------------------------------------------- helpers


def _describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
