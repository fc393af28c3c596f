"""``--plot``: the figures of bench materialize, replicate and replay drawn into PNG files
from hand-made results (no broker), the errors of a path or an install that cannot draw,
and the CLI wiring (the bench itself replaced by a stub returning those results)."""

from __future__ import annotations

import json
import random
import struct
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from edgebus.bench.plots import (
    DPI,
    FIGURE_SIZE,
    check_plot_path,
    plot_materialize,
    plot_replay,
    plot_replicate,
)
from edgebus.bench.replicate import ReplicateResult
from edgebus.cli import app
from edgebus.errors import InvalidInput

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: an empty white figure of this size is a few kB; one with bars, curves and text is more
NON_TRIVIAL_BYTES = 15_000

MATERIALIZE = {
    "events": 100_000, "rounds": 3, "region": "bench-mat-abc123", "bootstrap": "localhost:9092",
    "fill_writes_per_s": 41_234.5, "keys": 22_501,
    "edgebus_events_per_s": 61_000.0, "raw_events_per_s": 180_000.0, "ratio": 0.339,
    "edgebus_rounds": [59_500.0, 61_000.0, 63_250.0],
    "raw_rounds": [175_000.0, 180_000.0, 190_500.0],
}

REPLAY = {
    "region": "bench-replay-abc123", "bootstrap": "localhost:9092", "topic_events": 1_000_000,
    "reused": False, "filled": 1_000_000, "fill_writes_per_s": 9_000.0,
    "sizes": [
        {"events": events, "replay_events_per_s": 60_000.0 + events / 100,
         "raw_events_per_s": 400_000.0, "ratio": 0.16, "replay_peak_rss_mb": 80.0 + events / 1e5,
         "raw_peak_rss_mb": 60.0, "replay_seconds": 5.0, "raw_seconds": 1.0, "keys": events // 5,
         "store_mb": events / 1e4}
        for events in (500_000, 250_000, 1_000_000)  # out of order: the plot sorts them
    ],
    "events": 1_000_000, "replay_events_per_s": 70_000.0, "raw_events_per_s": 400_000.0,
    "ratio": 0.175, "replay_peak_rss_growth": 1.09,
}


def replicate_result() -> ReplicateResult:
    rng = random.Random(7)
    edgebus = [rng.lognormvariate(2.8, 0.5) for _ in range(2000)]
    raw = [rng.lognormvariate(1.9, 0.3) for _ in range(2000)]
    return ReplicateResult(
        rate=500.0, seconds=4.0, rounds=1, writes=2000, source_region="bench-repa-aaaaaa",
        target_region="bench-repb-bbbbbb", bootstrap="localhost:9092",
        edgebus_p50_ms=16.4, edgebus_p99_ms=52.0, edgebus_max_ms=80.1,
        raw_p50_ms=6.7, raw_p99_ms=13.6, raw_max_ms=20.0, p50_ratio=2.448, p99_ratio=3.824,
        edgebus_lags_ms=edgebus, raw_lags_ms=raw,
    )


def assert_png(path: Path) -> None:
    """A PNG of the figures' size, with more in it than an empty canvas."""
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (FIGURE_SIZE[0] * DPI, FIGURE_SIZE[1] * DPI)
    assert len(data) > NON_TRIVIAL_BYTES, len(data)


def test_materialize_rounds_are_drawn_into_a_png(tmp_path: Path) -> None:
    path = tmp_path / "materialize.png"
    assert plot_materialize(MATERIALIZE, path) == path
    assert_png(path)


def test_replicate_lag_distributions_are_drawn_into_a_png(tmp_path: Path) -> None:
    result = replicate_result()
    path = tmp_path / "replicate.png"
    assert plot_replicate(result.to_dict(), result.edgebus_lags_ms, result.raw_lags_ms,
                          path) == path
    assert_png(path)


def test_replicate_without_samples_still_marks_the_percentiles(tmp_path: Path) -> None:
    path = tmp_path / "replicate.png"
    plot_replicate(replicate_result().to_dict(), [], [], path)
    assert path.read_bytes()[:8] == PNG_MAGIC


def test_the_replicate_document_leaves_the_lag_samples_out() -> None:
    document = replicate_result().to_dict()
    assert "edgebus_lags_ms" not in document and "raw_lags_ms" not in document
    assert document["p99_ratio"] == 3.824
    json.dumps(document)


def test_replay_rates_and_memory_are_drawn_into_a_png(tmp_path: Path) -> None:
    path = tmp_path / "replay.png"
    assert plot_replay(REPLAY, path) == path
    assert_png(path)


def test_an_existing_png_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "materialize.png"
    path.write_bytes(b"old")
    plot_materialize(MATERIALIZE, path)
    assert_png(path)


def test_a_missing_output_directory_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "no" / "such" / "dir" / "materialize.png"
    with pytest.raises(InvalidInput, match=r"directory .*dir does not exist; create it"):
        check_plot_path(path)
    with pytest.raises(InvalidInput, match="does not exist"):
        plot_materialize(MATERIALIZE, path)
    assert not path.parent.exists()


def test_a_directory_is_not_a_plot_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="it is a directory"):
        plot_replay(REPLAY, tmp_path)


def test_without_matplotlib_the_error_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [n for n in sys.modules if n == "matplotlib" or n.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(InvalidInput, match=r"pip install 'edgebus\[plot\]'"):
        check_plot_path(tmp_path / "x.png")
    with pytest.raises(InvalidInput, match=r"pip install 'edgebus\[plot\]'"):
        plot_materialize(MATERIALIZE, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


# --- the CLI: `--plot` with the benchmark replaced by a stub ---------------------------


class _Result:
    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document

    def to_dict(self) -> dict[str, Any]:
        return dict(self.document)


@pytest.fixture
def stubbed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """The three benchmarks return the hand-made results at once; the names of those run."""
    monkeypatch.delenv("EDGEBUS_CONFIG", raising=False)
    monkeypatch.setenv("EDGEBUS_STATE_DIR", str(tmp_path / "state"))
    ran: list[str] = []

    async def materialize(*_args: Any) -> _Result:
        ran.append("materialize")
        return _Result(MATERIALIZE)

    async def replicate(*_args: Any) -> ReplicateResult:
        ran.append("replicate")
        return replicate_result()

    async def replay(*_args: Any) -> _Result:
        ran.append("replay")
        return _Result(REPLAY)

    monkeypatch.setattr("edgebus.cli.bench.run_materialize_bench", materialize)
    monkeypatch.setattr("edgebus.cli.bench.run_replicate_bench", replicate)
    monkeypatch.setattr("edgebus.cli.bench.run_replay_bench", replay)
    return ran


@pytest.mark.parametrize("command", ["materialize", "replicate", "replay"])
def test_cli_json_names_the_png_it_wrote(
    command: str, stubbed: list[str], tmp_path: Path
) -> None:
    path = tmp_path / f"{command}.png"
    result = CliRunner().invoke(app, ["bench", command, "--json", "--plot", str(path)])
    assert result.exit_code == 0, (result.output, result.exception)
    document = json.loads(result.stdout)
    assert document["plot"] == str(path)
    assert "edgebus_lags_ms" not in document and "raw_lags_ms" not in document
    assert_png(path)
    assert stubbed == [command]


def test_cli_without_plot_writes_no_png_and_no_plot_key(
    stubbed: list[str], tmp_path: Path
) -> None:
    result = CliRunner().invoke(app, ["bench", "replicate", "--json"])
    assert result.exit_code == 0, (result.output, result.exception)
    assert "plot" not in json.loads(result.stdout)
    assert list(tmp_path.glob("*.png")) == []


def test_cli_human_output_ends_with_the_png_path(stubbed: list[str], tmp_path: Path) -> None:
    path = tmp_path / "materialize.png"
    result = CliRunner().invoke(app, ["bench", "materialize", "--plot", str(path)])
    assert result.exit_code == 0, (result.output, result.exception)
    assert result.stdout.strip().splitlines()[-1] == f"plot: {path}"
    assert_png(path)


def test_cli_refuses_a_missing_directory_before_running_the_benchmark(
    stubbed: list[str], tmp_path: Path
) -> None:
    path = tmp_path / "missing" / "replay.png"
    result = CliRunner().invoke(app, ["bench", "replay", "--plot", str(path)])
    assert result.exit_code == 2, (result.output, result.exception)
    assert "does not exist" in result.stderr
    assert stubbed == []
