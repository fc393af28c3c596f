"""Poison pills in a state log (issue 16, item 2): the state host.

Records are written straight to ``edgebus.<home>.state.public`` with a plain aiokafka
producer, between good state operations, as a hostile or broken writer could: bytes
that are no state-log record, a null value, an operation with an unknown outcome, a
request whose JSON nests 990 levels (its
decoding overflows Python's stack), requests the owner cannot run (a value nested past
what the classifier reads, a field name that is not Unicode text, a lock lease of 2^63
ms), a claim of a lease of 2^62 ms by a host that does not exist (the state would be
frozen for ages), and operations written as if by the owner that the fold cannot take
(changes nested 700 levels deep, a number JSON cannot carry back). And one that is no
record at all: an ``update_fn`` at the owner returning a field name that is not text
(answered with a refusal at once, the host keeping the state). A request of an operation
no host knows is no poison: its owner's refusal answers it for every reader (the hosts,
``edgebus state``'s fold, the client).

Each test asserts: the region service and its state host run on (their tasks alive,
their status answers), the good operations on the same states complete, every hostile
record is in ``edgebus.<region>.dlq`` with stage ``state`` and a reason, the host counts
its dead letters, and a restarted service (its snapshot and the same log) comes up and
serves without failing.

One region (its own name, so its state logs and dead-letter topic are new) runs in this
process, hosting the states; a client in this process calls them.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from edgebus.cli._state_fold import fold_logs
from edgebus.config import EdgeConfig, load_config
from edgebus.errors import StateOperationRefused
from edgebus.kafka.dead_letter_view import DeadLetterView, list_dead_letters
from edgebus.sdk import EdgeBus
from edgebus.server.service import RegionService
from edgebus.state.log import state_partition, state_topic
from edgebus.wire.schema_registry import default_registry
from edgebus.wire.single_object import encode_single_object
from edgebus.wire.state_log import H_STATE, STATE_LOG_SCHEMA
from tests.integration.regions import eventually

PARTITIONS = 3
LONG_MAX = 2**63 - 1
OP_TIMEOUT_MS = 8_000


@dataclass
class States:
    """One region hosting state machines in this process; its store and state
    snapshot survive a restart."""

    region: str
    config: EdgeConfig
    bootstrap: str
    store: str

    @classmethod
    def create(cls, bootstrap: str, tmp_path: Path) -> States:
        region = "s" + uuid.uuid4().hex[:8]
        config = load_config({
            "discovery": {"locations": [region]},
            "compliance": {"zones": {"gdpr": [region], "hipaa": [region], "sox": [region]}},
            "kafka": {"bootstrap": bootstrap, "partitions": PARTITIONS,
                      "connect_timeout_s": 20},
            "state": {"lease_ms": 3_000, "stagger_ms": 50, "timeout_ms": OP_TIMEOUT_MS,
                      "snapshot_interval_ms": 200},
        })
        return cls(region, config, bootstrap, f"sqlite://{tmp_path / 'store.db'}")

    @property
    def topic(self) -> str:
        return state_topic(self.config, "public")

    def forget_snapshot(self) -> None:
        """Delete the host's snapshot (``states-<region>.db`` beside the store): the next
        start folds the state logs from their first offsets, hostile records included."""
        home = Path(self.store.removeprefix("sqlite://")).parent
        for path in home.glob(f"states-{self.region}.db*"):
            path.unlink()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[tuple[RegionService, EdgeBus]]:
        """The region service (a state host, no participant) and a client."""
        async with AsyncExitStack() as stack:
            service = await stack.enter_async_context(RegionService(
                self.region, self.config, store=self.store, participate=False,
                replicate=False, serve=False))
            bus = await stack.enter_async_context(EdgeBus(self.config, discovery=False))
            yield service, bus


@dataclass(frozen=True)
class Sent:
    partition: int
    offset: int
    what: str

    def source(self, topic: str) -> str:
        return f"{topic}:{self.partition}:{self.offset}"


def record(kind: str, state_id: str, **part: Any) -> bytes:
    """A state-log record written by hand (any values the schema takes)."""
    schema = default_registry().latest(STATE_LOG_SCHEMA)
    body: dict[str, Any] = {"kind": kind, "state_id": state_id, "claim": None, "renew": None,
                            "handoff": None, "release": None, "request": None, "op": None}
    body[kind.lower()] = part
    return encode_single_object(schema, body)


def request(state_id: str, operation: str, **fields: Any) -> bytes:
    part = {"req_id": str(uuid.uuid4()), "operation": operation, "from_region": "",
            "holder": "hostile", "key": None, "value_json": None, "increment_json": "1",
            "update_fn": None, "lock_name": None, "lease_ms": 30_000, "timeout_ms": 5_000,
            "enable_migration": False}
    return record("REQUEST", state_id, **{**part, **fields})


OP_PART: dict[str, Any] = {
    "req_id": "r", "operation": "set", "region": "", "host": "", "epoch": 1,
    "lease_until_ms": LONG_MAX, "from_region": "", "outcome": "ok", "result_json": None,
    "version": 99, "changes_json": {}, "removed": [], "cleared": False, "locks": None,
    "message": "", "duplicate": False, "migratable": False,
}


def op(state_id: str, region: str, host: str, epoch: int, changes: dict[str, str]) -> bytes:
    """An operation record as if written by the owner ``host`` at ``epoch``."""
    return record("OP", state_id, **{**OP_PART, "req_id": str(uuid.uuid4()), "region": region,
                                     "host": host, "epoch": epoch, "from_region": region,
                                     "changes_json": changes})


async def send_raw(env: States, records: Iterable[tuple[str, str, bytes | None, str]]
                   ) -> list[Sent]:
    """Write ``(what, state_id, value, kind header)`` records to the state log, each on
    its state's partition."""
    producer = AIOKafkaProducer(bootstrap_servers=env.bootstrap)
    await producer.start()
    sent = []
    try:
        for what, state_id, value, kind in records:
            meta = await producer.send_and_wait(
                env.topic, value, key=state_id.encode(),
                partition=state_partition(state_id, PARTITIONS),
                headers=[(H_STATE, kind.encode())])
            sent.append(Sent(meta.partition, meta.offset, what))
    finally:
        await producer.stop()
    return sent


def stage_of(letter: DeadLetterView) -> str:
    return dict(letter.record.headers)["eb-dlq-stage"].decode()


async def letters_for(env: States, sent: Iterable[Sent]) -> dict[str, DeadLetterView]:
    """Wait until every record of ``sent`` has a dead letter; source -> letter."""
    wanted = {s.source(env.topic) for s in sent}
    found: dict[str, DeadLetterView] = {}

    async def all_there() -> bool:
        found.clear()
        for d in await list_dead_letters(env.config, env.region):
            if d.source in wanted:
                found[d.source] = d
        return set(found) == wanted

    await eventually(all_there, 20, f"dead letters of {sorted(wanted)}")
    return found


async def assert_running(service: RegionService) -> dict[str, Any]:
    """The service and its state host run (``wait`` raises a part's failure); the
    host's status."""
    assert service.state_host is not None
    for part in (service, service.state_host):
        with suppress(TimeoutError):
            await asyncio.wait_for(part.wait(), 0.6)
    status = await service.status()
    assert status["state_host"] is not None, status
    return dict(status["state_host"])


async def good_ops(bus: EdgeBus, state_ids: Iterable[str], n: int) -> None:
    """``increment`` of field ``n`` then ``get`` on every state: answered, ``n`` as
    expected."""
    ids = list(state_ids)
    results = await asyncio.gather(*(bus.state(s, "increment", key="n", increment=1)
                                     for s in ids))
    assert [r.value for r in results] == [n] * len(ids), results
    reads = await asyncio.gather(*(bus.state(s, "get", key="n") for s in ids))
    assert [r.value for r in reads] == [n] * len(ids), reads


async def owner_of(service: RegionService, state_id: str) -> tuple[str, str, int]:
    """(region, host, epoch) of the state's owner as the host folded it."""
    assert service.state_host is not None
    seen = service.state_host.describe("public", state_id)
    assert seen is not None and seen["owner"] is not None, seen
    return seen["owner"], seen["holder"], seen["epoch"]


# --------------------------------------------------------------------------- tests


async def test_records_the_host_cannot_decode_are_dead_lettered_and_a_restart_reads_past_them(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    env = States.create(kafka_bootstrap, tmp_path)
    tag = uuid.uuid4().hex[:6]
    ids = [f"{tag}-{i}" for i in range(3)]
    deep = "[" * 990 + "]" * 990
    async with env.running() as (service, bus):
        await good_ops(bus, ids, 1)
        hostile = await send_raw(env, [
            ("garbage", ids[0], b"\x00garbage\xff" * 3, "request"),
            ("null value", ids[1], None, "request"),
            ("framed zeros", ids[2], b"\xc3\x01" + bytes(20), "op"),
            ("a value nested 990 levels", ids[0],
             request(ids[0], "set", key="x", value_json=deep), "request"),
            ("an unknown outcome", ids[1],
             record("OP", ids[1], **{**OP_PART, "outcome": "bogus"}), "op"),
        ])
        await good_ops(bus, ids, 2)
        letters = await letters_for(env, hostile)
        assert {stage_of(d) for d in letters.values()} == {"state"}
        assert all(d.reason for d in letters.values()), letters
        status = await assert_running(service)
        assert status["counters"]["dead_letters"] >= len(hostile), status
    env.forget_snapshot()  # a fresh host folds the whole log, hostile records included
    async with env.running() as (service, bus):
        await good_ops(bus, ids, 3)
        status = await assert_running(service)
        assert status["counters"]["rejected_records"] >= len(hostile), status


async def test_a_request_the_owner_cannot_run_is_dead_lettered_and_the_host_goes_on(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    env = States.create(kafka_bootstrap, tmp_path)
    tag = uuid.uuid4().hex[:6]
    nested, text, lease = f"{tag}-nested", f"{tag}-surrogate", f"{tag}-lease"
    deep = json.dumps(json.loads("[" * 150 + "]" * 150))
    async with env.running() as (service, bus):
        await good_ops(bus, [nested, text, lease], 1)
        hostile = await send_raw(env, [
            ("a value nested 150 levels", nested,
             request(nested, "set", key="x", value_json=deep), "request"),
            ("a field name that is not text", text,
             request(text, "set", value_json='{"\\ud800": 1}'), "request"),
            ("a lock lease of 2^63 ms", lease,
             request(lease, "lock", lock_name="l", lease_ms=LONG_MAX), "request"),
        ])
        await good_ops(bus, [nested, text, lease], 2)
        letters = await letters_for(env, hostile)
        assert {stage_of(d) for d in letters.values()} == {"state"}
        status = await assert_running(service)
        assert status["counters"]["dead_letters"] >= len(hostile), status
        assert service.state_host is not None
        seen = service.state_host.describe("public", lease)
        assert seen is not None and seen["lease_until_ms"] < 2**48, seen
    env.forget_snapshot()  # a fresh host folds the whole log, hostile records included
    async with env.running() as (service, bus):
        await good_ops(bus, [nested, text, lease], 3)
        await assert_running(service)


async def test_a_forged_claim_of_an_endless_lease_is_dead_lettered_and_the_state_stays_free(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    env = States.create(kafka_bootstrap, tmp_path)
    state_id = f"{uuid.uuid4().hex[:6]}-claimed"
    async with env.running() as (service, bus):
        hostile = await send_raw(env, [(
            "a claim of 2^62 ms", state_id,
            record("CLAIM", state_id, region=env.region, epoch=1, lease_ms=2**62,
                   host="ghost-host"), "claim")])
        await good_ops(bus, [state_id], 1)
        letters = await letters_for(env, hostile)
        assert {stage_of(d) for d in letters.values()} == {"state"}
        _region, holder, _epoch = await owner_of(service, state_id)
        assert holder != "ghost-host"
        await assert_running(service)
    env.forget_snapshot()  # a fresh host folds the whole log, hostile records included
    async with env.running() as (service, bus):
        await good_ops(bus, [state_id], 2)
        await assert_running(service)


async def test_a_state_op_that_cannot_be_folded_is_dead_lettered_and_the_host_goes_on(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    env = States.create(kafka_bootstrap, tmp_path)
    tag = uuid.uuid4().hex[:6]
    deep_id, inf_id = f"{tag}-deep", f"{tag}-infinite"
    async with env.running() as (service, bus):
        await good_ops(bus, [deep_id, inf_id], 1)
        forged = []
        for state_id, changes, what in (
            (deep_id, {"n": "[" * 700 + "]" * 700}, "changes nested 700 levels"),
            (inf_id, {"n": "1e999"}, "a number JSON cannot carry back"),
        ):
            region, host, epoch = await owner_of(service, state_id)
            forged += await send_raw(env, [
                (what, state_id, op(state_id, region, host, epoch, changes), "op")])
        letters = await letters_for(env, forged)
        assert {stage_of(d) for d in letters.values()} == {"state"}
        await good_ops(bus, [deep_id, inf_id], 2)  # the forged ops changed nothing
        status = await assert_running(service)
        assert status["counters"]["dead_letters"] >= len(forged), status
    env.forget_snapshot()  # a fresh host folds the whole log, hostile records included
    async with env.running() as (service, bus):
        await good_ops(bus, [deep_id, inf_id], 3)
        await assert_running(service)


def name_not_text(_current: Any) -> Any:
    """An update_fn whose result no state-log record can carry: a field name with a
    lone surrogate (not UTF-8)."""
    return {"\ud800": 1}


async def test_an_update_whose_result_no_state_can_hold_is_refused_and_the_host_goes_on(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    env = States.create(kafka_bootstrap, tmp_path)
    state_id = f"{uuid.uuid4().hex[:6]}-updated"
    async with env.running() as (service, bus):
        await good_ops(bus, [state_id], 1)
        owner = await owner_of(service, state_id)
        with pytest.raises(StateOperationRefused, match="failed at the owner"):
            await bus.state(state_id, "update", update_fn=name_not_text)
        await good_ops(bus, [state_id], 2)
        assert await owner_of(service, state_id) == owner  # refused, not demoted
        status = await assert_running(service)
        assert status["counters"]["refused_requests"] == 1, status

        async def lettered() -> bool:
            return any(stage_of(d) == "state" and "failed at the owner" in d.reason
                       for d in await list_dead_letters(env.config, env.region))

        await eventually(lettered, 20, "the refused request's dead letter")
    env.forget_snapshot()  # a fresh host folds the whole log, hostile records included
    async with env.running() as (service, bus):
        await good_ops(bus, [state_id], 3)
        await assert_running(service)


async def test_the_refusal_of_an_unknown_operation_answers_it_for_every_reader(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    env = States.create(kafka_bootstrap, tmp_path)
    state_id = f"{uuid.uuid4().hex[:6]}-unknown"
    req_id = str(uuid.uuid4())
    async with env.running() as (service, bus):
        await good_ops(bus, [state_id], 1)
        await send_raw(env, [("an unknown operation", state_id,
                              request(state_id, "frobnicate", req_id=req_id), "request")])
        host = service.state_host
        assert host is not None

        async def answered() -> bool:
            obj = host.objects.get(("public", state_id))
            return obj is not None and req_id in obj.applied and not obj.pending

        await eventually(answered, 20, "the owner's refusal folded by its host")
        assert host.objects[("public", state_id)].applied[req_id].outcome == "refused"
        # the client reads the same answer (a re-send gets the first one)
        with pytest.raises(StateOperationRefused, match="unknown state operation 'frobnicate'"):
            await bus.state(state_id, "get", req_id=req_id)
        folded = (await fold_logs(env.config, ["public"], state_id))[("public", state_id)]
        assert folded.obj.pending == {} and folded.obj.applied[req_id].outcome == "refused"
        await good_ops(bus, [state_id], 2)
        status = await assert_running(service)
        assert status["counters"]["rejected_records"] == 0, status
        assert status["counters"]["dead_letters"] == 0, status
    env.forget_snapshot()  # a fresh host folds the whole log, the refusal included
    async with env.running() as (service, bus):
        await good_ops(bus, [state_id], 3)
        status = await assert_running(service)
        assert status["counters"]["rejected_records"] == 0, status
        assert service.state_host is not None
        seen = service.state_host.describe("public", state_id)
        assert seen is not None and seen["pending"] == 0, seen
