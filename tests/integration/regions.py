"""Helpers for tests that run region services: isolated region names, region processes
that can be killed with SIGKILL, and waiting for convergence.

Every test gets its own three region names (``<tag>-us``, ``<tag>-eu``, ``<tag>-ap``)
with the default compliance zones renamed accordingly, so its topics, consumer groups
and stores start empty even though all tests share one broker.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from connectors import by_url
from edgebus.config import EdgeConfig, load_config
from edgebus.server.service import RegionService
from tests.child_process import ChildProcess
from tests.conftest import edgebus_executable, run_cli


@dataclass
class Regions:
    """Three isolated regions for one test: names, config (dict and file), env."""

    us: str
    eu: str
    ap: str
    config: dict[str, Any]
    config_path: Path
    env: dict[str, str]
    tmp: Path

    @property
    def names(self) -> tuple[str, str, str]:
        return (self.us, self.eu, self.ap)

    def edge_config(self) -> EdgeConfig:
        return load_config(self.config)

    def cli(
        self, *args: str, env: Mapping[str, str] | None = None, timeout_s: float = 180.0
    ) -> tuple[int, Any, str]:
        """``edgebus ARGS --json`` with this test's config: (exit code, JSON, output)."""
        code, parsed, out, err = run_cli([*args, "--json"], {**self.env, **(env or {})},
                                         timeout_s)
        return code, parsed, out + err

    def store_url(self, region: str, suffix: str = "") -> str:
        return f"sqlite://{self.tmp / f'{region}{suffix}.db'}"

    @asynccontextmanager
    async def services(self, config: Any, *regions: str) -> AsyncIterator[None]:
        """In-process region services of ``regions`` (default: all three) with
        ``config``, each with its own store; stopped on exit."""
        async with AsyncExitStack() as stack:
            for region in regions or self.names:
                await stack.enter_async_context(
                    RegionService(region, config, store=self.store_url(region))
                )
            yield


def make_regions(
    bootstrap: str | Mapping[str, str], tmp_path: Path, *, partitions: int = 3
) -> Regions:
    """Fresh region names on ``bootstrap`` (one address, or region suffix -> address for
    ``us``/``eu``/``ap`` on separate clusters)."""
    tag = "t" + uuid.uuid4().hex[:6]
    us, eu, ap = f"{tag}-us", f"{tag}-eu", f"{tag}-ap"
    kafka: dict[str, Any] = {"partitions": partitions, "connect_timeout_s": 20}
    if isinstance(bootstrap, str):
        kafka["bootstrap"] = bootstrap
    else:
        kafka["clusters"] = {f"{tag}-{k}": v for k, v in bootstrap.items()}
    config = {
        "discovery": {"locations": [us, eu, ap]},
        "compliance": {
            "zones": {"gdpr": [eu], "hipaa": [us], "sox": [us, eu]},
        },
        "kafka": kafka,
    }
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / f"{tag}.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("EDGEBUS_CONFIG",)}
    env["EDGEBUS_CONFIG"] = str(path)
    env["EDGEBUS_STATE_DIR"] = str(tmp_path / "state")
    if isinstance(bootstrap, str):
        env["EDGEBUS_BOOTSTRAP"] = bootstrap
    return Regions(us, eu, ap, config, path, env, tmp_path)


class ServiceProcess:
    """A restartable child process of a test (a region service, a coordinator, ...):
    each :meth:`_launch` runs a new :class:`~tests.child_process.ChildProcess` on the
    same log files; kill / stop / pause / resume / alive act on the current one."""

    child: ChildProcess | None

    @property
    def log_path(self) -> Path:
        """The file its stderr is appended to (stdout: the same name, ``.stdout``)."""
        raise NotImplementedError

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        """The current child's process (``returncode``, ``poll()``), if started."""
        return self.child.popen if self.child is not None else None

    def _launch(
        self, command: list[str], env: Mapping[str, str], name: str, timeout_s: float
    ) -> str:
        """Start ``command`` and wait for its first stdout line that starts with ``{``
        (its JSON answer), at most ``timeout_s`` even if it prints nothing; returns it.
        A child that exits first or misses the deadline fails the test (and is
        killed)."""
        self.child = ChildProcess(command, log=self.log_path, env=env, name=name)
        line = self.child.start(ready_line="{", timeout_s=timeout_s)
        assert line is not None
        return line

    def kill(self) -> None:
        """SIGKILL: no clean-up at all."""
        if self.child is not None:
            self.child.kill()

    def stop(self) -> None:
        """SIGTERM and wait for a clean exit (SIGKILL after 30 s)."""
        if self.child is not None:
            self.child.stop()

    def pause(self) -> None:
        """SIGSTOP (it must be running)."""
        assert self.child is not None, "not started"
        self.child.pause()

    def resume(self) -> None:
        """SIGCONT, if it runs."""
        if self.child is not None:
            self.child.resume()

    def alive(self) -> bool:
        return self.child is not None and self.child.alive()

    def log_tail(self, n: int = 40) -> str:
        """The last ``n`` lines of its log (stderr), earlier runs' included."""
        if not self.log_path.exists():
            return ""
        lines = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        return "\n".join(lines[-n:])


@dataclass
class RegionProcess(ServiceProcess):
    """``edgebus region run`` as a child process (kill -9 able)."""

    regions: Regions
    region: str
    store: str
    extra_env: dict[str, str] = field(default_factory=dict)
    extra_args: list[str] = field(default_factory=list)
    url: str | None = None
    child: ChildProcess | None = field(default=None, init=False, repr=False)

    @property
    def log_path(self) -> Path:
        return self.regions.tmp / f"{self.region}.log"

    def start(self, timeout_s: float = 90.0) -> str:
        line = self._launch(
            [edgebus_executable(), "region", "run", "--region", self.region,
             "--store", self.store, "--json", *self.extra_args],
            {**self.regions.env, **self.extra_env}, f"region {self.region}", timeout_s,
        )
        started = json.loads(line)
        assert started["ok"], started
        self.url = started["url"]
        return str(self.url)


async def store_rows(url: str) -> dict[str, tuple[bool, Any, int]]:
    """key -> (exists, value, version) of a store (opened read-side, then closed)."""
    out: dict[str, tuple[bool, Any, int]] = {}
    async with by_url(url) as store:
        async for state in store.scan():
            out[state.key] = (state.exists, state.value, state.version)
    return out


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout_s: float = 60.0, what: str = "condition"
) -> None:
    """Poll ``check`` until true; fail with ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


async def service_status(http: aiohttp.ClientSession, url: str | None) -> dict[str, Any] | None:
    """A region service's ``/v1/status``, or None when it does not answer (yet)."""
    if url is None:
        return None
    try:
        async with http.get(url.rstrip("/") + "/v1/status") as response:
            if response.status != 200:
                return None
            data: dict[str, Any] = await response.json()
            return data
    except (aiohttp.ClientError, OSError, TimeoutError):
        return None
