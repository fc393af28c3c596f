"""``edgebus write``: append one event, print its receipt."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from edgebus.cli._common import ConfigOption, JsonOption, region_option
from edgebus.cli._output import console
from edgebus.cli._runner import Call, Document, run_command
from edgebus.errors import InvalidInput
from edgebus.sdk import EdgeBus, WriteReceipt

__all__ = ["write"]


def write(
    ctx: typer.Context,
    region: str = region_option("Home region (location_id) of the write."),
    key: str = typer.Option(..., "--key", help="Entity key."),
    data: str = typer.Option(..., "--data", help="The value, as JSON."),
    classification: str | None = typer.Option(
        None, "--classification", help="Explicit data class (pii, phi, financial, public...)."
    ),
    operation: str | None = typer.Option(
        None, "--operation", help="set|delete|increment|append|merge (default: set)"
    ),
    conflict_resolution: str | None = typer.Option(
        None, "--conflict-resolution", help="last_write_wins|counter|append|merge"
    ),
    replication_factor: int | None = typer.Option(None, "--replication-factor", min=1),
    session: str | None = typer.Option(
        None, "--session", help="Session token of an earlier write or read (any process): "
        "this write causally follows everything it covers."
    ),
    declassify: str | None = typer.Option(
        None, "--declassify", metavar="REASON",
        help="Write with --classification although detection found more; REASON (and "
        "who: this CLI's client id) is recorded in the event (`edgebus tail` shows it). "
        "Without it a label only adds to what detection finds.",
    ),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Write one event to edgebus.<region>.events (classified and placed first)."""

    async def body(call: Call) -> Document:
        value = _parse_json(data)
        receipt = await _write(
            call.config,
            key,
            value,
            region=region,
            classification=classification,
            operation=operation,
            conflict_resolution=conflict_resolution,
            replication_factor=replication_factor,
            session=session,
            **({"declassify": declassify} if declassify is not None else {}),
        )
        return {"ok": True, **receipt.to_dict()}

    run_command(ctx, body, as_json=as_json, config=config, render=_render)


async def _write(config: Any, key: str, value: Any, **options: Any) -> WriteReceipt:
    async with EdgeBus(config, client_id="edgebus-cli", discovery=False) as bus:
        bus.plan(
            key,
            value,
            region=options["region"],
            classification=options["classification"],
            replication_factor=options["replication_factor"],
        )
        receipt: WriteReceipt = await bus.write(key, value, **options)
        return receipt


def _parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InvalidInput(
            f"--data is not valid JSON ({e.msg} at line {e.lineno} column {e.colno}). "
            """Quote it for your shell, e.g. --data '{"email": "a@example.com"}'."""
        ) from None


def _render(data: dict[str, Any]) -> None:
    table = Table(title="written", show_header=False)
    for field in ("key", "region", "topic", "partition", "offset", "placement",
                  "classification", "event_id", "session_token"):
        value = data[field]
        table.add_row(field, ", ".join(value) if isinstance(value, list) else str(value))
    if data.get("rerouted"):
        table.add_row("rerouted", "yes (non-strict mode moved it to a compliant region)")
    console.print(table)
