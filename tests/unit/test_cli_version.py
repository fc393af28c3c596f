"""``edgebus --version`` prints the installed version, as text or JSON, and exits 0; help
shows flags as flags."""

from __future__ import annotations

from importlib import metadata

from tests.conftest import run_cli


def test_version_prints_the_installed_version_and_exits_zero() -> None:
    code, _, out, err = run_cli(["--version"], timeout_s=60)
    assert (code, out.strip(), err) == (0, f"edgebus {metadata.version('edgebus')}", "")


def test_version_with_json_prints_one_json_document() -> None:
    code, parsed, _, _ = run_cli(["--json", "--version"], timeout_s=60)
    assert (code, parsed) == (0, {"version": metadata.version("edgebus")})


def test_help_renders_flags_as_flags_and_options_with_their_value_type() -> None:
    code, _, out, _ = run_cli(["bench", "materialize", "--help"], timeout_s=60)
    assert code == 0
    lines = {line.split()[1]: line for line in out.splitlines() if line.startswith("│ --")}
    assert "<bool>" not in lines["--json"]
    assert "<int" in lines["--events"]
