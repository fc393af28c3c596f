"""The SQLite store region services apply events to (``sqlite:///path.db``).

Key states, retained ops and the Kafka positions that produced them live in one
SQLite database in WAL mode, and :meth:`SQLiteStore.commit` writes a whole batch in
one transaction (eventsourcing's ``SQLiteProcessRecorder``, STYLE.md 3): after a
crash the store holds every committed batch and nothing of the one in flight, and the
consumer resumes from :meth:`SQLiteStore.positions`.

Durability (``synchronous``): ``NORMAL`` (the default) survives process crashes,
``kill -9`` included; a power loss or OS crash may lose the last batches committed
before it (never part of one: the WAL keeps the database consistent). ``FULL`` also
survives power loss, at the price of an fsync per commit.

Schema (version :data:`SCHEMA_VERSION`, kept in ``meta``; a newer one is refused):

- ``meta(name, value)``: ``schema_version`` and, once recorded, ``lineage`` (what the
  store was built from, :meth:`SQLiteStore.lineage`; a store without it is one from
  an edgebus before lineage, or a new one: no schema change);
- ``key_states``: one row per key (``present`` is ``KeyState.exists``, 0 for a
  tombstone; ``value`` and ``base_value`` are JSON text; ``base_present`` /
  ``base_value`` only when ``n_ops > 0``);
- ``retained_ops(key, hlc, origin, event_id, operation, payload)``, primary key
  ``(key, hlc, origin, event_id)``: stamp order is index order;
- ``positions(topic, topic_partition, next_offset)``;
- ``frontier(origin_region, origin_partition, origin_offset)``;
- ``redriven(dlq_partition, dlq_offset)``.

Keys sort by SQLite's default ``BINARY`` collation: the bytes of their UTF-8, which is
code point order, the order Python compares ``str`` in. Stamps and offsets are SQLite
64-bit signed integers (an HLC fits until the year 6429).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import suppress
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, Final

import aiosqlite
import orjson

from connectors.base import BatchChanges, Checksums, Store, StoreStats
from connectors.files import create_private_file, make_private_dirs
from edgebus.core.conflict import KeyOp, KeyState, Stamp
from edgebus.core.envelope import Operation
from edgebus.core.speedups import NATIVE
from edgebus.errors import StoreError

__all__ = [
    "SCHEMA_VERSION",
    "SYNCHRONOUS_MODES",
    "SQLiteStore",
    "read_sqlite_states",
]

#: version of the tables below; bumped (with a migration) whenever they change
SCHEMA_VERSION: Final = 1
#: accepted values of the ``synchronous`` option
SYNCHRONOUS_MODES: Final = ("NORMAL", "FULL")

#: SQLite's default limit is 999 bound parameters per statement; stay well below
_MAX_PARAMS: Final = 500
#: rows per query of :meth:`SQLiteStore.scan`
_SCAN_CHUNK: Final = 1000
#: seconds a writer waits for another connection's write lock before failing
_BUSY_TIMEOUT_S: Final = 10.0

_SCHEMA: Final = f"""
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO meta (name, value) VALUES ('schema_version', '{SCHEMA_VERSION}');
CREATE TABLE IF NOT EXISTS key_states (
    key           TEXT PRIMARY KEY,
    present       INTEGER NOT NULL,
    value         TEXT NOT NULL,
    version       INTEGER NOT NULL,
    top_hlc       INTEGER NOT NULL,
    top_origin    TEXT NOT NULL,
    top_event_id  TEXT NOT NULL,
    base_hlc      INTEGER,
    base_origin   TEXT,
    base_event_id TEXT,
    n_ops         INTEGER NOT NULL,
    int_counter   INTEGER NOT NULL,
    base_present  INTEGER,
    base_value    TEXT
);
CREATE TABLE IF NOT EXISTS retained_ops (
    key       TEXT NOT NULL,
    hlc       INTEGER NOT NULL,
    origin    TEXT NOT NULL,
    event_id  TEXT NOT NULL,
    operation TEXT NOT NULL,
    payload   TEXT NOT NULL,
    PRIMARY KEY (key, hlc, origin, event_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS positions (
    topic           TEXT NOT NULL,
    topic_partition INTEGER NOT NULL,
    next_offset     INTEGER NOT NULL,
    PRIMARY KEY (topic, topic_partition)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS frontier (
    origin_region    TEXT NOT NULL,
    origin_partition INTEGER NOT NULL,
    origin_offset    INTEGER NOT NULL,
    PRIMARY KEY (origin_region, origin_partition)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS redriven (
    dlq_partition INTEGER NOT NULL,
    dlq_offset    INTEGER NOT NULL,
    PRIMARY KEY (dlq_partition, dlq_offset)
) WITHOUT ROWID;
COMMIT;
"""

_STATE_COLUMNS: Final = (
    "key, present, value, version, top_hlc, top_origin, top_event_id, base_hlc, "
    "base_origin, base_event_id, n_ops, int_counter, base_present, base_value"
)
_OP_COLUMNS: Final = "key, hlc, origin, event_id, operation, payload"

# commit, in the order BatchChanges documents
_DROP: Final = (
    "DELETE FROM retained_ops WHERE key = ? AND (hlc, origin, event_id) < (?, ?, ?)"
)
_RETAIN: Final = f"INSERT OR IGNORE INTO retained_ops ({_OP_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"
_UPSERT_STATE: Final = (
    f"INSERT INTO key_states ({_STATE_COLUMNS}) VALUES ({', '.join('?' * 14)}) "
    "ON CONFLICT (key) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _STATE_COLUMNS.split(", ")[1:])
)
_UPSERT_POSITION: Final = (
    "INSERT INTO positions (topic, topic_partition, next_offset) VALUES (?, ?, ?) "
    "ON CONFLICT (topic, topic_partition) DO UPDATE SET next_offset = excluded.next_offset"
)
_UPSERT_FRONTIER: Final = (
    "INSERT INTO frontier (origin_region, origin_partition, origin_offset) VALUES (?, ?, ?) "
    "ON CONFLICT (origin_region, origin_partition) DO UPDATE SET "
    "origin_offset = MAX(origin_offset, excluded.origin_offset)"
)
_INSERT_REDRIVEN: Final = (
    "INSERT OR IGNORE INTO redriven (dlq_partition, dlq_offset) VALUES (?, ?)"
)
_SET_LINEAGE: Final = (
    "INSERT INTO meta (name, value) VALUES ('lineage', ?) "
    "ON CONFLICT (name) DO UPDATE SET value = excluded.value"
)
#: what :meth:`SQLiteStore.reset` empties: every table but ``meta``
_DATA_TABLES: Final = ("key_states", "retained_ops", "positions", "frontier", "redriven")


class SQLiteStore(Store):
    """Key states and Kafka positions in one SQLite file (WAL mode).

    ``synchronous="NORMAL"`` (default) survives process crashes such as ``kill -9``;
    ``"FULL"`` survives power loss as well. A missing parent directory is created.
    The same file may be opened by several stores at once (say, a reader while a
    region service commits): readers see committed batches only.
    """

    def __init__(self, path: str | os.PathLike[str], *, synchronous: str = "NORMAL") -> None:
        if synchronous.upper() not in SYNCHRONOUS_MODES:
            raise ValueError(
                f"synchronous={synchronous!r}: choose one of {', '.join(SYNCHRONOUS_MODES)}"
            )
        self.path = Path(os.path.abspath(path))
        self.synchronous = synchronous.upper()
        query = "" if self.synchronous == "NORMAL" else f"?synchronous={self.synchronous}"
        self.url = f"sqlite://{self.path}{query}"
        self._db: aiosqlite.Connection | None = None

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        """Create or open the database, check its schema version, enable WAL."""
        if self._db is not None:
            return
        try:
            make_private_dirs(self.path.parent)
            create_private_file(self.path)
        except OSError as e:
            raise StoreError(
                f"Store {self.url}: cannot create {self.path} or its directory ({e}). "
                "Create it, or choose a path you may write to."
            ) from e
        try:
            db = await aiosqlite.connect(
                self.path, isolation_level=None, timeout=_BUSY_TIMEOUT_S
            )
        except sqlite3.Error as e:
            raise StoreError(
                f"Store {self.url}: cannot open {self.path} ({e}). "
                "Check that the path is a file you may read and write."
            ) from e
        try:
            await self._prepare(db)
        except BaseException:
            await db.close()
            raise
        self._db = db

    async def _prepare(self, db: aiosqlite.Connection) -> None:
        try:
            rows = list(await db.execute_fetchall("PRAGMA journal_mode = WAL"))
            if str(rows[0][0]).lower() != "wal":
                raise StoreError(
                    f"Store {self.url}: SQLite cannot use WAL mode on {self.path} "
                    f"(journal mode stays {rows[0][0]!r}). Put the store on a local disk."
                )
            await db.execute(f"PRAGMA synchronous = {self.synchronous}")
            tables = {
                row[0]
                for row in await db.execute_fetchall(
                    "SELECT name FROM sqlite_master WHERE type = 'table'"
                )
            }
            if "meta" in tables:
                found = await db.execute_fetchall(
                    "SELECT value FROM meta WHERE name = 'schema_version'"
                )
                version = int(next(iter(found))[0]) if found else 0
                if version > SCHEMA_VERSION:
                    raise StoreError(
                        f"Store {self.url} has schema version {version}, written by a newer "
                        f"edgebus; this one reads up to version {SCHEMA_VERSION}. "
                        "Upgrade edgebus to open it."
                    )
            elif tables:
                raise StoreError(
                    f"Store {self.url}: {self.path} is an SQLite database of another "
                    f"application (tables {', '.join(sorted(tables))}). "
                    "Choose a new file for the store."
                )
            await db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as e:
            raise StoreError(
                f"Store {self.url}: {self.path} is not a usable SQLite database ({e}). "
                "Choose another path, or move the file away."
            ) from e

    async def close(self) -> None:
        """Close the connection (committed batches stay; the WAL is checkpointed)."""
        db, self._db = self._db, None
        if db is not None:
            await db.close()

    def _conn(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StoreError(
                f"Store {self.url} is not open: use `async with by_url(url) as store:`."
            )
        return self._db

    # ------------------------------------------------------------------ writes

    async def commit(self, changes: BatchChanges) -> None:
        """Write one batch in one transaction (a few thread hops, whatever its size)."""
        self._conn()
        try:
            steps = (
                (_DROP, [(key, *stamp) for key, stamp in changes.drop_before.items()]),
                (_RETAIN, [self._op_row(key, op) for key, op in changes.retain]),
                (_UPSERT_STATE, _state_rows(list(changes.states.values()))),
                (_UPSERT_POSITION, [(t, p, o) for (t, p), o in changes.positions.items()]),
                (_UPSERT_FRONTIER, [(r, p, o) for (r, p), o in changes.frontier.items()]),
                (_INSERT_REDRIVEN, list(changes.redriven)),
            )
        except orjson.JSONEncodeError as e:  # found before the transaction begins
            raise StoreError(
                f"Store {self.url}: the batch holds a value that is not storable JSON ({e}); "
                "nothing was written. Values must be JSON with integers within 64 bits."
            ) from e
        await self._transact(steps, "commit")

    async def set_lineage(self, lineage: str) -> None:
        """Record ``lineage`` in ``meta``, in one transaction."""
        self._conn()
        await self._transact(((_SET_LINEAGE, [(lineage,)]),), "recording the lineage")

    async def reset(self, lineage: str) -> None:
        """Empty every table but ``meta`` and record ``lineage``, in one transaction."""
        self._conn()
        steps: list[tuple[str, list[Any]]] = [
            (f"DELETE FROM {table}", [()]) for table in _DATA_TABLES
        ]
        steps.append((_SET_LINEAGE, [(lineage,)]))
        await self._transact(steps, "reset")
        # give the emptied pages back (a rebuilt store's size is then its data's);
        # best effort: a reader holding the file open makes VACUUM wait or fail
        with contextlib.suppress(sqlite3.Error):
            await self._conn().execute("VACUUM")

    async def _transact(self, steps: Sequence[tuple[str, list[Any]]], what: str) -> None:
        """Run ``steps`` (statement, parameter rows) in one transaction."""
        db = self._conn()
        run_in_thread = getattr(db, "_execute", None)
        if run_in_thread is not None:
            # one hop to the database thread for the whole transaction: on a busy event
            # loop every hop waits its turn, and a batch would otherwise make six
            try:
                await run_in_thread(_commit_in_thread, db._conn, steps)
            except (sqlite3.Error, OverflowError) as e:
                raise self._write_error(e, what) from e
            return
        try:
            await db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            raise self._write_error(e, what) from e
        try:
            for sql, rows in steps:
                if rows:
                    await db.executemany(sql, rows)
            await db.execute("COMMIT")
        except BaseException as e:
            with suppress(Exception):
                await db.rollback()
            if isinstance(e, sqlite3.Error | OverflowError):
                raise self._write_error(e, what) from e
            raise

    def _write_error(self, e: BaseException, what: str = "commit") -> StoreError:
        hint = (
            "another process is writing to this store: run one region service per store"
            if "locked" in str(e) or "busy" in str(e)
            else "check free disk space and the file's permissions"
        )
        done = "nothing of the batch was written" if what == "commit" else "nothing changed"
        return StoreError(
            f"Store {self.url}: {what} failed and was rolled back ({type(e).__name__}: {e}); "
            f"{done}. Fix the cause ({hint}) and restart: "
            "consumption resumes from the last committed positions."
        )

    @staticmethod
    def _state_row(s: KeyState) -> tuple[Any, ...]:
        base = s.base if s.base is not None else (None, None, None)
        with_ops = s.n_ops > 0
        return (
            s.key,
            int(s.exists),
            _dumps(s.value),
            s.version,
            *s.top,
            *base,
            s.n_ops,
            int(s.int_counter),
            int(s.base_exists) if with_ops else None,
            _dumps(s.base_value) if with_ops else None,
        )

    @staticmethod
    def _op_row(key: str, op: KeyOp) -> tuple[Any, ...]:
        return (key, *op.stamp, op.operation.value, _dumps(op.payload))

    # ------------------------------------------------------------------ reads

    async def load(self, keys: Iterable[str]) -> dict[str, KeyState]:
        """Stored states of these keys, ``ops=None`` where ops are retained."""
        db = self._conn()
        wanted = list(dict.fromkeys(keys))
        found: dict[str, KeyState] = {}
        for i in range(0, len(wanted), _MAX_PARAMS):
            chunk = wanted[i : i + _MAX_PARAMS]
            rows = await db.execute_fetchall(
                f"SELECT {_STATE_COLUMNS} FROM key_states "
                f"WHERE key IN ({', '.join('?' * len(chunk))})",
                chunk,
            )
            for row in rows:
                state = _state_of(row)
                found[state.key] = state
        return found

    async def load_ops(self, key: str) -> list[KeyOp]:
        """The key's retained ops in stamp order."""
        rows = await self._conn().execute_fetchall(
            f"SELECT {_OP_COLUMNS} FROM retained_ops WHERE key = ? "
            "ORDER BY hlc, origin, event_id",
            (key,),
        )
        return [_op_of(row) for row in rows]

    async def get(self, key: str) -> KeyState | None:
        """A key's state as :meth:`load` returns it, or ``None``."""
        return (await self.load([key])).get(key)

    async def lineage(self) -> str | None:
        """The lineage recorded in ``meta``, ``None`` when none is."""
        rows = list(
            await self._conn().execute_fetchall("SELECT value FROM meta WHERE name = 'lineage'")
        )
        return str(rows[0][0]) if rows else None

    async def positions(self) -> dict[tuple[str, int], int]:
        """(topic, partition) -> next offset to consume, as last committed."""
        rows = await self._conn().execute_fetchall(
            "SELECT topic, topic_partition, next_offset FROM positions"
        )
        return {(t, p): o for t, p, o in rows}

    async def frontier(self) -> dict[tuple[str, int], int]:
        """(origin region, origin partition) -> highest origin offset applied."""
        rows = await self._conn().execute_fetchall(
            "SELECT origin_region, origin_partition, origin_offset FROM frontier"
        )
        return {(r, p): o for r, p, o in rows}

    async def was_redriven(self, dlq_positions: Iterable[tuple[int, int]]) -> set[tuple[int, int]]:
        """Which of these (dlq partition, dlq offset) a redrive has already applied."""
        db = self._conn()
        wanted = list(dict.fromkeys(dlq_positions))
        done: set[tuple[int, int]] = set()
        per_query = _MAX_PARAMS // 2
        for i in range(0, len(wanted), per_query):
            chunk = wanted[i : i + per_query]
            pairs = ", ".join(["(?, ?)"] * len(chunk))
            rows = await db.execute_fetchall(
                "SELECT dlq_partition, dlq_offset FROM redriven "
                f"WHERE (dlq_partition, dlq_offset) IN (VALUES {pairs})",
                [n for pair in chunk for n in pair],
            )
            done.update((p, o) for p, o in rows)
        return done

    async def scan(self, start: str | None = None) -> AsyncIterator[KeyState]:
        """States in key order from ``start`` (inclusive), read a chunk at a time.

        Each chunk is its own read: a scan running beside commits sees each key as
        committed at the time its chunk was read (use :meth:`checksums` for one
        snapshot).
        """
        db = self._conn()
        rows = list(
            await db.execute_fetchall(
                f"SELECT {_STATE_COLUMNS} FROM key_states WHERE key >= ? ORDER BY key LIMIT ?",
                (start or "", _SCAN_CHUNK),
            )
        )
        while rows:
            for row in rows:
                yield _state_of(row)
            if len(rows) < _SCAN_CHUNK:
                return
            rows = list(
                await db.execute_fetchall(
                    f"SELECT {_STATE_COLUMNS} FROM key_states WHERE key > ? "
                    "ORDER BY key LIMIT ?",
                    (rows[-1][0], _SCAN_CHUNK),
                )
            )

    async def _ops_of(self, keys: Sequence[str]) -> dict[str, list[KeyOp]]:
        """Retained ops of several keys, in stamp order."""
        db = self._conn()
        ops: dict[str, list[KeyOp]] = {}
        for i in range(0, len(keys), _MAX_PARAMS):
            chunk = keys[i : i + _MAX_PARAMS]
            rows = await db.execute_fetchall(
                f"SELECT {_OP_COLUMNS} FROM retained_ops "
                f"WHERE key IN ({', '.join('?' * len(chunk))}) "
                "ORDER BY key, hlc, origin, event_id",
                chunk,
            )
            for row in rows:
                ops.setdefault(row[0], []).append(_op_of(row))
        return ops

    async def stats(self) -> StoreStats:
        """Live keys, tombstones, retained ops and the size of the db and WAL files."""
        rows = await self._conn().execute_fetchall(
            "SELECT COALESCE(SUM(present), 0), COALESCE(SUM(1 - present), 0), "
            "(SELECT COUNT(*) FROM retained_ops) FROM key_states"
        )
        keys, tombstones, retained = next(iter(rows))
        size = 0
        for suffix in ("", "-wal"):
            with suppress(FileNotFoundError):
                size += os.stat(f"{self.path}{suffix}").st_size
        return StoreStats(keys, tombstones, retained, size)

    async def checksums(self) -> Checksums:
        """Positions and bucket digests of one snapshot, read in one read transaction.

        The rows stream through :meth:`Store.digest_rows` on a worker thread over a
        connection of its own, so memory stays flat and concurrent commits (of this or
        another store on the file) do not show through.
        """
        self._conn()
        return await asyncio.to_thread(self._checksums_snapshot)

    def _checksums_snapshot(self) -> Checksums:
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=_BUSY_TIMEOUT_S)
        except sqlite3.Error as e:
            raise StoreError(f"Store {self.url}: cannot open {self.path} to verify ({e}).") from e
        try:
            conn.execute("BEGIN")  # deferred: the snapshot is taken at the first read
            positions = {
                (t, p): o
                for t, p, o in conn.execute(
                    "SELECT topic, topic_partition, next_offset FROM positions"
                )
            }
            rows = conn.execute(
                "SELECT key, present, value, version, top_hlc, top_origin, top_event_id "
                "FROM key_states ORDER BY key"
            )
            buckets, n = Store.digest_rows(
                KeyState(key, bool(present), orjson.loads(value), None, Stamp(h, o, e), version)
                for key, present, value, version, h, o, e in rows
            )
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            raise StoreError(
                f"Store {self.url}: reading a snapshot failed ({e}). Retry; if it persists, "
                "check the file with `sqlite3 <path> 'PRAGMA integrity_check'`."
            ) from e
        finally:
            conn.close()
        return Checksums(positions, buckets, n)


async def read_sqlite_states(path: Path) -> AsyncIterator[KeyState]:
    """Every key state of an SQLite store in key order, with retained ops loaded."""
    store = SQLiteStore(path)
    async with store:
        batch: list[KeyState] = []
        async for state in store.scan():
            batch.append(state)
            if len(batch) >= _SCAN_CHUNK:
                for full in await _with_ops(store, batch):
                    yield full
                batch = []
        for full in await _with_ops(store, batch):
            yield full


async def _with_ops(store: SQLiteStore, states: list[KeyState]) -> list[KeyState]:
    ops = await store._ops_of([s.key for s in states if s.n_ops])
    return [
        replace(s, ops=tuple(ops.get(s.key, ()))) if s.n_ops else s for s in states
    ]


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _state_rows(states: list[KeyState]) -> list[tuple[Any, ...]]:
    """The ``key_states`` rows of ``states`` (the C module makes them in one call,
    the same rows as :meth:`SQLiteStore._state_row`)."""
    if _native_rows is not None and _STATE_SLOTS is not None:
        rows: list[tuple[Any, ...]] = _native_rows(states, _STATE_SLOTS, orjson.dumps)
        return rows
    return [SQLiteStore._state_row(s) for s in states]


_native_rows: Any = getattr(NATIVE, "state_rows", None)
_STATE_FIELDS = ("key", "exists", "value", "base", "top", "version", "n_ops", "int_counter",
                 "ops", "base_exists", "base_value")
#: KeyState's slot descriptors in the field order the C module reads them (None: the
#: class changed, and the rows are made in Python)
_STATE_SLOTS: tuple[Any, ...] | None = (
    tuple(vars(KeyState)[name] for name in _STATE_FIELDS)
    if tuple(f.name for f in fields(KeyState)) == _STATE_FIELDS else None
)


def _state_of(row: Sequence[Any]) -> KeyState:
    (key, present, value, version, top_hlc, top_origin, top_event_id, base_hlc,
     base_origin, base_event_id, n_ops, int_counter, base_present, base_value) = row  # fmt: skip
    exists, decoded = bool(present), orjson.loads(value)
    if n_ops:
        ops, base_exists, base_decoded = None, bool(base_present), orjson.loads(base_value)
    else:
        ops, base_exists, base_decoded = (), exists, decoded
    return KeyState(
        key,
        exists,
        decoded,
        None if base_hlc is None else Stamp(base_hlc, base_origin, base_event_id),
        Stamp(top_hlc, top_origin, top_event_id),
        version,
        n_ops,
        bool(int_counter),
        ops,
        base_exists,
        base_decoded,
    )


def _op_of(row: Sequence[Any]) -> KeyOp:
    _key, hlc, origin, event_id, operation, payload = row
    return KeyOp(Stamp(hlc, origin, event_id), Operation(operation), orjson.loads(payload))


def _commit_in_thread(conn: sqlite3.Connection, steps: Any) -> None:
    """The batch's transaction, run on aiosqlite's database thread in one call."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        for sql, rows in steps:
            if rows:
                conn.executemany(sql, rows)
        conn.execute("COMMIT")
    except BaseException:
        with suppress(Exception):
            conn.execute("ROLLBACK")
        raise

