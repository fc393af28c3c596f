"""State machines (EdgeStateMachine, issue 6) on real Kafka, with three region services
as separate processes that host the states: SIGKILLed, paused (SIGSTOP) and
restarted under load.

What is proved, test by test:

* concurrent increments from three regions on one state are exact: every answer a
  distinct new total and version, one owner per epoch, as the log folds it;
* per-object linearizability while the owner is SIGKILLed and restarted (and then the
  next owner is paused past its lease): the recorded history of increments and gets is
  linearizable (``tests/checkers/linearizability``, counter/register model); the epoch
  went up; no acknowledged increment is lost and none runs twice;
* fencing: after each takeover no answer, and no accepted record of the log, comes
  from an older epoch; the restarted old owner (a new host id) and the paused one
  serve nothing under their old epochs; every answer a client got is an accepted
  record of the log;
* migration: callers moving from region A to region B move ownership there (one
  hand-off, epoch + 1) with the count exact across the move;
* locks: mutual exclusion of a read-modify-write under contention; a lock whose
  holder (a child process) was SIGKILLed is granted to another holder only after its
  lease ran out;
* compliance: a PII state is owned by the GDPR region only, whoever calls, and its
  records exist on no other region's topics; a public state refuses a PII value before
  anything is written;
* recovery: with every region process SIGKILLed and restarted, the state comes back
  from the hosts' snapshots and the log with the same value and version.

One deployment of three region processes serves the whole module (tests that kill or
pause processes leave them to :meth:`StateDeployment.ensure_running`, run before each
test); every test uses state ids of its own.
"""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from edgebus.core.ownership import Claim, Handoff
from edgebus.core.state_machine import StateOp, StateRequest
from edgebus.errors import ComplianceViolation, StateOperationTimeout
from edgebus.kafka.clients import reader
from edgebus.kafka.reading import read_to_end
from edgebus.sdk import EdgeBus
from edgebus.state.client import StateResult
from tests.checkers.linearizability import Call, check_linearizable
from tests.integration.regions import eventually
from tests.integration.saga_processes import unique_tag
from tests.integration.state_processes import (
    LockHolderProcess,
    StateDeployment,
    accepted_ops,
    fold_state_log,
)
from tests.kafka_settings import KAFKA

pytestmark = pytest.mark.kafka

#: how long a call in the fail-over run waits for its answer (a call still waiting
#: when the owner dies may time out: its outcome is then unknown)
OP_TIMEOUT_MS = 1500
WAIT_S = 45.0  #: bound on waiting for something the deployment must do


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def deployment(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[StateDeployment]:
    dep = StateDeployment.create(kafka_bootstrap, tmp_path_factory.mktemp("states"))
    try:
        await dep.start()
        yield dep
    finally:
        dep.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def buses(deployment: StateDeployment) -> AsyncIterator[dict[str, EdgeBus]]:
    """One client bus per region (the test process: no state host of its own)."""
    out = {r: EdgeBus(deployment.config, discovery=False, client_id=f"sm-{r}")
           for r in deployment.names}
    for bus in out.values():
        await bus.start()
    yield out
    for bus in out.values():
        await bus.close()


@pytest_asyncio.fixture(autouse=True, loop_scope="session")
async def _running(deployment: StateDeployment) -> None:
    """Every region process runs (a test before may have killed or paused one)."""
    await deployment.ensure_running()


async def until(check: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    """Poll ``check`` until true; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        await asyncio.sleep(0.05)


async def assert_answers_in_log(dep: StateDeployment, state_id: str,
                                results: list[StateResult]) -> dict[int, tuple[str, str]]:
    """Every answer a client got is a record the log's fold accepted: same epoch,
    owner, version and value (a duplicate answer repeats the first one's value and
    version). Returns epoch -> (region, host) of the accepted records."""
    _obj, trace = fold_state_log(state_id, await dep.state_log(state_id))
    accepted = {op.req_id: op for _logged, op in accepted_ops(trace)}
    owners: dict[int, set[tuple[str, str]]] = {}
    for op in accepted.values():
        owners.setdefault(op.epoch, set()).add((op.region, op.host))
    assert all(len(o) == 1 for o in owners.values()), f"an epoch with two owners: {owners}"
    for r in results:
        assert r.req_id in accepted, f"answer {r} is not an accepted record of the log"
        op = accepted[r.req_id]
        assert (r.value, r.version) == (op.result, op.version), (r, op)
        if not r.duplicate:
            assert (r.epoch, r.region, r.host) == (op.epoch, op.region, op.host), (r, op)
    return {e: next(iter(o)) for e, o in owners.items()}


# --------------------------------------------------------------------------- 1. counts


async def test_concurrent_increments_from_three_regions_are_exact_with_distinct_versions(
    deployment: StateDeployment, buses: dict[str, EdgeBus]
) -> None:
    state_id = f"{unique_tag()}-counter"
    increments = 30

    async def client(region: str) -> list[StateResult]:
        return [await buses[region].state(state_id, "increment", key="count", region=region)
                for _ in range(increments)]

    batches = await asyncio.gather(*(client(r) for r in deployment.names for _ in range(2)))
    results = [r for batch in batches for r in batch]
    total = len(results)
    assert total == 3 * 2 * increments
    assert all(r.ok and r.operation == "increment" for r in results)
    # each increment ran once, on one state: the new totals are 1..total, and as a
    # state of increments only bumps its version with each, version == total
    assert sorted(r.value for r in results) == list(range(1, total + 1))
    assert len({r.version for r in results}) == total
    assert all(r.value == r.version for r in results)
    # one owner per epoch, epochs in version order
    by_version = sorted(results, key=lambda r: r.version)
    owners: dict[int, set[tuple[str, str]]] = {}
    for r in by_version:
        owners.setdefault(r.epoch, set()).add((r.region, r.host))
    assert all(len(o) == 1 for o in owners.values()), owners
    epochs = [r.epoch for r in by_version]
    assert epochs == sorted(epochs), "an older epoch answered after a newer one"
    final = await buses[deployment.regions.ap].state(state_id, "get",
                                                      region=deployment.regions.ap)
    assert final.value == {"count": total}
    assert final.version == total
    logged_owners = await assert_answers_in_log(deployment, state_id, results)
    assert {e: next(iter(o)) for e, o in owners.items()}.items() <= logged_owners.items()


# ------------------------------------------------- 2./3. fail-over: linearizability, fencing


@dataclass
class Rec:
    """One call of the fail-over run: ``result`` None = unknown outcome (timed out)."""

    client: str
    op: str  # "incr" | "read"
    invoked: float
    completed: float | None = None
    result: StateResult | None = None


@dataclass
class FailoverRun:
    state_id: str
    history: list[Rec]
    first_epoch: int
    killed: str  # region whose owner process was SIGKILLed
    killed_host: str
    killed_at: float
    restarted_host: str
    paused: str  # region whose owner process was paused past its lease
    paused_host: str
    paused_epoch: int
    paused_at: float
    final: StateResult

    def done(self) -> list[tuple[Rec, StateResult]]:
        """The calls that were answered, with their answers."""
        return [(r, r.result) for r in self.history if r.result is not None]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def failover_run(deployment: StateDeployment, buses: dict[str, EdgeBus]) -> FailoverRun:
    """Two clients per region increment and read one state; the owner's process is
    SIGKILLed, and restarted once another region took over; then the new owner's
    process is paused (SIGSTOP) until a third took over, and resumed."""
    dep = deployment
    await dep.ensure_running()
    state_id = f"{unique_tag()}-failover"
    history: list[Rec] = []
    stop = asyncio.Event()

    def done(after: float = 0.0) -> list[StateResult]:
        return [r.result for r in history if r.result is not None and r.invoked >= after]

    async def client(name: str, region: str, seed: str) -> None:
        rng = random.Random(seed)
        bus = buses[region]
        while not stop.is_set():
            op = "incr" if rng.random() < 0.6 else "read"
            rec = Rec(name, op, time.monotonic())
            try:
                if op == "incr":
                    result = await bus.state(state_id, "increment", key="count",
                                             region=region, timeout_ms=OP_TIMEOUT_MS)
                else:
                    result = await bus.state(state_id, "get", region=region,
                                             timeout_ms=OP_TIMEOUT_MS)
            except StateOperationTimeout:
                history.append(rec)  # may still run: the request waits in the log
                continue
            rec.completed, rec.result = time.monotonic(), result
            history.append(rec)

    async def nemesis() -> dict[str, Any]:
        try:
            await until(lambda: len(done()) >= 30, "30 answers before the kill")
            last = done()[-1]
            first_epoch, victim, victim_host = last.epoch, last.region, last.host
            dep.kill(victim)
            killed_at = time.monotonic()
            await until(lambda: any(r.epoch > first_epoch for r in done(killed_at)),
                        f"a takeover after {victim}'s owner was killed")
            await dep.start(victim)
            restarted_host = (await dep.state_host(victim))["host"]
            restarted_at = time.monotonic()
            await until(lambda: len(done(restarted_at)) >= 20, "answers after the restart")
            last = done(restarted_at)[-1]
            paused, paused_host, paused_epoch = last.region, last.host, last.epoch
            dep.pause(paused)
            paused_at = time.monotonic()
            try:
                await until(lambda: any(r.epoch > paused_epoch for r in done(paused_at)),
                            f"a takeover from the paused owner in {paused}")
            finally:
                dep.resume(paused)
            resumed_at = time.monotonic()
            await until(lambda: len(done(resumed_at)) >= 20, "answers after the resume")
        finally:
            stop.set()
        return {"first_epoch": first_epoch, "killed": victim, "killed_host": victim_host,
                "killed_at": killed_at, "restarted_host": restarted_host, "paused": paused,
                "paused_host": paused_host, "paused_epoch": paused_epoch,
                "paused_at": paused_at}

    clients = [client(f"{region}-{i}", region, f"{state_id}-{region}-{i}")
               for region in dep.names for i in range(2)]
    facts, *ended = await asyncio.gather(nemesis(), *clients, return_exceptions=True)
    for outcome in (facts, *ended):
        if isinstance(outcome, BaseException):
            raise outcome
    await dep.ensure_running()
    invoked = time.monotonic()
    final = await buses[dep.regions.us].state(state_id, "get", region=dep.regions.us)
    history.append(Rec("final", "read", invoked, time.monotonic(), final))
    return FailoverRun(state_id=state_id, history=history, final=final, **facts)


def _count(value: Any) -> Any:
    return value.get("count") if isinstance(value, dict) else value


async def test_per_object_history_is_linearizable_while_the_owner_is_killed_and_restarted(
    failover_run: FailoverRun,
) -> None:
    run = failover_run
    calls = []
    for rec in run.history:
        if rec.result is None:
            calls.append(Call(rec.client, run.state_id, "incr" if rec.op == "incr" else "read",
                              1 if rec.op == "incr" else None, rec.invoked, None, None))
        elif rec.op == "incr":
            calls.append(Call(rec.client, run.state_id, "incr", 1, rec.invoked, rec.completed,
                              True, rec.result.value))
        else:
            calls.append(Call(rec.client, run.state_id, "read", None, rec.invoked,
                              rec.completed, True, _count(rec.result.value)))
    verdict = check_linearizable(calls)
    acked = sum(1 for r in run.history if r.op == "incr" and r.result is not None)
    unknown = sum(1 for r in run.history if r.op == "incr" and r.result is None)
    print(f"fail-over run: {len(calls)} calls, {acked} increments acknowledged, {unknown} "
          f"unknown; killed {run.killed} at epoch {run.first_epoch}, paused {run.paused} "
          f"at epoch {run.paused_epoch}; final {run.final.value} epoch {run.final.epoch}; "
          f"{verdict.summary()[:300]}")
    assert verdict.ok, verdict.summary()
    # the epoch went up after the kill: nothing invoked after it ran under the old one
    after_kill = [result for rec, result in run.done() if rec.invoked > run.killed_at]
    assert after_kill
    assert all(r.epoch > run.first_epoch for r in after_kill)
    assert run.final.epoch > run.paused_epoch > run.first_epoch
    # no acknowledged increment lost, none doubled: the final count is the acknowledged
    # ones plus some of those whose outcome is unknown
    final_count = _count(run.final.value)
    assert acked <= final_count <= acked + unknown, (acked, unknown, final_count)


async def test_fencing_no_answer_or_accepted_record_of_an_old_epoch_after_a_takeover(
    deployment: StateDeployment, failover_run: FailoverRun
) -> None:
    run = failover_run
    done = run.done()
    # the restarted old owner is a new host: what served the first epoch is gone
    assert run.restarted_host != run.killed_host
    assert run.restarted_host.startswith(f"{run.killed}/")
    # one owner per epoch in the answers; the first epoch's is the killed host
    owners: dict[int, set[str]] = {}
    for _rec, result in done:
        owners.setdefault(result.epoch, set()).add(result.host)
    assert all(len(h) == 1 for h in owners.values()), owners
    assert owners[run.first_epoch] == {run.killed_host}
    assert owners[run.paused_epoch] == {run.paused_host}
    assert run.restarted_host not in owners[run.first_epoch]
    # epochs never go back in real time: an answer completed before another call was
    # invoked has an epoch no newer than that call's answer
    ends = sorted((rec.completed, result.epoch) for rec, result in done
                  if rec.completed is not None)
    newest, i = 0, 0
    for rec, result in sorted(done, key=lambda d: d[0].invoked):
        while i < len(ends) and ends[i][0] < rec.invoked:
            newest = max(newest, ends[i][1])
            i += 1
        assert result.epoch >= newest, (
            f"{rec.client}'s {rec.op} invoked after an answer of epoch {newest} was "
            f"answered under epoch {result.epoch} by {result.host}")
    # the log: after each granted claim, no record of an older epoch is accepted (the
    # paused owner may have written some after it resumed: they are fenced off)
    records = await deployment.state_log(run.state_id)
    obj, trace = fold_state_log(run.state_id, records)
    claims = [f.logged.record for f in trace if isinstance(f.logged.record, Claim) and f.changed]
    assert [c.epoch for c in claims] == list(range(1, obj.view.epoch + 1))
    stale = []
    for f in trace:
        op = f.logged.record
        if isinstance(op, StateOp) and not op.duplicate:
            if f.changed:
                assert op.epoch == f.epoch_before, f"accepted {op} under epoch {f.epoch_before}"
            elif op.epoch < f.epoch_before:
                stale.append(op)
            if op.host == run.killed_host:
                assert op.epoch <= run.first_epoch, op
            if op.host == run.restarted_host:
                assert op.epoch > run.first_epoch, op
            if op.host == run.paused_host and op.epoch == run.paused_epoch and (
                    f.epoch_before > run.paused_epoch):
                assert not f.changed, f"the paused owner's late {op} was accepted"
    print(f"fencing: {len(claims)} claims, {len(stale)} records of an old epoch written "
          f"after a newer claim (rejected): {[(s.host, s.epoch, s.req_id) for s in stale]}")
    # every answer a client took is an accepted record; the fold ends where the final
    # read did
    await assert_answers_in_log(deployment, run.state_id, [result for _rec, result in done])
    assert obj.value() == run.final.value
    assert obj.version == run.final.version


# --------------------------------------------------------------------------- 4. migration


async def test_migration_moves_ownership_to_the_callers_region_with_the_count_exact(
    deployment: StateDeployment, buses: dict[str, EdgeBus]
) -> None:
    a, b = deployment.regions.ap, deployment.regions.eu
    state_id = f"{unique_tag()}-migrating"
    results: list[StateResult] = []

    async def increment(region: str) -> StateResult:
        r: StateResult = await buses[region].state(
            state_id, "increment", key="count", region=region, enable_migration=True)
        results.append(r)
        return r

    async def served_from(region: str) -> None:
        """Two concurrent callers in ``region`` until it served ten calls in a row."""
        streak = 0
        deadline = time.monotonic() + WAIT_S
        while streak < 10:
            assert time.monotonic() < deadline, f"ownership did not move to {region}"
            answers = await asyncio.gather(increment(region), increment(region))
            streak = streak + 2 if all(r.region == region for r in answers) else 0

    await served_from(a)
    a_epoch = results[-1].epoch
    a_count = len(results)
    await served_from(b)
    b_epoch = results[-1].epoch
    assert b_epoch == a_epoch + 1, "the move from A to B is one hand-off"
    # in version order: served by A under its epoch, then by B under the next, never back
    later = sorted((r for r in results if r.epoch >= a_epoch), key=lambda r: r.version)
    owners = [(r.region, r.epoch) for r in later]
    moved = owners.index((b, b_epoch))
    assert set(owners[:moved]) == {(a, a_epoch)} and set(owners[moved:]) == {(b, b_epoch)}
    assert {r.region for r in results[a_count:] if r.epoch == b_epoch} == {b}
    final = await buses[b].state(state_id, "get", region=b)
    total = len(results)
    assert final.value == {"count": total}
    assert sorted(r.value for r in results) == list(range(1, total + 1)), "an op lost or doubled"
    assert final.region == b and final.epoch == b_epoch
    # the log: A handed the state to B, whose claim is the next epoch
    records = [lr.record for lr in await deployment.state_log(state_id)]
    handoffs = [r for r in records if isinstance(r, Handoff)]
    assert any(h.region == a and h.to_region == b and h.epoch == a_epoch for h in handoffs)
    granted = fold_state_log(state_id, await deployment.state_log(state_id))[1]
    claims = [f.logged.record for f in granted if isinstance(f.logged.record, Claim)
              and f.changed]
    assert (claims[-1].region, claims[-1].epoch) == (b, b_epoch)
    await assert_answers_in_log(deployment, state_id, results)


# --------------------------------------------------------------------------- 5. locks


async def test_lock_gives_mutual_exclusion_to_a_read_modify_write_under_contention(
    deployment: StateDeployment, buses: dict[str, EdgeBus]
) -> None:
    state_id = f"{unique_tag()}-mutex"
    us = deployment.regions.us
    # the state is claimed (with the configured lease) before the locks are asked
    await buses[us].state(state_id, "get", region=us)
    iterations, holders = 6, 3
    seen: list[int] = []

    async def worker(n: int) -> None:
        region = deployment.names[n % 3]
        bus, holder = buses[region], f"worker-{n}"
        for _ in range(iterations):
            got = await bus.state(state_id, "lock", lock_name="mutex", holder=holder,
                                  timeout_ms=60_000, lease_duration_ms=60_000, region=region)
            assert got.ok and got.value["holder"] == holder, got
            current = (await bus.state(state_id, "get", key="counter", region=region)).value
            seen.append(current or 0)
            await bus.state(state_id, "set", key="counter", value=(current or 0) + 1,
                            region=region)
            released = await bus.state(state_id, "unlock", lock_name="mutex", holder=holder,
                                       region=region)
            assert released.value["released"] is True

    await asyncio.gather(*(worker(n) for n in range(holders)))
    total = iterations * holders
    final = await buses[us].state(state_id, "get", key="counter", region=us)
    assert final.value == total, "a read-modify-write was lost: two holders at once"
    assert sorted(seen) == list(range(total))


async def test_a_killed_holders_lock_expires_and_goes_to_the_next_holder(
    deployment: StateDeployment, buses: dict[str, EdgeBus]
) -> None:
    state_id = f"{unique_tag()}-lease"
    us, ap = deployment.regions.us, deployment.regions.ap
    await buses[us].state(state_id, "get", region=us)  # claimed with the configured lease
    child = LockHolderProcess(deployment.regions)
    try:
        taken = await asyncio.to_thread(child.take, state_id, "job", "doomed", ap, 2000)
    finally:
        child.kill()
    assert taken["ok"] and taken["value"]["holder"] == "doomed", taken
    doomed_until = taken["value"]["until_ms"]
    got = await buses[us].state(state_id, "lock", lock_name="job", holder="survivor",
                                timeout_ms=10_000, region=us)
    assert got.ok, got
    assert got.value["holder"] == "survivor"
    lease = deployment.config["state"]["lease_ms"]
    granted_at = got.value["until_ms"] - lease
    assert granted_at > doomed_until, "the lock was granted while the killed holder's ran"
    # the log holds the survivor's request, granted by one record after the expiry
    records = await deployment.state_log(state_id)
    asked = [lr for lr in records if isinstance(lr.record, StateRequest)
             and lr.record.holder == "survivor" and lr.record.operation == "lock"]
    grants = [lr for lr in records if isinstance(lr.record, StateOp)
              and lr.record.operation == "lock" and lr.record.outcome == "ok"
              and not lr.record.duplicate
              and lr.record.result["holder"] == "survivor"]
    assert asked and len(grants) == 1
    print(f"lock: survivor asked {doomed_until - asked[0].append_ms} ms before the killed "
          f"holder's lease ended; granted {granted_at - doomed_until} ms after it")


# --------------------------------------------------------------------------- 6. compliance


async def test_pii_state_lives_only_in_the_gdpr_region_and_a_public_state_refuses_pii(
    deployment: StateDeployment, buses: dict[str, EdgeBus]
) -> None:
    regions = deployment.regions
    us, eu, ap = regions.us, regions.eu, regions.ap
    tag = unique_tag()
    pii_id, public_id = f"{tag}-profile", f"{tag}-public"
    email = f"{tag}@b.example"
    # a PII state called from non-GDPR regions is owned and run in the GDPR region
    r = await buses[us].state(pii_id, "set", value={"email": email, "visits": 0},
                              classification="pii", region=us)
    assert (r.region, r.classification) == (eu, "pii"), r
    r = await buses[ap].state(pii_id, "increment", key="visits", classification="pii",
                              region=ap)
    assert (r.region, r.value) == (eu, 1), r
    r = await buses[us].state(pii_id, "get", classification="pii", region=us)
    assert r.value == {"email": email, "visits": 1} and r.region == eu
    # a public state refuses a PII value before anything is written
    for op, options in (("set", {"value": {"email": email}}),
                        ("set", {"key": "contact", "value": {"email": email}}),
                        ("update", {"value": {"email": email}})):
        with pytest.raises(ComplianceViolation):
            await buses[us].state(public_id, op, region=us, **options)
    assert await deployment.state_log(public_id) == [], "a refused call wrote to the log"
    # only the GDPR region hosts PII states; every claim of the state is its
    for region in (us, ap):
        assert "pii" not in (await deployment.state_host(region))["classes"]
    assert "pii" in (await deployment.state_host(eu))["classes"]
    pii_log = await deployment.state_log(pii_id, "pii")
    assert deployment.topic("pii") == f"edgebus.{eu}.state.pii"
    assert pii_log and all(lr.record.region == eu for lr in pii_log
                           if isinstance(lr.record, Claim | StateOp))
    # no record of the PII state (or its e-mail) on any topic of a non-GDPR region
    async with reader(KAFKA, deployment.bootstrap) as consumer:
        topics = sorted(t for t in await consumer.topics()
                        if t.startswith((f"edgebus.{us}.", f"edgebus.{ap}.")))
    assert f"edgebus.{us}.state.public" in topics
    assert not [t for t in topics if t.endswith(".state.pii")]
    for topic in topics:
        for rec in await read_to_end(KAFKA, deployment.bootstrap, topic):
            raw = (rec.key or b"") + (rec.value or b"")
            assert pii_id.encode() not in raw and email.encode() not in raw, (
                f"{topic} {rec.partition}:{rec.offset} holds the PII state")


# --------------------------------------------------------------------------- 7. recovery


def _snapshot_version(path: Path | None, state_id: str) -> int | None:
    """The version of ``state_id`` in a state host's snapshot file, if saved."""
    if path is None or not path.exists():
        return None
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        row = db.execute("SELECT snapshot FROM state_objects WHERE state_id = ?",
                         (state_id,)).fetchone()
    finally:
        db.close()
    return None if row is None else int(json.loads(row[0])["version"])


async def test_restarted_owner_recovers_the_state_from_its_snapshot_and_the_log(
    deployment: StateDeployment, buses: dict[str, EdgeBus]
) -> None:
    state_id = f"{unique_tag()}-durable"
    names = deployment.names
    for i in range(12):
        region = names[i % 3]
        await buses[region].state(state_id, "increment", key="count", region=region)
    await buses[names[0]].state(state_id, "set", key="label", value="kept", region=names[0])
    snap: StateResult = await buses[names[1]].state(state_id, "get", region=names[1])
    owner = snap.region

    async def snapshotted() -> bool:
        saved = await asyncio.to_thread(_snapshot_version, deployment.states_db(owner),
                                        state_id)
        return saved == snap.version

    await eventually(snapshotted, WAIT_S, f"{owner}'s snapshot of {state_id}")
    # more operations after that snapshot: a log tail the restart folds on top of it
    for i in range(5):
        region = names[i % 3]
        await buses[region].state(state_id, "append", key="items", value=i, region=region)
    before = await buses[names[2]].state(state_id, "get", region=names[2])
    assert before.value == {"count": 12, "label": "kept", "items": [0, 1, 2, 3, 4]}
    for region in names:
        deployment.kill(region)
    saved = {r: _snapshot_version(deployment.states_db(r), state_id) for r in names}
    await deployment.start()
    after = await buses[names[0]].state(state_id, "get", region=names[0])
    print(f"recovery: snapshots at versions {saved}, state at {before.version}; served "
          f"after the restart by {after.host} at epoch {after.epoch}")
    assert (after.value, after.version) == (before.value, before.version)
    assert after.epoch > before.epoch and after.host != before.host
    # and the state goes on from there
    more = await buses[names[1]].state(state_id, "increment", key="count", region=names[1])
    assert (more.value, more.version) == (13, before.version + 1)
