"""A state host's snapshot: its folds and its read positions, in one SQLite transaction.

The host saves, every ``state.snapshot_interval_ms`` and when it stops, the folds of the
states that changed since the last save together with its next offset in every
state-log partition, so a restarted host reads each partition from where its folds
stand. The log is the truth: the snapshot only saves re-reading it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import aiosqlite
from aiokafka import TopicPartition

from edgebus.core.state_machine import StateObject
from edgebus.state.owned import Folds

__all__ = ["Snapshots"]


class Snapshots:
    """The host's :class:`~edgebus.state.owned.Folds` (its folds and read positions),
    saved together in ``db_path``: :meth:`open` loads the saved ones into them,
    :meth:`save` writes the states folded since the last save (``folds.dirty``) and
    every position."""

    def __init__(self, db_path: Path, folds: Folds) -> None:
        self.db_path = db_path
        self.folds = folds
        self._db: aiosqlite.Connection | None = None

    async def open(self) -> None:
        """Open (create) the database and load what it saved for this host's logs."""
        if str(self.db_path) != ":memory:":
            self.db_path.parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(self.db_path)
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("CREATE TABLE IF NOT EXISTS state_objects (topic TEXT, state_id "
                         "TEXT, snapshot TEXT NOT NULL, PRIMARY KEY (topic, state_id))")
        await db.execute("CREATE TABLE IF NOT EXISTS state_positions (topic TEXT, "
                         "partition INTEGER, next_offset INTEGER NOT NULL, "
                         "PRIMARY KEY (topic, partition))")
        await db.commit()
        self._db = db
        await self._load(db)

    async def _load(self, db: aiosqlite.Connection) -> None:
        by_topic = self.folds.topic_class
        async with db.execute("SELECT topic, partition, next_offset FROM state_positions"
                              ) as cursor:
            async for topic, partition, offset in cursor:
                if topic in by_topic:
                    self.folds.positions[TopicPartition(topic, partition)] = offset
        async with db.execute("SELECT topic, state_id, snapshot FROM state_objects") as cursor:
            async for topic, state_id, snap in cursor:
                if topic in by_topic:
                    self.folds.objects[(by_topic[topic], state_id)] = StateObject.from_snapshot(
                        json.loads(snap))

    async def run(self, interval_s: float) -> None:
        """Save every ``interval_s`` seconds, until cancelled."""
        while True:
            await asyncio.sleep(interval_s)
            await self.save()

    async def save(self) -> None:
        """Write the changed folds and every position in one transaction."""
        db, folds = self._db, self.folds
        if db is None or not folds.dirty:
            return
        dirty = set(folds.dirty)
        folds.dirty.clear()
        topic_of = {c: t for t, c in folds.topic_class.items()}
        rows = [(topic_of[k[0]], k[1], json.dumps(folds.objects[k].snapshot()))
                for k in dirty if k in folds.objects]
        positions = [(tp.topic, tp.partition, off) for tp, off in folds.positions.items()]
        await db.executemany("INSERT OR REPLACE INTO state_objects VALUES (?, ?, ?)", rows)
        await db.executemany("INSERT OR REPLACE INTO state_positions VALUES (?, ?, ?)",
                             positions)
        await db.commit()

    async def close(self) -> None:
        """Save a last time and close the database (failures are ignored: the log is
        the truth)."""
        if self._db is None:
            return
        with contextlib.suppress(Exception):
            await self.save()
        with contextlib.suppress(Exception):
            await self._db.close()
        self._db = None
