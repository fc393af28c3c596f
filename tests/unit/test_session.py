"""Unit tests for edgebus.core.session: token string form, merge, after_write."""

from __future__ import annotations

import base64
import dataclasses

import pytest

from edgebus.core.session import TOKEN_PREFIX, SessionToken
from edgebus.core.vector_clock import Position, VectorClock
from edgebus.errors import InvalidInput

US = "us-east-1"
EU = "eu-west-1"
CLOCK = VectorClock({(EU, 0): 7, (US, 0): 42, (US, 3): 300})


def test_empty_token_string() -> None:
    assert SessionToken.empty().encode() == "eb1.AQA"
    assert SessionToken.decode("eb1.AQA") == SessionToken.empty()


def test_token_round_trip() -> None:
    token = SessionToken(CLOCK)
    text = token.encode()
    assert text.startswith(TOKEN_PREFIX)
    assert "=" not in text
    assert SessionToken.decode(text) == token
    assert SessionToken.decode(text).clock == CLOCK


def test_token_string_is_base64url_of_the_clock_bytes() -> None:
    body = SessionToken(CLOCK).encode()[len(TOKEN_PREFIX) :]
    assert base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)) == CLOCK.encode()


def test_token_uses_url_safe_alphabet() -> None:
    # 0xfb 0xff encodes with "+" and "/" in standard base64; base64url uses "-" and "_".
    token = SessionToken(VectorClock({(US, 0): 0xFFFB}))
    text = token.encode()
    assert "+" not in text and "/" not in text
    assert SessionToken.decode(text) == token


def test_str_is_the_encoded_token() -> None:
    token = SessionToken(CLOCK)
    assert str(token) == token.encode()
    assert f"{token}" == token.encode()


def test_token_is_frozen_and_hashable() -> None:
    token = SessionToken(CLOCK)
    with pytest.raises(dataclasses.FrozenInstanceError):
        token.clock = VectorClock.empty()  # type: ignore[misc]
    assert hash(token) == hash(SessionToken(VectorClock(dict(CLOCK.entries()))))
    assert len({token, SessionToken.decode(token.encode())}) == 1


def test_token_requires_a_vector_clock() -> None:
    with pytest.raises(InvalidInput, match="VectorClock"):
        SessionToken({(US, 0): 1})  # type: ignore[arg-type]


def test_after_write_includes_the_write_position() -> None:
    token = SessionToken.empty().after_write(Position(US, 2, 17))
    assert token.clock.covers(Position(US, 2, 17))
    assert token.clock == VectorClock({(US, 2): 17})
    again = token.after_write(Position(US, 2, 5))
    assert again is token


def test_merge_covers_both_sessions() -> None:
    a = SessionToken(VectorClock({(US, 0): 5, (EU, 0): 1}))
    b = SessionToken(VectorClock({(US, 0): 2, (EU, 0): 9, (US, 1): 0}))
    merged = a.merge(b)
    assert merged.clock == VectorClock({(US, 0): 5, (EU, 0): 9, (US, 1): 0})
    assert merged == b.merge(a)
    assert a.merge(SessionToken.empty()) is a
    assert SessionToken.empty().merge(a) is a


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "eb1.",
        "eb1",
        "AQA",
        "eb2.AQA",
        "EB1.AQA",
        " eb1.AQA",
        "eb1.AQA ",
        "eb1.AQA=",
        "eb1.AQB",  # same bytes as AQA but non-canonical trailing bits
        "eb1.A",
        "eb1.AQ+A",
        "eb1.AQ/A",
        "eb1.AgA",  # version 2
        "eb1.AQAA",  # trailing byte
        "eb1.AQE",  # one region announced, none present
        "eb1.not a token",
        "eb1.ÄQA",
        "eb1." + "A" * 1000,
    ],
)
def test_garbage_tokens_are_rejected_with_the_documented_message(garbage: str) -> None:
    with pytest.raises(InvalidInput) as info:
        SessionToken.decode(garbage)
    message = str(info.value)
    assert message.startswith("Invalid session token ")
    assert message.endswith(
        ": pass the token string returned by a previous write or read, unchanged."
    )
    assert len(message) < 300  # a long token is shortened in the message


def test_every_single_character_change_of_a_token_is_rejected_or_decodes_differently() -> None:
    text = SessionToken(CLOCK).encode()
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for index in range(len(TOKEN_PREFIX), len(text)):
        for char in alphabet:
            if char == text[index]:
                continue
            altered = text[:index] + char + text[index + 1 :]
            try:
                decoded = SessionToken.decode(altered)
            except InvalidInput:
                continue
            assert decoded.clock != CLOCK
            assert decoded.encode() == altered


@pytest.mark.parametrize("value", [None, b"eb1.AQA", 42])
def test_non_string_tokens_are_rejected(value: object) -> None:
    with pytest.raises(InvalidInput, match="Invalid session token"):
        SessionToken.decode(value)  # type: ignore[arg-type]


def test_decode_error_chains_the_underlying_decode_error() -> None:
    with pytest.raises(InvalidInput) as info:
        SessionToken.decode("eb1.AgA")
    assert info.value.__cause__ is not None


def test_token_with_an_hlc_reading_round_trips_as_eb2() -> None:
    token = SessionToken(CLOCK, (1_700_000_000_000 << 16) | 3)
    text = token.encode()
    assert text.startswith("eb2.")
    assert SessionToken.decode(text) == token


def test_merge_keeps_the_newest_hlc_reading() -> None:
    a = SessionToken(VectorClock({(US, 0): 5}), 10)
    b = SessionToken(VectorClock({(EU, 0): 1}), 20)
    assert a.merge(b).hlc == 20
    assert a.after_write(Position(US, 0, 6), 30).hlc == 30
    assert a.with_hlc(5) is a


def test_eb2_token_with_a_zero_hlc_is_not_canonical() -> None:
    import base64

    raw = bytes(8) + VectorClock.empty().encode()
    text = "eb2." + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    with pytest.raises(InvalidInput, match="never 0"):
        SessionToken.decode(text)


def test_a_token_over_the_size_cap_is_refused_before_it_is_decoded() -> None:
    from edgebus.core.session import MAX_TOKEN_CHARS

    hostile = "eb2." + "A" * (6 * 1024 * 1024)  # 6 MB took a second to decode
    with pytest.raises(InvalidInput, match=f"over the {MAX_TOKEN_CHARS}"):
        SessionToken.decode(hostile)
    assert SessionToken.decode("eb1.AQA") == SessionToken.empty()  # short ones as before
