"""One local Kafka broker: its settings, storage, JVM and readiness.

The primitives ``up`` and the class-archive training run (:mod:`.class_archive`) are
made of: a single-node KRaft cluster (a :class:`~.state.ClusterRecord`) gets its
``server.properties`` (:func:`base_properties` plus checked overrides), its storage
formatted (:func:`format_storage`), its JVM started (:func:`start_broker`) and is
waited for until it answers a metadata call (:func:`wait_ready`). The launcher's API
is synchronous; :func:`run_sync` runs the async parts.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import subprocess
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from edgebus.config import KafkaConfig, KafkaSecurityConfig
from edgebus.errors import BrokerExited, InvalidInput, LauncherError
from edgebus.kafka.clients import admin_client
from edgebus.localkafka.artifacts import HEAP_MAX, HEAP_MIN, jvm_flags
from edgebus.localkafka.credentials import write_private
from edgebus.localkafka.processes import HOST, LOG_TAIL_LINES, log_tail
from edgebus.localkafka.security import SECURE_MANAGED_PREFIXES
from edgebus.localkafka.state import ClusterRecord, timestamp

__all__ = [
    "MANAGED_KEYS",
    "base_properties",
    "check_broker_config",
    "format_storage",
    "metadata_ok",
    "new_cluster_id",
    "run_sync",
    "start_broker",
    "wait_all_ready",
    "wait_ready",
    "write_properties",
]

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


# --------------------------------------------------------------------------- broker config


def check_broker_config(overrides: Mapping[str, str], *, secure: bool = False) -> dict[str, str]:
    """The ``--broker-config`` overrides, checked; :class:`InvalidInput` if one is bad.

    Keys must be setting names, none of :data:`MANAGED_KEYS` (nor, with ``secure``,
    a TLS, SASL or authorizer setting: :data:`~.security.SECURE_MANAGED_PREFIXES`);
    values one line each.
    """
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
        if secure and key.startswith(SECURE_MANAGED_PREFIXES):
            raise InvalidInput(
                f"{key} is part of the security --secure sets up (TLS, SASL, authorizer) and "
                "cannot be overridden; start without --secure to run a plaintext cluster."
            )
        if "\n" in value or "\r" in value:
            raise InvalidInput(f"The value of {key} must be on one line.")
        checked[key] = value
    return checked


def new_cluster_id() -> str:
    """A Kafka cluster id: a random UUID, base64url without padding (as StorageTool makes)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):  # Kafka avoids ids that look like a CLI flag
            return text


def base_properties(rec: ClusterRecord) -> dict[str, str]:
    """The broker settings of ``rec``: one KRaft node (broker and controller) on :data:`HOST`."""
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


def write_properties(path: Path, props: Mapping[str, str], note: str) -> None:
    """Write ``props`` as a Java properties file headed by the comment ``note``; 0600,
    since a secure broker's settings hold its keystore and inter-broker passwords."""
    lines = [f"# {note}"] + [f"{k}={v}" for k, v in props.items()]
    write_private(path, "\n".join(lines) + "\n")


# --------------------------------------------------------------------------- async plumbing


def run_sync(factory: Callable[[], Awaitable[T]]) -> T:
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


# --------------------------------------------------------------------------- readiness


async def _describe(
    bootstrap: str, timeout_s: float, security: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """One metadata call to a broker of ours (plaintext on loopback, or with the
    client settings recorded for a secure one); raises on any failure."""
    kafka = (
        KafkaConfig()
        if security is None
        else KafkaConfig(security=KafkaSecurityConfig.model_validate(dict(security)))
    )
    async with (
        asyncio.timeout(timeout_s + 1),
        admin_client(
            kafka, bootstrap, client_id="edgebus-launcher", timeout_s=max(1.0, timeout_s)
        ) as admin,
    ):
        info: dict[str, Any] = await admin.describe_cluster()
        return info


async def metadata_ok(rec: ClusterRecord, timeout_s: float = 3.0) -> tuple[bool, str]:
    """Does ``rec`` answer a metadata call? ``(True, "")``, or ``(False, why not)``.

    It must answer as the recorded cluster (same cluster id) with a live broker.
    """
    try:
        info = await _describe(rec.bootstrap, timeout_s, rec.security)
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


async def wait_ready(
    rec: ClusterRecord, proc: subprocess.Popen[bytes], deadline: float, timeout_s: float
) -> None:
    """Until a metadata call succeeds; BrokerExited if the JVM exits meanwhile."""
    detail = "the client port never opened"
    while True:
        code = proc.poll()
        if code is not None:
            raise BrokerExited(
                f"Kafka cluster {rec.index} (port {rec.port}) exited with code {code} while "
                f"starting. Last lines of {rec.log_file}:\n{log_tail(Path(rec.log_file))}\n"
                "Fix the cause shown above (a bad --broker-config value, a full disk, a port "
                "taken meanwhile), then run `edgebus kafka up` again; if its stored data is "
                "damaged, `edgebus kafka down --wipe` first."
            )
        if time.monotonic() > deadline:
            raise LauncherError(
                f"Kafka cluster {rec.index} ({rec.bootstrap}) did not answer a metadata call "
                f"within {timeout_s:.0f} s ({detail}). Last lines of {rec.log_file}:\n"
                f"{log_tail(Path(rec.log_file))}\nOn a slow machine pass a longer --timeout."
            )
        if await _port_open(rec.port):
            ok, why = await metadata_ok(rec, timeout_s=3.0)
            if ok:
                return
            detail = why
        await asyncio.sleep(0.25)


async def wait_all_ready(
    records: Sequence[ClusterRecord],
    procs: Sequence[subprocess.Popen[bytes]],
    deadline: float,
    timeout_s: float,
) -> None:
    """:func:`wait_ready` for every broker at once; the first failure stops the waiting."""
    tasks = [
        asyncio.ensure_future(wait_ready(r, p, deadline, timeout_s))
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


# --------------------------------------------------------------------------- storage, JVM


async def format_storage(
    java: str,
    libs: Path,
    log4j: Path,
    rec: ClusterRecord,
    format_config: Path,
    archive: Path | None,
    scram: Sequence[str] = (),
) -> None:
    """Format the storage of ``rec`` with ``format_config`` (kept data stays as it is).

    ``scram``: the storage tool's ``--add-scram`` arguments (SCRAM users written into
    the new metadata). They hold passwords, so the tool's arguments then go through a
    private argument file (``java @file``), never onto a command line other users can
    read in ``ps``. Raises :class:`LauncherError` with what the storage tool said when
    it fails.
    """
    tool = [
        "kafka.tools.StorageTool", "format", "--ignore-formatted",
        "-t", rec.cluster_id, "-c", str(format_config), *scram,
    ]  # fmt: skip
    home = Path(rec.data_dir).parent
    argfile = home / "format.args"
    if scram:  # java expands @file only before the main class: the whole tail goes in
        write_private(argfile, "".join(f"{_argfile_quote(a)}\n" for a in tool))
        tool = [f"@{argfile}"]
    try:
        proc = await asyncio.create_subprocess_exec(
            java, HEAP_MAX, *jvm_flags(archive, short_lived=True),
            "-cp", f"{libs}/*", f"-Dlog4j2.configurationFile={log4j}", *tool,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            cwd=home,
        )  # fmt: skip
        out, _ = await proc.communicate()
    finally:
        argfile.unlink(missing_ok=True)
    if proc.returncode != 0:
        said = out.decode(errors="replace").strip().splitlines()
        raise LauncherError(
            f"Formatting the storage of Kafka cluster {rec.index} in {rec.data_dir} failed "
            f"(exit code {proc.returncode}). The tool said:\n"
            + "\n".join(said[-LOG_TAIL_LINES:])
            + "\nRun `edgebus kafka down --wipe` to start from empty storage, then `up` again."
        )


def _argfile_quote(arg: str) -> str:
    """``arg`` as one argument of a ``java @file`` (double-quoted, escapes doubled)."""
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def start_broker(
    java: str,
    libs: Path,
    log4j: Path,
    rec: ClusterRecord,
    archive: Path | None,
    *,
    detach: bool = True,
    extra: Sequence[str] = (),
) -> subprocess.Popen[bytes]:
    """Start the JVM of ``rec``'s broker, its output appended to ``rec.log_file``.

    ``detach``: in a session of its own, so it outlives this process; ``extra`` adds
    JVM options. It returns at once; :func:`wait_ready` waits until it answers.
    """
    cluster_home = Path(rec.config_file).parent
    with open(rec.log_file, "ab") as log:
        log.write(f"\n===== edgebus kafka up: starting at {timestamp()} =====\n".encode())
        log.flush()
        return subprocess.Popen(
            [
                java, HEAP_MAX, HEAP_MIN, "-Djava.awt.headless=true",
                *jvm_flags(archive), *extra,
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
