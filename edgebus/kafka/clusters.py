"""Which Kafka cluster serves each region.

Resolution, first match wins: ``kafka.clusters[region]`` in the edge_config, then
``kafka.bootstrap``, then ``EDGEBUS_BOOTSTRAP``, then the clusters that
``edgebus kafka up`` recorded, then ``127.0.0.1:9092``.

What ``edgebus kafka up`` recorded is read from ``<state dir>/state.json`` (the local
launcher, :mod:`edgebus.localkafka`, writes it; this module only reads the fields it
needs: ``regions``, each cluster's ``pid``, ``bootstrap`` and ``security``, and
``principals``), so the library never imports the launcher.

A cluster started by ``edgebus kafka up --secure`` takes SASL_SSL clients only; the
launcher records the client settings of each (in the shape of the config's
``kafka.security`` section, as the ``admin`` super user), and
:func:`recorded_security` hands them to the client module for a cluster the config
gives no explicit security settings for.
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
    "recorded_security",
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


def recorded_security(
    bootstrap: str, state_dir: Path | None = None, *, principal: str | None = None
) -> dict[str, str] | None:
    """The client security settings ``edgebus kafka up --secure`` recorded for the
    cluster at ``bootstrap``, or None (not a running secure cluster of the launcher).

    A dict in the shape of the config's ``kafka.security`` section, with paths and no
    secret: ``{"protocol": "SASL_SSL", "ca_file": ".../tls/ca.pem", "sasl_mechanism":
    "SCRAM-SHA-512", "username": "admin", "password_file": ".../secrets/admin.password"}``.
    ``bootstrap`` is matched by port on a loopback address (``127.0.0.1`` or
    ``localhost``); in a comma-separated list the first match counts. ``principal``
    (e.g. ``region-eu-west-1``, ``coordinator``, ``writer``) asks for that SCRAM user
    instead of ``admin``; one the launcher did not make is a :class:`LauncherError`.
    Like :func:`recorded_regions`, None once ``edgebus kafka down`` stopped the clusters.
    """
    recorded = read_state_file(state_dir)
    if recorded is None:
        return None
    path, data = recorded
    wanted = [a for a in (_loopback_port(b) for b in bootstrap.split(",")) if a is not None]
    try:
        for cluster in data["clusters"]:
            security = cluster.get("security")
            if not security or cluster.get("pid") is None:
                continue
            if _loopback_port(str(cluster["bootstrap"])) in wanted:
                settings = {str(k): str(v) for k, v in security.items()}
                return _as_principal(settings, data, principal, path)
    except (KeyError, TypeError, AttributeError) as e:
        raise state_file_error(path, e) from e
    return None


def _as_principal(
    settings: dict[str, str], data: dict[str, Any], principal: str | None, path: Path
) -> dict[str, str]:
    """``settings`` for the SCRAM user ``principal`` (None: as recorded)."""
    if principal is None:
        return settings
    principals = {str(k): str(v) for k, v in (data.get("principals") or {}).items()}
    if principal not in principals:
        raise LauncherError(
            f"The local Kafka recorded in {path} has no principal {principal!r}; it has "
            f"{', '.join(sorted(principals)) or 'none'}. Run `edgebus kafka up --secure` "
            "with the regions you use (after `edgebus kafka down --wipe`)."
        )
    return {**settings, "username": principal, "password_file": principals[principal]}


def _loopback_port(address: str) -> int | None:
    """The port of ``host:port`` when host is a loopback name the launcher listens on."""
    host, sep, port = address.strip().rpartition(":")
    if not sep or host not in ("127.0.0.1", "localhost") or not port.isdigit():
        return None
    return int(port)


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
