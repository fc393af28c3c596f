"""``edgebus tail``: print a region's events, decoded, with their headers.

A declassified event (header ``eb-declassified``) shows its record under
``headers["eb-declassified"]`` with ``--json`` (``by``, ``at_ms``, ``reason``,
``detected``, ``written_as``), and "declassified by X: reason" in the plain listing."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import typer
from aiokafka import ConsumerRecord
from rich.markup import escape

from edgebus.cli._common import ConfigOption, JsonOption
from edgebus.cli._output import console
from edgebus.cli._runner import UNTIL_CTRL_C, Call, run_command
from edgebus.config import EdgeConfig
from edgebus.errors import EdgebusError, InfrastructureUnavailable
from edgebus.kafka.clients import reader
from edgebus.kafka.clusters import resolve_clusters
from edgebus.kafka.reading import topic_partitions
from edgebus.kafka.topics import events_topic
from edgebus.wire.event_codec import decode_event
from edgebus.wire.headers import H_DECLASSIFIED, decode_headers
from edgebus.wire.watermark import decode_watermark, is_watermark

__all__ = ["DEFAULT_LAST", "decode_record", "tail"]

DEFAULT_LAST = 10


def tail(
    ctx: typer.Context,
    region: str = typer.Option(..., "--region", help="Region whose events topic to read."),
    from_beginning: bool = typer.Option(
        False, "--from-beginning", help="Start at the oldest record (default: the last N)."
    ),
    limit: int | None = typer.Option(
        None, "--limit", min=1, help=f"At most N records (default: the last {DEFAULT_LAST}; "
        "with --from-beginning or --follow, no limit)."
    ),
    follow: bool = typer.Option(
        False, "--follow", "-f", help="Print new records as they arrive (Ctrl-C to stop)."
    ),
    idle_timeout: float | None = typer.Option(
        None, "--idle-timeout", min=0.1, help="With --follow: stop after this many seconds "
        "without a record (ignored without --follow, which always reads to the end)."
    ),
    watermarks: bool = typer.Option(
        False, "--watermarks", help="Also show watermark records (heartbeats and "
        "replicator markers, which move frontiers); hidden by default."
    ),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Print edgebus.<region>.events decoded, with headers: the last 10 events, all of
    them (--from-beginning), or new ones as they arrive (--follow). With --json, one JSON
    document per line."""

    async def body(call: Call) -> None:
        await _tail(call.config, region, from_beginning, follow, limit, idle_timeout,
                    call.as_json, watermarks)

    run_command(ctx, body, as_json=as_json, config=config, regions=[region],
                interrupts=UNTIL_CTRL_C)


def decode_record(record: ConsumerRecord[bytes, bytes]) -> dict[str, Any]:
    """A record as a JSON-ready dict: position, key, decoded headers and event."""
    out: dict[str, Any] = {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": record.timestamp,
        "key": record.key.decode("utf-8", "backslashreplace") if record.key else None,
    }
    try:
        out["headers"] = decode_headers(record.headers)
        if is_watermark(record):
            out["watermark"] = decode_watermark(record.value)._asdict()
            return out
        event = decode_event(record.value)
        out["event"] = {
            **event.model_dump(exclude={"hlc", "dependencies"}),
            "hlc": {"wall_ms": event.hlc.wall_ms, "logical": event.hlc.logical},
            "dependencies": event.dependencies.to_json(),
        }
    except EdgebusError as e:
        out["error"] = str(e)
    return out


async def _records(
    cfg: EdgeConfig,
    region: str,
    from_beginning: bool,
    follow: bool,
    last: int,
    idle_timeout: float | None,
    firsts_out: dict[int, bool] | None = None,
) -> AsyncIterator[ConsumerRecord[bytes, bytes]]:
    """Records in per-partition order: from the beginning, or the last ``last`` of each
    partition; up to the end the topic had when we started, or on and on (``follow``).
    ``firsts_out`` learns, per partition, whether reading started at its first record."""
    bootstrap = resolve_clusters(cfg)[region]
    topic = events_topic(region)
    async with reader(cfg.kafka, bootstrap) as consumer:
        tps = await topic_partitions(consumer, [topic])
        if not tps:
            return  # nothing was ever written to this region
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        firsts = await consumer.beginning_offsets(tps)
        # explicit seeks: seek_to_beginning/end only request a reset, which can race
        # with the consumer's own initial one
        if from_beginning:
            starts = dict(firsts)
        elif follow:
            starts = dict(ends)
        else:
            starts = {tp: max(firsts[tp], ends[tp] - last) for tp in tps}
        for tp in tps:
            consumer.seek(tp, starts[tp])
            if firsts_out is not None:
                firsts_out[tp.partition] = starts[tp] <= firsts[tp]
        pending = {tp for tp in tps if starts[tp] < ends[tp]}
        quiet_since = time.monotonic()
        while follow or pending:
            batch = await consumer.getmany(timeout_ms=200)
            quiet_for = time.monotonic() - quiet_since
            if batch:
                quiet_since = time.monotonic()
            elif follow and idle_timeout is not None and quiet_for >= idle_timeout:
                return
            elif not follow and quiet_for >= cfg.kafka.connect_timeout_s:
                # Never print a partial listing as if it were whole.
                raise InfrastructureUnavailable(
                    f"{topic} at {bootstrap} stopped answering before its end offsets were "
                    f"reached (no record for {quiet_for:.0f} s)",
                    [bootstrap],
                )
            for tp in sorted(batch, key=lambda t: t.partition):
                for record in batch[tp]:
                    if not follow and record.offset >= ends[tp]:
                        break
                    yield record
                if batch[tp] and batch[tp][-1].offset + 1 >= ends[tp]:
                    pending.discard(tp)


async def _tail(
    cfg: EdgeConfig,
    region: str,
    from_beginning: bool,
    follow: bool,
    limit: int | None,
    idle_timeout: float | None,
    as_json: bool,
    watermarks: bool = False,
) -> None:
    last = limit or DEFAULT_LAST
    if from_beginning or follow:
        records = _records(cfg, region, from_beginning, follow, last, idle_timeout)
        shown = 0
        async for record in records:
            if not watermarks and is_watermark(record):
                continue
            _show(record, as_json)
            shown += 1
            if limit is not None and shown >= limit:
                return
        return
    # the last N records: the last N of each partition, then the newest N of those.
    # Heartbeats far outnumber events in a quiet topic: look further back until each
    # partition has N events or was read from its start.
    for lookback in (last, last * 64, last * 4096, None):
        reached: dict[int, bool] = {}
        records = _records(
            cfg, region, lookback is None, False, lookback or 0, idle_timeout, reached
        )
        latest = [r async for r in records if watermarks or not is_watermark(r)]
        per_partition: dict[int, int] = {}
        for r in latest:
            per_partition[r.partition] = per_partition.get(r.partition, 0) + 1
        if all(per_partition.get(p, 0) >= last or started for p, started in reached.items()):
            break
    latest.sort(key=lambda r: (r.timestamp, r.partition, r.offset))
    for record in latest[-last:]:
        _show(record, as_json)


def _show(record: ConsumerRecord[bytes, bytes], as_json: bool) -> None:
    item = decode_record(record)
    if as_json:
        sys.stdout.write(json.dumps(item, default=str) + "\n")
        sys.stdout.flush()
    else:
        _render(item)


def _render(item: dict[str, Any]) -> None:
    where = f"[dim]{item['topic']}[{item['partition']}]@{item['offset']}[/]"
    if "error" in item:
        console.print(f"{where} [red]undecodable:[/] {item['error']}", highlight=False)
        return
    if "watermark" in item:
        mark = item["watermark"]
        console.print(
            f"{where} [dim]watermark ({mark['source']}) of {mark['origin_region']}:"
            f"{mark['partition']} origin_time_ms={mark['origin_time_ms']}[/]",
            highlight=False,
        )
        return
    event = item["event"]
    declassified = item["headers"].get(H_DECLASSIFIED)
    mark = ""
    if declassified is not None:
        mark = (f" [yellow]declassified by {escape(declassified['by'])}: "
                f"{escape(declassified['reason'])} (detected "
                f"{','.join(declassified['detected']) or 'nothing'})[/]")
    console.print(
        f"{where} [bold]{event['key']}[/] {event['operation']} "
        f"{json.dumps(event['payload'])} [cyan]class={','.join(event['classification'])}[/] "
        f"[green]placement={','.join(event['placement'])}[/]{mark}",
        highlight=False,
        soft_wrap=True,
    )
