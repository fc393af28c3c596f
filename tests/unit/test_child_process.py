"""The tests' child-process helper (tests/child_process.py), with plain Python children:
no Kafka. Deadlines are a few seconds; the only timing asserted is that a wait gave up
before a generous bound."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import pytest

from tests.child_process import ChildExited, ChildProcess, ChildTimedOut

#: far above every deadline below: a wait that passes it did not honour its deadline
BOUND_S = 30.0


def python(tmp_path: Path, script: str, name: str = "child") -> ChildProcess:
    return ChildProcess([sys.executable, "-u", "-c", script], log=tmp_path / f"{name}.log",
                        name=name)


#: SIGTERM handlers of :func:`started_sleeper`
IGNORES_SIGTERM = "signal.SIG_IGN"
EXITS_0_ON_SIGTERM = "lambda *_: sys.exit(0)"


def started_sleeper(tmp_path: Path, on_sigterm: str) -> ChildProcess:
    """A child that handles SIGTERM with ``on_sigterm``, prints ``ready`` and sleeps;
    started, and ready."""
    child = python(tmp_path, "import signal, sys, time\n"
                             f"signal.signal(signal.SIGTERM, {on_sigterm})\n"
                             "print('ready', flush=True)\n"
                             "time.sleep(600)\n")
    child.start(ready_line="ready", timeout_s=BOUND_S)
    return child


def test_a_child_that_prints_its_ready_line_is_ready_and_the_line_is_returned(
    tmp_path: Path,
) -> None:
    child = python(tmp_path, "import sys, time\n"
                             "print('warming up')\n"
                             "print('starting', file=sys.stderr)\n"
                             "print('{\"ok\": true}', flush=True)\n"
                             "time.sleep(60)\n")
    with child:
        line = child.start(ready_line="{", timeout_s=BOUND_S)
        assert line == '{"ok": true}'
        assert child.alive()
        assert child.stdout_lines() == ["warming up", '{"ok": true}']
        assert "starting" in child.log_tail()
    assert not child.alive()
    assert child.returncode == -signal.SIGTERM


def test_a_child_that_prints_nothing_and_hangs_fails_once_its_deadline_passes(
    tmp_path: Path,
) -> None:
    child = python(tmp_path, "import time; time.sleep(600)", name="silent")
    started = time.monotonic()
    with pytest.raises(ChildTimedOut) as caught:
        child.start(ready_line="{", timeout_s=1.0)
    assert time.monotonic() - started < BOUND_S
    message = str(caught.value)
    assert "silent" in message and "not ready within 1 s" in message
    assert "time.sleep(600)" in message  # the command is named
    assert not child.alive()  # killed and reaped
    assert child.returncode == -signal.SIGKILL


def test_a_ready_condition_has_a_deadline_too(tmp_path: Path) -> None:
    child = python(tmp_path, "import time; time.sleep(600)")
    started = time.monotonic()
    with pytest.raises(ChildTimedOut, match="its ready condition"):
        child.start(ready=lambda: (tmp_path / "never").exists(), timeout_s=1.0)
    assert time.monotonic() - started < BOUND_S
    assert not child.alive()


def test_a_ready_condition_that_comes_true_makes_the_child_ready(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    child = python(tmp_path, f"import pathlib, time\n"
                             f"pathlib.Path({str(marker)!r}).touch()\n"
                             f"time.sleep(60)\n")
    with child:
        assert child.start(ready=marker.exists, timeout_s=BOUND_S) is None
        assert child.alive()


def test_a_child_that_exits_before_it_is_ready_is_reported_with_its_exit_code_and_output(
    tmp_path: Path,
) -> None:
    child = python(tmp_path, "import sys\n"
                             "print('half-way')\n"
                             "print('config is broken', file=sys.stderr)\n"
                             "sys.exit(3)\n")
    started = time.monotonic()
    with pytest.raises(ChildExited) as caught:
        child.start(ready_line="{", timeout_s=BOUND_S)
    assert time.monotonic() - started < BOUND_S
    assert caught.value.returncode == 3
    message = str(caught.value)
    assert "exited with code 3" in message
    assert "half-way" in message and "config is broken" in message


def test_stop_kills_a_child_that_ignores_sigterm_once_the_grace_period_is_over(
    tmp_path: Path,
) -> None:
    child = started_sleeper(tmp_path, IGNORES_SIGTERM)
    started = time.monotonic()
    assert child.stop(grace_s=1.0) == -signal.SIGKILL
    assert time.monotonic() - started < BOUND_S
    assert not child.alive()


def test_stop_of_a_child_that_honours_sigterm_reaps_it_with_its_own_exit_code(
    tmp_path: Path,
) -> None:
    child = started_sleeper(tmp_path, EXITS_0_ON_SIGTERM)
    assert child.stop(grace_s=BOUND_S) == 0
    assert child.stop() == 0  # stopping a stopped child changes nothing


def test_a_paused_child_is_alive_and_stop_still_ends_it(tmp_path: Path) -> None:
    child = started_sleeper(tmp_path, EXITS_0_ON_SIGTERM)
    child.pause()
    assert child.alive()
    child.resume()
    child.pause()
    assert child.stop(grace_s=BOUND_S) == 0  # SIGCONT follows the SIGTERM


def test_kill_is_sigkill_and_a_restart_on_the_same_files_looks_only_at_its_own_output(
    tmp_path: Path,
) -> None:
    script = "import sys, time\nprint(sys.argv[1], flush=True)\ntime.sleep(600)\n"
    log = tmp_path / "svc.log"
    first = ChildProcess([sys.executable, "-c", script, "{first}"], log=log)
    first.start(ready_line="{", timeout_s=BOUND_S)
    assert first.kill() == -signal.SIGKILL
    second = ChildProcess([sys.executable, "-c", script, "{second}"], log=log)
    with second:
        assert second.start(ready_line="{", timeout_s=BOUND_S) == "{second}"
    assert (tmp_path / "svc.stdout").read_text().splitlines() == ["{first}", "{second}"]


def test_wait_returns_the_exit_code_or_fails_after_its_timeout(tmp_path: Path) -> None:
    quick = python(tmp_path, "print('done')", name="quick")
    quick.start()
    assert quick.wait(BOUND_S) == 0
    assert quick.stdout_text() == "done\n"
    slow = python(tmp_path, "import time; time.sleep(600)", name="slow")
    with slow:
        slow.start()
        with pytest.raises(ChildTimedOut, match="still runs after"):
            slow.wait(0.5)
        assert slow.alive()
    assert not slow.alive()


def test_one_file_can_take_both_stdout_and_stderr(tmp_path: Path) -> None:
    log = tmp_path / "both.log"
    child = ChildProcess([sys.executable, "-c", "import sys\nprint('out', flush=True)\n"
                          "print('err', file=sys.stderr, flush=True)\nsys.exit(5)\n"],
                         log=log, stdout=log)
    with pytest.raises(ChildExited) as caught:
        child.start(ready_line="{", timeout_s=BOUND_S)
    assert caught.value.returncode == 5
    assert "out" in str(caught.value) and "err" in str(caught.value)
    both = log.read_text()  # the two streams interleave as the child wrote them
    assert "out" in both and "err" in both


def test_two_children_on_the_same_files_each_find_only_their_own_ready_line(
    tmp_path: Path,
) -> None:
    # an old and a new service of one region share their log files and run together;
    # the old one answers the new one's arrival with a line that must not be taken for
    # the new one's ready line
    go = tmp_path / "go"
    old_script = (f"import pathlib, time\n"
                  f"print('{{old}}', flush=True)\n"
                  f"while not pathlib.Path({str(go)!r}).exists(): time.sleep(0.01)\n"
                  f"print('{{\"ok\": false}}', flush=True)\n"
                  f"time.sleep(600)\n")
    new_script = (f"import pathlib, time\n"
                  f"pathlib.Path({str(go)!r}).touch()\n"
                  f"time.sleep(0.5)\n"
                  f"print('{{new}}', flush=True)\n"
                  f"time.sleep(600)\n")
    log = tmp_path / "region.log"
    old = ChildProcess([sys.executable, "-c", old_script], log=log)
    new = ChildProcess([sys.executable, "-c", new_script], log=log)
    with old, new:
        assert old.start(ready_line="{", timeout_s=BOUND_S) == "{old}"
        assert new.start(ready_line="{", timeout_s=BOUND_S) == "{new}"
        old.wait_ready(ready_line='{"ok": false}', timeout_s=BOUND_S)
    copied = (tmp_path / "region.stdout").read_text()  # a copy of both children's stdout
    assert all(line in copied for line in ("{old}", '{"ok": false}', "{new}"))
