"""Sagas: steps in order, compensations in reverse order, retries, operator, recovery."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

import pytest

from edgebus.core.saga import (
    CompensationAttemptFailed,
    CompensationCompleted,
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
    recover_all,
    resume,
)
from edgebus.errors import InvalidInput

T = TypeVar("T")

BOOKING = Saga(
    "trip-1",
    (
        Step("reserve-flight", "flight.reserve", "flight.cancel"),
        Step("notify", "mail.send", None),
        Step("reserve-hotel", "hotel.reserve", "hotel.cancel"),
        Step("charge-card", "card.charge", "card.refund"),
    ),
)


def drive(
    messages: Iterable[SagaMessage], state: SagaState | None = None
) -> tuple[SagaState, list[SagaOutput]]:
    state = state or new_state(BOOKING)
    outputs: list[SagaOutput] = []
    for m in messages:
        state, out = decide_saga(state, m)
        outputs += out
    return state, outputs


def of_type(outputs: Iterable[object], kind: type[T]) -> list[T]:
    return [o for o in outputs if isinstance(o, kind)]


def logged(outputs: Iterable[object]) -> list[ProgressRecord]:
    return [o.record for o in of_type(outputs, LogProgress)]


def failed_at_step(index: int) -> tuple[SagaState, list[SagaOutput]]:
    """The booking saga after steps 0..index-1 completed and step ``index`` failed."""
    done = [StepDone(i, f"r{i}") for i in range(index)]
    return drive([Start(), *done, StepFailed(index, "card declined")])


def test_steps_run_in_order_each_only_after_the_progress_before_it_is_logged() -> None:
    state, out = drive([Start()])
    assert out == [
        LogProgress(SagaBegun(BOOKING, 3)),
        RunStep("trip-1", 0, BOOKING.steps[0], 1, ()),
    ]
    state, out = drive([StepDone(0, "PNR42")], state)
    assert out == [
        LogProgress(StepCompleted("trip-1", 0, "PNR42")),
        RunStep("trip-1", 1, BOOKING.steps[1], 1, ("PNR42",)),
    ]


def test_a_saga_whose_steps_all_complete_finishes_completed_with_their_results() -> None:
    state, out = drive([Start(), *(StepDone(i, f"r{i}") for i in range(4))])
    assert state.status is SagaStatus.COMPLETED
    assert out[-2:] == [
        LogProgress(StepCompleted("trip-1", 3, "r3")),
        Finished(state.outcome),
    ]
    assert state.outcome.results == ("r0", "r1", "r2", "r3")
    assert of_type(out, RunCompensation) == []


def test_a_saga_without_steps_completes_at_once() -> None:
    state, out = drive([Start()], new_state(Saga("empty", ())))
    assert state.status is SagaStatus.COMPLETED and of_type(out, Finished)


def test_a_failed_step_compensates_the_completed_steps_in_reverse_order() -> None:
    state, out = failed_at_step(3)
    assert logged(out)[-1] == StepAborted("trip-1", 3, "card declined")
    (run,) = of_type(out, RunCompensation)
    assert (run.index, run.result, run.attempt) == (2, "r2", 1)
    order = [run.index]
    while state.status is SagaStatus.COMPENSATING:
        assert state.compensating is not None
        state, out = drive([CompensationDone(state.compensating)], state)
        order += [r.index for r in of_type(out, RunCompensation)]
    # step 1 (notify) has no compensation: passed over
    assert order == [2, 0]
    assert state.status is SagaStatus.COMPENSATED
    assert of_type(out, Finished) == [Finished(state.outcome)]
    assert (state.outcome.failed_step, state.outcome.error) == (3, "card declined")


def test_a_compensation_gets_the_result_of_the_step_it_undoes() -> None:
    _, out = failed_at_step(1)
    assert of_type(out, RunCompensation) == [
        RunCompensation("trip-1", 0, BOOKING.steps[0], "r0", 1)
    ]


def test_the_failure_of_the_first_step_ends_compensated_with_nothing_to_undo() -> None:
    state, out = failed_at_step(0)
    assert state.status is SagaStatus.COMPENSATED
    assert of_type(out, RunCompensation) == [] and of_type(out, Finished)


def test_a_failed_compensation_is_run_again_counting_attempts_then_needs_an_operator() -> None:
    state, _ = failed_at_step(3)
    state, out = drive([CompensationFailed(2, "hotel API down")], state)
    assert logged(out) == [CompensationAttemptFailed("trip-1", 2, 1, "hotel API down")]
    assert [r.attempt for r in of_type(out, RunCompensation)] == [2]
    state, out = drive([CompensationFailed(2, "timeout"), CompensationFailed(2, "timeout")], state)
    assert [r.attempt for r in of_type(out, RunCompensation)] == [3]  # none after the third
    assert state.status is SagaStatus.STUCK and isinstance(out[-1], NeedsOperator)
    (alarm,) = of_type(out, NeedsOperator)
    assert (alarm.index, alarm.step_name, alarm.attempts) == (2, "reserve-hotel", 3)
    assert "compensation of step 2 (reserve-hotel) failed 3 times" in alarm.message
    assert "timeout" in alarm.message and "OperatorRetry" in alarm.message
    assert alarm.message == state.stuck_message


def test_an_operator_retry_runs_a_stuck_compensation_again_from_attempt_one() -> None:
    state, _ = failed_at_step(1)
    state, _ = drive([CompensationFailed(0, "x")] * 3, state)
    assert state.status is SagaStatus.STUCK
    state, out = drive([OperatorRetry()], state)
    assert of_type(out, RunCompensation) == [
        RunCompensation("trip-1", 0, BOOKING.steps[0], "r0", 1)
    ]
    state, _ = drive([CompensationDone(0)], state)
    assert state.status is SagaStatus.COMPENSATED


def test_a_compensation_done_by_hand_moves_a_stuck_saga_on() -> None:
    state, _ = failed_at_step(3)
    state, _ = drive([CompensationFailed(2, "x")] * 3, state)
    state, out = drive([CompensationDone(2)], state)
    assert state.status is SagaStatus.COMPENSATING and state.compensating == 0
    assert [r.index for r in of_type(out, RunCompensation)] == [0]


def test_duplicate_and_stale_messages_change_nothing() -> None:
    state, _ = drive([Start(), StepDone(0, "r0")])
    for stale in (Start(), StepDone(0, "again"), StepDone(3), StepFailed(0, "late"),
                  CompensationDone(0), CompensationFailed(0, "x"), OperatorRetry()):
        assert drive([stale], state) == (state, [])
    state, _ = failed_at_step(3)
    for stale in (StepDone(3), StepFailed(3, "again"), CompensationDone(0), CompensationDone(3)):
        assert drive([stale], state) == (state, [])


def test_a_failure_reported_by_an_older_run_of_the_step_is_ignored() -> None:
    _, out = drive([Start(), StepDone(0, "r0")])
    state = recover(logged(out))  # crashed while step 1 ran: it runs again as run 2
    assert state.run == 2
    assert drive([StepFailed(1, "from run 1", run=1)], state) == (state, [])
    state, _ = drive([StepFailed(1, "from run 2", run=2)], state)
    assert state.status is SagaStatus.COMPENSATING


def test_a_compensation_failure_for_an_older_attempt_is_ignored() -> None:
    state, _ = failed_at_step(1)
    state, _ = drive([CompensationFailed(0, "x", attempt=1)], state)
    assert state.attempts == 1
    assert drive([CompensationFailed(0, "x", attempt=1)], state) == (state, [])


def test_saga_settings_are_checked() -> None:
    with pytest.raises(InvalidInput, match="max_attempts must be at least 1"):
        new_state(BOOKING, max_attempts=0)
    with pytest.raises(InvalidInput, match="steps must be a tuple"):
        Saga("s", [Step("a", "a")])  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="not a saga message"):
        decide_saga(new_state(BOOKING), "go")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- recovery


def test_recovery_rebuilds_exactly_the_live_state_from_the_logged_progress() -> None:
    messages: list[SagaMessage] = [
        Start(), StepDone(0, "r0"), StepDone(1, "r1"), StepDone(2, "r2"),
        StepFailed(3, "declined"), CompensationFailed(2, "x"),
    ]
    state, out = drive(messages)
    recovered = recover(logged(out))
    assert recovered == state


def test_recovery_mid_step_logs_the_restart_and_runs_the_step_again() -> None:
    _, out = drive([Start(), StepDone(0, "r0")])
    state = recover(logged(out))
    assert state.status is SagaStatus.RUNNING
    assert resume(state) == [
        LogProgress(StepRestarted("trip-1", 1, 2)),
        RunStep("trip-1", 1, BOOKING.steps[1], 2, ("r0",)),
    ]
    # crashed again before that restart was logged: the same run number is reused
    assert recover(logged(out)).run == 2
    assert recover([*logged(out), StepRestarted("trip-1", 1, 2)]).run == 3


def test_recovery_mid_compensation_runs_the_same_compensation_again_keeping_attempts() -> None:
    state, out = failed_at_step(3)
    state, out2 = drive([CompensationDone(2), CompensationFailed(0, "x")], state)
    recovered = recover(logged(out + out2))
    assert recovered.status is SagaStatus.COMPENSATING
    assert resume(recovered) == [RunCompensation("trip-1", 0, BOOKING.steps[0], "r0", 2)]


def test_recovery_of_a_stuck_saga_asks_the_operator_again() -> None:
    state, out = failed_at_step(1)
    state, out2 = drive([CompensationFailed(0, "x")] * 3, state)
    (alarm,) = of_type(resume(recover(logged(out + out2))), NeedsOperator)
    assert alarm.index == 0 and alarm.attempts == 3


def test_recovery_of_an_ended_saga_reports_the_end_again() -> None:
    state, out = drive([Start(), *(StepDone(i, i) for i in range(4))])
    assert resume(recover(logged(out))) == [Finished(state.outcome)]


def test_duplicate_progress_records_are_harmless_in_recovery() -> None:
    state, out = failed_at_step(3)
    state, out2 = drive([CompensationFailed(2, "x")], state)
    records = logged(out + out2)
    doubled = [r for record in records for r in (record, record)]
    assert recover(doubled) == recover(records) == state


def test_recover_needs_the_saga_begun_record_first() -> None:
    with pytest.raises(InvalidInput, match="must start with its SagaBegun record"):
        recover([StepCompleted("trip-1", 0, "r0")])
    with pytest.raises(InvalidInput, match="found no record"):
        recover([])


def test_recover_refuses_records_of_another_saga_and_recover_all_separates_them() -> None:
    other = Saga("trip-2", (Step("a", "a", "undo-a"),))
    records: list[ProgressRecord] = [
        SagaBegun(BOOKING, 3), SagaBegun(other, 2), StepCompleted("trip-1", 0, "r0"),
        CompensationCompleted("trip-2", 0),
    ]
    with pytest.raises(InvalidInput, match="recover one saga at a time"):
        recover(records)
    states = recover_all(records)
    assert states["trip-1"].results == ("r0",) and states["trip-2"].status is SagaStatus.RUNNING
