"""Multi-step sagas on real Kafka (issue 5, item 6): compensations run in reverse order,
failing compensations are retried, a saga host killed with SIGKILL mid-saga is resumed
from the progress log by another process, and a finished saga is never run again.

Every test has its own log region (``<tag>-saga``), hence its own progress topic
``edgebus.<tag>-saga.sagas`` on the session's broker, and its own saga ids and action
names (``<tag>.<action>``).
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edgebus.config import EdgeConfig, load_config
from edgebus.core.saga import SagaStatus, Step
from edgebus.errors import InvalidInput
from edgebus.kafka.reading import read_to_end
from edgebus.kafka.topics import saga_progress_topic
from edgebus.sagas.runner import SagaAction, SagaContext, SagaResult, SagaRunner
from edgebus.wire.saga_progress import decode_progress
from tests.child_process import ChildProcess
from tests.integration.saga_worker import action_names, make_actions, read_lines, saga_config
from tests.kafka_settings import KAFKA

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def tag() -> str:
    return "t" + uuid.uuid4().hex[:8]


@pytest.fixture
def config(kafka_bootstrap: str, tag: str) -> EdgeConfig:
    return load_config(saga_config(kafka_bootstrap, tag))


class Recorder:
    """Actions that record their calls (``name``, phase, index, and what they saw)."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.calls: list[str] = []
        self.seen: dict[str, list[SagaContext]] = {}

    def action(
        self, name: str, fail: Callable[[SagaContext], str | None] = lambda ctx: None
    ) -> tuple[str, SagaAction]:
        """``<tag>.<name>``: records the call, raises if ``fail(ctx)`` says why."""

        async def perform(ctx: SagaContext) -> Any:
            self.calls.append(name)
            self.seen.setdefault(name, []).append(ctx)
            why = fail(ctx)
            if why:
                raise RuntimeError(why)
            return {"by": name, "step": ctx.step_index}

        return f"{self.tag}.{name}", perform

    def steps(self, *pairs: tuple[str, str | None]) -> list[tuple[str, str | None]]:
        return [(f"{self.tag}.{a}", f"{self.tag}.{c}" if c else None) for a, c in pairs]

    def checkout(
        self, refund_fails: Callable[[SagaContext], str | None] = lambda ctx: None
    ) -> tuple[dict[str, SagaAction], list[tuple[str, str | None]]]:
        """The actions and steps of the saga ``checkout`` whose third step fails:
        reserve/release, charge/refund (failing where ``refund_fails`` says), ship
        ("no courier available")."""
        actions = dict(
            [
                self.action("reserve"),
                self.action("release"),
                self.action("charge"),
                self.action("refund", fail=refund_fails),
                self.action("ship", fail=lambda ctx: "no courier available"),
            ]
        )
        return actions, self.steps(("reserve", "release"), ("charge", "refund"), ("ship", None))


#: the progress log of ``checkout`` up to the failure of its third step
ABORTED_AT_STEP_3 = [
    ("SAGA_BEGUN", None),
    ("STEP_COMPLETED", 0),
    ("STEP_COMPLETED", 1),
    ("STEP_ABORTED", 2),
]
#: ... and once both compensations completed at the first attempt, in reverse order
COMPENSATED_AFTER_STEP_3 = [
    *ABORTED_AT_STEP_3,
    ("COMPENSATION_COMPLETED", 1),
    ("COMPENSATION_COMPLETED", 0),
]


def kinds(shown: dict[str, Any]) -> list[tuple[str, int | None]]:
    """(record type, step) of every record of a shown saga, in log order."""
    return [(r["type"], r.get("step")) for r in shown["records"]]


async def test_a_failed_step_3_compensates_step_2_then_step_1_and_the_log_shows_it(
    config: EdgeConfig, kafka_bootstrap: str, tag: str
) -> None:
    rec = Recorder(tag)
    actions, steps = rec.checkout()
    saga_id = f"saga-{tag}"
    async with SagaRunner(config, actions) as runner:
        result = await runner.run(saga_id, "checkout", steps, context={"order": 17})
        shown = await runner.show(saga_id)

    assert rec.calls == ["reserve", "charge", "ship", "refund", "release"]
    assert result.status is SagaStatus.COMPENSATED
    assert result.failed_step == 2
    assert result.error == "RuntimeError: no courier available"
    assert result.completed_steps == (0, 1)
    assert result.compensated_steps == (1, 0)
    assert result.acted
    # each compensation is handed what its step returned, and the saga's input
    (refund,) = rec.seen["refund"]
    assert refund.result == {"by": "charge", "step": 1}
    assert refund.input == {"order": 17}
    assert rec.seen["ship"][0].results == (
        {"by": "reserve", "step": 0},
        {"by": "charge", "step": 1},
    )

    expected = COMPENSATED_AFTER_STEP_3
    assert kinds(shown) == expected
    assert shown["status"] == "compensated"
    assert [s["status"] for s in shown["step_details"]] == ["compensated", "compensated", "failed"]
    json.dumps(shown)  # JSON-able as the CLI will print it

    # a plain consumer of the topic sees the same records, keyed by the saga id
    raw = [
        decode_progress(r.value)
        for r in await read_to_end(
            KAFKA, kafka_bootstrap, saga_progress_topic(config.strong_log_region)
        )
        if r.key == saga_id.encode()
    ]
    assert [(e.type, getattr(e.record, "index", None)) for e in raw] == expected


async def test_a_compensation_that_fails_twice_then_succeeds_is_retried(
    config: EdgeConfig, tag: str
) -> None:
    rec = Recorder(tag)
    actions, steps = rec.checkout(
        refund_fails=lambda ctx: f"bank busy ({ctx.attempt})" if ctx.attempt < 3 else None
    )
    saga_id = f"saga-{tag}"
    async with SagaRunner(config, actions, max_attempts=3, retry_delay_ms=10) as runner:
        result = await runner.run(saga_id, "checkout", steps)
        shown = await runner.show(saga_id)

    assert rec.calls == ["reserve", "charge", "ship", "refund", "refund", "refund", "release"]
    assert [ctx.attempt for ctx in rec.seen["refund"]] == [1, 2, 3]
    assert len({ctx.idempotency_key for ctx in rec.seen["refund"]}) == 1
    assert result.status is SagaStatus.COMPENSATED
    assert result.compensated_steps == (1, 0)
    assert result.compensation_errors == (
        (1, 1, "RuntimeError: bank busy (1)"),
        (1, 2, "RuntimeError: bank busy (2)"),
    )
    assert kinds(shown) == [
        *ABORTED_AT_STEP_3,
        ("COMPENSATION_ATTEMPT_FAILED", 1),
        ("COMPENSATION_ATTEMPT_FAILED", 1),
        ("COMPENSATION_COMPLETED", 1),
        ("COMPENSATION_COMPLETED", 0),
    ]
    assert [r.get("attempt") for r in shown["records"][4:6]] == [1, 2]


async def test_a_compensation_failing_max_attempts_times_is_stuck_until_an_operator_retries(
    config: EdgeConfig, tag: str
) -> None:
    rec = Recorder(tag)
    bank_up = False
    actions = dict(
        [
            rec.action("charge"),
            rec.action("refund", fail=lambda ctx: None if bank_up else "bank down"),
            rec.action("ship", fail=lambda ctx: "no courier available"),
        ]
    )
    saga_id = f"saga-{tag}"
    async with SagaRunner(config, actions, max_attempts=2, retry_delay_ms=10) as runner:
        steps = rec.steps(("charge", "refund"), ("ship", None))
        stuck = await runner.run(saga_id, "checkout", steps)
        assert stuck.status is SagaStatus.STUCK
        assert stuck.stuck_message is not None and "failed 2 times" in stuck.stuck_message
        assert rec.calls == ["charge", "ship", "refund", "refund"]
        # resume_all reports it, runs nothing
        again = [r for r in await runner.resume_all() if r.saga_id == saga_id]
        assert [(r.status, r.acted) for r in again] == [(SagaStatus.STUCK, False)]
        assert rec.calls == ["charge", "ship", "refund", "refund"]

        bank_up = True
        fixed = await runner.retry_stuck(saga_id)
        assert fixed.status is SagaStatus.COMPENSATED
        assert rec.calls == ["charge", "ship", "refund", "refund", "refund"]
        assert [ctx.attempt for ctx in rec.seen["refund"]] == [1, 2, 1]
        assert kinds(await runner.show(saga_id))[-2:] == [
            ("OPERATOR_RETRIED", 0),
            ("COMPENSATION_COMPLETED", 0),
        ]
        with pytest.raises(InvalidInput, match="changes nothing"):
            await runner.retry_stuck(saga_id)


async def test_a_stuck_compensation_an_operator_did_by_hand_is_logged_and_compensating_goes_on(
    config: EdgeConfig, tag: str
) -> None:
    rec = Recorder(tag)
    actions, steps = rec.checkout(refund_fails=lambda ctx: "bank down")
    saga_id = f"saga-{tag}"
    async with SagaRunner(config, actions, max_attempts=1) as runner:
        stuck = await runner.run(saga_id, "checkout", steps)
        assert stuck.status is SagaStatus.STUCK
        assert (await runner.show(saga_id))["step_details"][1]["status"] == "stuck"
        with pytest.raises(InvalidInput, match="waits for the compensation of step 1"):
            await runner.mark_compensated(saga_id, 0)
        done = await runner.mark_compensated(saga_id, 1)
        shown = await runner.show(saga_id)

    assert rec.calls == ["reserve", "charge", "ship", "refund", "release"]
    assert done.status is SagaStatus.COMPENSATED
    assert done.compensated_steps == (1, 0)
    assert kinds(shown)[-3:] == [
        ("COMPENSATION_ATTEMPT_FAILED", 1),
        ("COMPENSATION_COMPLETED", 1),
        ("COMPENSATION_COMPLETED", 0),
    ]


def _worker(
    kafka_bootstrap: str, workdir: Path, tag: str, saga_id: str, mode: str
) -> ChildProcess:
    """The saga worker as a child process (not started); its stdout and stderr go to
    ``workdir/worker.log``."""
    log = workdir / "worker.log"
    return ChildProcess(
        [sys.executable, "-m", "tests.integration.saga_worker",
         kafka_bootstrap, str(workdir), tag, saga_id, mode],
        log=log, stdout=log, cwd=REPO, name="the saga worker",
    )  # fmt: skip


async def _kill_worker_at(
    kafka_bootstrap: str, workdir: Path, tag: str, saga_id: str, mode: str, line: str
) -> ChildProcess:
    """Start the saga worker in ``mode``, wait until ``line`` is in its journal (at
    most 90 s; it fails the test at once if the worker exits first), then kill it with
    SIGKILL, and create ``workdir/release`` so that the next host's actions do not
    block. The killed worker, for its return code."""
    worker = _worker(kafka_bootstrap, workdir, tag, saga_id, mode)
    journal = workdir / "journal"
    try:
        await asyncio.to_thread(
            worker.start, ready=lambda: line in read_lines(journal), timeout_s=90
        )
    finally:
        worker.kill()
    (workdir / "release").touch()
    return worker


async def test_a_saga_host_killed_during_step_2_is_resumed_by_another_process_and_completes(
    config: EdgeConfig, kafka_bootstrap: str, tag: str, tmp_path: Path
) -> None:
    saga_id = f"saga-{tag}"
    # step 2 (charge) runs only once step 1's completion is acknowledged by Kafka
    worker = await _kill_worker_at(
        kafka_bootstrap, tmp_path, tag, saga_id, "block-step", "charge run 1"
    )
    assert worker.returncode == -signal.SIGKILL

    async with SagaRunner(config, {}) as bystander:
        before = await bystander.show(saga_id)
        assert kinds(before) == [("SAGA_BEGUN", None), ("STEP_COMPLETED", 0)]
        assert before["status"] == "running"
        # a runner without the saga's actions reports it and touches nothing
        (left,) = [r for r in await bystander.resume_all() if r.saga_id == saga_id]
        assert left.status is SagaStatus.RUNNING and not left.acted
        # what it may still need: steps 2 and 3, and every compensation
        assert left.missing_actions == tuple(
            f"{tag}.{a}" for a in ("charge", "refund", "release", "ship")
        )
        assert kinds(await bystander.show(saga_id)) == kinds(before)

    async with SagaRunner(config, make_actions(tmp_path, tag, "block-step")) as runner:
        with pytest.raises(InvalidInput, match="unfinished in the log"):
            await runner.run(saga_id, "checkout", action_names(tag), context={"order": 7})
        (resumed,) = [r for r in await runner.resume_all() if r.saga_id == saga_id]
        shown = await runner.show(saga_id)

    assert resumed.status is SagaStatus.COMPLETED and resumed.acted
    assert resumed.results == tuple(
        {"done": step, "key": f"{saga_id}/{i}/step"}
        for i, step in enumerate(("reserve", "charge", "ship"))
    )
    # step 2 ran again (run 2, logged first as a restart); step 1 did not
    assert read_lines(tmp_path / "journal") == [
        "reserve run 1", "charge run 1", "charge run 2", "ship run 1",
    ]  # fmt: skip
    assert read_lines(tmp_path / "effects") == ["reserve", "charge", "ship"]
    assert kinds(shown) == [
        ("SAGA_BEGUN", None),
        ("STEP_COMPLETED", 0),
        ("STEP_RESTARTED", 1),
        ("STEP_COMPLETED", 1),
        ("STEP_COMPLETED", 2),
    ]
    assert shown["records"][2]["run"] == 2
    assert shown["records"][0]["writer_id"] != shown["records"][2]["writer_id"]


async def test_a_saga_host_killed_during_a_compensation_is_resumed_and_compensates_once(
    config: EdgeConfig, kafka_bootstrap: str, tag: str, tmp_path: Path
) -> None:
    saga_id = f"saga-{tag}"
    await _kill_worker_at(
        kafka_bootstrap, tmp_path, tag, saga_id, "block-compensation", "refund attempt 1"
    )
    async with SagaRunner(config, make_actions(tmp_path, tag, "block-compensation")) as runner:
        (resumed,) = [r for r in await runner.resume_all() if r.saga_id == saga_id]
        shown = await runner.show(saga_id)

    assert resumed.status is SagaStatus.COMPENSATED
    assert resumed.compensated_steps == (1, 0)
    assert read_lines(tmp_path / "journal") == [
        "reserve run 1", "charge run 1", "ship run 1",
        "refund attempt 1", "refund attempt 1", "release attempt 1",
    ]  # fmt: skip
    assert read_lines(tmp_path / "effects") == ["reserve", "charge", "refund", "release"]
    assert kinds(shown) == COMPENSATED_AFTER_STEP_3


async def test_running_or_resuming_a_finished_saga_again_does_nothing(
    config: EdgeConfig, tag: str
) -> None:
    rec = Recorder(tag)
    actions = dict([rec.action("reserve"), rec.action("release"), rec.action("ship")])
    steps = rec.steps(("reserve", "release"), ("ship", None))
    saga_id = f"saga-{tag}"
    async with SagaRunner(config, actions) as runner:
        first = await runner.run(saga_id, "checkout", steps, context={"order": 1})
        records = kinds(await runner.show(saga_id))
        assert first.status is SagaStatus.COMPLETED and first.acted

        second = await runner.run(saga_id, "checkout", steps, context={"order": 1})
        assert not any(r.saga_id == saga_id for r in await runner.resume_all())
        resumed = await runner.resume(saga_id)

    async with SagaRunner(config, actions) as elsewhere:  # another runner: from the log only
        third = await elsewhere.run(saga_id, "checkout", steps, context={"order": 1})
        with pytest.raises(InvalidInput, match="already recorded for another saga"):
            await elsewhere.run(saga_id, "checkout", steps, context={"order": 2})
        assert kinds(await elsewhere.show(saga_id)) == records
        (listed,) = [s for s in await elsewhere.list_sagas() if s["saga_id"] == saga_id]

    assert rec.calls == ["reserve", "ship"]
    for again in (second, resumed, third):
        assert again.status is SagaStatus.COMPLETED
        assert not again.acted
        assert again.results == first.results
    assert listed["status"] == "completed"
    assert listed["name"] == "checkout"
    assert listed["records"] == 3
    json.dumps(listed)


async def test_unknown_action_names_are_refused_naming_the_registered_ones(
    config: EdgeConfig, tag: str
) -> None:
    rec = Recorder(tag)
    async with SagaRunner(config, dict([rec.action("reserve")])) as runner:
        with pytest.raises(InvalidInput, match=rf"'{tag}.charge'.*Registered: {tag}.reserve"):
            await runner.run(f"saga-{tag}", "checkout", rec.steps(("reserve", "charge")))
        with pytest.raises(InvalidInput, match="JSON-able"):
            await runner.run(f"saga-{tag}", "checkout", rec.steps(("reserve", None)), {1, 2})
        with pytest.raises(InvalidInput, match="no saga"):
            await runner.show(f"saga-{tag}")
        assert not [s for s in await runner.list_sagas() if s["saga_id"] == f"saga-{tag}"]


async def test_steps_may_be_named_apart_from_their_actions(config: EdgeConfig, tag: str) -> None:
    rec = Recorder(tag)
    name, action = rec.action("reserve")
    async with SagaRunner(config, {name: action}) as runner:
        result: SagaResult = await runner.run(
            f"saga-{tag}", "twice", [Step("first", name, None), Step("second", name, None)]
        )
    assert result.status is SagaStatus.COMPLETED
    assert result.steps == ("first", "second")
    assert [ctx.step_name for ctx in rec.seen["reserve"]] == ["first", "second"]
