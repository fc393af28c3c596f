"""``edgebus read``: a key's value in one region."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from edgebus.bus import EdgeBus, ReadResult
from edgebus.cli._common import ConfigOption, JsonOption, load_cli_config
from edgebus.cli._output import console, emit, fail, json_mode
from edgebus.errors import EdgebusError

__all__ = ["read"]


def read(
    ctx: typer.Context,
    key: str = typer.Argument(..., help="Entity key."),
    region: str | None = typer.Option(None, "--region", help="Region to read (default: the "
                                      "first configured)."),
    consistency: str = typer.Option("eventual", "--consistency", help="eventual"),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Print the key's value, version, origin and HLC as the region's service holds it."""
    as_json = json_mode(ctx, as_json)
    try:
        result = asyncio.run(_read(load_cli_config(config), key, region, consistency))
    except EdgebusError as e:
        raise fail(as_json, e) from None
    emit(as_json, {"ok": True, **result.to_dict()}, _render)


async def _read(config: Any, key: str, region: str | None, consistency: str) -> ReadResult:
    bus = EdgeBus(config, client_id="edgebus-cli")
    try:
        return await bus.read(key, region, consistency=consistency)
    finally:
        await bus.close()


def _render(data: dict[str, Any]) -> None:
    table = Table(show_header=False, box=None)
    for name in ("key", "region", "exists", "value", "version", "origin", "hlc", "event_id"):
        table.add_row(f"[bold]{name}[/]", str(data.get(name)))
    console.print(table)
