"""Which Kafka cluster serves each region.

Resolution, first match wins: ``kafka.clusters[region]`` in the edge_config, then
``kafka.bootstrap``, then ``EDGEBUS_BOOTSTRAP``, then the clusters that
``edgebus kafka up`` recorded, then ``127.0.0.1:9092``.

What ``edgebus kafka up`` recorded is read from ``<state dir>/state.json`` (the local
launcher, :mod:`edgebus.localkafka`, writes it; this module only reads the two fields
it needs, ``regions`` and each cluster's ``pid``), so the library never imports the
launcher.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from edgebus.config import EdgeConfig, default_state_dir
from edgebus.errors import LauncherError

__all__ = [
    "ENV_BOOTSTRAP",
    "FALLBACK_BOOTSTRAP",
    "STATE_FILE",
    "read_state_file",
    "recorded_regions",
    "resolve_clusters",
    "state_file_error",
]

ENV_BOOTSTRAP = "EDGEBUS_BOOTSTRAP"
FALLBACK_BOOTSTRAP = "127.0.0.1:9092"
#: the local launcher's record of what it runs, in the state directory
STATE_FILE = "state.json"


def resolve_clusters(config: EdgeConfig) -> dict[str, str]:
    """A bootstrap address for every configured region."""
    shared = config.kafka.bootstrap or os.environ.get(ENV_BOOTSTRAP) or None
    recorded = None if shared else recorded_regions()
    out: dict[str, str] = {}
    for region in config.regions:
        if region in config.kafka.clusters:
            out[region] = config.kafka.clusters[region]
        elif shared:
            out[region] = shared
        elif recorded:
            # a region the launcher did not map shares the first recorded cluster
            out[region] = recorded.get(region) or next(iter(recorded.values()))
        else:
            out[region] = FALLBACK_BOOTSTRAP
    return out


def recorded_regions(state_dir: Path | None = None) -> dict[str, str] | None:
    """region -> bootstrap of the brokers ``edgebus kafka up`` runs, or None.

    None when there is no state file in ``state_dir`` (default ``$EDGEBUS_STATE_DIR``
    or ``~/.local/state/edgebus``), or when ``edgebus kafka down`` stopped them. A
    broker that crashed is still listed: connecting to it gives the caller's error.
    """
    recorded = read_state_file(state_dir)
    if recorded is None:
        return None
    path, data = recorded
    try:
        running = any(c.get("pid") is not None for c in data["clusters"])
        regions = {str(r): str(b) for r, b in data["regions"].items()}
    except (KeyError, TypeError, AttributeError) as e:
        raise state_file_error(path, e) from e
    return regions if running and regions else None


def read_state_file(state_dir: Path | None = None) -> tuple[Path, dict[str, Any]] | None:
    """The path and JSON content of the launcher's state file in ``state_dir`` (default
    :func:`~edgebus.config.default_state_dir`), or None when there is none."""
    path = (state_dir if state_dir is not None else default_state_dir()) / STATE_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise LauncherError(
            f"The launcher state {path} cannot be read ({e}). Stop any broker it started by "
            f"hand (see the pids in it) and remove the file, or run `edgebus kafka down --wipe`."
        ) from e
    if not isinstance(data, dict):
        raise state_file_error(path, TypeError(f"a JSON {type(data).__name__}, not an object"))
    return path, data


def state_file_error(path: Path, error: BaseException) -> LauncherError:
    """The error for a state file that parses but does not hold what it should."""
    return LauncherError(
        f"The launcher state {path} is not in the expected form ({error!r}). Stop any broker "
        "it started by hand and remove the file, or run `edgebus kafka down --wipe`."
    )
