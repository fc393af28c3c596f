"""Hostile sizes for the classifier: linear-time name segmentation, field names over
``compliance.max_field_name_chars`` refused before any work, records over
``kafka.max_batch_bytes`` refused before classification (SDK and state host).

Calls on big inputs run under a per-call time limit (an interval timer): a hang guard
that raises ``Hang`` instead of stopping the suite, never a benchmark.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgebus.config import ComplianceConfig, load_config
from edgebus.core import classification, field_names
from edgebus.core.classification import CLASSIFIER_CACHE_BYTES, MAX_FIELD_NAME_CHARS, classify
from edgebus.core.field_names import field_rules
from edgebus.core.state_machine import StateOp, StateRequest
from edgebus.errors import InvalidInput
from edgebus.sdk import EdgeBus
from edgebus.state.client import StateClient
from edgebus.state.executor import comply
from tests.unit.fuzzing import time_limit

#: a name of 220 KB that splits into 55,000 known words: the worst case of the old
#: segmentation (it kept every position's whole split: half a minute)
HUGE_NAME = "name" * 55_000
LIMIT_S = 5.0




def test_the_core_defaults_are_the_configs() -> None:
    defaults = ComplianceConfig()
    assert defaults.max_field_name_chars == MAX_FIELD_NAME_CHARS
    assert defaults.classifier_cache_bytes == CLASSIFIER_CACHE_BYTES


# ------------------------------------------------------------------ segmentation


def reference_segment(word: str) -> tuple[str, ...] | None:
    """The old segmentation (every position's whole split kept): quadratic, but the
    answer the new one must give."""
    n = len(word)
    best: list[tuple[str, ...] | None] = [None] * (n + 1)
    best[n] = ()
    for i in range(n - 1, -1, -1):
        for j in range(min(n, i + field_names._LONGEST_WORD), i + 1, -1):
            rest = best[j]
            if rest is not None and word[i:j] in field_names._SEGMENT_WORDS:
                cand = (word[i:j], *rest)
                current = best[i]
                if current is None or len(cand) < len(current):
                    best[i] = cand
    found = best[0]
    return found if found is not None and len(found) >= 2 else None


_pieces = st.sampled_from(sorted(field_names._SEGMENT_WORDS)) | st.text("abcdefgnmorst", max_size=3)


@given(st.lists(_pieces, max_size=12).map("".join))
def test_linear_segmentation_splits_as_the_old_dynamic_program_did(word: str) -> None:
    assert field_names._segment(word) == reference_segment(word)


def test_a_220_kb_name_is_segmented_in_linear_time() -> None:
    with time_limit():
        assert field_names.field_tokens(HUGE_NAME) == ("name",) * 55_000
        assert field_rules("first" + HUGE_NAME) == (("pii", "field:person-name"),)


# ------------------------------------------------------------------ field-name limit


def test_a_field_name_over_the_limit_is_refused_before_any_segmentation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def never(name: str) -> tuple[tuple[str, str], ...]:
        raise AssertionError("a name over the limit reached the field-name rules")

    monkeypatch.setattr(classification, "field_rules", never)
    with time_limit(), pytest.raises(InvalidInput) as caught:
        classify({HUGE_NAME: 1})
    message = str(caught.value)
    assert f"{'name' * 10 + '...'!r}" in message  # the name, truncated
    assert "220000 characters" in message
    assert "limit of 1024" in message
    assert "compliance.max_field_name_chars" in message
    assert len(message) < 400


def test_a_nested_field_name_over_the_limit_is_refused_naming_where() -> None:
    with pytest.raises(InvalidInput, match=r"in 'outer\[0\]' is 1025 characters"):
        classify({"outer": [{"x" * 1025: 1}]})


def test_the_limit_is_an_argument_and_a_name_at_the_limit_passes() -> None:
    assert classify({"a" * 16: 1}, max_field_name_chars=16).classes == {"public"}
    with pytest.raises(InvalidInput, match="is 17 characters long, over the limit of 16"):
        classify({"a" * 17: 1}, max_field_name_chars=16)


def test_a_name_remembered_under_a_higher_limit_is_refused_under_a_lower_one() -> None:
    name = "remembered_" + "z" * 89
    assert classify({name: 1}).classes == {"public"}  # now in the top-level memo
    with pytest.raises(InvalidInput, match="is 100 characters long, over the limit of 50"):
        classify({name: 1}, max_field_name_chars=50)
    assert classify({name: 1}).classes == {"public"}


def test_a_huge_value_is_classified_in_linear_time() -> None:
    hostile = [
        "4111 1111 1111 1111 " * 20_000, "+1 " * 100_000, "GB82" * 50_000,
        "a@" * 100_000 + "x", "123-45-" * 50_000, "(415) " * 50_000, "1" * 400_000,
        "x@" + "a." * 100_000, ("order " + "5" * 16 + " ") * 10_000,
    ]
    for value in hostile:
        with time_limit():
            classify({"note": value})


# ------------------------------------------------------------------ the SDK


@pytest.fixture
def bus() -> EdgeBus:
    return EdgeBus()


def test_a_write_with_a_220_kb_field_name_is_refused_quickly(bus: EdgeBus) -> None:
    with time_limit(), pytest.raises(InvalidInput, match=r"compliance\.max_field_name_chars"):
        bus.prepare_write("k", {HUGE_NAME: "x"})


def test_the_sdk_reads_max_field_name_chars_from_the_config() -> None:
    bus = EdgeBus({"compliance": {"max_field_name_chars": 16}})
    bus.prepare_write("k", {"a" * 16: "x"})
    with pytest.raises(InvalidInput, match="over the limit of 16"):
        bus.prepare_write("k", {"a" * 17: "x"})


def test_data_over_max_batch_bytes_is_refused_before_classification(
    bus: EdgeBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    import edgebus.sdk.writes

    def never(*args: object, **kwargs: object) -> object:
        raise AssertionError("data over the size limit reached the classifier")

    monkeypatch.setattr(edgebus.sdk.writes, "classify", never)
    huge = {"blob": "4111 1111 1111 1111 " * 40_000}  # 800 KB, over 512 KiB
    with time_limit(), pytest.raises(InvalidInput, match=r"data for key 'k' is \d+ bytes"):
        bus.prepare_write("k", huge)
    with pytest.raises(InvalidInput, match=r"kafka\.max_batch_bytes"):
        bus.plan("k", huge)


# ------------------------------------------------------------------ the state host


CONFIG = load_config(None)


def op(changes: dict[str, Any]) -> StateOp:
    return StateOp("profile", "r1", "set", "us-east-1", "us-east-1/h1", 1, 10_000,
                   "us-east-1", "ok", result=changes, version=4, changes=changes)


def test_an_op_with_a_220_kb_field_name_is_refused_by_the_owner_quickly() -> None:
    # the host refuses a request whose run raises: a dead letter, and
    # StateOperationRefused for its caller
    with time_limit(), pytest.raises(InvalidInput, match=r"compliance\.max_field_name_chars"):
        comply(CONFIG, "pii", 3, op({HUGE_NAME: "x"}))


def test_an_op_over_max_batch_bytes_is_refused_by_the_owner_before_classification(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import edgebus.state.executor

    def never(*args: object, **kwargs: object) -> object:
        raise AssertionError("values over the size limit reached the classifier")

    monkeypatch.setattr(edgebus.state.executor, "classify", never)
    with time_limit(), pytest.raises(InvalidInput, match=r"kafka\.max_batch_bytes"):
        comply(CONFIG, "pii", 3, op({"blob": "x" * 600_000}))


def test_the_state_client_refuses_before_writing_anything() -> None:
    client = StateClient(CONFIG, "test-client", "eu-west-1")
    huge_name = StateRequest("profile", "r1", "set", "eu-west-1", key=HUGE_NAME, value="x")
    with time_limit(), pytest.raises(InvalidInput, match=r"compliance\.max_field_name_chars"):
        client.check_compliance(huge_name, "pii")
    huge_value = StateRequest("profile", "r2", "set", "eu-west-1", key="blob",
                              value="x" * 600_000)
    with pytest.raises(InvalidInput, match=r"kafka\.max_batch_bytes"):
        client.check_compliance(huge_value, "pii")
