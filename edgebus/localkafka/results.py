"""What ``up``, ``status`` and ``down`` report; ``to_json`` is their ``--json`` output."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgebus.localkafka.credentials import SECRETS_DIR
from edgebus.localkafka.default_acls import PERMISSIVE_NOTE
from edgebus.localkafka.security import ADMIN_CLIENT_PROPERTIES, describe_security
from edgebus.localkafka.state import ClusterRecord, LauncherState

__all__ = ["ClusterStatus", "DownResult", "StatusReport", "UpResult"]


@dataclass(frozen=True)
class UpResult:
    """What ``up`` did: ``started`` is False when the same layout was already running."""

    state: LauncherState
    state_dir: Path
    started: bool
    downloaded: bool
    reused_data: bool
    elapsed_s: float
    #: stopped clusters of another layout whose data this start deleted
    discarded_previous: bool = False
    #: a new secure layout got the permissive default ACLs
    default_acls_applied: bool = False

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (with ``--secure``: where the credentials are, never them)."""
        return {
            "ok": True,
            "started": self.started,
            "downloaded": self.downloaded,
            "reused_data": self.reused_data,
            "discarded_previous": self.discarded_previous,
            "elapsed_s": round(self.elapsed_s, 2),
            "kafka_version": self.state.kafka_version,
            "state_dir": str(self.state_dir),
            "clusters": [
                {**c.to_json(), "regions": self.state.regions_of(c.index), "state": "running",
                 "security_label": describe_security(c.security)}
                for c in self.state.clusters
            ],
            "regions": self.state.regions,
            **self._security_json(),
        }

    def _security_json(self) -> dict[str, Any]:
        if not self.state.secure:
            return {"secure": False}
        return {
            "secure": True,
            "principals": dict(self.state.principals),
            "admin_client_properties": str(
                self.state_dir / SECRETS_DIR / ADMIN_CLIENT_PROPERTIES
            ),
            "default_acls_applied": self.default_acls_applied,
            "acls_note": PERMISSIVE_NOTE,
        }


@dataclass(frozen=True)
class ClusterStatus:
    """One recorded cluster, checked now."""

    record: ClusterRecord
    regions: tuple[str, ...]
    pid_alive: bool
    metadata_ok: bool
    detail: str = ""

    @property
    def state(self) -> str:
        """running | starting-or-unhealthy | stopped | dead (pid recorded but gone)."""
        if self.pid_alive:
            return "running" if self.metadata_ok else "unhealthy"
        return "stopped" if self.record.pid is None else "dead"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        out = {
            **self.record.to_json(),
            "regions": list(self.regions),
            "pid_alive": self.pid_alive,
            "metadata_ok": self.metadata_ok,
            "state": self.state,
            "security_label": describe_security(self.record.security),
        }
        if self.detail:
            out["detail"] = self.detail
        return out


@dataclass(frozen=True)
class StatusReport:
    """The recorded clusters (if any) and whether each one answers."""

    state_dir: Path
    state: LauncherState | None
    clusters: tuple[ClusterStatus, ...]

    @property
    def healthy(self) -> bool:
        """True when something is recorded and every cluster answers a metadata call."""
        return bool(self.clusters) and all(c.state == "running" for c in self.clusters)

    @property
    def message(self) -> str:
        """One sentence for people: what is the case and what to do."""
        if self.state is None:
            return "No local Kafka is recorded here; start one with `edgebus kafka up`."
        if self.healthy:
            return f"{len(self.clusters)} Kafka cluster(s) running."
        if not self.state.running:
            return "The local Kafka is stopped; start it again with `edgebus kafka up`."
        return (
            "Some clusters are not healthy; see their log files, then run "
            "`edgebus kafka down` and `edgebus kafka up`."
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "ok": self.healthy,
            "running": self.healthy,
            "message": self.message,
            "state_dir": str(self.state_dir),
            "kafka_version": self.state.kafka_version if self.state else None,
            "secure": bool(self.state and self.state.secure),
            "clusters": [c.to_json() for c in self.clusters],
            "regions": self.state.regions if self.state else {},
        }


@dataclass(frozen=True)
class DownResult:
    """The pids ``down`` stopped (``killed``: the ones that needed SIGKILL); with
    ``wiped``, the paths it deleted (``removed``) and those left in the state directory
    (``kept``), relative to it."""

    state_dir: Path
    stopped: tuple[int, ...]
    killed: tuple[int, ...]
    wiped: bool
    had_state: bool
    removed: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "ok": True,
            "state_dir": str(self.state_dir),
            "had_state": self.had_state,
            "stopped": list(self.stopped),
            "killed": list(self.killed),
            "wiped": self.wiped,
            "removed": list(self.removed),
            "kept": list(self.kept),
        }
