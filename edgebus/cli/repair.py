"""``edgebus repair --region R``: make a region pull from its peers what it lacks, and
report what was copied, its frontier before and after, and a checksum comparison.

Exit 0 when nothing placed in R is missing afterwards (every other region's service
copied what R lacked and R's frontier reached it), 1 otherwise (an origin did not
answer, or R did not apply the copies within ``--timeout``). Differing checksum buckets
do not change the exit code: a key placed in one of two regions only makes its bucket
differ by design (see :mod:`edgebus.sdk.repair`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from edgebus.cli._common import ConfigOption, JsonOption, region_option
from edgebus.cli._output import console
from edgebus.cli._runner import Call, Reply, run_command

__all__ = ["repair"]


def repair(
    ctx: typer.Context,
    region: str = region_option("Region to repair."),
    timeout: float = typer.Option(
        60.0, "--timeout", min=0.1, max=86_400.0,
        help="Seconds to wait for the origins' copies and for the region to apply them.",
    ),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Copy into a region, from every other region's service, what it may hold and
    lacks (even while replication into it is paused); wait until it applied it; compare
    its checksums with each peer's. Exit 1 if anything placed in it may still be
    missing."""

    async def body(call: Call) -> Reply:
        from edgebus.sdk.repair import repair_region

        report = await repair_region(call.config, region, timeout_s=timeout)
        return Reply(report.to_dict(), exit_code=0 if report.ok else 1)

    run_command(ctx, body, as_json=as_json, config=config, regions=[region], render=_render)


def _render(data: dict[str, Any]) -> None:
    region = data["region"]
    table = Table(title=f"repair of {region}: copies from each origin")
    for column in ("origin", "outcome", "examined", "copied", "refused", "watermarks"):
        table.add_column(column, no_wrap=True)
    notes: list[str] = []
    before, after = data["frontier_before"], data["frontier_after"]
    for origin in data["origins"]:
        copy, name = origin["copy"] or {}, origin["origin"]
        streams = [f"{name}:{p}" for p in sorted((copy.get("reach") or {}), key=int)]
        moved = [s for s in streams if before.get(s, -1) != after.get(s, -1)]
        if moved:
            notes.append(f"{name}: frontier " + ", ".join(
                f"{s.rpartition(':')[2]}: {before.get(s, -1)} -> {after.get(s, -1)}"
                for s in moved))
        if origin["error"]:
            notes.append(f"{name}: {origin['error']}")
        elif origin["lacking"]:
            notes.append(f"{name}: not applied yet: " + ", ".join(
                f"{s} < {o}" for s, o in origin["lacking"].items()))
        table.add_row(
            name,
            "[green]complete[/]" if origin["complete"] else "[red]incomplete[/]",
            str(copy.get("examined", "-")), str(copy.get("copied", "-")),
            str(copy.get("refused", "-")), str(copy.get("watermarks", "-")),
        )
    console.print(table)
    for note in notes:  # below the table: identifiers and commands are never cut
        console.print(note, highlight=False, soft_wrap=True)
    for peer in data["checksums"]:
        if not peer["answered"]:
            console.print(f"checksums vs {peer['peer']}: not compared ({peer['error']})",
                          highlight=False)
        elif peer["same"]:
            console.print(f"checksums vs {peer['peer']}: [green]same[/] "
                          f"({peer['buckets_compared']} key-hash ranges)", highlight=False)
        else:
            console.print(
                f"checksums vs {peer['peer']}: {len(peer['buckets_differing'])} of "
                f"{peer['buckets_compared']} key-hash ranges differ (expected for keys "
                "placed in one of the two regions only)", highlight=False)
    verdict = ("[green]ok[/]: nothing placed in it is missing" if data["ok"]
               else "[red]INCOMPLETE[/]: something placed in it may still be missing")
    console.print(f"{region}: {verdict} ({data['copied']:,} copies, {data['seconds']} s)")
