"""The SDK's state calls check their options against the state hosts' own limits
(:mod:`edgebus.sdk.states`): a caller passing a state id, a timeout or a lease no host
takes gets InvalidInput saying what to pass, before anything is written (instead of a
request every host refuses and dead-letters). A lease is held to 500 ms .. one hour; a
call naming none says so (lease 0); a lock without a name is on the state's own lock.
No broker: nothing is started."""

from __future__ import annotations

from typing import Any

import pytest

from edgebus.config import load_config
from edgebus.core.ownership import MAX_LEASE_MS, MIN_LEASE_MS
from edgebus.core.state_machine import DEFAULT_LOCK_NAME, validate_request
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


def test_a_timeout_over_2_48_ms_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match=rf"timeout_ms of {MAX_MS + 1} ms is over the "
                                           rf"{MAX_MS} ms \(2\^48, about 8,900 years\)"):
        request(timeout_ms=MAX_MS + 1)
    with pytest.raises(InvalidInput, match=f"timeout_ms of {2**63} ms"):
        request(timeout_ms=2**63)


@pytest.mark.parametrize("number", [0, -1, True, 1.5, "10"])
def test_a_timeout_that_is_no_positive_int_is_invalid_input(number: Any) -> None:
    with pytest.raises(InvalidInput, match="timeout_ms must be a positive int"):
        request(timeout_ms=number)


@pytest.mark.parametrize("number", [0, -1, 499, MAX_LEASE_MS + 1, MAX_MS, True, 1.5, "1000"])
def test_a_lease_outside_500_ms_to_an_hour_is_invalid_input_giving_the_bounds(
    number: Any
) -> None:
    with pytest.raises(InvalidInput, match=r"lease_duration_ms must be a whole number of "
                                           r"milliseconds from 500 to 3600000 \(one hour\)"):
        request(lease_duration_ms=number)


def test_the_longest_timeout_and_lease_are_taken_and_every_host_takes_them() -> None:
    made = request(timeout_ms=MAX_MS, lease_duration_ms=MAX_LEASE_MS)
    assert (made.timeout_ms, made.lease_ms) == (MAX_MS, MAX_LEASE_MS)
    assert record_refusal(made.state_id, made) is None
    encode_state_record(made.state_id, made)
    shortest = request(lease_duration_ms=MIN_LEASE_MS)
    assert shortest.lease_ms == MIN_LEASE_MS


def test_a_call_without_a_lease_names_none_and_every_host_takes_it() -> None:
    made = request()
    assert made.lease_ms == 0  # none named: the owner's state.lease_ms, its lease unchanged
    validate_request(made)
    assert record_refusal(made.state_id, made) is None
    encode_state_record(made.state_id, made)


@pytest.mark.parametrize("operation", ["lock", "unlock"])
def test_a_lock_or_unlock_without_lock_name_is_on_the_states_own_lock(operation: str) -> None:
    made = CALLS._request("s", operation, {})[0]
    assert made.lock_name == DEFAULT_LOCK_NAME == "state"
    validate_request(made)  # an owner runs it (without a lock name it would refuse it)
    named = CALLS._request("s", operation, {"lock_name": "checkout"})[0]
    assert named.lock_name == "checkout"
    assert CALLS._request("s", "get", {})[0].lock_name is None


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
