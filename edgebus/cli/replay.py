"""``edgebus replay`` and ``edgebus verify``: rebuild a region from its log; check a
live store against such a rebuild."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from edgebus.cli._common import ConfigOption, JsonOption, region_option
from edgebus.cli._output import console, err_console
from edgebus.cli._runner import Call, Document, Reply, run_command
from edgebus.config import EdgeConfig
from edgebus.errors import InvalidInput
from edgebus.region.collector import tune_for_apply

__all__ = ["replay", "verify"]


def replay(
    ctx: typer.Context,
    region: str = region_option("Region whose events topic to replay."),
    to: str = typer.Option(..., "--to", help="New store URL: sqlite:///path.db or "
                           "jsonl:///path.jsonl."),
    until: str | None = typer.Option(
        None, "--until", help="Only records up to this time (ISO 8601, e.g. "
        "2026-11-27T10:00:00Z, or epoch milliseconds)."
    ),
    until_offsets: str | None = typer.Option(
        None, "--until-offsets", help="Only records before these offsets: P:O,P:O,..."
    ),
    key: str | None = typer.Option(None, "--key", help="Only this key's events."),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Rebuild a region's state from edgebus.<region>.events into a new store."""
    from edgebus.region.replay import parse_until_offsets
    from edgebus.region.replay import replay as do_replay

    async def body(call: Call) -> Document:
        tune_for_apply()
        cfg = call.config
        until_ms = None if until is None else parse_time(until)
        offsets = None if until_offsets is None else parse_until_offsets(until_offsets)
        if call.as_json:
            summary = await do_replay(cfg, region, to, until_time_ms=until_ms,
                                      until_offsets=offsets, key=key)
        else:
            with _progress_bar() as bar:
                task = bar.add_task(region, total=0)

                def progress(done: int, total: int) -> None:
                    bar.update(task, completed=done, total=total)

                summary = await do_replay(cfg, region, to, until_time_ms=until_ms,
                                          until_offsets=offsets, key=key, progress=progress)
        return {"ok": True, **summary.to_dict()}

    run_command(ctx, body, as_json=as_json, config=config, regions=[region],
                render=_render_replay)


def _progress_bar() -> Progress:
    return Progress(TextColumn("replaying [bold]{task.description}[/]"), BarColumn(),
                    TextColumn("{task.completed:,}/{task.total:,} records"),
                    TimeRemainingColumn(), console=err_console)


def _render_replay(d: Document) -> None:
    console.print(
        f"replayed {d['events']:,} events of {d['region']} into {d['store']}: "
        f"{d['applied']:,} applied, {d['duplicates']:,} duplicates skipped, "
        f"{d['dead_letters']:,} dead letters, {d['keys']:,} keys, {d['seconds']} s "
        f"({d['events_per_s']:,.0f} events/s); positions {d['positions']}", highlight=False)


def parse_time(text: str) -> int:
    """Epoch milliseconds from ISO 8601 (naive means UTC) or from an integer."""
    if text.isdigit():
        return int(text)
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(
            f"--until {text!r} is not a time: use ISO 8601 (2026-11-27T10:00:00Z) or epoch ms"
        ) from None
    if when.tzinfo is None:

        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def verify(
    ctx: typer.Context,
    region: str = region_option("Region to verify."),
    store: str | None = typer.Option(
        None, "--store", help="Verify this store URL directly instead of asking the running "
        "region service."
    ),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Compare a region's live store with a replay of its topic to the same positions
    (checksums per key-hash range); print every difference. Exit 1 if any."""

    async def body(call: Call) -> Reply:
        report = await _verify(call.config, region, store)
        return Reply({**report.to_dict()}, exit_code=0 if report.ok else 1)

    run_command(ctx, body, as_json=as_json, config=config, regions=[region],
                render=_render_verify)


async def _verify(config: EdgeConfig, region: str, store: str | None) -> Any:
    from connectors import by_url
    from connectors.base import Checksums, row_digest
    from edgebus.region.replay import verify_store

    with tempfile.TemporaryDirectory(prefix="edgebus-verify-") as tmp:
        scratch = f"sqlite://{Path(tmp) / 'replay.db'}"
        if store is not None:
            live_store = by_url(store)
            async with live_store:
                live = await live_store.checksums()

                async def rows(buckets: set[int]) -> AsyncIterator[dict[str, Any]]:
                    from connectors.base import bucket_of

                    async for state in live_store.scan():
                        if bucket_of(state.key) in buckets:
                            yield {"key": state.key, "digest": row_digest(state)}

                return await verify_store(config, region, live, rows, scratch)
        from edgebus.sdk.region_client import RegionClient

        client = RegionClient(config, timeout_s=120)
        try:
            raw = await client.get(region, "/v1/checksums")
            live = Checksums(
                positions={(t, p): o for t, p, o in raw["positions"]},
                buckets={int(b): h for b, h in raw["buckets"].items()},
                keys=raw["keys"],
            )

            async def remote_rows(buckets: set[int]) -> AsyncIterator[dict[str, Any]]:
                from urllib.parse import quote

                from connectors.base import bucket_of

                start: str | None = ""
                while start is not None:
                    page = await client.get(region, f"/v1/keys?limit=5000&start={quote(start)}")
                    for row in page["rows"]:
                        if bucket_of(row["key"]) in buckets:
                            yield {"key": row["key"], "digest": _digest_of_row(row)}
                    start = page["next"]

            return await verify_store(config, region, live, remote_rows, scratch)
        finally:
            await client.close()


def _digest_of_row(row: dict[str, Any]) -> bytes:
    from connectors.base import digest_fields

    hlc = row["hlc"]
    top = ((hlc["wall_ms"] << 16) | hlc["logical"], row["origin"], row["event_id"])
    return digest_fields(row["key"], row["exists"], row["value"], row["version"], top)


def _render_verify(data: dict[str, Any]) -> None:
    if data["ok"]:
        console.print(
            f"[green]ok[/]: {data['region']} live store equals a replay to the same positions "
            f"({data['keys_live']:,} keys, {data['buckets_compared']} key-hash ranges)"
        )
        return
    console.print(
        f"[red]DIFFERENT[/]: {len(data['buckets_differing'])} of {data['buckets_compared']} "
        f"key-hash ranges differ (live {data['keys_live']:,} keys, replay "
        f"{data['keys_replayed']:,})"
    )
    for d in data["differences"]:
        console.print(f"  {d['key']!r}: live {d['live']} / replay {d['replay']}", highlight=False)
