"""Applied-once markers: a record that may be written more than once is applied once
per region, whichever copy the region reads first. A marker is kept in the store with
the batch that applied it (``redriven``), so a later copy is a duplicate:

* a redriven dead letter: ``eb-redrive-of`` = ``(dlq partition >= 0, dlq offset)``;
* a strong commit's event (every participant writes its own): ``(-2, hash of eb-txn)``;
* a write with ``fallback_strategy="any_available"`` (sent again to another region
  when its send failed mid-flight): ``(-3, hash of its event id)``, and its stamp
  names the region of ``eb-once`` (where it was first sent) as its origin, so both
  copies leave the same state wherever they are applied.

Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Container

from edgebus.errors import EdgebusError
from edgebus.kafka.dead_letters import H_REDRIVE_OF
from edgebus.wire.headers import H_ONCE

__all__ = ["once_marker", "once_origin", "parse_redrive", "txn_marker"]

#: what a region name may look like (the config's names are checked when known)
_REGION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def once_marker(event_id: str) -> tuple[int, int]:
    """The applied-once marker of an ``eb-once`` event: ``(-3, 63-bit hash of its
    event id)``."""
    digest = hashlib.blake2b(event_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return -3, int.from_bytes(digest, "big") >> 1


def txn_marker(txn_id: bytes) -> tuple[int, int]:
    """The applied-once marker of a strong commit's event (kept with the dead-letter
    redrive markers, which are ``(partition >= 0, offset)``): ``(-2, 63-bit hash)``."""
    digest = hashlib.blake2b(txn_id, digest_size=8).digest()
    return -2, int.from_bytes(digest, "big") >> 1


def parse_redrive(raw: bytes) -> tuple[int, int]:
    """The marker an ``eb-redrive-of`` header names; EdgebusError when malformed."""
    try:
        partition, offset = raw.decode("ascii").split(":")
        return int(partition), int(offset)
    except (UnicodeDecodeError, ValueError):
        raise EdgebusError(f"Bad {H_REDRIVE_OF} header {raw!r}") from None


def once_origin(raw: bytes | None, known: Container[str] | None) -> str:
    """The region an ``eb-once`` header names (the write's first home): a region name
    (one of ``known`` when given), else EdgebusError (the record is dead-lettered)."""
    try:
        name = (raw or b"").decode("ascii")
    except UnicodeDecodeError:
        name = ""
    if not _REGION_NAME.fullmatch(name) or (known is not None and name not in known):
        raise EdgebusError(
            f"Bad {H_ONCE} header {raw!r:.80}: not a configured region (it names the "
            "region a write was first sent to)"
        )
    return name
