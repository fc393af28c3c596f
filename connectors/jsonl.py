"""A JSON Lines store for export and import (``jsonl:///path.jsonl``).

The file is a log. Its first line is a header, ``{"type": "header", "format":
"edgebus-store", "version": 1}``; then each committed batch appends one line per
changed key state (the full :class:`~edgebus.core.conflict.KeyState`, retained ops
included), one per position, frontier and redriven change, and a commit marker that
counts them::

    {"type": "state", "key": "k", "exists": true, "value": 3, "version": 2,
     "top": [hlc, "origin", "event id"], "base": [hlc, "origin", "event id"] | null,
     "n_ops": 1, "int_counter": true, "base_exists": true, "base_value": 1,
     "ops": [{"stamp": [hlc, "origin", "event id"], "operation": "increment", "payload": 2}]}
    {"type": "position", "topic": "t", "partition": 0, "next_offset": 42}
    {"type": "frontier", "region": "eu", "partition": 0, "offset": 41}
    {"type": "redriven", "partition": 0, "offset": 7}
    {"type": "commit", "lines": 4, "events": 12}

(each record on one line; ``base_exists``, ``base_value`` and ``ops`` only appear when
the key retains ops). A batch is written with one ``write()`` and an ``fsync``. The
last line per key wins. Lines after the last commit marker are a batch torn by a
crash: readers ignore them and :meth:`JsonlStore.open` truncates them away.

The store's lineage (what it was built from, :meth:`JsonlStore.lineage`) is a string in
the header, ``{"type": "header", ..., "lineage": "..."}``; a header without one (a file
from an edgebus before lineage) means none is recorded, and an edgebus before lineage
reads a header with one as before. Recording a lineage, or a reset, writes a new file
beside the old one (fsynced) and renames it into place: a crash leaves one or the other.

The store holds every key in memory and never compacts its file: it is meant for
export and import (``edgebus replay``), not for a live region (use SQLite there).
One :class:`JsonlStore` at a time may write a file (an advisory ``flock``); any
number of :func:`read_jsonl_states` may read it meanwhile.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import os
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

import orjson

from connectors.base import BatchChanges, Checksums, Store, StoreStats
from connectors.files import make_private_dirs
from edgebus.core.conflict import KeyOp, KeyState, Stamp
from edgebus.core.envelope import Operation
from edgebus.errors import StoreError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no advisory lock
    fcntl = None  # type: ignore[assignment]

__all__ = ["FORMAT", "FORMAT_VERSION", "JsonlStore", "read_jsonl_states"]

#: the header's ``format``
FORMAT: Final = "edgebus-store"
#: the header's ``version``; a file with a newer one is refused
FORMAT_VERSION: Final = 1

_HEADER: Final = orjson.dumps({"type": "header", "format": FORMAT, "version": FORMAT_VERSION})
#: bytes copied at a time when the file is rewritten with a new header
_COPY_CHUNK: Final = 1 << 20


class JsonlStore(Store):
    """Key states and positions in a JSON Lines log, all held in memory.

    For export and import, not for a live region. A missing parent directory is
    created. Every commit is fsynced before it returns.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(os.path.abspath(path))
        self.url = f"jsonl://{self.path}"
        self._fd: int | None = None
        self._contents = _Contents()
        self._size = 0  #: bytes of the file up to its last commit marker
        self._broken: str | None = None
        self._pending: asyncio.Future[None] | None = None

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        """Read the file (creating it if missing) and drop a torn last batch."""
        if self._fd is None:
            await asyncio.to_thread(self._open)

    def _open(self) -> None:
        try:
            make_private_dirs(self.path.parent)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        except OSError as e:
            raise StoreError(
                f"Store {self.url}: cannot open or create {self.path} ({e}). "
                "Check the path and its permissions."
            ) from e
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise StoreError(
                        f"Store {self.url} is already open for writing (by this or another "
                        "process). Close that store first; one writer at a time."
                    ) from None
            contents, committed = _read_log(self.path, self.url)
            if committed == 0:  # new file, or its header was torn
                with self.path.open("rb") as f:
                    start = f.read(len(_HEADER) + 2)
                if not (_HEADER + b"\n").startswith(start):
                    raise _not_a_store(self.url)
                os.ftruncate(fd, 0)
                _write_all(fd, _HEADER + b"\n")
                os.fsync(fd)
                _fsync_dir(self.path.parent)
                committed = len(_HEADER) + 1
            elif os.fstat(fd).st_size > committed:
                os.ftruncate(fd, committed)
                os.fsync(fd)
        except OSError as e:
            os.close(fd)
            raise StoreError(
                f"Store {self.url}: cannot prepare {self.path} ({e}). "
                "Check free disk space and the file's permissions."
            ) from e
        except BaseException:
            os.close(fd)
            raise
        self._fd, self._contents, self._size, self._broken = fd, contents, committed, None

    async def close(self) -> None:
        """Wait for a commit in flight, then release the file and the memory."""
        await self._settle_pending()
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
        self._contents = _Contents()

    async def _settle_pending(self) -> None:
        """Wait for a write in flight (a commit whose caller was cancelled)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            await asyncio.wait([pending])
            if not pending.cancelled():
                pending.exception()  # reported to the committer already (if it waited)

    def _open_contents(self) -> _Contents:
        if self._fd is None:
            raise StoreError(
                f"Store {self.url} is not open: use `async with by_url(url) as store:`."
            )
        return self._contents

    # ------------------------------------------------------------------ writes

    async def commit(self, changes: BatchChanges) -> None:
        """Append the batch and its commit marker, fsync, then update memory.

        Cancelling the caller does not cancel a write in flight (:meth:`close` waits
        for it), so memory always matches the file.
        """
        self._open_contents()
        if self._broken:
            raise StoreError(self._broken)
        try:
            data = self._encode(changes)
        except orjson.JSONEncodeError as e:
            raise StoreError(
                f"Store {self.url}: the batch holds a value that is not storable JSON ({e}); "
                "nothing was written. Values must be JSON with integers within 64 bits."
            ) from e
        self._pending = asyncio.ensure_future(self._append(data))
        await asyncio.shield(self._pending)

    def _encode(self, changes: BatchChanges) -> bytes:
        """The batch's lines and commit marker (memory is not touched)."""
        contents = self._contents
        retained: dict[str, list[KeyOp]] = {}
        for key, op in changes.retain:
            retained.setdefault(key, []).append(op)
        records: list[dict[str, Any]] = []
        for key in dict.fromkeys([*changes.states, *changes.drop_before, *retained]):
            state = changes.states.get(key) or contents.states.get(key)
            if state is None:
                if key in retained:
                    raise StoreError(
                        f"Store {self.url}: the batch retains ops for key {key!r} but "
                        "carries no state for it; nothing was written (an applier bug)."
                    )
                continue
            ops = contents.ops.get(key, ())
            if key in changes.drop_before:
                drop = changes.drop_before[key]
                ops = tuple(o for o in ops if o.stamp >= drop)
            if key in retained:
                merged = {o.stamp: o for o in ops}
                for op in retained[key]:
                    merged.setdefault(op.stamp, op)
                ops = tuple(sorted(merged.values(), key=lambda o: o.stamp))
            records.append(_state_record(state, ops))
        for (topic, partition), offset in changes.positions.items():
            records.append(
                {"type": "position", "topic": topic, "partition": partition, "next_offset": offset}
            )
        for (region, partition), offset in changes.frontier.items():
            offset = max(offset, contents.frontier.get((region, partition), offset))
            records.append(
                {"type": "frontier", "region": region, "partition": partition, "offset": offset}
            )
        for partition, offset in sorted(changes.redriven - contents.redriven):
            records.append({"type": "redriven", "partition": partition, "offset": offset})
        records.append({"type": "commit", "lines": len(records), "events": changes.events})
        return b"".join(orjson.dumps(r) + b"\n" for r in records)

    async def _append(self, data: bytes) -> None:
        await asyncio.to_thread(self._write, data)
        # memory becomes exactly what a reopen would read from these lines
        for line in data.rstrip(b"\n").split(b"\n")[:-1]:
            self._contents.apply(orjson.loads(line))

    def _write(self, data: bytes) -> None:
        fd = self._fd
        assert fd is not None
        try:
            _write_all(fd, data)
            os.fsync(fd)
        except OSError as e:
            try:
                os.ftruncate(fd, self._size)
                os.fsync(fd)
            except OSError as again:
                self._broken = (
                    f"Store {self.url}: a failed commit left a partial batch that could not "
                    f"be removed ({again}). Close and reopen the store (that drops it)."
                )
            raise StoreError(
                f"Store {self.url}: commit failed ({e}); nothing of the batch was kept. "
                "Check free disk space and the file's permissions, then retry."
            ) from e
        self._size += len(data)

    async def set_lineage(self, lineage: str) -> None:
        """Rewrite the file with ``lineage`` in its header and every committed batch
        (the whole file is copied: meant for a store's first start or adoption)."""
        await self._rewrite(lineage, keep=True)

    async def reset(self, lineage: str) -> None:
        """Replace the file by one holding only a header with ``lineage``."""
        await self._rewrite(lineage, keep=False)

    async def _rewrite(self, lineage: str, *, keep: bool) -> None:
        """A new file with ``lineage`` in its header (and the committed batches if
        ``keep``) renamed into place; then memory follows. Like :meth:`commit`, not
        cancelled by a cancelled caller."""
        self._open_contents()
        await self._settle_pending()
        header = _header(lineage)
        self._pending = asyncio.ensure_future(self._swap(header, lineage, keep))
        await asyncio.shield(self._pending)

    async def _swap(self, header: bytes, lineage: str, keep: bool) -> None:
        self._size = await asyncio.to_thread(self._replace_file, header, keep)
        self._broken = None  # only committed batches were copied
        if keep:
            self._contents.lineage = lineage
        else:
            self._contents = _Contents(lineage=lineage)

    def _replace_file(self, header: bytes, keep: bool) -> int:
        """Write ``header`` (and, if ``keep``, the committed batches) to a new file,
        locked and fsynced, rename it over the store's file and fsync the directory;
        returns the new file's size. The old file stays whole until the rename."""
        old = self._fd
        assert old is not None
        temporary = self.path.with_name(f".{self.path.name}.rewrite")
        try:
            fd = os.open(
                temporary, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC, 0o600
            )
            os.fchmod(fd, os.fstat(old).st_mode & 0o777)  # the store file's mode, as before
        except OSError as e:
            raise self._rewrite_error(e) from e
        try:
            if fcntl is not None:  # the lock holds across the rename: one writer throughout
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            _write_all(fd, header + b"\n")
            if keep:
                _copy_range(old, fd, _header_length(old), self._size)
            os.fsync(fd)
            size = os.fstat(fd).st_size
            os.replace(temporary, self.path)
        except BaseException as e:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            if isinstance(e, OSError):
                raise self._rewrite_error(e) from e
            raise
        _fsync_dir(self.path.parent)
        self._fd = fd
        os.close(old)
        return size

    def _rewrite_error(self, e: OSError) -> StoreError:
        return StoreError(
            f"Store {self.url}: cannot write a new {self.path} ({e}); the store is unchanged. "
            "Check free disk space and the directory's permissions, then retry."
        )

    async def lineage(self) -> str | None:
        """The lineage in the file's header, ``None`` when it has none."""
        return self._open_contents().lineage

    # ------------------------------------------------------------------ reads

    async def load(self, keys: Iterable[str]) -> dict[str, KeyState]:
        """Stored states of these keys, ``ops=None`` where ops are retained."""
        states = self._open_contents().states
        return {key: states[key] for key in keys if key in states}

    async def load_ops(self, key: str) -> list[KeyOp]:
        """The key's retained ops in stamp order."""
        return list(self._open_contents().ops.get(key, ()))

    async def get(self, key: str) -> KeyState | None:
        """A key's state as :meth:`load` returns it, or ``None``."""
        return self._open_contents().states.get(key)

    async def positions(self) -> dict[tuple[str, int], int]:
        """(topic, partition) -> next offset to consume, as last committed."""
        return dict(self._open_contents().positions)

    async def frontier(self) -> dict[tuple[str, int], int]:
        """(origin region, origin partition) -> highest origin offset applied."""
        return dict(self._open_contents().frontier)

    async def was_redriven(self, dlq_positions: Iterable[tuple[int, int]]) -> set[tuple[int, int]]:
        """Which of these (dlq partition, dlq offset) a redrive has already applied."""
        done = self._open_contents().redriven
        return {pos for pos in dlq_positions if pos in done}

    async def scan(self, start: str | None = None) -> AsyncIterator[KeyState]:
        """States in key order from ``start`` (inclusive), as of the call."""
        states = self._open_contents().states
        keys = sorted(states)
        for key in keys[bisect.bisect_left(keys, start) if start else 0 :]:
            state = states.get(key)
            if state is not None:
                yield state

    async def stats(self) -> StoreStats:
        """Live keys, tombstones, retained ops and the file's size."""
        contents = self._open_contents()
        live = sum(1 for s in contents.states.values() if s.exists)
        return StoreStats(
            live,
            len(contents.states) - live,
            sum(len(ops) for ops in contents.ops.values()),
            self._size,
        )

    async def checksums(self) -> Checksums:
        """Positions and bucket digests of the memory (always a committed snapshot)."""
        contents = self._open_contents()
        states = contents.states
        buckets, n = Store.digest_rows(states[key] for key in sorted(states))
        return Checksums(dict(contents.positions), buckets, n)


async def read_jsonl_states(path: Path) -> AsyncIterator[KeyState]:
    """Every key state of a JSON Lines store in key order, with retained ops loaded.

    Reads up to the last commit marker and changes nothing, so it may run while a
    :class:`JsonlStore` writes the file. Holds all states in memory.
    """
    contents, _ = await asyncio.to_thread(_read_log, path, f"jsonl://{path}")
    for key in sorted(contents.states):
        state = contents.states[key]
        yield replace(state, ops=contents.ops.get(key, ())) if state.n_ops else state


@dataclass(slots=True)
class _Contents:
    """What the log says as of a commit marker."""

    #: states as ``load`` returns them: ``ops=None`` when ops are retained
    states: dict[str, KeyState] = field(default_factory=dict)
    ops: dict[str, tuple[KeyOp, ...]] = field(default_factory=dict)
    positions: dict[tuple[str, int], int] = field(default_factory=dict)
    frontier: dict[tuple[str, int], int] = field(default_factory=dict)
    redriven: set[tuple[int, int]] = field(default_factory=set)
    #: the header's lineage, ``None`` when it has none
    lineage: str | None = None

    def apply(self, record: Mapping[str, Any]) -> None:
        """Apply one (non-header, non-commit) line; raises KeyError, TypeError or
        ValueError if it is malformed."""
        kind = record["type"]
        if kind == "state":
            state, ops = _decode_state(record)
            self.states[state.key] = state
            if ops:
                self.ops[state.key] = ops
            else:
                self.ops.pop(state.key, None)
        elif kind == "position":
            self.positions[(record["topic"], record["partition"])] = record["next_offset"]
        elif kind == "frontier":
            where = (record["region"], record["partition"])
            self.frontier[where] = max(record["offset"], self.frontier.get(where, -1))
        elif kind == "redriven":
            self.redriven.add((record["partition"], record["offset"]))
        else:
            raise ValueError(f"unknown line type {kind!r}")


def _state_record(state: KeyState, ops: tuple[KeyOp, ...]) -> dict[str, Any]:
    record: dict[str, Any] = {
        "type": "state",
        "key": state.key,
        "exists": state.exists,
        "value": state.value,
        "version": state.version,
        "top": list(state.top),
        "base": None if state.base is None else list(state.base),
        "n_ops": state.n_ops,
        "int_counter": state.int_counter,
    }
    if state.n_ops:
        record["base_exists"] = state.base_exists
        record["base_value"] = state.base_value
    if ops:
        record["ops"] = [
            {"stamp": list(op.stamp), "operation": op.operation.value, "payload": op.payload}
            for op in ops
        ]
    return record


def _decode_state(r: Mapping[str, Any]) -> tuple[KeyState, tuple[KeyOp, ...]]:
    exists, value, n_ops = bool(r["exists"]), r["value"], int(r["n_ops"])
    if n_ops:
        base_exists, base_value = bool(r["base_exists"]), r["base_value"]
    else:
        base_exists, base_value = exists, value
    ops = tuple(
        KeyOp(Stamp(*o["stamp"]), Operation(o["operation"]), o["payload"])
        for o in r.get("ops", ())
    )
    state = KeyState(
        r["key"],
        exists,
        value,
        None if r["base"] is None else Stamp(*r["base"]),
        Stamp(*r["top"]),
        int(r["version"]),
        n_ops,
        bool(r["int_counter"]),
        None if n_ops else (),
        base_exists,
        base_value,
    )
    return state, ops


def _read_log(path: Path, url: str) -> tuple[_Contents, int]:
    """The contents as of the last complete commit marker, and the byte length of the
    file up to it (0 when there is not even a complete header)."""
    contents = _Contents()
    committed = 0
    offset = 0
    pending: list[tuple[int, Any]] = []
    bad: str | None = None

    def corrupt(lineno: int, problem: str) -> StoreError:
        return StoreError(
            f"Store {url} is corrupt: line {lineno} {problem}. Lines before a commit "
            "marker were fsynced by edgebus, so the file was changed by something else: "
            "restore it from a copy or export the store again."
        )

    try:
        f = path.open("rb")
    except OSError as e:
        raise StoreError(f"Store {url}: cannot read {path} ({e}).") from e
    with f:
        for lineno, line in enumerate(f, 1):
            offset += len(line)
            if not line.endswith(b"\n"):
                break  # the torn end of the last write
            if lineno == 1:
                contents.lineage = _check_header(line, url)
                committed = offset
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError as e:
                bad = bad or f"is not JSON ({e})"
                pending.append((lineno, None))
                continue
            if not (isinstance(record, dict) and record.get("type") == "commit"):
                pending.append((lineno, record))
                continue
            if bad is not None:
                raise corrupt(next(n for n, r in pending if r is None), bad)
            if record.get("lines") != len(pending):
                raise corrupt(
                    lineno,
                    f"is a commit marker for {record.get('lines')} lines, "
                    f"but {len(pending)} precede it",
                )
            for n, r in pending:
                try:
                    contents.apply(r)
                except (KeyError, TypeError, ValueError) as e:
                    raise corrupt(n, f"is not a valid store line ({type(e).__name__}: {e})") from e
            pending.clear()
            committed = offset
    return contents, committed


def _check_header(line: bytes, url: str) -> str | None:
    """Check the header line; returns its lineage (``None`` when it has none)."""
    with contextlib.suppress(orjson.JSONDecodeError):
        header = orjson.loads(line)
        if isinstance(header, dict) and header.get("format") == FORMAT:
            version = header.get("version")
            if isinstance(version, int) and version > FORMAT_VERSION:
                raise StoreError(
                    f"Store {url} has format version {version}, written by a newer "
                    f"edgebus; this one reads up to version {FORMAT_VERSION}. "
                    "Upgrade edgebus to open it."
                )
            lineage = header.get("lineage")
            if lineage is not None and not isinstance(lineage, str):
                raise StoreError(
                    f"Store {url} is corrupt: its header's lineage is not a string. "
                    "Restore the file from a copy or export the store again."
                )
            return lineage
    raise _not_a_store(url)


def _header(lineage: str) -> bytes:
    """A header line (without its newline) recording ``lineage``."""
    return orjson.dumps(
        {"type": "header", "format": FORMAT, "version": FORMAT_VERSION, "lineage": lineage}
    )


def _not_a_store(url: str) -> StoreError:
    return StoreError(
        f"Store {url} is not an edgebus JSON Lines store (its first line is not the "
        f'{{"type": "header", "format": "{FORMAT}", ...}} line). Choose a new file.'
    )


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _header_length(fd: int) -> int:
    """Bytes of the file's first line, its newline included."""
    data = b""
    while b"\n" not in data:
        chunk = os.pread(fd, 4096, len(data))
        if not chunk:
            raise OSError(f"the header line has no end after {len(data)} bytes")
        data += chunk
    return data.index(b"\n") + 1


def _copy_range(source: int, target: int, start: int, end: int) -> None:
    """Append bytes ``start`` to ``end`` of ``source`` to ``target``."""
    while start < end:
        chunk = os.pread(source, min(_COPY_CHUNK, end - start), start)
        if not chunk:
            raise OSError(f"the file ended at byte {start}, before {end}")
        _write_all(target, chunk)
        start += len(chunk)


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
