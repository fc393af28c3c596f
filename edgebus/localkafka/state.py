"""What the local Kafka launcher records: ``state.json`` and its value types.

``up`` writes it, ``status`` and ``down`` read it, and so does the library
(:func:`edgebus.kafka.clusters.recorded_regions` reads its ``regions`` and each
cluster's ``pid``, and :func:`edgebus.kafka.clusters.recorded_security` each
cluster's ``security``), so its form is an interface: :meth:`LauncherState.to_json`
is the file, and :meth:`LauncherState.from_json` still reads files without
``region_clusters`` (it derives them from ``regions``) or without the security
fields (a plaintext layout).

A secure layout (``up --secure``) records, per cluster, the client settings in the
shape of the config's ``kafka.security`` section (paths, never a secret)::

    "security": {"protocol": "SASL_SSL", "ca_file": "<state>/tls/ca.pem",
                 "sasl_mechanism": "SCRAM-SHA-512", "username": "admin",
                 "password_file": "<state>/secrets/admin.password"}

and, at the top, ``"secure": true`` and ``"principals"``: every SCRAM user and its
password file (``region-<R>``, ``coordinator``, ``writer``, ``admin``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edgebus.kafka.clusters import STATE_FILE, read_state_file, state_file_error
from edgebus.localkafka.processes import HOST

__all__ = [
    "STATE_SCHEMA",
    "ClusterRecord",
    "LauncherState",
    "read_state",
    "remove_state",
    "timestamp",
    "write_state",
]

#: the ``schema`` field of ``state.json``
STATE_SCHEMA = 1


def timestamp() -> str:
    """Now, in UTC, as ``state.json`` and the broker logs write it (ISO 8601, seconds)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


# --------------------------------------------------------------------------- value types


@dataclass(frozen=True)
class ClusterRecord:
    """One single-node KRaft cluster as recorded in ``state.json``."""

    index: int
    cluster_id: str
    pid: int | None
    port: int
    controller_port: int
    data_dir: str
    log_file: str
    config_file: str
    #: client settings of a secure cluster (the ``kafka.security`` shape); None: plaintext
    security: Mapping[str, str] | None = field(default=None, hash=False)

    @property
    def bootstrap(self) -> str:
        """``host:port`` a Kafka client connects to."""
        return f"{HOST}:{self.port}"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the ``state.json`` form)."""
        return {
            "index": self.index,
            "cluster_id": self.cluster_id,
            "pid": self.pid,
            "port": self.port,
            "controller_port": self.controller_port,
            "data_dir": self.data_dir,
            "log_file": self.log_file,
            "config_file": self.config_file,
            "bootstrap": self.bootstrap,
            "security": dict(self.security) if self.security is not None else None,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ClusterRecord:
        """Read the ``state.json`` form."""
        pid = data.get("pid")
        security = data.get("security")
        return cls(
            index=int(data["index"]),
            cluster_id=str(data["cluster_id"]),
            pid=int(pid) if pid is not None else None,
            port=int(data["port"]),
            controller_port=int(data["controller_port"]),
            data_dir=str(data["data_dir"]),
            log_file=str(data["log_file"]),
            config_file=str(data["config_file"]),
            security=(
                {str(k): str(v) for k, v in security.items()} if security is not None else None
            ),
        )


@dataclass(frozen=True)
class LauncherState:
    """Everything ``up`` started, as written to ``state.json``."""

    kafka_version: str
    clusters: tuple[ClusterRecord, ...]
    #: region -> index of the cluster that hosts it
    region_clusters: Mapping[str, int]
    broker_config: Mapping[str, str] = field(default_factory=dict)
    port_base: int | None = None
    started_at: str = ""
    #: SASL_SSL listeners, TLS, SCRAM users and the authorizer (``up --secure``)
    secure: bool = False
    #: a secure layout's SCRAM users -> their password files
    principals: Mapping[str, str] = field(default_factory=dict)

    @property
    def regions(self) -> dict[str, str]:
        """region -> bootstrap of the cluster that hosts it."""
        by_index = {c.index: c.bootstrap for c in self.clusters}
        return {r: by_index[i] for r, i in self.region_clusters.items()}

    def regions_of(self, index: int) -> list[str]:
        """The regions hosted by cluster ``index``."""
        return [r for r, i in self.region_clusters.items() if i == index]

    @property
    def running(self) -> bool:
        """True when ``down`` has not marked the clusters stopped."""
        return any(c.pid is not None for c in self.clusters)

    def stopped(self) -> LauncherState:
        """This state with every cluster marked stopped (no pid), as ``down`` records it."""
        return replace(self, clusters=tuple(replace(c, pid=None) for c in self.clusters))

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the ``state.json`` form)."""
        return {
            "schema": STATE_SCHEMA,
            "kafka_version": self.kafka_version,
            "started_at": self.started_at,
            "port_base": self.port_base,
            "broker_config": dict(self.broker_config),
            "clusters": [c.to_json() for c in self.clusters],
            "region_clusters": dict(self.region_clusters),
            "regions": self.regions,
            "secure": self.secure,
            "principals": dict(self.principals),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LauncherState:
        """Read the ``state.json`` form."""
        clusters = tuple(ClusterRecord.from_json(c) for c in data["clusters"])
        region_clusters = data.get("region_clusters")
        if region_clusters is None:  # derive from the bootstrap map
            by_bootstrap = {c.bootstrap: c.index for c in clusters}
            region_clusters = {r: by_bootstrap[b] for r, b in data["regions"].items()}
        port_base = data.get("port_base")
        return cls(
            kafka_version=str(data["kafka_version"]),
            clusters=clusters,
            region_clusters={str(r): int(i) for r, i in region_clusters.items()},
            broker_config={str(k): str(v) for k, v in (data.get("broker_config") or {}).items()},
            port_base=int(port_base) if port_base is not None else None,
            started_at=str(data.get("started_at", "")),
            secure=bool(data.get("secure", False)),
            principals={str(k): str(v) for k, v in (data.get("principals") or {}).items()},
        )


# --------------------------------------------------------------------------- the file


def read_state(directory: Path | None = None) -> LauncherState | None:
    """The launcher state recorded in ``directory`` (default ``$EDGEBUS_STATE_DIR``), or None."""
    recorded = read_state_file(directory)
    if recorded is None:
        return None
    path, data = recorded
    try:
        return LauncherState.from_json(data)
    except (KeyError, TypeError, ValueError) as e:
        raise state_file_error(path, e) from e


def write_state(directory: Path, state: LauncherState) -> None:
    """Replace ``state.json`` in ``directory`` atomically (a reader sees the old or the new)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / STATE_FILE
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(state.to_json(), indent=2) + "\n")
    os.replace(tmp, path)


def remove_state(directory: Path) -> None:
    """Delete ``state.json`` in ``directory``, if there is one."""
    (directory / STATE_FILE).unlink(missing_ok=True)
