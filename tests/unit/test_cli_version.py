"""``edgebus --version`` prints the installed version, as text or JSON, and exits 0."""

from __future__ import annotations

from importlib import metadata

from tests.conftest import run_cli


def test_version_prints_the_installed_version_and_exits_zero() -> None:
    code, _, out, err = run_cli(["--version"], timeout_s=60)
    assert (code, out.strip(), err) == (0, f"edgebus {metadata.version('edgebus')}", "")


def test_version_with_json_prints_one_json_document() -> None:
    code, parsed, _, _ = run_cli(["--json", "--version"], timeout_s=60)
    assert (code, parsed) == (0, {"version": metadata.version("edgebus")})
