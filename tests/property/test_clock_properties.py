"""Property tests for vector clocks, the hybrid logical clock and session tokens."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from edgebus.core.hlc import MAX_LOGICAL, HLCTimestamp, HybridLogicalClock
from edgebus.core.session import SessionToken
from edgebus.core.vector_clock import MAX_OFFSET, MAX_PARTITION, Ordering, Position, VectorClock
from edgebus.errors import DecodeError

# Few regions, partitions and offsets, so that clocks overlap and compare in every way.
regions = st.sampled_from(["us-east-1", "eu-west-1", "ap-south-1", "zürich"])
partitions = st.integers(min_value=0, max_value=3)
offsets = st.integers(min_value=0, max_value=6)
clocks = st.dictionaries(st.tuples(regions, partitions), offsets, max_size=8).map(VectorClock)
positions = st.builds(Position, regions, partitions, offsets)

# Anything the constructor accepts, for the wire format.
wide_clocks = st.dictionaries(
    st.tuples(
        st.text(min_size=1, max_size=12).filter(lambda s: _utf8_ok(s)),
        st.integers(min_value=0, max_value=MAX_PARTITION),
    ),
    st.integers(min_value=0, max_value=MAX_OFFSET),
    max_size=20,
).map(VectorClock)


def _utf8_ok(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


# -- merge is a join semilattice -------------------------------------------------------


@given(clocks, clocks)
def test_merge_is_commutative(a: VectorClock, b: VectorClock) -> None:
    assert a.merge(b) == b.merge(a)


@given(clocks, clocks, clocks)
def test_merge_is_associative(a: VectorClock, b: VectorClock, c: VectorClock) -> None:
    assert a.merge(b).merge(c) == a.merge(b.merge(c))


@given(clocks)
def test_merge_is_idempotent(a: VectorClock) -> None:
    assert a.merge(a) == a


@given(clocks, clocks)
def test_merge_is_the_least_upper_bound(a: VectorClock, b: VectorClock) -> None:
    merged = a.merge(b)
    assert merged.dominates(a) and merged.dominates(b)
    for (region, partition), offset in merged.entries().items():
        assert offset == max(a.get(region, partition), b.get(region, partition))


# -- compare agrees with merge and dominates -------------------------------------------


@given(clocks, clocks)
def test_compare_before_iff_distinct_and_merge_gives_other(a: VectorClock, b: VectorClock) -> None:
    assert (a.compare(b) is Ordering.BEFORE) == (a != b and a.merge(b) == b)


@given(clocks, clocks)
def test_compare_after_iff_distinct_and_merge_gives_self(a: VectorClock, b: VectorClock) -> None:
    assert (a.compare(b) is Ordering.AFTER) == (a != b and a.merge(b) == a)


@given(clocks, clocks)
def test_compare_equal_iff_equal(a: VectorClock, b: VectorClock) -> None:
    assert (a.compare(b) is Ordering.EQUAL) == (a == b)


@given(clocks, clocks)
def test_compare_concurrent_iff_neither_dominates(a: VectorClock, b: VectorClock) -> None:
    assert (a.compare(b) is Ordering.CONCURRENT) == (not a.dominates(b) and not b.dominates(a))


@given(clocks, clocks)
def test_compare_is_antisymmetric(a: VectorClock, b: VectorClock) -> None:
    mirror = {
        Ordering.BEFORE: Ordering.AFTER,
        Ordering.AFTER: Ordering.BEFORE,
        Ordering.EQUAL: Ordering.EQUAL,
        Ordering.CONCURRENT: Ordering.CONCURRENT,
    }
    assert b.compare(a) is mirror[a.compare(b)]


# -- dominates is a partial order ------------------------------------------------------


@given(clocks)
def test_dominates_is_reflexive(a: VectorClock) -> None:
    assert a.dominates(a)


@given(clocks, clocks)
def test_dominates_is_antisymmetric(a: VectorClock, b: VectorClock) -> None:
    if a.dominates(b) and b.dominates(a):
        assert a == b


@given(clocks, clocks, clocks)
def test_dominates_is_transitive(a: VectorClock, b: VectorClock, c: VectorClock) -> None:
    # Build a chain so the premise holds often, then also check random triples.
    ab = a.merge(b)
    abc = ab.merge(c)
    assert abc.dominates(ab) and ab.dominates(a) and abc.dominates(a)
    if a.dominates(b) and b.dominates(c):
        assert a.dominates(c)


@given(clocks, clocks)
def test_dominates_matches_pointwise_definition(a: VectorClock, b: VectorClock) -> None:
    expected = all(a.get(r, p) >= o for (r, p), o in b.entries().items())
    assert a.dominates(b) == expected


# -- advance, covers, missing ----------------------------------------------------------


@given(clocks, positions)
def test_advance_then_covers(a: VectorClock, position: Position) -> None:
    advanced = a.advance(position)
    assert advanced.covers(position)
    assert advanced.dominates(a)
    assert advanced == a.merge(
        VectorClock({(position.region, position.partition): position.offset})
    )


@given(clocks, clocks)
def test_missing_is_empty_exactly_when_dominating(a: VectorClock, b: VectorClock) -> None:
    lacking = a.missing(b)
    assert (not lacking) == a.dominates(b)
    assert b.dominates(lacking)
    assert a.merge(lacking).dominates(b)
    for (region, partition), offset in lacking.entries().items():
        assert not a.covers(Position(region, partition, offset))


# -- wire format -----------------------------------------------------------------------


@given(wide_clocks)
def test_encode_decode_round_trip(a: VectorClock) -> None:
    assert VectorClock.decode(a.encode()) == a


@given(wide_clocks)
def test_encode_is_deterministic(a: VectorClock) -> None:
    rebuilt = VectorClock(dict(reversed(list(a.entries().items()))))
    assert rebuilt.encode() == a.encode()
    assert VectorClock.decode(a.encode()).encode() == a.encode()


@given(clocks, clocks)
def test_distinct_clocks_encode_differently(a: VectorClock, b: VectorClock) -> None:
    assert (a.encode() == b.encode()) == (a == b)


@given(wide_clocks)
def test_json_round_trip(a: VectorClock) -> None:
    assert VectorClock.from_json(a.to_json()) == a


@given(st.binary(max_size=40))
def test_decode_of_arbitrary_bytes_is_canonical_or_a_decode_error(data: bytes) -> None:
    try:
        clock = VectorClock.decode(data)
    except DecodeError:
        return
    assert clock.encode() == data


@given(wide_clocks, st.data())
def test_decode_rejects_every_strict_prefix(a: VectorClock, data: st.DataObject) -> None:
    encoded = a.encode()
    cut = data.draw(st.integers(min_value=0, max_value=len(encoded) - 1))
    try:
        VectorClock.decode(encoded[:cut])
    except DecodeError:
        return
    raise AssertionError(f"prefix {encoded[:cut]!r} of {encoded!r} decoded")


@given(wide_clocks)
def test_session_token_round_trip(a: VectorClock) -> None:
    token = SessionToken(a)
    assert SessionToken.decode(token.encode()) == token


# -- hybrid logical clock --------------------------------------------------------------

DRIFT_MS = 1_000
physical_times = st.integers(min_value=0, max_value=10_000)
# A step is a local event at a physical time, or the receipt of a remote timestamp
# whose wall time is within the drift limit of that physical time.
steps = st.one_of(
    st.tuples(st.just("now"), physical_times, st.none()),
    physical_times.flatmap(
        lambda pt: st.tuples(
            st.just("observe"),
            st.just(pt),
            st.builds(
                HLCTimestamp,
                st.integers(min_value=0, max_value=pt + DRIFT_MS),
                st.integers(min_value=0, max_value=MAX_LOGICAL),
            ),
        )
    ),
)
timestamps = st.builds(
    HLCTimestamp,
    st.integers(min_value=0, max_value=2**48 - 1),
    st.integers(min_value=0, max_value=MAX_LOGICAL),
)


@given(st.lists(steps, min_size=1, max_size=60))
def test_hlc_strictly_increases_over_any_interleaving(
    history: list[tuple[str, int, HLCTimestamp | None]],
) -> None:
    clock = HybridLogicalClock(max_drift_ms=DRIFT_MS)
    previous = clock.last
    for kind, physical_ms, remote in history:
        if kind == "now":
            current = clock.now(physical_ms)
        else:
            assert remote is not None
            current = clock.observe(remote, physical_ms)
            assert current > remote
        assert current > previous
        assert current.encode() > previous.encode()
        assert current.wall_ms >= physical_ms
        assert clock.last == current
        previous = current


@given(st.lists(steps, max_size=30))
def test_hlc_wall_stays_within_drift_of_the_largest_physical_time(
    history: list[tuple[str, int, HLCTimestamp | None]],
) -> None:
    clock = HybridLogicalClock(max_drift_ms=DRIFT_MS)
    largest = 0
    for kind, physical_ms, remote in history:
        largest = max(largest, physical_ms)
        if kind == "now":
            clock.now(physical_ms)
        else:
            assert remote is not None
            clock.observe(remote, physical_ms)
    # Each remote is at most DRIFT_MS ahead of its physical time; +1 ms per overflow.
    assert clock.last.wall_ms <= largest + DRIFT_MS + len(history)


@given(timestamps, timestamps)
def test_hlc_encode_order_equals_tuple_order(a: HLCTimestamp, b: HLCTimestamp) -> None:
    assert (a.encode() < b.encode()) == (a < b)
    assert (a.encode() == b.encode()) == (a == b)


@given(timestamps)
def test_hlc_encode_decode_round_trip(a: HLCTimestamp) -> None:
    assert HLCTimestamp.decode(a.encode()) == a
