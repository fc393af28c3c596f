"""Avro single-object encoding: ``C3 01`` + 8-byte CRC-64-AVRO fingerprint + body.

The fingerprint (little-endian) identifies the writer schema, so a reader with only
the ``.avsc`` files can decode any record, old or new.

Decoding trusts no byte of the body. A reader compiled once per writer schema walks
it and checks every varint (at most 10 bytes, a value that fits in 64 bits), length,
array or map block count and block size against the bytes that remain, every enum
symbol and union branch index against the schema (fastavro takes an index of -1 as
the last symbol or branch), every boolean byte (0 or 1) and every string's UTF-8,
and that the record ends exactly where the value does. So any input is a record or a
:class:`~edgebus.errors.DecodeError` saying what is wrong, in time linear in its size.
When the writer schema is the reader schema (every current record) that walk is the
decoding, and gives what fastavro's ``schemaless_reader`` gives for the same bytes
(``tests/unit/test_decoders_fuzz.py`` compares them); a record of an older schema
version, or of a schema with logical types, is checked by the walk and then resolved
by fastavro.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from io import BytesIO
from typing import Any, Final

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
    if type(data) is not bytes:
        data = bytes(data)
    compiled = _compiled(writer)
    try:
        record, end = compiled.read(data, _HEADER_LEN)
        if end != len(data):
            raise _Corrupt(f"{len(data) - end} bytes after the record (it ends at byte {end})")
    except _Corrupt as e:
        raise _corrupt(writer, str(e)) from None
    except IndexError:
        raise _corrupt(writer, f"the record is cut short (the value has {len(data)} bytes)") \
            from None
    except UnicodeDecodeError as e:
        raise _corrupt(writer, f"a string is not UTF-8 ({e.reason})") from None
    except RecursionError:
        raise _corrupt(writer, "the record nests too deeply") from None
    if (reader is not None and reader is not writer) or compiled.logical:
        # the body is well formed: fastavro resolves it into the reader schema (or
        # applies the logical types)
        try:
            record = schemaless_reader(
                BytesIO(data[_HEADER_LEN:]), writer.parsed, (reader or writer).parsed
            )
        except Exception as e:  # fastavro raises many types when resolution fails
            raise _corrupt(writer, f"{type(e).__name__}: {e}") from e
    if not isinstance(record, dict):
        raise DecodeError(f"Avro body for {writer.full_name} is not a record")
    return writer, record


def _corrupt(writer: RegisteredSchema, reason: str) -> DecodeError:
    return DecodeError(f"Corrupt Avro body for schema {writer.full_name} v{writer.version}: "
                       f"{reason}")


# ------------------------------------------------------------------ the checking reader

#: reads the value at a position of the data: ``(value, position after it)``; raises
#: _Corrupt, IndexError (cut short) or UnicodeDecodeError
_Read = Callable[[bytes, int], tuple[Any, int]]


class _Corrupt(Exception):
    pass


class _Compiled:
    __slots__ = ("logical", "parsed", "read")

    def __init__(self, parsed: Any, read: _Read, logical: bool) -> None:
        self.parsed = parsed
        self.read = read
        self.logical = logical


#: compiled readers by the id of the parsed writer schema (which each entry keeps alive)
_COMPILED: dict[int, _Compiled] = {}
#: a process has one registry; tests make more (and each parses its schemas anew)
_COMPILED_LIMIT = 256


def _compiled(schema: RegisteredSchema) -> _Compiled:
    found = _COMPILED.get(id(schema.parsed))
    if found is None or found.parsed is not schema.parsed:
        compiler = _Compiler(schema.parsed)
        read = compiler.compile(schema.parsed)
        if len(_COMPILED) >= _COMPILED_LIMIT:
            _COMPILED.clear()
        found = _COMPILED[id(schema.parsed)] = _Compiled(schema.parsed, read, compiler.logical)
    return found


def _long(data: bytes, pos: int) -> tuple[int, int]:
    """A zig-zag varint at ``pos``: at most 10 bytes, a value in -2**63 .. 2**63-1."""
    b = data[pos]
    if b < 0x80:
        return (b >> 1) ^ -(b & 1), pos + 1
    start = pos
    pos += 1
    n = b & 0x7F
    shift = 7
    while b & 0x80:
        if shift > 63:
            raise _Corrupt(f"varint at byte {start} is longer than 10 bytes")
        b = data[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        shift += 7
    if n >> 64:
        raise _Corrupt(f"varint at byte {start} does not fit in 64 bits")
    return (n >> 1) ^ -(n & 1), pos


def _null(data: bytes, pos: int) -> tuple[None, int]:
    return None, pos


def _boolean(data: bytes, pos: int) -> tuple[bool, int]:
    b = data[pos]
    if b > 1:
        raise _Corrupt(f"boolean byte {b} at byte {pos} is neither 0 nor 1")
    return b == 1, pos + 1


def _length(data: bytes, pos: int, what: str) -> tuple[int, int]:
    start = pos
    length, pos = _long(data, pos)
    if length < 0:
        raise _Corrupt(f"{what} length {length} at byte {start} is negative")
    if length > len(data) - pos:
        raise _Corrupt(f"{what} of {length} bytes at byte {start} runs past the end "
                       f"({len(data) - pos} bytes left)")
    return length, pos + length


def _bytes(data: bytes, pos: int) -> tuple[bytes, int]:
    b = data[pos]
    if b < 0x80 and not b & 1:  # a short length (the usual case)
        end = pos + 1 + (b >> 1)
        if end <= len(data):
            return data[pos + 1 : end], end
    length, end = _length(data, pos, "bytes")
    return data[end - length : end], end


def _string(data: bytes, pos: int) -> tuple[str, int]:
    b = data[pos]
    if b < 0x80 and not b & 1:  # a short length (the usual case)
        end = pos + 1 + (b >> 1)
        if end <= len(data):
            return data[pos + 1 : end].decode(), end
    length, end = _length(data, pos, "string")
    return data[end - length : end].decode(), end


def _fixed_reader(size: int, kind: str, unpack: Callable[[bytes, int], tuple[Any, ...]] | None
                  ) -> _Read:
    def read(data: bytes, pos: int) -> tuple[Any, int]:
        end = pos + size
        if end > len(data):
            raise _Corrupt(f"{kind} of {size} bytes at byte {pos} runs past the end")
        if unpack is None:
            return data[pos:end], end
        return unpack(data, pos)[0], end

    return read


def _block_count(data: bytes, pos: int, what: str) -> tuple[int, int]:
    """An array or map block's item count (0 ends it), its block size skipped."""
    start = pos
    count, pos = _long(data, pos)
    if count < 0:
        count = -count
        size, pos = _long(data, pos)
        if size < 0 or size > len(data) - pos:
            raise _Corrupt(f"{what} block size {size} at byte {start} is negative or runs past "
                           f"the end ({len(data) - pos} bytes left)")
    if count > len(data) - pos:
        # every item of every schema edgebus ships takes at least one byte (and an
        # array's items, all blocks together, are never more than the value's bytes)
        raise _Corrupt(f"{what} block count {count} at byte {start} is larger than the "
                       f"{len(data) - pos} bytes left")
    return count, pos


_PRIMITIVES: Final[dict[str, _Read]] = {
    "null": _null,
    "boolean": _boolean,
    "int": _long,  # as fastavro: any long (each decoder checks the ranges it needs)
    "long": _long,
    "float": _fixed_reader(4, "float", struct.Struct("<f").unpack_from),
    "double": _fixed_reader(8, "double", struct.Struct("<d").unpack_from),
    "bytes": _bytes,
    "string": _string,
}


class _Compiler:
    """Turns a schema parsed by fastavro into a :data:`_Read` function."""

    def __init__(self, top: Any) -> None:
        named = top.get("__named_schemas", {}) if isinstance(top, dict) else {}
        self.named: dict[str, Any] = dict(named)
        self.compiled: dict[str, _Read] = {}
        self.logical = False

    def compile(self, schema: Any) -> _Read:
        if isinstance(schema, str):
            primitive = _PRIMITIVES.get(schema)
            if primitive is not None:
                return primitive
            return self._named(schema)
        if isinstance(schema, list):
            return self._union([self.compile(branch) for branch in schema])
        kind = schema["type"]
        if "logicalType" in schema:
            self.logical = True
        if kind in ("record", "error"):
            return self._record(schema)
        if kind == "enum":
            read = self._enum(tuple(schema["symbols"]), schema["name"])
        elif kind == "fixed":
            read = _fixed_reader(int(schema["size"]), f"fixed {schema['name']}", None)
        elif kind == "array":
            return self._array(self.compile(schema["items"]))
        elif kind == "map":
            return self._map(self.compile(schema["values"]))
        else:  # a primitive with attributes, or a nested type
            return self.compile(kind)
        self.compiled[schema["name"]] = read
        return read

    def _named(self, name: str) -> _Read:
        found = self.compiled.get(name)
        if found is not None:
            return found
        if name in self.named:
            return self.compile(self.named[name])
        raise DecodeError(f"Avro schema refers to an unknown type {name!r}")

    def _record(self, schema: Any) -> _Read:
        fields: list[tuple[str, _Read]] = []

        def read(data: bytes, pos: int) -> tuple[dict[str, Any], int]:
            out: dict[str, Any] = {}
            for name, read_field in fields:
                out[name], pos = read_field(data, pos)
            return out, pos

        self.compiled[schema["name"]] = read  # before the fields: a record may recur
        fields.extend((f["name"], self.compile(f["type"])) for f in schema["fields"])
        return read

    @staticmethod
    def _enum(symbols: tuple[str, ...], name: str) -> _Read:
        count = len(symbols)

        def read(data: bytes, pos: int) -> tuple[str, int]:
            b = data[pos]
            if b < 0x80 and not b & 1 and b >> 1 < count:  # the usual case
                return symbols[b >> 1], pos + 1
            index, end = _long(data, pos)
            if not 0 <= index < count:
                raise _Corrupt(f"enum {name} symbol index {index} at byte {pos} is out of "
                               f"range (the enum has {count} symbols)")
            return symbols[index], end

        return read

    @staticmethod
    def _union(branches: list[_Read]) -> _Read:
        count = len(branches)
        null = branches.index(_null) * 2 if _null in branches else -1

        def read(data: bytes, pos: int) -> tuple[Any, int]:
            b = data[pos]
            if b == null:  # the usual cases: null, or a branch below 64
                return None, pos + 1
            if b < 0x80 and not b & 1 and b >> 1 < count:
                return branches[b >> 1](data, pos + 1)
            index, end = _long(data, pos)
            if not 0 <= index < count:
                raise _Corrupt(f"union branch {index} at byte {pos} is out of range (the "
                               f"union has {count} branches)")
            return branches[index](data, end)

        return read

    @staticmethod
    def _array(read_item: _Read) -> _Read:
        def read(data: bytes, pos: int) -> tuple[list[Any], int]:
            items: list[Any] = []
            while True:
                count, pos = _block_count(data, pos, "array")
                if not count:
                    return items, pos
                if len(items) + count > len(data):  # (items of no bytes, in many blocks)
                    raise _Corrupt("array of more items than the value has bytes")
                for _ in range(count):
                    item, pos = read_item(data, pos)
                    items.append(item)

        return read

    @staticmethod
    def _map(read_value: _Read) -> _Read:
        def read(data: bytes, pos: int) -> tuple[dict[str, Any], int]:
            out: dict[str, Any] = {}
            while True:
                count, pos = _block_count(data, pos, "map")
                if not count:
                    return out, pos
                for _ in range(count):
                    key, pos = _string(data, pos)
                    out[key], pos = read_value(data, pos)

        return read
