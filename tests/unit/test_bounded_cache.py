"""The byte-bounded LRU memo (edgebus.core.bounded_cache) and the classifier's memos
built on it: bounded in bytes whatever the names and values classified."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from edgebus.core import classification
from edgebus.core.bounded_cache import ENTRY_OVERHEAD, BoundedCache, str_bytes
from edgebus.core.classification import CLASSIFIER_CACHE_BYTES, classify


def weigh(key: str, value: int) -> int:
    return str_bytes(key) + ENTRY_OVERHEAD


def entry(key: str) -> int:
    return weigh(key, 0)


def test_a_get_marks_an_entry_used_and_the_least_recently_used_goes_first() -> None:
    cache: BoundedCache[str, int] = BoundedCache(3 * entry("a"), weigh)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.put("c", 3)
    assert cache.get("a") == 1  # now b is the least recently used
    cache.put("d", 4)
    assert list(cache.entries) == ["c", "a", "d"]
    assert "b" not in cache and cache.get("b") is None
    assert (len(cache), cache.nbytes) == (3, 3 * entry("a"))


def test_storing_a_key_again_replaces_its_value_and_its_weight() -> None:
    cache: BoundedCache[str, int] = BoundedCache(10_000, weigh)
    cache.put("a", 1)
    cache.put("a", 2)
    assert (cache.get("a"), len(cache), cache.nbytes) == (2, 1, entry("a"))


def test_an_entry_heavier_than_the_bound_is_not_stored_and_zero_stores_nothing() -> None:
    cache: BoundedCache[str, int] = BoundedCache(entry("x" * 10), weigh)
    cache.put("x" * 11, 1)
    assert (len(cache), cache.nbytes) == (0, 0)
    off: BoundedCache[str, int] = BoundedCache(0, weigh)
    off.put("a", 1)
    assert (len(off), off.nbytes) == (0, 0)


def test_resize_evicts_what_no_longer_fits_and_clear_forgets_everything() -> None:
    cache: BoundedCache[str, int] = BoundedCache(10 * entry("k0"), weigh)
    for i in range(10):
        cache.put(f"k{i}", i)
    cache.resize(4 * entry("k0"))
    assert list(cache.entries) == ["k6", "k7", "k8", "k9"]
    cache.clear()
    assert (len(cache), cache.nbytes) == (0, 0)
    with pytest.raises(ValueError, match="at least 0"):
        cache.resize(-1)
    with pytest.raises(ValueError, match="at least 0"):
        BoundedCache(-1, weigh)


def test_ten_thousand_distinct_10_kb_keys_never_grow_it_past_its_bound() -> None:
    bound = 1024 * 1024
    cache: BoundedCache[str, int] = BoundedCache(bound, weigh)
    for i in range(10_000):
        cache.put(f"{i:05d}" + "n" * 10_240, i)
        assert cache.nbytes <= bound
    # the count is honest: what the keys really take
    assert cache.nbytes == sum(sys.getsizeof(k) + ENTRY_OVERHEAD for k in cache.entries)
    assert 0 < len(cache) < bound // 10_240


@pytest.fixture
def small_memos() -> Iterator[int]:
    """The classifier's memos bounded to 1 MiB for a test, then back to the default."""
    bound = 1024 * 1024
    classify({}, cache_bytes=bound)
    yield bound
    classify({}, cache_bytes=CLASSIFIER_CACHE_BYTES)


def test_distinct_10_kb_field_names_never_grow_the_classifier_memos_past_their_bound(
    small_memos: int,
) -> None:
    memos = classification._MEMOS
    # 2,000 names of 10 KB: 20 times what the memos may hold (each name costs a
    # tokenization of 10 KB, so the 10,000 of the test above would take seconds here)
    for i in range(2_000):
        # digits: a name the tokenizer takes in one step (the test is about memory)
        name = f"{i:05d}_" + "7" * 10_240
        record = {name: "x", "nested": {name: f"value {i}"}}
        classify(record, max_field_name_chars=20_000, cache_bytes=small_memos)
        assert sum(m.nbytes for m in memos) <= small_memos
    assert all(m.max_bytes == small_memos // len(memos) for m in memos)
    assert len(classification._TOP_LEVEL) < small_memos // 10_240


def test_classify_without_cache_bytes_keeps_the_last_bound_given(small_memos: int) -> None:
    classify({"a": 1})
    assert sum(m.max_bytes for m in classification._MEMOS) == CLASSIFIER_CACHE_BYTES
    classify({"a": 1}, cache_bytes=small_memos)
    assert sum(m.max_bytes for m in classification._MEMOS) == small_memos
