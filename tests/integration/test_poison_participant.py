"""Poison pills in the saga log (issue 16, item 2): the strong-commit participant.

Records are written straight to ``edgebus.<log region>.saga`` with a plain aiokafka
producer, between good strong writes, as a hostile or broken writer could: bytes that
are no commit-log record, a null value under a ``begin`` header, a vote whose refusal
is no known one, BEGINs the region
cannot apply (unknown operation, a transaction id that is not ASCII or is 900 KB long,
an increment of a string, a payload that is not JSON, an empty or 5,000-byte key, a
deadline ten years away, a BEGIN on another key's partition) and forged decisions (for
a transaction nobody began, a COMMIT without every participant's yes vote, a COMMIT
stamped in the year 3000, a COMMIT of a client's own write that no coordinator can
commit).

Each test asserts: the region service runs on (its tasks alive, its status answers),
the good writes commit and read back strongly, every hostile record is in
``edgebus.<region>.dlq`` with stage ``participant`` and a reason, a BEGIN the region
cannot apply gets a no vote (so its writer learns at once, and nothing is applied), a
forged decision applies nothing, and a restarted service reads the same records again
without failing. A COMMIT without every participant's yes vote before it is no decision
for any reader: the client that began the write does not report it committed, and
``edgebus saga show`` does not show it committed.

One region (its own name, so its saga log, dead-letter topic and participant group are
new) runs in this process with a coordinator.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from connectors import by_url
from edgebus.commit.coordinator import Coordinator
from edgebus.commit.history import read_transactions, txn_detail
from edgebus.commit.log import commit_partition
from edgebus.config import EdgeConfig, load_config
from edgebus.core.commit_log import (
    AckRecord,
    BeginRecord,
    DecisionRecord,
    LogRecord,
    TxnStatus,
    VoteRecord,
)
from edgebus.core.commit_vote import Decision, TxnOutcome, Vote
from edgebus.errors import DecodeError
from edgebus.kafka.dead_letter_view import DeadLetterView, list_dead_letters
from edgebus.kafka.reading import read_to_end
from edgebus.kafka.topics import commit_log_topic
from edgebus.sdk import EdgeBus
from edgebus.server.service import RegionService
from edgebus.wire.commit_log import decode_saga_record, encode_saga_record, saga_headers
from edgebus.wire.schema_registry import default_registry
from edgebus.wire.single_object import encode_single_object
from tests.conftest import run_cli
from tests.integration.regions import eventually
from tests.kafka_settings import KAFKA

PARTITIONS = 3
GHOST = "ghost-region"  #: a region no service runs: it never votes
TEN_YEARS_MS = 10 * 365 * 24 * 3_600_000
YEAR_3000_MS = 32_503_680_000_000


def settings(region: str, bootstrap: str, *others: str) -> dict[str, Any]:
    """The configuration of a test's region (``others``: regions it also knows of, where
    writes may be placed, though no service runs there)."""
    regions = [region, *others]
    return {
        "discovery": {"locations": regions},
        "compliance": {"zones": {"gdpr": regions, "hipaa": regions, "sox": regions}},
        "kafka": {"bootstrap": bootstrap, "partitions": PARTITIONS, "connect_timeout_s": 20},
        "strong": {"coordinator": "service", "timeout_ms": 10_000,
                   "read_wait_ms": 10_000, "decision_grace_ms": 5_000},
    }


@dataclass
class Strong:
    """One region with a commit participant, a coordinator and a client, in this
    process; the region's store survives a restart."""

    region: str
    config: EdgeConfig
    bootstrap: str
    store: str
    coordinator: Coordinator | None = None  #: while running

    @classmethod
    def create(cls, bootstrap: str, tmp_path: Path) -> Strong:
        region = "p" + uuid.uuid4().hex[:8]
        config = load_config(settings(region, bootstrap))
        return cls(region, config, bootstrap, f"sqlite://{tmp_path / 'store.db'}")

    @property
    def topic(self) -> str:
        return commit_log_topic(self.region)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[tuple[RegionService, EdgeBus]]:
        """The region service (participant, no state host), a coordinator, a client."""
        async with AsyncExitStack() as stack:
            service = await stack.enter_async_context(RegionService(
                self.region, self.config, store=self.store, host_states=False,
                replicate=False, serve=False))
            self.coordinator = await stack.enter_async_context(
                Coordinator(self.config, self.bootstrap))
            bus = await stack.enter_async_context(EdgeBus(self.config, discovery=False))
            yield service, bus

    def begin(self, key: str, **fields: Any) -> BeginRecord:
        """A BEGIN of a set of ``{"good": false}`` placed in this region, due in 10 s."""
        now = int(time.time() * 1000)
        defaults: dict[str, Any] = {
            "txn_id": str(uuid.uuid4()), "key": key, "operation": "set",
            "payload": b'{"good": false}', "placement": (self.region,),
            "classification": ("public",), "expected_version": None,
            "deadline_ms": now + 10_000, "hlc": now << 16, "writer": "hostile-test",
            "time_ms": now,
        }
        return BeginRecord(**{**defaults, **fields})


@dataclass(frozen=True)
class Sent:
    """A record the test wrote to the saga log, and where it landed."""

    partition: int
    offset: int
    what: str

    def source(self, topic: str) -> str:
        return f"{topic}:{self.partition}:{self.offset}"


async def send_raw(
    env: Strong, records: Iterable[tuple[str, bytes | None, bytes | None, int | None,
                                         list[tuple[str, bytes]]]]
) -> list[Sent]:
    """Write ``(what, key, value, partition, headers)`` records to the saga log."""
    producer = AIOKafkaProducer(bootstrap_servers=env.bootstrap, max_request_size=2**21)
    await producer.start()
    sent = []
    try:
        for what, key, value, partition, headers in records:
            meta = await producer.send_and_wait(env.topic, value, key=key,
                                                partition=partition, headers=headers)
            sent.append(Sent(meta.partition, meta.offset, what))
    finally:
        await producer.stop()
    return sent


def unknown_refusal_vote(key: str) -> bytes:
    """A VOTE the schema takes whose ``refusal`` is no refusal edgebus knows."""
    schema = default_registry().latest("io.edgebus.SagaLogRecord")
    return encode_single_object(schema, {
        "kind": "VOTE", "txn_id": str(uuid.uuid4()), "key": key, "time_ms": 0,
        "writer": "hostile-test", "begin": None, "decision": None, "ack": None,
        "vote": {"region": "x", "yes": False, "reason": None, "refusal": "bogus",
                 "version": None},
    })


def saga(record: LogRecord, what: str, partition: int | None = None
         ) -> tuple[str, bytes, bytes, int, list[tuple[str, bytes]]]:
    """``record`` as the raw tuple :func:`send_raw` writes (on its key's partition)."""
    where = commit_partition(record.key, PARTITIONS) if partition is None else partition
    return (what, record.key.encode("utf-8"), encode_saga_record(record), where,
            saga_headers(record))


async def saga_records(env: Strong) -> list[LogRecord]:
    out = []
    for r in await read_to_end(KAFKA, env.bootstrap, env.topic):
        try:
            out.append(decode_saga_record(r.value))
        except DecodeError:
            continue
    return out


async def vote_of(env: Strong, txn_id: str) -> Vote | None:
    for r in await saga_records(env):
        if isinstance(r, VoteRecord) and r.txn_id == txn_id and r.vote.region == env.region:
            return r.vote
    return None


async def ack_of(env: Strong, txn_id: str) -> AckRecord | None:
    for r in await saga_records(env):
        if isinstance(r, AckRecord) and r.txn_id == txn_id and r.region == env.region:
            return r
    return None


def stage_of(letter: DeadLetterView) -> str:
    """The ``eb-dlq-stage`` header of a letter, as written (``DeadLetterView.stage``
    is None for a stage the reader does not know)."""
    return dict(letter.record.headers)["eb-dlq-stage"].decode()


async def letters_for(env: Strong, sent: Iterable[Sent]) -> dict[str, DeadLetterView]:
    """Wait until every record of ``sent`` has a dead letter; source -> letter."""
    wanted = {s.source(env.topic) for s in sent}
    found: dict[str, DeadLetterView] = {}

    async def all_there() -> bool:
        found.clear()
        for d in await list_dead_letters(env.config, env.region):
            if d.source in wanted:
                found[d.source] = d
        return set(found) == wanted

    await eventually(all_there, 60, f"dead letters of {sorted(wanted)}")
    return found


async def assert_running(service: RegionService) -> None:
    """Every task of the service runs (``wait`` raises a component's failure) and its
    status answers."""
    with suppress(TimeoutError):
        await asyncio.wait_for(service.wait(), 0.6)
    status = await service.status()
    assert status["saga_participant"] is not None, status


async def store_row(env: Strong, key: str) -> tuple[bool, Any, int, int] | None:
    """(exists, value, version, hlc wall ms) of ``key`` in the region's store."""
    async with by_url(env.store) as store:
        state = await store.get(key)
    if state is None:
        return None
    return state.exists, state.value, state.version, state.top.hlc >> 16


async def good_writes(bus: EdgeBus, env: Strong, keys: Iterable[str], value: Any) -> None:
    """Strong writes of ``value`` to ``keys`` commit and read back strongly."""
    keys = list(keys)
    results = await asyncio.gather(*(bus.commit(k, value) for k in keys))
    assert [r.committed for r in results] == [True] * len(keys), results
    for key in keys:
        read = await bus.read(key, env.region, consistency="strong")
        assert (read.exists, read.value) == (True, value), read


def keys_on_every_partition(tag: str) -> list[str]:
    keys: dict[int, str] = {}
    i = 0
    while len(keys) < PARTITIONS:
        key = f"{tag}:{i}"
        keys.setdefault(commit_partition(key, PARTITIONS), key)
        i += 1
    return [keys[p] for p in range(PARTITIONS)]


# --------------------------------------------------------------------------- records that are none


async def test_records_that_are_no_commit_log_record_are_dead_lettered_and_the_participant_goes_on(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    env = Strong.create(kafka_bootstrap, tmp_path)
    tag = uuid.uuid4().hex[:6]
    keys = keys_on_every_partition(tag)
    async with env.running() as (service, bus):
        await good_writes(bus, env, keys, {"before": True})
        hostile = await send_raw(env, [
            rec for p in range(PARTITIONS) for rec in (
                ("garbage", b"poison", b"\x00garbage\xff" * 3, p, []),
                ("null value, begin header", keys[p].encode(), None, p,
                 [("eb-saga", b"begin")]),
                ("framed zeros, decision header", b"poison", b"\xc3\x01" + bytes(20), p,
                 [("eb-saga", b"decision")]),
                ("empty value, no key", None, b"", p, []),
                ("a vote with an unknown refusal", keys[p].encode(),
                 unknown_refusal_vote(keys[p]), p, [("eb-saga", b"vote")]),
            )
        ])
        await good_writes(bus, env, keys, {"after": True})
        await assert_running(service)
        letters = await letters_for(env, hostile)
        assert {stage_of(d) for d in letters.values()} == {"participant"}
        assert all(d.reason for d in letters.values()), letters
        assert service.participant is not None
        assert service.participant.status()["dead_letters"] >= len(hostile)
    async with env.running() as (service, bus):  # the same records again: no crash loop
        await good_writes(bus, env, keys, {"restarted": True})
        await assert_running(service)


# --------------------------------------------------------------------------- BEGINs it cannot apply


async def test_a_begin_the_region_cannot_apply_is_voted_no_and_dead_lettered(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    env = Strong.create(kafka_bootstrap, tmp_path)
    tag = uuid.uuid4().hex[:6]
    now = int(time.time() * 1000)
    k = {name: f"{tag}:{name}" for name in
         ("op", "ascii", "long-id", "increment", "json", "deadline", "partition")}
    wrong = (commit_partition(k["partition"], PARTITIONS) + 1) % PARTITIONS
    begins = {
        "unknown operation": env.begin(k["op"], operation="explode"),
        "txn id not ASCII": env.begin(k["ascii"], txn_id=f"tx-é-{uuid.uuid4()}"),
        "txn id of 900 KB": env.begin(k["long-id"], txn_id="x" * 900_000),
        "increment of a string": env.begin(k["increment"], operation="increment",
                                           payload=b'"many"'),
        "payload not JSON": env.begin(k["json"], payload=b"\xff{not json"),
        "empty key": env.begin(""),
        "key of 5,000 bytes": env.begin("k" * 5_000),
        "deadline in ten years": env.begin(k["deadline"], placement=(env.region, GHOST),
                                           deadline_ms=now + TEN_YEARS_MS),
    }
    async with env.running() as (service, bus):
        await good_writes(bus, env, keys_on_every_partition(tag), {"before": True})
        hostile = await send_raw(env, [
            *(saga(b, what) for what, b in begins.items()),
            saga(env.begin(k["partition"]), "BEGIN on another key's partition", wrong),
        ])
        letters = await letters_for(env, hostile)
        assert {stage_of(d) for d in letters.values()} == {"participant"}
        for b in [*begins.values()]:
            if len(b.txn_id) > 1000:
                continue  # its vote would be as large as the record: only dead-lettered
            vote = await vote_of(env, b.txn_id)
            assert vote is not None and not vote.yes and vote.reason, (b.key[:40], vote)
        # nothing hostile was applied, and no key is locked or stuck: good writes to the
        # same keys commit, read back strongly, at version 1
        good = [k["op"], k["ascii"], k["increment"], k["json"], k["deadline"],
                k["partition"]]
        await good_writes(bus, env, good, {"good": True})
        for key in good:
            row = await store_row(env, key)
            assert row is not None and row[:3] == (True, {"good": True}, 1), (key, row)
        await assert_running(service)
        assert service.participant is not None
        assert service.participant.status()["dead_letters"] >= len(hostile)
    async with env.running() as (service, bus):
        await good_writes(bus, env, good, {"restarted": True})
        await assert_running(service)


# --------------------------------------------------------------------------- forged decisions


async def test_forged_decisions_apply_nothing_and_are_dead_lettered(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    env = Strong.create(kafka_bootstrap, tmp_path)
    tag = uuid.uuid4().hex[:6]
    unknown, unvoted, future = f"{tag}:unknown", f"{tag}:unvoted", f"{tag}:future"
    now = int(time.time() * 1000)

    def commit(txn_id: str, key: str, hlc: int) -> DecisionRecord:
        return DecisionRecord(txn_id, key, TxnOutcome(Decision.COMMIT), hlc, 1,
                              "forger", int(time.time() * 1000))

    async with env.running() as (service, bus):
        await good_writes(bus, env, keys_on_every_partition(tag), {"before": True})
        # a decision for a transaction nobody began: nothing to apply
        await send_raw(env, [saga(commit(str(uuid.uuid4()), unknown, now << 16),
                                  "decision of an unknown txn")])
        # two transactions the region votes yes on, whose second participant never votes
        # the deadline from now on (not from the test's start: a loaded machine may take
        # seconds to get here), long enough for the forged decisions to come before it
        deadline = int(time.time() * 1000) + 25_000
        held = {key: env.begin(key, placement=(env.region, GHOST), deadline_ms=deadline)
                for key in (unvoted, future)}
        await send_raw(env, [saga(b, "begin") for b in held.values()])

        async def voted_yes() -> bool:
            votes = [await vote_of(env, b.txn_id) for b in held.values()]
            return all(v is not None and v.yes for v in votes)

        await eventually(voted_yes, 15, "the region's yes votes")
        b_unvoted, b_future = held[unvoted], held[future]
        ghost_yes = Vote(b_future.txn_id, GHOST, True, version=0)
        forged = await send_raw(env, [
            saga(commit(b_unvoted.txn_id, unvoted, now << 16),
                 "COMMIT without the ghost's vote"),
            saga(VoteRecord(b_future.txn_id, future, ghost_yes, "forger", now), "ghost vote"),
            saga(commit(b_future.txn_id, future, YEAR_3000_MS << 16), "COMMIT in year 3000"),
        ])
        letters = await letters_for(env, [forged[0], forged[2]])
        assert {stage_of(d) for d in letters.values()} == {"participant"}
        for b in held.values():
            async def acked(txn_id: str = b.txn_id) -> bool:
                return await ack_of(env, txn_id) is not None

            await eventually(acked, 60, f"the ack of {b.key}")
            ack = await ack_of(env, b.txn_id)
            assert ack is not None and ack.position is None, ack  # applied nothing
        for key in (unknown, unvoted, future):
            assert await store_row(env, key) is None, key
        await good_writes(bus, env, [unknown, unvoted, future], {"good": True})
        for key in (unknown, unvoted, future):
            row = await store_row(env, key)
            assert row is not None and row[:3] == (True, {"good": True}, 1), (key, row)
            assert row[3] < now + 600_000, row  # not stamped in the year 3000
        await assert_running(service)
    async with env.running() as (service, bus):
        await good_writes(bus, env, [unvoted, future], {"restarted": True})
        await assert_running(service)


async def test_a_forged_commit_of_a_clients_write_is_neither_its_outcome_nor_what_saga_show_says(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """A client commits a write placed in this region and in one where no service runs:
    this region votes yes, the other never votes, so no coordinator can commit it. A
    forger then writes a COMMIT of it straight to the saga log (after the yes vote, so
    that only the missing vote gives it away). Every reader refuses it: the client
    waits on and reports the coordinator's abort at the deadline, ``edgebus saga show``
    shows the write aborted (the forged COMMIT under ``refused``), the region applies
    nothing (the forged record is dead-lettered, the write acknowledged as aborted), and
    the key is free for the next write."""
    env = Strong.create(kafka_bootstrap, tmp_path)
    key = f"{uuid.uuid4().hex[:6]}:forged"
    # the client knows of the ghost region too: it places the write there as well
    client_config = load_config(settings(env.region, kafka_bootstrap, GHOST))
    async with env.running() as (service, bus), EdgeBus(client_config, discovery=False) as client:
        write = asyncio.ensure_future(
            client.commit(key, {"forged": False}, replication_factor=2, timeout_ms=8_000))
        begins: list[BeginRecord] = []

        async def begun_and_voted_yes() -> bool:
            begins[:] = [r for r in await saga_records(env)
                         if isinstance(r, BeginRecord) and r.key == key]
            vote = await vote_of(env, begins[0].txn_id) if begins else None
            return vote is not None and vote.yes

        await eventually(begun_and_voted_yes, 15, "the write's BEGIN and the region's yes")
        begin = begins[0]
        assert begin.placement == (env.region, GHOST), begin
        assert not write.done()  # the ghost's vote is missing: undecided
        now = int(time.time() * 1000)
        forged = await send_raw(env, [saga(DecisionRecord(
            begin.txn_id, key, TxnOutcome(Decision.COMMIT), now << 16, 1, "forger", now,
        ), "COMMIT of the client's write without the ghost's vote")])

        result = await write
        assert result.txn_id == begin.txn_id
        assert not result.committed, result
        assert result.decided_by != "forger"
        assert result.reason is not None and result.reason.startswith(
            f"timed out: {GHOST} did not vote"), result

        txn = next(t for t in await read_transactions(env.config, env.bootstrap, None)
                   if t.txn_id == begin.txn_id)
        assert txn.status in (TxnStatus.ABORTED, TxnStatus.DONE_ABORTED), txn.status
        detail = txn_detail(txn)
        assert detail["decision"]["commit"] is False and detail["decided_by"] != "forger"
        assert [(r["by"], r["offset"]) for r in detail["refused"]] == [
            ("forger", forged[0].offset)]
        assert detail["refused_commits"] == 1
        assert env.coordinator is not None and env.coordinator.status()["refused"] == 1

        path = tmp_path / "edgebus.json"  # what the command line says
        path.write_text(json.dumps(settings(env.region, env.bootstrap)), encoding="utf-8")
        cli_env = {**os.environ, "EDGEBUS_CONFIG": str(path),
                   "EDGEBUS_STATE_DIR": str(tmp_path / "state")}
        code, shown, out, err = await asyncio.to_thread(
            run_cli, ["saga", "show", begin.txn_id, "--window", "0", "--json"], cli_env)
        assert code == 0, out + err
        shown_txn = shown["transaction"]
        assert shown_txn["status"] in (TxnStatus.ABORTED, TxnStatus.DONE_ABORTED), shown_txn
        assert shown_txn["decision"]["commit"] is False
        assert [r["by"] for r in shown_txn["refused"]] == ["forger"]

        letters = await letters_for(env, forged)
        assert {stage_of(d) for d in letters.values()} == {"participant"}
        assert f"without a yes vote of {GHOST} " in next(iter(letters.values())).reason

        async def acked() -> bool:
            return await ack_of(env, begin.txn_id) is not None

        await eventually(acked, 15, "the region's ack of the aborted write")
        ack = await ack_of(env, begin.txn_id)
        assert ack is not None and ack.position is None, ack  # applied nothing
        assert await store_row(env, key) is None
        await good_writes(bus, env, [key], {"good": True})  # the key is free
        await assert_running(service)
