"""State-log records on the wire: ``io.edgebus.StateLogRecord`` (``schemas/state_log.v1.avsc``)
in Avro single-object encoding, keyed by the state id, in topic ``edgebus.<home>.state.<class>``.

Records carry the header ``eb-state`` (``claim``, ``renew``, ``handoff``, ``release``,
``request`` or ``op``) so a tool can filter without decoding. JSON values (a request's
value and increment, an operation's result and changes) travel as JSON text with sorted
keys, so equal values encode to equal bytes and an integer stays an integer.
``schemas/README.md`` documents the fields.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from functools import cache
from typing import Any, cast

from edgebus.core.ownership import Claim, Handoff, Release, Renew
from edgebus.core.state_machine import (
    OPERATIONS,
    OUTCOMES,
    LockHold,
    Operation,
    Outcome,
    StateLogRecord,
    StateOp,
    StateRequest,
)
from edgebus.errors import DecodeError, InvalidInput
from edgebus.wire.schema_registry import RegisteredSchema, default_registry
from edgebus.wire.single_object import decode_single_object, encode_single_object, read_fingerprint

__all__ = [
    "H_STATE",
    "STATE_LOG_SCHEMA",
    "decode_state_record",
    "encode_state_record",
    "state_headers",
    "state_kind",
]

#: header naming the record's kind (lower case)
H_STATE = "eb-state"
#: the full name of the schema in ``schemas/state_log.v1.avsc``
STATE_LOG_SCHEMA = "io.edgebus.StateLogRecord"
_KIND: dict[type[Any], str] = {
    Claim: "CLAIM",
    Renew: "RENEW",
    Handoff: "HANDOFF",
    Release: "RELEASE",
    StateRequest: "REQUEST",
    StateOp: "OP",
}
_PARTS = tuple(kind.lower() for kind in _KIND.values())
_HEADERS = {k: [(H_STATE, v.lower().encode("ascii"))] for k, v in _KIND.items()}


@cache
def _schema() -> RegisteredSchema:
    return default_registry().latest(STATE_LOG_SCHEMA)


def _kind(record: StateLogRecord) -> str:
    try:
        return _KIND[type(record)]
    except KeyError:
        raise InvalidInput(
            f"not a state-log record: {type(record).__name__} (expected one of "
            f"{', '.join(t.__name__ for t in _KIND)})"
        ) from None


def state_kind(record: StateLogRecord) -> str:
    """The kind of ``record`` in lower case, as the ``eb-state`` header names it:
    ``claim``, ``renew``, ``handoff``, ``release``, ``request`` or ``op``."""
    return _kind(record).lower()


def state_headers(record: StateLogRecord) -> list[tuple[str, bytes]]:
    """The Kafka headers of ``record``."""
    _kind(record)
    return list(_HEADERS[type(record)])


def _json_text(value: Any, what: str) -> str:
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as e:
        raise InvalidInput(
            f"{what} must be JSON (objects with string keys, lists, strings, finite numbers, "
            f"booleans, None), got {type(value).__name__}: {e}"
        ) from e


def _optional_json_text(value: Any, what: str) -> str | None:
    return None if value is None else _json_text(value, what)


def encode_state_record(state_id: str, record: StateLogRecord) -> bytes:
    """The Avro single-object value of one record of state ``state_id``'s log.

    InvalidInput when a request or operation names another state, or carries a value
    that is not JSON (a non-finite number, a set, a dict with non-string keys...)."""
    kind = _kind(record)
    out: dict[str, Any] = {"kind": kind, "state_id": state_id}
    out.update(dict.fromkeys(_PARTS))
    if isinstance(record, StateRequest | StateOp) and record.state_id != state_id:
        raise InvalidInput(
            f"a {kind} record about state {record.state_id!r} cannot go in the log of state "
            f"{state_id!r}: pass its own state_id"
        )
    if isinstance(record, Claim | Renew):
        out[kind.lower()] = {"region": record.region, "epoch": record.epoch,
                             "lease_ms": record.lease_ms, "host": record.host}
    elif isinstance(record, Handoff):
        out["handoff"] = {"region": record.region, "epoch": record.epoch,
                          "to_region": record.to_region, "host": record.host}
    elif isinstance(record, Release):
        out["release"] = {"region": record.region, "epoch": record.epoch, "host": record.host}
    elif isinstance(record, StateRequest):
        what = f"request {record.req_id!r} of state {state_id!r}"
        out["request"] = {
            "req_id": record.req_id,
            "operation": record.operation,
            "from_region": record.from_region,
            "holder": record.holder,
            "key": record.key,
            "value_json": _optional_json_text(record.value, f"the value of {what}"),
            "increment_json": _increment_text(record.increment, what),
            "update_fn": record.update_fn,
            "lock_name": record.lock_name,
            "lease_ms": record.lease_ms,
            "timeout_ms": record.timeout_ms,
            "enable_migration": record.enable_migration,
        }
    else:
        out["op"] = _op_part(state_id, record)
    return encode_single_object(_schema(), out)


def _increment_text(increment: float, what: str) -> str:
    if isinstance(increment, bool) or not isinstance(increment, int | float):
        raise InvalidInput(
            f"the increment of {what} must be a number, got {type(increment).__name__}"
        )
    return _json_text(increment, f"the increment of {what}")


def _op_part(state_id: str, op: StateOp) -> dict[str, Any]:
    what = f"the answer to request {op.req_id!r} of state {state_id!r}"
    changes: dict[str, str] = {}
    for name, value in sorted(op.changes.items(), key=lambda item: str(item[0])):
        if not isinstance(name, str):
            raise InvalidInput(
                f"the changes of {what} must name fields with strings, got {name!r}"
            )
        changes[name] = _json_text(value, f"field {name!r} in the changes of {what}")
    return {
        "req_id": op.req_id,
        "operation": op.operation,
        "region": op.region,
        "host": op.host,
        "epoch": op.epoch,
        "lease_until_ms": op.lease_until_ms,
        "from_region": op.from_region,
        "outcome": op.outcome,
        "result_json": _optional_json_text(op.result, f"the result of {what}"),
        "version": op.version,
        "changes_json": changes,
        "removed": list(op.removed),
        "cleared": op.cleared,
        "locks": None if op.locks is None else [
            {"name": h.name, "holder": h.holder, "until_ms": h.until_ms} for h in op.locks
        ],
        "message": op.message,
        "duplicate": op.duplicate,
        "migratable": op.migratable,
    }


def decode_state_record(raw: bytes | None) -> tuple[str, StateLogRecord]:
    """Parse :func:`encode_state_record`'s bytes into ``(state_id, record)``; DecodeError
    for anything else (not single-object Avro, another schema, a kind without its part,
    JSON text that does not parse, an unknown outcome, a claim without a positive lease).

    A request's operation is kept as written even if this version does not know it, so
    the owner refuses it with an answer (``validate_request``) instead of dropping it."""
    if not raw:
        raise DecodeError(f"a state-log record has no value (expected a {STATE_LOG_SCHEMA})")
    writer = default_registry().by_fingerprint(read_fingerprint(raw))
    if writer.full_name != STATE_LOG_SCHEMA:
        raise DecodeError(
            f"the state log holds a {writer.full_name}, not a {STATE_LOG_SCHEMA}: something "
            "other than edgebus state machines wrote to it"
        )
    _, r = decode_single_object(raw, default_registry(), _schema())
    kind = r.get("kind", "?")
    state_id = r.get("state_id", "?")
    part = r.get(str(kind).lower())
    if part is None:
        raise DecodeError(
            f"state-log record of state {state_id!r} of kind {kind} lacks its "
            f"{str(kind).lower()} part"
        )
    try:
        return state_id, _record(state_id, kind, part)
    except (KeyError, TypeError, ValueError) as e:
        raise DecodeError(
            f"state-log record of state {state_id!r} of kind {kind} is malformed: "
            f"{type(e).__name__}: {e}"
        ) from e


def _record(state_id: str, kind: str, p: Mapping[str, Any]) -> StateLogRecord:
    if kind == "CLAIM":
        if p["lease_ms"] <= 0:
            raise ValueError(f"a claim's lease must be positive, got {p['lease_ms']} ms")
        return Claim(p["region"], p["epoch"], p["lease_ms"], p["host"])
    if kind == "RENEW":
        return Renew(p["region"], p["epoch"], p["lease_ms"], p["host"])
    if kind == "HANDOFF":
        return Handoff(p["region"], p["epoch"], p["to_region"], p["host"])
    if kind == "RELEASE":
        return Release(p["region"], p["epoch"], p["host"])
    if kind == "REQUEST":
        increment = _parse_json(p["increment_json"], "increment_json")
        if isinstance(increment, bool) or not isinstance(increment, int | float):
            raise ValueError(f"increment_json must be a number, got {p['increment_json']!r}")
        return StateRequest(
            state_id=state_id,
            operation=cast(Operation, p["operation"]),
            value=_parse_optional_json(p["value_json"], "value_json"),
            increment=increment,
            **_as_written(p, "req_id", "from_region", "holder", "key", "update_fn", "lock_name",
                          "lease_ms", "timeout_ms", "enable_migration"),
        )
    if kind != "OP":  # the schema's enum holds no other symbol
        raise ValueError(f"unknown kind {kind!r}")
    if p["operation"] not in OPERATIONS:
        raise ValueError(f"unknown operation {p['operation']!r} (known: {', '.join(OPERATIONS)})")
    if p["outcome"] not in OUTCOMES:
        raise ValueError(f"unknown outcome {p['outcome']!r} (known: {', '.join(OUTCOMES)})")
    locks = p["locks"]
    return StateOp(
        state_id=state_id,
        operation=cast(Operation, p["operation"]),
        outcome=cast(Outcome, p["outcome"]),
        result=_parse_optional_json(p["result_json"], "result_json"),
        changes={name: _parse_json(text, f"changes_json[{name!r}]")
                 for name, text in p["changes_json"].items()},
        removed=tuple(p["removed"]),
        locks=None if locks is None else tuple(
            LockHold(h["name"], h["holder"], h["until_ms"]) for h in locks
        ),
        **_as_written(p, "req_id", "region", "host", "epoch", "lease_until_ms", "from_region",
                      "version", "cleared", "message", "duplicate", "migratable"),
    )


def _as_written(part: Mapping[str, Any], *fields: str) -> dict[str, Any]:
    """The ``fields`` of a decoded part that the record holds as they are."""
    return {name: part[name] for name in fields}


def _parse_json(text: str, field: str) -> Any:
    """JSON as the encoder writes it: finite numbers only (the encoder refuses NaN and
    the infinities, so ``NaN`` or ``1e400`` in a record is no value it wrote)."""
    try:
        return json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except ValueError as e:
        raise ValueError(f"{field} is not valid JSON ({e})") from e
    except RecursionError:
        raise ValueError(f"{field} nests too deeply") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"{text[:40]} is out of a double's range")
    return number


def _parse_optional_json(text: str | None, field: str) -> Any:
    return None if text is None else _parse_json(text, field)
