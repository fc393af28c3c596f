"""``edgebus kafka up | status | down | fetch``: a local Apache Kafka, no Docker needed;
``edgebus kafka init | acls``: the admin steps of any cluster (topics, ACLs).

Thin shell over :mod:`edgebus.localkafka.launcher`: parse options, call, print a table or
one JSON document, turn edgebus errors into their exit code.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from edgebus.cli._common import ConfigOption, command_group
from edgebus.cli._output import console
from edgebus.cli._runner import Call, Document, Reply, run_command
from edgebus.config import ENV_CONFIG
from edgebus.errors import InvalidInput
from edgebus.localkafka import launcher

__all__ = ["app"]

app = command_group(
    "Run real Apache Kafka 4 brokers (KRaft mode) on this machine: jars from Maven "
    "Central, Java 17+, no Docker. Brokers keep running after the command exits. "
    "`init` and `acls` are the admin steps of any cluster: topics and ACLs."
)

JSON_HELP = "Print one JSON document."
SECURE_HELP = (
    "SASL_SSL listeners (a local CA, made at first use), SCRAM-SHA-512 users admin, "
    "region-<R>, coordinator and writer (passwords in the state dir, 0600), the "
    "StandardAuthorizer with permissive default ACLs; later commands use the recorded "
    "settings."
)


def _quiet_clients() -> None:
    """Readiness probes fail on purpose while a broker starts; keep aiokafka quiet."""
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)


def _parse_regions(value: str | None) -> tuple[str, ...]:
    if value is None:
        return launcher.DEFAULT_REGIONS
    return tuple(part.strip() for part in value.split(","))


def _parse_broker_config(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InvalidInput(
                f"--broker-config takes KEY=VALUE (a Kafka broker setting), got {item!r}; "
                "for example --broker-config log.retention.ms=3600000."
            )
        out[key.strip()] = value.strip()
    return out


def _table(title: str, clusters: list[dict[str, Any]]) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("cluster", "bootstrap", "pid", "regions", "security", "state"):
        table.add_column(column)
    for c in clusters:
        state = c["state"]
        color = {"running": "green", "stopped": "yellow"}.get(state, "red")
        table.add_row(
            str(c["index"]),
            c["bootstrap"],
            str(c["pid"]) if c["pid"] is not None else "-",
            ", ".join(c["regions"]),
            c.get("security_label", "plaintext"),
            f"[{color}]{state}[/]",
        )
    return table


def _render_up(doc: dict[str, Any]) -> None:
    if doc["started"]:
        what = "Restarted" if doc["reused_data"] else "Started"
        title = (
            f"{what} {len(doc['clusters'])} Kafka {doc['kafka_version']} cluster(s) "
            f"in {doc['elapsed_s']:.1f} s"
        )
    else:
        title = "Already running with this layout; nothing started"
    console.print(_table(title, doc["clusters"]))
    if doc["discarded_previous"]:
        console.print("The stopped clusters of the previous layout and their data were removed.")
    if doc["secure"]:
        _render_secure(doc)
    console.print(
        f"State: {doc['state_dir']}. Check with `edgebus kafka status`, stop with "
        "`edgebus kafka down`.",
        highlight=False,
    )


def _render_secure(doc: dict[str, Any]) -> None:
    """Where a secure layout's credentials are (never the secrets themselves)."""
    first = doc["clusters"][0]["security"]
    console.print(
        f"SASL_SSL with SCRAM-SHA-512; CA {first['ca_file']}. The client settings (as "
        f"{first['username']}) are recorded in state.json; edgebus clients use them where "
        "the config sets no kafka.security. Passwords "
        f"(0600): {', '.join(sorted(doc['principals']))} in "
        f"{Path(first['password_file']).parent}. Kafka's own tools: --command-config "
        f"{doc['admin_client_properties']}.",
        highlight=False,
    )
    if doc["default_acls_applied"]:
        console.print(doc["acls_note"], highlight=False)


def _render_status(doc: dict[str, Any]) -> None:
    if doc["clusters"]:
        console.print(_table(f"Local Kafka {doc['kafka_version']}", doc["clusters"]))
        for c in doc["clusters"]:
            if c["state"] != "running":
                detail = f" ({c['detail']})" if c.get("detail") else ""
                console.print(f"cluster {c['index']}{detail}: log {c['log_file']}", highlight=False)
    console.print(doc["message"], highlight=False)


def _render_down(doc: dict[str, Any]) -> None:
    if not doc["had_state"]:
        console.print(f"Nothing recorded in {doc['state_dir']}; nothing to stop.", highlight=False)
    else:
        pids = ", ".join(str(p) for p in doc["stopped"]) or "none were running"
        console.print(f"Stopped broker pids: {pids}.", highlight=False)
        if doc["killed"]:
            killed = ", ".join(str(p) for p in doc["killed"])
            console.print(f"Needed SIGKILL: {killed}.", highlight=False)
    if doc["wiped"]:
        _render_wipe(doc)
    elif doc["had_state"]:
        console.print(
            "Data kept: `edgebus kafka up` restarts on it; `edgebus kafka down --wipe` deletes it."
        )


def _render_wipe(doc: dict[str, Any]) -> None:
    """What ``down --wipe`` removed and kept, as it happened (never more)."""
    removed: list[str] = doc["removed"]
    stores = [p for p in removed if p.startswith("regions/")]
    parts = [
        *(["the brokers' data (kafka/)"] if "kafka" in removed else []),
        *(["the TLS material (tls/)"] if "tls" in removed else []),
        *(["the passwords (secrets/)"] if "secrets" in removed else []),
        *(["state.json"] if "state.json" in removed else []),
        *([f"{len(stores)} region store file(s) under regions/"] if stores else []),
    ]
    where = doc["state_dir"]
    console.print(
        f"Removed from {where}: {', '.join(parts)}." if parts else f"Nothing to remove in {where}.",
        highlight=False,
    )
    kept = [f"{p} (the launcher's lock file)" if p == "kafka.lock" else p for p in doc["kept"]]
    console.print(f"Kept there: {', '.join(kept) or 'nothing'}.", highlight=False)
    console.print("Region stores at other paths (`region run --store URL`) were not touched.")


def _render_fetch(doc: dict[str, Any]) -> None:
    how = "downloaded now" if doc["downloaded"] else "already cached"
    if doc["class_archive"]:
        how += "; class-data archive ready"
    console.print(
        f"Kafka {doc['kafka_version']}: {doc['jars']} jars in {doc['libs_dir']} ({how}).",
        highlight=False,
    )


@app.command()
def up(
    ctx: typer.Context,
    clusters: int | None = typer.Option(
        None, "--clusters", "-n",
        help="Number of single-node clusters (region i -> cluster i % N). Default: the "
        "layout already running (a plain second `up` starts nothing), else 1.",
        show_default=False,
    ),
    regions: str | None = typer.Option(
        None,
        "--regions",
        help="Comma-separated regions to map onto the clusters (default: the config's "
        f"discovery.locations, else {','.join(launcher.DEFAULT_REGIONS)}).",
    ),
    kafka_version: str = typer.Option(
        launcher.DEFAULT_KAFKA_VERSION, "--kafka-version", help="Apache Kafka 4.x version."
    ),
    port: int | None = typer.Option(
        None,
        "--port",
        help="Base port: cluster i listens on PORT+2i (clients) and PORT+2i+1 (controller). "
        "Default: free ports.",
    ),
    timeout: float = typer.Option(
        90.0, "--timeout", help="Seconds to wait for every broker to answer."
    ),
    broker_config: list[str] = typer.Option(
        [],
        "--broker-config",
        help="Extra broker setting KEY=VALUE (repeatable), e.g. log.retention.ms=3600000.",
    ),
    secure: bool = typer.Option(False, "--secure", help=SECURE_HELP),
    config: Path | None = ConfigOption,
    json_output: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Start the brokers (idempotent: the same layout already running is reported as is)."""
    _quiet_clients()

    def body(call: Call) -> Document:
        as_asked = (regions, port, broker_config) == (None, None, []) and (
            kafka_version == launcher.DEFAULT_KAFKA_VERSION
        )
        if clusters is None and as_asked:  # no layout asked for: whatever runs is it
            already = launcher.running(timeout_s=timeout, secure=secure)
            if already is not None:
                return already.to_json()
        region_list = (
            _parse_regions(regions)
            if regions is not None or (config is None and not os.environ.get(ENV_CONFIG))
            else call.config.regions
        )
        result = launcher.up(
            1 if clusters is None else clusters,
            region_list,
            kafka_version=kafka_version,
            port=port,
            timeout_s=timeout,
            broker_config=_parse_broker_config(broker_config),
            secure=secure,
        )
        return result.to_json()

    run_command(ctx, body, as_json=json_output, config=config, render=_render_up)


@app.command()
def status(
    ctx: typer.Context,
    json_output: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Show each recorded cluster: pid alive, metadata call answered, ports, regions.

    Exits 0 when every cluster answers, 1 otherwise (nothing recorded, stopped, broken).
    """
    _quiet_clients()

    def body(call: Call) -> Reply:
        report = launcher.status()
        return Reply(report.to_json(), exit_code=0 if report.healthy else 1)

    run_command(ctx, body, as_json=json_output, render=_render_status)


@app.command()
def down(
    ctx: typer.Context,
    wipe: bool = typer.Option(
        False,
        "--wipe",
        help="Also delete the clusters' data, the state file, --secure's "
        "TLS material and passwords, and the region stores kept in the state dir "
        "(regions/*/store.db, states-*.db); says what it removed and kept. Stop region "
        "services first.",
    ),
    json_output: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Stop exactly the brokers `up` started (SIGTERM, SIGKILL after about 20 s)."""

    def body(call: Call) -> Document:
        return launcher.down(wipe=wipe).to_json()

    run_command(ctx, body, as_json=json_output, render=_render_down)


@app.command()
def fetch(
    ctx: typer.Context,
    kafka_version: str = typer.Option(
        launcher.DEFAULT_KAFKA_VERSION, "--kafka-version", help="Apache Kafka 4.x version."
    ),
    json_output: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Download the Kafka jars into the cache (once; later calls find them there)."""

    def body(call: Call) -> Document:
        return {"ok": True, **launcher.fetch(kafka_version).to_json()}

    run_command(ctx, body, as_json=json_output, render=_render_fetch)


# --------------------------------------------------------------------------- admin steps

ACLS_APPLY_HELP = (
    "Apply the plan as an admin: create its ACLs and delete every other ACL of its "
    "principals (the permissive defaults of `up --secure` included); other principals' "
    "ACLs are kept. Idempotent."
)


def _render_acls(doc: dict[str, Any]) -> None:
    for cluster in doc["clusters"]:
        table = Table(
            title=f"ACLs on {cluster['bootstrap']} (regions {', '.join(cluster['regions'])})",
            title_justify="left",
        )
        for column in ("principal", "resource", "operations", "why"):
            table.add_column(column)
        for g in cluster["grants"]:
            star = "*" if g["pattern"] == "prefixed" else ""
            table.add_row(
                g["principal"], f"{g['resource_type']} {g['name']}{star}",
                ", ".join(g["operations"]), g["why"],
            )  # fmt: skip
        console.print(table)
    console.print(
        f"{doc['super_user']} is a super user (no ACLs): it creates topics (`edgebus kafka "
        "init`), applies ACLs and runs the operator tools. A trailing * is a prefix. No "
        "principal may create topics.",
        highlight=False,
    )
    if not doc["applied"]:
        console.print("Nothing applied: `edgebus kafka acls --apply` applies this plan.")
        return
    for c in doc["changes"]:
        console.print(
            f"Applied on {c['bootstrap']}: {c['created']} created, {c['deleted']} deleted; "
            f"the plan's principals have {c['acls']} ACLs there now.",
            highlight=False,
        )


def _render_init(doc: dict[str, Any]) -> None:
    for c in doc["clusters"]:
        created = ", ".join(c["created"]) or "none"
        console.print(
            f"{c['bootstrap']}: {len(c['created'])} topic(s) created ({created}); "
            f"{len(c['existing'])} already there.",
            highlight=False,
        )
    console.print(
        "Topic creation is done; services and writers need no Create right. Grant each "
        "principal its topics with `edgebus kafka acls --apply`."
    )


@app.command()
def acls(
    ctx: typer.Context,
    apply: bool = typer.Option(False, "--apply", help=ACLS_APPLY_HELP),
    config: Path | None = ConfigOption,
    json_output: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Print the least-privilege ACLs of each principal on each cluster (region-<R>,
    coordinator, writer; admin is a super user); --apply applies them. Needs a secure
    cluster (`edgebus kafka up --secure`, or kafka.security with SASL)."""

    async def body(call: Call) -> Document:
        from edgebus.kafka.acl_plan import acl_plan
        from edgebus.kafka.admin_steps import apply_plan
        from edgebus.kafka.clusters import resolve_clusters

        plan = acl_plan(call.config, resolve_clusters(call.config))
        doc: Document = {"ok": True, "applied": False, **plan.to_json()}
        if apply:
            changes = await apply_plan(call.config.kafka, plan)
            doc.update(applied=True, changes=[c.to_json() for c in changes])
        return doc

    run_command(ctx, body, as_json=json_output, config=config, render=_render_acls)


@app.command()
def init(
    ctx: typer.Context,
    config: Path | None = ConfigOption,
    json_output: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Create every topic of the configured layout on every cluster, as an admin:
    events, dlq, service and staged topics per region, the commit log and saga
    progress on the log region's cluster, the state logs. Idempotent: existing topics
    are kept (their partition count checked)."""

    async def body(call: Call) -> Document:
        from edgebus.kafka.acl_plan import topic_layout
        from edgebus.kafka.admin_steps import init_topics
        from edgebus.kafka.clusters import resolve_clusters

        layout = topic_layout(call.config, resolve_clusters(call.config))
        done = await init_topics(call.config.kafka, layout)
        return {
            "ok": True,
            "clusters": [c.to_json() for c in done],
            "topics": {b: [s.to_json() for s in specs] for b, specs in layout.items()},
        }

    run_command(ctx, body, as_json=json_output, config=config, render=_render_init)
