"""Session tokens: the causal context a client carries between its calls.

Like a Cosmos DB session token, a :class:`SessionToken` is small, opaque to callers
and safe to pass between services (HTTP headers, queue messages, cookies). It holds
the vector clock of everything the session has written or read. A causal read waits
until the serving region's frontier covers it; a write carries it as the event's
dependencies; the write's own position is then added (:meth:`SessionToken.after_write`).

String form: ``"eb1."`` followed by the unpadded base64url (RFC 4648 section 5)
encoding of :meth:`VectorClock.encode <edgebus.core.vector_clock.VectorClock.encode>`.
The form is canonical: one clock has exactly one token string. The empty session is
``"eb1.AQA"``.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Final

from edgebus.core.vector_clock import Position, VectorClock
from edgebus.errors import DecodeError, InvalidInput

__all__ = ["TOKEN_PREFIX", "SessionToken"]

#: Every token string starts with this (format version 1).
TOKEN_PREFIX: Final = "eb1."

_BASE64URL: Final = re.compile(r"[A-Za-z0-9_-]*")
_PREVIEW_CHARS: Final = 48


@dataclass(frozen=True, slots=True)
class SessionToken:
    """The vector clock of everything a session has written or read; immutable."""

    clock: VectorClock

    def __post_init__(self) -> None:
        if not isinstance(self.clock, VectorClock):
            raise InvalidInput(
                f"A session token holds a VectorClock, not {type(self.clock).__name__}."
            )

    @classmethod
    def empty(cls) -> SessionToken:
        """The token of a session that has not written or read anything."""
        return _EMPTY

    def encode(self) -> str:
        """``"eb1."`` + unpadded base64url of the clock's bytes."""
        raw = base64.urlsafe_b64encode(self.clock.encode()).rstrip(b"=")
        return TOKEN_PREFIX + raw.decode("ascii")

    @classmethod
    def decode(cls, token: str) -> SessionToken:
        """Parse a string :meth:`encode` produced.

        Raises :class:`~edgebus.errors.InvalidInput` ("Invalid session token ...:
        pass the token string returned by a previous write or read, unchanged") for
        anything else, including a token altered in any way.
        """
        if not isinstance(token, str):
            raise _invalid(token, f"expected a string, got {type(token).__name__}")
        if not token.startswith(TOKEN_PREFIX):
            raise _invalid(token, f"it does not start with {TOKEN_PREFIX!r}")
        body = token[len(TOKEN_PREFIX) :]
        if not _BASE64URL.fullmatch(body):
            raise _invalid(token, "it contains characters outside base64url")
        if len(body) % 4 == 1:
            raise _invalid(token, "its base64url body has an impossible length")
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except (binascii.Error, ValueError) as exc:  # pragma: no cover - guarded above
            raise _invalid(token, "its base64url body does not decode") from exc
        try:
            clock = VectorClock.decode(raw)
        except DecodeError as exc:
            raise _invalid(token, "it does not hold a valid vector clock") from exc
        # The clock's bytes are canonical; base64 has spare low bits in its last
        # character. Re-encoding rejects tokens that differ only there.
        if base64.urlsafe_b64encode(raw).rstrip(b"=") != body.encode("ascii"):
            raise _invalid(token, "its base64url body is not in canonical form")
        return cls(clock)

    def merge(self, other: SessionToken) -> SessionToken:
        """A token covering both sessions (e.g. after fanning in parallel calls)."""
        clock = self.clock.merge(other.clock)
        if clock is self.clock:
            return self
        if clock is other.clock:
            return other
        return SessionToken(clock)

    def after_write(self, position: Position) -> SessionToken:
        """This token with the write at ``position`` included."""
        clock = self.clock.advance(position)
        return self if clock is self.clock else SessionToken(clock)

    def __str__(self) -> str:
        return self.encode()


def _invalid(token: object, reason: str) -> InvalidInput:
    shown = repr(token)
    if len(shown) > _PREVIEW_CHARS:
        shown = shown[: _PREVIEW_CHARS - 3] + "..."
    return InvalidInput(
        f"Invalid session token {shown} ({reason}): pass the token string returned by "
        "a previous write or read, unchanged."
    )


_EMPTY: Final = SessionToken(VectorClock.empty())
