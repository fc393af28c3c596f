"""The schemas in ``schemas/``, found by their CRC-64-AVRO fingerprint.

A record's value starts with the fingerprint of its writer schema; the registry maps it
back to that schema and pairs it with the newest schema of the same name as the reader,
so Avro's resolution rules make old and new records readable by every version.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from fastavro import parse_schema
from fastavro.schema import to_parsing_canonical_form

from edgebus.errors import DecodeError
from edgebus.wire.fingerprint import crc64_avro

__all__ = ["RegisteredSchema", "SchemaRegistry", "default_registry", "schemas_dir"]


@dataclass(frozen=True)
class RegisteredSchema:
    """One .avsc file: its name, version, fingerprint and parsed form."""

    path: Path
    full_name: str
    version: int
    fingerprint: int
    parsed: Any

    @property
    def fingerprint_bytes(self) -> bytes:
        """The fingerprint as single-object encoding writes it (8 bytes, little-endian)."""
        return self.fingerprint.to_bytes(8, "little")


class SchemaRegistry:
    """Every schema of a directory of ``<name>.v<N>.avsc`` files."""

    def __init__(self, directory: Path, *extra: Path) -> None:
        self.directory = directory
        self.directories = (directory, *extra)
        self._by_fp: dict[int, RegisteredSchema] = {}
        self._latest: dict[str, RegisteredSchema] = {}
        paths = [p for d in self.directories for p in sorted(d.glob("*.avsc"))]
        for path in paths:
            raw = json.loads(path.read_text(encoding="utf-8"))
            parsed = parse_schema(raw)
            canonical = to_parsing_canonical_form(raw)
            _, _, version = path.stem.rpartition(".v")
            entry = RegisteredSchema(
                path=path,
                full_name=f"{raw.get('namespace', '')}.{raw['name']}".lstrip("."),
                version=int(version) if version.isdigit() else 1,
                fingerprint=crc64_avro(canonical.encode("utf-8")),
                parsed=parsed,
            )
            self._by_fp[entry.fingerprint] = entry
            current = self._latest.get(entry.full_name)
            if current is None or entry.version > current.version:
                self._latest[entry.full_name] = entry

    def by_fingerprint(self, fingerprint: int) -> RegisteredSchema:
        """The writer schema of a record, or DecodeError naming the unknown fingerprint."""
        try:
            return self._by_fp[fingerprint]
        except KeyError:
            raise DecodeError(
                f"Unknown writer schema fingerprint {fingerprint:016x}: the record was "
                f"written with a schema that {', '.join(map(str, self.directories))} does not "
                "hold. Upgrade edgebus, or put the writer's .avsc file in a directory listed "
                "in EDGEBUS_SCHEMA_PATH and restart."
            ) from None

    def latest(self, full_name: str) -> RegisteredSchema:
        """The newest version of a schema by full name (e.g. ``io.edgebus.Event``)."""
        return self._latest[full_name]


def schemas_dir(package: Path | None = None) -> Path:
    """The copy shipped inside the wheel (``edgebus/_schemas``), else ``schemas/`` of
    the source checkout (an editable install). The wheel's copy comes first: installed,
    ``schemas/`` beside the package is site-packages' and may be another package's.
    ``package``: the ``edgebus`` package directory (default: this one's)."""
    here = package if package is not None else Path(__file__).resolve().parent.parent
    for candidate in (here / "_schemas", here.parent / "schemas"):
        if candidate.is_dir() and any(candidate.glob("*.avsc")):
            return candidate
    raise DecodeError("edgebus's Avro schemas are missing: reinstall edgebus")


@cache
def default_registry() -> SchemaRegistry:
    """The schemas that ship with edgebus plus those in ``$EDGEBUS_SCHEMA_PATH`` (a
    ``os.pathsep``-separated list of directories of ``.avsc`` files), loaded once."""
    extra = [Path(p) for p in os.environ.get("EDGEBUS_SCHEMA_PATH", "").split(os.pathsep) if p]
    return SchemaRegistry(schemas_dir(), *(d for d in extra if d.is_dir()))
