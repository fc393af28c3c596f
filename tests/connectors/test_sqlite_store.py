"""The SQLite store: the shared contract, plus transactions and concurrent readers."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

from connectors import BatchChanges, Store, by_url
from connectors import sqlite as sqlite_module
from connectors.sqlite import SCHEMA_VERSION, SQLiteStore
from edgebus.core.conflict import Stamp
from edgebus.errors import StoreError
from tests.connectors.store_contract import Folder, StoreContract, commit_folded, event


class TestSQLiteStore(StoreContract):
    scheme, store_class, file_name = "sqlite", SQLiteStore, "region.db"

    async def test_a_commit_failing_midway_leaves_nothing_behind(
        self, store: Store, tmp_path: Path
    ) -> None:
        folder = await commit_folded(
            store,
            *(event("k", "increment", 1, hlc=h) for h in (1, 2, 3)),
            positions={("t", 0): 3},
            frontier={("eu", 0): 3},
        )
        before = (await store.load(["k"]), await store.load_ops("k"), await store.positions())
        failing = folder.batch(
            event("k", "set", 0, hlc=2),  # drops an op, then the states step fails:
            event("j", "increment", 1, hlc=4),
            positions={("t", 0): 5},
            frontier={("eu", 0): 5},
            redriven={(0, 1)},
        )
        assert failing.drop_before and failing.retain
        failing.states["j"] = replace(failing.states["j"], top=Stamp(2**63, "eu", "x"))
        with pytest.raises(StoreError, match=r"rolled back \(OverflowError"):  # not an INTEGER
            await store.commit(failing)
        after = (await store.load(["k", "j"]), await store.load_ops("k"), await store.positions())
        assert after == before
        assert await store.load_ops("j") == []
        assert await store.frontier() == {("eu", 0): 3}
        assert await store.was_redriven([(0, 1)]) == set()
        await store.commit(BatchChanges(positions={("t", 0): 6}))  # no transaction left open
        assert await store.positions() == {("t", 0): 6}

    async def test_a_statement_failing_inside_the_transaction_rolls_all_of_it_back(
        self, store: Store, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        folder = await commit_folded(
            store, *(event("k", "increment", 1, hlc=h) for h in (1, 2, 3)),
            positions={("t", 0): 3},
        )
        before = (await store.load(["k"]), await store.load_ops("k"), await store.positions())
        failing = folder.batch(
            event("k", "set", 0, hlc=2), event("j", "increment", 1, hlc=4),
            positions={("t", 0): 5},
        )
        rows = sqlite_module._state_rows

        def without_a_value(states: list[Any]) -> list[tuple[Any, ...]]:
            return [(r[0], r[1], None, *r[3:]) for r in rows(states)]  # value is NOT NULL

        monkeypatch.setattr(sqlite_module, "_state_rows", without_a_value)
        with pytest.raises(StoreError, match=r"rolled back .*NOT NULL"):
            await store.commit(failing)  # the drop and retain steps ran before it failed
        after = (await store.load(["k"]), await store.load_ops("k"), await store.positions())
        assert after == before and await store.load(["j"]) == {}

    async def test_a_reader_sees_consistent_snapshots_while_a_writer_commits(
        self, store: Store, tmp_path: Path
    ) -> None:
        folder, keys, rounds = Folder(), [f"k{i}" for i in range(40)], 60
        batches, expected = [], {}
        for r in range(1, rounds + 1):
            batches.append(
                folder.batch(*(event(k, "set", r, hlc=r) for k in keys), positions={("t", 0): r})
            )
            expected[r] = Store.digest_rows(folder.states[k] for k in sorted(keys))[0]
        reader = self.make_store(tmp_path)
        seen: set[int] = set()

        async def write() -> None:
            for changes in batches:
                await store.commit(changes)

        async def read() -> None:
            while len(seen) < 3 or max(seen) < rounds:
                sums = await reader.checksums()
                if sums.positions:
                    r = sums.positions[("t", 0)]
                    assert sums.buckets == expected[r], f"round {r} mixed with another"
                    seen.add(r)

        async with reader:
            await asyncio.gather(write(), read())
        assert len(seen) >= 3, seen

    async def test_checksums_read_positions_and_rows_in_one_snapshot(
        self, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        folder, keys = Folder(), [f"k{i}" for i in range(20)]
        first = folder.batch(*(event(k, "set", 1, hlc=1) for k in keys), positions={("t", 0): 1})
        expected = Store.digest_rows(folder.states[k] for k in sorted(keys))[0]
        second = folder.batch(*(event(k, "set", 2, hlc=2) for k in keys), positions={("t", 0): 2})
        await store.commit(first)
        loop, connect = asyncio.get_running_loop(), sqlite3.connect

        def connect_and_commit_between_reads(*args: Any, **kwargs: Any) -> sqlite3.Connection:
            conn = connect(*args, **kwargs)

            def between(statement: str) -> None:  # the writer commits once positions are read
                if statement.startswith("SELECT key"):
                    asyncio.run_coroutine_threadsafe(store.commit(second), loop).result()

            conn.set_trace_callback(between)
            return conn

        async with self.make_store(tmp_path) as reader:
            monkeypatch.setattr(sqlite3, "connect", connect_and_commit_between_reads)
            sums = await reader.checksums()
        assert (sums.positions, sums.buckets) == ({("t", 0): 1}, expected)
        assert await store.positions() == {("t", 0): 2}

    async def test_a_commit_takes_a_few_round_trips_whatever_its_size(
        self, store: Store, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        folder = Folder()
        changes = folder.batch(
            *(event(f"k{i}", "increment", 1, hlc=i + 1) for i in range(3000)),
            positions={("t", p): 1000 for p in range(8)},
            frontier={("eu", p): 999 for p in range(8)},
        )
        calls: list[str] = []
        for name in ("execute", "executemany", "execute_fetchall"):
            original = getattr(aiosqlite.Connection, name)

            def counted(self: object, *args: object, _o: object = original, _n: str = name):
                calls.append(_n)
                return _o(self, *args)  # type: ignore[operator]

            monkeypatch.setattr(aiosqlite.Connection, name, counted)
        await store.commit(changes)
        assert len(calls) <= 6, calls

    async def test_refuses_a_newer_schema_version(self, store: Store, tmp_path: Path) -> None:
        await store.close()
        with sqlite3.connect(tmp_path / "region.db") as db:
            db.execute("UPDATE meta SET value = ? WHERE name = 'schema_version'",
                       (str(SCHEMA_VERSION + 1),))  # fmt: skip
        db.close()
        with pytest.raises(StoreError, match="newer edgebus"):
            await self.make_store(tmp_path).open()

    async def test_refuses_a_database_of_another_application(self, tmp_path: Path) -> None:
        db = sqlite3.connect(tmp_path / "region.db")
        db.execute("CREATE TABLE invoices (id INTEGER)")
        db.close()
        with pytest.raises(StoreError, match="another application"):
            await self.make_store(tmp_path).open()

    async def test_refuses_a_file_that_is_not_sqlite(self, tmp_path: Path) -> None:
        (tmp_path / "region.db").write_bytes(b"certainly not a database\n" * 100)
        with pytest.raises(StoreError, match="not a usable SQLite database"):
            await self.make_store(tmp_path).open()

    async def test_the_file_is_in_wal_mode(self, store: Store, tmp_path: Path) -> None:
        db = sqlite3.connect(tmp_path / "region.db")
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        db.close()

    def test_synchronous_full_comes_from_the_url(self, tmp_path: Path) -> None:
        store = by_url(f"sqlite://{tmp_path}/x.db?synchronous=full")
        assert isinstance(store, SQLiteStore)
        assert store.synchronous == "FULL"
        assert store.url == f"sqlite://{tmp_path}/x.db?synchronous=FULL"
        with pytest.raises(StoreError, match="NORMAL, FULL"):
            by_url(f"sqlite://{tmp_path}/x.db?synchronous=OFF")

