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

One runner drives a saga at a time: :meth:`SagaRunner.run` refuses a saga id that is
unfinished in the log, and :meth:`SagaRunner.resume_all` is for the process that hosts
the sagas (call it at start-up), not for several processes at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import os
import socket
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from edgebus.config import EdgeConfig, load_config
from edgebus.core.saga import (
    DEFAULT_MAX_ATTEMPTS,
    CompensationAttemptFailed,
    CompensationCompleted,
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
    Step,
    StepAborted,
    StepCompleted,
    StepDone,
    StepFailed,
    StepRestarted,
    decide_saga,
    new_state,
    recover,
    resume,
)
from edgebus.errors import (
    DecodeError,
    InfrastructureUnavailable,
    InvalidInput,
    TopicLayoutMismatch,
    WriteFailed,
)
from edgebus.kafka.clients import Consumer, reader, start_producer
from edgebus.kafka.clusters import resolve_clusters
from edgebus.kafka.reading import seek_to_first, topic_partitions
from edgebus.kafka.topics import ensure_topics, saga_progress_topic
from edgebus.wire.saga_progress import (
    ProgressEntry,
    decode_progress,
    encode_progress,
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


@dataclass(frozen=True, slots=True)
class _Definition:
    """What a saga's SagaBegun record holds: its name, input and steps."""

    name: str
    context: Any
    steps: tuple[Step, ...]


@dataclass
class _SagaLog:
    """One saga's records as read from the topic (oldest first), and its fold."""

    entries: list[ProgressEntry] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    state: SagaState | None = None  #: ``None``: not folded since the last record

    @property
    def begun(self) -> _Definition | None:
        """The saga's definition, from its first record (``None``: not a SagaBegun)."""
        first = self.entries[0] if self.entries else None
        if first is None or not isinstance(first.record, SagaBegun):
            return None
        return _Definition(first.name, first.context, first.record.saga.steps)


class SagaRunner:
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
        self.topic = saga_progress_topic(self.config.strong_log_region)
        self.bootstrap = resolve_clusters(self.config)[self.config.strong_log_region]
        self._actions: dict[str, SagaAction] = {}
        for name, action in (actions or {}).items():
            self.register(name, action)
        self._stack: contextlib.AsyncExitStack | None = None
        self._producer: Any = None
        self._consumer: Consumer | None = None
        self._tps: list[TopicPartition] = []
        self._next: dict[TopicPartition, int] = {}
        self._read_lock = asyncio.Lock()
        self._logs: dict[str, _SagaLog] = {}
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
        if self._stack is not None:
            return
        stack = contextlib.AsyncExitStack()
        try:
            kafka = self.config.kafka
            consumer = await stack.enter_async_context(reader(kafka, self.bootstrap))
            self._tps = await self._ensure_topic(consumer)
            consumer.assign(self._tps)
            await seek_to_first(consumer, self._tps)
            firsts = await consumer.beginning_offsets(self._tps)
            self._next = {tp: int(firsts[tp]) for tp in self._tps}
            producer = await start_producer(
                kafka, self.bootstrap, "log", client_id=f"edgebus-saga-runner-{self.writer_id}",
                what="the saga progress log's Kafka",
            )
            stack.push_async_callback(producer.stop)
        except KafkaError as e:
            await stack.aclose()
            raise InfrastructureUnavailable(
                f"cannot read the saga log {self.topic}: {e}", [self.bootstrap]
            ) from e
        except BaseException:
            await stack.aclose()
            raise
        self._consumer, self._producer, self._stack = consumer, producer, stack

    async def stop(self) -> None:
        """Disconnect (a saga being run is left where its log says: resume it later)."""
        stack, self._stack = self._stack, None
        self._consumer = self._producer = None
        if stack is not None:
            await stack.aclose()

    async def __aenter__(self) -> SagaRunner:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _ensure_topic(self, consumer: Consumer) -> list[TopicPartition]:
        """The progress topic's partitions, creating it with ``kafka.partitions`` if
        missing. An existing topic is used whatever its partition count: a saga's
        records share one partition (the key), which is all its order needs."""
        tps = await topic_partitions(consumer, [self.topic])
        if tps:
            return tps
        kafka = self.config.kafka
        try:
            await ensure_topics(kafka, self.bootstrap, [self.topic])
        except TopicLayoutMismatch:
            # created meanwhile by another process with another partition count
            if not await topic_partitions(consumer, [self.topic]):
                raise
        for _ in range(50):
            tps = await topic_partitions(consumer, [self.topic])
            if tps:
                return tps
            await asyncio.sleep(0.1)
        raise InfrastructureUnavailable(
            f"the saga progress topic {self.topic} did not appear after it was created",
            [self.bootstrap],
        )

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
        is unfinished in the log (resume it with :meth:`resume`).
        """
        saga_steps = _steps(saga_id, name, steps)
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
        attempts = self.max_attempts if max_attempts is None else max_attempts
        if attempts < 1:
            raise InvalidInput(f"saga {saga_id!r}: max_attempts must be at least 1")
        self._check_started()
        with self._driving(saga_id):
            await self._catch_up()
            recorded = self._logs.get(saga_id)
            if recorded is not None:
                state = self._recorded_state(saga_id, recorded)
                begun = recorded.begun
                assert begun is not None  # a state was folded from it
                if (begun.name, begun.steps, begun.context) != (name, saga_steps, given):
                    raise InvalidInput(
                        f"saga id {saga_id!r} is already recorded for another saga "
                        f"({begun.name}, steps {_names(begun.steps)}, or another "
                        "context): pick a new saga id"
                    )
                if not state.status.finished:
                    raise InvalidInput(
                        f"saga {saga_id!r} is unfinished in the log ({state.status}, last "
                        f"record by {recorded.entries[-1].writer_id}): another runner may "
                        "be driving it. If none is, call resume(saga_id) to finish it."
                    )
                return _result(state, recorded.entries, begun.name)
            state, outputs = decide_saga(new_state(Saga(saga_id, saga_steps), attempts), Start())
            return await self._drive(state, outputs, name, given, [])

    async def resume(self, saga_id: str) -> SagaResult:
        """Finish one saga from its log (a crashed runner's): the step or compensation
        it waits for runs again. A finished saga is reported, not run (``acted``
        False); a stuck one is reported (see :meth:`retry_stuck`). InvalidInput when
        the saga is unknown, or needs actions not registered here."""
        self._check_started()
        with self._driving(saga_id):
            await self._catch_up()
            recorded = self._known(saga_id)
            state = self._recorded_state(saga_id, recorded)
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
        await self._catch_up()
        out: list[SagaResult] = []
        for saga_id, recorded in list(self._logs.items()):
            state = self._fold(recorded)
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
        await self._catch_up()
        recorded = self._logs[saga_id]
        state = self._fold(recorded)
        if state is None:
            return _unreadable(saga_id, recorded)
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
            return _result(state, recorded.entries, name, missing=missing)
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
            await self._catch_up()
            recorded = self._known(saga_id)
            state = self._recorded_state(saga_id, recorded)
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

    async def _resume(self, state: SagaState, recorded: _SagaLog) -> SagaResult:
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
                await self._append(entry)
                entries.append(entry)
                acted = True
            elif isinstance(output, RunStep):
                message = await self._run_step(output, name, context)
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
        return _result(state, entries, name, acted=acted)

    async def _run_step(self, output: RunStep, name: str, context: Any) -> SagaMessage:
        step = output.step
        ctx = SagaContext(
            saga_id=output.saga_id,
            saga_name=name,
            input=context,
            phase="step",
            step_index=output.index,
            step_name=step.name,
            results=output.results,
            run=output.run,
        )
        try:
            value = await _call(self._actions[step.action], ctx)
        except Exception as e:  # the step failed (and, by contract, took no effect)
            error = _describe(e)
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
        return StepDone(output.index, result)

    async def _run_compensation(
        self, output: RunCompensation, name: str, context: Any, state: SagaState
    ) -> SagaMessage:
        step = output.step
        assert step.compensation is not None  # the state machine runs only those
        ctx = SagaContext(
            saga_id=output.saga_id,
            saga_name=name,
            input=context,
            phase="compensation",
            step_index=output.index,
            step_name=step.name,
            results=state.results,
            result=output.result,
            attempt=output.attempt,
        )
        try:
            await _call(self._actions[step.compensation], ctx)
        except Exception as e:  # this attempt failed: the state machine decides what next
            error = _describe(e)
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

    async def _append(self, entry: ProgressEntry) -> None:
        """Append one record and wait for Kafka's acknowledgement (acks=all)."""
        value = encode_progress(entry)
        try:
            await self._producer.send_and_wait(
                self.topic, value=value, key=entry.saga_id.encode("utf-8")
            )
        except KafkaError as e:
            raise WriteFailed(
                f"saga {entry.saga_id!r}: Kafka did not acknowledge its {entry.type} record "
                f"on {self.topic} ({self.bootstrap}): {e}. Nothing after it was done; once "
                "Kafka answers, resume the saga (resume / resume_all) to finish it."
            ) from e

    # ----------------------------------------------------------------- reading

    async def list_sagas(self, status: str | None = None) -> list[dict[str, Any]]:
        """Every saga of the log (optionally only those with ``status``), oldest first,
        as JSON-able summaries: id, name, status, step counts, failure, times."""
        if status is not None and status not in {s.value for s in SagaStatus} | {"unreadable"}:
            known = ", ".join([*(s.value for s in SagaStatus), "unreadable"])
            raise InvalidInput(f"unknown saga status {status!r}: pick one of {known}")
        self._check_started()
        await self._catch_up()
        out = [self._summary(sid, recorded) for sid, recorded in self._logs.items()]
        if status is not None:
            out = [s for s in out if s["status"] == status]
        out.sort(key=lambda s: (s["started_ms"] or 0, s["saga_id"]))
        return out

    async def show(self, saga_id: str) -> dict[str, Any]:
        """One saga in full, JSON-able: its summary, input, each step's status and
        result, the operator message if stuck, and every record with its time."""
        self._check_started()
        await self._catch_up()
        recorded = self._known(saga_id)
        out = self._summary(saga_id, recorded)
        state = self._fold(recorded)
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

    def _summary(self, saga_id: str, recorded: _SagaLog) -> dict[str, Any]:
        state = self._fold(recorded)
        begun = recorded.begun
        entries = recorded.entries
        return {
            "saga_id": saga_id,
            "name": begun.name if begun is not None else None,
            "status": str(state.status) if state is not None else "unreadable",
            "steps": _names(state.saga.steps) if state is not None else [],
            "completed_steps": len(state.results) if state is not None else 0,
            "failed_step": state.failed_step if state is not None else None,
            "error": state.failure if state is not None else None,
            "started_ms": entries[0].time_ms if entries else None,
            "updated_ms": entries[-1].time_ms if entries else None,
            "writer_id": entries[-1].writer_id if entries else None,
            "records": len(entries),
            "problem": "; ".join(recorded.problems) or None,
        }

    async def _catch_up(self) -> None:
        """Read every record appended since the last call (up to the end offsets of
        now) into the in-memory index of sagas."""
        consumer = self._consumer
        assert consumer is not None
        async with self._read_lock:
            stall_s = max(self.config.kafka.connect_timeout_s, 5.0)
            try:
                ends = await consumer.end_offsets(self._tps)
                remaining = {tp: int(end) for tp, end in ends.items() if self._next[tp] < end}
                progress = time.monotonic()
                while remaining:
                    batch = await consumer.getmany(*remaining, timeout_ms=500)
                    for tp, records in batch.items():
                        for record in records:
                            self._next[tp] = record.offset + 1
                            self._index(record)
                        if records:
                            progress = time.monotonic()
                        if tp in remaining and self._next[tp] >= remaining[tp]:
                            del remaining[tp]
                    if remaining and time.monotonic() - progress > stall_s:
                        raise InfrastructureUnavailable(
                            f"reading the saga log {self.topic} stalled for {stall_s:.0f} s "
                            f"({len(remaining)} partitions not read to their end)",
                            [self.bootstrap],
                        )
            except KafkaError as e:
                raise InfrastructureUnavailable(
                    f"cannot read the saga log {self.topic}: {e}", [self.bootstrap]
                ) from e

    def _index(self, record: ConsumerRecord[bytes, bytes]) -> None:
        key = record.key.decode("utf-8", "replace") if record.key else None
        try:
            entry = decode_progress(record.value)
        except DecodeError as e:
            where = f"partition {record.partition} offset {record.offset}: {e}"
            log.warning("saga log %s, %s", self.topic, where)
            if key is not None:  # the saga it belongs to cannot be rebuilt: leave it as is
                self._logs.setdefault(key, _SagaLog()).problems.append(where)
            return
        recorded = self._logs.setdefault(entry.saga_id, _SagaLog())
        recorded.entries.append(entry)
        recorded.state = None

    def _fold(self, recorded: _SagaLog) -> SagaState | None:
        """The saga's state (cached), or ``None`` when its log cannot be read."""
        if recorded.problems:
            return None
        if recorded.state is None:
            try:
                recorded.state = recover(e.record for e in recorded.entries)
            except InvalidInput as e:  # no SagaBegun first: the log is damaged or cut
                recorded.problems.append(str(e))
                return None
        return recorded.state

    def _recorded_state(self, saga_id: str, recorded: _SagaLog) -> SagaState:
        state = self._fold(recorded)
        if state is None:
            raise DecodeError(
                f"saga {saga_id!r}: its log in {self.topic} cannot be read "
                f"({'; '.join(recorded.problems)}); it is left as is"
            )
        return state

    def _known(self, saga_id: str) -> _SagaLog:
        recorded = self._logs.get(saga_id)
        if recorded is None:
            raise InvalidInput(
                f"no saga {saga_id!r} in the saga log {self.topic} on {self.bootstrap}: "
                "list_sagas() shows the known ones"
            )
        return recorded

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

    def _check_started(self) -> None:
        if self._stack is None:
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


def _steps(saga_id: str, name: str, steps: Sequence[StepSpec]) -> tuple[Step, ...]:
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


def _names(steps: Iterable[Step]) -> list[str]:
    return [s.name for s in steps]


async def _call(action: SagaAction, ctx: SagaContext) -> Any:
    value = action(ctx)
    if inspect.isawaitable(value):
        value = await value
    return value


def _describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _result(
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
        steps=tuple(_names(state.saga.steps)),
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


def _unreadable(saga_id: str, recorded: _SagaLog) -> SagaResult:
    begun = recorded.begun
    return SagaResult(
        saga_id=saga_id,
        name=begun.name if begun is not None else "",
        status=SagaStatus.NOT_STARTED,
        steps=tuple(_names(begun.steps)) if begun is not None else (),
        problem="; ".join(recorded.problems) or "its log cannot be read",
    )


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
