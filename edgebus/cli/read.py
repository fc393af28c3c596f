"""``edgebus read``: a key's value in one region, at a consistency level."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from edgebus.cli._common import ConfigOption, JsonOption
from edgebus.cli._output import console
from edgebus.cli._runner import Call, Document, run_command
from edgebus.sdk import EdgeBus, ReadResult

__all__ = ["read"]


def read(
    ctx: typer.Context,
    key: str = typer.Argument(..., help="Entity key."),
    region: str | None = typer.Option(
        None, "--region", help="Region to read (default: the first configured). When its "
        "service does not answer, another region answers only with a value: a \"not "
        "found\" from a region that may not hold the key fails the read (RegionUnavailable, "
        "exit 1) naming the regions tried."
    ),
    consistency: str = typer.Option(
        "eventual", "--consistency",
        help="eventual | causal (with --session) | bounded_staleness (with --staleness-ms)",
    ),
    session: str | None = typer.Option(
        None, "--session", help="Session token from an earlier write or read (any process): "
        "a causal read sees everything it covers."
    ),
    staleness_ms: float | None = typer.Option(
        None, "--staleness-ms", help="bounded_staleness: the answer may be at most this old "
        "(default reads.staleness_threshold_ms)."
    ),
    max_versions_behind: int | None = typer.Option(
        None, "--max-versions-behind", min=0,
        help="bounded_staleness: and lack at most this many writes of the key's partition.",
    ),
    wait_ms: float | None = typer.Option(
        None, "--wait-ms", min=0, help="How long the region may take to catch up "
        "(default reads.wait_ms)."
    ),
    fallback: str | None = typer.Option(
        None, "--fallback", help="route (another fresh region serves) | raise "
        "(default reads.fallback)."
    ),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Print the key's value, version, origin and HLC as a region holds it, with the
    session token after the read and the measured staleness."""

    async def body(call: Call) -> Document:
        result = await _read(
            call.config, key, region,
            consistency=consistency, session=session, staleness_threshold_ms=staleness_ms,
            max_versions_behind=max_versions_behind, wait_ms=wait_ms, fallback=fallback,
        )
        return {"ok": True, **result.to_dict()}

    run_command(ctx, body, as_json=as_json, config=config, render=_render)


async def _read(config: Any, key: str, region: str | None, **options: Any) -> ReadResult:
    bus = EdgeBus(config, client_id="edgebus-cli", discovery=False)
    try:
        return await bus.read(key, region, **options)
    finally:
        await bus.close()


def _render(data: dict[str, Any]) -> None:
    table = Table(show_header=False, box=None)
    for name in ("key", "region", "exists", "value", "version", "origin", "hlc", "event_id",
                 "consistency", "staleness_ms", "waited_ms", "routed_from", "session_token"):
        table.add_row(f"[bold]{name}[/]", str(data.get(name)))
    console.print(table)
