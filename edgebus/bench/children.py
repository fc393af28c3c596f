"""Benchmark plumbing: ``edgebus`` commands as child processes (a region service, with
the run's config in a file), SIGTERM handling."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from edgebus.config import EdgeConfig
from edgebus.errors import EdgebusError

__all__ = [
    "READY_TIMEOUT_S",
    "ChildCommand",
    "cancelled_on_sigterm",
    "config_file",
    "region_process",
]

#: how long a child may take to print its start line
READY_TIMEOUT_S = 90.0


class ChildCommand:
    """An ``edgebus`` command as a child process: started once it printed its JSON
    start line, stopped with SIGTERM."""

    def __init__(self, name: str, args: list[str], log_path: Path) -> None:
        self.name = name
        self.args = args
        self.log_path = log_path
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self, timeout_s: float = READY_TIMEOUT_S) -> dict[str, Any]:
        """Start the child; return its start line once it has printed it."""
        log = self._open_log()
        try:
            # the interpreter running this benchmark, so that the child runs the same code
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", "from edgebus.cli import main; main()", *self.args,
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=log,
            )
        finally:
            log.close()  # the child has its own descriptor
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = await asyncio.wait_for(self.proc.stdout.readline(), max(remaining, 0.01))
            except TimeoutError:
                line = b""
            if line.startswith(b"{"):
                started: dict[str, Any] = json.loads(line)
                if started.get("ok"):
                    return started
            if not line or remaining <= 0:
                raise EdgebusError(
                    f"{self.name} (`edgebus {' '.join(self.args)}`) did not start within "
                    f"{timeout_s:.0f} s: {self.log_tail()}"
                )

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited within 30 s."""
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 30)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    def _open_log(self) -> BinaryIO:
        return open(self.log_path, "ab")  # closed by start() once the child has it

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def config_file(config: EdgeConfig, path: Path) -> Path:
    """Write ``config`` to ``path`` as JSON (for the children's ``--config``); ``path``."""
    path.write_text(json.dumps(config.model_dump(mode="json")), encoding="utf-8")
    return path


def region_process(region: str, store: str, config_path: Path, log_path: Path) -> ChildCommand:
    """``edgebus region run`` as a child process (its start line carries its URL)."""
    return ChildCommand(
        f"region {region}",
        ["region", "run", "--region", region, "--store", store, "--config", str(config_path),
         "--json"],
        log_path,
    )


@contextlib.contextmanager
def cancelled_on_sigterm() -> Iterator[None]:
    """SIGTERM cancels the running task (as Ctrl-C does), so that child processes (and
    anything else the run started) are stopped on the way out."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    installed = False
    if task is not None:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGTERM, task.cancel)
            installed = True
    try:
        yield
    finally:
        if installed:
            loop.remove_signal_handler(signal.SIGTERM)
