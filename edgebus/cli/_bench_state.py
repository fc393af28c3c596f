"""``edgebus bench state``: increments on one state machine, local and forwarded."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from edgebus.bench.state import DEFAULT_CONCURRENCY as STATE_CONCURRENCY
from edgebus.bench.state import run_state_bench
from edgebus.cli._common import ConfigOption, JsonOption, store_dir_option
from edgebus.cli._output import console
from edgebus.cli._runner import UNTIL_CTRL_C_OR_SIGTERM, Call, Reply, run_command

__all__ = ["state"]


def state(
    ctx: typer.Context,
    seconds: float = typer.Option(
        2.0, "--seconds", min=0.05, help="Length of each measured batch (one per round, "
        "mode and concurrency)."
    ),
    concurrency: int = typer.Option(
        STATE_CONCURRENCY, "--concurrency", min=1,
        help="Workers of the second load (the first is one worker), each calling one "
        "after the other.",
    ),
    rounds: int = typer.Option(3, "--rounds", min=1, help="Interleaved rounds per phase."),
    region: str | None = typer.Option(
        None, "--region", help="Region hosting the states (a configured one: no region "
        "service of the config may run meanwhile; default: a fresh region of the run's "
        "own)."
    ),
    store_dir: Path | None = store_dir_option("the region service's store and log go"),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Increments/s on one state machine and their p50/p99, owner in this process (local)
    and in a region service (forwarded), vs raw send_and_wait and produce-to-consume."""

    def body(call: Call) -> Reply:
        if store_dir is not None:
            store_dir.mkdir(parents=True, exist_ok=True)
        result = asyncio.run(run_state_bench(call.config, seconds, concurrency, rounds,
                                             region, store_dir))
        return Reply(result.to_dict(), exit_code=0 if result.passed else 1)

    # SIGTERM cancels the run once the child process was stopped
    run_command(ctx, body, as_json=as_json, config=config, render=_render_state,
                interrupts=UNTIL_CTRL_C_OR_SIGTERM)


_STATE_MODES = {"state": "increment", "raw_send": "raw send", "raw_rtt": "raw rtt"}


def _render_state(data: dict[str, Any]) -> None:
    where = "a fresh region" if data["fresh_region"] else "configured region"
    table = Table(title=f"bench state: increments on one state, {data['seconds']:g} s batches "
                  f"x {data['rounds']} rounds per phase, {where} {data['region']}")
    for name in ("phase", "workers", "mode", "p50 ms", "p99 ms", "max ms", "ops/s",
                 "round p50s"):
        table.add_column(name, justify="left" if name in ("phase", "mode") else "right")
    for r in data["rows"]:
        table.add_row(r["phase"], str(r["concurrency"]), _STATE_MODES.get(r["mode"], r["mode"]),
                      f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}", f"{r['max_ms']:.1f}",
                      f"{r['per_s']:,.0f}", ", ".join(f"{x:.1f}" for x in r["rounds_p50_ms"]))
    console.print(table)
    ratios = Table(title="state increments / raw baselines of the same phase")
    for name in ("phase", "workers", "p50 / send", "p99 / send", "ops/s / send",
                 "p50 / rtt"):
        ratios.add_column(name, justify="left" if name == "phase" else "right")
    for c in data["comparisons"]:
        ratios.add_row(c["phase"], str(c["concurrency"]), f"{c['p50_vs_raw_send']:.2f}",
                       f"{c['p99_vs_raw_send']:.2f}", f"{c['per_s_vs_raw_send']:.2f}",
                       f"{c['p50_vs_raw_rtt']:.2f}")
    console.print(ratios)
    console.print("raw send: send_and_wait (idempotent, acks=all, linger 0); raw rtt: the "
                  "same send until a state-log-like consumer received it", highlight=False)
    for f in data["forwarded_vs_local"]:
        console.print(f"{f['concurrency']} worker(s): forwarded p50 = {f['p50_ratio']:.2f} x "
                      f"local; local ops/s = {f['per_s_ratio']:.2f} x forwarded",
                      highlight=False)
    if data["stages"]:
        stages = Table(title="a call's stages: median ms (append times from the state log)")
        for name in ("phase", "workers", "calls", "stages", "total"):
            stages.add_column(name, justify="left" if name in ("phase", "stages") else "right")
        for s in data["stages"]:
            stages.add_row(s["phase"], str(s["concurrency"]), str(s["calls"]),
                           ", ".join(f"{n} {ms:.1f}" for n, ms in s["stages_ms"].items()),
                           f"{s['total_ms']:.1f}")
        console.print(stages)
        for phase, names in data["stage_names"].items():
            for name, what in names.items():
                console.print(f"  {phase} {name}: {what}", highlight=False)
    if data["processes"]:
        console.print("while the batches ran: " + "; ".join(
            f"{p['process']} {p['cpu_s']:.1f} s on a CPU, {p['runqueue_wait_s']:.1f} s "
            "waiting for one" for p in data["processes"]), highlight=False)
    for c in data["checks"]:
        verdict = "passed" if c["passed"] else "[bold red]FAILED[/]"
        console.print(
            f"{c['phase']} ({c['state_id']}, owner {', '.join(c['hosts']) or '?'}): "
            f"{c['increments']:,} increments answered, final value {c['final_value']}, "
            f"{'exact' if c['exact'] else 'NOT exact'}; calls off the path "
            f"{c['wrong_path']}, re-sent {c['duplicates']}, errors {c['errors']}: {verdict}",
            highlight=False)
        for example in c["error_examples"]:
            console.print(f"  {example}", highlight=False)
    load = [", ".join(f"{x:g}" for x in data[k]) or "?"
            for k in ("load_average_start", "load_average")]
    console.print(f"broker {data['bootstrap']}; setup {data['setup_seconds']:.0f} s, in all "
                  f"{data['total_seconds']:.0f} s; load average {load[0]} at the start, "
                  f"{load[1]} at the end", highlight=False)
