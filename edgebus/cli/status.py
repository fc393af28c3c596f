"""``edgebus status``: every region's service health, lag, positions and store size, and
how fresh each region is with respect to each origin (staleness per region pair)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from edgebus.cli._common import ConfigOption, JsonOption
from edgebus.cli._output import console
from edgebus.cli._runner import Call, Reply, run_command
from edgebus.config import EdgeConfig
from edgebus.errors import EdgebusError

__all__ = ["status"]


def status(
    ctx: typer.Context,
    region: list[str] = typer.Option([], "--region", help="Only these regions (repeatable)."),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Per region: health, consumer lag, last applied positions, store size.

    Exits 0 when every region asked answers healthy with replication running; 1 when
    one is down (no service answers), unhealthy, rebuilding its store or paused (its
    view of the other regions stops moving): the regions' ``health`` says which."""

    async def body(call: Call) -> Reply:
        rows = await _status(call.config, region or list(call.config.regions))
        for row in rows:
            row["health"] = health_of(row)
        ok = all(row["health"] == "healthy" for row in rows)
        return Reply({"ok": ok, "regions": rows}, exit_code=0 if ok else 1)

    run_command(ctx, body, as_json=as_json, config=config, regions=region, render=_render)


async def _status(config: EdgeConfig, regions: list[str]) -> list[dict[str, Any]]:
    from edgebus.sdk.region_client import RegionClient

    client = RegionClient(config, timeout_s=config.kafka.connect_timeout_s)
    try:
        async def one(region: str) -> dict[str, Any]:
            try:
                return await client.status(region)
            except EdgebusError as e:
                return {"region": region, "healthy": False, "error": str(e)}

        return list(await asyncio.gather(*(one(r) for r in regions)))
    finally:
        await client.close()


def health_of(row: dict[str, Any]) -> str:
    """One word for a region's status row: down, unhealthy, rebuilding, paused, healthy."""
    if "error" in row:
        return "down"
    if not row.get("healthy"):
        return "unhealthy"
    if row.get("rebuilding"):
        return "rebuilding"
    if row.get("replication_paused"):
        return "paused"
    return "healthy"


_HEALTH_STYLE = {"down": "red", "unhealthy": "red", "rebuilding": "yellow",
                 "paused": "yellow", "healthy": "green"}


def _render(data: dict[str, Any]) -> None:
    problems = _render_regions(data["regions"])
    served = [row for row in data["regions"] if "error" not in row]
    if served:
        _render_staleness(served)
        for row in served:
            _render_details(row)
    for problem in problems:
        console.print(problem, highlight=False, soft_wrap=True)


def _render_regions(rows: list[dict[str, Any]]) -> list[str]:
    """The regions table; returns the problems of the regions that did not answer."""
    table = Table(title="edgebus regions")
    problems: list[str] = []
    for column in ("region", "health", "lag", "applied positions", "keys", "store size",
                   "query endpoint"):
        table.add_column(column)
    for row in rows:
        if "error" in row:
            table.add_row(row["region"], "[red]down[/]", "-", "-", "-", "-", "-")
            problems.append(f"{row['region']}: {row['error']}")
            continue
        word = row.get("health") or health_of(row)
        health = f"[{_HEALTH_STYLE[word]}]{word}[/]"
        if row.get("rebuilding"):
            done, target = row["rebuilding"]["applied"], row["rebuilding"]["target"]
            health = f"[yellow]rebuilding {done}/{target}[/]"
            problems.append(f"{row['region']}: its store is being rebuilt from its topic "
                            f"({done} of {target} events); reads there may be behind")
        if row.get("positions_past_end"):
            problems.append(
                f"{row['region']}: stored positions past the topic's end "
                f"({row['positions_past_end']} vs {row['end_offsets']}): the store was built "
                "from another Kafka"
            )
        positions = " ".join(f"{p}:{o}" for p, o in row["positions"].items()) or "-"
        table.add_row(
            row["region"], health, str(row["lag"]), positions, str(row["keys"]),
            f"{row['store_bytes'] / 1024:.0f} KiB", row["url"] or "-",
        )
    console.print(table)
    return problems


def _render_staleness(served: list[dict[str, Any]]) -> None:
    origins = sorted({o for row in served for o in row.get("staleness_ms", {})})
    matrix = Table(title="staleness: how old each region's view of each origin can be "
                   "(ms; from heartbeat watermarks)")
    matrix.add_column("region \\ origin")
    for origin in origins:
        matrix.add_column(origin)
    matrix.add_column("causal buffer")
    matrix.add_column("replication")
    for row in served:
        cells = []
        for origin in origins:
            value = row.get("staleness_ms", {}).get(origin)
            cells.append("[red]unknown[/]" if value is None else f"{value:.0f}")
        buffer = row.get("causal_buffer", {})
        pending = buffer.get("pending", 0)
        cells.append(f"[red]{pending} (full)[/]" if buffer.get("full") else str(pending))
        cells.append("[yellow]paused[/]" if row.get("replication_paused") else "running")
        matrix.add_row(row["region"], *cells)
    console.print(matrix)


def _render_details(row: dict[str, Any]) -> None:
    """A region's frontier, commit participant and state host."""
    frontier = row.get("frontier", {})
    shown = " ".join(f"{s}:{o}" for s, o in frontier.items())
    console.print(f"[bold]{row['region']}[/] frontier: {shown or '-'}",
                  highlight=False, soft_wrap=True)
    saga = row.get("saga_participant")
    if saga:
        processed = " ".join(f"{p}:{o}" for p, o in saga["processed"].items())
        console.print(
            f"[bold]{row['region']}[/] commit participant: in doubt "
            f"{saga['in_doubt']}, votes {saga['votes_yes']} yes / {saga['votes_no']} no, "
            f"commits {saga['commits']}, aborts {saga['aborts']}; commit log processed "
            f"{processed or '-'}", highlight=False, soft_wrap=True,
        )
    states = row.get("state_host")
    if states:
        c = states["counters"]
        console.print(
            f"[bold]{row['region']}[/] state host {states['host']}: "
            f"{states['states']} states folded ({', '.join(states['classes'])}), "
            f"{len(states['owned'])} owned; ops {c['ops']}, takeovers "
            f"{c['takeovers']}, hand-offs {c['handoffs']}, demoted {c['demoted']}",
            highlight=False, soft_wrap=True,
        )
