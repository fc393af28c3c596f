"""Every CLI path ends with one line and an exit code, never a traceback.

Hostile input that needs no broker: bad and 100,000-deep config files, unknown regions,
non-numeric options, unknown commands, messages that look like rich markup, an error
nobody expected, and a dead-letter listing whose headers are forged. (A forged
dead-letter topic on a real broker: tests/integration/test_dead_letter_safety.py.)
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import ConsumerRecord
from typer.testing import CliRunner

from edgebus.cli import app
from edgebus.kafka import dead_letter_view
from tests.conftest import run_cli

DEEP = 100_000


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """No config (zero-config: us-east-1, eu-west-1, ap-south-1), a private state dir."""
    monkeypatch.delenv("EDGEBUS_CONFIG", raising=False)
    monkeypatch.delenv("EDGEBUS_DEBUG", raising=False)
    monkeypatch.setenv("EDGEBUS_STATE_DIR", str(tmp_path / "state"))
    yield {k: v for k, v in os.environ.items() if k not in ("EDGEBUS_CONFIG", "EDGEBUS_DEBUG")}


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def assert_one_line(result: Any, code: int, *fragments: str) -> str:
    """Exit ``code``, stderr exactly one ``error:`` line holding each fragment."""
    err = result.stderr
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output, result.output
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return str(lines[0])


@pytest.fixture
def deep_json(tmp_path: Path) -> Path:
    path = tmp_path / "deep.json"
    path.write_text('{"discovery": ' + "[" * DEEP + "]" * DEEP + "}", encoding="utf-8")
    return path


def test_config_files_that_cannot_be_configs_are_one_line_errors(
    env: dict[str, str], tmp_path: Path, deep_json: Path
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    deep_toml = tmp_path / "deep.toml"
    deep_toml.write_text("a = " + "[" * DEEP + "]" * DEEP + "\n", encoding="utf-8")
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe\x00{")
    listing = ("dlq", "list", "--region", "us-east-1", "--config")
    assert_one_line(invoke(*listing, str(bad)), 2, "is not valid JSON")
    assert_one_line(invoke(*listing, str(deep_json)), 2, "nested deeper than 64 levels")
    assert_one_line(invoke(*listing, str(deep_toml)), 2, "nested deeper than 64 levels")
    assert_one_line(invoke(*listing, str(binary)), 2, "is not UTF-8")
    assert_one_line(invoke(*listing, str(tmp_path / "missing.json")), 2, "Cannot read config")
    # typer refuses a directory before the command runs: a usage error, one line too
    assert_one_line(invoke(*listing, str(tmp_path)), 2, "--config", "--help")


def test_the_deep_config_is_one_line_from_the_installed_command_too(
    env: dict[str, str], deep_json: Path
) -> None:
    code, _, out, err = run_cli(["status", "--config", str(deep_json)], env, 60)
    assert code == 2, (out, err)
    assert "Traceback" not in err
    assert err.strip().count("\n") == 0 and "nested deeper than 64 levels" in err, err
    code, parsed, out, err = run_cli(["status", "--config", str(deep_json), "--json"], env, 60)
    assert code == 2 and parsed["ok"] is False and "nested deeper" in parsed["message"], out
    code, _, out, err = run_cli(["status"], {**env, "EDGEBUS_LOG_LEVEL": "loud"}, 60)
    assert code == 2 and err.strip().count("\n") == 0, (out, err)
    assert "EDGEBUS_LOG_LEVEL='loud' is not a log level" in err, err


def test_unknown_regions_and_non_numeric_options_are_one_line_errors(
    env: dict[str, str],
) -> None:
    assert_one_line(invoke("dlq", "list", "--region", "us-east-2"), 2,
                    "Unknown region 'us-east-2'", "did you mean 'us-east-1'")
    # a name that rich would read as markup is printed as it is
    assert_one_line(invoke("dlq", "list", "--region", "[/bold][red]x"), 2, "'[/bold][red]x'")
    assert_one_line(invoke("read", "k", "--wait-ms", "abc"), 2, "--wait-ms", "--help")
    assert_one_line(invoke("dlq", "redrive", "--region", "us-east-1", "--offset", "x:y"), 2,
                    "is not PARTITION:OFFSET")
    assert_one_line(invoke("dlq", "redrive", "--region", "us-east-1", "--offset",
                           "1:" + "9" * 5000), 2, "is not PARTITION:OFFSET")
    assert_one_line(invoke("no-such-command"), 2, "No such command")
    assert_one_line(invoke("read"), 2, "Missing argument")


def test_usage_errors_in_json_mode_are_one_json_document(env: dict[str, str]) -> None:
    result = invoke("read", "k", "--wait-ms", "abc", "--json")
    assert result.exit_code == 2
    document = json.loads(result.stdout)
    assert document["ok"] is False and "--wait-ms" in document["message"]


def test_an_unexpected_error_is_one_line_unless_edgebus_debug(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(config: Any, region: str) -> Any:
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(dead_letter_view, "list_dead_letters", broken)
    line = assert_one_line(invoke("dlq", "list", "--region", "us-east-1"), 1,
                           "internal error: RuntimeError: boom second line",
                           "EDGEBUS_DEBUG=1")
    assert line.endswith("for the traceback)")
    result = invoke("dlq", "list", "--region", "us-east-1", "--json")
    assert result.exit_code == 1
    assert "internal error: RuntimeError" in json.loads(result.stdout)["message"]
    monkeypatch.setenv("EDGEBUS_DEBUG", "1")
    result = invoke("dlq", "list", "--region", "us-east-1")
    assert isinstance(result.exception, RuntimeError)  # the traceback, when asked for


def forged(offset: int, headers: list[tuple[str, bytes | None]]) -> ConsumerRecord:
    return ConsumerRecord("edgebus.us-east-1.dlq", 0, offset, 0, 0, b"k\x1b[31m", b"v", None,
                          1, 1, headers)


def test_a_listing_of_forged_letters_prints_invalid_fields(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    letters = [
        forged(0, [("eb-dlq-time", b"soon"), ("eb-dlq-reason", b"\xff\xfe[/bold]"),
                   ("eb-dlq-stage", b"other"), ("eb-dlq-source", b"::")]),
        forged(1, [("eb-dlq-time", b"9" * 40), ("eb-dlq-region", None)]),
        forged(2, [("eb-dlq-time", str(10**13 - 1).encode()), ("eb-dlq-truncated", b"12"),
                   ("eb-dlq-stage", b"materialize")]),
        forged(3, []),
    ]

    async def listing(config: Any, region: str) -> Any:
        return [dead_letter_view.decode_dead_letter(r) for r in letters]

    monkeypatch.setattr(dead_letter_view, "list_dead_letters", listing)
    result = invoke("dlq", "list", "--region", "us-east-1")
    assert result.exit_code == 0, (result.output, result.exception)
    assert "(invalid)" in result.stdout and "\x1b" not in result.stdout
    result = invoke("dlq", "list", "--region", "us-east-1", "--json")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)["dead_letters"]
    assert [d["time_ms"] for d in shown] == [None, None, 10**13 - 1, None]
    assert shown[0]["invalid"].keys() >= {"eb-dlq-time", "eb-dlq-reason", "eb-dlq-stage",
                                          "eb-dlq-source"}
    assert shown[2]["reference"] is True and shown[2]["original_bytes"] == 12
