"""``edgebus saga list | show``: strong-write transactions and multi-step sagas."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from edgebus.cli._common import ConfigOption, JsonOption, command_group
from edgebus.cli._output import console
from edgebus.cli._runner import Call, Document, run_command
from edgebus.config import EdgeConfig
from edgebus.errors import InvalidInput

__all__ = ["app"]

app = command_group("In-flight and recent strong writes (two-phase commits) and sagas.")

_WINDOW = typer.Option(
    5_000, "--window", help="Commit-log records to read per partition, newest (0: all)."
)


@app.command("list")
def list_(
    ctx: typer.Context,
    limit: int = typer.Option(50, "--limit", help="Show at most this many transactions."),
    in_flight: bool = typer.Option(
        False,
        "--in-flight",
        help="Only transactions not finished (undecided, or not yet "
        "acknowledged by every participant).",
    ),
    key: str | None = typer.Option(None, "--key", help="Only this key's transactions."),
    window: int = _WINDOW,
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Strong-write transactions (newest first) with status, participants, votes and who
    decided; then the multi-step sagas and their status."""

    async def body(call: Call) -> Document:
        if limit < 1 or window < 0:
            raise InvalidInput("--limit must be at least 1 and --window at least 0")
        return {"ok": True, **await _list(call.config, limit, in_flight, key, window)}

    run_command(ctx, body, as_json=as_json, config=config, render=_render_list)


@app.command("show")
def show(
    ctx: typer.Context,
    txn_id: str = typer.Argument(
        "", help="A transaction id (CommitResult.txn_id) or a saga id, or a prefix of one "
        "that names only it; none: the newest transaction.",
        show_default=False,
    ),
    window: int = _WINDOW,
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Everything the commit log holds about one transaction: the request (its data is
    staged in the participants' own regions, never in the commit log: ``staged_in``;
    only an old client's BEGIN has a ``payload``), each vote, the decision and each
    participant's acknowledgement, with times from the begin. For a saga id: its steps
    and progress records."""

    async def body(call: Call) -> Document:
        return {"ok": True, **await _show(call.config, txn_id, window)}

    run_command(ctx, body, as_json=as_json, config=config, render=_render_show)


async def _list(
    config: EdgeConfig, limit: int, in_flight: bool, key: str | None, window: int
) -> dict[str, Any]:
    from edgebus.commit.history import read_transactions, txn_summary
    from edgebus.kafka.clusters import resolve_clusters
    from edgebus.sagas.runner import SagaRunner

    bootstrap = resolve_clusters(config)[config.strong_log_region]
    txns = await read_transactions(config, bootstrap, window or None)
    if key is not None:
        txns = [t for t in txns if t.key == key]
    if in_flight:
        txns = [t for t in txns if not t.finished]
    now_ms = time.time_ns() // 1_000_000
    async with SagaRunner(config) as runner:
        sagas = await runner.list_sagas()
    return {
        "transactions": [txn_summary(t, now_ms) for t in txns[:limit]],
        "more": max(0, len(txns) - limit),
        "sagas": sagas[-limit:],
    }


async def _show(config: EdgeConfig, txn_id: str, window: int) -> dict[str, Any]:
    from edgebus.commit.history import read_transactions, txn_detail
    from edgebus.kafka.clusters import resolve_clusters
    from edgebus.sagas.runner import SagaRunner

    bootstrap = resolve_clusters(config)[config.strong_log_region]
    txns = {t.txn_id: t for t in await read_transactions(config, bootstrap, window or None)}
    scope = (f" (last {window} records per partition; pass --window 0 to read it all)"
             if window else "")
    if not txn_id:  # the newest (they come newest first) whose request is in the log
        newest = next((t for t in txns.values() if t.begin is not None), None)
        if newest is None:
            raise InvalidInput(f"no strong writes in the commit log{scope}")
        return {"transaction": txn_detail(newest)}
    found = _one_of(txn_id, list(txns))
    if found is not None:
        return {"transaction": txn_detail(txns[found])}
    async with SagaRunner(config) as runner:
        saga = _one_of(txn_id, [s["saga_id"] for s in await runner.list_sagas()])
        if saga is not None:
            return {"saga": await runner.show(saga)}
    raise InvalidInput(
        f"no transaction or saga {txn_id!r} in the commit log or the saga progress log"
        f"{scope}"
    )


def _one_of(given: str, ids: list[str]) -> str | None:
    """The id ``given`` names: itself, else the one id it is a prefix of (None: no id);
    InvalidInput when it is the prefix of several."""
    if given in ids:
        return given
    matches = [i for i in ids if i.startswith(given)]
    if len(matches) > 1:
        shown = ", ".join(matches[:5]) + (", ..." if len(matches) > 5 else "")
        raise InvalidInput(f"{given!r} is the start of {len(matches)} ids ({shown}): "
                           "give more of it")
    return matches[0] if matches else None


def _render_list(data: dict[str, Any]) -> None:
    table = Table(title="strong writes (newest first)")
    for column in ("txn", "key", "status", "votes", "acks", "decided by", "age"):
        table.add_column(column)
    for t in data["transactions"]:
        n = len(t["participants"])
        yes = sum(1 for v in t["votes"].values() if v == "yes")
        noes = [f"{r}: {v}" for r, v in t["votes"].items() if v != "yes"]
        votes = f"{yes}/{n} yes" + (f" ({'; '.join(noes)})" if noes else "")
        table.add_row(
            t["txn_id"],
            t["key"],
            t["status"],
            votes,
            f"{len(t['acks'])}/{n}",
            t["decided_by"] or "-",
            f"{t['age_ms'] / 1000:.1f}s",
        )
    console.print(table)
    if data["more"]:
        console.print(f"... and {data['more']} more (--limit)")
    if data["sagas"]:
        sagas = Table(title="sagas")
        for column in ("saga", "name", "status"):
            sagas.add_column(column)
        for s in data["sagas"]:
            sagas.add_row(str(s["saga_id"]), str(s.get("name")), str(s.get("status")))
        console.print(sagas)


def _render_show(data: dict[str, Any]) -> None:
    import json

    console.print_json(json.dumps(data.get("transaction") or data.get("saga"), default=str))
