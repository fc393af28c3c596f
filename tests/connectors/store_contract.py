"""The one contract every store passes (eventsourcing's ``ProcessRecorderTestCase``).

A backend's test module subclasses :class:`StoreContract`, names its URL ``scheme``,
its ``store_class`` and the ``file_name`` it keeps in a directory; it may add tests of
its own. States are built the way a region service builds them: by folding events with
:func:`edgebus.core.conflict.apply` (see :class:`Folder`).
"""

from __future__ import annotations

import copy
import errno
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import orjson
import pytest

from connectors import BatchChanges, Store, by_url, jsonl, path_of, source_by_url, sqlite
from connectors.base import bucket_of
from edgebus.core.conflict import KeyOp, KeyState, Stamp, apply
from edgebus.core.envelope import Operation
from edgebus.core.lineage import StoreLineage
from edgebus.errors import StoreError

__all__ = [
    "Event",
    "Folder",
    "StoreContract",
    "as_loaded",
    "assert_committed",
    "commit_folded",
    "event",
    "varied_events",
]

#: (key, op), what :meth:`Folder.batch` folds
Event = tuple[str, KeyOp]


def event(
    key: str,
    operation: str,
    payload: Any = None,
    *,
    hlc: int,
    origin: str = "eu",
    event_id: str | None = None,
) -> Event:
    """One event on a key, stamped ``(hlc, origin, event_id)``."""
    stamp = Stamp(hlc, origin, event_id or f"{origin}-{hlc}")
    return key, KeyOp(stamp, Operation(operation), payload)


class Folder:
    """Folds events into :class:`BatchChanges` as the region's applier does.

    Keeps every key's full state (retained ops loaded), so ``apply`` never asks for
    history; nets out ops retained and dropped within one batch.
    """

    def __init__(self) -> None:
        self.states: dict[str, KeyState] = {}

    def batch(
        self,
        *events: Event,
        positions: dict[tuple[str, int], int] | None = None,
        frontier: dict[tuple[str, int], int] | None = None,
        redriven: Iterable[tuple[int, int]] = (),
    ) -> BatchChanges:
        """The changes of one batch of events."""
        changes = BatchChanges(
            positions=dict(positions or {}),
            frontier=dict(frontier or {}),
            redriven=set(redriven),
        )
        for key, op in events:
            applied = apply(self.states.get(key), key, op)
            self.states[key] = changes.states[key] = applied.state
            if applied.drop_before is not None:
                drop = applied.drop_before
                changes.drop_before[key] = max(changes.drop_before.get(key, drop), drop)
                changes.retain = [
                    (k, o) for k, o in changes.retain if k != key or o.stamp >= drop
                ]
            if applied.retain is not None:
                changes.retain.append((key, applied.retain))
            changes.events += 1
        return changes

    def loaded(self, *keys: str) -> dict[str, KeyState]:
        """What ``Store.load(keys)`` must return."""
        return {k: as_loaded(self.states[k]) for k in keys if k in self.states}


def as_loaded(state: KeyState) -> KeyState:
    """A state as ``load`` returns it: ``ops=None`` when ops are retained."""
    return replace(state, ops=None if state.n_ops else ())


def varied_events() -> list[Event]:
    """Every kind of history: each operation, deletes, late events, late bases."""
    return [
        event("set", "set", {"x": 1}, hlc=10),
        event("counter", "increment", 2, hlc=11),
        event("counter", "increment", 3, hlc=13),
        event("counter", "increment", 5, hlc=12),  # late integer increment: commutes
        event("list", "append", "a", hlc=14),
        event("list", "append", "c", hlc=16),
        event("list", "append", "b", hlc=15),  # late append: refolded in stamp order
        event("map", "merge", {"f": 1, "g": [1]}, hlc=17),
        event("map", "merge", {"g": {"h": 2.5}}, hlc=18),
        event("deleted", "set", "gone soon", hlc=19),
        event("deleted", "delete", hlc=20),
        event("late-base", "increment", 1, hlc=30),
        event("late-base", "increment", 1, hlc=32),
        event("late-base", "set", 100, hlc=31),  # keeps only the increment at 32
        event("overwritten", "set", "new", hlc=40),
        event("overwritten", "set", "old", hlc=39),  # older than the base: no effect
        event("tied", "append", "us", hlc=50, origin="us"),
        event("tied", "append", "eu", hlc=50, origin="eu"),  # same HLC: origin decides
    ]


async def commit_folded(store: Store, *events: Event, **changes: Any) -> Folder:
    """Commit ``events`` folded into one batch (with ``changes``, as for
    :meth:`Folder.batch`); returns the folder that folded them."""
    folder = Folder()
    await store.commit(folder.batch(*events, **changes))
    return folder


#: what a region service records: a store built from a topic of a cluster
LINEAGE = StoreLineage(
    "127.0.0.1:9092", "zn82EB7uSWWhpPM8k_nrBA", "edgebus.eu.events", "rgDieAU6SOqTK3VtLh-oAQ", 3
).to_json()
#: the same topic recreated
RECREATED = StoreLineage(
    "127.0.0.1:9092", "zn82EB7uSWWhpPM8k_nrBA", "edgebus.eu.events", "x8KQ9W1bS2eYk3rZp0aF3w", 6
).to_json()


async def commit_everything(store: Store) -> Folder:
    """Commit a batch holding something of every kind a store keeps: key states,
    retained ops, tombstones, positions, frontier and redriven dead letters."""
    return await commit_folded(
        store,
        *varied_events(),
        positions={("edgebus.eu.events", 0): 42, ("edgebus.eu.events", 2): 7},
        frontier={("eu", 0): 41, ("us", 1): 9},
        redriven={(0, 5)},
    )


async def assert_empty(store: Store, keys: Iterable[str]) -> None:
    """``store`` holds no key state, retained op, position, frontier or redriven."""
    keys = list(keys)
    assert await store.positions() == {}
    assert await store.frontier() == {}
    assert await store.was_redriven([(0, 5)]) == set()
    assert await store.load(keys) == {}
    assert [s async for s in store.scan()] == []
    for key in keys:
        assert await store.load_ops(key) == [], key
    stats = await store.stats()
    assert (stats.keys, stats.tombstones, stats.retained_ops) == (0, 0, 0)


async def assert_committed(
    store: Store,
    positions: Mapping[tuple[str, int], int],
    states: Mapping[str, KeyState],
    keys: Iterable[str] | None = None,
) -> None:
    """``store`` holds exactly ``positions``, and loading ``keys`` (by default the keys
    of ``states``) gives exactly ``states``."""
    assert await store.positions() == positions
    assert await store.load(list(states if keys is None else keys)) == states


class StoreContract:
    """What every :class:`~connectors.base.Store` does. Subclass as ``Test<Backend>``."""

    #: the backend's URL scheme (``sqlite``, ``jsonl``)
    scheme: ClassVar[str]
    #: the backend's Store class, and the name of its file in a directory
    store_class: ClassVar[Callable[[Path], Store]]
    file_name: ClassVar[str]

    def make_store(self, directory: Path) -> Store:
        """An unopened store on a fixed file inside ``directory`` (same file every call)."""
        return self.store_class(directory / self.file_name)

    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[Store]:
        """An open store in ``tmp_path``, closed after the test."""
        store = self.make_store(tmp_path)
        async with store:
            yield store

    @asynccontextmanager
    async def reopened(self, store: Store, tmp_path: Path) -> AsyncIterator[Store]:
        """``store`` closed, and this backend's store on the same file open again: what
        a restarted service reads."""
        await store.close()
        async with self.make_store(tmp_path) as again:
            yield again

    @staticmethod
    def other_backends(directory: Path) -> list[Store]:
        """A store of every backend, for comparisons across backends."""
        return [by_url(f"sqlite://{directory}/other.db"), by_url(f"jsonl://{directory}/other.jsonl")]

    # ---------------------------------------------------------------- durability

    async def test_committed_states_survive_reopen(self, store: Store, tmp_path: Path) -> None:
        folder = Folder()
        await store.commit(folder.batch(*varied_events()))
        async with self.reopened(store, tmp_path) as again:
            assert await again.load(folder.states) == folder.loaded(*folder.states)

    async def test_retained_ops_survive_reopen(self, store: Store, tmp_path: Path) -> None:
        folder = Folder()
        await store.commit(folder.batch(*varied_events()))
        async with self.reopened(store, tmp_path) as again:
            for key, state in folder.states.items():
                assert await again.load_ops(key) == list(state.ops or ()), key

    async def test_positions_survive_reopen(self, store: Store, tmp_path: Path) -> None:
        positions = {("edgebus.eu", 0): 42, ("edgebus.eu", 3): 7, ("edgebus.us", 0): 1}
        await store.commit(Folder().batch(event("k", "set", 1, hlc=1), positions=positions))
        async with self.reopened(store, tmp_path) as again:
            assert await again.positions() == positions

    async def test_frontier_survives_reopen(self, store: Store, tmp_path: Path) -> None:
        frontier = {("eu", 0): 41, ("us", 2): 9}
        await store.commit(Folder().batch(event("k", "set", 1, hlc=1), frontier=frontier))
        async with self.reopened(store, tmp_path) as again:
            assert await again.frontier() == frontier

    async def test_redriven_dead_letters_survive_reopen(self, store: Store, tmp_path: Path) -> None:
        await store.commit(Folder().batch(event("k", "set", 1, hlc=1), redriven={(0, 5)}))
        async with self.reopened(store, tmp_path) as again:
            assert await again.was_redriven([(0, 5), (0, 6)]) == {(0, 5)}

    async def test_a_fresh_store_is_empty(self, store: Store) -> None:
        assert await store.positions() == {}
        assert await store.frontier() == {}
        assert await store.get("k") is None
        assert [s async for s in store.scan()] == []
        stats = await store.stats()
        assert (stats.keys, stats.tombstones, stats.retained_ops) == (0, 0, 0)

    async def test_an_empty_batch_changes_nothing(self, store: Store) -> None:
        folder = await commit_folded(store, event("k", "set", 1, hlc=1), positions={("t", 0): 3})
        await store.commit(BatchChanges())
        await assert_committed(store, {("t", 0): 3}, folder.loaded("k"))

    # ---------------------------------------------------------------- atomicity

    async def test_a_failed_commit_leaves_no_positions_or_states(
        self, store: Store, tmp_path: Path
    ) -> None:
        folder = await commit_folded(store, event("k", "set", 1, hlc=1), positions={("t", 0): 5})
        committed = folder.loaded("k")
        unstorable = folder.batch(
            event("k", "set", 2, hlc=2),
            event("huge", "set", 2**64, hlc=3),  # beyond 64 bits: not storable JSON
            positions={("t", 0): 9},
        )
        with pytest.raises(StoreError, match="64 bits"):
            await store.commit(unstorable)
        async with self.reopened(store, tmp_path) as again:
            await assert_committed(again, {("t", 0): 5}, committed, keys=["k", "huge"])

    async def test_a_committed_batch_is_not_changed_through_the_caller_objects(
        self, store: Store
    ) -> None:
        folder = Folder()
        changes = folder.batch(event("k", "set", [1, {"a": 2}], hlc=1), positions={("t", 0): 1})
        expected = copy.deepcopy(folder.loaded("k"))
        await store.commit(changes)
        changes.states["k"].value.append("mutated")
        changes.positions[("t", 0)] = 99
        await assert_committed(store, {("t", 0): 1}, expected)

    # ---------------------------------------------------------------- retained ops

    async def test_drop_before_deletes_only_older_retained_ops(self, store: Store) -> None:
        folder = Folder()
        await store.commit(
            folder.batch(*(event(k, "increment", 1, hlc=h) for k in "ab" for h in (10, 20, 30)))
        )
        ops = list(folder.states["a"].ops or ())
        await store.commit(BatchChanges(drop_before={"a": ops[1].stamp}))
        assert await store.load_ops("a") == ops[1:]
        assert await store.load_ops("b") == list(folder.states["b"].ops or ())

    async def test_a_new_base_drops_the_ops_it_overwrites(self, store: Store) -> None:
        folder = Folder()
        await store.commit(folder.batch(*(event("k", "append", h, hlc=h) for h in (10, 20, 30))))
        await store.commit(folder.batch(event("k", "set", ["base"], hlc=25)))
        assert [op.payload for op in await store.load_ops("k")] == [30]
        assert (await store.load(["k"]))["k"].value == ["base", 30]
        assert (await store.stats()).retained_ops == 1

    async def test_load_marks_keys_with_retained_ops_as_not_loaded(self, store: Store) -> None:
        folder = Folder()
        await store.commit(
            folder.batch(event("plain", "set", 1, hlc=1), event("counter", "increment", 1, hlc=2))
        )
        loaded = await store.load(["plain", "counter"])
        assert loaded["plain"].ops == ()
        assert loaded["counter"].ops is None
        assert loaded["counter"].n_ops == 1

    async def test_load_ops_returns_ops_in_stamp_order(self, store: Store) -> None:
        folder = Folder()
        await store.commit(
            folder.batch(
                event("k", "increment", 1, hlc=30),
                event("k", "increment", 2, hlc=10),
                event("k", "increment", 3, hlc=20, origin="us"),
                event("k", "increment", 4, hlc=20, origin="eu"),
                event("k", "increment", 5, hlc=20, origin="eu", event_id="eu-20-b"),
            )
        )
        ops = await store.load_ops("k")
        assert [op.payload for op in ops] == [2, 4, 5, 3, 1]
        assert ops == sorted(ops)

    async def test_load_ops_of_an_unknown_key_is_empty(self, store: Store) -> None:
        assert await store.load_ops("nothing") == []

    # ---------------------------------------------------------------- reads

    async def test_load_returns_only_stored_keys(self, store: Store) -> None:
        folder = Folder()
        await store.commit(folder.batch(event("a", "set", 1, hlc=1)))
        assert await store.load(["a", "missing", "a"]) == folder.loaded("a")

    async def test_load_reads_more_keys_than_one_query_holds(self, store: Store) -> None:
        folder = Folder()
        keys = [f"key-{i:05}" for i in range(1234)]
        await store.commit(folder.batch(*(event(k, "set", 0, hlc=1) for k in keys)))
        assert await store.load(keys) == folder.loaded(*keys)

    async def test_get_returns_a_state_or_none(self, store: Store) -> None:
        folder = Folder()
        await store.commit(folder.batch(event("a", "increment", 1, hlc=1)))
        assert await store.get("a") == as_loaded(folder.states["a"])
        assert await store.get("b") is None

    async def test_scan_is_in_code_point_order(self, store: Store) -> None:
        keys = ["b", "a", "B", "aa", "é", "z", "ä", "\uffff", "😀", "中", "a b"]
        await store.commit(Folder().batch(*(event(k, "set", k, hlc=1) for k in keys)))
        assert [s.key async for s in store.scan()] == sorted(keys)
        assert sorted(keys).index("\uffff") < sorted(keys).index("😀")  # not UTF-16 order

    async def test_scan_resumes_from_start(self, store: Store) -> None:
        keys = ["a", "b", "c", "d"]
        await store.commit(Folder().batch(*(event(k, "set", k, hlc=1) for k in keys)))
        assert [s.key async for s in store.scan("c")] == ["c", "d"]
        assert [s.key async for s in store.scan("bb")] == ["c", "d"]
        assert [s.key async for s in store.scan("e")] == []

    async def test_scan_returns_every_key_of_a_large_store(self, store: Store) -> None:
        folder = Folder()
        keys = [f"k{i}" for i in range(2500)]
        await store.commit(folder.batch(*(event(k, "set", i, hlc=1) for i, k in enumerate(keys))))
        scanned = [s async for s in store.scan()]
        assert scanned == [as_loaded(folder.states[k]) for k in sorted(keys)]

    async def test_deleted_keys_are_tombstones_and_counted_as_such(self, store: Store) -> None:
        folder = Folder()
        await store.commit(
            folder.batch(
                event("gone", "set", 1, hlc=1),
                event("gone", "delete", hlc=2),
                event("kept", "set", 1, hlc=3),
            )
        )
        gone = await store.get("gone")
        assert gone is not None
        assert (gone.exists, gone.value, gone.version) == (False, None, 2)
        assert [s.key async for s in store.scan()] == ["gone", "kept"]
        stats = await store.stats()
        assert (stats.keys, stats.tombstones) == (1, 1)

    async def test_stats_count_retained_ops_and_bytes(self, store: Store) -> None:
        folder = Folder()
        await store.commit(folder.batch(*varied_events()))
        stats = await store.stats()
        assert stats.retained_ops == sum(s.n_ops for s in folder.states.values())
        assert stats.keys == sum(s.exists for s in folder.states.values())
        assert stats.bytes > 0

    # ---------------------------------------------------------------- positions

    async def test_positions_hold_the_last_committed_value(self, store: Store) -> None:
        await store.commit(BatchChanges(positions={("t", 0): 10, ("t", 1): 3}))
        await store.commit(BatchChanges(positions={("t", 0): 4}))
        assert await store.positions() == {("t", 0): 4, ("t", 1): 3}

    async def test_frontier_never_moves_backwards(self, store: Store) -> None:
        await store.commit(BatchChanges(frontier={("eu", 0): 10}))
        await store.commit(BatchChanges(frontier={("eu", 0): 7, ("us", 1): 3}))
        assert await store.frontier() == {("eu", 0): 10, ("us", 1): 3}
        await store.commit(BatchChanges(frontier={("eu", 0): 12}))
        assert await store.frontier() == {("eu", 0): 12, ("us", 1): 3}

    async def test_was_redriven_reports_only_applied_dead_letters(self, store: Store) -> None:
        applied = {(0, n) for n in range(0, 600, 2)} | {(1, 7)}
        await store.commit(BatchChanges(redriven=applied))
        asked = [(0, n) for n in range(600)] + [(1, 7), (2, 7)]
        assert await store.was_redriven(asked) == applied
        assert await store.was_redriven([]) == set()

    # ---------------------------------------------------------------- verify

    async def test_checksums_are_equal_across_backends_for_the_same_rows(
        self, store: Store, tmp_path: Path
    ) -> None:
        folder = Folder()
        batches = [
            folder.batch(*varied_events()[:9], positions={("t", 0): 9}),
            folder.batch(*varied_events()[9:], positions={("t", 0): 18, ("t", 1): 2}),
        ]
        ours = [store, *self.other_backends(tmp_path / "others")]
        for other in ours[1:]:
            await other.open()
        try:
            for changes in batches:
                for s in ours:
                    await s.commit(changes)
            sums = [await s.checksums() for s in ours]
        finally:
            for other in ours[1:]:
                await other.close()
        assert sums[0].keys == len(folder.states)
        assert sums[0].positions == {("t", 0): 18, ("t", 1): 2}
        assert all(s == sums[0] for s in sums[1:])

    async def test_checksums_differ_in_the_bucket_of_a_differing_value(
        self, store: Store, tmp_path: Path
    ) -> None:
        other = self.make_store(tmp_path / "other")
        keys = [f"k{i}" for i in range(50)]
        await store.commit(Folder().batch(*(event(k, "set", 1, hlc=1) for k in keys)))
        async with other:
            await other.commit(
                Folder().batch(*(event(k, "set", 2 if k == "k7" else 1, hlc=1) for k in keys))
            )
            mine, theirs = await store.checksums(), await other.checksums()
        differing = {b for b in mine.buckets if mine.buckets[b] != theirs.buckets.get(b)}
        assert differing == {bucket_of("k7")}
        assert mine.keys == theirs.keys == 50

    # ---------------------------------------------------------------- values

    async def test_json_values_round_trip_exactly(self, store: Store, tmp_path: Path) -> None:
        values: dict[str, Any] = {
            "int": 1,
            "float": 1.0,
            "negative zero": -0.0,
            "int64 max": 2**63 - 1,
            "int64 min": -(2**63),
            "uint64 max": 2**64 - 1,
            "tiny": 5e-324,
            "huge": 1.7976931348623157e308,
            "decimal": 0.1,
            "bool": True,
            "null": None,
            "text": "line\nbreak, tab\t, nul \x00, \u2028, 😀, ÿ",
            "ключ 鍵 🔑": {"ü": "ß", "nested": [1, [2.5, {"deep": None}], {}], "empty": []},
        }
        await store.commit(Folder().batch(*(event(k, "set", v, hlc=1) for k, v in values.items())))
        async with self.reopened(store, tmp_path) as again:
            loaded = await again.load(values)
        assert {k: orjson.dumps(s.value) for k, s in loaded.items()} == {
            k: orjson.dumps(v) for k, v in values.items()
        }

    async def test_retained_op_payloads_round_trip_exactly(
        self, store: Store, tmp_path: Path
    ) -> None:
        payloads = [{"a": 1, "b": 1.0}, {"c": {"d": [2**63 - 1, -0.0, "é"]}}, {"a": None}]
        folder = Folder()
        await store.commit(
            folder.batch(*(event("m", "merge", p, hlc=i + 1) for i, p in enumerate(payloads)))
        )
        async with self.reopened(store, tmp_path) as again:
            ops = await again.load_ops("m")
            state = await again.get("m")
        assert [orjson.dumps(op.payload) for op in ops] == [orjson.dumps(p) for p in payloads]
        assert state is not None
        assert orjson.dumps(state.value) == orjson.dumps(folder.states["m"].value)

    # ---------------------------------------------------------------- lineage

    def break_the_next_rewrite(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Make the next :meth:`Store.reset` fail midway. Backends other than the two
        known here override this."""
        if self.scheme == "sqlite":  # the deletes run, then the transaction fails
            monkeypatch.setattr(sqlite, "_SET_LINEAGE", "INSERT INTO no_such_table VALUES (?)")
        elif self.scheme == "jsonl":  # the disk fills while the new file is written

            def disk_full(fd: int, data: bytes) -> None:
                raise OSError(errno.ENOSPC, "No space left on device")

            monkeypatch.setattr(jsonl, "_write_all", disk_full)
        else:
            pytest.fail(f"override break_the_next_rewrite for {self.scheme}")

    async def test_a_new_store_has_no_lineage(self, store: Store, tmp_path: Path) -> None:
        assert await store.lineage() is None
        await commit_everything(store)  # a store from an edgebus before lineage
        async with self.reopened(store, tmp_path) as again:
            assert await again.lineage() is None

    async def test_a_recorded_lineage_survives_reopen(self, store: Store, tmp_path: Path) -> None:
        await store.set_lineage(LINEAGE)
        assert await store.lineage() == LINEAGE
        async with self.reopened(store, tmp_path) as again:
            assert await again.lineage() == LINEAGE
            await again.set_lineage(RECREATED)
            assert await again.lineage() == RECREATED
        async with self.make_store(tmp_path) as again:
            assert await again.lineage() == RECREATED

    async def test_recording_a_lineage_keeps_everything_else(
        self, store: Store, tmp_path: Path
    ) -> None:
        await commit_everything(store)
        before = (await store.checksums(), await store.frontier(), (await store.stats())[:3])
        await store.set_lineage(LINEAGE)  # the adoption of a store from before lineage
        after = (await store.checksums(), await store.frontier(), (await store.stats())[:3])
        assert after == before
        folder = await commit_folded(store, event("later", "set", 1, hlc=99))
        async with self.reopened(store, tmp_path) as again:
            assert await again.lineage() == LINEAGE
            assert await again.frontier() == before[1]
            assert await again.was_redriven([(0, 5)]) == {(0, 5)}
            assert await again.load(["later"]) == folder.loaded("later")
            assert (await again.checksums()).keys == before[0].keys + 1

    async def test_reset_removes_everything_and_records_the_lineage(
        self, store: Store, tmp_path: Path
    ) -> None:
        folder = await commit_everything(store)
        await store.set_lineage(LINEAGE)
        await store.reset(RECREATED)
        assert await store.lineage() == RECREATED
        await assert_empty(store, folder.states)
        async with self.reopened(store, tmp_path) as again:
            assert await again.lineage() == RECREATED
            await assert_empty(again, folder.states)

    async def test_a_reset_store_takes_new_batches(self, store: Store, tmp_path: Path) -> None:
        await commit_everything(store)
        await store.reset(LINEAGE)
        folder = await commit_folded(store, event("k", "set", 1, hlc=1), positions={("t", 0): 1})
        async with self.reopened(store, tmp_path) as again:
            await assert_committed(again, {("t", 0): 1}, folder.loaded("k"))
            assert [s.key async for s in again.scan()] == ["k"]
            assert await again.lineage() == LINEAGE

    async def test_reset_of_an_empty_store(self, store: Store, tmp_path: Path) -> None:
        await store.reset(LINEAGE)
        assert await store.lineage() == LINEAGE
        await assert_empty(store, ["k"])
        async with self.reopened(store, tmp_path) as again:
            assert await again.lineage() == LINEAGE
            await assert_empty(again, ["k"])

    async def test_a_failed_reset_leaves_the_store_as_it_was(
        self, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        await commit_everything(store)
        await store.set_lineage(LINEAGE)
        before = await store.checksums()
        with monkeypatch.context() as patched:
            self.break_the_next_rewrite(patched)
            with pytest.raises(StoreError, match=r"unchanged|rolled back"):
                await store.reset(RECREATED)
        assert await store.lineage() == LINEAGE
        assert await store.checksums() == before
        async with self.reopened(store, tmp_path) as again:
            assert await again.lineage() == LINEAGE
            assert await again.checksums() == before
            assert await again.frontier() == {("eu", 0): 41, ("us", 1): 9}
            assert await again.was_redriven([(0, 5)]) == {(0, 5)}

    async def test_a_closed_store_refuses_lineage_calls(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        for call in (store.lineage(), store.set_lineage(LINEAGE), store.reset(LINEAGE)):
            with pytest.raises(StoreError, match="not open"):
                await call

    # ---------------------------------------------------------------- URLs and files

    @pytest.mark.parametrize(
        "template",
        [
            "{scheme}://host/store",
            "{scheme}:",
            "{scheme}:///",
            "{scheme}:///store?unknown=1",
            "nosuch:///store",
            "/just/a/path",
        ],
    )
    def test_bad_urls_raise_store_error_listing_the_accepted_forms(self, template: str) -> None:
        url = template.format(scheme=self.scheme)
        with pytest.raises(StoreError, match=r"Use one of: sqlite:///absolute/path\.db") as err:
            by_url(url)
        assert err.value.exit_code == 2
        assert repr(url) in str(err.value)

    def test_a_url_with_a_host_suggests_three_slashes(self) -> None:
        with pytest.raises(StoreError, match=rf"{self.scheme}:///data/x"):
            by_url(f"{self.scheme}://data/x")

    def test_absolute_and_relative_urls_name_the_same_file(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.chdir(tmp_path)
        absolute = by_url(f"{self.scheme}://{tmp_path}/sub/store")
        relative = by_url(f"{self.scheme}:sub/store")
        assert path_of(absolute.url) == path_of(relative.url) == tmp_path / "sub" / "store"
        assert type(absolute) is type(relative) is type(self.make_store(tmp_path))

    async def test_open_creates_missing_directories(self, tmp_path: Path) -> None:
        folder = Folder()
        async with self.make_store(tmp_path / "missing" / "dirs") as store:
            await store.commit(folder.batch(event("k", "set", 1, hlc=1)))
        async with self.make_store(tmp_path / "missing" / "dirs") as again:
            assert await again.load(["k"]) == folder.loaded("k")

    async def test_an_unusable_path_raises_store_error(self, tmp_path: Path) -> None:
        (tmp_path / "a file").write_text("not a directory")
        with pytest.raises(StoreError, match="a file"):
            await self.make_store(tmp_path / "a file").open()

    async def test_a_closed_store_raises_store_error(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        with pytest.raises(StoreError, match="not open"):
            await store.positions()

    async def test_open_twice_is_harmless(self, store: Store) -> None:
        folder = await commit_folded(store, event("k", "set", 1, hlc=1))
        await store.open()
        assert await store.load(["k"]) == folder.loaded("k")

    # ---------------------------------------------------------------- as a source

    async def test_source_yields_final_states_in_key_order_with_ops(self, store: Store) -> None:
        folder = Folder()
        events = varied_events()
        await store.commit(folder.batch(*events[:7]))
        await store.commit(folder.batch(*events[7:]))
        await store.close()
        states = [s async for s in source_by_url(store.url)]
        assert states == [folder.states[k] for k in sorted(folder.states)]

    def test_source_of_a_missing_store_raises_store_error(self, tmp_path: Path) -> None:
        with pytest.raises(StoreError, match="does not exist"):
            source_by_url(f"{self.scheme}://{tmp_path}/nothing-here")
