"""Watermark records: markers in an events topic that move frontiers (not writes).

Each origin region's service writes a *heartbeat* into every partition of its own
events topic at a fixed interval (``replication.watermark_interval_ms``). Its value is
``io.edgebus.Watermark`` (single-object Avro like events) holding the origin's wall
clock read *before* sending, so every write the origin acknowledged before that time
sits earlier in the partition. Replicators forward heartbeats like copies (with
``eb-origin-pos``), in the same FIFO stream as the origin's events, and write a
*replicator* watermark after origin events they did not copy (placed elsewhere), so a
region's frontier passes events it will never hold. ``docs/consistency.md`` explains
how frontiers, causal reads and bounded staleness use them.

Records carrying a watermark have the header ``eb-watermark`` (``heartbeat`` or
``replicator``), ``eb-origin`` and no key.
"""

from __future__ import annotations

from functools import cache
from typing import Any, NamedTuple

from edgebus.core.clock_codec import MAX_PARTITION
from edgebus.errors import DecodeError
from edgebus.wire.schema_registry import RegisteredSchema, default_registry
from edgebus.wire.single_object import decode_single_object, encode_single_object

__all__ = [
    "HEARTBEAT",
    "H_WATERMARK",
    "REPLICATOR",
    "Watermark",
    "decode_watermark",
    "encode_watermark",
    "is_watermark",
]

#: header present on (and only on) watermark records; value ``heartbeat``/``replicator``
H_WATERMARK = "eb-watermark"
HEARTBEAT = "heartbeat"
REPLICATOR = "replicator"
_SYMBOLS = {HEARTBEAT: "HEARTBEAT", REPLICATOR: "REPLICATOR"}


class Watermark(NamedTuple):
    """A decoded watermark."""

    origin_region: str
    partition: int
    origin_time_ms: int | None
    source: str  # HEARTBEAT or REPLICATOR


@cache
def _schema() -> RegisteredSchema:
    return default_registry().latest("io.edgebus.Watermark")


def encode_watermark(mark: Watermark) -> bytes:
    """The Avro single-object value of a watermark."""
    return encode_single_object(
        _schema(),
        {
            "origin_region": mark.origin_region,
            "partition": mark.partition,
            "origin_time_ms": mark.origin_time_ms,
            "source": _SYMBOLS[mark.source],
        },
    )


def decode_watermark(value: bytes | None) -> Watermark:
    """Parse :func:`encode_watermark`'s bytes; DecodeError for anything else (including
    an unnamed region, a partition outside Kafka's 0..2**31-1 or a negative time)."""
    if not value:
        raise DecodeError("a watermark record has no value")
    writer, record = decode_single_object(value, default_registry())
    if writer.full_name != "io.edgebus.Watermark":
        raise DecodeError(f"an {H_WATERMARK} record holds a {writer.full_name}, not a Watermark")
    region = record["origin_region"]
    partition = record["partition"]
    time_ms = record["origin_time_ms"]
    if not region or not 0 <= partition <= MAX_PARTITION or (time_ms is not None and time_ms < 0):
        raise DecodeError(
            f"a watermark of region {region!r:.80}, partition {partition}, origin time "
            f"{time_ms} ms: the region must be named, the partition in 0..{MAX_PARTITION} "
            "and the time 0 or more"
        )
    return Watermark(region, partition, time_ms, record["source"].lower())


def is_watermark(record: Any) -> bool:
    """True for a watermark record (a Kafka record with the ``eb-watermark`` header)."""
    return any(name == H_WATERMARK for name, _ in record.headers or ())
