"""Chaos (issue 15, item 5b): kill -9 of a region service, a coordinator and a state
owner at random moments of a mixed load (eventual, causal, strong, state).

Three ``edgebus region run`` processes (each one region's materializer, replicators,
commit participant and state host) and two ``edgebus coordinator run`` processes
(static members; the SDK embeds no coordinator: ``strong.embedded_coordinator`` is
false). In this process, the load of ``chaos_load.py``: eventual increments, causal
sessions and eventual observers, Jepsen-style strong clients, and clients of one
counter state machine. Meanwhile a nemesis SIGKILLs, at seeded random moments
(``EDGEBUS_TEST_SEED`` replays a run; the seed is printed), each of

* a region service that does not own the state (a participant, materializer and
  replicator gone), restarted after 1-3 s;
* a coordinator, restarted after 1-3 s;
* the region service that owns the state (asked of the services' status), restarted
  after 1-3 s: another region, or the restarted one, must take over (a higher epoch);

then a few more of these at random while time allows. What must hold afterwards:

* every process is running (nothing died on its own);
* ``edgebus verify --region R`` is clean in every region (its store equals a replay
  of its topic to the same positions);
* no strong commit is half-applied: every transaction is decided and acknowledged,
  a committed one is applied once in every region of its placement, an aborted one
  nowhere (``saga_processes.assert_atomic``); a strong key's version in each region is
  the number of its commits (once each, however often a restarted participant wrote the
  event), and the regions agree on every strong key;
* the strong history and the state's history are linearizable (Wing & Gong checker);
* the causal history has no anomaly (causal checker);
* eventual increments are applied once each in every region; causal keys converge
  with one version per write;
* the state's count is exactly its increments: the unanswered ones are asked again with
  their request ids (which run at most once), so each is known to have run once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from edgebus.errors import EdgebusError
from edgebus.sdk import EdgeBus
from tests.checkers.causal_history import check_causal, summarize
from tests.checkers.linearizability import Call, check_linearizable
from tests.integration.chaos_load import Load, state_count
from tests.integration.regions import ServiceProcess, eventually, service_status, store_rows
from tests.integration.saga_processes import Deployment, txn_events
from tests.integration.state_processes import STATE_CONFIG

pytestmark = pytest.mark.kafka

#: the nemesis stops starting extra kills after this many seconds of load
CHAOS_S = 35.0
#: load after the last restart, so that every kind of operation runs again
CALM_S = 3.0
#: kills beyond the three required ones (one of each kind), while time allows
EXTRA_KILLS = 2
WAIT_S = 60.0  #: bound on waiting for the deployment to settle afterwards


def _seed() -> int:
    given = os.environ.get("EDGEBUS_TEST_SEED")
    seed = int(given) if given else random.SystemRandom().randrange(2**32)
    print(f"EDGEBUS_TEST_SEED={seed}")
    return seed


@dataclass
class Kill:
    kind: str  # "region" | "coordinator" | "state owner"
    victim: str
    at: float
    epoch_before: int = -1  #: state owner kills: the newest epoch answered before


@dataclass
class Chaos:
    kills: list[Kill] = field(default_factory=list)
    restarts: int = 0


@contextlib.asynccontextmanager
async def _deployment(bootstrap: str, tmp_path: Path) -> AsyncIterator[Deployment]:
    tag = uuid.uuid4().hex[:6]
    dep = Deployment.create(
        bootstrap, tmp_path, coordinators=(f"chaos-{tag}-c1", f"chaos-{tag}-c2"),
        timeout_ms=2_000, decision_grace_ms=4_000, read_wait_ms=3_000,
    )
    config = dep.regions.config
    # coordinators run as processes only: the spelling every SDK version reads
    # (``strong.embedded_coordinator: false`` is ``strong.coordinator: "service"``)
    strong = {k: v for k, v in config["strong"].items()
              if k not in ("coordinator", "embedded_coordinator")}
    config["strong"] = {**strong, "embedded_coordinator": False}
    config["state"] = dict(STATE_CONFIG)
    config["replication"] = {"watermark_interval_ms": 100}
    config["reads"] = {"wait_ms": 4000, "fallback": "route"}
    dep.regions.config_path.write_text(json.dumps(config), encoding="utf-8")
    try:
        await dep.start()
        yield dep
    finally:
        await asyncio.to_thread(dep.stop)


async def _state_owner(dep: Deployment, load: Load, http: aiohttp.ClientSession) -> str:
    """The region whose service owns the state now, as the services' status says (the
    region of the newest answer if none says so, between two owners)."""
    owners = []
    for region, proc in dep.region_procs.items():
        if not proc.alive():
            continue
        status = await service_status(http, proc.url)
        host = (status or {}).get("state_host") or {}
        if f"public/{load.state_id}" in host.get("owned", ()):
            owners.append(region)
    if len(owners) == 1:
        return owners[0]
    answers = load.state_answers()
    assert answers, "no state answer yet"
    return str(answers[-1].region)


async def _nemesis(dep: Deployment, load: Load, rng: random.Random, chaos: Chaos) -> None:
    """Kill one process of each kind, in a random order, then a few more while time
    allows; each at a random moment, each restarted 1-3 s later (one at a time)."""
    kinds = ["region", "coordinator", "state owner"]
    rng.shuffle(kinds)
    kinds += [rng.choice(("region", "coordinator", "state owner")) for _ in range(EXTRA_KILLS)]
    deadline = time.monotonic() + CHAOS_S
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        for n, kind in enumerate(kinds):
            if n >= 3 and time.monotonic() > deadline:
                break
            await asyncio.sleep(rng.uniform(1.0, 4.0))
            proc: ServiceProcess
            epoch_before = -1
            if kind == "coordinator":
                coordinator = rng.choice(dep.coordinators)
                proc, victim = coordinator, str(coordinator.instance_id)
            else:
                owner = await _state_owner(dep, load, http)
                if kind == "state owner":
                    victim = owner
                    epoch_before = max(r.epoch for r in load.state_answers())
                else:
                    victim = rng.choice([r for r in dep.names if r != owner])
                proc = dep.region_procs[victim]
            assert proc.alive(), f"{victim} died on its own:\n{proc.log_tail()}"
            await asyncio.to_thread(proc.kill)
            assert proc.proc is not None and proc.proc.returncode == -signal.SIGKILL, victim
            chaos.kills.append(Kill(kind, victim, time.monotonic(), epoch_before))
            await asyncio.sleep(rng.uniform(1.0, 3.0))
            await asyncio.to_thread(proc.start)
            chaos.restarts += 1


async def _resolve_state(load: Load, bus: EdgeBus, region: str) -> dict[str, int]:
    """Ask again, with its request id, every increment that got no answer: it runs at
    most once, so the answer (a duplicate if it ran) settles its outcome."""
    resolved = duplicates = 0
    for call in load.state_calls:
        if call.op != "incr" or call.result is not None:
            continue
        result = await bus.state(load.state_id, "increment", key="count", region=region,
                                 req_id=call.req_id, timeout_ms=20_000)
        resolved += 1
        duplicates += int(result.duplicate)
    return {"resolved": resolved, "already_ran": duplicates}


async def _settled_saga_log(dep: Deployment) -> None:
    async def finished() -> bool:
        view = await dep.saga_log()
        return all(t.finished for t in view.txns.values())

    await eventually(finished, WAIT_S, "every transaction decided and acknowledged everywhere")


async def _regions_converged(
    bus: EdgeBus, regions: tuple[str, ...], keys: list[str],
    bounds: dict[str, tuple[int, int]], what: str, *, counter: bool,
) -> dict[str, tuple[Any, int]]:
    """Wait until every region holds the same (value, version) of each key, the version
    within ``bounds[key]`` (and, for counters, equal to the value)."""
    seen: dict[str, Any] = {}

    async def check() -> bool:
        for key in keys:
            answers = []
            for region in regions:
                try:
                    r = await bus.read(key, region, fallback="raise")
                except EdgebusError:
                    return False
                answers.append((r.value, r.version))
            seen[key] = answers
            low, high = bounds[key]
            if len(set(map(repr, answers))) != 1 or not low <= answers[0][1] <= high:
                return False
            if counter and answers[0][0] != answers[0][1]:
                return False
        return True

    try:
        await eventually(check, WAIT_S, what)
    except AssertionError as e:
        raise AssertionError(f"{e}: last seen {seen}, bounds {bounds}") from None
    return {k: v[0] for k, v in seen.items()}


async def test_kill_9_of_region_coordinator_and_state_owner_under_mixed_load(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    seed = _seed()
    rng = random.Random(seed)
    t0 = time.monotonic()
    async with _deployment(kafka_bootstrap, tmp_path) as dep:
        regions = dep.names
        config = dep.regions.config
        load = Load(f"chaos{seed}", regions)
        chaos = Chaos()
        buses = {r: EdgeBus(config, discovery=False, client_id=f"chaos-{r}") for r in regions}
        sessions = [EdgeBus(config, discovery=False, client_id=f"chaos-s{i}") for i in range(3)]
        observers = EdgeBus(config, discovery=False, client_id="chaos-observers")
        everyone = [*buses.values(), *sessions, observers]
        try:
            for bus in everyone:
                await bus.start()
            # every process is up: a strong write committed, the state has an owner
            warm = await buses[regions[0]].commit(f"{load.tag}:warm", 0)
            assert warm.committed, warm
            await buses[regions[0]].state(load.state_id, "get", region=regions[0])
            t_ready = time.monotonic()

            def seeded() -> random.Random:
                return random.Random(rng.random())

            clients = [
                *(load.eventual_writer(buses[r], seeded()) for r in regions[:2]),
                *(load.causal_session(bus, f"s{i}", seeded()) for i, bus in enumerate(sessions)),
                *(load.observer(observers, r, seeded()) for r in regions),
                *(load.strong_client(buses[r], f"strong-{r}", r, seeded()) for r in regions),
                *(load.state_client(buses[r], f"state-{r}", r, seeded()) for r in regions),
            ]
            tasks = [asyncio.create_task(c) for c in clients]
            try:
                async def under_way() -> bool:
                    return load.strong_committed > 0 and len(load.state_answers()) >= 5

                await eventually(under_way, 30, "the load under way (a strong commit, state "
                                 "answers)")
                await _nemesis(dep, load, random.Random(rng.random()), chaos)
                await asyncio.sleep(CALM_S)
            finally:
                load.stop.set()
                outcomes = await asyncio.gather(*tasks, return_exceptions=True)
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome
            t_load = time.monotonic()
            print(f"kills (kind, victim, s into the load): "
                  f"{[(k.kind, k.victim, round(k.at - t_ready, 1)) for k in chaos.kills]}")

            # ---------------------------------------------------- every process runs
            for name, proc in [*dep.region_procs.items(),
                               *((c.instance_id, c) for c in dep.coordinators)]:
                assert proc.alive(), f"{name} is not running:\n{proc.log_tail()}"

            # ---------------------------------------------------- state: exactly once
            for kill in chaos.kills:
                if kill.kind == "state owner":
                    later = load.state_answers(after=kill.at)
                    assert any(r.epoch > kill.epoch_before for r in later), (
                        f"no takeover after the state owner {kill.victim} was killed at epoch "
                        f"{kill.epoch_before}: {[(r.region, r.epoch) for r in later[:10]]}")
            acked_incr = sum(1 for c in load.state_calls
                             if c.op == "incr" and c.result is not None)
            asked_again = sum(1 for c in load.state_calls if c.op == "incr" and c.asked_again)
            unknown_incr = sum(1 for c in load.state_calls if c.op == "incr" and c.result is None)
            resolution = await _resolve_state(load, buses[regions[1]], regions[1])
            invoked = time.monotonic()
            final = await buses[regions[2]].state(load.state_id, "get", region=regions[2])
            state_calls = [*load.state_history(),
                           Call("final", load.state_id, "read", None, invoked,
                                time.monotonic(), True, state_count(final.value))]
            final_count = state_count(final.value)
            assert final_count == acked_incr + unknown_incr, (
                f"state count {final_count} != {acked_incr} acknowledged + {unknown_incr} "
                f"asked again ({resolution})")
            assert final.version == final_count, final

            # ---------------------------------------------------- strong: atomic
            await _settled_saga_log(dep)
            report = await dep.assert_atomic(strong_only=False)
            assert report.undecided == 0
            logged = set(report.log.txns)
            assert load.strong_txns <= logged, load.strong_txns - logged
            committed_ids = {t.txn_id for t in report.log.txns.values()
                             if t.decision is not None and t.decision.committed}
            unknown_committed = len(load.strong_txns & committed_ids) - load.strong_committed
            rewritten: dict[str, int] = {}  # region -> txns whose event it wrote again
            # each commit took effect once: a strong key's version in a region is the
            # number of committed transactions on it placed there (however often the
            # participant wrote its event)
            strong_keys = {*load.strong_keys, f"{load.tag}:warm"}
            for region, url in dep.store_urls.items():
                rows = await store_rows(url)
                expected = Counter(
                    t.key for t in report.log.txns.values()
                    if t.decision is not None and t.decision.committed
                    and region in t.participants and t.key in strong_keys)
                found = {k: rows[k][2] for k in strong_keys if k in rows}
                events = await txn_events(dep.bootstrap, region)
                written_twice = {t: len(v) for t, v in events.items() if len(v) > 1}
                rewritten[region] = len(written_twice)
                assert found == dict(expected), (
                    f"{region}: strong keys' versions {found} != committed transactions per "
                    f"key {dict(expected)}; txns whose event {region}'s participant wrote "
                    f"more than once: {written_twice}")
            for key in load.strong_keys:
                answers = []
                for region in regions:
                    r = await buses[region].read(key, region, consistency="strong")
                    assert r.region == region, r
                    answers.append((r.exists, r.value, r.version))
                assert len(set(map(repr, answers))) == 1, f"{key}: regions disagree: {answers}"
            t_atomic = time.monotonic()

            # ---------------------------------------------------- linearizable, causal
            strong_verdict = check_linearizable(load.strong_calls)
            assert strong_verdict.ok, strong_verdict.summary()
            state_verdict = check_linearizable(state_calls)
            assert state_verdict.ok, state_verdict.summary()
            causal_ops = load.causal.ops
            anomalies = check_causal(causal_ops)
            assert not anomalies, summarize(anomalies)

            # ---------------------------------------------------- eventual, causal applied
            counters = await _regions_converged(
                observers, regions, load.counter_keys,
                {k: (load.eventual_acked[k], load.eventual_acked[k] + load.eventual_unknown[k])
                 for k in load.counter_keys},
                "every eventual increment applied once in every region", counter=True)
            causal_final = await _regions_converged(
                observers, regions, load.causal_keys,
                {k: (load.causal_acked[k], load.causal_acked[k] + load.causal_unknown[k])
                 for k in load.causal_keys},
                "every causal write applied once in every region", counter=False)
            t_converged = time.monotonic()

            # ---------------------------------------------------- edgebus verify
            verdicts = await asyncio.gather(*(
                asyncio.to_thread(dep.regions.cli, "verify", "--region", r) for r in regions))
            for region, (code, parsed, out) in zip(regions, verdicts, strict=True):
                assert code == 0 and parsed and parsed["ok"], (
                    f"edgebus verify --region {region}: exit {code}\n{out[-3000:]}")
            t_verified = time.monotonic()
        finally:
            for bus in everyone:
                with contextlib.suppress(Exception):
                    await bus.close()

    # ---------------------------------------------------- the counts
    kinds = Counter(k.kind for k in chaos.kills)
    assert all(kinds[k] >= 1 for k in ("region", "coordinator", "state owner")), kinds
    eventual_acked = sum(load.eventual_acked.values())
    eventual_applied = sum(value for value, _version in counters.values())
    causal_writes = sum(1 for op in causal_ops if op.kind == "write")
    causal_reads = Counter(op.consistency for op in causal_ops if op.kind == "read")
    strong_reads = sum(1 for c in load.strong_calls if c.op == "read")
    state_reads = sum(1 for c in load.state_calls if c.op == "read" and c.result is not None)
    assert load.strong_committed > 0 and acked_incr > 0 and causal_writes > 0
    print(
        f"chaos seed={seed}: {time.monotonic() - t0:.1f} s in all, load {t_load - t_ready:.1f} s; "
        f"phases: setup {t_ready - t0:.1f} s, state+atomicity {t_atomic - t_load:.1f} s, "
        f"convergence {t_converged - t_atomic:.1f} s, verify {t_verified - t_converged:.1f} s\n"
        f"  kills: {len(chaos.kills)} ({dict(kinds)}): "
        f"{[(k.kind, k.victim, round(k.at - t_ready, 1)) for k in chaos.kills]}; "
        f"restarts: {chaos.restarts}\n"
        f"  eventual: {eventual_acked} increments acknowledged "
        f"({sum(load.eventual_unknown.values())} unknown), applied {eventual_applied} in "
        f"each of {len(regions)} regions\n"
        f"  causal: {causal_writes} writes acknowledged "
        f"({sum(load.causal_unknown.values())} unknown), applied in every region (versions "
        f"{[v for _value, v in causal_final.values()]}); reads {dict(causal_reads)} "
        f"({load.causal_reads_failed} causal reads failed)\n"
        f"  strong: {load.strong_committed} commits acknowledged, "
        f"{report.committed} committed in the log (all applied in every placement region), "
        f"{report.aborted} aborted (none applied; {load.strong_aborted} answered as aborts, "
        f"{load.strong_conflicts} cas conflicts; why: {dict(load.strong_abort_reasons)}), "
        f"{load.strong_unknown} outcome unknown + {load.strong_refused} failed (of which "
        f"{unknown_committed} committed); events written again by a restarted participant "
        f"(applied once): {rewritten}; {strong_reads} strong reads "
        f"({load.strong_reads_failed} failed)\n"
        f"  state: {acked_incr} increments acknowledged ({asked_again} of them only when asked "
        f"again with their request id), {unknown_incr} unanswered during the load and asked "
        f"again after it ({resolution}); final count {final_count} (version "
        f"{final.version}, epoch {final.epoch}, owner {final.region}); {state_reads} gets\n"
        f"  histories: strong {len(load.strong_calls)} ops ({strong_verdict.summary()[:120]}); "
        f"state {len(state_calls)} ops ({state_verdict.summary()[:120]}); causal "
        f"{len(causal_ops)} ops, {len(anomalies)} anomalies; verify ok in {len(regions)} "
        f"regions\n"
        f"  errors during the load: {dict(load.errors)}"
    )
