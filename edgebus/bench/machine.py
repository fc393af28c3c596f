"""What the machine gave a benchmark run: its load averages, and each process's CPU
time and run-queue wait (Linux ``/proc/PID/task/*/schedstat``). On a shared machine
they tell how much of a latency was waiting for a CPU."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["ProcessClock", "ProcessTime", "load_average", "process_times", "schedstat"]


@dataclass
class ProcessTime:
    """What one process of the run got from the machine while the batches ran:
    seconds on a CPU, and seconds runnable but waiting for one (Linux schedstat, all
    its threads). Waiting many times its CPU time means the machine was the limit."""

    process: str
    cpu_s: float
    runqueue_wait_s: float


def schedstat(pid: int) -> tuple[float, float] | None:
    """Seconds on a CPU and waiting in a run queue, summed over ``pid``'s threads
    (``None`` where /proc/PID/task/*/schedstat cannot be read: not Linux)."""
    cpu = wait = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat", encoding="ascii") as f:
                fields = f.read().split()
        except OSError:
            continue  # a thread that ended meanwhile
        cpu += int(fields[0])
        wait += int(fields[1])
    return cpu / 1e9, wait / 1e9


def process_times(
    before: dict[str, tuple[float, float] | None], after: dict[str, tuple[float, float] | None]
) -> list[ProcessTime]:
    """What each named process got between two readings of :func:`schedstat` (those
    read both times), in the order of ``after``."""
    out = []
    for name, end in after.items():
        start = before.get(name)
        if start is not None and end is not None:
            out.append(ProcessTime(name, round(end[0] - start[0], 2),
                                   round(end[1] - start[1], 2)))
    return out


class ProcessClock:
    """The schedstat of named processes from its creation until :meth:`read`."""

    def __init__(self, pids: Mapping[str, int]) -> None:
        self.pids = dict(pids)
        self.before = {name: schedstat(pid) for name, pid in self.pids.items()}

    def read(self) -> list[ProcessTime]:
        """What each process got since the clock was created (:func:`process_times`)."""
        return process_times(
            self.before, {name: schedstat(pid) for name, pid in self.pids.items()})


def load_average() -> list[float]:
    """The machine's 1, 5 and 15 minute load averages (empty where unknown)."""
    with contextlib.suppress(OSError):
        return [round(x, 2) for x in os.getloadavg()]
    return []
