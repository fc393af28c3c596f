"""Property: whatever fails and whenever the saga host crashes, compensations run in
exactly the reverse order of the completed steps, only for steps that took effect, and
none is skipped.

The simulated shell performs a saga's outputs in order against a durable progress log;
it may crash between any two outputs or messages (its state is then rebuilt by ``recover`` and
carried on by ``resume``). Steps and compensations fail at random (a step that fails
takes no effect; running a step again that took effect succeeds without a second
effect; compensations are idempotent). Results are duplicated, reordered, and survive
crashes (a results topic), so stale results from before a crash arrive late. A stuck
saga gets an operator, who retries or undoes the step by hand.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from edgebus.core.saga import (
    CompensationDone,
    CompensationFailed,
    Finished,
    LogProgress,
    NeedsOperator,
    OperatorRetry,
    ProgressRecord,
    RunCompensation,
    RunStep,
    Saga,
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
    decide_saga,
    new_state,
    recover,
    resume,
)

MAX_EVENTS = 3_000


@dataclass
class World:
    rng: random.Random
    saga: Saga
    step_fail_p: float
    comp_fail_p: float
    state: SagaState
    log: list[ProgressRecord] = field(default_factory=list)
    inbox: list[SagaMessage] = field(default_factory=list)
    took_effect: set[int] = field(default_factory=set)  # steps whose effect ever happened
    in_effect: set[int] = field(default_factory=set)  # ... and is not undone
    compensation_runs: list[int] = field(default_factory=list)
    undone: list[int] = field(default_factory=list)  # successful compensations, in order
    finished: list[Finished] = field(default_factory=list)
    crashes: int = 0
    alarms: int = 0

    def logged_completed(self) -> set[int]:
        return {r.index for r in self.log if isinstance(r, StepCompleted)}

    def perform(self, outputs: list[SagaOutput], may_crash: bool) -> None:
        for out in outputs:
            if may_crash and self.rng.random() < 0.05:
                self.crash()
                return
            self.perform_one(out)

    def perform_one(self, out: SagaOutput) -> None:
        rng = self.rng
        if isinstance(out, LogProgress):
            self.log.append(out.record)
        elif isinstance(out, RunStep):
            i = out.index
            assert self.logged_completed() == set(range(i)), "a step ran out of order"
            if i in self.took_effect or rng.random() >= self.step_fail_p:
                self.took_effect.add(i)
                self.in_effect.add(i)
                self.inbox.append(StepDone(i, f"r{i}"))
            else:
                self.inbox.append(StepFailed(i, "failed", run=out.run))
        elif isinstance(out, RunCompensation):
            j = out.index
            assert j in self.logged_completed(), "compensated a step never logged as completed"
            assert j in self.took_effect, "compensated a step that never took effect"
            assert out.result == f"r{j}"
            self.compensation_runs.append(j)
            if rng.random() < self.comp_fail_p:
                self.inbox.append(CompensationFailed(j, "failed", attempt=out.attempt))
            else:
                self.undo(j)
                self.inbox.append(CompensationDone(j))
        elif isinstance(out, NeedsOperator):
            assert self.state.status is SagaStatus.STUCK
            self.alarms += 1
            if rng.random() < 0.3:  # undone by hand
                self.undo(out.index)
                self.inbox.append(CompensationDone(out.index))
            else:
                self.inbox.append(OperatorRetry())
        elif isinstance(out, Finished):
            self.finished.append(out)

    def undo(self, j: int) -> None:
        if j in self.in_effect:
            self.in_effect.discard(j)
            self.undone.append(j)

    def crash(self) -> None:
        self.crashes += 1
        if not self.log:  # it never began: whoever started it starts it again
            self.state = new_state(self.saga, self.state.max_attempts)
            self.inbox.append(Start())
            return
        self.state = recover(self.log)
        self.perform(resume(self.state), may_crash=False)

    def deliver(self, may_crash: bool) -> None:
        index = self.rng.randrange(len(self.inbox))
        duplicate = may_crash and self.rng.random() < 0.2
        message = self.inbox[index] if duplicate else self.inbox.pop(index)
        self.state, outputs = decide_saga(self.state, message)
        self.perform(outputs, may_crash)


def make_saga(rng: random.Random, n_steps: int) -> Saga:
    steps = tuple(
        Step(f"s{i}", f"do-{i}", f"undo-{i}" if rng.random() < 0.7 else None)
        for i in range(n_steps)
    )
    return Saga("saga", steps)


def run_world(seed: int, n_steps: int, max_attempts: int, chaos_events: int) -> World:
    rng = random.Random(seed)
    saga = make_saga(rng, n_steps)
    world = World(
        rng, saga, rng.choice((0.0, 0.1, 0.3)), rng.choice((0.0, 0.3, 0.6)),
        new_state(saga, max_attempts),
    )
    world.inbox.append(Start())
    for event in range(MAX_EVENTS):
        if not world.inbox:
            break
        chaos = event < chaos_events
        if chaos and rng.random() < 0.03:  # between two messages, results still in flight
            world.crash()
        world.deliver(may_crash=chaos)
    else:
        raise AssertionError("the saga never settled")
    return world


def check(world: World) -> None:
    saga, state = world.saga, world.state
    assert state.status.finished, f"ended {state.status}"
    assert world.finished and all(f.outcome == state.outcome for f in world.finished)
    completed = sorted(world.logged_completed())
    aborted = [r.index for r in world.log if isinstance(r, StepAborted)]
    if state.status is SagaStatus.COMPLETED:
        assert completed == list(range(len(saga.steps))) and not aborted
        assert world.compensation_runs == [] and world.undone == []
        assert world.in_effect == set(range(len(saga.steps)))
        return
    (failed,) = set(aborted)
    assert completed == list(range(failed)) and state.outcome.failed_step == failed
    assert world.took_effect == set(completed), "a step took effect without being logged"
    with_compensation = [i for i in completed if saga.steps[i].compensation is not None]
    # exactly the reverse order, none skipped, none twice
    assert world.undone == sorted(with_compensation, reverse=True)
    # every run (retries and re-runs after crashes included) goes down, never back up
    runs = world.compensation_runs
    assert all(a >= b for a, b in pairwise(runs)), runs
    assert world.in_effect == {i for i in completed if saga.steps[i].compensation is None}


@settings(max_examples=400, deadline=None)
@given(st.integers(0, 2**32), st.integers(0, 6), st.integers(1, 3), st.integers(0, 200))
def test_compensations_run_in_reverse_order_for_completed_steps_only_whatever_crashes(
    seed: int, n_steps: int, max_attempts: int, chaos_events: int
) -> None:
    check(run_world(seed, n_steps, max_attempts, chaos_events))


def test_the_simulated_worlds_crash_compensate_and_get_stuck() -> None:
    """The worlds above are not vacuous: across seeds they crash mid-saga, compensate
    after crashes, get stuck and complete."""
    crashed_compensations = stuck = completed = 0
    for seed in range(200):
        world = run_world(seed, 5, 2, 200)
        check(world)
        crashed_compensations += world.crashes > 0 and bool(world.undone)
        completed += world.state.status is SagaStatus.COMPLETED
        stuck += world.alarms > 0
    assert crashed_compensations > 10 and stuck > 10 and completed > 10
