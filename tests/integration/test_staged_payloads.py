"""Strong-write payloads stay in the regions that may hold them (issue 17, item 4).

The commit log ``edgebus.<L>.saga`` lies on the log region's cluster, here the region
outside the GDPR zone (``us``, the first region, as us-east-1 is by default), so it must
never hold a strong write's data: the writer stages the payload in each participant's
own ``edgebus.<region>.staged`` and the BEGIN carries only a digest. Two regions run in
this process, ``us`` and ``eu`` (the GDPR zone is ``eu`` alone), with a coordinator and
a client, on region names of their own.

* (a) After strong commits of an e-mail address (placed in ``eu`` only), no record of
  the commit log (raw bytes of key, value and headers) holds the address, nor any
  record of ``us``'s topics; ``eu``'s staged topic does.
* (b) A public strong write still commits in both regions and reads back strongly in
  each; its BEGIN has no payload.
* (c) A participant votes no, and nothing is applied, when its staged payload is missing
  (a BEGIN appended by hand), is not the BEGIN's (a digest that does not match), or holds
  what its region may not hold by content although labelled public (an e-mail address
  staged in ``us``). Poison in a staged topic is dead-lettered and the participant goes
  on; a BEGIN with its payload inline, as an old client writes it, still commits.
* The participant's tail finds a staged payload older than its start by searching
  (a participant restarted after its yes vote applies the commit).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord

from edgebus.commit import staged_tail
from edgebus.commit.coordinator import Coordinator
from edgebus.commit.history import read_transactions
from edgebus.commit.log import CommitLogWriter
from edgebus.commit.poison import DeadLetters
from edgebus.commit.staged_tail import StagedPayloads
from edgebus.commit.staging import StagedWriter
from edgebus.config import EdgeConfig, load_config
from edgebus.core.commit_log import BeginRecord, Txn
from edgebus.core.commit_vote import Refusal
from edgebus.core.staged_write import StagedWrite
from edgebus.kafka.batching import partition_for
from edgebus.kafka.dead_letter_view import list_dead_letters
from edgebus.kafka.reading import read_to_end
from edgebus.kafka.topics import commit_log_topic, dlq_topic, events_topic, staged_topic
from edgebus.sdk import EdgeBus
from edgebus.server.service import RegionService
from tests.integration.regions import eventually
from tests.kafka_settings import KAFKA

PARTITIONS = 3


@dataclass
class Env:
    """Two regions, a coordinator and a client, running in this process."""

    us: str
    eu: str
    config: EdgeConfig
    bootstrap: str
    services: dict[str, RegionService]
    bus: EdgeBus

    @property
    def log_topic(self) -> str:
        return commit_log_topic(self.config.strong_log_region)


def settings(us: str, eu: str, bootstrap: str) -> dict[str, Any]:
    return {
        "discovery": {"locations": [us, eu]},
        "compliance": {"zones": {"gdpr": [eu], "hipaa": [us], "sox": [us, eu]}},
        "kafka": {"bootstrap": bootstrap, "partitions": PARTITIONS, "connect_timeout_s": 20},
        "strong": {
            "coordinator": "service",
            "timeout_ms": 10_000,
            "read_wait_ms": 10_000,
            "decision_grace_ms": 5_000,
        },
    }


@pytest.fixture(scope="module")
async def env(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Env]:
    tmp: Path = tmp_path_factory.mktemp("staged")
    tag = "s" + uuid.uuid4().hex[:6]
    us, eu = f"{tag}-us", f"{tag}-eu"
    config = load_config(settings(us, eu, kafka_bootstrap))
    assert config.strong_log_region == us  # the commit log lies outside the GDPR zone
    async with AsyncExitStack() as stack:
        services = {
            r: await stack.enter_async_context(
                RegionService(
                    r,
                    config,
                    store=f"sqlite://{tmp / f'{r}.db'}",
                    host_states=False,
                    replicate=False,
                    serve=False,
                )
            )
            for r in (us, eu)
        }
        await stack.enter_async_context(Coordinator(config, kafka_bootstrap))
        bus = await stack.enter_async_context(EdgeBus(config, discovery=False))
        first = await bus.commit(f"{tag}:warm-up", {"up": True}, timeout_ms=60_000)
        assert first.committed, first
        yield Env(us, eu, config, kafka_bootstrap, services, bus)


def raw_bytes(record: ConsumerRecord[bytes, bytes]) -> bytes:
    """Every byte of a record: key, value and headers."""
    return b"|".join(
        [
            record.key or b"",
            record.value or b"",
            *(n.encode() + b"=" + (v or b"") for n, v in record.headers or ()),
        ]
    )


async def holding(env: Env, topic: str, needle: bytes) -> list[ConsumerRecord[bytes, bytes]]:
    return [r for r in await read_to_end(KAFKA, env.bootstrap, topic) if needle in raw_bytes(r)]


async def decided(env: Env, txn_id: str, timeout_s: float = 30.0) -> Txn:
    """The transaction once the commit log holds its decision."""
    found: list[Txn] = []

    async def has_decision() -> bool:
        found[:] = [
            t
            for t in await read_transactions(env.config, env.bootstrap, None)
            if t.txn_id == txn_id and t.decision is not None
        ]
        return bool(found)

    await eventually(has_decision, timeout_s, f"the decision of txn {txn_id}")
    return found[0]


async def stored(env: Env, region: str, key: str) -> Any:
    state = await env.services[region].store.get(key)
    return None if state is None else (state.exists, state.value, state.version)


def staged_write(
    key: str, payload: bytes, *, operation: str = "set", timeout_ms: int = 10_000
) -> StagedWrite:
    now = int(time.time() * 1000)
    return StagedWrite(
        str(uuid.uuid4()),
        key,
        operation,
        payload,
        None,
        uuid.uuid4().bytes * 2,
        now + timeout_ms,
        "hostile-test",
        now,
    )


def begin_for(write: StagedWrite, placement: tuple[str, ...], **fields: Any) -> BeginRecord:
    begin = BeginRecord(
        write.txn_id,
        write.key,
        write.operation,
        None,
        placement,
        ("public",),
        None,
        write.deadline_ms,
        write.time_ms << 16,
        write.writer,
        write.time_ms,
        write.digest,
    )
    return dataclasses.replace(begin, **fields)


async def append_begin(env: Env, begin: BeginRecord) -> None:
    writer = CommitLogWriter(env.config, env.bootstrap, "hostile-test")
    await writer.start()
    try:
        await writer.append(begin)
    finally:
        await writer.stop()


async def stage(env: Env, write: StagedWrite, regions: tuple[str, ...]) -> None:
    writer = StagedWriter(env.config, "hostile-test")
    try:
        await writer.stage(write, regions)
    finally:
        await writer.stop()


# --------------------------------------------------------------------------- (a), (b)


async def test_an_email_committed_strongly_is_staged_in_its_region_never_in_the_commit_log(
    env: Env,
) -> None:
    tag = uuid.uuid4().hex[:8]
    address = f"ann.{tag}@example.eu"
    results = [
        await env.bus.commit(f"{tag}:customer:{i}", {"email": address, "n": i}) for i in range(5)
    ]
    assert all(r.committed and r.placement == (env.eu,) for r in results), results
    assert all("pii" in r.classification for r in results)
    for i in range(5):
        read = await env.bus.read(f"{tag}:customer:{i}", env.eu, consistency="strong")
        assert (read.exists, read.value) == (True, {"email": address, "n": i}), read

    needle = address.encode()
    assert await holding(env, env.log_topic, needle) == []  # nothing in the commit log
    begins = [
        t.begin
        for t in await read_transactions(env.config, env.bootstrap, None)
        if t.txn_id in {r.txn_id for r in results}
    ]
    assert len(begins) == 5 and all(
        b is not None and b.payload is None and b.staged and b.staged_digest for b in begins
    )
    staged_eu = await holding(env, staged_topic(env.eu), needle)
    assert {r.key for r in staged_eu} == {r.txn_id.encode() for r in results}
    for topic in (staged_topic(env.us), events_topic(env.us), dlq_topic(env.us)):
        assert await holding(env, topic, needle) == [], topic
    assert len(await holding(env, events_topic(env.eu), needle)) == 5


async def test_a_public_strong_write_commits_and_reads_back_in_every_participant(
    env: Env,
) -> None:
    key = f"{uuid.uuid4().hex[:8]}:plan"
    result = await env.bus.commit(key, {"plan": "pro", "seats": 3})
    assert result.committed and result.placement == (env.us, env.eu), result
    for region in (env.us, env.eu):
        read = await env.bus.read(key, region, consistency="strong")
        assert (read.exists, read.value, read.version) == (True, {"plan": "pro", "seats": 3}, 1), (
            region,
            read,
        )
        staged = [
            r
            for r in await read_to_end(KAFKA, env.bootstrap, staged_topic(region))
            if r.key == result.txn_id.encode()
        ]
        assert len(staged) == 1, region
    again = await env.bus.commit(key, {"plan": "team"}, expected_version=1)
    assert again.committed and again.version == 2, again
    deleted = await env.bus.commit(key, None, operation="delete")
    assert deleted.committed, deleted
    for region in (env.us, env.eu):
        read = await env.bus.read(key, region, consistency="strong")
        assert (read.exists, read.version) == (False, 3), (region, read)


# --------------------------------------------------------------------------- (c)


async def test_a_begin_without_its_staged_payload_is_voted_no_and_nothing_is_applied(
    env: Env,
) -> None:
    key = f"{uuid.uuid4().hex[:8]}:missing"
    write = staged_write(key, b'{"plan": "pro"}')
    begin = begin_for(write, (env.us, env.eu))
    await append_begin(env, begin)  # no staged record anywhere
    txn = await decided(env, begin.txn_id)
    assert txn.decision is not None and not txn.decision.committed
    # both regions said why, long before the deadline (no one waited for it)
    assert txn.decision.time_ms < begin.deadline_ms - 2_000, (txn.decision, begin)
    reason = txn.decision.outcome.reason or ""
    assert "voted no" in reason and "staged payload is missing" in reason, reason
    for vote in txn.votes.values():
        assert not vote.yes and vote.reason and "staged payload is missing" in vote.reason
    for region in (env.us, env.eu):
        assert await stored(env, region, key) is None, region

    async def dead_lettered(region: str) -> bool:
        return any(
            d.stage == "participant" and "staged payload is missing" in d.reason and d.key == key
            for d in await list_dead_letters(env.config, region)
        )

    # every region that voted dead-lettered the BEGIN first; a region whose wait for the
    # payload ended after the first no decided the transaction has nothing to vote on
    assert txn.votes, txn
    for region in txn.votes:
        await eventually(lambda r=region: dead_lettered(r), 30, f"{region}'s dead letter")
    # the key is free: a real write commits
    assert (await env.bus.commit(key, {"plan": "team"})).committed


async def test_an_email_labelled_public_staged_outside_the_gdpr_zone_is_voted_no_by_content(
    env: Env,
) -> None:
    """A writer labels an e-mail address public and places it in both regions (the SDK
    never does: detection places it in ``eu`` alone); ``us`` refuses it by content."""
    tag = uuid.uuid4().hex[:8]
    address = f"eve.{tag}@example.eu"
    key = f"{tag}:labelled-public"
    by_sdk = await env.bus.commit(f"{key}:sdk", {"email": address}, classification="public")
    assert by_sdk.committed and by_sdk.placement == (env.eu,), by_sdk

    write = staged_write(key, f'{{"email": "{address}"}}'.encode())
    begin = begin_for(write, (env.us, env.eu))
    await stage(env, write, (env.us, env.eu))
    await append_begin(env, begin)
    txn = await decided(env, begin.txn_id)
    assert txn.decision is not None and not txn.decision.committed
    us_vote = txn.votes[env.us]
    assert not us_vote.yes and us_vote.refusal is Refusal.COMPLIANCE, us_vote
    assert us_vote.reason is not None
    assert f"by its content region {env.us} may not hold it" in us_vote.reason
    assert "pii" in us_vote.reason and "labelled public" in us_vote.reason
    assert f"region {env.us} voted no: compliance" in (txn.decision.outcome.reason or "")
    if env.eu in txn.votes:  # (the decision may come before eu's vote)
        assert txn.votes[env.eu].yes, txn.votes[env.eu]
    for region in (env.us, env.eu):
        assert await stored(env, region, key) is None, region
    # the reasons in the commit log name no data
    assert await holding(env, env.log_topic, address.encode()) == []


async def test_a_staged_payload_that_is_not_the_begins_is_voted_no(env: Env) -> None:
    key = f"{uuid.uuid4().hex[:8]}:swapped"
    write = staged_write(key, b'{"plan": "pro"}')
    other = dataclasses.replace(write, payload=b'{"plan": "free"}')
    await stage(env, other, (env.eu,))  # other bytes than the BEGIN commits to
    begin = begin_for(write, (env.eu,))
    await append_begin(env, begin)
    txn = await decided(env, begin.txn_id)
    assert txn.decision is not None and not txn.decision.committed
    vote = txn.votes[env.eu]
    assert not vote.yes and vote.reason and "digest is not the BEGIN's" in vote.reason
    assert await stored(env, env.eu, key) is None


async def test_poison_in_a_staged_topic_is_dead_lettered_and_the_participant_goes_on(
    env: Env,
) -> None:
    tag = uuid.uuid4().hex[:8]
    write = staged_write(f"{tag}:k", b"{}")
    home = partition_for(write.txn_id.encode(), PARTITIONS)
    producer = AIOKafkaProducer(bootstrap_servers=env.bootstrap)
    await producer.start()
    try:
        topic = staged_topic(env.eu)
        sent = [
            await producer.send_and_wait(
                topic, b"\x00garbage\xff", key=b"poison-" + tag.encode(), partition=0
            ),
            await producer.send_and_wait(topic, None, key=write.txn_id.encode(), partition=home),
        ]
    finally:
        await producer.stop()
    sources = {f"{staged_topic(env.eu)}:{m.partition}:{m.offset}" for m in sent}

    async def dead_lettered() -> bool:
        letters = {d.source: d for d in await list_dead_letters(env.config, env.eu)}
        return sources <= set(letters) and all(
            letters[s].stage == "participant" and "not a staged write" in letters[s].reason
            for s in sources
        )

    await eventually(dead_lettered, 30, "the staged poison's dead letters")
    key = f"{tag}:after"
    result = await env.bus.commit(key, {"after": "poison"})
    assert result.committed, result
    status = env.services[env.eu].participant.status()  # type: ignore[union-attr]
    assert status["staged"]["poison"] >= 2, status


async def test_a_begin_with_its_payload_inline_as_an_old_client_writes_it_still_commits(
    env: Env,
) -> None:
    key = f"{uuid.uuid4().hex[:8]}:inline"
    write = staged_write(key, b'{"plan": "old"}')
    begin = begin_for(write, (env.us, env.eu), payload=write.payload, staged_digest=None)
    assert not begin.staged
    await append_begin(env, begin)
    txn = await decided(env, begin.txn_id)
    assert txn.decision is not None and txn.decision.committed, txn.decision

    async def applied() -> bool:
        rows = [await stored(env, r, key) for r in (env.us, env.eu)]
        return rows == [(True, {"plan": "old"}, 1)] * 2

    await eventually(applied, 30, "the inline write applied in both regions")


# --------------------------------------------------------------------------- the tail


async def test_the_tail_finds_a_staged_payload_older_than_its_start_and_says_when_one_is_missing(
    env: Env,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As after a restart: the tail starts at the topic's end (no look-back), so an
    older staged payload is found by its search (what applying a commit voted on before
    the restart does), and a missing one is reported at once, not at the deadline."""
    monkeypatch.setattr(staged_tail, "LOOKBACK_MS", 0)
    key = f"{uuid.uuid4().hex[:8]}:old"
    write = staged_write(key, b'{"plan": "pro"}', timeout_ms=60_000)
    await stage(env, write, (env.eu,))
    await asyncio.sleep(0.05)
    tail = StagedPayloads(env.config, env.eu, DeadLetters(env.config, env.eu))
    await tail.start()
    try:
        begin = begin_for(write, (env.eu,))
        assert tail.held(write.txn_id) is None  # before the tail's start
        assert await tail.fetch(begin) == write
        assert tail.status()["searched"] == 1
        assert await tail.wait_for(begin) == write  # kept: no second search
        assert tail.status()["searched"] == 1
        missing = begin_for(staged_write(key, b"{}", timeout_ms=60_000), (env.eu,))
        started = time.monotonic()
        reason = await tail.wait_for(missing)
        assert isinstance(reason, str) and "staged payload is missing" in reason
        assert time.monotonic() - started < 30
        assert tail.status()["searched"] == 2
    finally:
        await tail.stop()
