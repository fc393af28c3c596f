"""``edgebus bench state``: operations per second on one state machine and their p50/p99,
local and forwarded, against raw aiokafka on the same broker in the same run.

One region R (default: a fresh ``bench-state-<6 hex>``, the run's only region, on the
broker of the config's first region; ``region``: that region, with the config's
regions as they are when it is one of them). Each phase increments one field of a
fresh state (``bench-<tag>-local`` / ``bench-<tag>-forwarded``, class ``public``), N
workers each doing one increment after the other:

- ``local``: the benchmark's own :class:`EdgeBus` runs with ``state.embedded_host``
  (``host_region`` R). Its first call claims the state for that host (no other host
  is running), so every later call runs in this process: the owner appends the state
  event and answers once Kafka acknowledged it (``StateResult.forwarded`` false). No
  other process takes part.
- ``forwarded``: the owner is ``edgebus region run --region R`` as a child process (a
  fresh store; its state host claims the state at the first request, being the only
  host); the benchmark's :class:`EdgeBus` has no host, so every call is forwarded:
  the request appended to the state log, fetched by the owner, run, its event
  appended, fetched by the caller (``forwarded`` true).

In each phase two raw aiokafka baselines run too, in the same process:

- ``raw_send``: ``Producer.send_and_wait`` (idempotent, ``acks=all``,
  ``linger_ms=0``: the state log writer's settings) of a record of the size of an
  increment request, to one partition (a state's records are in one partition);
- ``raw_rtt``: the same send, until a consumer made by the state log's own
  :func:`~edgebus.state.log.start_consumer` (assigned to every partition, no group)
  received it: one hop of the log, which a forwarded call makes twice.

Each phase runs, after an unmeasured warm-up batch of every (concurrency, mode) pair,
``rounds`` rounds; a round runs every pair once for ``seconds``, in a new random order
(so that drift of the machine's speed hits every mode alike). Per batch: p50, p99 and
operations per second (answered calls over the batch's wall time); the figures are the
medians over the rounds. Ratios compare each phase's state calls with the baselines
measured in that phase.

Every answer is checked: an increment returns the field's new value, so the answers
of a phase must be exactly 1..n, each once, and the final ``get`` must return n (no
lost or doubled increment); every measured call of the local phase must have run in
this process (``forwarded`` false), every one of the forwarded phase in the owner's
(``forwarded`` true).

Afterwards the state log is read back and every measured call split into stages by
the append times of its records (the log uses ``LogAppendTime``) and the caller's wall
clock (:data:`STAGES`, :func:`stages_of`). Each process's CPU time and run-queue wait
per phase are reported too (Linux schedstat).

The figures are pure functions of the samples (:func:`summarize`, :func:`compare`,
:func:`check_phase`, :func:`stages_of`, :func:`median_stages`; they and the result
types are in :mod:`edgebus.bench.state_figures`); the shell around them starts and
stops the host, the child process and the clients (the calls of a phase in
:mod:`edgebus.bench.state_phase`, the raw ones in :mod:`edgebus.bench.state_baselines`).
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from edgebus.bench import state_figures
from edgebus.bench.children import (
    ChildCommand,
    cancelled_on_sigterm,
    config_file,
    region_process,
)
from edgebus.bench.figures import stages_by_concurrency
from edgebus.bench.machine import ProcessClock, load_average
from edgebus.bench.materialize import fresh_region, scratch_config
from edgebus.bench.rounds import schedule, timed_batch
from edgebus.bench.state_baselines import StateBaselines
from edgebus.bench.state_figures import *  # noqa: F403  (its names are importable from here too)
from edgebus.bench.state_figures import (
    MODES,
    PHASES,
    ModeFigures,
    StageFigures,
    StateBenchResult,
    compare,
    forwarded_vs_local,
    median_stages,
    stages_of,
    summarize,
)
from edgebus.bench.state_phase import FIELD, Call, Phase, read_append_times
from edgebus.config import EdgeConfig
from edgebus.core.state_machine import StateRequest
from edgebus.kafka.clusters import resolve_clusters
from edgebus.sdk import EdgeBus
from edgebus.state.host import default_state_db
from edgebus.wire.state_log import encode_state_record

__all__ = ["DEFAULT_CONCURRENCY", "run_state_bench"]
__all__ += state_figures.__all__

#: the workers of the second load (the first is one worker)
DEFAULT_CONCURRENCY = 16
#: the batch order is the same in every run
SEED = 1
#: the unmeasured warm-up batch of each pair lasts at most this long
WARM_UP_S = 0.5
#: a batch may overrun its duration by this much (its last calls) before the run gives up
BATCH_GRACE_S = 120.0


async def _measure(
    phase: Phase, raw: StateBaselines, levels: Sequence[int], seconds: float, rounds: int
) -> list[ModeFigures]:
    """A warm-up batch of every pair, then the interleaved rounds of the phase."""

    def op(mode: str, c: int, measured: bool) -> Callable[[], Awaitable[float]]:
        if mode == "raw_send":
            return raw.send
        if mode == "raw_rtt":
            return raw.round_trip

        async def one() -> float:
            elapsed, _ = await phase.increment(c if measured else None)
            return elapsed

        return one

    for c in levels:
        for mode in MODES:
            await timed_batch(min(seconds, WARM_UP_S), c, op(mode, c, False), BATCH_GRACE_S)
    samples: dict[tuple[int, str], list[tuple[list[float], float]]] = {}
    for _, c, mode in schedule(levels, MODES, rounds, random.Random(SEED)):
        samples.setdefault((c, mode), []).append(
            await timed_batch(seconds, c, op(mode, c, True), BATCH_GRACE_S))
    return [summarize(phase.name, m, c, samples[(c, m)]) for c in levels for m in MODES]


def _bench_config(config: EdgeConfig, region: str | None) -> tuple[EdgeConfig, str, bool]:
    """``(config, region, fresh)``: a configured region with the config as it is, else
    the named (or a fresh) region as the only one, on the first region's broker."""
    if region is not None and region in config.regions:
        return config, region, False
    name = region or fresh_region("state")
    return scratch_config(config, [name]), name, True


def _with_host(config: EdgeConfig, region: str, embedded: bool) -> EdgeConfig:
    data = config.model_dump(mode="json")
    data["state"]["embedded_host"] = embedded
    data["state"]["host_region"] = region
    return EdgeConfig.from_mapping(data)


def _remove_state_db(region: str) -> None:
    """The embedded host's snapshots of a region of the run's own."""
    with contextlib.suppress(OSError):
        shutil.rmtree(default_state_db(region).parent)


@dataclass
class _Run:
    """What the phases of a run share: the config, the result they fill, the
    baselines, the region service of the forwarded phase, the setup time so far."""

    config: EdgeConfig
    result: StateBenchResult
    raw: StateBaselines
    child: ChildCommand
    tag: str
    setup: float

    async def phase(self, name: str) -> list[Call]:
        """One phase: start its owner, settle, measure (with each process's share of
        the machine), check; its measured calls."""
        result, local = self.result, name == "local"
        phase_began = time.perf_counter()
        if not local:
            await self.child.start()
        async with EdgeBus(_with_host(self.config, result.region, local),
                           client_id=f"edgebus-bench-state-{self.tag}-{name}") as bus:
            phase = Phase(name, bus, result.state_ids[name], result.region)
            await phase.settle()
            if local:
                await self.raw.start()
            self.setup += time.perf_counter() - phase_began
            result.setup_seconds = round(self.setup, 2)
            pids = {f"benchmark ({name})": os.getpid()}
            if not local:
                pids[f"{self.child.name} ({name})"] = self.child.pid
            clock = ProcessClock(pids)
            started = time.perf_counter()
            result.rows += await _measure(phase, self.raw, result.concurrency, result.seconds,
                                          result.rounds)
            result.phase_seconds[name] = round(time.perf_counter() - started, 2)
            result.processes += clock.read()
            result.checks.append(await phase.check())
        if local and result.fresh_region:
            _remove_state_db(result.region)
        return phase.calls


def _stage_figures(
    levels: Sequence[int], calls: dict[str, list[Call]], logged: dict[str, dict[str, int]]
) -> list[StageFigures]:
    """The median stages of each phase's measured calls found in the log, per
    concurrency."""
    out: list[StageFigures] = []
    for name, measured in calls.items():
        per_level = stages_by_concurrency(levels, (
            (call.concurrency,
             stages_of(name, call.started_ms, call.ended_ms, logged.get(call.req_id, {})))
            for call in measured
        ))
        out += [median_stages(name, c, s) for c, s in per_level.items() if s]
    return out


async def run_state_bench(
    config: EdgeConfig,
    seconds: float = 2.0,
    concurrency: int = DEFAULT_CONCURRENCY,
    rounds: int = 3,
    region: str | None = None,
    store_dir: Path | None = None,
) -> StateBenchResult:
    """The local phase (an embedded host in this process), then the forwarded phase (a
    region service as a child process), each with its baselines."""
    began = time.perf_counter()
    began_ms = int(time.time() * 1000)
    tag = uuid.uuid4().hex[:6]
    cfg, region, fresh = _bench_config(config, region)
    levels = sorted({1, concurrency})
    bootstrap = resolve_clusters(cfg)[region]
    state_ids = {phase: f"bench-{tag}-{phase}" for phase in PHASES}
    value = encode_state_record(state_ids["forwarded"], StateRequest(
        state_ids["forwarded"], uuid.uuid4().hex, "increment", region, key=FIELD))
    result = StateBenchResult(
        region=region, fresh_region=fresh, bootstrap=bootstrap, seconds=seconds,
        rounds=rounds, concurrency=levels, value_bytes=len(value), state_ids=state_ids,
        load_average_start=load_average(),
    )
    calls: dict[str, list[Call]] = {}
    with cancelled_on_sigterm(), tempfile.TemporaryDirectory(
        prefix="edgebus-bench-", dir=store_dir
    ) as tmp_name:
        tmp = Path(tmp_name)
        config_path = config_file(cfg, tmp / "config.json")
        child = region_process(region, f"sqlite://{tmp / 'region.db'}", config_path,
                               tmp / "region.log")
        raw = StateBaselines(cfg, bootstrap, tag, value)
        try:
            await raw.create_topics()
            run = _Run(cfg, result, raw, child, tag, setup=time.perf_counter() - began)
            for name in PHASES:
                calls[name] = await run.phase(name)
            logged = await read_append_times(cfg, bootstrap, list(state_ids.values()), began_ms)
        finally:
            await raw.stop()
            await child.stop()
            if fresh:
                _remove_state_db(region)
    result.comparisons = compare(result.rows)
    result.forwarded_vs_local = forwarded_vs_local(result.rows)
    result.stages = _stage_figures(levels, calls, logged)
    result.total_seconds = round(time.perf_counter() - began, 2)
    result.load_average = load_average()
    return result
