"""Run real Apache Kafka brokers (KRaft mode) on this machine, without Docker.

Each cluster is one JVM that is both controller and broker, listening on 127.0.0.1
only, run from the jars :mod:`edgebus.localkafka.artifacts` fetches. What runs is
written to ``$EDGEBUS_STATE_DIR/state.json``, so ``status`` and ``down`` (and
:func:`edgebus.kafka.clusters.recorded_regions`, which the library uses to find the
brokers) work from any later process. :mod:`edgebus.localkafka.processes` finds, stops
and places (ports) the broker processes.

This module is an adapter: together with those two it is the only code that starts
JVMs, and it turns every failure into an edgebus error whose message says what to do
(:class:`BrokerExited`, :class:`LauncherError`, :class:`InvalidInput`; the helpers
raise :class:`JavaMissing`, :class:`MavenMissing`, :class:`ArtifactResolutionFailed`
and :class:`PortInUse`).

Layout of the state directory::

    state.json                   what runs (see LauncherState)
    kafka.lock                   serializes up/down
    kafka/log4j2.yaml            the brokers' logging configuration
    kafka/cluster-<i>/format.properties   base config storage is formatted with
    kafka/cluster-<i>/server.properties   base config + --broker-config overrides
    kafka/cluster-<i>/data/      the cluster's log.dirs
    kafka/cluster-<i>/broker.log the broker's stdout and stderr
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from edgebus.config import KafkaConfig, default_state_dir
from edgebus.errors import BrokerExited, InvalidInput, LauncherError
from edgebus.kafka.clients import admin_client
from edgebus.kafka.clusters import STATE_FILE
from edgebus.localkafka.artifacts import (
    DEFAULT_KAFKA_VERSION,
    HEAP_MAX,
    HEAP_MIN,
    FetchResult,
    JavaInfo,
    _check_version,
    _jvm_flags,
    _log4j_config,
    default_cache_dir,
    fetch,
    find_java,
    kafka_java_command,
)
from edgebus.localkafka.processes import (
    HOST,
    LOG_TAIL_LINES,
    STOP_GRACE_S,
    _file_lock,
    _free_ports,
    _is_our_broker,
    _log_tail,
    _port_is_free,
    _ports_from_base,
    _stop_pids,
)

__all__ = [
    "DEFAULT_KAFKA_VERSION",
    "DEFAULT_REGIONS",
    "ClusterRecord",
    "ClusterStatus",
    "DownResult",
    "FetchResult",
    "JavaInfo",
    "LauncherState",
    "StatusReport",
    "UpResult",
    "default_cache_dir",
    "default_state_dir",
    "down",
    "fetch",
    "find_java",
    "kafka_java_command",
    "map_regions",
    "read_state",
    "status",
    "up",
]

#: the regions a zero-config edgebus uses; region i lives on cluster i % clusters
DEFAULT_REGIONS: tuple[str, ...] = ("us-east-1", "eu-west-1", "ap-south-1")

MAX_CLUSTERS = 9
STATE_SCHEMA = 1

_REGION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_CONFIG_KEY_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")

#: settings the launcher manages itself; ``--broker-config`` may not change them
MANAGED_KEYS = frozenset(
    {
        "process.roles",
        "node.id",
        "controller.quorum.voters",
        "controller.quorum.bootstrap.servers",
        "listeners",
        "advertised.listeners",
        "controller.listener.names",
        "listener.security.protocol.map",
        "inter.broker.listener.name",
        "log.dirs",
        "log.dir",
        "metadata.log.dir",
    }
)

T = TypeVar("T")


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
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ClusterRecord:
        """Read the ``state.json`` form."""
        pid = data.get("pid")
        return cls(
            index=int(data["index"]),
            cluster_id=str(data["cluster_id"]),
            pid=int(pid) if pid is not None else None,
            port=int(data["port"]),
            controller_port=int(data["controller_port"]),
            data_dir=str(data["data_dir"]),
            log_file=str(data["log_file"]),
            config_file=str(data["config_file"]),
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
        )


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

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
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
                {**c.to_json(), "regions": self.state.regions_of(c.index), "state": "running"}
                for c in self.state.clusters
            ],
            "regions": self.state.regions,
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
            "clusters": [c.to_json() for c in self.clusters],
            "regions": self.state.regions if self.state else {},
        }


@dataclass(frozen=True)
class DownResult:
    """The pids ``down`` stopped (``killed``: the ones that needed SIGKILL)."""

    state_dir: Path
    stopped: tuple[int, ...]
    killed: tuple[int, ...]
    wiped: bool
    had_state: bool

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "ok": True,
            "state_dir": str(self.state_dir),
            "had_state": self.had_state,
            "stopped": list(self.stopped),
            "killed": list(self.killed),
            "wiped": self.wiped,
        }


# --------------------------------------------------------------------------- input checks


def map_regions(regions: Sequence[str], clusters: int) -> dict[str, int]:
    """Assign region i to cluster ``i % clusters``; reject bad names and idle clusters."""
    if clusters < 1 or clusters > MAX_CLUSTERS:
        raise InvalidInput(f"--clusters must be between 1 and {MAX_CLUSTERS}, got {clusters}.")
    names = [r.strip() for r in regions]
    if not names or any(not r for r in names):
        raise InvalidInput("--regions needs at least one non-empty region name, e.g. us-east-1.")
    for r in names:
        if not _REGION_RE.match(r):
            raise InvalidInput(
                f"Region name {r!r} is not valid: use letters, digits, '-' and '_' "
                "(it becomes part of Kafka topic names such as edgebus.<region>.events)."
            )
    duplicates = sorted({r for r in names if names.count(r) > 1})
    if duplicates:
        raise InvalidInput(f"Region(s) listed twice in --regions: {', '.join(duplicates)}.")
    if len(names) < clusters:
        raise InvalidInput(
            f"{clusters} clusters need at least {clusters} regions (each cluster hosts one or "
            f"more), but only {len(names)} were given: {', '.join(names)}. "
            "Pass more with --regions or fewer --clusters."
        )
    return {r: i % clusters for i, r in enumerate(names)}


def _check_broker_config(overrides: Mapping[str, str]) -> dict[str, str]:
    checked: dict[str, str] = {}
    for key, value in overrides.items():
        if not _CONFIG_KEY_RE.match(key):
            raise InvalidInput(
                f"{key!r} is not a Kafka broker setting name (like log.retention.ms)."
            )
        if key in MANAGED_KEYS:
            raise InvalidInput(
                f"{key} is set by the launcher and cannot be overridden; use --port to choose "
                "ports and EDGEBUS_STATE_DIR to choose where data lives."
            )
        if "\n" in value or "\r" in value:
            raise InvalidInput(f"The value of {key} must be on one line.")
        checked[key] = value
    return checked


# --------------------------------------------------------------------------- state file


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def read_state(directory: Path | None = None) -> LauncherState | None:
    """The launcher state recorded in ``directory`` (default :func:`state_dir`), or None."""
    path = (directory or default_state_dir()) / STATE_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise LauncherError(
            f"The launcher state {path} cannot be read ({e}). Stop any broker it started by "
            f"hand (see the pids in it) and remove the file, or run `edgebus kafka down --wipe`."
        ) from e
    try:
        return LauncherState.from_json(data)
    except (KeyError, TypeError, ValueError) as e:
        raise LauncherError(
            f"The launcher state {path} is not in the expected form ({e!r}). Stop any broker "
            "it started by hand and remove the file, or run `edgebus kafka down --wipe`."
        ) from e


def _write_state(directory: Path, state: LauncherState) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / STATE_FILE
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(state.to_json(), indent=2) + "\n")
    os.replace(tmp, path)


# --------------------------------------------------------------------------- broker config


def _new_cluster_id() -> str:
    """A Kafka cluster id: a random UUID, base64url without padding (as StorageTool makes)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):  # Kafka avoids ids that look like a CLI flag
            return text


def _base_properties(rec: ClusterRecord) -> dict[str, str]:
    return {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{HOST}:{rec.controller_port}",
        "listeners": f"PLAINTEXT://{HOST}:{rec.port},CONTROLLER://{HOST}:{rec.controller_port}",
        "advertised.listeners": f"PLAINTEXT://{HOST}:{rec.port}",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": rec.data_dir,
        "num.partitions": "1",
        # edgebus creates its topics itself, with a fixed partition count
        "auto.create.topics.enable": "false",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "5",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "5",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "min.insync.replicas": "1",
        "group.initial.rebalance.delay.ms": "0",
    }


def _write_properties(path: Path, props: Mapping[str, str], note: str) -> None:
    lines = [f"# {note}"] + [f"{k}={v}" for k, v in props.items()]
    path.write_text("\n".join(lines) + "\n")


# --------------------------------------------------------------------------- async plumbing


def _run_sync(factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion on a private event loop in a worker thread.

    The thread keeps this sync API usable from code that runs an event loop itself
    (and leaves the caller's loop and loop policy alone); it is a daemon so Ctrl-C in
    the main thread can clean up and exit at once.
    """
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(_as_coro(factory))
        except BaseException as e:  # re-raised in the caller's thread
            box["error"] = e

    thread = threading.Thread(target=target, name="edgebus-kafka-launcher", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


async def _as_coro(factory: Callable[[], Awaitable[T]]) -> T:
    return await factory()


async def _describe(bootstrap: str, timeout_s: float) -> dict[str, Any]:
    """One metadata call to a broker of ours (plaintext on loopback); raises on any
    failure."""
    async with (
        asyncio.timeout(timeout_s + 1),
        admin_client(KafkaConfig(), bootstrap, client_id="edgebus-launcher",
                     timeout_s=max(1.0, timeout_s)) as admin,
    ):
        info: dict[str, Any] = await admin.describe_cluster()
        return info


async def _metadata_ok(rec: ClusterRecord, timeout_s: float = 3.0) -> tuple[bool, str]:
    try:
        info = await _describe(rec.bootstrap, timeout_s)
    except Exception as e:  # any failure means "does not answer"
        return False, f"metadata call failed: {type(e).__name__}: {e}".strip()
    if info.get("cluster_id") != rec.cluster_id:
        return False, (
            f"{rec.bootstrap} answers with cluster id {info.get('cluster_id')!r}, "
            f"not the recorded {rec.cluster_id!r}: another broker took the port"
        )
    if not info.get("brokers"):
        return False, "the cluster reports no live broker yet"
    return True, ""


async def _port_open(port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), 1.0)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()
    return True


async def _wait_ready(
    rec: ClusterRecord, proc: subprocess.Popen[bytes], deadline: float, timeout_s: float
) -> None:
    """Until a metadata call succeeds; BrokerExited if the JVM exits meanwhile."""
    detail = "the client port never opened"
    while True:
        code = proc.poll()
        if code is not None:
            raise BrokerExited(
                f"Kafka cluster {rec.index} (port {rec.port}) exited with code {code} while "
                f"starting. Last lines of {rec.log_file}:\n{_log_tail(Path(rec.log_file))}\n"
                "Fix the cause shown above (a bad --broker-config value, a full disk, a port "
                "taken meanwhile), then run `edgebus kafka up` again; if its stored data is "
                "damaged, `edgebus kafka down --wipe` first."
            )
        if time.monotonic() > deadline:
            raise LauncherError(
                f"Kafka cluster {rec.index} ({rec.bootstrap}) did not answer a metadata call "
                f"within {timeout_s:.0f} s ({detail}). Last lines of {rec.log_file}:\n"
                f"{_log_tail(Path(rec.log_file))}\nOn a slow machine pass a longer --timeout."
            )
        if await _port_open(rec.port):
            ok, why = await _metadata_ok(rec, timeout_s=3.0)
            if ok:
                return
            detail = why
        await asyncio.sleep(0.25)


async def _format_storage(
    java: str,
    libs: Path,
    log4j: Path,
    rec: ClusterRecord,
    format_config: Path,
    archive: Path | None,
) -> None:
    proc = await asyncio.create_subprocess_exec(
        java, HEAP_MAX, *_jvm_flags(archive, short_lived=True),
        "-cp", f"{libs}/*", f"-Dlog4j2.configurationFile={log4j}",
        "kafka.tools.StorageTool", "format", "--ignore-formatted",
        "-t", rec.cluster_id, "-c", str(format_config),
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        cwd=Path(rec.data_dir).parent,
    )  # fmt: skip
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        said = out.decode(errors="replace").strip().splitlines()
        raise LauncherError(
            f"Formatting the storage of Kafka cluster {rec.index} in {rec.data_dir} failed "
            f"(exit code {proc.returncode}). The tool said:\n"
            + "\n".join(said[-LOG_TAIL_LINES:])
            + "\nRun `edgebus kafka down --wipe` to start from empty storage, then `up` again."
        )


def _start_broker(
    java: str,
    libs: Path,
    log4j: Path,
    rec: ClusterRecord,
    archive: Path | None,
    *,
    detach: bool = True,
    extra: Sequence[str] = (),
) -> subprocess.Popen[bytes]:
    cluster_home = Path(rec.config_file).parent
    with open(rec.log_file, "ab") as log:
        log.write(f"\n===== edgebus kafka up: starting at {_now()} =====\n".encode())
        log.flush()
        return subprocess.Popen(
            [
                java, HEAP_MAX, HEAP_MIN, "-Djava.awt.headless=true",
                *_jvm_flags(archive), *extra,
                "-cp", f"{libs}/*", f"-Dlog4j2.configurationFile={log4j}",
                "kafka.Kafka", rec.config_file,
            ],
            cwd=cluster_home,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            # detached: outlives the CLI, and Ctrl-C in the shell does not reach it
            start_new_session=detach,
            close_fds=True,
        )  # fmt: skip


# --------------------------------------------------------------------------- up / status / down


def _same_layout(
    state: LauncherState,
    version: str,
    region_clusters: Mapping[str, int],
    clusters: int,
    port_base: int | None,
    broker_config: Mapping[str, str],
) -> bool:
    return (
        state.kafka_version == version
        and len(state.clusters) == clusters
        and dict(state.region_clusters) == dict(region_clusters)
        and dict(state.broker_config) == dict(broker_config)
        and (port_base is None or port_base == state.port_base)
    )


def _describe_layout(state: LauncherState) -> str:
    clusters = ", ".join(
        f"cluster {c.index} on {c.bootstrap} ({', '.join(state.regions_of(c.index))})"
        for c in state.clusters
    )
    extra = f", broker config {dict(state.broker_config)}" if state.broker_config else ""
    return f"Kafka {state.kafka_version}: {clusters}{extra}"


def up(
    clusters: int = 1,
    regions: Sequence[str] = DEFAULT_REGIONS,
    *,
    kafka_version: str = DEFAULT_KAFKA_VERSION,
    port: int | None = None,
    timeout_s: float = 90.0,
    broker_config: Mapping[str, str] | None = None,
    state: Path | None = None,
) -> UpResult:
    """Start ``clusters`` single-node KRaft clusters and map ``regions`` onto them.

    Region i goes to cluster ``i % clusters``. With ``port`` cluster i listens on
    ``port + 2i`` (clients) and ``port + 2i + 1`` (controller); otherwise free ports
    are picked. ``broker_config`` adds broker settings (``{"log.retention.ms": "..."}``).

    Idempotent: when the same layout already runs and answers, nothing is started
    (``started`` is False). A different running layout is an error (run ``down``
    first). Stale state (no recorded pid alive) never blocks a start: the same layout
    restarts on its kept data and cluster ids (after ``down`` or a crash; ``down
    --wipe`` starts empty), another layout replaces it with new, empty clusters.
    Brokers are detached: they keep running after this process exits.
    """
    began = time.monotonic()
    _check_version(kafka_version)
    region_clusters = map_regions(regions, clusters)
    overrides = _check_broker_config(broker_config or {})
    if timeout_s <= 0:
        raise InvalidInput(f"--timeout must be positive, got {timeout_s}.")
    directory = (state or default_state_dir()).absolute()
    with _file_lock(directory / "kafka.lock", timeout_s + 60, "edgebus kafka up/down"):
        return _up_locked(
            directory, clusters, region_clusters, kafka_version, port, timeout_s, overrides,
            began,
        )  # fmt: skip


def _up_locked(
    directory: Path,
    clusters: int,
    region_clusters: dict[str, int],
    version: str,
    port_base: int | None,
    timeout_s: float,
    overrides: dict[str, str],
    began: float,
) -> UpResult:
    previous = read_state(directory)
    reuse: LauncherState | None = None
    if previous is not None:
        alive = [c for c in previous.clusters if _is_our_broker(c.pid, c.config_file)]
        same = _same_layout(previous, version, region_clusters, clusters, port_base, overrides)
        if alive:
            if not same:
                raise LauncherError(
                    f"A different local Kafka layout is running ({_describe_layout(previous)}; "
                    f"state in {directory}). Run `edgebus kafka down` first (add --wipe to also "
                    "delete its data), then `edgebus kafka up` with the new options."
                )
            checks = _run_sync(
                lambda: asyncio.gather(*(_metadata_ok(c) for c in previous.clusters))
            )
            bad = [
                f"cluster {c.index} ({c.bootstrap}): "
                + ("process not running" if c not in alive else why)
                for c, (ok, why) in zip(previous.clusters, checks, strict=True)
                if not (ok and c in alive)
            ]
            if not bad:
                return UpResult(
                    previous, directory, started=False, downloaded=False, reused_data=True,
                    elapsed_s=time.monotonic() - began,
                )  # fmt: skip
            raise LauncherError(
                "The local Kafka is only partly healthy: "
                + "; ".join(bad)
                + ". See the log files (`edgebus kafka status`), then run `edgebus kafka down` "
                "and `edgebus kafka up` again."
            )
        if same:
            # stopped by `down` (data kept) or died (crash, reboot): restart on the data,
            # as a real broker restart would; `down --wipe` is the way to start empty
            reuse = previous
        # else: a layout that is not running any more -> clean start, old data removed

    java = find_java().path
    fetched = fetch(version)
    kafka_home = directory / "kafka"
    log4j = _log4j_config(kafka_home)

    if port_base is not None:
        pairs = _ports_from_base(port_base, clusters)
    elif reuse is not None and all(
        _port_is_free(c.port) and _port_is_free(c.controller_port) for c in reuse.clusters
    ):
        pairs = [(c.port, c.controller_port) for c in reuse.clusters]
    else:
        flat = _free_ports(2 * clusters)
        pairs = [(flat[2 * i], flat[2 * i + 1]) for i in range(clusters)]

    if reuse is None and kafka_home.exists():
        for old in kafka_home.glob("cluster-*"):
            shutil.rmtree(old, ignore_errors=True)

    records: list[ClusterRecord] = []
    for i, (client_port, controller_port) in enumerate(pairs):
        home = kafka_home / f"cluster-{i}"
        (home / "data").mkdir(parents=True, exist_ok=True)
        records.append(
            ClusterRecord(
                index=i,
                cluster_id=reuse.clusters[i].cluster_id if reuse else _new_cluster_id(),
                pid=None,
                port=client_port,
                controller_port=controller_port,
                data_dir=str((home / "data").resolve()),
                log_file=str((home / "broker.log").resolve()),
                config_file=str((home / "server.properties").resolve()),
            )
        )
    for rec in records:
        base = _base_properties(rec)
        home = Path(rec.config_file).parent
        _write_properties(
            home / "format.properties", base, "written by edgebus kafka up; formats storage"
        )
        _write_properties(
            Path(rec.config_file), {**base, **overrides},
            "written by edgebus kafka up; the broker runs with it",
        )  # fmt: skip

    new_state = LauncherState(
        kafka_version=version,
        clusters=tuple(records),
        region_clusters=region_clusters,
        broker_config=overrides,
        port_base=port_base,
        started_at=_now(),
    )
    procs: list[subprocess.Popen[bytes]] = []
    try:
        _run_sync(
            lambda: asyncio.gather(
                *(
                    _format_storage(java, fetched.libs_dir, log4j, r,
                                    Path(r.config_file).parent / "format.properties",
                                    fetched.class_archive)
                    for r in records
                )
            )
        )  # fmt: skip
        for rec in records:
            procs.append(_start_broker(java, fetched.libs_dir, log4j, rec, fetched.class_archive))
        new_state = replace(
            new_state,
            clusters=tuple(replace(r, pid=p.pid) for r, p in zip(records, procs, strict=True)),
        )
        _write_state(directory, new_state)  # so `down` finds them even if we are killed now
        deadline = time.monotonic() + timeout_s
        _run_sync(lambda: _wait_all(new_state.clusters, procs, deadline, timeout_s))
    except BaseException:
        _stop_pids(new_state.clusters, grace_s=5.0)
        for p in procs:
            with contextlib.suppress(Exception):
                p.wait(timeout=1)
        if reuse is not None:
            _write_state(directory, replace(reuse, clusters=tuple(
                replace(c, pid=None) for c in reuse.clusters)))  # fmt: skip
        else:
            (directory / STATE_FILE).unlink(missing_ok=True)
        raise
    return UpResult(
        new_state, directory, started=True, downloaded=fetched.downloaded,
        reused_data=reuse is not None, elapsed_s=time.monotonic() - began,
        discarded_previous=previous is not None and reuse is None,
    )  # fmt: skip


async def _wait_all(
    records: Sequence[ClusterRecord],
    procs: Sequence[subprocess.Popen[bytes]],
    deadline: float,
    timeout_s: float,
) -> None:
    tasks = [
        asyncio.ensure_future(_wait_ready(r, p, deadline, timeout_s))
        for r, p in zip(records, procs, strict=True)
    ]
    try:
        done, _pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def status(state: Path | None = None) -> StatusReport:
    """Check every recorded cluster: is its pid alive, does it answer a metadata call?"""
    directory = (state or default_state_dir()).absolute()
    recorded = read_state(directory)
    if recorded is None:
        return StatusReport(directory, None, ())
    alive = [_is_our_broker(c.pid, c.config_file) for c in recorded.clusters]

    async def check() -> list[tuple[bool, str]]:
        async def one(c: ClusterRecord, is_alive: bool) -> tuple[bool, str]:
            if not is_alive:
                return False, ""
            return await _metadata_ok(c)

        return list(
            await asyncio.gather(
                *(one(c, a) for c, a in zip(recorded.clusters, alive, strict=True))
            )
        )

    checks = _run_sync(check)
    return StatusReport(
        directory,
        recorded,
        tuple(
            ClusterStatus(c, tuple(recorded.regions_of(c.index)), a, ok, why)
            for c, a, (ok, why) in zip(recorded.clusters, alive, checks, strict=True)
        ),
    )


def down(wipe: bool = False, *, state: Path | None = None) -> DownResult:
    """Stop exactly the recorded brokers; with ``wipe`` also delete their data and the state.

    A pid is signalled only if ``/proc/PID/cmdline`` shows it is the ``kafka.Kafka``
    started with this state's ``server.properties``, so a recycled pid is never killed.
    SIGTERM first, SIGKILL after about 20 s.
    """
    directory = (state or default_state_dir()).absolute()
    with _file_lock(directory / "kafka.lock", STOP_GRACE_S + 60, "edgebus kafka up/down"):
        recorded = read_state(directory)
        stopped: list[int] = []
        killed: list[int] = []
        if recorded is not None:
            stopped, killed = _stop_pids(recorded.clusters)
            if not wipe:
                _write_state(
                    directory,
                    replace(
                        recorded, clusters=tuple(replace(c, pid=None) for c in recorded.clusters)
                    ),
                )
        if wipe:
            shutil.rmtree(directory / "kafka", ignore_errors=True)
            (directory / STATE_FILE).unlink(missing_ok=True)
    return DownResult(directory, tuple(stopped), tuple(killed), wipe, recorded is not None)
