"""``edgebus bench read``: read latency per consistency level, embedded and over HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from edgebus.bench.read import run_read_bench
from edgebus.cli._common import ConfigOption, JsonOption, store_dir_option
from edgebus.cli._output import console
from edgebus.cli._runner import UNTIL_CTRL_C_OR_SIGTERM, Call, Document, run_command

__all__ = ["read"]


def read(
    ctx: typer.Context,
    reads: int = typer.Option(2000, "--reads", min=10, help="Measured reads per level and mode."),
    keys: int = typer.Option(200, "--keys", min=1, help="Keys written, then read at random."),
    warmup: int = typer.Option(100, "--warmup", min=0, help="Unmeasured reads per level first."),
    store_dir: Path | None = store_dir_option("the region's store goes"),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Read latency per consistency level, embedded and over HTTP (goal: causal and
    bounded within 1.2x eventual)."""

    async def body(call: Call) -> Document:
        result = await run_read_bench(call.config, reads, keys, warmup, store_dir)
        return result.to_dict()

    # SIGTERM cancels the run once the region process was stopped
    run_command(ctx, body, as_json=as_json, config=config, render=_render_read,
                interrupts=UNTIL_CTRL_C_OR_SIGTERM)


def _render_read(data: dict[str, Any]) -> None:
    table = Table(title=f"bench read: {data['reads']:,} reads per level (after "
                  f"{data['warmup']} warm-up), {data['keys']} keys, region {data['region']}")
    for name in ("mode", "level", "p50 ms", "p99 ms", "mean ms", "reads/s", "p50 x", "p99 x",
                 f"<= {data['goal_ratio']:g}x", "waited", "bad"):
        table.add_column(name, justify="left" if name in ("mode", "level") else "right")
    for r in data["rows"]:
        goal = {None: "-", True: "met", False: "[bold red]missed[/]"}[r["goal_met"]]
        table.add_row(r["mode"], r["level"], f"{r['p50_ms']:.3f}", f"{r['p99_ms']:.3f}",
                      f"{r['mean_ms']:.3f}", f"{r['reads_per_s']:,.0f}",
                      f"{r['p50_ratio']:.2f}", f"{r['p99_ratio']:.2f}", goal,
                      str(r["waited"]), str(r["violations"]))
    console.print(table)
    console.print(f"x: ratio to eventual in the same mode; waited: reads the region held "
                  f">= 1 ms before reading its store; bad: violations. bounded_time: "
                  f"staleness <= {data['staleness_threshold_ms']:g} ms (heartbeats every "
                  f"{data['watermark_interval_ms']} ms); bounded_versions: also <= "
                  f"{data['max_versions_behind']} versions behind (end offsets from Kafka on "
                  "every read)", highlight=False)
    goal = "met" if data["goal_met"] else "[bold red]missed[/]"
    console.print(f"goal (causal, bounded_time p50 and p99 <= {data['goal_ratio']:g}x "
                  f"eventual, both modes): [bold]{goal}[/]; violations: "
                  f"[bold]{data['violations']}[/]")
    for example in data["violation_examples"]:
        console.print(f"  {example}", highlight=False)
