"""Atomicity of strong writes through crashes (issue 5), on real Kafka, with the three
regions and the coordinators each in its own process.

A failpoint (``EDGEBUS_FAILPOINTS=...``) makes a process SIGKILL itself at one step the
first time it gets there. Each crash test has the process run with its failpoint armed,
makes the write that reaches the step, sees the process die (return code -9), starts it
again without the failpoint and checks the outcome; then :func:`assert_atomic` checks the
whole deployment: every transaction with a COMMIT in the saga log is applied exactly
once in every region of its placement, an aborted one nowhere.

* coordinator killed with every vote in and no decision: its restart decides;
* coordinator killed right after its decision: the participants apply it with no
  coordinator running;
* participant killed right after its vote: its restart learns the decision from the
  log, applies and acknowledges;
* participant killed after applying, before acknowledging: its restart writes the
  event again and its store applies it once (an increment is not doubled);
* scale-out: two coordinators share the saga-log partitions; when one is killed, the
  other takes its partitions over and writes on every key commit again;
* (failing: a bug) a restarted coordinator appends a second decision for transactions
  it had decided, an ABORT for a committed one once its deadline has passed.

A failpoint fires on the first decision (vote, apply) the process makes, so each fires
on the test's write only if the process has nothing older to act on: processes are
armed from the start of a deployment (no warm-up write), and a test's write is placed
away from the regions armed for another test. Two deployments (each with its own
region names, saga log and coordinator group), one per class, started once: crashes
before the coordinator's decision and of participants share one; the crash after the
decision needs a coordinator that decides nothing before the test's write, so it has
its own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import pytest

from edgebus.commit.log import commit_partition
from edgebus.core.commit_log import DecisionRecord, Txn
from edgebus.sdk import CommitResult, EdgeBus
from tests.integration.regions import RegionProcess, eventually, store_rows
from tests.integration.saga_processes import (
    KILLED,
    PARTITIONS,
    CoordinatorProcess,
    Deployment,
    ensure_running,
    expect_strong_reads,
    keys_per_partition,
    restart,
    txn_events,
    unique_tag,
    wait_exit,
)

#: a crash test's write must outlive a process restart before its deadline
LONG_MS = 60_000


@pytest.fixture(scope="class")
async def dep(
    request: pytest.FixtureRequest, kafka_bootstrap: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Deployment]:
    """The deployment of the test's class, started once: its one coordinator
    ``COORDINATOR``, and the failpoints ``ARMED`` at the first start (by region suffix
    or coordinator instance id); its stores under a directory named ``DIRECTORY``."""
    cls = request.cls
    tmp = tmp_path_factory.mktemp(cls.DIRECTORY)
    deployment = Deployment.create(
        kafka_bootstrap, tmp, coordinators=[cls.COORDINATOR], armed=cls.ARMED,
        timeout_ms=30_000, read_wait_ms=30_000,
    )
    try:
        await deployment.start()
        yield deployment
    finally:
        deployment.stop()


def _bus(dep: Deployment, **strong: Any) -> EdgeBus:
    config = dep.regions.config
    if strong:
        config = {**config, "strong": {**config["strong"], **strong}}
    return EdgeBus(config, discovery=False)


async def _txns(dep: Deployment, key: str) -> list[Txn]:
    """The transactions on ``key``, in log order."""
    return (await dep.saga_log()).for_key(key)


async def _acked_by(dep: Deployment, key: str, regions: set[str]) -> None:
    async def acked() -> bool:
        return set((await _txns(dep, key))[-1].acks) == regions

    await eventually(acked, 60, f"ACKs of {sorted(regions)} on {key}")


async def _check_atomic(dep: Deployment) -> None:
    report = await dep.assert_atomic()
    assert report.committed >= 1 and report.undecided == 0, report


async def _armed_coordinator(dep: Deployment, failpoint: str | None = None) -> CoordinatorProcess:
    """The deployment's one coordinator, running with ``failpoint`` armed (or none)."""
    [coordinator] = dep.coordinators
    await ensure_running(coordinator, failpoint)
    return coordinator


async def _armed_participant(dep: Deployment, region: str, failpoint: str) -> RegionProcess:
    """The process of ``region``, running with ``failpoint`` armed, and the first
    coordinator running."""
    proc = dep.region_procs[region]
    await ensure_running(dep.coordinators[0])
    await ensure_running(proc, failpoint)
    return proc


async def _commit_that_kills(
    bus: EdgeBus, proc: RegionProcess | CoordinatorProcess, key: str, value: Any,
    placement: tuple[str, ...], **options: Any,
) -> CommitResult:
    """Commit ``value`` on ``key`` (``options`` as for ``bus.commit``, a long deadline):
    it commits with ``placement``, and ``proc``'s armed failpoint kills it on the way."""
    result = await bus.commit(key, value, timeout_ms=LONG_MS, **options)
    assert result.committed and result.placement == placement, result
    assert await wait_exit(proc.proc) == KILLED, proc.log_tail()
    return result


# --------------------------------------------------------------------------- crashes


class TestCrashesBeforeTheDecisionAndOfParticipants:
    #: the coordinator armed to die before its first decision, ``eu`` after its first
    #: vote, ``ap`` after its first apply
    DIRECTORY = "strong-crashes"
    COORDINATOR = "crash-c1"
    ARMED: ClassVar[dict[str, str]] = {
        "crash-c1": "coordinator.before_decision",
        "eu": "participant.after_vote",
        "ap": "participant.after_apply",
    }

    async def test_coordinator_killed_before_its_decision_its_restart_decides_commit(
        self, dep: Deployment
    ) -> None:
        coordinator = await _armed_coordinator(dep, "coordinator.before_decision")
        us, eu, ap = dep.names
        key = f"{unique_tag()}:before-decision"
        async with _bus(dep) as bus:
            # placed away from eu and ap: armed for the participant tests
            write = asyncio.create_task(
                bus.commit(key, {"v": 1}, exclude_locations=[eu, ap], timeout_ms=LONG_MS)
            )
            assert await wait_exit(coordinator.proc) == KILLED, coordinator.log_tail()
            # it died with the vote in the log and no decision: the client still waits
            [txn] = await _txns(dep, key)
            assert txn.participants == (us,) and txn.votes[us].yes
            assert txn.decision is None and not write.done()

            await restart(coordinator)
            result = await write
            assert result.committed and result.decided_by == coordinator.name, result
            await expect_strong_reads(bus, (us,), key, (True, {"v": 1}, 1))
        await _check_atomic(dep)

    async def test_participant_killed_after_its_vote_applies_and_acks_the_commit_on_restart(
        self, dep: Deployment
    ) -> None:
        """``eu`` dies right after voting yes: the transaction commits without it (``us``
        applies and acknowledges), and its restart learns the decision from the log."""
        us, eu, ap = dep.names
        proc = await _armed_participant(dep, eu, "participant.after_vote")
        key = f"{unique_tag()}:after-vote"
        async with _bus(dep) as bus:
            # committed: eu voted yes
            await _commit_that_kills(bus, proc, key, {"v": 1}, (us, eu), exclude_locations=[ap])
            await _acked_by(dep, key, {us})
            assert key not in await store_rows(proc.store)  # voted, died: not applied

            await restart(proc)
            read = await bus.read(key, eu, consistency="strong")
            assert (read.exists, read.value, read.version) == (True, {"v": 1}, 1)
            await _acked_by(dep, key, {us, eu})
            await expect_strong_reads(bus, (us, eu), key, (True, {"v": 1}, 1))
        await _check_atomic(dep)

    async def test_participant_killed_after_applying_before_its_ack_applies_once_on_restart(
        self, dep: Deployment
    ) -> None:
        """``ap`` dies after applying the commit, before acknowledging it: its restart
        writes the commit's event again, and its store applies it once."""
        us, eu, ap = dep.names
        proc = await _armed_participant(dep, ap, "participant.after_apply")
        key = f"{unique_tag()}:after-apply"
        async with _bus(dep) as bus:
            result = await _commit_that_kills(
                bus, proc, key, 3, (us, ap), operation="increment", exclude_locations=[eu]
            )
            # applied, then killed before its ACK
            assert (await store_rows(proc.store))[key] == (True, 3, 1)
            await _acked_by(dep, key, {us})

            await restart(proc)
            await _acked_by(dep, key, {us, ap})
            copies = (await txn_events(dep.bootstrap, ap))[result.txn_id]
            print(f"{ap} wrote the commit's event {len(copies)} time(s)")
            # applied once: the increment is not doubled, the version bumped once
            await expect_strong_reads(bus, (us, ap), key, (True, 3, 1))
            assert (await store_rows(proc.store))[key] == (True, 3, 1)
            more = await bus.commit(key, 4, operation="increment", exclude_locations=[eu])
            assert more.committed and more.version == 2, more
            await expect_strong_reads(bus, (us, ap), key, (True, 7, 2))
        await _check_atomic(dep)

    async def test_two_coordinators_share_the_partitions_the_survivor_takes_over_a_killed_one(
        self, dep: Deployment
    ) -> None:
        [first] = dep.coordinators[:1]
        await ensure_running(first)
        for proc in dep.region_procs.values():
            await ensure_running(proc)
        second = CoordinatorProcess(dep.regions, "crash-c2")
        dep.coordinators.append(second)
        await asyncio.to_thread(second.start)
        keys = keys_per_partition(unique_tag())
        owners: dict[int, set[str]] = {}
        async with _bus(dep) as bus:

            async def both_decide() -> bool:
                results = await asyncio.gather(
                    *(bus.commit(k, 1, operation="increment", timeout_ms=LONG_MS) for k in keys)
                )
                assert all(r.committed for r in results), results
                owners.clear()
                for key, r in zip(keys, results, strict=True):
                    owners.setdefault(commit_partition(key, PARTITIONS), set()).add(r.decided_by)
                return {d for ds in owners.values() for d in ds} == {first.name, second.name}

            await eventually(both_decide, 90, "decisions by both coordinators")
            print(f"saga-log partition -> deciding coordinator(s): {owners}")

            # SIGKILL: the group notices when the session times out (6 s), then rebalances
            await asyncio.to_thread(first.kill)
            results: list[CommitResult] = await asyncio.gather(
                *(bus.commit(k, 1, operation="increment", timeout_ms=LONG_MS) for k in keys)
            )
            assert all(r.committed for r in results), results
            assert {r.decided_by for r in results} == {second.name}
        await _check_atomic(dep)


# --------------------------------------------------------------------------- after decision


class TestCoordinatorKilledAfterItsDecision:
    #: the coordinator armed to die right after its first decision is in the log
    DIRECTORY = "strong-after-decision"
    COORDINATOR = "after-c1"
    ARMED: ClassVar[dict[str, str]] = {"after-c1": "coordinator.after_decision"}

    async def test_coordinator_killed_right_after_its_decision_the_participants_apply_it(
        self, dep: Deployment
    ) -> None:
        coordinator = await _armed_coordinator(dep, "coordinator.after_decision")
        key = f"{unique_tag()}:after-decision"
        async with _bus(dep) as bus:
            await _commit_that_kills(bus, coordinator, key, {"v": 1}, dep.names)
            # no coordinator runs: the decision in the log is enough for every participant
            await expect_strong_reads(bus, dep.names, key, (True, {"v": 1}, 1))
            await _acked_by(dep, key, set(dep.names))

            await restart(coordinator)
            second = await bus.commit(key, {"v": 2}, expected_version=1, timeout_ms=LONG_MS)
            assert second.committed and second.decided_by == coordinator.name, second
            await expect_strong_reads(bus, dep.names, key, (True, {"v": 2}, 2))
        await _check_atomic(dep)

    async def test_a_restarted_coordinator_never_decides_again_what_it_had_decided(
        self, dep: Deployment
    ) -> None:
        """A restarted coordinator folds again the records from its resume offset (which
        keeps decided transactions for RETENTION_MS) and decides nothing on a partition
        until it has read it to where it ended at assignment: a transaction it decided
        before (its deadline passed since) gets no second decision, neither a COMMIT
        again nor a timeout ABORT from a half-read view."""
        coordinator = await _armed_coordinator(dep)
        key = f"{unique_tag()}:decided-once"
        async with _bus(dep) as bus:
            short = await bus.commit(key, 1, timeout_ms=2_000)
            assert short.committed, short
            [txn] = await _txns(dep, key)
            assert txn.begin is not None
            # its deadline passes
            await asyncio.sleep(max(0.0, txn.begin.deadline_ms / 1000 - time.time()) + 0.1)

            await restart(coordinator)
            # the restarted coordinator decides a transaction on the same key (so on the
            # same partition): it has folded every record of the first one by then
            after = await bus.commit(key, 2, expected_version=1, timeout_ms=LONG_MS)
            assert after.committed and after.decided_by == coordinator.name, after
        await _check_atomic(dep)  # the first decisions are right
        view = await dep.saga_log()
        repeated = {
            txn_id: [(d.outcome.decision.value, d.outcome.reason, d.writer) for d in decisions]
            for txn_id, records in view.records.items()
            if len(decisions := [r for r in records if isinstance(r, DecisionRecord)]) > 1
        }
        assert not repeated, f"transactions decided more than once: {repeated}"
