"""The saga progress log holds only data its region may hold (issue 17, item 4), on
real Kafka.

Each test has two regions of its own, ``<tag>-us`` (outside the GDPR zone) and
``<tag>-eu`` (the GDPR zone), and the saga log region is ``<tag>-us`` unless said
otherwise, so personal data (an e-mail address: pii) may not enter the progress topic
``edgebus.<tag>-us.sagas``. Every test reads that topic back as raw bytes.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from edgebus.config import EdgeConfig, load_config
from edgebus.core.saga import SagaStatus
from edgebus.errors import ComplianceViolation
from edgebus.kafka.reading import read_to_end
from edgebus.kafka.topics import saga_progress_topic
from edgebus.sagas.runner import SagaAction, SagaContext, SagaRunner
from edgebus.wire.saga_progress import decode_progress
from tests.kafka_settings import KAFKA

EMAIL = "erika.mustermann@example.com"


@pytest.fixture
def tag() -> str:
    return "t" + uuid.uuid4().hex[:8]


def residency_config(bootstrap: str, tag: str, log_region: str = "us") -> EdgeConfig:
    us, eu = f"{tag}-us", f"{tag}-eu"
    return load_config(
        {
            "discovery": {"locations": [us, eu]},
            "strong": {"log_region": f"{tag}-{log_region}"},
            "compliance": {"zones": {"gdpr": [eu], "hipaa": [us], "sox": [us, eu]}},
            "kafka": {"bootstrap": bootstrap, "connect_timeout_s": 20},
        }
    )


@pytest.fixture
def config(kafka_bootstrap: str, tag: str) -> EdgeConfig:
    return residency_config(kafka_bootstrap, tag)


async def progress_records(config: EdgeConfig, bootstrap: str) -> list[tuple[str, int | None]]:
    """(type, step) of every record of the log, checking the raw bytes hold no address."""
    raw = await read_to_end(KAFKA, bootstrap, saga_progress_topic(config.strong_log_region))
    for r in raw:
        whole = b"".join([r.key or b"", r.value or b"", *(v for _, v in r.headers)])
        assert EMAIL.encode() not in whole
    entries = [decode_progress(r.value) for r in raw]
    return [(e.type, getattr(e.record, "index", None)) for e in entries]


class Actions:
    """Actions named ``<tag>.<name>`` that record their calls and what they saw."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.calls: list[str] = []
        self.seen: dict[str, list[SagaContext]] = {}

    def add(self, name: str, behave: Any = None) -> tuple[str, SagaAction]:
        """``behave(ctx)`` returns the result, or raises; default: a public result."""

        async def perform(ctx: SagaContext) -> Any:
            self.calls.append(name)
            self.seen.setdefault(name, []).append(ctx)
            if behave is not None:
                return behave(ctx)
            return {"by": name, "key": ctx.idempotency_key}

        return f"{self.tag}.{name}", perform

    def steps(self, *pairs: tuple[str, str | None]) -> list[tuple[str, str | None]]:
        return [(f"{self.tag}.{a}", f"{self.tag}.{c}" if c else None) for a, c in pairs]


def fails(error: Exception) -> Any:
    def behave(ctx: SagaContext) -> Any:
        raise error

    return behave


async def test_a_saga_input_holding_an_address_is_refused_and_nothing_is_logged(
    config: EdgeConfig, kafka_bootstrap: str, tag: str
) -> None:
    acts = Actions(tag)
    actions = dict([acts.add("reserve"), acts.add("release")])
    async with SagaRunner(config, actions) as runner:
        with pytest.raises(ComplianceViolation) as raised:
            await runner.run(
                f"saga-{tag}",
                "signup",
                acts.steps(("reserve", "release")),
                context={"user": {"email": EMAIL}},
            )
        assert await runner.list_sagas() == []

    text = str(raised.value)
    assert text.startswith("Compliance violation: cannot place data classified pii: ")
    assert f"saga log region {tag}-us may not hold" in text
    assert f"set strong.log_region to a region that may hold pii data ({tag}-eu)" in text
    assert EMAIL not in text
    assert acts.calls == []
    assert await progress_records(config, kafka_bootstrap) == []


async def test_the_same_input_runs_when_the_log_region_may_hold_it(
    kafka_bootstrap: str, tag: str
) -> None:
    config = residency_config(kafka_bootstrap, tag, log_region="eu")
    acts = Actions(tag)
    async with SagaRunner(config, dict([acts.add("reserve")])) as runner:
        result = await runner.run(
            f"saga-{tag}", "signup", acts.steps(("reserve", None)), context={"email": EMAIL}
        )
    assert result.status is SagaStatus.COMPLETED
    assert acts.seen["reserve"][0].input == {"email": EMAIL}


async def test_a_step_result_holding_an_address_fails_the_step_which_is_undone_first(
    config: EdgeConfig, kafka_bootstrap: str, tag: str
) -> None:
    acts = Actions(tag)
    actions = dict(
        [
            acts.add("reserve"),
            acts.add("release"),
            acts.add("lookup", lambda ctx: {"customer": {"contact": EMAIL}, "id": 7}),
            acts.add("forget"),
            acts.add("ship"),
        ]
    )
    steps = acts.steps(("reserve", "release"), ("lookup", "forget"), ("ship", None))
    async with SagaRunner(config, actions, retry_delay_ms=10) as runner:
        result = await runner.run(f"saga-{tag}", "order", steps, context={"order": 17})
        shown = await runner.show(f"saga-{tag}")

    # the step took effect: its own compensation ran, with its result; then step 0's
    assert acts.calls == ["reserve", "lookup", "forget", "release"]
    (forget,) = acts.seen["forget"]
    assert forget.result == {"customer": {"contact": EMAIL}, "id": 7}
    assert forget.phase == "compensation" and forget.step_index == 1
    assert result.status is SagaStatus.COMPENSATED
    assert result.failed_step == 1
    assert result.compensated_steps == (0,)
    assert result.error is not None and EMAIL not in result.error
    assert result.error.startswith(
        f"step 1 ({tag}.lookup) returned pii data (at customer.contact), which the saga log "
        f"region {tag}-us may not hold (zones required: gdpr), so its result cannot be logged"
    )
    assert "its effect was undone" in result.error
    assert shown["error"] == result.error
    assert await progress_records(config, kafka_bootstrap) == [
        ("SAGA_BEGUN", None),
        ("STEP_COMPLETED", 0),
        ("STEP_ABORTED", 1),
        ("COMPENSATION_COMPLETED", 0),
    ]


async def test_a_step_without_compensation_returning_an_address_fails_and_says_so(
    config: EdgeConfig, kafka_bootstrap: str, tag: str
) -> None:
    acts = Actions(tag)
    actions = dict([acts.add("reserve"), acts.add("release"), acts.add("notify", lambda c: EMAIL)])
    steps = acts.steps(("reserve", "release"), ("notify", None))
    async with SagaRunner(config, actions) as runner:
        result = await runner.run(f"saga-{tag}", "order", steps)
    assert acts.calls == ["reserve", "notify", "release"]
    assert result.status is SagaStatus.COMPENSATED
    assert result.error is not None and "at the value" in result.error
    assert "it has no compensation: its effect stays" in result.error
    assert await progress_records(config, kafka_bootstrap) == [
        ("SAGA_BEGUN", None),
        ("STEP_COMPLETED", 0),
        ("STEP_ABORTED", 1),
        ("COMPENSATION_COMPLETED", 0),
    ]


async def test_when_undoing_such_a_step_fails_it_stays_started_until_fixed_and_resumed(
    config: EdgeConfig, kafka_bootstrap: str, tag: str
) -> None:
    acts = Actions(tag)
    leaks = {"on": True}

    def lookup(ctx: SagaContext) -> Any:
        return {"contact": EMAIL} if leaks["on"] else {"customer_id": 7}

    actions = dict(
        [
            acts.add("reserve"),
            acts.add("lookup", lookup),
            acts.add("forget", fails(RuntimeError("directory offline"))),
        ]
    )
    steps = acts.steps(("reserve", None), ("lookup", "forget"))
    saga_id = f"saga-{tag}"
    async with SagaRunner(config, actions, max_attempts=2, retry_delay_ms=10) as runner:
        with pytest.raises(ComplianceViolation) as raised:
            await runner.run(saga_id, "order", steps)
        assert acts.calls == ["reserve", "lookup", "forget", "forget"]
        text = str(raised.value)
        assert "undoing it" in text and "failed 2 times" in text
        assert "RuntimeError: directory offline" in text
        assert "left as started in the log" in text
        assert EMAIL not in text
        assert await progress_records(config, kafka_bootstrap) == [
            ("SAGA_BEGUN", None),
            ("STEP_COMPLETED", 0),
        ]

        leaks["on"] = False  # the action fixed: it returns a key
        result = await runner.resume(saga_id)
    assert result.status is SagaStatus.COMPLETED
    assert result.results[1] == {"customer_id": 7}
    assert await progress_records(config, kafka_bootstrap) == [
        ("SAGA_BEGUN", None),
        ("STEP_COMPLETED", 0),
        ("STEP_RESTARTED", 1),
        ("STEP_COMPLETED", 1),
    ]


async def test_error_messages_holding_an_address_are_logged_withheld_and_compensation_goes_on(
    config: EdgeConfig, kafka_bootstrap: str, tag: str
) -> None:
    acts = Actions(tag)

    def release(ctx: SagaContext) -> Any:
        if ctx.attempt == 1:
            raise LookupError(f"no hold for {EMAIL}")
        return None

    actions = dict(
        [
            acts.add("reserve"),
            acts.add("release", release),
            acts.add("ship", fails(ValueError(f"unknown recipient {EMAIL}"))),
        ]
    )
    steps = acts.steps(("reserve", "release"), ("ship", None))
    async with SagaRunner(config, actions, retry_delay_ms=10) as runner:
        result = await runner.run(f"saga-{tag}", "order", steps, context={"order": 3})
        shown = await runner.show(f"saga-{tag}")

    withheld = f"(message withheld: it holds pii data, which {tag}-us may not hold)"
    assert result.status is SagaStatus.COMPENSATED
    assert result.error == f"ValueError: {withheld}"
    assert result.compensation_errors == ((0, 1, f"LookupError: {withheld}"),)
    assert result.compensated_steps == (0,)
    assert acts.calls == ["reserve", "ship", "release", "release"]
    assert shown["error"] == result.error
    assert await progress_records(config, kafka_bootstrap) == [
        ("SAGA_BEGUN", None),
        ("STEP_COMPLETED", 0),
        ("STEP_ABORTED", 1),
        ("COMPENSATION_ATTEMPT_FAILED", 0),
        ("COMPENSATION_COMPLETED", 0),
    ]


async def test_a_saga_with_public_data_runs_and_compensates_as_before(
    config: EdgeConfig, kafka_bootstrap: str, tag: str
) -> None:
    acts = Actions(tag)
    actions = dict(
        [
            acts.add("reserve"),
            acts.add("release"),
            acts.add("charge"),
            acts.add("refund"),
            acts.add("ship", fails(RuntimeError("no courier available"))),
        ]
    )
    steps = acts.steps(("reserve", "release"), ("charge", "refund"), ("ship", None))
    async with SagaRunner(config, actions) as runner:
        result = await runner.run(f"saga-{tag}", "checkout", steps, context={"order": 17})

    assert acts.calls == ["reserve", "charge", "ship", "refund", "release"]
    assert result.status is SagaStatus.COMPENSATED
    assert result.error == "RuntimeError: no courier available"
    assert result.compensated_steps == (1, 0)
    assert acts.seen["refund"][0].result == {"by": "charge", "key": f"saga-{tag}/1/step"}
    assert await progress_records(config, kafka_bootstrap) == [
        ("SAGA_BEGUN", None),
        ("STEP_COMPLETED", 0),
        ("STEP_COMPLETED", 1),
        ("STEP_ABORTED", 2),
        ("COMPENSATION_COMPLETED", 1),
        ("COMPENSATION_COMPLETED", 0),
    ]
