"""Stores are private: what a store creates (directories, database, WAL, JSON Lines
file, state snapshots) is readable by its owner only; what exists keeps its mode."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from connectors import by_url
from connectors.base import BatchChanges
from edgebus.state.owned import Folds
from edgebus.state.snapshots import Snapshots


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def loose_umask() -> object:
    previous = os.umask(0o022)  # the usual default: files 0644 unless edgebus says so
    yield
    os.umask(previous)


async def test_a_new_sqlite_store_its_wal_and_its_new_directories_are_private(
    tmp_path: Path,
) -> None:
    existing = tmp_path / "existing"
    existing.mkdir(mode=0o755)
    os.chmod(existing, 0o755)
    path = existing / "a" / "b" / "store.db"
    store = by_url(f"sqlite://{path}")
    async with store:
        await store.commit(BatchChanges(events=0, positions={("t", 0): 1}))
        assert mode(path) == 0o600
        assert mode(path.with_name("store.db-wal")) == 0o600
    assert mode(existing / "a") == 0o700 and mode(existing / "a" / "b") == 0o700
    assert mode(existing) == 0o755  # existing directories keep their mode


async def test_a_new_jsonl_store_is_private_and_stays_so_when_rewritten(
    tmp_path: Path,
) -> None:
    path = tmp_path / "new" / "store.jsonl"
    store = by_url(f"jsonl://{path}")
    async with store:
        await store.commit(BatchChanges(events=0, positions={("t", 0): 1}))
        await store.reset("{}")
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700


async def test_an_existing_store_file_keeps_the_mode_its_operator_chose(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store.db"
    store = by_url(f"sqlite://{path}")
    async with store:
        pass
    os.chmod(path, 0o640)
    async with by_url(f"sqlite://{path}"):
        pass
    assert mode(path) == 0o640


async def test_state_snapshots_are_private(tmp_path: Path) -> None:
    path = tmp_path / "states" / "states-eu.db"
    snapshots = Snapshots(path, Folds({}))
    await snapshots.open()
    await snapshots.close()
    assert mode(path) == 0o600 and mode(path.parent) == 0o700
