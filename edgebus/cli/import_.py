"""``edgebus import``: write an exported store's keys back through the producer SDK."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import typer

from edgebus.cli._common import ConfigOption, JsonOption, region_option
from edgebus.cli._output import console
from edgebus.cli._runner import Call, Document, Reply, run_command
from edgebus.config import EdgeConfig
from edgebus.errors import EdgebusError
from edgebus.sdk import EdgeBus

__all__ = ["import_"]


def import_(
    ctx: typer.Context,
    source: str = typer.Option(..., "--from", help="Exported store: jsonl:///path.jsonl "
                               "(or sqlite:///path.db)."),
    region: str = region_option("Home region of the writes."),
    replication_factor: int | None = typer.Option(None, "--replication-factor", min=1),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Write every live key of an exported store as a new event (a set), through the
    compliance filter. All keys are checked first: if any cannot be placed, nothing is
    written and the refusals are listed (exit 2)."""

    async def body(call: Call) -> Reply:
        summary = await _import(call.config, source, region, replication_factor)
        return Reply({"ok": summary["refused"] == 0, **summary},
                     exit_code=2 if summary["refused"] else 0)

    run_command(ctx, body, as_json=as_json, config=config, regions=[region], render=_render)


def _render(d: Document) -> None:
    console.print(
        f"imported {d['written']:,} keys from {d['source']} into {d['region']} "
        f"({d['skipped_deleted']:,} deleted keys skipped, {d['refused']:,} refused)",
        highlight=False)
    if d["refused"]:
        console.print("nothing was written; fix or leave out these keys:")
        for problem in d["problems"]:
            console.print(problem, highlight=False)


async def _import(
    config: EdgeConfig, source: str, region: str, replication_factor: int | None
) -> dict[str, Any]:
    from connectors import source_by_url

    written = skipped = refused = 0
    problems: list[str] = []
    async with EdgeBus(config, client_id="edgebus-import") as bus:
        # first pass: every key must be placeable, or nothing is written
        async for state in source_by_url(source):
            if not state.exists:
                skipped += 1
                continue
            try:
                bus.prepare_write(state.key, state.value, region=region,
                                  replication_factor=replication_factor)
            except EdgebusError as e:
                refused += 1
                if len(problems) < 20:
                    problems.append(f"{state.key!r}: {e}")
        if refused:
            return {"source": source, "region": region, "written": 0,
                    "skipped_deleted": skipped, "refused": refused, "problems": problems}
        pending: list[asyncio.Future[Any]] = []
        async for state in source_by_url(source):
            if not state.exists:
                continue
            pending.append(asyncio.ensure_future(bus.write(
                state.key, state.value, region=region, replication_factor=replication_factor)))
            if len(pending) >= 256:
                await asyncio.gather(*pending)
                written += len(pending)
                pending.clear()
        await asyncio.gather(*pending)
        written += len(pending)
    return {"source": source, "region": region, "written": written,
            "skipped_deleted": skipped, "refused": refused, "problems": problems}
