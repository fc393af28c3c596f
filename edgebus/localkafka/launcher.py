"""Run real Apache Kafka brokers (KRaft mode) on this machine, without Docker.

Each cluster is one JVM that is both controller and broker, listening on 127.0.0.1
only, run from the jars :func:`fetch` gets. What runs is written to
``$EDGEBUS_STATE_DIR/state.json`` (:mod:`edgebus.localkafka.state`), so ``status`` and
``down`` (and :func:`edgebus.kafka.clusters.recorded_regions`, which the library uses
to find the brokers) work from any later process.

This module is the launcher's API (:func:`up`, :func:`status`, :func:`down`, and the
names of the modules below, re-exported); it decides what to start and stop. The
modules it builds on, each importing only those listed before it:

    processes       finds, stops and places (ports) the broker processes; the lock
    artifacts       ``java``, Maven, the jars in the cache, the JVM command line
    state           ``state.json`` and its value types
    credentials     ``--secure``: the SCRAM principals, their passwords, private files
    tls             ``--secure``: the local CA and the brokers' certificate
    security        ``--secure``: listeners, TLS, SASL and authorizer settings, and
                    the client settings recorded for later commands
    broker          one broker: properties, storage format, JVM start, readiness
    default_acls    ``--secure``: the permissive default ACLs, applied once
    class_archive   the class-data archive, made by a training broker
    install         :func:`fetch` (jars, then archive) and :func:`kafka_java_command`
    results         what up, status and down report
    region_files    the region stores under the state directory, which ``--wipe``
                    removes too

Together they are the only code that starts JVMs, and they turn every failure into an
edgebus error whose message says what to do (:class:`BrokerExited`,
:class:`LauncherError`, :class:`InvalidInput`, :class:`JavaMissing`,
:class:`MavenMissing`, :class:`ArtifactResolutionFailed` and :class:`PortInUse`).

Layout of the state directory::

    state.json                   what runs (see LauncherState)
    kafka.lock                   serializes up/down
    kafka/log4j2.yaml            the brokers' logging configuration
    kafka/cluster-<i>/format.properties   base config storage is formatted with
    kafka/cluster-<i>/server.properties   base config + --broker-config overrides
    kafka/cluster-<i>/data/      the cluster's log.dirs
    kafka/cluster-<i>/broker.log the broker's stdout and stderr
    tls/                         --secure: ca.pem, broker.p12 (see :mod:`.tls`)
    secrets/                     --secure: <user>.password, admin-client.properties
                                 (see :mod:`.credentials`)

Files holding a secret (passwords, keys, the brokers' properties) are 0600, their
directories 0700.

Beside them, region services keep their stores there by default
(``regions/<R>/store.db``, ``regions/<R>/states-<R>.db``; see
:mod:`edgebus.localkafka.region_files`): ``down --wipe`` removes those as well, since
they describe the topics it deletes, and reports what it removed and what it kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from edgebus.config import default_state_dir
from edgebus.errors import InvalidInput, LauncherError
from edgebus.kafka.clusters import STATE_FILE
from edgebus.localkafka.artifacts import (
    DEFAULT_KAFKA_VERSION,
    FetchResult,
    JavaInfo,
    check_version,
    default_cache_dir,
    find_java,
    log4j_config,
)
from edgebus.localkafka.broker import (
    base_properties,
    check_broker_config,
    format_storage,
    metadata_ok,
    new_cluster_id,
    run_sync,
    start_broker,
    wait_all_ready,
    write_properties,
)
from edgebus.localkafka.credentials import SECRETS_DIR, passwords_intact
from edgebus.localkafka.default_acls import apply_default_acls
from edgebus.localkafka.install import fetch, kafka_java_command
from edgebus.localkafka.processes import (
    STOP_GRACE_S,
    file_lock,
    free_ports,
    is_our_broker,
    port_is_free,
    ports_from_base,
    stop_pids,
)
from edgebus.localkafka.region_files import leftovers, wipe_region_files
from edgebus.localkafka.results import ClusterStatus, DownResult, StatusReport, UpResult
from edgebus.localkafka.security import (
    SecureSetup,
    client_security,
    prepare_security,
    scram_arguments,
    secure_listener_properties,
)
from edgebus.localkafka.state import (
    ClusterRecord,
    LauncherState,
    read_state,
    remove_state,
    timestamp,
    write_state,
)
from edgebus.localkafka.tls import TLS_DIR

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

_REGION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


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


@dataclass(frozen=True)
class _Layout:
    """What ``up`` is asked to run, checked."""

    version: str
    clusters: int
    #: region -> index of the cluster that hosts it
    region_clusters: dict[str, int]
    #: None: any ports (free ones are picked)
    port_base: int | None
    broker_config: dict[str, str]
    #: SASL_SSL, TLS, SCRAM users and the authorizer
    secure: bool = False

    def is_recorded_in(self, state: LauncherState) -> bool:
        """True when ``state`` records this layout (on any ports, unless a port base is asked)."""
        return (
            state.kafka_version == self.version
            and len(state.clusters) == self.clusters
            and dict(state.region_clusters) == self.region_clusters
            and dict(state.broker_config) == self.broker_config
            and state.secure == self.secure
            and (self.port_base is None or self.port_base == state.port_base)
        )


def _describe_layout(state: LauncherState) -> str:
    clusters = ", ".join(
        f"cluster {c.index} on {c.bootstrap} ({', '.join(state.regions_of(c.index))})"
        for c in state.clusters
    )
    extra = f", broker config {dict(state.broker_config)}" if state.broker_config else ""
    security = ", secure (SASL_SSL)" if state.secure else ", plaintext"
    return f"Kafka {state.kafka_version}: {clusters}{security}{extra}"


# --------------------------------------------------------------------------- up


def up(
    clusters: int = 1,
    regions: Sequence[str] = DEFAULT_REGIONS,
    *,
    kafka_version: str = DEFAULT_KAFKA_VERSION,
    port: int | None = None,
    timeout_s: float = 90.0,
    broker_config: Mapping[str, str] | None = None,
    state: Path | None = None,
    secure: bool = False,
) -> UpResult:
    """Start ``clusters`` single-node KRaft clusters and map ``regions`` onto them.

    Region i goes to cluster ``i % clusters``. With ``port`` cluster i listens on
    ``port + 2i`` (clients) and ``port + 2i + 1`` (controller); otherwise free ports
    are picked. ``broker_config`` adds broker settings (``{"log.retention.ms": "..."}``).

    ``secure``: SASL_SSL client listeners with a local CA's certificate, SCRAM-SHA-512
    users (``admin``, ``region-<R>``, ``coordinator``, ``writer``) and the KRaft
    ``StandardAuthorizer`` with permissive default ACLs (:mod:`.security`,
    :mod:`.default_acls`); the client settings (as ``admin``) are recorded per cluster
    in ``state.json`` for later commands.

    Idempotent: when the same layout already runs and answers, nothing is started
    (``started`` is False). A different running layout is an error (run ``down``
    first). Stale state (no recorded pid alive) never blocks a start: the same layout
    restarts on its kept data and cluster ids (after ``down`` or a crash; ``down
    --wipe`` starts empty), another layout replaces it with new, empty clusters.
    Brokers are detached: they keep running after this process exits.
    """
    began = time.monotonic()
    check_version(kafka_version)
    region_clusters = map_regions(regions, clusters)
    overrides = check_broker_config(broker_config or {}, secure=secure)
    if timeout_s <= 0:
        raise InvalidInput(f"--timeout must be positive, got {timeout_s}.")
    layout = _Layout(kafka_version, clusters, region_clusters, port, overrides, secure)
    directory = (state or default_state_dir()).absolute()
    with file_lock(directory / "kafka.lock", timeout_s + 60, "edgebus kafka up/down"):
        return _up_locked(directory, layout, timeout_s, began)


def running(
    state: Path | None = None, timeout_s: float = 90.0, *, secure: bool = False
) -> UpResult | None:
    """The layout already running, reported as ``up`` reports it (``started`` False), or
    None when nothing recorded runs, or when what runs is not ``secure`` as asked
    (security is chosen, never adopted: ``up`` then refuses it as another layout).
    For ``up`` without layout options: whatever runs is the layout.
    :class:`LauncherError` when only part of it is healthy."""
    began = time.monotonic()
    directory = (state or default_state_dir()).absolute()
    with file_lock(directory / "kafka.lock", timeout_s + 60, "edgebus kafka up/down"):
        previous = read_state(directory)
        if previous is None or previous.secure != secure:
            return None
        recorded = _Layout(
            previous.kafka_version, len(previous.clusters), dict(previous.region_clusters),
            previous.port_base, dict(previous.broker_config), previous.secure,
        )
        if not _already_running(directory, previous, recorded):
            return None
        return _as_running(previous, directory, began)


def _as_running(previous: LauncherState, directory: Path, began: float) -> UpResult:
    """What ``up`` reports when the layout asked for already runs: nothing started."""
    return UpResult(
        previous, directory, started=False, downloaded=False, reused_data=True,
        elapsed_s=time.monotonic() - began,
    )  # fmt: skip


def _up_locked(directory: Path, layout: _Layout, timeout_s: float, began: float) -> UpResult:
    previous = read_state(directory)
    if previous is not None and _already_running(directory, previous, layout):
        return _as_running(previous, directory, began)
    # Nothing recorded runs. The same layout, stopped by `down` (data kept) or dead
    # (crash, reboot), restarts on its data as a real broker restart would (`down
    # --wipe` is the way to start empty); another layout gets a clean start, its old
    # data removed.
    # A secure restart also needs the passwords its SCRAM users were made from.
    reuse = (
        previous
        if previous is not None
        and layout.is_recorded_in(previous)
        and (not layout.secure or passwords_intact(directory, list(previous.principals)))
        else None
    )

    java = find_java().path
    fetched = fetch(layout.version)
    kafka_home = directory / "kafka"
    log4j = log4j_config(kafka_home)
    setup = prepare_security(directory, list(layout.region_clusters)) if layout.secure else None
    records = _prepare_clusters(kafka_home, _choose_ports(layout, reuse), reuse, layout, setup)
    new_state = LauncherState(
        kafka_version=layout.version,
        clusters=records,
        region_clusters=layout.region_clusters,
        broker_config=layout.broker_config,
        port_base=layout.port_base,
        started_at=timestamp(),
        secure=layout.secure,
        principals={u: str(p) for u, p in setup.passwords.items()} if setup else {},
    )
    running = _start_clusters(directory, new_state, reuse, java, fetched, log4j, timeout_s, setup)
    return UpResult(
        running, directory, started=True, downloaded=fetched.downloaded,
        reused_data=reuse is not None, elapsed_s=time.monotonic() - began,
        discarded_previous=previous is not None and reuse is None,
        default_acls_applied=setup is not None and reuse is None,
    )  # fmt: skip


def _already_running(directory: Path, previous: LauncherState, layout: _Layout) -> bool:
    """True when ``previous`` is ``layout`` and every one of its clusters runs and answers.

    False when none of its brokers runs. :class:`LauncherError` when a different layout
    runs, or only part of this one is healthy.
    """
    alive = [c for c in previous.clusters if is_our_broker(c.pid, c.config_file)]
    if not alive:
        return False
    if not layout.is_recorded_in(previous):
        raise LauncherError(
            f"A different local Kafka layout is running ({_describe_layout(previous)}; "
            f"state in {directory}). Run `edgebus kafka down` first (add --wipe to also "
            "delete its data), then `edgebus kafka up` with the new options."
        )
    checks = run_sync(lambda: asyncio.gather(*(metadata_ok(c) for c in previous.clusters)))
    bad = [
        f"cluster {c.index} ({c.bootstrap}): " + ("process not running" if c not in alive else why)
        for c, (ok, why) in zip(previous.clusters, checks, strict=True)
        if not (ok and c in alive)
    ]
    if not bad:
        return True
    raise LauncherError(
        "The local Kafka is only partly healthy: "
        + "; ".join(bad)
        + ". See the log files (`edgebus kafka status`), then run `edgebus kafka down` "
        "and `edgebus kafka up` again."
    )


def _choose_ports(layout: _Layout, reuse: LauncherState | None) -> list[tuple[int, int]]:
    """The (client, controller) ports of each cluster.

    From ``--port`` if given; else the ports a restarted layout had, if all are still
    free; else free ones.
    """
    if layout.port_base is not None:
        return ports_from_base(layout.port_base, layout.clusters)
    if reuse is not None and all(
        port_is_free(c.port) and port_is_free(c.controller_port) for c in reuse.clusters
    ):
        return [(c.port, c.controller_port) for c in reuse.clusters]
    flat = free_ports(2 * layout.clusters)
    return [(flat[2 * i], flat[2 * i + 1]) for i in range(layout.clusters)]


def _prepare_clusters(
    kafka_home: Path,
    ports: Sequence[tuple[int, int]],
    reuse: LauncherState | None,
    layout: _Layout,
    setup: SecureSetup | None,
) -> tuple[ClusterRecord, ...]:
    """The directories, records and properties files of the clusters to start.

    A restart (``reuse``) keeps each cluster's id and data; otherwise the directories
    of earlier clusters are deleted first and every cluster gets a new id. With
    ``setup`` (``--secure``) the listeners are secure and each record carries the
    client settings.
    """
    if reuse is None and kafka_home.exists():
        for old in kafka_home.glob("cluster-*"):
            shutil.rmtree(old, ignore_errors=True)
    records: list[ClusterRecord] = []
    for i, (client_port, controller_port) in enumerate(ports):
        home = kafka_home / f"cluster-{i}"
        (home / "data").mkdir(parents=True, exist_ok=True)
        records.append(
            ClusterRecord(
                index=i,
                cluster_id=reuse.clusters[i].cluster_id if reuse else new_cluster_id(),
                pid=None,
                port=client_port,
                controller_port=controller_port,
                data_dir=str((home / "data").resolve()),
                log_file=str((home / "broker.log").resolve()),
                config_file=str((home / "server.properties").resolve()),
                security=client_security(setup) if setup is not None else None,
            )
        )
    for rec in records:
        base = base_properties(rec)
        if setup is not None:
            base.update(secure_listener_properties(rec.port, rec.controller_port, setup))
        home = Path(rec.config_file).parent
        write_properties(
            home / "format.properties", base, "written by edgebus kafka up; formats storage"
        )
        write_properties(
            Path(rec.config_file), {**base, **layout.broker_config},
            "written by edgebus kafka up; the broker runs with it",
        )  # fmt: skip
    return tuple(records)


def _start_clusters(
    directory: Path,
    new_state: LauncherState,
    reuse: LauncherState | None,
    java: str,
    fetched: FetchResult,
    log4j: Path,
    timeout_s: float,
    setup: SecureSetup | None = None,
) -> LauncherState:
    """Format, start and wait for the clusters of ``new_state``; returns it with their pids.

    With ``setup`` (``--secure``) a new storage gets the SCRAM users, and a new cluster
    the default ACLs once it answers (a restart keeps the ACLs it had).

    ``state.json`` is written as soon as the JVMs run, so ``down`` finds them even if
    this process is killed while it waits. On any failure (Ctrl-C too) the brokers are
    stopped and the state is put back: ``reuse`` marked stopped, or no state at all.
    """
    records = new_state.clusters
    procs: list[subprocess.Popen[bytes]] = []
    fresh_setup = setup if reuse is None else None
    scram = scram_arguments(fresh_setup) if fresh_setup is not None else []
    try:
        run_sync(
            lambda: asyncio.gather(
                *(
                    format_storage(java, fetched.libs_dir, log4j, r,
                                   Path(r.config_file).parent / "format.properties",
                                   fetched.class_archive, scram)
                    for r in records
                )
            )
        )  # fmt: skip
        for rec in records:
            procs.append(start_broker(java, fetched.libs_dir, log4j, rec, fetched.class_archive))
        new_state = replace(
            new_state,
            clusters=tuple(replace(r, pid=p.pid) for r, p in zip(records, procs, strict=True)),
        )
        write_state(directory, new_state)  # so `down` finds them even if we are killed now
        deadline = time.monotonic() + timeout_s
        run_sync(lambda: wait_all_ready(new_state.clusters, procs, deadline, timeout_s))
        if fresh_setup is not None:
            run_sync(lambda: apply_default_acls(records, fresh_setup))
    except BaseException:
        stop_pids(new_state.clusters, grace_s=5.0)
        for p in procs:
            with contextlib.suppress(Exception):
                p.wait(timeout=1)
        if reuse is not None:
            write_state(directory, reuse.stopped())
        else:
            remove_state(directory)
        raise
    return new_state


# --------------------------------------------------------------------------- status / down


def status(state: Path | None = None) -> StatusReport:
    """Check every recorded cluster: is its pid alive, does it answer a metadata call?"""
    directory = (state or default_state_dir()).absolute()
    recorded = read_state(directory)
    if recorded is None:
        return StatusReport(directory, None, ())
    alive = [is_our_broker(c.pid, c.config_file) for c in recorded.clusters]

    async def check() -> list[tuple[bool, str]]:
        async def one(c: ClusterRecord, is_alive: bool) -> tuple[bool, str]:
            if not is_alive:
                return False, ""
            return await metadata_ok(c)

        return list(
            await asyncio.gather(
                *(one(c, a) for c, a in zip(recorded.clusters, alive, strict=True))
            )
        )

    checks = run_sync(check)
    return StatusReport(
        directory,
        recorded,
        tuple(
            ClusterStatus(c, tuple(recorded.regions_of(c.index)), a, ok, why)
            for c, a, (ok, why) in zip(recorded.clusters, alive, checks, strict=True)
        ),
    )


def down(wipe: bool = False, *, state: Path | None = None) -> DownResult:
    """Stop exactly the recorded brokers; with ``wipe`` also delete their data, the
    TLS material and passwords of a secure layout (``tls/``, ``secrets/``), the
    state file and the region stores kept in the state directory (``removed`` and
    ``kept`` say which paths went and which stayed).

    A pid is signalled only if ``/proc/PID/cmdline`` shows it is the ``kafka.Kafka``
    started with this state's ``server.properties``, so a recycled pid is never killed.
    SIGTERM first, SIGKILL after about 20 s.
    """
    directory = (state or default_state_dir()).absolute()
    with file_lock(directory / "kafka.lock", STOP_GRACE_S + 60, "edgebus kafka up/down"):
        recorded = read_state(directory)
        stopped: list[int] = []
        killed: list[int] = []
        if recorded is not None:
            stopped, killed = stop_pids(recorded.clusters)
            if not wipe:
                write_state(directory, recorded.stopped())
        removed: tuple[str, ...] = ()
        kept: tuple[str, ...] = ()
        if wipe:
            removed, kept = _wipe(directory)
    return DownResult(
        directory, tuple(stopped), tuple(killed), wipe, recorded is not None, removed, kept
    )


def _wipe(directory: Path) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Delete the brokers' data, the TLS material and passwords of ``--secure``, the
    state file and the region stores in ``directory``:
    (what was removed, what is left there), as paths relative to it."""
    removed: list[str] = []
    # the brokers' data; --secure's TLS material and passwords (they belong to it)
    for name in ("kafka", TLS_DIR, SECRETS_DIR):
        path = directory / name
        if path.is_dir() and not path.is_symlink():  # a link stays (and is reported kept)
            shutil.rmtree(path, ignore_errors=True)
            if not path.exists():
                removed.append(name)
    if (directory / STATE_FILE).exists():
        remove_state(directory)
        removed.append(STATE_FILE)
    wiped = wipe_region_files(directory)
    return (*removed, *wiped.removed), leftovers(directory, wiped)
