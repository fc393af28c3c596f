"""The figures of ``bench materialize``, ``bench replicate`` and ``bench replay`` as PNG
files (``--plot PATH``), drawn with matplotlib's Agg canvas: no display, no pyplot state.

Each function draws one run from its JSON document (what the result's ``to_dict()``
returns, the document ``--json`` prints); ``bench replicate``'s distribution also needs
the per-write lags, which its document leaves out. matplotlib is optional
(``pip install 'edgebus[plot]'``) and imported only when a figure is drawn;
:func:`check_plot_path` tells before a long run whether its figure can be written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgebus.errors import InvalidInput

if TYPE_CHECKING:
    from matplotlib.axis import Axis
    from matplotlib.figure import Figure

__all__ = [
    "MATERIALIZE_GOAL",
    "REPLICATE_GOAL",
    "check_plot_path",
    "plot_materialize",
    "plot_replay",
    "plot_replicate",
]

#: ``bench materialize``: edgebus events/s should be at least this share of raw's
MATERIALIZE_GOAL = 0.5
#: ``bench replicate``: edgebus p99 should be at most this many times raw's
REPLICATE_GOAL = 3.0
#: the sides' colours: edgebus, then the raw aiokafka baseline
EDGEBUS_COLOUR = "tab:blue"
RAW_COLOUR = "tab:orange"
#: size (inches) and resolution of every figure
FIGURE_SIZE = (9.0, 5.0)
DPI = 120


def check_plot_path(path: Path) -> None:
    """Raise :class:`InvalidInput` unless a figure can be drawn into ``path``: matplotlib
    is installed and ``path`` is a file in a directory that exists."""
    _figure_class()
    _check_target(path)


def plot_materialize(figures: Mapping[str, Any], path: Path) -> Path:
    """Each round's events/s of both sides, their medians, the ratio against the goal.

    ``figures``: ``MaterializeResult.to_dict()`` (``events``, ``keys``, ``rounds``,
    ``region``, ``edgebus_rounds``, ``raw_rounds``, ``edgebus_events_per_s``,
    ``raw_events_per_s``, ``ratio``). Returns ``path``.
    """
    fig = _new_figure(path)
    ax = fig.subplots()
    sides = (
        ("edgebus materializer", EDGEBUS_COLOUR, figures["edgebus_rounds"],
         figures["edgebus_events_per_s"]),
        ("raw aiokafka consume", RAW_COLOUR, figures["raw_rounds"],
         figures["raw_events_per_s"]),
    )
    width = 0.38
    for n, (label, colour, rounds, median) in enumerate(sides):
        offset = (n - 0.5) * width
        ax.bar([i + 1 + offset for i in range(len(rounds))], rounds, width, color=colour,
               label=label)
        ax.axhline(median, color=colour, linestyle="--", linewidth=1.2,
                   label=f"{label} median {median:,.0f}/s")
    goal = MATERIALIZE_GOAL * figures["raw_events_per_s"]
    ax.axhline(goal, color="grey", linestyle=":", linewidth=1.2,
               label=f"goal: {MATERIALIZE_GOAL} x raw median ({goal:,.0f}/s)")
    count = max(len(figures["edgebus_rounds"]), len(figures["raw_rounds"]))
    ax.set_xticks(range(1, count + 1))
    ax.set_xlabel("round")
    ax.set_ylabel("events/s")
    _thousands(ax.yaxis)
    # room above the highest bar for the legend
    ax.set_ylim(0, 1.35 * max([*figures["edgebus_rounds"], *figures["raw_rounds"], goal, 1]))
    ax.legend(loc="upper center", ncols=2, fontsize="small")
    ax.set_title(
        f"bench materialize: {figures['events']:,} events ({figures['keys']:,} keys) "
        f"x {figures['rounds']} rounds, region {figures['region']}\n"
        f"ratio edgebus/raw {figures['ratio']:.3f} (goal >= {MATERIALIZE_GOAL})"
    )
    return _save(fig, path)


def plot_replicate(
    figures: Mapping[str, Any],
    edgebus_lags_ms: Sequence[float],
    raw_lags_ms: Sequence[float],
    path: Path,
) -> Path:
    """Both sides' lag distributions (CDF, log ms), their p50 and p99, the p99 ratio
    against the goal.

    ``figures``: ``ReplicateResult.to_dict()`` (``rate``, ``seconds``, ``rounds``,
    ``source_region``, ``target_region``, the sides' ``*_p50_ms`` and ``*_p99_ms``,
    ``p50_ratio``, ``p99_ratio``); the lags: ``ReplicateResult.edgebus_lags_ms`` and
    ``raw_lags_ms``. Returns ``path``.
    """
    fig = _new_figure(path)
    ax = fig.subplots()
    sides = (
        ("edgebus A -> B store", EDGEBUS_COLOUR, edgebus_lags_ms, "edgebus"),
        ("raw produce -> consume", RAW_COLOUR, raw_lags_ms, "raw"),
    )
    for label, colour, lags, prefix in sides:
        if lags:
            ax.ecdf(list(lags), color=colour, label=f"{label} ({len(lags):,} writes)")
        p50, p99 = figures[f"{prefix}_p50_ms"], figures[f"{prefix}_p99_ms"]
        ax.axvline(p50, color=colour, linestyle="--", linewidth=1, label=f"p50 {p50:.1f} ms")
        ax.axvline(p99, color=colour, linestyle=":", linewidth=1.5, label=f"p99 {p99:.1f} ms")
    goal = REPLICATE_GOAL * figures["raw_p99_ms"]
    ax.axvline(goal, color="grey", linestyle="-.", linewidth=1,
               label=f"goal: p99 <= {REPLICATE_GOAL:g} x raw p99 ({goal:.1f} ms)")
    ax.set_xscale("log")
    ax.set_xlabel("lag, ms (log)")
    ax.set_ylabel("share of writes")
    ax.set_ylim(0, 1.02)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    ax.set_title(
        f"bench replicate: {figures['rate']:,.0f} writes/s for {figures['seconds']} s "
        f"x {figures['rounds']}, {figures['source_region']} -> {figures['target_region']}\n"
        f"p99 ratio edgebus/raw {figures['p99_ratio']:.2f} (goal <= {REPLICATE_GOAL:g}); "
        f"p50 ratio {figures['p50_ratio']:.2f}"
    )
    return _save(fig, path)


def plot_replay(figures: Mapping[str, Any], path: Path) -> Path:
    """Events/s of replay and raw per prefix (events on x), and both sides' peak memory.

    ``figures``: ``ReplayBenchResult.to_dict()`` (``region``, ``topic_events``, ``ratio``,
    ``replay_peak_rss_growth``, and per prefix in ``sizes``: ``events``,
    ``replay_events_per_s``, ``raw_events_per_s``, ``replay_peak_rss_mb``,
    ``raw_peak_rss_mb``). Returns ``path``.
    """
    fig = _new_figure(path)
    rates, memory = fig.subplots(2, 1, sharex=True)
    sizes = sorted(figures["sizes"], key=lambda s: s["events"])
    events = [s["events"] for s in sizes]
    for label, colour, side in (("edgebus replay", EDGEBUS_COLOUR, "replay"),
                                ("raw aiokafka consume", RAW_COLOUR, "raw")):
        rates.plot(events, [s[f"{side}_events_per_s"] for s in sizes], marker="o",
                   color=colour, label=label)
        memory.plot(events, [s[f"{side}_peak_rss_mb"] for s in sizes], marker="o",
                    color=colour, label=label)
    rates.set_ylabel("events/s")
    rates.set_ylim(bottom=0)
    _thousands(rates.yaxis)
    rates.legend(loc="best", fontsize="small")
    memory.set_ylabel("peak RSS, MB")
    memory.set_ylim(bottom=0)
    memory.set_xlabel("events replayed (prefix of the topic)")
    memory.set_xticks(events)
    _thousands(memory.xaxis)
    memory.legend(loc="best", fontsize="small")
    for ax in (rates, memory):
        ax.grid(True, alpha=0.3)
    fig.suptitle(
        f"bench replay: region {figures['region']} ({figures['topic_events']:,} events)\n"
        f"largest prefix replay/raw {figures['ratio']:.3f}; replay peak memory largest/smallest "
        f"{figures['replay_peak_rss_growth']:.2f}"
    )
    return _save(fig, path)


def _figure_class() -> type[Figure]:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise InvalidInput(
            "drawing benchmark figures needs matplotlib: pip install 'edgebus[plot]'"
        ) from None
    return Figure


def _check_target(path: Path) -> None:
    if path.is_dir():
        raise InvalidInput(f"cannot write the plot to {path}: it is a directory; "
                           "give a file name such as plot.png")
    if not path.parent.is_dir():
        raise InvalidInput(f"cannot write the plot to {path}: directory {path.parent} "
                           "does not exist; create it or choose another path")


def _new_figure(path: Path) -> Figure:
    """An empty figure on an Agg canvas, once ``path`` is known to be writable."""
    figure_class = _figure_class()
    _check_target(path)
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = figure_class(figsize=FIGURE_SIZE, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _thousands(axis: Axis) -> None:
    """Label ``axis`` with whole numbers, thousands separated (1,250,000)."""
    from matplotlib.ticker import StrMethodFormatter

    axis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))


def _save(fig: Figure, path: Path) -> Path:
    try:
        fig.savefig(path, format="png")
    except OSError as e:
        raise InvalidInput(f"cannot write the plot to {path}: {e.strerror or e}") from None
    return path
