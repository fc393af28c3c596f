"""A watchdog for tests that hang: where every asyncio task waits, then an end.

pytest-timeout (``timeout`` in pyproject.toml) fails a test that runs too long by
raising from a SIGALRM handler in the main thread. Two things go wrong with that on an
asyncio test: the thread stacks it prints show only the idle event loop, never the
``await`` that hangs; and when the signal lands inside an event-loop callback, the
loop's exception handler logs the failure and swallows it, so the run hangs until CI
kills it with no summary at all.

The watchdog runs beside each test phase (setup, call, teardown) in a thread of its
own:

- shortly before the phase's timeout it writes the stack of every pending task of
  every open event loop to the phase's stderr (pytest shows it with the failure);
- if the phase is still running well after the timeout (the failure was swallowed),
  it interrupts the main thread with KeyboardInterrupt, which the event loop does not
  swallow: the session ends with its summary instead of hanging.
"""

from __future__ import annotations

import _thread
import asyncio
import gc
import io
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

#: the stacks are written this long before pytest-timeout's limit
DUMP_BEFORE_S = 15.0
#: the main thread is interrupted this long after the limit (a swallowed failure)
INTERRUPT_AFTER_S = 60.0


def _limit(item: pytest.Item) -> float | None:
    """The test's pytest-timeout limit in seconds (its mark, else the ini value)."""
    mark = item.get_closest_marker("timeout")
    if mark is not None and mark.args:
        return float(mark.args[0])
    value = item.config.getini("timeout")
    try:
        return float(value) or None
    except (TypeError, ValueError):
        return None


def task_stacks() -> str:
    """The stack of every pending task of every open event loop in this process."""
    out = io.StringIO()
    loops = [o for o in gc.get_objects() if isinstance(o, asyncio.AbstractEventLoop)]
    for loop in loops:
        if loop.is_closed():
            continue
        for _ in range(5):  # the set may change while it is copied from this thread
            try:
                tasks = list(asyncio.all_tasks(loop))
                break
            except RuntimeError:
                time.sleep(0.01)
        else:
            continue
        out.write(f"--- event loop {id(loop):#x}: {len(tasks)} pending tasks\n")
        for task in tasks:
            out.write(f"{task!r:.400}\n")
            try:
                task.print_stack(limit=25, file=out)
            except Exception as e:  # a task finishing under us
                out.write(f"  (no stack: {e})\n")
    return out.getvalue()


class _Watch:
    def __init__(self, what: str, limit_s: float) -> None:
        self.what = what
        self.limit_s = limit_s
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name="hang-watchdog", daemon=True)

    def _run(self) -> None:
        if self.done.wait(max(1.0, self.limit_s - DUMP_BEFORE_S)):
            return
        sys.stderr.write(
            f"\n===== hang watchdog: {self.what} still running after "
            f"{self.limit_s - DUMP_BEFORE_S:.0f} s; pending asyncio tasks:\n"
            f"{task_stacks()}===== end of the pending tasks\n"
        )
        sys.stderr.flush()
        if self.done.wait(DUMP_BEFORE_S + INTERRUPT_AFTER_S):
            return
        sys.__stderr__.write(
            f"\nhang watchdog: {self.what} outlived its timeout by {INTERRUPT_AFTER_S:.0f} s "
            "(pytest-timeout's failure was swallowed by an event-loop callback); "
            "interrupting the session\n"
        )
        _thread.interrupt_main()


def _watched(item: pytest.Item, phase: str) -> Iterator[None]:
    limit = _limit(item)
    if limit is None:
        yield
        return
    watch = _Watch(f"{item.nodeid} ({phase})", limit)
    watch.thread.start()
    try:
        yield
    finally:
        watch.done.set()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[Any]:
    """Watch the setup phase (fixtures)."""
    yield from _watched(item, "setup")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[Any]:
    """Watch the test body."""
    yield from _watched(item, "call")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Iterator[Any]:
    """Watch the teardown phase (fixtures' ends)."""
    yield from _watched(item, "teardown")
