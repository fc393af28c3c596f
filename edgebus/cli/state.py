"""``edgebus state get | ls | owner | call``: state machines (EdgeStateMachine).

``get``, ``ls`` and ``owner`` read the state logs themselves (no region service
needed): every record of a class's log, on its home cluster, folded with
:class:`~edgebus.core.state_machine.StateObject` exactly as the hosts fold it. ``call``
runs one operation through :meth:`EdgeBus.state` (a region service that may host the
state's class must run: the call is forwarded to the owner through the log).

"Now" (is a lease running, is a lock held) is this machine's clock, compared with
the broker's append times the leases are measured in.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import typer

from edgebus.cli._common import ConfigOption, JsonOption, command_group
from edgebus.cli._runner import Call, Document, Reply, run_command
from edgebus.cli._state_fold import (
    classes_to_read,
    describe,
    fold_logs,
    found,
    order,
    ownership,
    summary,
)
from edgebus.cli._state_render import render_call, render_get, render_ls, render_owner
from edgebus.config import EdgeConfig
from edgebus.core.state_machine import OPERATIONS
from edgebus.errors import InvalidInput

__all__ = ["app"]

app = command_group(
    "State machines (durable objects on the log): read their logs, run an operation."
)

_CLASS = typer.Option(
    None, "--class", help="The state's data class (its jurisdiction). Default: every class."
)


@app.command("get")
def get(
    ctx: typer.Context,
    state_id: str = typer.Argument(..., help="The state id."),
    data_class: str | None = _CLASS,
    key: str | None = typer.Option(None, "--key", help="Show only this field's value."),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """A state as its log says now: value, version, owner region and host, epoch, lease,
    hand-off, locks and waiting requests. Found in several classes: each is shown (the
    class is part of a state's identity)."""

    async def body(call: Call) -> Document:
        cfg = call.config
        folded = await fold_logs(cfg, classes_to_read(cfg, data_class), state_id)
        now_ms = _now_ms()
        states = [describe(f, now_ms, key) for f in found(folded, state_id, data_class)]
        return {"ok": True, "states": states}

    run_command(ctx, body, as_json=as_json, config=config, render=render_get)


@app.command("ls")
def ls(
    ctx: typer.Context,
    data_class: str | None = _CLASS,
    owner: str | None = typer.Option(None, "--owner", help="Only states this region owns."),
    limit: int = typer.Option(100, "--limit", help="Show at most this many states."),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Every state of the class logs (by class, then id): owner, epoch, version, lease
    running or lapsed, locks held, requests waiting."""

    async def body(call: Call) -> Document:
        if limit < 1:
            raise InvalidInput(f"--limit must be at least 1, got {limit}")
        cfg = call.config
        folded = await fold_logs(cfg, classes_to_read(cfg, data_class), None)
        now_ms = _now_ms()
        rows = [summary(f, now_ms) for f in sorted(folded.values(), key=order)
                if owner is None or f.obj.view.owner == owner]
        return {"ok": True, "states": rows[:limit], "more": max(0, len(rows) - limit)}

    run_command(ctx, body, as_json=as_json, config=config, regions=[owner], render=render_ls)


@app.command("owner")
def owner_(
    ctx: typer.Context,
    state_id: str = typer.Argument(..., help="The state id."),
    data_class: str | None = _CLASS,
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Who owns a state (region, host, epoch, lease, hand-off) and the ownership history:
    each claim, run of renewals, hand-off and release, with its append time and whether
    the log granted it."""

    async def body(call: Call) -> Document:
        cfg = call.config
        folded = await fold_logs(cfg, classes_to_read(cfg, data_class), state_id)
        now_ms = _now_ms()
        states = [ownership(f, now_ms) for f in found(folded, state_id, data_class)]
        return {"ok": True, "states": states}

    run_command(ctx, body, as_json=as_json, config=config, render=render_owner)


@app.command("call")
def call(
    ctx: typer.Context,
    state_id: str = typer.Argument(..., help="The state id."),
    operation: str = typer.Argument(..., help=" | ".join(OPERATIONS)),
    key: str | None = typer.Option(None, "--key", help="A field (default: the whole state)."),
    value: str | None = typer.Option(None, "--value", help="The value, as JSON."),
    increment: str | None = typer.Option(
        None, "--increment", help="increment: the amount (a number; default 1)."),
    lock_name: str | None = typer.Option(
        None, "--lock-name", help="lock/unlock: the lock (default: the state's own, 'state')."),
    holder: str | None = typer.Option(
        None, "--holder", help="lock/unlock: who holds it (default: edgebus-cli)."),
    timeout_ms: int | None = typer.Option(
        None, "--timeout-ms", help="How long to wait for the answer (a lock: for the lock)."),
    lease_duration_ms: int | None = typer.Option(
        None, "--lease-duration-ms",
        help="The lease asked for, 500 ms to one hour: a lock's, and the owner's from "
             "this call on (default: a lock lasts state.lease_ms, the owner's is kept)."),
    update_fn: str | None = typer.Option(
        None, "--update-fn", help="update: a function registered at the owner, by name."),
    enable_migration: bool = typer.Option(
        False, "--enable-migration", help="Let ownership move toward the callers' region."),
    region: str | None = typer.Option(
        None, "--region", help="Where the call comes from (default: state.host_region, "
        "else the first region)."),
    data_class: str | None = typer.Option(
        None, "--class", help="The state's data class (default: the configured default)."),
    req_id: str | None = typer.Option(
        None, "--req-id", help="Request id: a re-sent request gets its first answer."),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Run one operation at the state's owner (through EdgeBus.state) and print the
    StateResult. A lock not acquired within --timeout-ms prints its result and exits 1."""

    async def body(call: Call) -> Reply:
        options: dict[str, Any] = {
            "key": key, "value": None if value is None else _parse_json(value, "--value"),
            "lock_name": lock_name, "holder": holder, "timeout_ms": timeout_ms,
            "lease_duration_ms": lease_duration_ms, "update_fn": update_fn,
            "enable_migration": enable_migration, "classification": data_class,
            "region": region, "req_id": req_id,
        }
        if increment is not None:
            options["increment"] = _parse_number(increment)
        result = await _call(call.config, state_id, operation, options)
        return Reply(result, exit_code=0 if result["ok"] else 1)

    run_command(ctx, body, as_json=as_json, config=config, render=render_call)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


async def _call(config: EdgeConfig, state_id: str, operation: str,
                options: dict[str, Any]) -> dict[str, Any]:
    from edgebus.sdk import EdgeBus

    # a one-shot command never hosts states: it would claim one, then exit owning it
    config = config.model_copy(
        update={"state": config.state.model_copy(update={"embedded_host": False})})
    bus = EdgeBus(config, client_id="edgebus-cli", discovery=False)
    try:
        result = await bus.state(state_id, operation, **options)
    finally:
        await bus.close()
    out: dict[str, Any] = result.to_dict()
    return out


def _parse_json(text: str, option: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InvalidInput(
            f"{option} is not valid JSON ({e.msg} at line {e.lineno} column {e.colno}). "
            f"""Quote it for your shell, e.g. {option} '{{"count": 1}}' or {option} '"text"'."""
        ) from None


def _parse_number(text: str) -> int | float:
    """An integer stays an integer (``5``, not ``5.0``)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(f"--increment must be a number (like 5 or -0.5), got {text!r}")
    return value

