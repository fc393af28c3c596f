"""``edgebus bench ...``: throughput figures as ratios against raw aiokafka.

This module holds the group and the throughput benchmarks (produce, materialize,
replicate, replay); ``read``, ``strong`` and ``state``, which run region services and
coordinators of their own, are in ``_bench_read``, ``_bench_strong`` and ``_bench_state``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from edgebus.bench.materialize import run_materialize_bench
from edgebus.bench.plots import check_plot_path, plot_materialize, plot_replay, plot_replicate
from edgebus.bench.produce import run_produce_bench
from edgebus.bench.replay import run_replay_bench
from edgebus.bench.replicate import run_replicate_bench
from edgebus.cli._bench_read import read
from edgebus.cli._bench_state import state
from edgebus.cli._bench_strong import strong
from edgebus.cli._common import ConfigOption, JsonOption, store_dir_option
from edgebus.cli._output import console
from edgebus.cli._runner import Call, Document, OptionError, run_command

__all__ = ["app"]

app = typer.Typer(help="Benchmarks against raw aiokafka on the same broker, same run.")

PlotOption: Any = typer.Option(
    None, "--plot", dir_okay=False,
    help="Also draw the run's figures into this PNG file (needs: pip install 'edgebus\\[plot]').",
)


@app.command("produce")
def produce(
    ctx: typer.Context,
    events: int = typer.Option(20_000, "--events", min=100, help="Writes per round."),
    concurrency: int = typer.Option(256, "--concurrency", min=1, help="Writes in flight."),
    rounds: int = typer.Option(5, "--rounds", min=1, help="Alternating rounds per side."),
    region: str | None = typer.Option(None, "--region", help="Region to write to."),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """SDK writes/s vs raw aiokafka sends/s of the same bytes (goal: ratio >= 0.8)."""

    async def body(call: Call) -> Document:
        result = await run_produce_bench(call.config, events, concurrency, rounds, region)
        return result.to_dict()

    run_command(ctx, body, as_json=as_json, config=config, render=_render_produce)


def _rates_table(
    title: str, sides: list[tuple[str, float, list[float]]], ratio: str
) -> None:
    """A throughput comparison: per side, its median events/s and each round's."""
    table = Table(title=title)
    table.add_column("side")
    table.add_column("median events/s", justify="right")
    table.add_column("rounds", justify="right")
    for label, median, rounds in sides:
        table.add_row(label, f"{median:,.0f}", ", ".join(f"{r:,.0f}" for r in rounds))
    console.print(table)
    console.print(ratio)


def _render_produce(data: dict[str, Any]) -> None:
    _rates_table(
        f"bench produce: {data['events']} events x {data['rounds']} rounds, "
        f"{data['concurrency']} in flight, {data['value_bytes']}-byte values",
        [("edgebus SDK", data["sdk_writes_per_s"], data["sdk_rounds"]),
         ("raw aiokafka", data["raw_sends_per_s"], data["raw_rounds"])],
        f"ratio SDK/raw: [bold]{data['ratio']:.3f}[/] (goal >= 0.8)",
    )


@app.command("materialize")
def materialize(
    ctx: typer.Context,
    events: int = typer.Option(100_000, "--events", min=100, help="Events to pre-fill."),
    rounds: int = typer.Option(3, "--rounds", min=1, help="Alternating rounds per side."),
    store_dir: Path | None = store_dir_option("the round stores go"),
    plot: Path | None = PlotOption,
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Events applied/s by the region materializer vs a raw aiokafka consume (goal >= 0.5)."""

    async def body(call: Call) -> Document:
        if plot is not None:
            check_plot_path(plot)  # before the run, not after it
        result = await run_materialize_bench(call.config, events, rounds, store_dir)
        document = result.to_dict()
        if plot is not None:
            document["plot"] = str(plot_materialize(document, plot))
        return document

    run_command(ctx, body, as_json=as_json, config=config, render=_render_materialize)


def _render_materialize(data: dict[str, Any]) -> None:
    _rates_table(
        f"bench materialize: {data['events']:,} events ({data['keys']:,} keys) "
        f"x {data['rounds']} rounds, region {data['region']}",
        [("edgebus materializer", data["edgebus_events_per_s"], data["edgebus_rounds"]),
         ("raw aiokafka consume", data["raw_events_per_s"], data["raw_rounds"])],
        f"ratio edgebus/raw: [bold]{data['ratio']:.3f}[/] (goal >= 0.5)",
    )
    _render_plot(data)


@app.command("replicate")
def replicate(
    ctx: typer.Context,
    rate: float = typer.Option(500.0, "--rate", min=1, help="Writes per second."),
    seconds: float = typer.Option(10.0, "--seconds", min=0.1, help="Length of each phase."),
    rounds: int = typer.Option(1, "--rounds", min=1, help="Alternating phases per side."),
    store_dir: Path | None = store_dir_option("region B's store goes"),
    plot: Path | None = PlotOption,
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Write in A to readable in B, p50/p99, vs raw produce-to-consume (goal: p99 <= 3x)."""

    async def body(call: Call) -> Document:
        if plot is not None:
            check_plot_path(plot)
        result = await run_replicate_bench(call.config, rate, seconds, rounds, store_dir)
        document = result.to_dict()  # without the lag samples, which only the plot draws
        if plot is not None:
            document["plot"] = str(plot_replicate(
                document, result.edgebus_lags_ms, result.raw_lags_ms, plot))
        return document

    run_command(ctx, body, as_json=as_json, config=config, render=_render_replicate)


def _render_replicate(data: dict[str, Any]) -> None:
    table = Table(title=f"bench replicate: {data['rate']:,.0f} writes/s for {data['seconds']} s "
                  f"x {data['rounds']}, {data['source_region']} -> {data['target_region']}")
    table.add_column("side")
    table.add_column("p50 ms", justify="right")
    table.add_column("p99 ms", justify="right")
    table.add_column("max ms", justify="right")
    table.add_row("edgebus A -> B store", f"{data['edgebus_p50_ms']:.1f}",
                  f"{data['edgebus_p99_ms']:.1f}", f"{data['edgebus_max_ms']:.1f}")
    table.add_row("raw produce -> consume", f"{data['raw_p50_ms']:.1f}",
                  f"{data['raw_p99_ms']:.1f}", f"{data['raw_max_ms']:.1f}")
    console.print(table)
    console.print(f"p99 ratio edgebus/raw: [bold]{data['p99_ratio']:.2f}[/] (goal <= 3); "
                  f"p50 ratio {data['p50_ratio']:.2f}")
    _render_plot(data)


@app.command("replay")
def replay(
    ctx: typer.Context,
    events: int = typer.Option(1_000_000, "--events", min=100, help="Events in the region."),
    fractions: str = typer.Option(
        "0.25,0.5,1", "--fractions", help="Prefixes to replay, as fractions of --events."
    ),
    region: str | None = typer.Option(
        None, "--region",
        help="Region to fill, or to reuse if its topic holds --events already "
        "(default: a fresh one; its name is in the output).",
    ),
    concurrency: int = typer.Option(256, "--concurrency", min=1, help="Fill writes in flight."),
    store_dir: Path | None = store_dir_option("replay stores go"),
    plot: Path | None = PlotOption,
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Replay events/s and peak memory per prefix vs a raw aiokafka consume."""

    async def body(call: Call) -> Document:
        try:
            shares = [float(f) for f in fractions.split(",") if f.strip()]
        except ValueError:
            raise OptionError(
                f"--fractions {fractions!r}: give numbers like 0.25,0.5,1") from None
        if not shares or not all(0 < f <= 1 for f in shares):
            raise OptionError(f"--fractions {fractions!r}: each must be in (0, 1]")
        if plot is not None:
            check_plot_path(plot)
        result = await run_replay_bench(call.config, events, shares, region, store_dir,
                                        concurrency)
        document = result.to_dict()
        if plot is not None:
            document["plot"] = str(plot_replay(document, plot))
        return document

    run_command(ctx, body, as_json=as_json, config=config, render=_render_replay)


def _render_replay(data: dict[str, Any]) -> None:
    source = "reused" if data["reused"] else f"filled {data['filled']:,} at " \
        f"{data['fill_writes_per_s']:,.0f} writes/s"
    table = Table(title=f"bench replay: region {data['region']} "
                  f"({data['topic_events']:,} events, {source})")
    for name in ("events", "keys", "store MB", "replay events/s", "raw events/s", "ratio",
                 "replay peak MB", "raw peak MB"):
        table.add_column(name, justify="right")
    for s in data["sizes"]:
        table.add_row(f"{s['events']:,}", f"{s['keys']:,}", f"{s['store_mb']:,.1f}",
                      f"{s['replay_events_per_s']:,.0f}",
                      f"{s['raw_events_per_s']:,.0f}", f"{s['ratio']:.3f}",
                      f"{s['replay_peak_rss_mb']:.1f}", f"{s['raw_peak_rss_mb']:.1f}")
    console.print(table)
    console.print(f"replay peak memory, largest / smallest prefix: "
                  f"[bold]{data['replay_peak_rss_growth']:.2f}[/]")
    _render_plot(data)


def _render_plot(data: dict[str, Any]) -> None:
    """The PNG a ``--plot`` run wrote, if any."""
    if "plot" in data:
        console.print(f"plot: {escape(data['plot'])}", soft_wrap=True, highlight=False)


# registered here, in this order, so that `edgebus bench --help` lists them as before
app.command("read")(read)
app.command("strong")(strong)
app.command("state")(state)
