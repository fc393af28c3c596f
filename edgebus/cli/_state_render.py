"""How ``edgebus state`` prints for people (``--json`` prints the documents as they are)."""

from __future__ import annotations

import json
import time
from typing import Any

from rich.table import Table

from edgebus.cli._output import console

__all__ = ["render_call", "render_get", "render_ls", "render_owner"]


def _ms(at: int) -> str:
    if not at:
        return "-"
    return time.strftime("%H:%M:%S", time.localtime(at / 1000)) + f".{at % 1000:03d}"


def render_get(data: dict[str, Any]) -> None:
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


def render_ls(data: dict[str, Any]) -> None:
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


def render_owner(data: dict[str, Any]) -> None:
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


def render_call(data: dict[str, Any]) -> None:
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
