"""The compiled fold (edgebus._speedups.apply_run) gives the pure-Python fold's result.

Two appliers read the same generated batches into two stores, one with the C module's
fold of common records, one in Python only. The batches mix what a region's topic can
hold: its own sets, deletes, increments, appends and merges (late ones too), events
whose dependencies lie ahead (buffered in the causal gate) or name unknown regions,
copies from another region (and their duplicates, and forged origin positions: another
partition, this region, an unknown one, past the origin's end), undecodable values, keys that
disagree with the body, counters pushed past 64 bits. After every batch both results
(states, retained ops, positions, frontier, dead letters and their reasons, applied
events, duplicates, released) and both stores must be equal.
"""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path
from typing import Any

from aiokafka import ConsumerRecord
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors import by_url
from connectors.base import BatchChanges
from edgebus.core.envelope import Operation
from edgebus.core.hlc import HLCTimestamp
from edgebus.core.placement import ComplianceRules
from edgebus.core.vector_clock import VectorClock
from edgebus.region import compiled_fold
from edgebus.region.applier import BatchApplier, BatchResult
from edgebus.region.compiled_fold import interleaved
from edgebus.region.record_checks import RecordChecks, SourceEnds
from edgebus.wire.event_codec import encode_fields, encode_payload
from edgebus.wire.headers import H_ORIGIN_POS
from tests.unit.test_speedups import native  # noqa: F401  (the fixture)

EU, US = "eu-west-1", "us-east-1"
PARTITIONS = 3
RULES = ComplianceRules.from_mappings()
CHECKS = RecordChecks(EU, frozenset({EU, US}), PARTITIONS)
KEYS = ("a", "b", "c", "n")
NOW_MS = 10_000_000


@st.composite
def payloads(draw: st.DrawFn, op: Operation) -> Any:
    if op is Operation.DELETE:
        return None
    if op is Operation.INCREMENT:
        return draw(st.integers(-3, 3) | st.just(2**63 - 1) | st.floats(-2.0, 2.0))
    if op is Operation.MERGE:
        return {draw(st.sampled_from("xyz")): draw(st.integers(0, 9))}
    return draw(st.integers(-5, 5) | st.text(max_size=3) | st.just({"v": [1, 2]}))


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    """One record's recipe (offsets are given when the batches are laid out)."""
    op = draw(st.sampled_from(list(Operation)))
    kind = draw(st.sampled_from(["own"] * 8 + ["copy", "garbage", "wrong key"]))
    deps = draw(st.dictionaries(
        st.tuples(st.sampled_from([EU, EU, US, "zz-gone-1"]), st.integers(0, PARTITIONS)),
        st.integers(0, 12), max_size=3,
    ))
    return {
        "op": op, "kind": kind, "key": draw(st.sampled_from(KEYS)),
        "forge": draw(st.sampled_from(
            ["none"] * 5 + ["partition", "self", "unknown", "far", "garbage"])),
        "payload": draw(payloads(op)), "partition": draw(st.integers(0, PARTITIONS - 1)),
        "wall_ms": draw(st.integers(1_000, 1_006)), "deps": deps,
        "classes": draw(st.sampled_from([("public",), ("public",), ("phi",)])),
    }


def lay_out(recipes: list[dict[str, Any]], cuts: list[int]) -> list[list[ConsumerRecord]]:
    """Records in topic order per partition, split into batches at ``cuts``."""
    offsets = dict.fromkeys(range(PARTITIONS), 0)
    copies = 0
    out: list[ConsumerRecord] = []
    for r in recipes:
        p = r["partition"]
        origin = US if r["kind"] == "copy" else EU
        placement = (origin, EU if origin == US else US)
        deps = VectorClock(r["deps"])  # partition PARTITIONS and zz-gone-1 do not exist
        encoded = encode_fields(
            f"00000000-0000-4000-8000-{len(out):012x}", r["key"], r["op"],
            encode_payload(r["payload"]), origin, placement, r["classes"],
            HLCTimestamp(r["wall_ms"], len(out) % 3), deps, None,
        )
        headers = list(encoded.headers)
        if r["kind"] == "copy":
            copies += 1
            position = {  # the true one repeats now and then (a replicator's retry)
                "none": f"{US}:{p}:{copies // 2}", "partition": f"{US}:{(p + 1) % 3}:1",
                "self": f"{EU}:{p}:1", "unknown": f"zz-gone-1:{p}:1", "far": f"{US}:{p}:99",
                "garbage": f"{US}:{p}:-1",
            }[r.get("forge", "none")]
            headers.append((H_ORIGIN_POS, position.encode()))
        value = b"\xc3\x01 not an event" if r["kind"] == "garbage" else encoded.value
        key = b"other" if r["kind"] == "wrong key" else encoded.key
        out.append(ConsumerRecord(f"edgebus.{EU}.events", p, offsets[p], 1_000 + len(out), 0,
                                  key, value, None, len(key), len(value), headers))
        offsets[p] += 1
    bounds = sorted({0, len(out), *(c % (len(out) + 1) for c in cuts)})
    return [out[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def essence(result: BatchResult) -> tuple[Any, ...]:
    c = result.changes
    return (
        c.states, c.retain, c.drop_before, c.positions, c.frontier, c.redriven, c.events,
        [(d.record.partition, d.record.offset, d.reason) for d in result.dead],
        result.applied, result.duplicates, result.released,
    )


def checks_of(kind: str) -> RecordChecks:
    """The checks of a replay (static) or of a live region that knows US's ends."""
    if kind == "static":
        return CHECKS
    ends = SourceEnds()
    ends.load(US, dict.fromkeys(range(PARTITIONS), 3))
    return RecordChecks(EU, frozenset({EU, US}), PARTITIONS, source_ends=ends)


async def fold_both_ways(
    recipes: list[dict[str, Any]], cuts: list[int], checks: str = "static"
) -> int:
    """Apply the batches with and without the compiled fold; assert equal results
    batch by batch and equal stores; return how many records the compiled fold took."""
    taken = 0
    with tempfile.TemporaryDirectory() as tmp:
        compiled = by_url(f"sqlite://{Path(tmp) / 'c.db'}")
        python = by_url(f"sqlite://{Path(tmp) / 'p.db'}")
        async with compiled, python:
            fast = BatchApplier(EU, RULES, compiled, checks=checks_of(checks))
            slow = BatchApplier(EU, RULES, python, checks=checks_of(checks))
            assert fast._fixed is not None
            slow._fixed = None
            for batch in lay_out(recipes, cuts):
                a = await fast.apply(batch, now_ms=NOW_MS)
                b = await slow.apply(batch, now_ms=NOW_MS)
                assert essence(a) == essence(b)
                await compiled.commit(a.changes)
                await python.commit(b.changes)
            assert await compiled.checksums() == await python.checksums()
            assert await compiled.frontier() == await python.frontier()
            taken = fast.compiled_records
    return taken


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(events(), min_size=1, max_size=40), st.lists(st.integers(0, 40), max_size=4),
       st.sampled_from(["static", "live"]))
async def test_compiled_fold_equals_the_python_fold_batch_by_batch(
    native: Any, recipes: list[dict[str, Any]], cuts: list[int], checks: str,  # noqa: F811
) -> None:
    await fold_both_ways(recipes, cuts, checks)


def own(key: str, op: Operation, payload: Any, wall_ms: int, partition: int = 0) -> dict[str, Any]:
    return {"op": op, "kind": "own", "key": key, "payload": payload, "partition": partition,
            "wall_ms": wall_ms, "deps": {}, "classes": ("public",)}


async def test_compiled_fold_equals_the_python_fold_on_counters_and_bases(
    native: Any,  # noqa: F811
) -> None:
    inc, set_, delete = Operation.INCREMENT, Operation.SET, Operation.DELETE
    recipes = [
        own("f", inc, 1.5, 1_000), own("f", inc, 2, 1_001),  # a float counter stays one
        own("t", set_, "x", 1_000), own("t", inc, 1, 1_001), own("t", inc, 2, 1_002),
        own("t", inc, 3, 999),  # onto a text base: not an integer counter, refolded
        own("i", inc, 2, 1_000), own("i", inc, 3, 1_002), own("i", inc, 4, 1_001),  # late
        own("s", set_, "x", 1_000), own("s", delete, None, 1_001), own("s", inc, 1, 1_002),
        own("s", set_, 7, 1_003), own("s", inc, 2, 1_004), own("s", set_, {"a": 1}, 1_005),
        own("o", set_, 2**63 - 1, 1_000), own("o", inc, 1, 1_001),  # beyond 64 bits
        own("big", set_, 2**64 - 1, 1_000),  # a value no store holds
        own("old", set_, 1, 1_010), own("old", set_, 2, 1_000),  # overwritten on arrival
    ]
    assert await fold_both_ways(recipes, [5, 11]) >= 8


async def test_compiled_fold_takes_copies_below_the_origins_end_and_no_others(
    native: Any,  # noqa: F811
) -> None:
    copies = [{**own(f"c{i}", Operation.SET, i, 1_000 + i), "kind": "copy"} for i in range(9)]
    # copy i carries US:0:(i + 1) // 2: 0, 1, 1 (a retry), 2, 2, 3, 3, 4, 4 against US's
    # end 3: the first five are below it (two of them retries), the rest are forged; the
    # very first goes through Python, which learns that public data may be held here
    taken = await fold_both_ways(copies, [], checks="live")
    assert taken == 4


async def test_compiled_fold_takes_a_run_of_common_records_in_one_call(
    native: Any, tmp_path: Path,  # noqa: F811
) -> None:
    recipes = [
        {"op": Operation.SET if i % 3 else Operation.INCREMENT, "kind": "own",
         "key": f"k{i % 5}" if i % 3 else "n", "payload": 1, "partition": i % PARTITIONS,
         "wall_ms": 1_000 + i, "deps": {}, "classes": ("public",)}
        for i in range(30)
    ]
    [records] = lay_out(recipes, [])
    store = by_url(f"sqlite://{tmp_path / 's.db'}")
    async with store:
        applier = BatchApplier(EU, RULES, store, checks=CHECKS)
        gate = await applier.gate()
        assert applier._may_hold(("public",))  # the compliance answer it looks up
        fold_states: dict[str, Any] = {}
        result = BatchResult(BatchChanges())
        batch = (*gate.live_maps(), fold_states, result.changes.states,
                 result.changes.frontier, {}, result.applied, {}, None, None, None)
        assert native.apply_run(records, 0, applier._fixed, batch) == (30, 0, 30, None)
        assert {k: (s.version, s.value) for k, s in fold_states.items()} == {
            "n": (10, 10), "k0": (4, 1), "k1": (4, 1), "k2": (4, 1), "k3": (4, 1),
            "k4": (4, 1)}
        assert len(result.applied) == 30 and len(pending := batch[6]) == 1
        assert len(pending["n"]) == 10  # the counter's increments are retained


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 5)), max_size=30))
def test_compiled_interleave_equals_the_python_merge(
    native: Any, draws: list[tuple[int, int]],  # noqa: F811
) -> None:
    records = [ConsumerRecord("t", p, i, ts, 0, b"k", b"v", None, 1, 1, [])
               for i, (p, ts) in enumerate(sorted(draws, key=lambda d: d[0]))]
    if draws and draws[0][0] % 2:  # and records not grouped by partition now and then
        records.reverse()
    python = compiled_fold._native_interleave
    try:
        compiled_fold._native_interleave = None
        expected = interleaved(records)
    finally:
        compiled_fold._native_interleave = python
    assert native.interleave(records) == expected
    assert sorted(r.offset for r in expected) == sorted(r.offset for r in records)
