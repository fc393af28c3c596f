"""ReadRequest: a read as a region service is asked it, and its query-string form."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgebus.core.freshness import ReadRequest
from edgebus.core.session import SessionToken
from edgebus.core.vector_clock import VectorClock
from edgebus.errors import InvalidInput

sessions = st.one_of(
    st.none(),
    st.dictionaries(
        st.tuples(st.sampled_from(["us-east-1", "eu-west-1"]), st.integers(0, 5)),
        st.integers(0, 2**40),
        min_size=1, max_size=4,
    ).map(lambda d: SessionToken(VectorClock(d))),
)


@given(
    key=st.text(min_size=1, max_size=20),
    consistency=st.sampled_from(["eventual", "causal", "bounded_staleness", "strong"]),
    session=sessions,
    threshold=st.one_of(st.none(), st.floats(0.5, 1e6, allow_nan=False)),
    behind=st.one_of(st.none(), st.integers(0, 1000)),
    wait=st.floats(0, 1e5, allow_nan=False),
)
def test_the_query_string_form_reads_back_as_the_same_request(
    key: str, consistency: str, session: SessionToken | None, threshold: float | None,
    behind: int | None, wait: float,
) -> None:
    request = ReadRequest(key, consistency, session, threshold, behind, wait)
    assert ReadRequest.from_params(key, request.params()) == request


def test_an_empty_session_and_no_wait_are_left_out_of_the_query_string() -> None:
    params = ReadRequest("k", "causal", SessionToken.empty(), wait_ms=0.0).params()
    assert params == {"consistency": "causal"}
    assert ReadRequest.from_params("k", params) == ReadRequest("k", "causal")


@pytest.mark.parametrize("name", ["staleness_threshold_ms", "max_versions_behind", "wait_ms"])
def test_a_number_that_is_not_one_is_refused_naming_the_parameter(name: str) -> None:
    with pytest.raises(InvalidInput, match=f"{name} must be a number"):
        ReadRequest.from_params("k", {name: "soon"})


@pytest.mark.parametrize("wait", ["600001", "-1", "inf", "nan", "1e400", "9" * 100])
def test_a_wait_outside_zero_to_ten_minutes_is_refused(wait: str) -> None:
    with pytest.raises(InvalidInput, match="wait_ms"):
        ReadRequest.from_params("k", {"wait_ms": wait})


def test_a_wait_of_ten_minutes_is_accepted() -> None:
    assert ReadRequest.from_params("k", {"wait_ms": "600000"}).wait_ms == 600_000
