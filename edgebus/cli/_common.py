"""Options every command shares."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from edgebus.config import EdgeConfig, load_config
from edgebus.errors import UnknownRegion

__all__ = ["ConfigOption", "JsonOption", "load_cli_config"]

ConfigOption: Any = typer.Option(
    None,
    "--config",
    help="JSON or TOML file holding the edge_config (default: $EDGEBUS_CONFIG, else zero-config).",
    dir_okay=False,
)
JsonOption: Any = typer.Option(False, "--json", help="Print JSON for programs.")


def load_cli_config(path: Path | None, *regions: str) -> EdgeConfig:
    """The edge_config a command runs with; each of ``regions`` must be one of its
    regions (UnknownRegion, with the nearest name, otherwise)."""
    config = load_config(path)
    for region in regions:
        if region not in config.regions:
            raise UnknownRegion(region, config.regions)
    return config
