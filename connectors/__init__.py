"""Sinks and sources between edgebus streams and outside systems, chosen by URL.

- ``sqlite:///abs/path.db`` (or ``sqlite:relative/path.db``): the SQLite store region
  services apply events to (aiosqlite, WAL; state and Kafka positions in one
  transaction).
- ``jsonl:///abs/path.jsonl`` (or ``jsonl:relative.jsonl``): a JSON Lines store for
  export and import (an append-only log of key states and commit markers).

``by_url(url)`` returns an unopened :class:`~connectors.base.Store`;
``source_by_url(url)`` an iterator of exported key states.
"""

from __future__ import annotations

from connectors.base import BatchChanges, Checksums, Store, StoreStats
from connectors.urls import by_url, path_of, source_by_url

__all__ = [
    "BatchChanges",
    "Checksums",
    "Store",
    "StoreStats",
    "by_url",
    "path_of",
    "source_by_url",
]
