"""The SDK's state calls check their options against the state hosts' own limits
(:mod:`edgebus.sdk.states`): a caller passing a state id, a timeout or a lease no host
takes gets InvalidInput saying what to pass, before anything is written (instead of a
request every host refuses and dead-letters). No broker: nothing is started."""

from __future__ import annotations

from typing import Any

import pytest

from edgebus.config import load_config
from edgebus.errors import InvalidInput
from edgebus.sdk.states import StateCalls
from edgebus.wire.state_log import (
    MAX_MS,
    MAX_STATE_ID_BYTES,
    encode_state_record,
    record_refusal,
)

CALLS = StateCalls(load_config(None), "test-client")


def request(state_id: Any = "s", /, **options: Any) -> Any:
    """The request of a ``lock`` call with ``options``."""
    return CALLS._request(state_id, "lock", {"lock_name": "l", **options})[0]


@pytest.mark.parametrize("name", ["timeout_ms", "lease_duration_ms"])
def test_a_timeout_or_lease_over_2_48_ms_is_invalid_input(name: str) -> None:
    with pytest.raises(InvalidInput, match=rf"{name} of {MAX_MS + 1} ms is over the {MAX_MS} "
                                           r"ms \(2\^48, about 8,900 years\)"):
        request(**{name: MAX_MS + 1})
    with pytest.raises(InvalidInput, match=f"{name} of {2**63} ms"):
        request(**{name: 2**63})


@pytest.mark.parametrize("name", ["timeout_ms", "lease_duration_ms"])
@pytest.mark.parametrize("number", [0, -1, True, 1.5, "10"])
def test_a_timeout_or_lease_that_is_no_positive_int_is_invalid_input(
    name: str, number: Any
) -> None:
    with pytest.raises(InvalidInput, match=f"{name} must be a positive int"):
        request(**{name: number})


def test_the_longest_timeout_and_lease_are_taken_and_every_host_takes_them() -> None:
    made = request(timeout_ms=MAX_MS, lease_duration_ms=MAX_MS)
    assert (made.timeout_ms, made.lease_ms) == (MAX_MS, MAX_MS)
    assert record_refusal(made.state_id, made) is None
    encode_state_record(made.state_id, made)


def test_a_state_id_over_64_kib_of_utf8_is_invalid_input() -> None:
    longest = "é" * (MAX_STATE_ID_BYTES // 2)
    made = request(longest)
    assert made.state_id == longest and record_refusal(longest, made) is None
    with pytest.raises(InvalidInput, match=f"state_id is {MAX_STATE_ID_BYTES + 2} bytes of "
                                           f"UTF-8, over the {MAX_STATE_ID_BYTES} bytes"):
        request(longest + "é")
    with pytest.raises(InvalidInput, match=f"over the {MAX_STATE_ID_BYTES} bytes"):
        request("x" * (MAX_STATE_ID_BYTES + 1))


def test_a_state_id_that_is_not_unicode_text_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match=r"is not Unicode text .*lone surrogate"):
        request("cart-\ud800")


@pytest.mark.parametrize("state_id", ["", None, 5])
def test_a_state_id_that_is_no_non_empty_string_is_invalid_input(state_id: Any) -> None:
    with pytest.raises(InvalidInput, match="state_id must be a non-empty string"):
        request(state_id)
