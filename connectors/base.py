"""The store contract every sink implements: state per key and the Kafka positions that
produced it, committed in one transaction.

A region service (and ``edgebus replay``) reads a batch of events from Kafka, folds
them onto the stored key states with :mod:`edgebus.core.conflict`
(:class:`edgebus.region.applier.BatchApplier` does that, for every store alike) and
hands the store one :class:`BatchChanges`: new key states, retained ops to add and
drop, the next offset of each consumed partition, the origin frontier and the
redriven dead letters. :meth:`Store.commit` writes all of it atomically, so a crash
never loses or doubles an effect, and a restart resumes from :meth:`Store.positions`.

A store also records its lineage, what it was built from (:mod:`edgebus.core.lineage`):
a service that finds the Kafka layout changed under its store empties it
(:meth:`Store.reset`) and rebuilds it from the topic.

Every store passes the one shared suite in ``tests/connectors/store_contract.py``.
"""

from __future__ import annotations

import abc
import hashlib
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from edgebus.core.conflict import KeyOp, KeyState, Stamp

__all__ = [
    "CHECKSUM_BUCKETS",
    "BatchChanges",
    "Checksums",
    "Store",
    "StoreStats",
    "bucket_of",
    "digest_fields",
    "row_digest",
]

#: verify compares stores bucket by bucket: a key's bucket is the first byte of the
#: SHA-256 of its UTF-8 bytes (256 equal key-hash ranges)
CHECKSUM_BUCKETS = 256


@dataclass(slots=True)
class BatchChanges:
    """Everything one batch changes, committed in one transaction.

    Apply order inside :meth:`Store.commit`: first ``drop_before`` (delete the key's
    retained ops with a stamp older than the given one), then insert ``retain``, then
    upsert ``states``, ``positions``, ``frontier`` and ``redriven``. The applier has
    already netted out ops retained and dropped within the same batch.
    """

    #: new state per key (the last one of the batch)
    states: dict[str, KeyState] = field(default_factory=dict)
    #: retained ops to add, as (key, op)
    retain: list[tuple[str, KeyOp]] = field(default_factory=list)
    #: per key: delete retained ops whose stamp is older than this one
    drop_before: dict[str, Stamp] = field(default_factory=dict)
    #: (topic, partition) -> next offset to consume (the consumer's position)
    positions: dict[tuple[str, int], int] = field(default_factory=dict)
    #: (origin region, origin partition) -> highest origin offset applied
    frontier: dict[tuple[str, int], int] = field(default_factory=dict)
    #: dead letters applied by a redrive, as (dlq partition, dlq offset)
    redriven: set[tuple[int, int]] = field(default_factory=set)
    #: events in this batch (applied, overwritten or skipped as duplicates)
    events: int = 0


class StoreStats(NamedTuple):
    """Size figures for ``edgebus status``."""

    keys: int  #: live keys (deleted keys not counted)
    tombstones: int  #: deleted keys kept so that older writes cannot resurrect them
    retained_ops: int
    bytes: int  #: on-disk size


class Checksums(NamedTuple):
    """A consistent snapshot's positions and per-bucket digests (``edgebus verify``)."""

    positions: dict[tuple[str, int], int]
    buckets: dict[int, str]  #: bucket -> hex digest over its rows in key order
    keys: int


def bucket_of(key: str) -> int:
    """The checksum bucket (key-hash range) of a key."""
    return hashlib.sha256(key.encode("utf-8")).digest()[0]


def row_digest(state: KeyState) -> bytes:
    """What verify compares for one key: existence, value, version and newest stamp."""
    return digest_fields(state.key, state.exists, state.value, state.version, state.top)


def digest_fields(
    key: str, exists: bool, value: Any, version: int, top: Sequence[Any]
) -> bytes:
    """:func:`row_digest` from the fields themselves (e.g. a query endpoint's row)."""
    return orjson.dumps([key, exists, value, version, list(top)], option=orjson.OPT_SORT_KEYS)


class Store(abc.ABC):
    """A materialized region: key states plus the Kafka positions that produced them.

    Use as ``async with by_url(url) as store:``. All methods are coroutines; one task
    at a time uses a store (the region service serializes access).
    """

    url: str

    async def __aenter__(self) -> Store:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @abc.abstractmethod
    async def open(self) -> None:
        """Create or open the store (idempotent); raises ``StoreError`` if unusable."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release files and connections; committed batches stay."""

    @abc.abstractmethod
    async def load(self, keys: Iterable[str]) -> dict[str, KeyState]:
        """Stored states of these keys (missing keys absent), with ``ops=None`` when the
        key has retained ops (load them with :meth:`load_ops` if the fold asks)."""

    @abc.abstractmethod
    async def load_ops(self, key: str) -> list[KeyOp]:
        """The key's retained ops, in stamp order."""

    @abc.abstractmethod
    async def commit(self, changes: BatchChanges) -> None:
        """Write one batch atomically: all of it or, after a crash, none of it."""

    @abc.abstractmethod
    async def positions(self) -> dict[tuple[str, int], int]:
        """(topic, partition) -> next offset to consume, as last committed."""

    @abc.abstractmethod
    async def frontier(self) -> dict[tuple[str, int], int]:
        """(origin region, origin partition) -> highest origin offset applied."""

    @abc.abstractmethod
    async def was_redriven(self, dlq_positions: Iterable[tuple[int, int]]) -> set[tuple[int, int]]:
        """Which of these dead letters a redrive has already applied."""

    @abc.abstractmethod
    async def get(self, key: str) -> KeyState | None:
        """A key's state (deleted keys come back with ``exists=False``)."""

    @abc.abstractmethod
    def scan(self, start: str | None = None) -> AsyncIterator[KeyState]:
        """Every key's state in key order (UTF-8 code point order), from ``start``."""

    @abc.abstractmethod
    async def stats(self) -> StoreStats:
        """Key counts and size."""

    @abc.abstractmethod
    async def checksums(self) -> Checksums:
        """Positions and per-bucket digests of one consistent snapshot."""

    @abc.abstractmethod
    async def lineage(self) -> str | None:
        """The recorded lineage (what the store was built from: the JSON text of an
        :class:`edgebus.core.lineage.StoreLineage`), ``None`` when none is recorded (a
        new store, or one from an edgebus before lineage)."""

    @abc.abstractmethod
    async def set_lineage(self, lineage: str) -> None:
        """Record ``lineage`` in place of any recorded one, keeping everything else: a
        new store's first start, or the adoption of a store from before lineage.
        Committed (as durably as :meth:`commit`) when it returns."""

    @abc.abstractmethod
    async def reset(self, lineage: str) -> None:
        """Remove everything the store holds (key states, retained ops, positions,
        frontier, redriven dead letters) and record ``lineage``, atomically: after a
        crash the store is either as it was or empty with the new lineage."""

    @staticmethod
    def digest_rows(rows: Iterable[KeyState]) -> tuple[dict[int, str], int]:
        """Per-bucket SHA-256 over ``row_digest`` of rows given in key order."""
        hashers: dict[int, Any] = {}
        n = 0
        for state in rows:
            n += 1
            bucket = bucket_of(state.key)
            h = hashers.get(bucket)
            if h is None:
                h = hashers[bucket] = hashlib.sha256()
            h.update(row_digest(state))
            h.update(b"\n")
        return {b: h.hexdigest() for b, h in sorted(hashers.items())}, n


def merge_positions(
    into: dict[tuple[str, int], int], new: Mapping[tuple[str, int], int]
) -> None:
    """Keep the highest value per partition."""
    for tp, offset in new.items():
        if offset > into.get(tp, -1):
            into[tp] = offset
