"""One way for the tests to run a long-running child process (a region service, a
coordinator, a saga worker, a lock holder, a ``tail --follow``).

:class:`ChildProcess` starts a command with its environment and working directory,
keeps its output, waits until it is ready and stops it:

* readiness is a line on its stdout (``ready_line``: a prefix, or a test on each line)
  or any condition (``ready``), polled against a deadline of the test's clock: the
  deadline fires whether or not the child prints anything, so a child that hangs
  silently fails the test with :class:`ChildTimedOut` instead of blocking it in a
  ``readline``; a child that exits first fails it with :class:`ChildExited` (its exit
  code). Both messages name the command and quote the tail of its output;
* :meth:`ChildProcess.stop` sends SIGTERM, then SIGKILL once a grace period has passed,
  and reaps the child; :meth:`~ChildProcess.kill` (SIGKILL),
  :meth:`~ChildProcess.pause` (SIGSTOP) and :meth:`~ChildProcess.resume` (SIGCONT) are
  the fault tests' tools.

Its stderr goes straight to a log file. Its stdout goes to a pipe that a background
thread drains into memory (where the ready line is looked for: only this child's
lines, even when two children share a log, as an old and a new service of one region
do) and appends to a file: the child never blocks on a full pipe, the test never
blocks on a read, and the files stay in the test's temporary directory for the
post-mortem. A restarted service gets a new :class:`ChildProcess` on the same files.

Broker-free on purpose (no edgebus import): ``tests/unit/test_child_process.py`` tests
it without Kafka.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

__all__ = [
    "DEFAULT_GRACE_S",
    "ChildExited",
    "ChildNotReady",
    "ChildProcess",
    "ChildTimedOut",
]

#: how long :meth:`ChildProcess.stop` waits after SIGTERM before it sends SIGKILL
DEFAULT_GRACE_S = 30.0
#: how long a SIGKILLed child may take to be reaped (it cannot refuse to die)
REAP_S = 30.0
#: how often a wait looks at the child and its output
POLL_S = 0.05
#: the lines of each output file quoted in error messages
TAIL_LINES = 40
#: the longest command quoted in error messages (a ``python -c SCRIPT`` is long)
COMMAND_CHARS = 600
#: how long to wait for the rest of a child's stdout once it exited or was killed (a
#: grandchild holding the pipe open must not hold the test)
DRAIN_S = 5.0

LineTest = str | Callable[[str], bool]


class ChildNotReady(AssertionError):
    """A child process did not become ready: it exited first (:class:`ChildExited`) or
    its deadline passed (:class:`ChildTimedOut`). An AssertionError, so that pytest
    reports it as the test's failure. ``returncode``: the child's exit code (negative:
    the signal that ended it), ``None`` if it was still running."""

    def __init__(self, message: str, returncode: int | None) -> None:
        super().__init__(message)
        self.returncode = returncode


class ChildExited(ChildNotReady):
    """The child exited before it was ready."""


class ChildTimedOut(ChildNotReady):
    """The deadline passed before the child was ready (:meth:`ChildProcess.start` kills
    it then) or, in :meth:`ChildProcess.wait`, before it exited."""


def _matcher(test: LineTest) -> Callable[[str], bool]:
    if isinstance(test, str):
        prefix = test
        return lambda line: line.startswith(prefix)
    return test


def _tail(path: Path, start: int, n: int) -> str:
    try:
        with path.open("rb") as f:
            f.seek(start)
            data = f.read()
    except FileNotFoundError:
        return ""
    return "\n".join(data.decode("utf-8", errors="replace").splitlines()[-n:])


class ChildProcess:
    """One run of ``command`` as a child process of the test.

    ``log``: the file its stderr is appended to; ``stdout``: the file a copy of its
    stdout is appended to (default: ``log`` with the suffix ``.stdout``; pass ``log``
    itself to have both in one file). ``env``: its whole environment (default: the
    test's); ``cwd``: its working directory; ``name``: what error messages call it
    (default: the command's first two words). Nothing runs until :meth:`start`. Usable
    as a context manager that stops the child on exit.
    """

    def __init__(
        self,
        command: Sequence[str],
        *,
        log: Path,
        stdout: Path | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path | str | None = None,
        name: str | None = None,
    ) -> None:
        self.command = [str(part) for part in command]
        self.log = Path(log)
        self.stdout = Path(stdout) if stdout is not None else self.log.with_suffix(".stdout")
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.name = name or " ".join(Path(p).name for p in self.command[:2])
        self.popen: subprocess.Popen[bytes] | None = None
        self._log_start = 0  #: the size of ``log`` when this child started
        self._out = bytearray()  #: its stdout so far
        self._out_lock = threading.Lock()
        self._drained = threading.Event()  #: set at the end of its stdout
        self._drainer: threading.Thread | None = None

    # ------------------------------------------------------------------ start and wait

    def start(
        self,
        *,
        ready_line: LineTest | None = None,
        ready: Callable[[], bool] | None = None,
        timeout_s: float = 90.0,
    ) -> str | None:
        """Start the child, then wait until it is ready: until its stdout has a line
        that starts with ``ready_line`` (or for which ``ready_line(line)`` is true),
        and/or until ``ready()`` is true. Returns that line (without its newline;
        ``None`` without ``ready_line``). If the child exits first, or ``timeout_s``
        passes first (even if the child prints nothing at all), it is killed and
        :class:`ChildExited` / :class:`ChildTimedOut` raised; so is anything ``ready``
        raises.
        """
        if self.popen is not None:
            raise RuntimeError(f"{self.name} was started already (pid {self.popen.pid})")
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.stdout.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as err:  # the child has its own copy of the file
            self._log_start = err.tell()
            self.popen = subprocess.Popen(
                self.command, env=self.env, cwd=self.cwd,
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
            )
        assert self.popen.stdout is not None
        self._drainer = threading.Thread(
            target=self._drain, args=(self.popen.stdout,), daemon=True,
            name=f"stdout of {self.name} (pid {self.popen.pid})",
        )
        self._drainer.start()
        if ready_line is None and ready is None:
            return None
        try:
            return self.wait_ready(ready_line=ready_line, ready=ready, timeout_s=timeout_s)
        except BaseException:
            self.kill()
            raise

    def _drain(self, pipe: IO[bytes]) -> None:
        """Read the child's stdout to its end: into memory and into ``self.stdout``."""
        try:
            with self.stdout.open("ab") as copy:
                while chunk := os.read(pipe.fileno(), 65536):
                    with self._out_lock:
                        self._out += chunk
                    copy.write(chunk)
                    copy.flush()
        finally:
            pipe.close()
            self._drained.set()

    def wait_ready(
        self,
        *,
        ready_line: LineTest | None = None,
        ready: Callable[[], bool] | None = None,
        timeout_s: float = 90.0,
    ) -> str | None:
        """Wait as :meth:`start` does (without killing the child on failure)."""
        popen = self._started()
        matches = _matcher(ready_line) if ready_line is not None else None
        wanted = []
        if ready_line is not None:
            wanted.append(f"a stdout line starting with {ready_line!r}"
                          if isinstance(ready_line, str) else "its ready line on stdout")
        if ready is not None:
            wanted.append("its ready condition")
        if not wanted:
            raise ValueError("wait_ready needs ready_line, ready or both")
        what = " and ".join(wanted)
        deadline = time.monotonic() + timeout_s
        while True:
            code = popen.poll()
            if code is not None:  # what it wrote before it exited counts
                self._drained.wait(DRAIN_S)
            line = None
            if matches is not None:
                line = next((x for x in self.stdout_lines() if matches(x)), None)
            if (matches is None or line is not None) and (ready is None or ready()):
                return line
            if code is not None:
                raise ChildExited(
                    f"{self.name} exited with code {code} before it was ready (waiting for "
                    f"{what}).\n{self.describe()}", code)
            if time.monotonic() >= deadline:
                raise ChildTimedOut(
                    f"{self.name} (pid {popen.pid}) was not ready within {timeout_s:g} s "
                    f"(waiting for {what}).\n{self.describe()}", None)
            time.sleep(POLL_S)

    def wait(self, timeout_s: float) -> int:
        """The child's exit code once it exits (and its stdout is read to the end);
        :class:`ChildTimedOut` if it still runs after ``timeout_s`` (it is left
        running: stop or kill it)."""
        popen = self._started()
        try:
            code = popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise ChildTimedOut(
                f"{self.name} (pid {popen.pid}) still runs after {timeout_s:g} s.\n"
                f"{self.describe()}", None) from None
        self._drained.wait(DRAIN_S)
        return code

    # ------------------------------------------------------------------ signals

    def stop(self, grace_s: float = DEFAULT_GRACE_S) -> int | None:
        """SIGTERM (and SIGCONT, should it be paused), SIGKILL if it still runs after
        ``grace_s``; reaps it. Returns its exit code (``None`` if never started)."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            self.popen.send_signal(signal.SIGCONT)
            try:
                self.popen.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                self.popen.send_signal(signal.SIGKILL)
                self.popen.wait(timeout=REAP_S)
        self._drained.wait(DRAIN_S)
        return self.popen.returncode

    def kill(self) -> int | None:
        """SIGKILL: no clean-up at all; reaps it. Returns its exit code."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(timeout=REAP_S)
        self._drained.wait(DRAIN_S)
        return self.popen.returncode

    def pause(self) -> None:
        """SIGSTOP: it keeps its sockets and does nothing until :meth:`resume`."""
        popen = self._started()
        assert popen.poll() is None, f"{self.name} is not running\n{self.describe()}"
        popen.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT (nothing if it does not run)."""
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGCONT)

    # ------------------------------------------------------------------ state and output

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen is not None else None

    @property
    def returncode(self) -> int | None:
        """Its exit code once it exited (negative: the signal), else ``None``."""
        return self.popen.poll() if self.popen is not None else None

    def alive(self) -> bool:
        """Started and not exited (a paused child is alive)."""
        return self.popen is not None and self.popen.poll() is None

    def stdout_text(self) -> str:
        """What this child wrote on stdout so far (not what earlier runs wrote)."""
        with self._out_lock:
            data = bytes(self._out)
        return data.decode("utf-8", errors="replace")

    def stdout_lines(self) -> list[str]:
        """The lines of :meth:`stdout_text`: the complete ones (a last line without its
        newline counts once the child's stdout is closed)."""
        text = self.stdout_text()
        if not self._drained.is_set():
            text = text[: text.rfind("\n") + 1]
        return text.splitlines()

    def log_tail(self, n: int = TAIL_LINES) -> str:
        """The last ``n`` lines of the stderr file (earlier runs' lines included)."""
        return _tail(self.log, 0, n)

    def describe(self, n: int = TAIL_LINES) -> str:
        """The command and the tail of this child's output, for failure messages."""
        command = shlex.join(self.command)
        if len(command) > COMMAND_CHARS:
            command = command[:COMMAND_CHARS] + " ..."
        where = f" (in {self.cwd})" if self.cwd is not None else ""
        head = f"command{where}: {command}\n"
        if self.stdout == self.log:
            return f"{head}--- its output ({self.log}):\n{_tail(self.log, self._log_start, n)}"
        out = "\n".join(self.stdout_text().splitlines()[-n:])
        return (f"{head}--- its stdout (copied to {self.stdout}):\n{out}\n"
                f"--- its stderr ({self.log}):\n{_tail(self.log, self._log_start, n)}")

    def _started(self) -> subprocess.Popen[bytes]:
        if self.popen is None:
            raise RuntimeError(f"{self.name} has not been started")
        return self.popen

    # ------------------------------------------------------------------ context manager

    def __enter__(self) -> ChildProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = ("not started" if self.popen is None
                 else "running" if self.alive() else f"exited {self.returncode}")
        return f"<ChildProcess {self.name} pid={self.pid} {state}>"
