"""Loading an ``edge_config``: from an object, a dict, a JSON or TOML file
(``--config PATH`` or ``EDGEBUS_CONFIG``), or nothing at all (zero-config)."""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgebus.config.edge import MAX_CONFIG_DEPTH, EdgeConfig, _check_depth
from edgebus.errors import ConfigError

__all__ = ["ENV_CONFIG", "MAX_CONFIG_BYTES", "load_config"]

ENV_CONFIG = "EDGEBUS_CONFIG"
#: the largest config file read
MAX_CONFIG_BYTES = 16 * 1024 * 1024


def load_config(source: EdgeConfig | Mapping[str, Any] | str | Path | None = None) -> EdgeConfig:
    """An EdgeConfig from an object, a dict, a JSON/TOML file, EDGEBUS_CONFIG, or defaults."""
    if isinstance(source, EdgeConfig):
        return source
    if isinstance(source, Mapping):
        return EdgeConfig.from_mapping(source)
    path = source if source is not None else os.environ.get(ENV_CONFIG) or None
    if path is None:
        return EdgeConfig()
    return EdgeConfig.from_mapping(_read_file(Path(path)))


def _read_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise ConfigError(
            f"Cannot read config file {path}: {e.strerror or e}. Pass --config with an "
            f"existing JSON or TOML file, or unset {ENV_CONFIG}."
        ) from e
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"Config file {path} is larger than {MAX_CONFIG_BYTES // (1024 * 1024)} MiB: "
            "not an edge_config; pass the right file"
        )
    kind = "TOML" if path.suffix.lower() == ".toml" else "JSON"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"Config file {path} is not UTF-8 text: {e}") from None
    try:
        data: Any = tomllib.loads(text) if kind == "TOML" else json.loads(text)
    except RecursionError:
        raise ConfigError(
            f"Config file {path} is nested deeper than {MAX_CONFIG_DEPTH} levels (objects "
            "and arrays within each other): an edge_config needs a few; fix the file"
        ) from None
    except ValueError as e:  # JSONDecodeError, TOMLDecodeError, an over-long number
        raise ConfigError(f"Config file {path} is not valid {kind}: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"Config file {path} must hold an object (the edge_config)")
    _check_depth(data, f"Config file {path}")
    return data
