"""``edgebus bench ...``: throughput figures as ratios against raw aiokafka."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from edgebus.bench.produce import run_produce_bench
from edgebus.cli._common import ConfigOption, JsonOption, load_cli_config
from edgebus.cli._output import console, emit, fail, json_mode
from edgebus.errors import EdgebusError

__all__ = ["app"]

app = typer.Typer(help="Benchmarks against raw aiokafka on the same broker, same run.")


@app.command("produce")
def produce(
    ctx: typer.Context,
    events: int = typer.Option(20_000, "--events", min=100, help="Writes per round."),
    concurrency: int = typer.Option(256, "--concurrency", min=1, help="Writes in flight."),
    rounds: int = typer.Option(3, "--rounds", min=1, help="Alternating rounds per side."),
    region: str | None = typer.Option(None, "--region", help="Region to write to."),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """SDK writes/s vs raw aiokafka sends/s of the same bytes (goal: ratio >= 0.8)."""
    as_json = json_mode(ctx, as_json)
    try:
        result = asyncio.run(
            run_produce_bench(load_cli_config(config), events, concurrency, rounds, region)
        )
    except EdgebusError as e:
        raise fail(as_json, e) from None
    emit(as_json, result.to_dict(), _render)


def _render(data: dict[str, Any]) -> None:
    table = Table(title=f"bench produce: {data['events']} events x {data['rounds']} rounds, "
                  f"{data['concurrency']} in flight, {data['value_bytes']}-byte values")
    table.add_column("side")
    table.add_column("median events/s", justify="right")
    table.add_column("rounds", justify="right")
    table.add_row("edgebus SDK", f"{data['sdk_writes_per_s']:,.0f}",
                  ", ".join(f"{r:,.0f}" for r in data["sdk_rounds"]))
    table.add_row("raw aiokafka", f"{data['raw_sends_per_s']:,.0f}",
                  ", ".join(f"{r:,.0f}" for r in data["raw_rounds"]))
    console.print(table)
    console.print(f"ratio SDK/raw: [bold]{data['ratio']:.3f}[/] (goal >= 0.8)")
