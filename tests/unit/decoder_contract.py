"""The one contract every decoder of an edgebus record on the wire passes (commit log,
state log, saga progress): bytes that are no single-object Avro record of a known
schema, or a valid record cut short, raise a DecodeError that says so, and a
DecodeError is an EdgebusError.

A codec's test module subclasses :class:`DecoderContract` (as ``Test...``), names its
decoder ``decode`` and overrides :meth:`DecoderContract.valid_record`; it adds the
tests of its own schema (another schema in its topic, malformed parts).
"""

from __future__ import annotations

from typing import Any

import pytest

from edgebus.errors import DecodeError, EdgebusError

__all__ = ["DecoderContract"]


class DecoderContract:
    @staticmethod
    def decode(data: bytes | None) -> Any:
        """The decoder under test."""
        raise NotImplementedError

    def valid_record(self) -> bytes:
        """The bytes of a valid record of the decoder's schema."""
        raise NotImplementedError

    def test_a_valid_record_decodes(self) -> None:
        """The record the tests below cut short is itself valid."""
        assert self.decode(self.valid_record()) is not None

    @pytest.mark.parametrize(
        "data, says",
        [
            (b"", "no value"),
            (None, "no value"),
            (b"not avro at all", "single-object"),
            (b"\xc3", "single-object"),
            (b"\xc3\x01" + b"\x00" * 8 + b"\x02", "Unknown writer schema fingerprint"),
        ],
        ids=["empty", "none", "garbage", "short-marker", "unknown-fingerprint"],
    )
    def test_bytes_that_are_not_a_record_raise_decode_error(
        self, data: bytes | None, says: str
    ) -> None:
        with pytest.raises(DecodeError, match=says):
            self.decode(data)

    # right after the 10-byte header, one byte into the body, inside it, before its end
    @pytest.mark.parametrize("cut", [10, 11, 20, -1])
    def test_a_truncated_record_raises_decode_error(self, cut: int) -> None:
        data = self.valid_record()
        with pytest.raises(DecodeError, match="Corrupt Avro body"):
            self.decode(data[:cut])

    def test_decode_errors_are_edgebus_errors(self) -> None:
        with pytest.raises(EdgebusError):
            self.decode(b"garbage")
