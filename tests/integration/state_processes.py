"""Helpers for state-machine tests (issue 6): a deployment of three region services,
each a separate ``edgebus region run`` process hosting states, that a test can SIGKILL,
pause (SIGSTOP) and restart; the state log as a test reads and folds it; and a lock
holder in a child Python process.

Isolation: a deployment gets its own region names (``make_regions``), so its state
logs (``edgebus.<first region>.state.<class>``; the PII class's on the GDPR region,
``edgebus.<eu>.state.pii``) start empty. Each region keeps its store and state
snapshots (``states-<region>.db``, beside the store's file) in a directory of its own,
as separate machines would. Tests that share a deployment use state ids of their own.
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from edgebus.core.state_machine import StateLogRecord, StateObject, StateOp
from edgebus.kafka.reading import read_to_end
from edgebus.state.log import state_topic
from edgebus.wire.state_log import decode_state_record
from tests.child_process import ChildProcess
from tests.integration.regions import RegionProcess, Regions, ServiceProcess, make_regions
from tests.kafka_settings import KAFKA

__all__ = [
    "STATE_CONFIG",
    "FoldedRecord",
    "LockHolderProcess",
    "LoggedRecord",
    "StateDeployment",
    "accepted_ops",
    "fold_state_log",
]

#: short leases so fail-overs, lock expiry and migration happen within seconds
STATE_CONFIG: dict[str, Any] = {
    "lease_ms": 2000, "lease_margin_ms": 300, "stagger_ms": 200, "resend_ms": 500,
    "timeout_ms": 15000, "migration_window_ms": 3000, "migration_min_accesses": 10,
}


@dataclass(frozen=True)
class LoggedRecord:
    """One record of a state's log: where, when (broker append time) and what."""

    partition: int
    offset: int
    append_ms: int
    record: StateLogRecord


@dataclass
class StateDeployment:
    """Three region processes hosting states (``us``, ``eu``, ``ap``: the GDPR zone is
    ``eu``)."""

    bootstrap: str
    regions: Regions
    procs: dict[str, RegionProcess]
    paused: set[str] = field(default_factory=set)

    @classmethod
    def create(cls, bootstrap: str, tmp_path: Path, **state: Any) -> StateDeployment:
        """Not started yet: fresh regions whose config has ``STATE_CONFIG`` (updated
        with ``state``) as its ``state`` section."""
        regions = make_regions(bootstrap, tmp_path)
        regions.config["state"] = {**STATE_CONFIG, **state}
        regions.config_path.write_text(json.dumps(regions.config), encoding="utf-8")
        procs = {}
        for region in regions.names:
            home = tmp_path / region
            home.mkdir(parents=True, exist_ok=True)
            procs[region] = RegionProcess(regions, region, f"sqlite://{home / 'store.db'}")
        return cls(bootstrap, regions, procs)

    @property
    def names(self) -> tuple[str, str, str]:
        return self.regions.names

    @property
    def config(self) -> dict[str, Any]:
        return self.regions.config

    def states_db(self, region: str) -> Path | None:
        """The SQLite file where ``region``'s state host keeps its snapshots (the one
        ``states*.db`` in the region's directory; ``None`` before it is created)."""
        found = sorted((self.regions.tmp / region).glob("states*.db"))
        assert len(found) <= 1, f"{region}: several state snapshot files {found}"
        return found[0] if found else None

    def topic(self, data_class: str = "public") -> str:
        """The state log of ``data_class``."""
        return state_topic(self.regions.edge_config(), data_class)

    async def start(self, *regions: str) -> None:
        """Start ``regions`` (default: all), at once; each start waits for its ready
        line."""
        names = regions or self.names
        await asyncio.gather(*(asyncio.to_thread(self.procs[r].start) for r in names))

    async def ensure_running(self) -> None:
        """Resume paused processes and start dead ones."""
        for region in list(self.paused):
            self.resume(region)
        dead = [r for r, p in self.procs.items() if not p.alive()]
        if dead:
            await self.start(*dead)

    def kill(self, region: str) -> None:
        """SIGKILL ``region``'s process."""
        self.paused.discard(region)
        self.procs[region].kill()

    def pause(self, region: str) -> None:
        """SIGSTOP ``region``'s process: it keeps its sockets and its idea of what it
        owns, and does nothing until resumed (a long GC pause, a frozen VM)."""
        assert self.procs[region].alive(), f"{region} is not running"
        self.procs[region].pause()
        self.paused.add(region)

    def resume(self, region: str) -> None:
        """SIGCONT a paused process."""
        self.procs[region].resume()
        self.paused.discard(region)

    def stop(self) -> None:
        """SIGTERM every process (paused ones are resumed first)."""
        for region in list(self.paused):
            self.resume(region)
        for proc in self.procs.values():
            proc.stop()

    async def status(self, region: str) -> dict[str, Any]:
        """``GET /v1/status`` of ``region``'s process."""
        url = self.procs[region].url
        assert url is not None, f"{region} has not started"
        async with aiohttp.ClientSession() as session, session.get(
            f"{url.rstrip('/')}/v1/status", timeout=aiohttp.ClientTimeout(total=10)
        ) as response:
            response.raise_for_status()
            return dict(await response.json())

    async def state_host(self, region: str) -> dict[str, Any]:
        """The status of ``region``'s state host: ``host`` (its id), ``classes``,
        ``owned``, ``counters``."""
        host = (await self.status(region))["state_host"]
        assert host is not None, f"{region} runs no state host"
        return dict(host)

    async def state_log(self, state_id: str, data_class: str = "public") -> list[LoggedRecord]:
        """Every record of ``state_id`` in its class's log, in log order."""
        out = []
        for rec in await read_to_end(KAFKA, self.bootstrap, self.topic(data_class)):
            if rec.key != state_id.encode("utf-8"):
                continue
            decoded_id, record = decode_state_record(rec.value)
            assert decoded_id == state_id, (decoded_id, state_id)
            out.append(LoggedRecord(rec.partition, rec.offset, int(rec.timestamp), record))
        partitions = {r.partition for r in out}
        assert len(partitions) <= 1, f"{state_id}'s records are in partitions {partitions}"
        return out

    def logs(self) -> str:
        """The tail of every process's log, for failure messages."""
        return "\n".join(f"--- {r}\n{p.log_tail()}" for r, p in self.procs.items())


@dataclass(frozen=True)
class FoldedRecord:
    """A log record as the fold met it: the epoch in force before it, and whether it
    changed the fold (for a StateOp: whether it was accepted)."""

    logged: LoggedRecord
    epoch_before: int
    changed: bool


def fold_state_log(state_id: str, records: list[LoggedRecord]
                   ) -> tuple[StateObject, list[FoldedRecord]]:
    """Fold ``records`` as every host does: the final object and, per record, the
    epoch before it and whether it changed anything."""
    obj = StateObject(state_id)
    trace = []
    for logged in records:
        before = obj.view.epoch
        changed = obj.fold(logged.record, logged.append_ms)
        trace.append(FoldedRecord(logged, before, changed))
    return obj, trace


def accepted_ops(trace: list[FoldedRecord]) -> list[tuple[LoggedRecord, StateOp]]:
    """The StateOps the fold applied, in log order."""
    return [(f.logged, f.logged.record) for f in trace
            if isinstance(f.logged.record, StateOp) and f.changed]


_LOCK_HOLDER = r"""
import asyncio, json, sys
from edgebus.sdk import EdgeBus

async def main():
    state_id, lock_name, holder, region, lease_ms = sys.argv[1:6]
    bus = EdgeBus(discovery=False, client_id=holder)
    r = await bus.state(state_id, "lock", lock_name=lock_name, holder=holder,
                        lease_duration_ms=int(lease_ms), timeout_ms=10000, region=region)
    print(json.dumps(r.to_dict()), flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


@dataclass
class LockHolderProcess(ServiceProcess):
    """A child Python process that takes a lock (through its own EdgeBus, with the
    deployment's config), prints the answer and then holds on until killed."""

    regions: Regions
    holder: str = ""
    child: ChildProcess | None = field(default=None, init=False, repr=False)

    @property
    def log_path(self) -> Path:
        return self.regions.tmp / f"lock-{self.holder}.log"

    def take(self, state_id: str, lock_name: str, holder: str, region: str,
             lease_ms: int, timeout_s: float = 60.0) -> dict[str, Any]:
        """Start it; returns its lock result (``StateResult.to_dict()``)."""
        self.holder = holder
        line = self._launch(
            [sys.executable, "-c", _LOCK_HOLDER, state_id, lock_name, holder, region,
             str(lease_ms)],
            self.regions.env, f"lock holder {holder}", timeout_s,
        )
        return dict(json.loads(line))
