"""A least-recently-used memo bounded in bytes, not in entries.

A memo bounded by its number of entries is bounded in memory only when its keys are
small: 8,192 field names of 220 KB each hold 1.8 GB. :class:`BoundedCache` weighs
each entry when it is stored (the caller's ``weigh(key, value)``: the size of the key
string plus a fixed overhead, say) and evicts the least recently used entries until
the total is within ``max_bytes``. An entry heavier than the whole bound is not
stored at all; ``max_bytes == 0`` turns the memo off.

``entries`` is the underlying :class:`~collections.OrderedDict` (oldest first), so a
hot loop can look a key up and mark it used with two C calls instead of a method
call; it must not store into it directly (the byte count would be wrong).

Pure: no I/O, no clock, no logging.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["ENTRY_OVERHEAD", "BoundedCache", "str_bytes"]

K = TypeVar("K")
V = TypeVar("V")

#: what an entry costs besides its key: the OrderedDict slot and links, the value
ENTRY_OVERHEAD = 160


def str_bytes(s: str) -> int:
    """The memory a string takes (its header and characters, as CPython stores it)."""
    return sys.getsizeof(s)


class BoundedCache(Generic[K, V]):
    """A memo of at most ``max_bytes`` (as ``weigh`` counts them), least recently
    used entries evicted first."""

    __slots__ = ("_weigh", "entries", "max_bytes", "nbytes")

    def __init__(self, max_bytes: int, weigh: Callable[[K, V], int]) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be at least 0, got {max_bytes}")
        self.entries: OrderedDict[K, V] = OrderedDict()
        self.max_bytes = max_bytes
        #: the weight of the entries held now
        self.nbytes = 0
        self._weigh = weigh

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, key: object) -> bool:
        return key in self.entries

    def get(self, key: K) -> V | None:
        """The value stored under ``key`` (now the most recently used), or None."""
        entries = self.entries
        value = entries.get(key)
        if value is not None:
            entries.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        """Store ``value`` under ``key`` (the most recently used), evicting the least
        recently used entries past ``max_bytes``; a value heavier than ``max_bytes``
        is not stored."""
        entries = self.entries
        old = entries.pop(key, None)
        if old is not None:
            self.nbytes -= self._weigh(key, old)
        size = self._weigh(key, value)
        if size > self.max_bytes:
            return
        entries[key] = value
        self.nbytes += size
        if self.nbytes > self.max_bytes:
            self._evict(self.max_bytes)

    def resize(self, max_bytes: int) -> None:
        """Bound the memo to ``max_bytes`` from now on, evicting what no longer fits."""
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be at least 0, got {max_bytes}")
        self.max_bytes = max_bytes
        self._evict(max_bytes)

    def clear(self) -> None:
        """Forget every entry."""
        self.entries.clear()
        self.nbytes = 0

    def _evict(self, limit: int) -> None:
        entries, weigh = self.entries, self._weigh
        while self.nbytes > limit and entries:
            key, value = entries.popitem(last=False)
            self.nbytes -= weigh(key, value)
