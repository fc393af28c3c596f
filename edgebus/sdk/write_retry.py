"""``fallback_strategy="any_available"`` when a send fails mid-flight.

A write placed in region A whose send A's brokers never acknowledged may or may not be
stored in A. With ``any_available`` the writer sends the same event again to another
healthy compliant region B: same event id, same HLC stamp, same dependencies, placed
again with A counted unhealthy. Both attempts carry ``eb-once`` naming A (set on every
any_available write before its first send), so every region applies the event id
once, whichever attempt it reads first, and stamps it with A as its origin: a region
that reads both ends in the same state as one that reads either
(:mod:`edgebus.region.applied_once`). The receipt is the second attempt's.

Pure: no I/O.
"""

from __future__ import annotations

from edgebus.core.placement import Placement
from edgebus.errors import WriteFailed
from edgebus.sdk.results import PreparedWrite
from edgebus.wire.event_codec import EncodedEvent, encode_fields, encode_payload
from edgebus.wire.headers import H_ONCE

__all__ = ["once_header", "resent_encoding", "unacknowledged"]


def once_header(home: str) -> tuple[str, bytes]:
    """The ``eb-once`` header of an any_available write first sent to ``home``."""
    return H_ONCE, home.encode("ascii")


def resent_encoding(prepared: PreparedWrite, placement: Placement) -> EncodedEvent:
    """``prepared``'s event as sent again to ``placement``'s home: the same event id,
    HLC, data and dependencies, the new placement; headers edgebus adds beside the
    event's own (``eb-once``, ``eb-declassified``) are kept."""
    encoded = encode_fields(
        prepared.event_id, prepared.key, prepared.operation, encode_payload(prepared.payload),
        placement.home, placement.regions, prepared.classification, prepared.hlc,
        prepared.dependencies.clock, prepared.writer,
    )
    own = {name for name, _ in encoded.headers}
    extra = [(n, v) for n, v in prepared.encoded.headers if n not in own]
    return encoded._replace(headers=[*encoded.headers, *extra])


def unacknowledged(
    prepared: PreparedWrite, why: str, delivery_timeout_ms: int, note: str = ""
) -> WriteFailed:
    """The error of a send Kafka never acknowledged (``note``: what was tried else)."""
    home = prepared.placement.home
    return WriteFailed(
        f"Kafka did not acknowledge event {prepared.event_id} on {prepared.topic} "
        f"({why}); the producer retried for up to "
        f"kafka.delivery_timeout_ms={delivery_timeout_ms}.{note} Check "
        f"that {home}'s brokers run (`edgebus kafka status`). The event may or may "
        "not be stored; retrying writes a new event."
    )
