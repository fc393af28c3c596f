"""The event envelope: what one write to edgebus is, independent of the wire.

An envelope is immutable. The producer builds it (id, HLC timestamp, dependencies,
placement, classification), the wire codec turns it into an Avro record plus Kafka
headers, and consumers turn records back into envelopes.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from edgebus.core.hlc import HLCTimestamp
from edgebus.core.speedups import NATIVE
from edgebus.core.vector_clock import VectorClock

__all__ = ["CURRENT_SCHEMA_VERSION", "EventEnvelope", "Operation", "new_event_id"]

#: version of ``schemas/event.v<N>.avsc`` that this code writes
CURRENT_SCHEMA_VERSION = 2
MAX_KEY_BYTES = 4096


class Operation(StrEnum):
    """What a write does to the value at its key."""

    SET = "set"
    DELETE = "delete"
    INCREMENT = "increment"
    APPEND = "append"
    MERGE = "merge"


_pool = b""
_pool_at = 0
#: ids made 256 at a time by the optional C module (edgebus._speedups)
_ids: list[str] = []

_uuid4_texts: Callable[[bytes], list[str]] | None = getattr(NATIVE, "uuid4_texts", None)


def _forget_pool() -> None:
    # a forked child must not reuse the parent's random bytes (duplicate ids)
    global _pool, _pool_at
    _pool, _pool_at = b"", 0
    _ids.clear()


os.register_at_fork(after_in_child=_forget_pool)


def new_event_id() -> str:
    """A fresh random event id (UUID version 4, canonical lower-case text form).

    Same result as ``str(uuid.uuid4())`` (122 random bits from os.urandom, version and
    variant bits set), at a fraction of its cost: it runs once per write, so the random
    bytes are read 4 KiB at a time (and forgotten in a forked child). With the C
    module, the 256 ids of each read are made in one call.
    """
    if _uuid4_texts is not None:
        try:
            return _ids.pop()
        except IndexError:
            _ids.extend(_uuid4_texts(os.urandom(16 * 256)))
            return _ids.pop()
    return python_event_id()


def python_event_id() -> str:
    """:func:`new_event_id` in pure Python (used without the C module)."""
    global _pool, _pool_at
    if _pool_at >= len(_pool):
        _pool, _pool_at = os.urandom(16 * 256), 0
    raw = bytearray(_pool[_pool_at : _pool_at + 16])
    _pool_at += 16
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class EventEnvelope(BaseModel):
    """One event: a write of ``payload`` to ``key`` with its causal and placement context."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True, extra="forbid")

    event_id: str
    key: str = Field(min_length=1)
    operation: Operation = Operation.SET
    payload: Any = None
    origin_region: str = Field(min_length=1)
    placement: tuple[str, ...]
    classification: tuple[str, ...]
    hlc: HLCTimestamp
    dependencies: VectorClock = Field(default_factory=VectorClock.empty)
    schema_version: int = CURRENT_SCHEMA_VERSION
    writer: str | None = None

    @field_validator("event_id")
    @classmethod
    def _uuid(cls, value: str) -> str:
        try:
            return str(uuid.UUID(value))
        except ValueError:
            raise ValueError(f"event_id {value!r} is not a UUID") from None

    @field_validator("key")
    @classmethod
    def _key_size(cls, value: str) -> str:
        if len(value.encode("utf-8")) > MAX_KEY_BYTES:
            raise ValueError(f"key is longer than {MAX_KEY_BYTES} bytes of UTF-8")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> EventEnvelope:
        if not self.placement or self.placement[0] != self.origin_region:
            raise ValueError(
                f"placement {list(self.placement)} must start with the origin region "
                f"{self.origin_region!r}"
            )
        if len(set(self.placement)) != len(self.placement):
            raise ValueError(f"placement {list(self.placement)} repeats a region")
        if self.operation is Operation.DELETE and self.payload is not None:
            raise ValueError("a delete carries no payload")
        if self.operation is Operation.INCREMENT and (
            isinstance(self.payload, bool) or not isinstance(self.payload, int | float)
        ):
            raise ValueError(f"an increment's payload must be a number, got {self.payload!r}")
        return self
