"""CRC-64-AVRO (Rabin) fingerprints, as the Avro specification defines them."""

from __future__ import annotations

__all__ = ["EMPTY", "crc64_avro"]

EMPTY = 0xC15D213AA4D7A795


def _table() -> tuple[int, ...]:
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (EMPTY & -(fp & 1))
        table.append(fp)
    return tuple(table)


_TABLE = _table()


def crc64_avro(data: bytes) -> int:
    """The 64-bit Rabin fingerprint of ``data`` (a schema's Parsing Canonical Form)."""
    fp = EMPTY
    for byte in data:
        fp = (fp >> 8) ^ _TABLE[(fp ^ byte) & 0xFF]
    return fp
