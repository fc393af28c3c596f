"""A state host's snapshot: its folds and its read positions, in one SQLite transaction.

The host saves, every ``state.snapshot_interval_ms`` and when it stops, the folds of the
states that changed since the last save together with its next offset in every
state-log partition, so a restarted host reads each partition from where its folds
stand. The log is the truth: the snapshot only saves re-reading it.

So a snapshot never stops a host. A save that fails for the database (locked, disk
full) is retried at the next interval, the changed states kept. A save that fails for
a row is retried by halving the rows to find it; the states that cannot be saved stay
out, and so do the positions (the saved ones stay, a restart folds those states again
from there: folding a record twice changes nothing). A snapshot that cannot be loaded
is set aside: the host folds its logs from their first offsets.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
from pathlib import Path

import aiosqlite
from aiokafka import TopicPartition

from connectors.files import create_private_file, make_private_dirs
from edgebus.core.state_machine import StateObject
from edgebus.state.owned import Folds, Key

__all__ = ["Snapshots"]

log = logging.getLogger("edgebus.state")
_INSERT = "INSERT OR REPLACE INTO state_objects VALUES (?, ?, ?)"
_Row = tuple[str, str, str]


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
        if str(self.db_path) != ":memory:":  # it holds states' values: private
            make_private_dirs(self.db_path.parent)
            create_private_file(self.db_path)
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
        try:
            await self._read(db)
        except Exception as e:  # a row this version cannot read: fold the logs again
            log.error("%s: the state snapshot cannot be loaded (%r): folding the state "
                      "logs from their first offsets", self.db_path, e)
            self.folds.objects.clear()
            self.folds.positions.clear()

    async def _read(self, db: aiosqlite.Connection) -> None:
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
        """Save every ``interval_s`` seconds, until cancelled (a failed save is retried
        at the next interval)."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.save()
            except Exception as e:
                log.warning("%s: state snapshot not saved (%r); retrying", self.db_path, e)

    async def save(self) -> None:
        """Write the changed folds and every position in one transaction (see the
        module docstring for a save that fails)."""
        db, folds = self._db, self.folds
        if db is None or not folds.dirty:
            return
        dirty = set(folds.dirty)
        folds.dirty.clear()
        try:
            refused = await self._write(db, dirty)
        except BaseException:
            folds.dirty |= dirty  # saved at the next interval
            with contextlib.suppress(Exception):
                await db.rollback()
            raise
        folds.dirty |= refused

    async def _write(self, db: aiosqlite.Connection, dirty: set[Key]) -> set[Key]:
        """Save ``dirty`` and, if every one of them could be saved, the positions;
        the keys that could not be. The folds and positions are taken together, before
        the first await: the reader folds on meanwhile, and positions saved ahead of the
        folds would skip records on a restart."""
        folds = self.folds
        positions = [(tp.topic, tp.partition, off) for tp, off in folds.positions.items()]
        topic_of = {c: t for t, c in folds.topic_class.items()}
        rows: list[tuple[Key, _Row]] = []
        refused: set[Key] = set()
        for key in dirty:
            if key not in folds.objects:
                continue
            try:
                snap = json.dumps(folds.objects[key].snapshot())
            except Exception as e:  # the fold holds what JSON cannot: never saved
                log.error("state %s/%s cannot be snapshotted: %r", key[0], key[1], e)
                refused.add(key)
                continue
            rows.append((key, (topic_of[key[0]], key[1], snap)))
        refused |= await self._insert(db, rows)
        if not refused:
            await db.executemany("INSERT OR REPLACE INTO state_positions VALUES (?, ?, ?)",
                                 positions)
        await db.commit()
        return refused

    async def _insert(self, db: aiosqlite.Connection, rows: list[tuple[Key, _Row]]
                      ) -> set[Key]:
        """Insert ``rows`` (in the open transaction); the keys of the rows SQLite
        refuses, found by halving. The database's own trouble is raised."""
        if not rows:
            return set()
        try:
            await db.executemany(_INSERT, [row for _key, row in rows])
            return set()
        except sqlite3.OperationalError:
            raise  # locked, disk full, I/O: not a row's fault
        except (sqlite3.Error, ValueError, OverflowError) as e:
            if len(rows) == 1:
                key = rows[0][0]
                log.error("state %s/%s cannot be saved in SQLite: %r", key[0], key[1], e)
                return {key}
        half = len(rows) // 2
        return await self._insert(db, rows[:half]) | await self._insert(db, rows[half:])

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
