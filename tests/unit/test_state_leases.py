"""``lease_duration_ms`` means the lease the caller asked for (issue 19): within 500 ms
.. one hour, it is a lock's lease and the owner's lease of the state, set exactly (not
only lengthened) on every call that names it, whether the call makes a host claim the
state or runs at the owner that holds it. A call naming none leaves the lease alone.

The pure rules (:func:`~edgebus.core.ownership.lease_asked`,
:func:`~edgebus.core.ownership.claim_lease_ms`, a lock's lease) and the state host's
use of them (its claim, its executor and renewals) on a fake state-log writer. No
broker."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import ValidationError

from edgebus.config import load_config
from edgebus.config.state import StateConfig
from edgebus.core.ownership import (
    MAX_LEASE_MS,
    MIN_LEASE_MS,
    Claim,
    Renew,
    check_lease_duration,
    claim_lease_ms,
    lease_asked,
)
from edgebus.core.state_machine import StateObject, StateOp, StateRequest, execute
from edgebus.errors import InvalidInput
from edgebus.state.executor import Executor
from edgebus.state.owned import HostContext, OwnedState, Work, wall_ms
from edgebus.state.ownership_loop import OwnershipLoop
from tests.unit.test_state_executor import FakeWriter

CONFIG = load_config(None)
CONFIGURED = CONFIG.state.lease_ms  # 10 000
REGION, HOST, SID = "eu-west-1", "eu-west-1/h1", "task:123"
KEY = ("public", SID)


def call(req_id: str, operation: Any = "set", lease_ms: int = 0, **fields: Any) -> StateRequest:
    if operation == "set" and "value" not in fields:
        fields = {"key": "step", "value": 1, **fields}
    return StateRequest(SID, req_id, operation, REGION, lease_ms=lease_ms, **fields)


# -- the pure rules ---------------------------------------------------------------------


@pytest.mark.parametrize(("lease_ms", "asked"), [
    (0, None),  # none named
    (30_000, 30_000),
    (MIN_LEASE_MS, MIN_LEASE_MS),
    (MAX_LEASE_MS, MAX_LEASE_MS),
    (100, MIN_LEASE_MS),  # a record from elsewhere is held to the bounds
    (10**12, MAX_LEASE_MS),
])
def test_a_request_asks_for_its_own_lease_held_to_the_bounds(lease_ms: int, asked: int) -> None:
    assert lease_asked(lease_ms) == asked


def test_a_claim_asks_for_the_lease_of_the_oldest_waiting_call_even_if_shorter() -> None:
    # the waiting requests' lease_ms, in log order (0: none named)
    assert claim_lease_ms([], CONFIGURED) == CONFIGURED
    assert claim_lease_ms([0, 0], CONFIGURED) == CONFIGURED
    assert claim_lease_ms([30_000, 0], CONFIGURED) == 30_000
    # shorter than state.lease_ms: what was asked, not lengthened to the configured one
    assert claim_lease_ms([2_000, 60_000], CONFIGURED) == 2_000
    assert claim_lease_ms([10**12], CONFIGURED) == MAX_LEASE_MS
    # the oldest names none: the configured lease (the later call sets its own when it
    # runs at the owner)
    assert claim_lease_ms([0, 30_000], CONFIGURED) == CONFIGURED


@pytest.mark.parametrize("bad", [0, MIN_LEASE_MS - 1, MAX_LEASE_MS + 1, -5, True, 1.5, "1000"])
def test_a_lease_outside_the_bounds_is_refused_giving_them(bad: Any) -> None:
    with pytest.raises(InvalidInput, match="from 500 to 3600000 \\(one hour\\)"):
        check_lease_duration(bad)


def test_the_lease_bounds_are_the_range_state_lease_ms_takes() -> None:
    assert check_lease_duration(MIN_LEASE_MS) == MIN_LEASE_MS
    assert check_lease_duration(MAX_LEASE_MS) == MAX_LEASE_MS
    assert StateConfig(lease_ms=MIN_LEASE_MS).lease_ms == MIN_LEASE_MS
    assert StateConfig(lease_ms=MAX_LEASE_MS).lease_ms == MAX_LEASE_MS
    for outside in (MIN_LEASE_MS - 1, MAX_LEASE_MS + 1):
        with pytest.raises(ValidationError):
            StateConfig(lease_ms=outside)


def owned_object(at: int = 0) -> StateObject:
    obj = StateObject(SID)
    obj.fold(Claim(REGION, 1, 60_000, HOST), at)
    return obj


@pytest.mark.parametrize(("lease_ms", "lasts"), [(0, 7_000), (1_500, 1_500)])
def test_a_lock_lasts_its_lease_or_the_owners_configured_one_when_it_names_none(
    lease_ms: int, lasts: int
) -> None:
    request = call("l", "lock", lease_ms=lease_ms, lock_name="L", holder="alice")
    op = execute(owned_object(), request, region=REGION, host=HOST, lease_until_ms=60_000,
                 now_ms=100, sent_ms=100, default_lease_ms=7_000)
    assert op is not None and op.outcome == "ok"
    assert op.result["until_ms"] == 100 + lasts


# -- the state host ---------------------------------------------------------------------


@dataclass
class Host:
    writer: FakeWriter
    ownership: OwnershipLoop
    executor: Executor
    background: list[asyncio.Task[None]]

    @property
    def own(self) -> OwnedState:
        return self.ownership.owned[KEY]

    async def run(self, request: StateRequest) -> StateOp:
        """Run ``request`` at the owner; its answer, once the records sent in the
        background (renewals) have landed too."""
        future: asyncio.Future[tuple[StateOp, Any]] = asyncio.get_running_loop().create_future()
        await self.executor._run(Work(KEY, request, wall_ms(), future))
        op = (await asyncio.wait_for(future, 2))[0]
        await self.settle()
        return op

    async def settle(self) -> None:
        while self.background:
            await self.background.pop(0)

    def renewals(self) -> list[int]:
        return [r.lease_ms for r, _ in self.writer.sent if isinstance(r, Renew)]


@asynccontextmanager
async def hosting(lease_ms: int = 60_000) -> AsyncIterator[Host]:
    """A host owning ``task:123`` at epoch 1 with a lease of ``lease_ms``; what its
    ownership loop starts in the background runs as tasks."""
    writer = FakeWriter()
    background: list[asyncio.Task[None]] = []

    def spawn(coro: Coroutine[Any, Any, None]) -> None:
        background.append(asyncio.ensure_future(coro))

    context = HostContext(CONFIG, REGION, HOST, writer, Counter[str]())
    ownership = OwnershipLoop(context, ("public",), spawn)
    executor = Executor(context, ownership)
    ownership.owned[KEY] = OwnedState("public", SID, 1, lease_ms, wall_ms() + lease_ms,
                                      time.monotonic() + lease_ms / 1000, owned_object(wall_ms()))
    acks = asyncio.create_task(executor.acknowledge())
    try:
        yield Host(writer, ownership, executor, background)
    finally:
        acks.cancel()
        await asyncio.gather(acks, *background, return_exceptions=True)


async def test_a_call_naming_a_shorter_lease_sets_the_owners_lease_and_renews_with_it() -> None:
    async with hosting(60_000) as host:
        answer = await host.run(call("r1", lease_ms=30_000))
        assert answer.outcome == "ok"
        assert host.own.lease_ms == 30_000  # not kept at the longer 60 s
        assert host.renewals() == [30_000]  # renewed at once with the lease asked for


async def test_a_call_naming_a_longer_lease_sets_it_too_and_later_calls_naming_none_keep_it(
) -> None:
    async with hosting(CONFIGURED) as host:
        await host.run(call("r1", lease_ms=120_000))
        assert host.own.lease_ms == 120_000
        await host.run(call("r2"))  # names none
        await host.run(call("r3", "get"))
        assert host.own.lease_ms == 120_000
        assert host.renewals() == [120_000]
        # the renewal extended the lease the owner knows to its append time + 120 s
        assert host.own.lease_until_ms >= wall_ms() + 110_000


async def test_a_refused_or_repeated_call_does_not_change_the_lease() -> None:
    async with hosting(60_000) as host:
        refused = await host.run(call("bad", "increment", lease_ms=5_000,
                                      increment=float("nan")))
        assert refused.outcome == "refused"
        assert (host.own.lease_ms, host.renewals()) == (60_000, [])
        await host.run(call("r1", lease_ms=20_000))
        again = await host.run(call("r1", lease_ms=5_000))  # a re-send of r1
        assert again.duplicate
        assert (host.own.lease_ms, host.renewals()) == (20_000, [20_000])


async def test_a_lease_changed_while_a_renewal_is_in_flight_is_renewed_right_after() -> None:
    async with hosting(CONFIGURED) as host:
        own = host.own
        own.renewing = True  # a renewal with the old lease is on its way
        host.ownership.set_lease(KEY, own, 90_000)
        assert host.background == []  # not a second renewal at once
        own.renewing = False
        await host.ownership._renew(KEY, own)  # the renewal lands: it asked for 90 s
        assert host.renewals() == [90_000]
        gate = asyncio.Event()
        append = host.writer.append

        async def slow_append(*args: Any) -> Any:
            await gate.wait()
            return await append(*args)

        host.writer.append = slow_append  # type: ignore[method-assign]
        own.lease_ms = 45_000
        own.renewing = True
        renewal = asyncio.ensure_future(host.ownership._renew(KEY, own))
        await asyncio.sleep(0)  # it asked for 45 s and waits for the broker
        host.ownership.set_lease(KEY, own, 15_000)  # while that one is in flight
        assert host.background == []
        gate.set()
        await renewal
        assert host.renewals() == [90_000, 45_000]
        assert own.lease_ms == 15_000
        assert own.renew_sent == 0.0  # the next tick renews with 15 s


async def test_a_claim_asks_for_the_waiting_calls_lease_not_the_longer_configured_one() -> None:
    async with hosting() as host:
        obj = StateObject("task:9")
        obj.fold(call("w1", lease_ms=2_000), 10)
        host.ownership._claim(("public", "task:9"), obj)
        await host.settle()
        [(claim, _value)] = host.writer.sent
        assert isinstance(claim, Claim) and claim.lease_ms == 2_000


# -- the EdgeStateMachine node ------------------------------------------------------------


class OwnerBus:
    """A bus whose ``state`` call makes the SDK's request (:class:`StateCalls`) and runs
    it at an owner (the pure :func:`execute`) holding one state."""

    def __init__(self) -> None:
        from edgebus.sdk.states import StateCalls

        self.calls = StateCalls(CONFIG, "node-test")
        self.obj = owned_object()
        self.requests: list[StateRequest] = []

    async def state(self, state_id: str, operation: str, **options: Any) -> Any:
        from types import SimpleNamespace

        request, _ = self.calls._request(state_id, operation, options)
        self.requests.append(request)
        op = execute(self.obj, request, region=REGION, host=HOST, lease_until_ms=60_000,
                     now_ms=1_000, sent_ms=1_000, default_lease_ms=CONFIGURED)
        assert op is not None
        self.obj.apply(op, 1_000)
        return SimpleNamespace(ok=op.outcome == "ok",
                               to_dict=lambda: {"outcome": op.outcome, "value": op.result})


class OwnerInfrastructure:
    def __init__(self) -> None:
        self.config = CONFIG
        self.bus = OwnerBus()


def test_an_edge_state_machine_lock_without_lock_name_takes_the_states_own_lock() -> None:
    from edgebus.workflow import LocalRuntime, WorkflowBuilder

    builder = WorkflowBuilder()
    builder.add_node("EdgeStateMachine", "lock", {
        "state_id": SID, "operation": "lock", "holder": "worker-1"})
    builder.add_node("EdgeStateMachine", "relock", {
        "state_id": SID, "operation": "lock", "holder": "worker-1",
        "lease_duration_ms": 30_000})
    builder.add_node("EdgeStateMachine", "unlock", {
        "state_id": SID, "operation": "unlock", "holder": "worker-1"})
    builder.add_connection("lock", "result", "relock", "input")
    builder.add_connection("relock", "result", "unlock", "input")
    infra = OwnerInfrastructure()
    results, _ = LocalRuntime(infrastructure=infra).execute(builder.build())

    assert [r.lock_name for r in infra.bus.requests] == ["state"] * 3
    assert results["lock"]["result"]["success"] is True
    assert results["lock"]["result"]["value"] == {
        "lock": "state", "holder": "worker-1", "until_ms": 1_000 + CONFIGURED}
    # the lease asked for, not the configured one: shorter or longer alike
    assert results["relock"]["result"]["value"]["until_ms"] == 1_000 + 30_000
    assert [lease_asked(r.lease_ms) for r in infra.bus.requests] == [None, 30_000, None]
    assert results["unlock"]["result"]["value"] == {"released": True, "lock": "state"}


async def test_a_failed_renewal_with_a_new_lease_is_retried_at_the_next_tick() -> None:
    async with hosting(CONFIGURED) as host:
        own = host.own
        own.renew_sent = time.monotonic()  # just renewed with the old lease
        host.writer.fail = RuntimeError("no leader")
        host.ownership.set_lease(KEY, own, 600_000)
        await host.settle()
        assert host.renewals() == [] and not own.renewing
        assert own.renew_sent == 0.0  # not 200 s from now (a third of the new lease)
