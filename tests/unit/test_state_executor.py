"""The state host's executor checks an answer before it touches the working copy
(:mod:`edgebus.state.executor`): an answer no state-log record can carry (values the
classifier refuses, text that is not Unicode, a record too large for Kafka) is replaced
by a refusal of its request, written instead, counted and dead-lettered, and the host
keeps the state; trouble appending demotes the host; anything else the guard refuses.

No broker: the host's writer is a fake that encodes as the real one does and lands every
record at once.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError

from edgebus.config import load_config
from edgebus.core.ownership import Claim
from edgebus.core.state_machine import StateLogRecord, StateObject, StateOp, StateRequest
from edgebus.errors import StateOperationRefused
from edgebus.state.executor import Executor
from edgebus.state.guarded_executor import GuardedExecutor
from edgebus.state.log import MAX_RECORD_BYTES, Appended, StateLogWriter
from edgebus.state.owned import HostContext, NotOwner, OwnedState, Work, wall_ms
from edgebus.state.ownership_loop import OwnershipLoop
from edgebus.wire.state_log import decode_state_record

CONFIG = load_config(None)
REGION, HOST, SID = "eu-west-1", "eu-west-1/h1", "cart:1"
KEY = ("public", SID)


class FakeWriter(StateLogWriter):
    """Encodes as the state log's writer does; every record lands at once (or
    ``fail`` is raised by ``send``)."""

    def __init__(self) -> None:
        super().__init__(CONFIG, "test")
        self.sent: list[tuple[StateLogRecord, bytes]] = []
        self.fail: BaseException | None = None

    async def send(self, data_class: str, state_id: str, record: StateLogRecord,
                   *, value: bytes | None = None) -> asyncio.Future[Appended]:
        if self.fail is not None:
            raise self.fail
        if value is None:
            value = self.encode(state_id, record)
        self.sent.append((record, value))
        landed: asyncio.Future[Appended] = asyncio.get_running_loop().create_future()
        landed.set_result(Appended(0, len(self.sent) - 1, wall_ms()))
        return landed


@dataclass
class Host:
    writer: FakeWriter
    counters: Counter[str]
    ownership: OwnershipLoop
    executor: Executor
    refused: list[tuple[Work, str]] = field(default_factory=list)

    @property
    def own(self) -> OwnedState:
        return self.ownership.owned[KEY]

    def owns(self) -> bool:
        return self.ownership.owns(KEY)

    async def run(self, request: StateRequest, *, local: bool = True) -> Any:
        """Run ``request`` as the host does; its local caller's answer (or error)."""
        future: asyncio.Future[tuple[StateOp, Appended]] | None = (
            asyncio.get_running_loop().create_future() if local else None)
        await self.executor._run(Work(KEY, request, wall_ms(), future))
        if future is None:
            return None
        try:
            return (await asyncio.wait_for(future, 2))[0]
        except Exception as e:
            return e


@asynccontextmanager
async def hosting(guarded: bool = True) -> AsyncIterator[Host]:
    """A host owning state ``cart:1`` (epoch 1, a minute of lease), its acknowledgement
    loop running."""
    writer, counters = FakeWriter(), Counter[str]()
    context = HostContext(CONFIG, REGION, HOST, writer, counters)
    ownership = OwnershipLoop(context, ("public",), lambda coro: coro.close())
    refused: list[tuple[Work, str]] = []
    executor = (GuardedExecutor(context, ownership, lambda w, why: refused.append((w, why)))
                if guarded else Executor(context, ownership))
    work = StateObject(SID)
    work.fold(Claim(REGION, 1, 60_000, HOST), wall_ms())
    ownership.owned[KEY] = OwnedState("public", SID, 1, 60_000, wall_ms() + 60_000,
                                      time.monotonic() + 60, work)
    acks = asyncio.create_task(executor.acknowledge())
    try:
        yield Host(writer, counters, ownership, executor, refused)
    finally:
        acks.cancel()
        await asyncio.gather(acks, return_exceptions=True)


def call(req_id: str, operation: Any, **fields: Any) -> StateRequest:
    return StateRequest(SID, req_id, operation, REGION, **fields)


def name_not_text(_current: Any) -> Any:
    return {"\ud800": 1}


async def test_an_answer_no_record_can_carry_is_a_refusal_and_the_host_keeps_the_state(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import edgebus.state.executor

    monkeypatch.setattr(edgebus.state.executor, "resolve", lambda name: name_not_text)
    async with hosting() as host:
        assert isinstance(await host.run(call("r1", "set", key="n", value=1)), StateOp)
        before = host.own.work.snapshot()
        answer = await host.run(call("r2", "update", update_fn="name_not_text"))
        assert isinstance(answer, StateOp) and answer.outcome == "refused"
        assert answer.message.startswith("running update failed at the owner: InvalidInput")
        assert "not be written: UnicodeEncodeError" in answer.message
        assert (answer.changes, answer.result, answer.version) == ({}, None, 1)
        # the refusal is what was written, and what every reader folds
        record, value = host.writer.sent[-1]
        assert record == answer and decode_state_record(value) == (SID, answer)
        # the working copy holds the refusal only: data and version as before
        after = host.own.work.snapshot()
        assert (after["data"], after["version"]) == (before["data"], before["version"])
        assert host.own.work.applied["r2"].outcome == "refused"
        assert host.owns() and host.own.inflight == 0
        assert host.counters["refused_requests"] == 1 and host.counters["demoted"] == 0
        assert [(w.request.req_id, why) for w, why in host.refused] == [("r2", answer.message)]
        # a re-sent request gets the same refusal, not a second run
        again = await host.run(call("r2", "update", update_fn="name_not_text"))
        assert isinstance(again, StateOp) and again.duplicate
        assert again.message == answer.message and host.counters["refused_requests"] == 1
        assert await host.run(call("r3", "get", key="n")) == StateOp(
            SID, "r3", "get", REGION, HOST, 1, host.own.lease_until_ms, REGION, "ok",
            result=1, version=1)


async def test_an_answer_too_large_for_a_kafka_record_is_a_refusal() -> None:
    blob = "x" * (MAX_RECORD_BYTES // 2)  # within kafka.max_batch_bytes; twice in the answer
    async with hosting() as host:
        answer = await host.run(call("big", "set", key="blob", value=blob))
        assert isinstance(answer, StateOp) and answer.outcome == "refused"
        assert f"over the {MAX_RECORD_BYTES} a state-log record may take" in answer.message
        assert host.own.work.value() == {} and host.own.work.version == 0
        assert host.owns() and host.counters["refused_requests"] == 1
        assert len(host.refused) == 1


async def test_new_values_the_classifier_refuses_are_a_refusal_not_a_demotion() -> None:
    async with hosting() as host:
        answer = await host.run(call("long", "set", key="name" * 20_000, value=1))
        assert isinstance(answer, StateOp) and answer.outcome == "refused"
        assert "compliance.max_field_name_chars" in answer.message
        assert host.owns() and host.own.work.value() == {}
        assert host.counters["refused_requests"] == 1 and host.counters["demoted"] == 0


async def test_the_plain_executor_counts_the_refusal_it_writes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import edgebus.state.executor

    monkeypatch.setattr(edgebus.state.executor, "resolve", lambda name: name_not_text)
    async with hosting(guarded=False) as host:
        answer = await host.run(call("r1", "update", update_fn="name_not_text"), local=False)
        assert answer is None
        record, _value = host.writer.sent[-1]
        assert isinstance(record, StateOp) and record.outcome == "refused"
        assert host.counters["refused_requests"] == 1 and host.owns()


async def test_kafka_trouble_appending_demotes_the_host_and_its_caller_forwards() -> None:
    async with hosting() as host:
        host.writer.fail = KafkaTimeoutError("no leader")
        error = await host.run(call("r1", "set", key="n", value=1))
        assert isinstance(error, NotOwner)
        assert not host.owns() and host.counters["demoted"] == 1
        assert host.counters["refused_requests"] == 0 and host.refused == []


async def test_a_record_kafka_refuses_at_send_is_refused_by_the_guard() -> None:
    async with hosting() as host:
        own = host.own
        host.writer.fail = MessageSizeTooLargeError("too large")
        error = await host.run(call("r1", "set", key="n", value=1))
        assert isinstance(error, StateOperationRefused)
        assert "MessageSizeTooLargeError" in str(error)
        assert own.inflight == 0 and not host.owns()  # the working copy went with it
        assert [w.request.req_id for w, _ in host.refused] == ["r1"]


async def test_a_refusal_that_cannot_be_written_either_is_refused_by_the_guard() -> None:
    """A local caller's request whose own fields are not Unicode: no record of it, not
    even a refusal, can be written; the working copy is untouched."""
    async with hosting() as host:
        error = await host.run(call("r-\udc80", "set", key="n", value=1))
        assert isinstance(error, StateOperationRefused)
        assert "failed at the owner" in str(error)
        assert host.writer.sent == [] and not host.owns()
        assert host.counters["ops"] == 0 and host.counters["refused_requests"] == 1
