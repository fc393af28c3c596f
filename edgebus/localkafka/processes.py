"""The pids, processes and ports of the local Kafka brokers; the lock between edgebus runs.

A recorded pid is only treated as a broker of ours when its command line shows the
``kafka.Kafka`` started with the recorded ``server.properties``, so a recycled pid is
never signalled. Brokers listen on 127.0.0.1 only; a port that is taken is a
:class:`PortInUse` whose message says what to do.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol

from edgebus.errors import InvalidInput, LauncherError, PortInUse

__all__ = [
    "HOST",
    "LOG_TAIL_LINES",
    "STOP_GRACE_S",
    "RecordedBroker",
    "file_lock",
    "free_ports",
    "is_our_broker",
    "log_tail",
    "port_is_free",
    "ports_from_base",
    "stop_pids",
]

#: the only interface the brokers listen on
HOST = "127.0.0.1"
#: how long ``down`` waits after SIGTERM before it sends SIGKILL
STOP_GRACE_S = 20.0
#: how many lines of a broker's log an error message quotes
LOG_TAIL_LINES = 20


class RecordedBroker(Protocol):
    """What :func:`stop_pids` needs of a recorded cluster (a ``ClusterRecord``)."""

    @property
    def pid(self) -> int | None: ...

    @property
    def config_file(self) -> str: ...


# --------------------------------------------------------------------------- locks


@contextlib.contextmanager
def file_lock(path: Path, timeout_s: float, what: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing) for the ``with`` body.

    Waits up to ``timeout_s`` for another edgebus process to release it, then raises
    :class:`LauncherError` naming ``what`` that process is doing.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise LauncherError(
                        f"Another edgebus process holds {path} ({what}) for more than "
                        f"{timeout_s:.0f} s. Wait for it to finish, or find it with "
                        f"`fuser {path}`."
                    ) from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


# --------------------------------------------------------------------------- processes


def _proc_cmdline(pid: int) -> list[str] | None:
    """The argv of ``pid``, or None if it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X"):
            return None
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return None
    except OSError:
        return _ps_cmdline(pid)
    return [a for a in raw.decode(errors="replace").split("\0") if a]


def _ps_cmdline(pid: int) -> list[str] | None:
    """Fallback where there is no /proc (macOS)."""
    try:
        out = subprocess.run(
            ["ps", "-p", str(pid), "-o", "stat=", "-o", "command="],
            capture_output=True, text=True, timeout=10, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    line = out.stdout.strip()
    if out.returncode != 0 or not line or line.startswith("Z"):
        return None
    return line.split()[1:]


def is_our_broker(pid: int | None, config_file: str) -> bool:
    """True when ``pid`` is alive and is a kafka.Kafka started with ``config_file``."""
    if pid is None or pid <= 0:
        return False
    _reap(pid)
    argv = _proc_cmdline(pid) if Path("/proc").is_dir() else _ps_cmdline(pid)
    return argv is not None and "kafka.Kafka" in argv and config_file in argv


def _reap(pid: int) -> None:
    """Collect ``pid`` if it is our own exited child, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def stop_pids(
    records: Sequence[RecordedBroker], grace_s: float = STOP_GRACE_S
) -> tuple[list[int], list[int]]:
    """SIGTERM the brokers of ``records`` that are really ours; SIGKILL after ``grace_s``."""
    targets = [(c.pid, c.config_file) for c in records if is_our_broker(c.pid, c.config_file)]
    stopped: list[int] = []
    for pid, _cfg in targets:
        assert pid is not None
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        stopped.append(pid)
    deadline = time.monotonic() + grace_s
    remaining = list(targets)
    while remaining and time.monotonic() < deadline:
        time.sleep(0.1)
        remaining = [(p, cfg) for p, cfg in remaining if is_our_broker(p, cfg)]
    killed: list[int] = []
    for pid, cfg in remaining:
        if is_our_broker(pid, cfg):
            assert pid is not None
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    deadline = time.monotonic() + 5
    while remaining and time.monotonic() < deadline:
        remaining = [(p, cfg) for p, cfg in remaining if is_our_broker(p, cfg)]
        time.sleep(0.05)
    return stopped, killed


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` non-blank lines of a broker log, for quoting in an error message."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log written)"
    tail = [line for line in text.splitlines() if line.strip()][-lines:]
    return "\n".join(tail) if tail else "(the log is empty)"


# --------------------------------------------------------------------------- ports


def port_is_free(port: int) -> bool:
    """True when nothing listens on ``port`` of :data:`HOST` (a bind succeeds)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports of :data:`HOST` that the system reports free now."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def ports_from_base(base: int, clusters: int) -> list[tuple[int, int]]:
    """Cluster i listens on base + 2i (clients) and base + 2i + 1 (controller)."""
    if base < 1024 or base + 2 * clusters - 1 > 65535:
        raise InvalidInput(
            f"--port {base} does not leave room for {clusters} cluster(s): cluster i uses "
            f"port + 2i and port + 2i + 1, which must lie in 1024..65535."
        )
    pairs = [(base + 2 * i, base + 2 * i + 1) for i in range(clusters)]
    for i, (port, cport) in enumerate(pairs):
        for p, role in ((port, "client listener"), (cport, "controller listener")):
            if not port_is_free(p):
                raise PortInUse(
                    f"Port {p} on {HOST} is already in use (needed for cluster {i}'s {role}; "
                    f"with --port {base} cluster i uses ports {base}+2i and {base}+2i+1). "
                    f"Stop what listens there (see `ss -ltnp 'sport = :{p}'`), choose another "
                    "base with --port, or leave --port out to pick free ports."
                )
    return pairs
