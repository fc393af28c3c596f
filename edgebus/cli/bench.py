"""``edgebus bench ...``: throughput figures as ratios against raw aiokafka."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from edgebus.bench.materialize import run_materialize_bench
from edgebus.bench.produce import run_produce_bench
from edgebus.bench.read import run_read_bench
from edgebus.bench.replay import run_replay_bench
from edgebus.bench.replicate import run_replicate_bench
from edgebus.bench.state import DEFAULT_CONCURRENCY as STATE_CONCURRENCY
from edgebus.bench.state import run_state_bench
from edgebus.bench.strong import run_strong_bench
from edgebus.cli._common import ConfigOption, JsonOption, load_cli_config
from edgebus.cli._output import console, emit, fail, json_mode
from edgebus.errors import EdgebusError

__all__ = ["app"]

app = typer.Typer(help="Benchmarks against raw aiokafka on the same broker, same run.")


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
    as_json = json_mode(ctx, as_json)
    try:
        result = asyncio.run(
            run_produce_bench(load_cli_config(config), events, concurrency, rounds, region)
        )
    except EdgebusError as e:
        raise fail(as_json, e) from None
    emit(as_json, result.to_dict(), _render)


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


def _render(data: dict[str, Any]) -> None:
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
    store_dir: Path | None = typer.Option(
        None, "--store-dir", file_okay=False, help="Where the round stores go (default: temp)."
    ),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Events applied/s by the region materializer vs a raw aiokafka consume (goal >= 0.5)."""
    as_json = json_mode(ctx, as_json)
    try:
        result = asyncio.run(
            run_materialize_bench(load_cli_config(config), events, rounds, store_dir)
        )
    except EdgebusError as e:
        raise fail(as_json, e) from None
    emit(as_json, result.to_dict(), _render_materialize)


def _render_materialize(data: dict[str, Any]) -> None:
    _rates_table(
        f"bench materialize: {data['events']:,} events ({data['keys']:,} keys) "
        f"x {data['rounds']} rounds, region {data['region']}",
        [("edgebus materializer", data["edgebus_events_per_s"], data["edgebus_rounds"]),
         ("raw aiokafka consume", data["raw_events_per_s"], data["raw_rounds"])],
        f"ratio edgebus/raw: [bold]{data['ratio']:.3f}[/] (goal >= 0.5)",
    )


@app.command("replicate")
def replicate(
    ctx: typer.Context,
    rate: float = typer.Option(500.0, "--rate", min=1, help="Writes per second."),
    seconds: float = typer.Option(10.0, "--seconds", min=0.1, help="Length of each phase."),
    rounds: int = typer.Option(1, "--rounds", min=1, help="Alternating phases per side."),
    store_dir: Path | None = typer.Option(
        None, "--store-dir", file_okay=False, help="Where region B's store goes (default: temp)."
    ),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Write in A to readable in B, p50/p99, vs raw produce-to-consume (goal: p99 <= 3x)."""
    as_json = json_mode(ctx, as_json)
    try:
        result = asyncio.run(
            run_replicate_bench(load_cli_config(config), rate, seconds, rounds, store_dir)
        )
    except EdgebusError as e:
        raise fail(as_json, e) from None
    emit(as_json, result.to_dict(), _render_replicate)


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
    store_dir: Path | None = typer.Option(
        None, "--store-dir", file_okay=False, help="Where replay stores go (default: temp)."
    ),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Replay events/s and peak memory per prefix vs a raw aiokafka consume."""
    as_json = json_mode(ctx, as_json)
    try:
        shares = [float(f) for f in fractions.split(",") if f.strip()]
    except ValueError:
        raise fail(as_json, f"--fractions {fractions!r}: give numbers like 0.25,0.5,1") from None
    if not shares or not all(0 < f <= 1 for f in shares):
        raise fail(as_json, f"--fractions {fractions!r}: each must be in (0, 1]")
    try:
        result = asyncio.run(
            run_replay_bench(load_cli_config(config), events, shares, region, store_dir,
                             concurrency)
        )
    except EdgebusError as e:
        raise fail(as_json, e) from None
    emit(as_json, result.to_dict(), _render_replay)


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


@app.command("read")
def read(
    ctx: typer.Context,
    reads: int = typer.Option(2000, "--reads", min=10, help="Measured reads per level and mode."),
    keys: int = typer.Option(200, "--keys", min=1, help="Keys written, then read at random."),
    warmup: int = typer.Option(100, "--warmup", min=0, help="Unmeasured reads per level first."),
    store_dir: Path | None = typer.Option(
        None, "--store-dir", file_okay=False, help="Where the region's store goes (default: temp)."
    ),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Read latency per consistency level, embedded and over HTTP (goal: causal and
    bounded within 1.2x eventual)."""
    as_json = json_mode(ctx, as_json)
    try:
        result = asyncio.run(
            run_read_bench(load_cli_config(config), reads, keys, warmup, store_dir)
        )
    except EdgebusError as e:
        raise fail(as_json, e) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except asyncio.CancelledError:  # SIGTERM, once the region process was stopped
        raise typer.Exit(143) from None
    emit(as_json, result.to_dict(), _render_read)


def _render_read(data: dict[str, Any]) -> None:
    table = Table(title=f"bench read: {data['reads']:,} reads per level (after "
                  f"{data['warmup']} warm-up), {data['keys']} keys, region {data['region']}")
    for name in ("mode", "level", "p50 ms", "p99 ms", "mean ms", "reads/s", "p50 x", "p99 x",
                 f"<= {data['goal_ratio']:g}x", "waited", "bad"):
        table.add_column(name, justify="left" if name in ("mode", "level") else "right")
    for r in data["rows"]:
        goal = {None: "-", True: "met", False: "[bold red]missed[/]"}[r["goal_met"]]
        table.add_row(r["mode"], r["level"], f"{r['p50_ms']:.3f}", f"{r['p99_ms']:.3f}",
                      f"{r['mean_ms']:.3f}", f"{r['reads_per_s']:,.0f}",
                      f"{r['p50_ratio']:.2f}", f"{r['p99_ratio']:.2f}", goal,
                      str(r["waited"]), str(r["violations"]))
    console.print(table)
    console.print(f"x: ratio to eventual in the same mode; waited: reads the region held "
                  f">= 1 ms before reading its store; bad: violations. bounded_time: "
                  f"staleness <= {data['staleness_threshold_ms']:g} ms (heartbeats every "
                  f"{data['watermark_interval_ms']} ms); bounded_versions: also <= "
                  f"{data['max_versions_behind']} versions behind (end offsets from Kafka on "
                  "every read)", highlight=False)
    goal = "met" if data["goal_met"] else "[bold red]missed[/]"
    console.print(f"goal (causal, bounded_time p50 and p99 <= {data['goal_ratio']:g}x "
                  f"eventual, both modes): [bold]{goal}[/]; violations: "
                  f"[bold]{data['violations']}[/]")
    for example in data["violation_examples"]:
        console.print(f"  {example}", highlight=False)


@app.command("strong")
def strong(
    ctx: typer.Context,
    rounds: int = typer.Option(3, "--rounds", min=1, help="Interleaved rounds of every mode."),
    commits: int = typer.Option(
        96, "--commits", min=1, help="Operations per round, mode and concurrency."
    ),
    concurrency: str = typer.Option(
        "1,16,64", "--concurrency", help="Workers, comma-separated: each does its operations "
        "one after the other."
    ),
    bootstrap: str | None = typer.Option(
        None, "--bootstrap", help="Kafka to use (default: the config's; when none is named "
        "and none answers, a broker of the run's own is started and wiped afterwards)."
    ),
    store_dir: Path | None = typer.Option(
        None, "--store-dir", file_okay=False,
        help="Where the region stores and logs go (default: temp).",
    ),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Strong-commit latency and commits/s at each concurrency vs the raw produce-to-consume
    round trip (goal: p50 <= 3x), a Kafka transactional commit and eventual writes."""
    as_json = json_mode(ctx, as_json)
    try:
        levels = [int(c) for c in concurrency.split(",") if c.strip()]
    except ValueError:
        raise fail(as_json, f"--concurrency {concurrency!r}: give numbers like 1,16,64") from None
    if not levels or min(levels) < 1:
        raise fail(as_json, f"--concurrency {concurrency!r}: each must be at least 1")
    try:
        if store_dir is not None:
            store_dir.mkdir(parents=True, exist_ok=True)
        result = asyncio.run(
            run_strong_bench(load_cli_config(config), rounds, commits, levels, bootstrap,
                             store_dir)
        )
    except EdgebusError as e:
        raise fail(as_json, e) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except asyncio.CancelledError:  # SIGTERM, once the child processes were stopped
        raise typer.Exit(143) from None
    emit(as_json, result.to_dict(), _render_strong)


_MODE_LABELS = {
    "raw_rtt": "raw round trip",
    "kafka_txn": "Kafka txn commit",
    "eventual": "eventual write",
    "strong": "strong commit",
}


def _render_strong(data: dict[str, Any]) -> None:
    table = Table(title=f"bench strong: {data['commits']} operations x {data['rounds']} rounds "
                  f"per mode and concurrency, regions {', '.join(data['regions'])}")
    for name in ("workers", "mode", "p50 ms", "p99 ms", "max ms", "ops/s", "round p50s"):
        table.add_column(name, justify="left" if name == "mode" else "right")
    for r in data["rows"]:
        table.add_row(str(r["concurrency"]), _MODE_LABELS.get(r["mode"], r["mode"]),
                      f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}", f"{r['max_ms']:.1f}",
                      f"{r['per_s']:,.0f}", ", ".join(f"{x:.1f}" for x in r["rounds_p50_ms"]))
    console.print(table)
    ratios = Table(title="strong commit / baseline at the same concurrency")
    for name in ("workers", "p50 / raw rtt", f"<= {data['goal_ratio']:g}x", "p99 / raw rtt",
                 "p50 / txn", "p50 / eventual", "rate / txn", "rate / eventual"):
        ratios.add_column(name, justify="right")
    for c in data["comparisons"]:
        goal = "met" if c["goal_met"] else "[bold red]missed[/]"
        ratios.add_row(str(c["concurrency"]), f"{c['p50_vs_raw_rtt']:.2f}", goal,
                       f"{c['p99_vs_raw_rtt']:.2f}", f"{c['p50_vs_kafka_txn']:.2f}",
                       f"{c['p50_vs_eventual']:.2f}", f"{c['per_s_vs_kafka_txn']:.2f}",
                       f"{c['per_s_vs_eventual']:.2f}")
    console.print(ratios)
    if data["stages"]:
        names = list(data["stage_names"])
        stages = Table(title="a strong commit's stages: median ms (from the saga log)")
        for name in ("workers", *names, "total", "applied"):
            stages.add_column(name.replace("_", " "), justify="right")
        for s in data["stages"]:
            applied = "-" if s["applied_ms"] is None else f"{s['applied_ms']:.1f}"
            stages.add_row(str(s["concurrency"]),
                           *(f"{s['stages_ms'][n]:.1f}" for n in names),
                           f"{s['total_ms']:.1f}", applied)
        console.print(stages)
        for name, what in data["stage_names"].items():
            console.print(f"  {name}: {what}", highlight=False)
        console.print("  applied: decision handed over -> the last participant's ACK (after "
                      "commit() returned)", highlight=False)
    if data["processes"]:
        console.print(f"while the batches ran ({data['measure_seconds']:.0f} s): " + "; ".join(
            f"{p['process']} {p['cpu_s']:.1f} s on a CPU, {p['runqueue_wait_s']:.1f} s waiting "
            "for one" for p in data["processes"]), highlight=False)
    goal = "met" if data["goal_met"] else "[bold red]missed[/]"
    load = [", ".join(f"{x:g}" for x in data[k]) or "?"
            for k in ("load_average_start", "load_average")]
    console.print(f"goal (strong p50 <= {data['goal_ratio']:g}x the raw round trip, every "
                  f"concurrency): [bold]{goal}[/]; commits that did not commit: "
                  f"[bold]{data['failed']}[/]; broker {data['bootstrap']} ({data['broker']}); "
                  f"setup {data['setup_seconds']:.0f} s, draining between batches "
                  f"{data['drain_seconds']:.0f} s, in all {data['seconds']:.0f} s; load average "
                  f"{load[0]} at the start, {load[1]} at the end", highlight=False)
    for example in data["failure_examples"]:
        console.print(f"  {example}", highlight=False)


@app.command("state")
def state(
    ctx: typer.Context,
    seconds: float = typer.Option(
        2.0, "--seconds", min=0.05, help="Length of each measured batch (one per round, "
        "mode and concurrency)."
    ),
    concurrency: int = typer.Option(
        STATE_CONCURRENCY, "--concurrency", min=1,
        help="Workers of the second load (the first is one worker), each calling one "
        "after the other.",
    ),
    rounds: int = typer.Option(3, "--rounds", min=1, help="Interleaved rounds per phase."),
    region: str | None = typer.Option(
        None, "--region", help="Region hosting the states (a configured one: no region "
        "service of the config may run meanwhile; default: a fresh region of the run's "
        "own)."
    ),
    store_dir: Path | None = typer.Option(
        None, "--store-dir", file_okay=False,
        help="Where the region service's store and log go (default: temp).",
    ),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Increments/s on one state machine and their p50/p99, owner in this process (local)
    and in a region service (forwarded), vs raw send_and_wait and produce-to-consume."""
    as_json = json_mode(ctx, as_json)
    try:
        if store_dir is not None:
            store_dir.mkdir(parents=True, exist_ok=True)
        result = asyncio.run(
            run_state_bench(load_cli_config(config), seconds, concurrency, rounds, region,
                            store_dir)
        )
    except EdgebusError as e:
        raise fail(as_json, e) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except asyncio.CancelledError:  # SIGTERM, once the child process was stopped
        raise typer.Exit(143) from None
    emit(as_json, result.to_dict(), _render_state)
    if not result.passed:
        raise typer.Exit(1)


_STATE_MODES = {"state": "increment", "raw_send": "raw send", "raw_rtt": "raw rtt"}


def _render_state(data: dict[str, Any]) -> None:
    where = "a fresh region" if data["fresh_region"] else "configured region"
    table = Table(title=f"bench state: increments on one state, {data['seconds']:g} s batches "
                  f"x {data['rounds']} rounds per phase, {where} {data['region']}")
    for name in ("phase", "workers", "mode", "p50 ms", "p99 ms", "max ms", "ops/s",
                 "round p50s"):
        table.add_column(name, justify="left" if name in ("phase", "mode") else "right")
    for r in data["rows"]:
        table.add_row(r["phase"], str(r["concurrency"]), _STATE_MODES.get(r["mode"], r["mode"]),
                      f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}", f"{r['max_ms']:.1f}",
                      f"{r['per_s']:,.0f}", ", ".join(f"{x:.1f}" for x in r["rounds_p50_ms"]))
    console.print(table)
    ratios = Table(title="state increments / raw baselines of the same phase")
    for name in ("phase", "workers", "p50 / send", "p99 / send", "ops/s / send",
                 "p50 / rtt"):
        ratios.add_column(name, justify="left" if name == "phase" else "right")
    for c in data["comparisons"]:
        ratios.add_row(c["phase"], str(c["concurrency"]), f"{c['p50_vs_raw_send']:.2f}",
                       f"{c['p99_vs_raw_send']:.2f}", f"{c['per_s_vs_raw_send']:.2f}",
                       f"{c['p50_vs_raw_rtt']:.2f}")
    console.print(ratios)
    console.print("raw send: send_and_wait (idempotent, acks=all, linger 0); raw rtt: the "
                  "same send until a state-log-like consumer received it", highlight=False)
    for f in data["forwarded_vs_local"]:
        console.print(f"{f['concurrency']} worker(s): forwarded p50 = {f['p50_ratio']:.2f} x "
                      f"local; local ops/s = {f['per_s_ratio']:.2f} x forwarded",
                      highlight=False)
    if data["stages"]:
        stages = Table(title="a call's stages: median ms (append times from the state log)")
        for name in ("phase", "workers", "calls", "stages", "total"):
            stages.add_column(name, justify="left" if name in ("phase", "stages") else "right")
        for s in data["stages"]:
            stages.add_row(s["phase"], str(s["concurrency"]), str(s["calls"]),
                           ", ".join(f"{n} {ms:.1f}" for n, ms in s["stages_ms"].items()),
                           f"{s['total_ms']:.1f}")
        console.print(stages)
        for phase, names in data["stage_names"].items():
            for name, what in names.items():
                console.print(f"  {phase} {name}: {what}", highlight=False)
    if data["processes"]:
        console.print("while the batches ran: " + "; ".join(
            f"{p['process']} {p['cpu_s']:.1f} s on a CPU, {p['runqueue_wait_s']:.1f} s "
            "waiting for one" for p in data["processes"]), highlight=False)
    for c in data["checks"]:
        verdict = "passed" if c["passed"] else "[bold red]FAILED[/]"
        console.print(
            f"{c['phase']} ({c['state_id']}, owner {', '.join(c['hosts']) or '?'}): "
            f"{c['increments']:,} increments answered, final value {c['final_value']}, "
            f"{'exact' if c['exact'] else 'NOT exact'}; calls off the path "
            f"{c['wrong_path']}, re-sent {c['duplicates']}, errors {c['errors']}: {verdict}",
            highlight=False)
        for example in c["error_examples"]:
            console.print(f"  {example}", highlight=False)
    load = [", ".join(f"{x:g}" for x in data[k]) or "?"
            for k in ("load_average_start", "load_average")]
    console.print(f"broker {data['bootstrap']}; setup {data['setup_seconds']:.0f} s, in all "
                  f"{data['total_seconds']:.0f} s; load average {load[0]} at the start, "
                  f"{load[1]} at the end", highlight=False)
