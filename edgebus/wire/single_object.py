"""Avro single-object encoding: ``C3 01`` + 8-byte CRC-64-AVRO fingerprint + body.

The fingerprint (little-endian) identifies the writer schema, so a reader with only
the ``.avsc`` files can decode any record, old or new.
"""

from __future__ import annotations

from io import BytesIO
from typing import Any

from fastavro import schemaless_reader, schemaless_writer

from edgebus.errors import DecodeError
from edgebus.wire.schema_registry import RegisteredSchema, SchemaRegistry

__all__ = ["MAGIC", "decode_single_object", "encode_single_object", "read_fingerprint"]

MAGIC = b"\xc3\x01"
_HEADER_LEN = 10


def encode_single_object(schema: RegisteredSchema, record: dict[str, Any]) -> bytes:
    """``record`` written with ``schema``, framed for single-object decoding."""
    buf = BytesIO()
    buf.write(MAGIC)
    buf.write(schema.fingerprint_bytes)
    schemaless_writer(buf, schema.parsed, record)
    return buf.getvalue()


def read_fingerprint(data: bytes) -> int:
    """The writer schema fingerprint of a framed value (DecodeError if not framed)."""
    if len(data) < _HEADER_LEN or data[:2] != MAGIC:
        raise DecodeError(
            "Not an Avro single-object encoded value (expected the marker C3 01 and an "
            f"8-byte fingerprint; got {data[:_HEADER_LEN].hex() or 'an empty value'})"
        )
    return int.from_bytes(data[2:_HEADER_LEN], "little")


def decode_single_object(
    data: bytes, registry: SchemaRegistry, reader: RegisteredSchema | None = None
) -> tuple[RegisteredSchema, dict[str, Any]]:
    """Decode a framed value; ``reader`` (default: the writer schema) shapes the result."""
    writer = registry.by_fingerprint(read_fingerprint(data))
    try:
        record = schemaless_reader(
            BytesIO(data[_HEADER_LEN:]),
            writer.parsed,
            (reader or writer).parsed,
        )
    except Exception as e:  # fastavro raises many types on corrupt input
        raise DecodeError(
            f"Corrupt Avro body for schema {writer.full_name} v{writer.version}: {e}"
        ) from e
    if not isinstance(record, dict):
        raise DecodeError(f"Avro body for {writer.full_name} is not a record")
    return writer, record
