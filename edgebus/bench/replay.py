"""``edgebus bench replay``: events per second rebuilding a region, and its peak memory.

A region's events topic holds at least N events (default 1,000,000) of the same
mixture as ``bench materialize``, written by edgebus 256 at a time; a run given an
existing region (``--region``) whose topic already holds N events reuses them. Then,
for prefixes of the topic (by default a quarter, a half and all of the N events, cut
per partition with ``until_offsets``), two fresh child processes run one after the
other, each reading that prefix from the beginning:

- raw: the consumer replay uses (``clients.reader``, same batch size), touching
  ``record.value`` and nothing else;
- edgebus: :func:`edgebus.region.replay.replay` into a new SQLite store.

Each child reports its own time (from opening its consumer, or its store, to the
end) and its peak resident memory (``VmHWM``, else ``ru_maxrss``): a flat peak across
prefixes, while the number of keys and the store grow with the prefix, shows that
replay's memory does not grow with the number of events.

Children are this module run as ``python -m edgebus.bench.replay --child raw|replay``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import TopicPartition

from edgebus.bench.children import config_file
from edgebus.bench.materialize import (
    fill_region,
    fresh_region,
    remove_store,
    scratch_config,
    topic_ends,
)
from edgebus.config import EdgeConfig, load_config
from edgebus.errors import EdgebusError
from edgebus.kafka.clients import reader
from edgebus.kafka.clusters import resolve_clusters
from edgebus.kafka.reading import end_offsets, seek_to_first, topic_partitions
from edgebus.kafka.topics import events_topic
from edgebus.region.collector import tune_for_apply
from edgebus.region.replay import parse_until_offsets, replay
from edgebus.sdk import EdgeBus

__all__ = ["ReplayBenchResult", "ReplaySize", "run_replay_bench"]

#: records per batch, for replay and for the raw side alike (replay's default)
BATCH_RECORDS = 5000


@dataclass
class ReplaySize:
    """One prefix: both sides' rates and peak memory."""

    events: int
    replay_events_per_s: float
    raw_events_per_s: float
    ratio: float
    replay_peak_rss_mb: float
    raw_peak_rss_mb: float
    replay_seconds: float
    raw_seconds: float
    keys: int
    store_mb: float


@dataclass
class ReplayBenchResult:
    """Figures of one ``bench replay`` run."""

    region: str
    bootstrap: str
    topic_events: int
    reused: bool
    filled: int
    fill_writes_per_s: float
    sizes: list[ReplaySize] = field(default_factory=list)

    @property
    def largest(self) -> ReplaySize:
        """The prefix with the most events."""
        return max(self.sizes, key=lambda s: s.events)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready figures (plus headline figures of the largest prefix)."""
        out = asdict(self)
        big, small = self.largest, min(self.sizes, key=lambda s: s.events)
        out["events"] = big.events
        out["replay_events_per_s"] = big.replay_events_per_s
        out["raw_events_per_s"] = big.raw_events_per_s
        out["ratio"] = big.ratio
        out["replay_peak_rss_growth"] = round(big.replay_peak_rss_mb / small.replay_peak_rss_mb, 3)
        return out


def _cuts(ends: dict[TopicPartition, int], count: int) -> dict[int, int]:
    """Per-partition exclusive end offsets of a prefix of about ``count`` events."""
    total = sum(ends.values())
    share = min(1.0, count / total) if total else 0.0
    return {tp.partition: int(end * share) for tp, end in sorted(ends.items())}


async def _child(args: Sequence[str]) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "edgebus.bench.replay",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    lines = [line for line in out.decode().splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise EdgebusError(
            f"bench child {' '.join(args[:2])} failed (exit {proc.returncode}): "
            f"{err.decode()[-2000:]}"
        )
    result: dict[str, Any] = json.loads(lines[-1])
    return result


async def _fill(
    config: EdgeConfig, region: str, bootstrap: str, events: int, concurrency: int
) -> tuple[int, float]:
    """Write what the region's topic lacks of ``events`` events: ``(written, writes/s)``."""
    topic = events_topic(region)
    existing = sum((await end_offsets(config.kafka, bootstrap, [topic])).values())
    if existing >= events:
        return 0, 0.0
    async with EdgeBus(config, client_id="edgebus-bench-fill") as bus:
        fill_rate = await fill_region(bus, region, existing, events, concurrency)
    return events - existing, fill_rate


async def _replay_prefix(
    config_path: Path, region: str, cuts: dict[int, int], store: Path
) -> ReplaySize:
    """Both children on the prefix of the topic ending at ``cuts``; their figures."""
    common = [
        "--config",
        str(config_path),
        "--region",
        region,
        "--until-offsets",
        ",".join(f"{p}:{o}" for p, o in cuts.items()),
    ]
    raw = await _child(["--child", "raw", *common])
    ours = await _child(["--child", "replay", *common, "--store", f"sqlite://{store}"])
    store_mb = _store_mb(store)
    remove_store(store)
    if ours["events"] != raw["events"]:
        raise EdgebusError(
            f"replay read {ours['events']} events, the raw consumer {raw['events']}"
        )
    return ReplaySize(
        events=ours["events"],
        replay_events_per_s=round(ours["events"] / ours["seconds"], 1),
        raw_events_per_s=round(raw["events"] / raw["seconds"], 1),
        ratio=round(raw["seconds"] / ours["seconds"], 3),
        replay_peak_rss_mb=round(ours["max_rss_kb"] / 1024, 1),
        raw_peak_rss_mb=round(raw["max_rss_kb"] / 1024, 1),
        replay_seconds=round(ours["seconds"], 3),
        raw_seconds=round(raw["seconds"], 3),
        keys=ours["keys"],
        store_mb=store_mb,
    )


async def run_replay_bench(
    config: EdgeConfig,
    events: int = 1_000_000,
    fractions: Sequence[float] = (0.25, 0.5, 1.0),
    region: str | None = None,
    store_dir: Path | None = None,
    concurrency: int = 256,
) -> ReplayBenchResult:
    """Fill (or reuse) the region's topic, then replay prefixes in child processes."""
    reused_name = region is not None
    region = region or fresh_region("replay")
    config = scratch_config(config, [region])
    bootstrap = resolve_clusters(config)[region]
    filled, fill_rate = await _fill(config, region, bootstrap, events, concurrency)
    ends = await topic_ends(config.kafka, bootstrap, events_topic(region))
    result = ReplayBenchResult(
        region=region,
        bootstrap=bootstrap,
        topic_events=sum(ends.values()),
        reused=reused_name and filled == 0,
        filled=filled,
        fill_writes_per_s=round(fill_rate, 1),
    )
    with tempfile.TemporaryDirectory(prefix="edgebus-bench-", dir=store_dir) as tmp:
        config_path = config_file(config, Path(tmp) / "config.json")
        for n, fraction in enumerate(sorted(fractions)):
            cuts = _cuts(ends, round(events * fraction))
            store = Path(tmp) / f"replay-{n}.db"
            result.sizes.append(await _replay_prefix(config_path, region, cuts, store))
    return result


def _store_mb(path: Path) -> float:
    """Size of a SQLite store with its write-ahead log, in MiB."""
    files = (path, path.with_name(path.name + "-wal"))
    return round(sum(os.path.getsize(f) for f in files if os.path.exists(f)) / 2**20, 1)


async def _raw_child(config: EdgeConfig, region: str, cuts: dict[int, int]) -> dict[str, Any]:
    bootstrap = resolve_clusters(config)[region]
    started = time.perf_counter()
    count = touched = 0
    async with reader(config.kafka, bootstrap) as consumer:
        tps = await topic_partitions(consumer, [events_topic(region)])
        firsts = await consumer.beginning_offsets(tps)
        remaining = {tp: cuts.get(tp.partition, 0) for tp in tps}
        remaining = {tp: stop for tp, stop in remaining.items() if stop > firsts[tp]}
        if remaining:
            consumer.assign(list(remaining))
            await seek_to_first(consumer, remaining)
        while remaining:
            batch = await consumer.getmany(timeout_ms=1000, max_records=BATCH_RECORDS)
            for tp in sorted(batch, key=lambda t: t.partition):
                stop = remaining.get(tp)
                if stop is None:
                    continue
                for record in batch[tp]:
                    if record.offset < stop:
                        touched += len(record.value or b"")
                        count += 1
                if batch[tp] and batch[tp][-1].offset + 1 >= stop:
                    del remaining[tp]
                    consumer.pause(tp)
    return {"events": count, "seconds": time.perf_counter() - started, "keys": 0}


async def _replay_child(
    config: EdgeConfig, region: str, cuts: dict[int, int], store: str
) -> dict[str, Any]:
    summary = await replay(config, region, store, until_offsets=cuts, batch_records=BATCH_RECORDS)
    return {
        "events": summary.events,
        "seconds": summary.seconds,
        "keys": summary.keys,
        "dead_letters": summary.dead_letters,
    }


def _peak_rss_kb() -> int:
    """This process's peak resident memory in KiB: ``VmHWM`` where Linux gives it (it
    starts again at exec), else ``ru_maxrss``, which a forked child inherits from its
    parent (a parent that imported matplotlib for ``--plot`` made every child look as
    large as itself)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgebus.bench.replay")
    parser.add_argument("--child", choices=("raw", "replay"), required=True)
    parser.add_argument("--config", required=True)
    parser.add_argument("--region", required=True)
    parser.add_argument("--until-offsets", required=True)
    parser.add_argument("--store")
    args = parser.parse_args(argv)
    config = load_config(Path(args.config))
    cuts = parse_until_offsets(args.until_offsets)
    tune_for_apply()  # both sides alike, as edgebus replay runs
    if args.child == "raw":
        out = asyncio.run(_raw_child(config, args.region, cuts))
    else:
        out = asyncio.run(_replay_child(config, args.region, cuts, args.store))
    out["max_rss_kb"] = _peak_rss_kb()
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
