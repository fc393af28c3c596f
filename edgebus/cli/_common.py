"""Options every command shares."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path
from typing import Any

import typer

from edgebus.config import EdgeConfig, load_config
from edgebus.errors import UnknownRegion

__all__ = [
    "ConfigOption",
    "JsonOption",
    "command_group",
    "load_cli_config",
    "region_option",
    "serve_until_signal",
    "store_dir_option",
]

ConfigOption: Any = typer.Option(
    None,
    "--config",
    help="JSON or TOML file holding the edge_config (default: $EDGEBUS_CONFIG, else zero-config).",
    dir_okay=False,
)
JsonOption: Any = typer.Option(False, "--json", help="Print JSON for programs.")


def command_group(help: str) -> typer.Typer:
    """A command group (``edgebus <group> <command>``): called without a command, it
    prints its help."""
    return typer.Typer(help=help, no_args_is_help=True)


def region_option(help: str | None = None) -> Any:
    """``--region``, required: the region a command is about."""
    return typer.Option(..., "--region", help=help)


def store_dir_option(what: str) -> Any:
    """A benchmark's ``--store-dir``: ``Where <what> (default: temp).``"""
    return typer.Option(None, "--store-dir", file_okay=False, help=f"Where {what} (default: temp).")


def load_cli_config(path: Path | None, *regions: str) -> EdgeConfig:
    """The edge_config a command runs with; each of ``regions`` must be one of its
    regions (UnknownRegion, with the nearest name, otherwise)."""
    config = load_config(path)
    for region in regions:
        if region not in config.regions:
            raise UnknownRegion(region, config.regions)
    return config


async def serve_until_signal(service: Any) -> None:
    """Run a started service (``wait()`` / ``stop()``) until SIGINT / SIGTERM or until it
    fails; stop it either way and re-raise its failure."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
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
