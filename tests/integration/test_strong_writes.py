"""Strong writes on real Kafka (issue 5): two-phase commit through the commit log, with
the three regions and the coordinator each in its own process.

One deployment serves the whole module (three ``edgebus region run`` processes and one
``edgebus coordinator run``, on region names, a commit log and a coordinator group of
its own); each test writes keys of its own (``<tag>:...``) and ends with
:func:`assert_atomic` over everything written so far: each committed transaction
applied exactly once in every region of its placement, nothing of an aborted one
anywhere.

* Basics: a commit is visible to a strong read in every region as soon as ``commit``
  returns (no waiting in the test); compare-and-set by ``expected_version`` (a stale
  version is an ``outcome == "conflict"`` result naming region, expected and found
  versions, and changes nothing); create-if-absent (``expected_version=0``); strong
  increments from concurrent clients add up exactly; a strong delete.
* Compliance: PII commits only among the GDPR regions (the BEGIN's placement, the
  votes, the topics and the stores say so); strict mode with no compliant region left
  refuses the write before anything reaches the commit log.
* A poison record in the commit log stops nobody.
* No coordinator: the client reports StrongOutcomeUnknown with the transaction id
  (last: it stops the module's coordinator, then starts it again).

The test's EdgeBus runs without discovery: placement is every compliant region, never
narrowed by health probes. Public payloads avoid field names the classifier takes for
PII (``name`` is one: such a write is placed in the GDPR region only).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord

from edgebus.core.commit_log import VoteRecord
from edgebus.core.commit_vote import Decision, VersionConflict
from edgebus.errors import ComplianceViolation, StrongOutcomeUnknown
from edgebus.kafka.reading import read_to_end
from edgebus.kafka.topics import commit_log_topic, events_topic, staged_topic
from edgebus.sdk import CommitResult, EdgeBus
from tests.integration.regions import eventually, store_rows
from tests.integration.saga_processes import (
    PARTITIONS,
    Deployment,
    expect_strong_reads,
    keys_per_partition,
    strong_reads,
    txn_events,
    unique_tag,
)
from tests.kafka_settings import KAFKA

#: the first transaction waits for the coordinator to join its group and for every
#: participant to catch up: its deadline is far
FIRST_TIMEOUT_MS = 60_000
#: deadlines and read barriers that a loaded test machine meets (outcomes are asserted,
#: never durations)
PATIENT = {"timeout_ms": 30_000, "read_wait_ms": 30_000}


@pytest.fixture(scope="module")
async def dep(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Deployment]:
    """Three regions and a coordinator, as processes, for the whole module; ready once
    a first strong write committed (every participant and the coordinator are up)."""
    tmp: Path = tmp_path_factory.mktemp("strong-writes")
    dep = Deployment.create(kafka_bootstrap, tmp, coordinators=["writes-c1"], **PATIENT)
    try:
        await dep.start()
        async with EdgeBus(dep.regions.config, discovery=False) as bus:
            first = await bus.commit(
                f"{unique_tag()}:warm-up", {"up": True}, timeout_ms=FIRST_TIMEOUT_MS
            )
            assert first.committed, (first, dep.logs())
            assert first.placement == dep.names
        yield dep
    finally:
        dep.stop()


@pytest.fixture
async def bus(dep: Deployment) -> AsyncIterator[EdgeBus]:
    async with EdgeBus(dep.regions.config, discovery=False) as b:
        yield b


async def _check_atomic(dep: Deployment) -> None:
    report = await dep.assert_atomic()
    assert report.committed >= 1 and report.undecided == 0, report


# --------------------------------------------------------------------------- basics


async def test_strong_write_commits_in_all_regions_and_strong_reads_see_it_at_once(
    dep: Deployment, bus: EdgeBus
) -> None:
    key = f"{unique_tag()}:profile"
    result = await bus.commit(key, {"title": "Ann"})
    assert isinstance(result, CommitResult)
    assert result.committed and result.outcome == "committed", result
    assert (result.reason, result.conflict, result.version) == (None, None, 1)
    assert result.placement == dep.names and result.decided_by == "writes-c1"
    # no sleep, no polling: the read barrier makes the commit visible everywhere
    await expect_strong_reads(bus, dep.names, key, (True, {"title": "Ann"}, 1))
    again = await bus.write(key, {"title": "Bea"}, consistency="strong")
    assert isinstance(again, CommitResult) and again.committed and again.version == 2
    await expect_strong_reads(bus, dep.names, key, (True, {"title": "Bea"}, 2))
    await _check_atomic(dep)


async def test_compare_and_set_with_a_stale_version_is_a_conflict_and_changes_nothing(
    dep: Deployment, bus: EdgeBus
) -> None:
    key = f"{unique_tag()}:balance"
    assert (await bus.commit(key, 100)).version == 1
    assert (await bus.commit(key, 120, expected_version=1)).version == 2
    await expect_strong_reads(bus, dep.names, key, (True, 120, 2))
    before = {r: (await store_rows(u))[key] for r, u in dep.store_urls.items()}

    stale = await bus.commit(key, 999, expected_version=1)
    assert not stale.committed and stale.outcome == "conflict", stale
    assert isinstance(stale.conflict, VersionConflict)
    assert stale.conflict.region in dep.names
    assert (stale.conflict.expected, stale.conflict.found) == (1, 2)
    assert stale.version is None and stale.reason and stale.conflict.region in stale.reason
    await expect_strong_reads(bus, dep.names, key, (True, 120, 2))
    assert {r: (await store_rows(u))[key] for r, u in dep.store_urls.items()} == before

    right = await bus.commit(key, 130, expected_version=2)
    assert right.committed and right.version == 3, right
    await expect_strong_reads(bus, dep.names, key, (True, 130, 3))
    await _check_atomic(dep)


async def test_expected_version_zero_creates_only_if_absent(dep: Deployment, bus: EdgeBus) -> None:
    key = f"{unique_tag()}:lock"
    created = await bus.commit(key, {"owner": "a"}, expected_version=0)
    assert created.committed and created.version == 1, created
    second = await bus.commit(key, {"owner": "b"}, expected_version=0)
    assert second.outcome == "conflict", second
    assert second.conflict is not None
    assert (second.conflict.expected, second.conflict.found) == (0, 1)
    await expect_strong_reads(bus, dep.names, key, (True, {"owner": "a"}, 1))
    await _check_atomic(dep)


async def test_concurrent_strong_increments_from_several_clients_add_up_exactly(
    dep: Deployment,
) -> None:
    key = f"{unique_tag()}:counter"
    clients, per_client = 3, 4

    async def client(n: int) -> list[tuple[int, CommitResult]]:
        out = []
        async with EdgeBus(dep.regions.config, client_id=f"inc-{n}", discovery=False) as b:
            for i in range(per_client):
                amount = 10 * (n + 1) + i
                out.append((amount, await b.commit(key, amount, operation="increment")))
        return out

    runs = await asyncio.gather(*(client(n) for n in range(clients)))
    results = [pair for run in runs for pair in run]
    committed = [(amount, r) for amount, r in results if r.committed]
    # a lost race (the key locked by a concurrent transaction) aborts and changes nothing
    assert all(r.committed or r.outcome == "aborted" for _, r in results), results
    assert committed, results
    versions = sorted(r.version for _, r in committed if r.version is not None)
    assert versions == list(range(1, len(committed) + 1)), versions
    total = sum(amount for amount, _ in committed)
    async with EdgeBus(dep.regions.config, discovery=False) as reader:
        await expect_strong_reads(reader, dep.names, key, (True, total, len(committed)))
    print(f"{len(committed)} of {len(results)} concurrent increments committed: {total}")
    await _check_atomic(dep)


async def test_strong_delete_removes_the_key_in_every_region(dep: Deployment, bus: EdgeBus) -> None:
    key = f"{unique_tag()}:session"
    assert (await bus.commit(key, {"token": "x"})).committed
    deleted = await bus.commit(key, None, operation="delete", expected_version=1)
    assert deleted.committed and deleted.version == 2, deleted
    await expect_strong_reads(bus, dep.names, key, (False, None, 2))
    await _check_atomic(dep)


# --------------------------------------------------------------------------- compliance


async def test_strong_pii_write_is_placed_voted_and_stored_only_in_the_gdpr_region(
    dep: Deployment, bus: EdgeBus
) -> None:
    eu = dep.regions.eu  # the only region of zone gdpr in this config
    key = f"{unique_tag()}:customer"
    result = await bus.commit(key, {"email": "a@b.eu"})
    assert result.committed, result
    assert result.placement == (eu,) and "pii" in result.classification
    read = await bus.read(key, eu, consistency="strong")
    assert (read.exists, read.value, read.version) == (True, {"email": "a@b.eu"}, 1)

    view = await dep.saga_log()
    begin = view.txns[result.txn_id].begin
    assert begin is not None and begin.placement == (eu,)
    voters = [r.vote.region for r in view.records[result.txn_id] if isinstance(r, VoteRecord)]
    assert voters == [eu]
    for region in dep.names:
        topic = await read_to_end(KAFKA, dep.bootstrap, events_topic(region))
        holds = any(b"a@b.eu" in (r.value or b"") for r in topic)
        assert holds == (region == eu), region
        staged = await read_to_end(KAFKA, dep.bootstrap, staged_topic(region))
        assert any(b"a@b.eu" in (r.value or b"") for r in staged) == (region == eu), region
        assert (result.txn_id in await txn_events(dep.bootstrap, region)) == (region == eu)
        assert (key in await store_rows(dep.store_urls[region])) == (region == eu), region
    # the commit log (in the log region's cluster, outside the GDPR zone) holds none of it
    saga_log = await read_to_end(KAFKA, dep.bootstrap, commit_log_topic(dep.log_region))
    assert not [r.offset for r in saga_log if b"a@b.eu" in raw_bytes(r)]
    await _check_atomic(dep)


def raw_bytes(record: ConsumerRecord[bytes, bytes]) -> bytes:
    """Every byte of a record: key, value and headers."""
    return b"|".join(
        [
            record.key or b"",
            record.value or b"",
            *(n.encode() + b"=" + (v or b"") for n, v in record.headers or ()),
        ]
    )


async def test_strict_mode_refuses_pii_with_no_gdpr_region_and_nothing_is_prepared(
    dep: Deployment, bus: EdgeBus
) -> None:
    key = f"{unique_tag()}:refused"
    with pytest.raises(ComplianceViolation) as refused:
        await bus.commit(key, {"email": "a@b.eu"}, exclude_locations=[dep.regions.eu])
    assert "pii" in refused.value.classification
    assert "gdpr" in refused.value.zones_required
    assert str(refused.value).startswith("Compliance violation: cannot place data")
    with pytest.raises(ComplianceViolation):
        await bus.write(
            key,
            {"note": "x"},
            classification="pii",
            consistency="strong",
            exclude_locations=[dep.regions.eu],
        )
    # nothing prepared: not one record of the key in the commit log, in no store
    saga_log = await read_to_end(KAFKA, dep.bootstrap, commit_log_topic(dep.log_region))
    assert saga_log, "the commit log holds the earlier tests' transactions"
    assert [r.offset for r in saga_log if r.key == key.encode("utf-8")] == []
    for region in dep.names:
        assert key not in await store_rows(dep.store_urls[region])
    await _check_atomic(dep)


# --------------------------------------------------------------------------- poison


async def test_a_poison_record_in_the_saga_log_stops_neither_coordinator_nor_participants(
    dep: Deployment, bus: EdgeBus
) -> None:
    tag = unique_tag()
    topic = commit_log_topic(dep.log_region)
    producer = AIOKafkaProducer(bootstrap_servers=dep.bootstrap)
    await producer.start()
    try:
        for p in range(PARTITIONS):  # every coordinator and participant meets one
            await producer.send_and_wait(topic, b"\x00garbage\xff" * 3, key=b"poison", partition=p)
            await producer.send_and_wait(
                topic,
                b"\xc3\x01" + bytes(20),
                key=b"poison",
                partition=p,
                headers=[("eb-saga", b"decision")],
            )
    finally:
        await producer.stop()
    keys = keys_per_partition(tag)
    results = await asyncio.gather(*(bus.commit(k, {"after": "poison"}) for k in keys))
    assert [r.committed for r in results] == [True] * len(keys), results
    for key in keys:
        await expect_strong_reads(bus, dep.names, key, (True, {"after": "poison"}, 1))
    assert all(p.alive() for p in dep.region_procs.values()), dep.logs()
    assert all(c.alive() for c in dep.coordinators), dep.logs()
    view = await dep.saga_log()
    assert len(view.undecodable) == 2 * PARTITIONS
    await _check_atomic(dep)


# --------------------------------------------------------------------------- no coordinator


async def test_outcome_unknown_without_a_coordinator_then_a_late_coordinator_decides_from_the_votes(
    dep: Deployment,
) -> None:
    """No coordinator runs: the client gives up ``decision_grace_ms`` past the deadline
    with StrongOutcomeUnknown naming the transaction (the write may still commit: the
    log decides). Every participant voted yes before the deadline, so a coordinator
    started afterwards commits it (the votes are facts; a timeout abort is only for
    missing votes), and it is applied once in every region."""
    [coordinator] = dep.coordinators
    key = f"{unique_tag()}:unknown"
    config = {
        **dep.regions.config,
        "strong": {**dep.regions.config["strong"], "decision_grace_ms": 0},
    }
    async with EdgeBus(config, discovery=False) as bus:
        assert (await bus.commit(key, 5, operation="increment")).committed
        await asyncio.to_thread(coordinator.stop)
        with pytest.raises(StrongOutcomeUnknown) as unknown:
            await bus.commit(key, 1, operation="increment", timeout_ms=3_000)
    txn_id = unknown.value.txn_id
    assert txn_id and txn_id in str(unknown.value)
    assert "coordinator" in str(unknown.value)

    async def voted() -> bool:  # every participant voted (before the deadline)
        txn = (await dep.saga_log()).txns[txn_id]
        return set(txn.votes) == set(dep.names)

    await eventually(voted, 60, "every participant's vote on the txn")
    txn = (await dep.saga_log()).txns[txn_id]
    assert txn.decision is None and txn.begin is not None

    await asyncio.to_thread(coordinator.start)

    async def decided() -> bool:
        return (await dep.saga_log()).txns[txn_id].decision is not None

    await eventually(decided, 60, f"a decision on txn {txn_id} by the restarted coordinator")
    txn = (await dep.saga_log()).txns[txn_id]
    assert txn.decision is not None and txn.decision.writer == coordinator.name
    async with EdgeBus(dep.regions.config, discovery=False) as reader:
        state = await strong_reads(reader, dep.names, key)
    await _check_atomic(dep)
    assert txn.decision.outcome.decision is Decision.COMMIT, (
        f"every participant voted yes on txn {txn_id}, yet the coordinator started after "
        f"its deadline decided {txn.decision.outcome}; the regions hold {state}"
    )
    assert state == {r: (True, 6, 2) for r in dep.names}


async def test_saga_list_and_show_report_votes_decisions_and_acks_of_strong_writes(
    dep: Deployment, bus: EdgeBus
) -> None:
    """`edgebus saga list` shows a key's transactions newest first with status, votes
    and who decided; `saga show` the request, each vote, the decision (with a conflict's
    versions) and each participant's acknowledgement; an unknown id is refused."""
    key = f"{unique_tag()}:cli"
    first = await bus.commit(key, {"level": 1000})  # public: placed in all three regions
    lost = await bus.commit(key, {"level": 0}, expected_version=0)
    assert first.committed and lost.outcome == "conflict" and first.placement == dep.names

    async def acked() -> bool:  # every participant acknowledged both
        return all(set(t.acks) == set(dep.names) for t in (await dep.saga_log()).for_key(key))

    await eventually(acked, 60, "every participant's ACK")
    code, listed, out = await asyncio.to_thread(dep.regions.cli, "saga", "list", "--key", key)
    assert code == 0, out
    rows = listed["transactions"]
    assert [r["txn_id"] for r in rows] == [lost.txn_id, first.txn_id]  # newest first
    assert rows[1]["status"] == "done-committed" and rows[0]["status"] == "done-aborted"
    assert rows[1]["votes"] == {r: "yes" for r in dep.names}
    assert rows[1]["decided_by"] == first.decided_by
    assert sorted(rows[1]["acks"]) == sorted(dep.names)

    code, shown, out = await asyncio.to_thread(dep.regions.cli, "saga", "show", lost.txn_id)
    assert code == 0, out
    txn = shown["transaction"]
    assert txn["expected_version"] == 0
    # the data is staged in the participants' own regions, never in the commit log
    assert txn["payload"] is None and txn["staged"] is True
    assert txn["staged_in"] == [staged_topic(r) for r in dep.names]
    # the first no decides: votes that land after the decision are not the log's
    assert txn["votes"] and {v["refusal"] for v in txn["votes"]} == {"version_conflict"}
    assert {v["region"] for v in txn["votes"]} <= set(dep.names)
    assert txn["decision"]["commit"] is False
    assert txn["decision"]["conflict"]["expected"] == 0
    assert txn["decision"]["conflict"]["found"] == 1
    assert all(a["event"] is None for a in txn["acks"])  # nothing applied for an abort

    code, _, out = await asyncio.to_thread(dep.regions.cli, "saga", "show", "no-such-txn")
    assert code == 2 and "no transaction or saga" in out
    # the start of an id, as a narrow table shows it, names it; no id: the newest
    code, shown, out = await asyncio.to_thread(dep.regions.cli, "saga", "show", first.txn_id[:8])
    assert code == 0 and shown["transaction"]["txn_id"] == first.txn_id, out
    code, shown, out = await asyncio.to_thread(dep.regions.cli, "saga", "show")
    assert code == 0 and shown["transaction"]["txn_id"] == lost.txn_id, out
