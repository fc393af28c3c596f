"""``edgebus region run``: one region's service as its own process; ``pause-replication``
and ``resume-replication`` for maintenance and fault drills."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import typer

from edgebus.cli._common import (
    ConfigOption,
    JsonOption,
    command_group,
    region_option,
    serve_until_signal,
)
from edgebus.cli._output import emit, err_console
from edgebus.cli._runner import UNTIL_CTRL_C, Call, Document, run_command
from edgebus.config import EdgeConfig
from edgebus.region.collector import tune_for_apply
from edgebus.region.store_check import OnStoreMismatch

__all__ = ["app"]

app = command_group("Run a region service (materializer, replicators, query endpoint).")


@app.command("run")
def run(
    ctx: typer.Context,
    region: str = region_option("The region to materialize."),
    store: str | None = typer.Option(
        None, "--store", help="Store URL (default: sqlite:///$EDGEBUS_STATE_DIR/regions/R/"
        "store.db)."
    ),
    listen: str = typer.Option(
        "127.0.0.1:0", "--listen", help="HOST:PORT of the query endpoint (port 0: any free). "
        "A non-loopback HOST (0.0.0.0, a LAN address) needs query tokens in the config "
        "(query.read_token_env / admin_token_env or their _file keys; docs/security.md)."
    ),
    advertise: str | None = typer.Option(
        None, "--advertise", help="URL other processes should use to reach the query "
        "endpoint (default: the address it listens on), e.g. http://edgebus-eu:8700 (https "
        "with query.tls_cert_file; clients call only hosts in query.allowed_hosts, by "
        "default loopback and the Kafka bootstrap hosts)."
    ),
    no_replicate: bool = typer.Option(
        False, "--no-replicate", help="Materialize only; copy nothing from other regions."
    ),
    no_states: bool = typer.Option(
        False, "--no-states", help="Host no state machines here (no owner, no standby)."
    ),
    on_store_mismatch: str = typer.Option(
        "rebuild", "--on-store-mismatch", help="A store built from another Kafka (another "
        "cluster, a recreated topic, positions past the topic's end): rebuild it from the "
        "topic, or refuse to start.", metavar="rebuild|refuse",
    ),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Consume edgebus.<region>.events into the region's store, copy in the events
    other regions place here, and answer reads, until Ctrl-C / SIGTERM."""

    async def body(call: Call) -> None:
        await _run(call.config, region, store, listen, advertise, not no_replicate,
                   call.as_json, not no_states, on_store_mismatch)

    run_command(ctx, body, as_json=as_json, config=config, interrupts=UNTIL_CTRL_C)


async def _run(
    config: EdgeConfig,
    region: str,
    store: str | None,
    listen: str,
    advertise: str | None,
    replicate: bool,
    as_json: bool,
    host_states: bool = True,
    on_store_mismatch: str = "rebuild",
) -> None:
    from edgebus.server.service import RegionService

    service = RegionService(region, config, store=store, listen=listen, advertise=advertise,
                            replicate=replicate, host_states=host_states,
                            on_store_mismatch=cast(OnStoreMismatch, on_store_mismatch))
    await service.start()
    tune_for_apply()  # after start: what start built lives as long as the process
    emit(as_json, {"ok": True, "event": "started", "region": region, "url": service.url,
                   "store": service.store.url},
         lambda d: err_console.print(
             f"region [bold]{region}[/] up: store {d['store']}, query {d['url']} "
             "(Ctrl-C to stop)", highlight=False))
    shown = None
    if not as_json and err_console.is_terminal and service.materializer is not None:
        shown = asyncio.ensure_future(_show_rebuild(service.materializer))
    try:
        await serve_until_signal(service)
    finally:
        if shown is not None:
            shown.cancel()


async def _show_rebuild(materializer: Any) -> None:
    """A progress bar on the terminal while the store is rebuilt from its topic."""
    from rich.progress import Progress

    progress = materializer.rebuild_progress()
    if progress is None:
        return
    with Progress(console=err_console, transient=False) as bar:
        task = bar.add_task("rebuilding the store from its topic", total=progress["target"])
        while (progress := materializer.rebuild_progress()) is not None:
            bar.update(task, completed=progress["applied"])
            await asyncio.sleep(0.2)
        bar.update(task, completed=bar.tasks[0].total)


def _replication_switch(paused: bool) -> Callable[..., None]:
    """The command that pauses (``paused``) or resumes copying into a region."""
    verb = "pause" if paused else "resume"

    def switch(
        ctx: typer.Context,
        region: str = region_option(f"The region to {verb} replication into."),
        origins: list[str] | None = typer.Option(
            None, "--from",
            help="Only from this origin region (repeatable; default: every other region). "
            "Each origin's service stops or resumes pushing its events into --region.",
        ),
        config: Path | None = ConfigOption,
        as_json: bool = JsonOption,
    ) -> None:

        async def body(call: Call) -> Document:
            return {"ok": True, **await _pause(call.config, region, paused, origins)}

        run_command(ctx, body, as_json=as_json, config=config,
                    regions=[region, *(origins or ())],
                    render=lambda d: err_console.print(
                        f"{region}: replication from {', '.join(d['origins'])} "
                        f"{'paused' if paused else 'running'}"))

    return switch


pause_replication = app.command(
    "pause-replication",
    help="Stop copying other regions' events (and heartbeats) into this region, for\n"
    "maintenance or a fault drill: every origin's service (each must be running) stops\n"
    "pushing into it, so its frontiers for those origins stop and causal and\n"
    "bounded-staleness reads there wait, route elsewhere or raise. Writes still work.\n"
    "The pause lasts until resumed or until an origin's service restarts.",
)(_replication_switch(True))
resume_replication = app.command(
    "resume-replication",
    help="Resume copying after ``pause-replication``; the region catches up.",
)(_replication_switch(False))


async def _pause(
    config: EdgeConfig, region: str, paused: bool, origins: list[str] | None
) -> dict[str, object]:
    from edgebus.sdk.region_client import RegionClient

    client = RegionClient(config, timeout_s=config.kafka.connect_timeout_s)
    try:
        return await client.pause_replication(region, paused, origins=origins or None)
    finally:
        await client.close()
