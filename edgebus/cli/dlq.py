"""``edgebus dlq list | redrive``: a region's dead letters."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer
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
    """Every dead letter of the region: position, key, stage and reason."""
    from edgebus.kafka.dead_letters import list_dead_letters


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
    """Put dead letters back on edgebus.<region>.events (each applies at most once)."""
    from edgebus.kafka.dead_letters import redrive as do_redrive


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
    try:
        partition, offset = text.split(":")
        return int(partition), int(offset)
    except ValueError:
        raise InvalidInput(f"--offset {text!r} is not PARTITION:OFFSET (e.g. 0:12)") from None


def _render_list(data: dict[str, Any]) -> None:
    table = Table(title=f"dead letters of {data['region']}")
    for column in ("position", "key", "stage", "refused by", "when", "reason"):
        table.add_column(column)
    for d in data["dead_letters"]:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(d["time_ms"] / 1000))
        table.add_row(f"{d['partition']}:{d['offset']}", str(d["key"]), d["stage"],
                      d["refused_by"], when, d["reason"])
    console.print(table)


def _render_redrive(data: dict[str, Any]) -> None:
    for r in data["results"]:
        where = f"{r['partition']}:{r['offset']}"
        if r["redriven"]:
            console.print(f"redriven {where} -> {r['to']}")
        else:
            console.print(f"[yellow]not redriven[/] {where}: {r['why']}")
