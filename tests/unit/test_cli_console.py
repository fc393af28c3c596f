"""The CLI's console: edgebus's own warnings on stderr, the libraries' logs only with
``-v``, and Ctrl-C an exit code (130) with no traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

#: a program that runs the CLI's entry point after logging one line per kind
LOGS = """
import logging, sys
from edgebus import cli
sys.argv = ["edgebus", *sys.argv[1:]]
real = cli.app
def app():
    logging.getLogger("aiokafka.conn").warning("Unable connect to node with id 1")
    logging.getLogger("edgebus.sdk").warning("edgebus says this")
    logging.getLogger("edgebus.sdk").info("edgebus detail")
    real()
cli.app = app
cli.main()
"""


def _run(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "EDGEBUS_LOG_LEVEL"}
    env["EDGEBUS_STATE_DIR"] = str(tmp_path)
    return subprocess.run([sys.executable, "-c", LOGS, *args], capture_output=True,
                          text=True, timeout=60, env=env, check=False)


def test_by_default_only_edgebus_warnings_reach_the_terminal(tmp_path: Path) -> None:
    done = _run("--version", tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "edgebus says this\n"


def test_verbose_shows_the_libraries_logs_and_edgebus_info_with_names(tmp_path: Path) -> None:
    done = _run("-v", "--version", tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "aiokafka.conn WARNING Unable connect" in done.stderr
    assert "edgebus.sdk WARNING edgebus says this" in done.stderr


def test_ctrl_c_exits_130_without_a_traceback(tmp_path: Path) -> None:
    waits = LOGS.replace("    real()", "    import asyncio; asyncio.run(asyncio.sleep(60))")
    env = {**os.environ, "EDGEBUS_STATE_DIR": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-c", waits, "status"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    time.sleep(4)  # imports done, the command waiting
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.endswith("interrupted\n"), err
