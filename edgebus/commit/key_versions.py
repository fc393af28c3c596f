"""The versions of the keys a participant votes on, read from its region's store once
per batch of commit-log records.

A vote compares a write's ``expected_version`` with the key's version in the region's
store. :class:`KeyVersions` reads the versions of every key a batch's BEGINs name in one
store round trip (:meth:`KeyVersions.load`), and remembers which keys this region
applied a commit of since (:meth:`KeyVersions.applied`): those, and keys not loaded, are
read again at their vote (:meth:`KeyVersions.of`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from aiokafka import ConsumerRecord

from connectors.base import Store
from edgebus.commit.log import kind_of

__all__ = ["KeyVersions"]

log = logging.getLogger("edgebus.commit")


class KeyVersions:
    """The key versions of region ``region``'s votes, from the store ``store()``
    returns (the region service's, read at each use)."""

    def __init__(self, region: str, store: Callable[[], Store]) -> None:
        self.region = region
        self.store = store
        self._loaded: dict[str, int] = {}  #: key -> version, read for the current batch
        self._applied: set[str] = set()  #: keys applied since that read

    async def load(self, batch: Mapping[Any, Iterable[ConsumerRecord[bytes, bytes]]]) -> None:
        """One store read for the keys of every BEGIN in ``batch`` naming this region
        (votes then need no store round trip each); a failed read is logged (each vote
        reads its key then)."""
        keys = set()
        region = self.region.encode("ascii")
        for records in batch.values():
            for record in records:
                if (
                    record.key is not None
                    and record.value is not None
                    and (kind_of(record) == b"begin" and region in record.value)
                ):
                    keys.add(record.key.decode("utf-8", "replace"))
        self._applied.clear()
        self._loaded = {}
        if not keys:
            return
        try:
            loaded = await self.store().load(keys)
        except Exception as e:
            log.warning("%s: versions of %d keys not read (%r)", self.region, len(keys), e)
            return
        self._loaded = {k: s.version for k, s in loaded.items()}
        for key in keys:
            self._loaded.setdefault(key, 0)

    def applied(self, key: str) -> None:
        """This region applied a commit of ``key``: its loaded version is stale."""
        self._applied.add(key)

    def cached(self, key: str) -> int:
        """The loaded version of ``key`` (0 when not loaded): for a no vote's record."""
        return self._loaded.get(key, 0)

    async def of(self, key: str, *, fresh: bool = False) -> int:
        """The version of ``key`` in the store (0: absent): the loaded one unless
        ``fresh``, or the key was applied since, or not loaded."""
        version = None if fresh else self._loaded.get(key)
        if version is None or key in self._applied:
            state = await self.store().get(key)
            version = state.version if state is not None else 0
        return version
