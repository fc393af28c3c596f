"""``edgebus dlq list | redrive``: a region's dead letters."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from edgebus.cli._common import ConfigOption, JsonOption, command_group, region_option
from edgebus.cli._output import console
from edgebus.cli._runner import Call, Document, run_command
from edgebus.errors import InvalidInput

__all__ = ["app"]

app = command_group("List and redrive dead letters (edgebus.<region>.dlq).")


@app.command("list")
def list_(
    ctx: typer.Context,
    region: str = region_option(),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Every dead letter of the region: position, key, stage, reason (unreadable: invalid)."""
    from edgebus.kafka.dead_letter_view import list_dead_letters

    async def body(call: Call) -> Document:
        letters = await list_dead_letters(call.config, region)
        return {"ok": True, "region": region, "dead_letters": [d.to_dict() for d in letters]}

    run_command(ctx, body, as_json=as_json, config=config, regions=[region],
                render=_render_list)


@app.command("redrive")
def redrive(
    ctx: typer.Context,
    region: str = region_option(),
    offset: list[str] = typer.Option(
        [], "--offset", help="PARTITION:OFFSET of a dead letter (repeatable)."
    ),
    all_: bool = typer.Option(False, "--all", help="Every materialize-stage dead letter."),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Put dead letters back on edgebus.<region>.events (each record applies at most once)."""
    from edgebus.kafka.redrive import redrive as do_redrive

    async def body(call: Call) -> Document:
        cfg = call.config
        if bool(offset) == all_:
            raise InvalidInput("give --all or one or more --offset PARTITION:OFFSET")
        positions = None if all_ else [_position(o) for o in offset]
        results = await do_redrive(cfg, region, positions)
        return {"ok": True, "region": region, "results": results}

    run_command(ctx, body, as_json=as_json, config=config, regions=[region],
                render=_render_redrive)


def _position(text: str) -> tuple[int, int]:
    partition, _, offset = text.partition(":")
    if (partition.isascii() and partition.isdigit() and offset.isascii() and offset.isdigit()
            and len(partition) <= 10 and len(offset) <= 19):
        return int(partition), int(offset)
    raise InvalidInput(f"--offset {text[:40]!r} is not PARTITION:OFFSET (e.g. 0:12)")


def _render_list(data: dict[str, Any]) -> None:
    table = Table(title=f"dead letters of {escape(str(data['region']))}")
    for column in ("position", "key", "stage", "refused by", "when", "reason"):
        table.add_column(column)
    for d in data["dead_letters"]:
        reason = d["reason"]
        if d.get("reference"):
            reason = f"[reference: {d.get('original_bytes')} bytes at {d.get('source')}] {reason}"
        if d.get("invalid"):
            reason += " (invalid: " + ", ".join(sorted(d["invalid"])) + ")"
        table.add_row(
            f"{d['partition']}:{d['offset']}", escape(str(d["key"])), _or_invalid(d["stage"]),
            _or_invalid(d["refused_by"]), _when(d["time_ms"]), escape(reason),
        )
    console.print(table)


def _or_invalid(value: str | None) -> str:
    return "(invalid)" if value is None else escape(value)


def _when(time_ms: int | None) -> str:
    if time_ms is None:
        return "(invalid)"
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(time_ms / 1000))
    except (OverflowError, OSError, ValueError):
        return f"{time_ms} ms"


def _render_redrive(data: dict[str, Any]) -> None:
    for r in data["results"]:
        where = f"{r['partition']}:{r['offset']}"
        if r["redriven"]:
            console.print(f"redriven {where} -> {r['to']}", highlight=False)
        else:
            console.print(f"[yellow]not redriven[/] {where}: {escape(r['why'])}", highlight=False)
