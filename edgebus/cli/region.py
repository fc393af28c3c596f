"""``edgebus region run``: one region's service as its own process."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path

import typer

from edgebus.cli._common import ConfigOption, JsonOption, load_cli_config
from edgebus.cli._output import emit, err_console, fail, json_mode
from edgebus.config import EdgeConfig
from edgebus.errors import EdgebusError

__all__ = ["app"]

app = typer.Typer(help="Run a region service (materializer, replicators, query endpoint).",
                  no_args_is_help=True)


@app.command("run")
def run(
    ctx: typer.Context,
    region: str = typer.Option(..., "--region", help="The region to materialize."),
    store: str | None = typer.Option(
        None, "--store", help="Store URL (default: sqlite:///$EDGEBUS_STATE_DIR/regions/R/"
        "store.db)."
    ),
    listen: str = typer.Option(
        "127.0.0.1:0", "--listen", help="HOST:PORT of the query endpoint (port 0: any free)."
    ),
    advertise: str | None = typer.Option(
        None, "--advertise", help="URL other processes should use to reach the query "
        "endpoint (default: the address it listens on), e.g. http://edgebus-eu:8700."
    ),
    no_replicate: bool = typer.Option(
        False, "--no-replicate", help="Materialize only; copy nothing from other regions."
    ),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Consume edgebus.<region>.events into the region's store, copy in the events
    other regions place here, and answer reads, until Ctrl-C / SIGTERM."""
    as_json = json_mode(ctx, as_json)
    try:
        asyncio.run(_run(load_cli_config(config), region, store, listen, advertise,
                         not no_replicate, as_json))
    except EdgebusError as e:
        raise fail(as_json, e) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


async def _run(
    config: EdgeConfig,
    region: str,
    store: str | None,
    listen: str,
    advertise: str | None,
    replicate: bool,
    as_json: bool,
) -> None:
    from edgebus.region.service import RegionService

    service = RegionService(region, config, store=store, listen=listen, advertise=advertise,
                            replicate=replicate)
    await service.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    emit(as_json, {"ok": True, "event": "started", "region": region, "url": service.url,
                   "store": service.store.url},
         lambda d: err_console.print(
             f"region [bold]{region}[/] up: store {d['store']}, query {d['url']} "
             "(Ctrl-C to stop)", highlight=False))
    waiter = asyncio.ensure_future(service.wait())
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        stopper.cancel()
        await service.stop()
    if waiter.done() and not waiter.cancelled():
        failure = waiter.exception()
        if failure is not None:
            raise failure
