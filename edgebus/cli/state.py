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

import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from edgebus.cli._common import ConfigOption, JsonOption, load_cli_config
from edgebus.cli._output import console, emit, fail, json_mode
from edgebus.config import EdgeConfig
from edgebus.core.ownership import Claim, Handoff, OwnerView, Release, Renew
from edgebus.core.state_machine import OPERATIONS, StateObject, StateOp, StateRequest
from edgebus.errors import EdgebusError, InvalidInput

__all__ = ["app"]

app = typer.Typer(
    help="State machines (durable objects on the log): read their logs, run an operation.",
    no_args_is_help=True,
)

_CLASS = typer.Option(
    None, "--class", help="The state's data class (its jurisdiction). Default: every class."
)
#: a read makes no progress this long: the cluster stopped answering
_STALL_S = 30.0


# -- commands ---------------------------------------------------------------------------


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
    as_json = json_mode(ctx, as_json)
    try:
        cfg = load_cli_config(config)
        folded = asyncio.run(_fold_logs(cfg, _classes(cfg, data_class), state_id))
        now_ms = _now_ms()
        states = [_describe(f, now_ms, key) for f in _found(folded, state_id, data_class)]
    except EdgebusError as e:
        raise fail(as_json, e) from None
    emit(as_json, {"ok": True, "states": states}, _render_get)


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
    as_json = json_mode(ctx, as_json)
    try:
        if limit < 1:
            raise InvalidInput(f"--limit must be at least 1, got {limit}")
        cfg = load_cli_config(config, *([owner] if owner is not None else []))
        folded = asyncio.run(_fold_logs(cfg, _classes(cfg, data_class), None))
        now_ms = _now_ms()
        rows = [_summary(f, now_ms) for f in sorted(folded.values(), key=_order)
                if owner is None or f.obj.view.owner == owner]
    except EdgebusError as e:
        raise fail(as_json, e) from None
    emit(as_json, {"ok": True, "states": rows[:limit], "more": max(0, len(rows) - limit)},
         _render_ls)


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
    as_json = json_mode(ctx, as_json)
    try:
        cfg = load_cli_config(config)
        folded = asyncio.run(_fold_logs(cfg, _classes(cfg, data_class), state_id))
        now_ms = _now_ms()
        states = [_ownership(f, now_ms) for f in _found(folded, state_id, data_class)]
    except EdgebusError as e:
        raise fail(as_json, e) from None
    emit(as_json, {"ok": True, "states": states}, _render_owner)


@app.command("call")
def call(
    ctx: typer.Context,
    state_id: str = typer.Argument(..., help="The state id."),
    operation: str = typer.Argument(..., help=" | ".join(OPERATIONS)),
    key: str | None = typer.Option(None, "--key", help="A field (default: the whole state)."),
    value: str | None = typer.Option(None, "--value", help="The value, as JSON."),
    increment: str | None = typer.Option(
        None, "--increment", help="increment: the amount (a number; default 1)."),
    lock_name: str | None = typer.Option(None, "--lock-name", help="lock/unlock: the lock."),
    holder: str | None = typer.Option(
        None, "--holder", help="lock/unlock: who holds it (default: edgebus-cli)."),
    timeout_ms: int | None = typer.Option(
        None, "--timeout-ms", help="How long to wait for the answer (a lock: for the lock)."),
    lease_duration_ms: int | None = typer.Option(
        None, "--lease-duration-ms",
        help="A lock's lease; also the owner's lease if this call makes a region claim."),
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
    as_json = json_mode(ctx, as_json)
    try:
        options: dict[str, Any] = {
            "key": key, "value": None if value is None else _parse_json(value, "--value"),
            "lock_name": lock_name, "holder": holder, "timeout_ms": timeout_ms,
            "lease_duration_ms": lease_duration_ms, "update_fn": update_fn,
            "enable_migration": enable_migration, "classification": data_class,
            "region": region, "req_id": req_id,
        }
        if increment is not None:
            options["increment"] = _parse_number(increment)
        result = asyncio.run(_call(load_cli_config(config), state_id, operation, options))
    except EdgebusError as e:
        raise fail(as_json, e) from None
    emit(as_json, result, _render_call)
    if not result["ok"]:
        raise typer.Exit(1)


# -- reading the logs ---------------------------------------------------------------------


@dataclass
class _Folded:
    """One state's fold, plus what the CLI shows beside it."""

    data_class: str
    topic: str
    partition: int
    obj: StateObject
    history: list[dict[str, Any]] = field(default_factory=list)
    renewals: dict[str, int] = field(default_factory=lambda: {"granted": 0, "refused": 0})
    ops: dict[str, int] = field(
        default_factory=lambda: {"accepted": 0, "not_accepted": 0, "duplicates": 0})
    requests: int = 0
    records: int = 0


def _classes(config: EdgeConfig, data_class: str | None) -> list[str]:
    """The classes to read: the one named (validated), else every class some region
    may hold (a class no region may hold has no log)."""
    from edgebus.state.log import allowed_regions, home_region, state_classes

    known = state_classes(config)
    if data_class is not None:
        name = data_class.lower()
        if name not in known:
            raise InvalidInput(f"unknown state class {data_class!r}: use one of "
                               f"{', '.join(known)}")
        home_region(config, name)  # raises ComplianceViolation when no region may hold it
        return [name]
    return [c for c in known if allowed_regions(config, c)]


async def _fold_logs(config: EdgeConfig, classes: list[str],
                     state_id: str | None) -> dict[tuple[str, str], _Folded]:
    """Fold every record of the classes' logs (only ``state_id``'s partition and
    records when given), read from their first offset to their end as of now."""
    from edgebus.kafka.clients import reader
    from edgebus.kafka.clusters import resolve_clusters
    from edgebus.kafka.reading import records_below, topic_partitions
    from edgebus.state.log import decode_record, home_region, state_partition, state_topic

    clusters = resolve_clusters(config)
    by_bootstrap: dict[str, dict[str, str]] = {}  # bootstrap -> topic -> class
    for data_class in classes:
        bootstrap = clusters[home_region(config, data_class)]
        by_bootstrap.setdefault(bootstrap, {})[state_topic(config, data_class)] = data_class
    wanted = None if state_id is None else state_partition(state_id, config.kafka.partitions)
    out: dict[tuple[str, str], _Folded] = {}
    for bootstrap, topics in by_bootstrap.items():
        async with reader(config.kafka, bootstrap) as consumer:
            tps = [tp for tp in await topic_partitions(consumer, topics)
                   if wanted is None or tp.partition == wanted]
            if not tps:
                continue  # no state of these classes was ever written
            ends = await consumer.end_offsets(tps)
            async for record in records_below(
                consumer, ends, stall_s=_STALL_S, bootstrap=bootstrap
            ):
                decoded = decode_record(record)
                if decoded is None or (state_id is not None and decoded[0] != state_id):
                    continue
                sid, rec = decoded
                data_class = topics[record.topic]
                folded = out.get((data_class, sid))
                if folded is None:
                    folded = out[(data_class, sid)] = _Folded(
                        data_class, record.topic, record.partition, StateObject(sid))
                _fold(folded, rec, int(record.timestamp))
    return out


def _fold(folded: _Folded, rec: Any, append_ms: int) -> None:
    """Fold ``rec`` into the state, and note it in the history and counts."""
    obj = folded.obj
    folded.records += 1
    if isinstance(rec, StateRequest):
        folded.requests += 1
    elif isinstance(rec, StateOp):
        if rec.duplicate:
            folded.ops["duplicates"] += 1
        elif obj.accepts(rec, append_ms):
            folded.ops["accepted"] += 1
        else:
            folded.ops["not_accepted"] += 1
    else:
        _note_ownership(folded, obj.view, rec, append_ms)
    obj.fold(rec, append_ms)


def _refusal(view: OwnerView, rec: Claim | Renew | Handoff | Release, at: int) -> str | None:
    """Why the log does not grant ``rec`` at append time ``at`` (``None``: granted).
    The rules of :func:`edgebus.core.ownership.fold_ownership`."""
    if isinstance(rec, Claim):
        if rec.lease_ms <= 0:
            return "no lease (lease_ms <= 0)"
        if rec.epoch != view.epoch + 1:
            return f"epoch {rec.epoch} is not the next epoch ({view.epoch + 1})"
        if not view.free_for(rec.region, at):
            return f"{view.owner} ({view.holder}) owned it until {view.lease_until_ms}"
        return None
    if (rec.region, rec.host) != (view.owner, view.holder) or rec.epoch != view.epoch:
        return (f"not the owner at its epoch (the owner: {view.owner} ({view.holder}) at "
                f"epoch {view.epoch})")
    if isinstance(rec, Renew) and at > view.lease_until_ms:
        return f"too late: the lease ended at {view.lease_until_ms}"
    return None


def _note_ownership(folded: _Folded, view: OwnerView,
                    rec: Claim | Renew | Handoff | Release, at: int) -> None:
    why = _refusal(view, rec, at)
    history = folded.history
    if isinstance(rec, Renew):
        folded.renewals["granted" if why is None else "refused"] += 1
        last = history[-1] if history else None
        if (last is not None and last["kind"] == "renew"
                and (last["region"], last["host"], last["epoch"])
                == (rec.region, rec.host, rec.epoch)):
            last["count"] += 1
            last["granted" if why is None else "refused"] += 1
            last["last_ms"] = at
            if why is not None:
                last["reason"] = why
            return
        entry: dict[str, Any] = {
            "kind": "renew", "region": rec.region, "host": rec.host, "epoch": rec.epoch,
            "count": 1, "granted": int(why is None), "refused": int(why is not None),
            "first_ms": at, "last_ms": at,
        }
    else:
        entry = {"kind": type(rec).__name__.lower(), "region": rec.region, "host": rec.host,
                 "epoch": rec.epoch, "append_ms": at, "granted": why is None}
        if isinstance(rec, Claim):
            entry["lease_ms"] = rec.lease_ms
        elif isinstance(rec, Handoff):
            entry["to_region"] = rec.to_region
    if why is not None:
        entry["reason"] = why
    history.append(entry)


def _found(folded: dict[tuple[str, str], _Folded], state_id: str,
           data_class: str | None) -> list[_Folded]:
    found = [f for (_c, sid), f in sorted(folded.items()) if sid == state_id]
    if not found:
        where = f"of class {data_class.lower()}" if data_class else "in any class"
        raise InvalidInput(f"no state {state_id!r} {where}; `edgebus state ls` lists them")
    return found


def _order(folded: _Folded) -> tuple[str, str]:
    return (folded.data_class, folded.obj.state_id)


# -- views ----------------------------------------------------------------------------------


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _lease(view: OwnerView, now_ms: int) -> str:
    if view.owner is None:
        return "free"
    return "running" if view.owner_at(now_ms) is not None else "lapsed"


def _owner_fields(folded: _Folded, now_ms: int) -> dict[str, Any]:
    v = folded.obj.view
    return {
        "classification": folded.data_class, "state_id": folded.obj.state_id,
        "owner": v.owner, "host": v.holder or None, "epoch": v.epoch,
        "lease_until_ms": v.lease_until_ms, "lease": _lease(v, now_ms),
        "lease_running": v.owner_at(now_ms) is not None, "handed_to": v.handed_to,
    }


def _describe(folded: _Folded, now_ms: int, key: str | None) -> dict[str, Any]:
    obj = folded.obj
    out = _owner_fields(folded, now_ms)
    out.update({
        "topic": folded.topic, "partition": folded.partition,
        "key": key, "value": obj.value(key), "version": obj.version,
        "locks": [{"name": h.name, "holder": h.holder, "until_ms": h.until_ms,
                   "held": h.until_ms >= now_ms} for h in obj.locks.values()],
        "waiting": [
            {"req_id": r.req_id, "operation": r.operation, "from_region": r.from_region,
             "holder": r.holder, "key": r.key, "lock_name": r.lock_name,
             "appended_ms": at, "timeout_ms": r.timeout_ms}
            for r, at in obj.pending.values()
        ],
        "migratable": obj.migratable, "records": folded.records,
        "last_append_ms": obj.last_append_ms,
    })
    return out


def _summary(folded: _Folded, now_ms: int) -> dict[str, Any]:
    v = folded.obj.view
    return {
        "classification": folded.data_class, "state_id": folded.obj.state_id,
        "owner": v.owner, "epoch": v.epoch, "version": folded.obj.version,
        "lease": _lease(v, now_ms),
        "locks": sum(1 for h in folded.obj.locks.values() if h.until_ms >= now_ms),
        "waiting": len(folded.obj.pending),
    }


def _ownership(folded: _Folded, now_ms: int) -> dict[str, Any]:
    out = _owner_fields(folded, now_ms)
    out.update({"history": folded.history, "renewals": dict(folded.renewals),
                "ops": dict(folded.ops), "requests": folded.requests})
    return out


# -- call ----------------------------------------------------------------------------------


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


# -- rendering for people ---------------------------------------------------------------------


def _ms(at: int) -> str:
    if not at:
        return "-"
    return time.strftime("%H:%M:%S", time.localtime(at / 1000)) + f".{at % 1000:03d}"


def _render_get(data: dict[str, Any]) -> None:
    for s in data["states"]:
        table = Table(title=f"state {s['state_id']} (class {s['classification']})",
                      show_header=False)
        shown = "value" if s["key"] is None else f"value[{s['key']}]"
        table.add_row(shown, json.dumps(s["value"], sort_keys=True))
        table.add_row("version", str(s["version"]))
        table.add_row("owner", f"{s['owner'] or '-'} ({s['host'] or '-'})")
        table.add_row("epoch", str(s["epoch"]))
        table.add_row("lease", f"{s['lease']} (until {_ms(s['lease_until_ms'])})")
        table.add_row("handed to", s["handed_to"] or "-")
        table.add_row("locks", "; ".join(
            f"{lk['name']}: {lk['holder']} until {_ms(lk['until_ms'])}"
            f"{'' if lk['held'] else ' (expired)'}" for lk in s["locks"]) or "-")
        table.add_row("waiting", "; ".join(
            f"{w['operation']} {w['req_id']} from {w['from_region']}"
            for w in s["waiting"]) or "-")
        table.add_row("log", f"{s['topic']} partition {s['partition']}, "
                      f"{s['records']} records")
        console.print(table)


def _render_ls(data: dict[str, Any]) -> None:
    table = Table(title="states")
    for column in ("class", "state", "owner", "epoch", "version", "lease", "locks",
                   "waiting"):
        table.add_column(column)
    for s in data["states"]:
        table.add_row(s["classification"], s["state_id"], s["owner"] or "-", str(s["epoch"]),
                      str(s["version"]), s["lease"], str(s["locks"]), str(s["waiting"]))
    console.print(table)
    if data["more"]:
        console.print(f"... and {data['more']} more (--limit)")


def _render_owner(data: dict[str, Any]) -> None:
    for s in data["states"]:
        console.print(
            f"state {s['state_id']} (class {s['classification']}): owner "
            f"{s['owner'] or '-'} ({s['host'] or '-'}), epoch {s['epoch']}, lease "
            f"{s['lease']} until {_ms(s['lease_until_ms'])}, handed to "
            f"{s['handed_to'] or '-'}", highlight=False)
        table = Table()
        for column in ("record", "region (host)", "epoch", "appended", "granted", "detail"):
            table.add_column(column)
        for h in s["history"]:
            if h["kind"] == "renew":
                when = f"{_ms(h['first_ms'])} .. {_ms(h['last_ms'])}"
                granted = f"{h['granted']}/{h['count']}"
                kind = f"renew x{h['count']}"
            else:
                when, granted, kind = _ms(h["append_ms"]), "yes" if h["granted"] else "no", \
                    h["kind"]
            detail = h.get("reason") or (f"to {h['to_region']}" if "to_region" in h else
                                         f"lease {h['lease_ms']} ms" if "lease_ms" in h else "")
            table.add_row(kind, f"{h['region']} ({h['host']})", str(h["epoch"]), when,
                          granted, detail)
        console.print(table)
        ops = s["ops"]
        console.print(f"operations: {ops['accepted']} accepted, {ops['not_accepted']} not "
                      f"accepted (fenced), {ops['duplicates']} duplicate answers; "
                      f"{s['requests']} forwarded requests", highlight=False)


def _render_call(data: dict[str, Any]) -> None:
    table = Table(title=f"{data['operation']} on {data['state_id']}", show_header=False)
    table.add_row("outcome", data["outcome"])
    table.add_row("value", json.dumps(data["value"], sort_keys=True))
    table.add_row("version", str(data["version"]))
    table.add_row("ran at", f"{data['region']} ({data['host']}), epoch {data['epoch']}")
    table.add_row("forwarded", f"yes ({data['forward_ms']:.1f} ms)" if data["forwarded"]
                  else "no")
    table.add_row("class", data["classification"])
    table.add_row("request", data["req_id"] + (" (duplicate: first answer)"
                                              if data["duplicate"] else ""))
    if data["message"]:
        table.add_row("message", data["message"])
    console.print(table)
