"""The JSON Lines store: the shared contract, plus torn tails and the file format."""

from __future__ import annotations

import asyncio
import errno
import os
from pathlib import Path

import orjson
import pytest

from connectors import Store, jsonl, source_by_url
from connectors.jsonl import JsonlStore
from edgebus.errors import StoreError
from tests.connectors.store_contract import (
    Folder,
    StoreContract,
    assert_committed,
    commit_folded,
    event,
)

HEADER = b'{"type":"header","format":"edgebus-store","version":1}\n'
MARKER_1 = b'{"type":"commit","lines":1,"events":1}\n'


class TestJsonlStore(StoreContract):
    scheme, store_class, file_name = "jsonl", JsonlStore, "export.jsonl"

    async def test_a_torn_tail_is_ignored_and_truncated_on_reopen(
        self, store: Store, tmp_path: Path
    ) -> None:
        folder = await commit_folded(store, event("k", "set", 1, hlc=1), positions={("t", 0): 1})
        committed = folder.loaded("k")
        await store.close()
        path = tmp_path / "export.jsonl"
        whole = path.read_bytes()
        with path.open("ab") as f:  # a crash mid-batch: lines, but no commit marker
            f.write(b'{"type":"position","topic":"t","partition":0,"next_offset":2}\n{"type":"st')
        async with self.make_store(tmp_path) as again:
            await assert_committed(again, {("t", 0): 1}, committed)
            assert path.read_bytes() == whole
            await again.commit(folder.batch(event("k", "set", 3, hlc=3), positions={("t", 0): 3}))
        async with self.make_store(tmp_path) as again:
            await assert_committed(again, {("t", 0): 3}, folder.loaded("k"))

    async def test_the_source_ignores_a_torn_tail_and_leaves_the_file_alone(
        self, store: Store, tmp_path: Path
    ) -> None:
        folder = await commit_folded(store, event("k", "set", 1, hlc=1))
        expected = dict(folder.states)
        await store.close()
        path = tmp_path / "export.jsonl"
        with path.open("ab") as f:
            f.write(b'{"type":"state","key":"torn"')
        before = path.read_bytes()
        assert [s async for s in source_by_url(store.url)] == list(expected.values())
        assert path.read_bytes() == before

    async def test_each_batch_ends_with_a_marker_counting_its_lines(
        self, store: Store, tmp_path: Path
    ) -> None:
        await commit_folded(
            store,
            event("a", "set", 1, hlc=1),
            event("b", "increment", 2, hlc=2),
            positions={("t", 0): 2},
            frontier={("eu", 0): 1},
        )
        raw = (tmp_path / "export.jsonl").read_bytes()
        lines = [orjson.loads(line) for line in raw.splitlines()]
        assert lines[0] == {"type": "header", "format": "edgebus-store", "version": 1}
        kinds = [line["type"] for line in lines[1:]]
        assert kinds == ["state", "state", "position", "frontier", "commit"]
        assert lines[-1] == {"type": "commit", "lines": 4, "events": 2}
        assert lines[2]["ops"] == [
            {"stamp": [2, "eu", "eu-2"], "operation": "increment", "payload": 2}
        ]

    async def test_a_second_writer_is_refused(self, store: Store, tmp_path: Path) -> None:
        with pytest.raises(StoreError, match="already open"):
            await self.make_store(tmp_path).open()

    async def test_a_failed_write_leaves_file_and_memory_unchanged(
        self, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        folder = await commit_folded(store, event("k", "set", 1, hlc=1), positions={("t", 0): 1})
        path = tmp_path / "export.jsonl"
        before = path.read_bytes()

        def disk_full(fd: int, data: bytes) -> None:
            os.write(fd, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(jsonl, "_write_all", disk_full)
        with pytest.raises(StoreError, match="No space left"):
            await store.commit(folder.batch(event("k", "set", 2, hlc=2), positions={("t", 0): 2}))
        assert path.read_bytes() == before
        assert await store.positions() == {("t", 0): 1}
        monkeypatch.undo()
        await store.commit(folder.batch(event("k", "set", 3, hlc=3), positions={("t", 0): 3}))
        async with self.reopened(store, tmp_path) as again:
            assert await again.positions() == {("t", 0): 3}

    async def test_a_cancelled_commit_still_lands_whole(self, store: Store, tmp_path: Path) -> None:
        folder = Folder()
        task = asyncio.create_task(
            store.commit(folder.batch(event("k", "set", 1, hlc=1), positions={("t", 0): 1}))
        )
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        async with self.reopened(store, tmp_path) as again:
            await assert_committed(again, {("t", 0): 1}, folder.loaded("k"))

    @pytest.mark.parametrize(
        ("body", "problem"),
        [
            (b"not json\n" + MARKER_1, "line 2 is not JSON"),
            (b'{"type":"position","topic":"t"}\n' + MARKER_1, "line 2 is not a valid store line"),
            (
                b'{"type":"redriven","partition":0,"offset":1}\n' + MARKER_1.replace(b"1", b"2"),
                "line 3 is a commit marker for 2 lines, but 1 precede it",
            ),
        ],
    )
    async def test_a_corrupt_committed_batch_is_reported(
        self, tmp_path: Path, body: bytes, problem: str
    ) -> None:
        (tmp_path / "export.jsonl").write_bytes(HEADER + body)
        with pytest.raises(StoreError, match=f"corrupt: {problem}"):
            await self.make_store(tmp_path).open()

    async def test_refuses_a_newer_format_version(self, tmp_path: Path) -> None:
        (tmp_path / "export.jsonl").write_bytes(HEADER.replace(b'"version":1', b'"version":2'))
        with pytest.raises(StoreError, match="newer edgebus"):
            await self.make_store(tmp_path).open()

    @pytest.mark.parametrize("content", [b"hello", b"hello\nworld\n", b'{"type":"state"}\n'])
    async def test_refuses_a_foreign_file_and_leaves_it_alone(
        self, tmp_path: Path, content: bytes
    ) -> None:
        (tmp_path / "export.jsonl").write_bytes(content)
        with pytest.raises(StoreError, match="not an edgebus JSON Lines store"):
            await self.make_store(tmp_path).open()
        assert (tmp_path / "export.jsonl").read_bytes() == content

    async def test_a_torn_header_is_written_again(self, tmp_path: Path) -> None:
        (tmp_path / "export.jsonl").write_bytes(HEADER[:10])
        async with self.make_store(tmp_path) as store:
            assert await store.positions() == {}
        assert (tmp_path / "export.jsonl").read_bytes() == HEADER

