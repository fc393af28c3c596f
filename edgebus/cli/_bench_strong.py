"""``edgebus bench strong``: strong-commit latency and commits/s vs its baselines."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from edgebus.bench.strong import run_strong_bench
from edgebus.cli._common import ConfigOption, JsonOption, store_dir_option
from edgebus.cli._output import console
from edgebus.cli._runner import (
    UNTIL_CTRL_C_OR_SIGTERM,
    Call,
    Document,
    OptionError,
    run_command,
)

__all__ = ["strong"]


def strong(
    ctx: typer.Context,
    rounds: int = typer.Option(3, "--rounds", min=1, help="Interleaved rounds of every mode."),
    commits: int = typer.Option(
        96, "--commits", min=1, help="Operations per round, mode and concurrency."
    ),
    concurrency: str = typer.Option(
        "1,16,64", "--concurrency", help="Workers, comma-separated: each does its operations "
        "one after the other."
    ),
    bootstrap: str | None = typer.Option(
        None, "--bootstrap", help="Kafka to use (default: the config's; when none is named "
        "and none answers, a broker of the run's own is started and wiped afterwards)."
    ),
    store_dir: Path | None = store_dir_option("the region stores and logs go"),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Strong-commit latency and commits/s at each concurrency vs the raw produce-to-consume
    round trip (goal: p50 <= 3x), a Kafka transactional commit and eventual writes."""

    def body(call: Call) -> Document:
        try:
            levels = [int(c) for c in concurrency.split(",") if c.strip()]
        except ValueError:
            raise OptionError(
                f"--concurrency {concurrency!r}: give numbers like 1,16,64") from None
        if not levels or min(levels) < 1:
            raise OptionError(f"--concurrency {concurrency!r}: each must be at least 1")
        if store_dir is not None:
            store_dir.mkdir(parents=True, exist_ok=True)
        result = asyncio.run(run_strong_bench(call.config, rounds, commits, levels,
                                              bootstrap, store_dir))
        return result.to_dict()

    # SIGTERM cancels the run once the child processes were stopped
    run_command(ctx, body, as_json=as_json, config=config, render=_render_strong,
                interrupts=UNTIL_CTRL_C_OR_SIGTERM)


_MODE_LABELS = {
    "raw_rtt": "raw round trip",
    "kafka_txn": "Kafka txn commit",
    "eventual": "eventual write",
    "strong": "strong commit",
}


def _render_strong(data: dict[str, Any]) -> None:
    table = Table(title=f"bench strong: {data['commits']} operations x {data['rounds']} rounds "
                  f"per mode and concurrency, regions {', '.join(data['regions'])}")
    for name in ("workers", "mode", "p50 ms", "p99 ms", "max ms", "ops/s", "round p50s"):
        table.add_column(name, justify="left" if name == "mode" else "right")
    for r in data["rows"]:
        table.add_row(str(r["concurrency"]), _MODE_LABELS.get(r["mode"], r["mode"]),
                      f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}", f"{r['max_ms']:.1f}",
                      f"{r['per_s']:,.0f}", ", ".join(f"{x:.1f}" for x in r["rounds_p50_ms"]))
    console.print(table)
    ratios = Table(title="strong commit / baseline at the same concurrency")
    for name in ("workers", "p50 / raw rtt", f"<= {data['goal_ratio']:g}x", "p99 / raw rtt",
                 "p50 / txn", "p50 / eventual", "rate / txn", "rate / eventual"):
        ratios.add_column(name, justify="right")
    for c in data["comparisons"]:
        goal = "met" if c["goal_met"] else "[bold red]missed[/]"
        ratios.add_row(str(c["concurrency"]), f"{c['p50_vs_raw_rtt']:.2f}", goal,
                       f"{c['p99_vs_raw_rtt']:.2f}", f"{c['p50_vs_kafka_txn']:.2f}",
                       f"{c['p50_vs_eventual']:.2f}", f"{c['per_s_vs_kafka_txn']:.2f}",
                       f"{c['per_s_vs_eventual']:.2f}")
    console.print(ratios)
    if data["stages"]:
        names = list(data["stage_names"])
        stages = Table(title="a strong commit's stages: median ms (from the commit log)")
        for name in ("workers", *names, "total", "applied"):
            stages.add_column(name.replace("_", " "), justify="right")
        for s in data["stages"]:
            applied = "-" if s["applied_ms"] is None else f"{s['applied_ms']:.1f}"
            stages.add_row(str(s["concurrency"]),
                           *(f"{s['stages_ms'][n]:.1f}" for n in names),
                           f"{s['total_ms']:.1f}", applied)
        console.print(stages)
        for name, what in data["stage_names"].items():
            console.print(f"  {name}: {what}", highlight=False)
        console.print("  applied: decision handed over -> the last participant's ACK (after "
                      "commit() returned)", highlight=False)
    if data["processes"]:
        console.print(f"while the batches ran ({data['measure_seconds']:.0f} s): " + "; ".join(
            f"{p['process']} {p['cpu_s']:.1f} s on a CPU, {p['runqueue_wait_s']:.1f} s waiting "
            "for one" for p in data["processes"]), highlight=False)
    goal = "met" if data["goal_met"] else "[bold red]missed[/]"
    load = [", ".join(f"{x:g}" for x in data[k]) or "?"
            for k in ("load_average_start", "load_average")]
    console.print(f"goal (strong p50 <= {data['goal_ratio']:g}x the raw round trip, every "
                  f"concurrency): [bold]{goal}[/]; commits that did not commit: "
                  f"[bold]{data['failed']}[/]; broker {data['bootstrap']} ({data['broker']}); "
                  f"setup {data['setup_seconds']:.0f} s, draining between batches "
                  f"{data['drain_seconds']:.0f} s, in all {data['seconds']:.0f} s; load average "
                  f"{load[0]} at the start, {load[1]} at the end", highlight=False)
    for example in data["failure_examples"]:
        console.print(f"  {example}", highlight=False)
