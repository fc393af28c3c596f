"""The wheel as a user gets it: ``python -m build --wheel``, ``pip install`` into a fresh
venv, then that venv's ``edgebus`` writes to the test broker.

The build runs on a copy of the checkout (the files git would commit), so setuptools'
``build/`` and ``*.egg-info`` land in a temporary directory, never in the repository.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import uuid
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

pytestmark = pytest.mark.kafka

REPO = Path(__file__).resolve().parents[2]
BUILD_TIMEOUT_S = 600.0  # an isolated build env: setuptools and wheel from PyPI or pip's cache
VENV_TIMEOUT_S = 120.0
INSTALL_TIMEOUT_S = 600.0  # edgebus's dependencies, from PyPI or pip's cache
CLI_TIMEOUT_S = 120.0
GIT_TIMEOUT_S = 60.0


def _compiler_here() -> bool:
    """Whether setuptools finds a C compiler here (``$CC``, else Python's own)."""
    cc = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")
    return bool(cc) and shutil.which(cc[0]) is not None


def _copy_source(target: Path) -> None:
    """Copy the files git would commit (tracked, or new and not ignored) into target."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, timeout=GIT_TIMEOUT_S, check=True,
    )  # fmt: skip
    for name in listed.stdout.decode().split("\0"):
        source = REPO / name
        if name and source.is_file():  # a tracked file deleted in the work tree: skip it
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


def _run(
    args: Sequence[str], cwd: Path, timeout: float, env: Mapping[str, str]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args), cwd=cwd, env=dict(env), capture_output=True, text=True, timeout=timeout,
        stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip


def _said(proc: subprocess.CompletedProcess[str]) -> str:
    return f"exit {proc.returncode}\nstdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}"


@pytest.mark.timeout(1500)
def test_the_wheel_installs_in_a_fresh_venv_and_its_cli_writes_to_kafka(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("EDGEBUS_NO_SPEEDUPS", "EDGEBUS_CONFIG", "PYTHONPATH", "VIRTUAL_ENV")
    }
    source, dist, venv = tmp_path / "source", tmp_path / "dist", tmp_path / "venv"
    _copy_source(source)

    built = _run([sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(source)],
                 tmp_path, BUILD_TIMEOUT_S, env)  # fmt: skip
    assert built.returncode == 0, _said(built)
    [wheel] = dist.glob("edgebus-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    compiled = [n for n in names if fnmatch.fnmatch(n, "edgebus/_speedups*.so")
                or fnmatch.fnmatch(n, "edgebus/_speedups*.pyd")]  # fmt: skip
    must_compile = os.environ.get("CI") == "true" or _compiler_here()
    if must_compile:
        assert len(compiled) == 1, f"{wheel.name} holds no edgebus._speedups:\n{_said(built)}"
    expected = {f"edgebus/_schemas/{p.name}" for p in (REPO / "schemas").glob("*.avsc")}
    assert expected, "the checkout has no schemas/*.avsc"
    assert {n for n in names if fnmatch.fnmatch(n, "edgebus/_schemas/*.avsc")} == expected

    made = _run([sys.executable, "-m", "venv", str(venv)], tmp_path, VENV_TIMEOUT_S, env)
    assert made.returncode == 0, _said(made)
    bin_dir = venv / ("Scripts" if os.name == "nt" else "bin")
    python, edgebus = str(bin_dir / "python"), str(bin_dir / "edgebus")
    installed = _run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                      str(wheel)], tmp_path, INSTALL_TIMEOUT_S, env)  # fmt: skip
    assert installed.returncode == 0, _said(installed)

    # run from tmp_path, never the checkout: the current directory must not shadow edgebus
    cli_env = {**env, "EDGEBUS_BOOTSTRAP": kafka_bootstrap,
               "EDGEBUS_STATE_DIR": str(tmp_path / "state")}  # fmt: skip
    helped = _run([edgebus, "--help"], tmp_path, CLI_TIMEOUT_S, cli_env)
    assert helped.returncode == 0, _said(helped)
    assert "write" in helped.stdout

    where = _run([python, "-c", "import json, edgebus, edgebus._speedups as s; "
                  "print(json.dumps([edgebus.__file__, s.__file__]))"],
                 tmp_path, CLI_TIMEOUT_S, cli_env)  # fmt: skip
    if must_compile:
        assert where.returncode == 0, _said(where)
        for path in map(Path, json.loads(where.stdout)):
            assert path.resolve().is_relative_to(venv.resolve()), path
            assert not path.resolve().is_relative_to(REPO), path

    key = f"wheel:{uuid.uuid4()}"
    wrote = _run([edgebus, "write", "--region", "us-east-1", "--key", key,
                  "--data", '{"a": 1}', "--json"], tmp_path, CLI_TIMEOUT_S, cli_env)  # fmt: skip
    assert wrote.returncode == 0, _said(wrote)
    receipt = json.loads(wrote.stdout)
    assert receipt["ok"] is True, receipt
    assert isinstance(receipt["offset"], int) and receipt["offset"] >= 0, receipt
