"""Session tokens: the causal context a client carries between its calls.

Like a Cosmos DB session token, a :class:`SessionToken` is small, opaque to callers
and safe to pass between services (HTTP headers, queue messages, cookies). It holds
the vector clock of everything the session has written or read. A causal read waits
until the serving region's frontier covers it; a write carries it as the event's
dependencies; the write's own position is then added (:meth:`SessionToken.after_write`).

A token also carries the newest hybrid-logical-clock reading the session has seen
(``hlc``, packed ``wall_ms << 16 | logical``): a write stamps itself after it, so
last-write-wins never lets a write lose to one it causally follows, even when the two
writers' clocks disagree.

String forms, both canonical (one token has exactly one string):

* ``"eb1."`` + unpadded base64url (RFC 4648 section 5) of
  :meth:`VectorClock.encode <edgebus.core.vector_clock.VectorClock.encode>`, for a
  token whose ``hlc`` is 0. The empty session is ``"eb1.AQA"``.
* ``"eb2."`` + unpadded base64url of the 8-byte big-endian ``hlc`` (not 0) followed by
  the clock's bytes.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Final

from edgebus.core.vector_clock import Position, VectorClock
from edgebus.errors import DecodeError, InvalidInput

__all__ = [
    "MAX_TOKEN_CHARS",
    "TOKEN_PREFIX",
    "TOKEN_PREFIX_V2",
    "InvalidSessionToken",
    "SessionToken",
]

#: A token string without an HLC reading starts with this (format version 1).
TOKEN_PREFIX: Final = "eb1."
#: A token string with an HLC reading starts with this (format version 2).
TOKEN_PREFIX_V2: Final = "eb2."
#: the longest token decoded: a clock of every stream of 20 regions with 1,000
#: partitions each fits; a longer one is refused before any work (a hostile 6 MB token
#: took a second to decode)
MAX_TOKEN_CHARS: Final = 512 * 1024

_BASE64URL: Final = re.compile(r"[A-Za-z0-9_-]*")
_PREVIEW_CHARS: Final = 48


class InvalidSessionToken(InvalidInput, DecodeError):
    """A string that is not a session token :meth:`SessionToken.encode` produced.

    The caller's input (an :class:`~edgebus.errors.InvalidInput`: change it, nothing
    was read or written) and bytes that do not decode (a
    :class:`~edgebus.errors.DecodeError`, like every edgebus decoder raises)."""


@dataclass(frozen=True, slots=True)
class SessionToken:
    """The vector clock of everything a session has written or read, and the newest
    HLC reading among them; immutable."""

    clock: VectorClock
    hlc: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.clock, VectorClock):
            raise InvalidInput(
                f"A session token holds a VectorClock, not {type(self.clock).__name__}."
            )
        if type(self.hlc) is not int or not 0 <= self.hlc < 2**64:
            raise InvalidInput(
                f"A session token's hlc is an unsigned 64-bit int, not {self.hlc!r}."
            )

    @classmethod
    def empty(cls) -> SessionToken:
        """The token of a session that has not written or read anything."""
        return _EMPTY

    def encode(self) -> str:
        """The canonical token string (see the module docstring)."""
        if self.hlc:
            data = self.hlc.to_bytes(8, "big") + self.clock.encode()
            return TOKEN_PREFIX_V2 + base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")
        raw = base64.urlsafe_b64encode(self.clock.encode()).rstrip(b"=")
        return TOKEN_PREFIX + raw.decode("ascii")

    @classmethod
    def decode(cls, token: str) -> SessionToken:
        """Parse a string :meth:`encode` produced.

        Raises :class:`InvalidSessionToken` (an :class:`~edgebus.errors.InvalidInput`
        and a :class:`~edgebus.errors.DecodeError`: "Invalid session token ...: pass
        the token string returned by a previous write or read, unchanged") for anything
        else, including a token altered in any way, in time linear in its length (a
        token over :data:`MAX_TOKEN_CHARS` is refused before any decoding).
        """
        if not isinstance(token, str):
            raise _invalid(token, f"expected a string, got {type(token).__name__}")
        if len(token) > MAX_TOKEN_CHARS:
            raise _invalid(token[:40], f"it is {len(token)} characters long, over the "
                           f"{MAX_TOKEN_CHARS} a session token may have")
        if token.startswith(TOKEN_PREFIX_V2):
            version = 2
        elif token.startswith(TOKEN_PREFIX):
            version = 1
        else:
            raise _invalid(token, f"it does not start with {TOKEN_PREFIX!r} or {TOKEN_PREFIX_V2!r}")
        body = token[len(TOKEN_PREFIX) :]
        if not _BASE64URL.fullmatch(body):
            raise _invalid(token, "it contains characters outside base64url")
        if len(body) % 4 == 1:
            raise _invalid(token, "its base64url body has an impossible length")
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except (binascii.Error, ValueError) as exc:  # pragma: no cover - guarded above
            raise _invalid(token, "its base64url body does not decode") from exc
        hlc = 0
        if version == 2:
            if len(raw) < 8:
                raise _invalid(token, "it is too short to hold an HLC reading")
            hlc = int.from_bytes(raw[:8], "big")
            if not hlc:
                raise _invalid(token, "an eb2 token's HLC reading is never 0")
        try:
            clock = VectorClock.decode(raw[8:] if version == 2 else raw)
        except DecodeError as exc:
            raise _invalid(token, "it does not hold a valid vector clock") from exc
        # The clock's bytes are canonical; base64 has spare low bits in its last
        # character. Re-encoding rejects tokens that differ only there.
        if base64.urlsafe_b64encode(raw).rstrip(b"=") != body.encode("ascii"):
            raise _invalid(token, "its base64url body is not in canonical form")
        return cls(clock, hlc)

    def merge(self, other: SessionToken) -> SessionToken:
        """A token covering both sessions (e.g. after fanning in parallel calls)."""
        clock = self.clock.merge(other.clock)
        hlc = max(self.hlc, other.hlc)
        if clock is self.clock and hlc == self.hlc:
            return self
        if clock is other.clock and hlc == other.hlc:
            return other
        return SessionToken(clock, hlc)

    def after_write(self, position: Position, hlc: int = 0) -> SessionToken:
        """This token with the write at ``position`` (stamped ``hlc``) included."""
        clock = self.clock.advance(position)
        top = max(self.hlc, hlc)
        return self if clock is self.clock and top == self.hlc else SessionToken(clock, top)

    def with_hlc(self, hlc: int) -> SessionToken:
        """This token having seen an HLC reading ``hlc`` (packed)."""
        return self if hlc <= self.hlc else SessionToken(self.clock, hlc)

    def __str__(self) -> str:
        return self.encode()


def _invalid(token: object, reason: str) -> InvalidSessionToken:
    shown = repr(token[:_PREVIEW_CHARS] if isinstance(token, str) else token)
    if len(shown) > _PREVIEW_CHARS:
        shown = shown[: _PREVIEW_CHARS - 3] + "..."
    return InvalidSessionToken(
        f"Invalid session token {shown} ({reason}): pass the token string returned by "
        "a previous write or read, unchanged."
    )


_EMPTY: Final = SessionToken(VectorClock.empty(), 0)
