"""``edgebus discover``: probe every region as a client's discovery does, and show what
edge selection would make of it (health, reasons, measured latency, ranking)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from edgebus.cli._common import ConfigOption, JsonOption
from edgebus.cli._output import console
from edgebus.cli._runner import Call, Document, run_command
from edgebus.config import EdgeConfig

__all__ = ["discover"]


def discover(
    ctx: typer.Context,
    rounds: int = typer.Option(3, "--rounds", min=1, max=100,
                               help="Probe rounds (latency is the median of the rounds)."),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Probe each region's broker and region service; print health, the reasons for it,
    measured latencies and the order reads and lowest_latency placements would use."""

    async def body(call: Call) -> Document:
        return {"ok": True, **await _discover(call.config, rounds)}

    run_command(ctx, body, as_json=as_json, config=config, render=_render)


async def _discover(config: EdgeConfig, rounds: int) -> dict[str, Any]:
    from edgebus.sdk.discovery import Discovery
    from edgebus.sdk.region_client import RegionClient

    client = RegionClient(config, timeout_s=config.kafka.connect_timeout_s)
    discovery = Discovery(config, client)
    try:
        for _ in range(rounds):
            await discovery.probe_all()
        return {
            "regions": discovery.report(),
            "read_order": list(discovery.rank_for_reads(config.edge_strategy)),
            "lowest_latency_order": list(discovery.rank_for_reads("lowest_latency")),
            "edge_strategy": config.edge_strategy,
        }
    finally:
        await discovery.close()
        await client.close()


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _render(data: dict[str, Any]) -> None:
    table = Table(title="edgebus discovery (as a client sees the regions)")
    for column in ("region", "health", "reads", "latency ms", "probe p50", "read p50",
                   "lag", "watermark age ms", "reasons"):
        table.add_column(column)
    for region, row in data["regions"].items():
        table.add_row(
            region,
            "[green]healthy[/]" if row["healthy"] else "[red]unhealthy[/]",
            "yes" if row["readable"] else "[yellow]no[/]",
            _ms(row["latency_ms"]),
            _ms(row["probe_ms"]["p50"]),
            _ms(row["read_ms"]["p50"]),
            "-" if row["lag_events"] is None else str(row["lag_events"]),
            _ms(row["watermark_age_ms"]),
            "; ".join(row["reasons"]) or "-",
        )
    console.print(table)
    console.print(f"reads try ({data['edge_strategy']}): {' > '.join(data['read_order'])}")
    console.print(f"lowest_latency ranks: {' > '.join(data['lowest_latency_order'])}")
