"""State-log records on the wire: ``io.edgebus.StateLogRecord`` (``schemas/state_log.v1.avsc``)
in Avro single-object encoding, keyed by the state id, in topic ``edgebus.<home>.state.<class>``.

Records carry the header ``eb-state`` (``claim``, ``renew``, ``handoff``, ``release``,
``request`` or ``op``) so a tool can filter without decoding. JSON values (a request's
value and increment, an operation's result and changes) travel as JSON text with sorted
keys, so equal values encode to equal bytes and an integer stays an integer.
``schemas/README.md`` documents the fields.

Records no state host may fold (:func:`record_refusal`: values no host could carry, such
as an endless lease, a count past 2^53 or JSON nested too deep) are refused by both
sides: :func:`decode_state_record` raises DecodeError, so every reader (the hosts, the
CLI's fold, a client waiting for its answer) folds a log the same, and
:func:`encode_state_record` raises InvalidInput, so nothing edgebus writes is refused
when read.
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
    "MAX_CLAIM_LEASE_MS",
    "MAX_COUNT",
    "MAX_MS",
    "MAX_OP_DEPTH",
    "MAX_REQUEST_DEPTH",
    "MAX_STATE_ID_BYTES",
    "STATE_LOG_SCHEMA",
    "decode_state_record",
    "encode_state_record",
    "json_problem",
    "record_refusal",
    "state_headers",
    "state_kind",
]

#: header naming the record's kind (lower case)
H_STATE = "eb-state"
#: the full name of the schema in ``schemas/state_log.v1.avsc``
STATE_LOG_SCHEMA = "io.edgebus.StateLogRecord"
#: a state id's UTF-8 length at most (a claim carries it twice: key and body)
MAX_STATE_ID_BYTES = 65_536
#: epochs and versions at most (2^53: exact as a JSON number anywhere, and +1 fits)
MAX_COUNT = 2**53
#: milliseconds a request's lock lease or timeout may span (2^48 ms: about 8,900 years;
#: added to a clock, still far inside an Avro long)
MAX_MS = 2**48
#: a claim's or renewal's lease at most: one day (hosts claim for at most an hour)
MAX_CLAIM_LEASE_MS = 86_400_000
#: how deep a request's value may nest (the owner classifies its changes, 100 levels,
#: with the field and an append's list around the value)
MAX_REQUEST_DEPTH = 96
#: how deep an operation's changes and result may nest (owners write at most 101
#: levels; folding copies them recursively)
MAX_OP_DEPTH = 128
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
    except RecursionError:
        raise InvalidInput(f"{what} nests too deeply to be written as JSON") from None


def _optional_json_text(value: Any, what: str) -> str | None:
    return None if value is None else _json_text(value, what)


def encode_state_record(state_id: str, record: StateLogRecord) -> bytes:
    """The Avro single-object value of one record of state ``state_id``'s log.

    InvalidInput when a request or operation names another state, carries a value that
    is not JSON (a non-finite number, a set, a dict with non-string keys...), is a record
    no host may fold (:func:`record_refusal`) or holds what Avro cannot write (text that
    is not Unicode, a number beyond a long)."""
    kind = _kind(record)
    out: dict[str, Any] = {"kind": kind, "state_id": state_id}
    out.update(dict.fromkeys(_PARTS))
    if isinstance(record, StateRequest | StateOp) and record.state_id != state_id:
        raise InvalidInput(
            f"a {kind} record about state {_named(record.state_id)} cannot go in the log of "
            f"state {_named(state_id)}: pass its own state_id"
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
        what = f"request {record.req_id!r} of state {_named(state_id)}"
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
    try:
        problem = record_refusal(state_id, record)
        if problem is None:
            return encode_single_object(_schema(), out)
    except (ValueError, TypeError, OverflowError) as e:  # UnicodeEncodeError included
        raise InvalidInput(f"the {kind.lower()} record of state {_named(state_id)} cannot be "
                           f"written: {type(e).__name__}: {str(e)[:300]}") from None
    raise InvalidInput(f"no state host would take this {kind.lower()} record of state "
                       f"{_named(state_id)}: {problem}")


def _increment_text(increment: float, what: str) -> str:
    if isinstance(increment, bool) or not isinstance(increment, int | float):
        raise InvalidInput(
            f"the increment of {what} must be a number, got {type(increment).__name__}"
        )
    return _json_text(increment, f"the increment of {what}")


def _op_part(state_id: str, op: StateOp) -> dict[str, Any]:
    what = f"the answer to request {op.req_id!r} of state {_named(state_id)}"
    problem = _answer_problem(op)
    if problem is not None:
        raise InvalidInput(f"{what} is no answer an owner writes: {problem}")
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
    JSON text that does not parse, an unknown outcome, a claim without a positive lease)
    and for a record no host may fold (:func:`record_refusal` says why).

    A request's operation is kept as written even if this version does not know it, so
    the owner refuses it with an answer (``validate_request``) instead of dropping it;
    that refusal decodes too (an answer of an unknown operation must be a refusal that
    changes nothing), so every reader sees the request answered."""
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
            f"state-log record of state {_named(state_id)} of kind {kind} lacks its "
            f"{str(kind).lower()} part"
        )
    try:
        record = _record(state_id, kind, part)
    except (KeyError, TypeError, ValueError) as e:
        raise DecodeError(
            f"state-log record of state {_named(state_id)} of kind {kind} is malformed: "
            f"{type(e).__name__}: {e}"
        ) from e
    problem = record_refusal(state_id, record)
    if problem is not None:
        raise DecodeError(f"a state-log record no host may fold (state {_named(state_id)}, "
                          f"kind {kind}): {problem}")
    return state_id, record


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
    locks = p["locks"]
    op = StateOp(
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
    problem = _answer_problem(op)
    if problem is not None:
        raise ValueError(problem)
    return op


def _answer_problem(op: StateOp) -> str | None:
    """Why ``op`` is no answer an owner writes, or ``None``: its outcome is unknown, or
    its operation is, and it is not a refusal that changes nothing (what an owner
    answers to a request of an operation it does not know)."""
    if op.outcome not in OUTCOMES:
        return f"unknown outcome {op.outcome!r} (known: {', '.join(OUTCOMES)})"
    if op.operation in OPERATIONS:
        return None
    if op.outcome != "refused":
        return (f"unknown operation {op.operation!r} (known: {', '.join(OPERATIONS)}) "
                f"in an answer that is no refusal (outcome {op.outcome})")
    if op.changes or op.removed or op.cleared or op.locks is not None:
        return (f"a refusal of the unknown operation {op.operation!r} changes the state (a "
                "refusal leaves it as it is)")
    return None


# -- records no host may fold ------------------------------------------------------------


def record_refusal(state_id: str, record: StateLogRecord) -> str | None:
    """Why no state host may fold ``record`` (of state ``state_id``), or ``None``. Pure.

    Values no host could carry: a state id longer than :data:`MAX_STATE_ID_BYTES`, an
    epoch or version outside 0 .. :data:`MAX_COUNT`, a claim or renewal of a lease
    outside 0 .. :data:`MAX_CLAIM_LEASE_MS`, a request whose lease or timeout is outside
    0 .. :data:`MAX_MS`, a request value nested deeper than :data:`MAX_REQUEST_DEPTH` or
    holding text that is not Unicode (a lone surrogate), an operation whose changes or
    result nest deeper than :data:`MAX_OP_DEPTH` (:func:`json_problem`)."""
    if len(state_id.encode("utf-8", "surrogatepass")) > MAX_STATE_ID_BYTES:
        return f"its state id is longer than {MAX_STATE_ID_BYTES} bytes"
    if isinstance(record, Claim | Renew):
        if not 0 <= record.lease_ms <= MAX_CLAIM_LEASE_MS:
            return (f"its lease of {record.lease_ms} ms is outside 0 .. "
                    f"{MAX_CLAIM_LEASE_MS} ms")
        return _count("epoch", record.epoch)
    if isinstance(record, Handoff | Release):
        return _count("epoch", record.epoch)
    if isinstance(record, StateRequest):
        return _request_refusal(record)
    problem = _count("epoch", record.epoch) or _count("version", record.version)
    if problem is not None:
        return problem
    for name, value in (("result", record.result), ("changes", dict(record.changes))):
        problem = json_problem(value, MAX_OP_DEPTH, text=False)
        if problem is not None:
            return f"its {name}: {problem}"
    return None


def _count(what: str, value: int) -> str | None:
    if not 0 <= value <= MAX_COUNT:
        return f"its {what} {value} is outside 0 .. 2^53"
    return None


def _request_refusal(request: StateRequest) -> str | None:
    for name, ms in (("lease", request.lease_ms), ("timeout", request.timeout_ms)):
        if not 0 <= ms <= MAX_MS:
            return f"its {name} of {ms} ms is outside 0 .. 2^48 ms"
    problem = json_problem(request.value, MAX_REQUEST_DEPTH, text=True)
    if problem is not None:
        return f"its value: {problem}"
    return None


def json_problem(value: Any, max_depth: int, *, text: bool) -> str | None:
    """What is wrong with a JSON ``value`` for a host, or ``None``: nesting deeper than
    ``max_depth`` containers (dicts, lists, tuples), a number that is not finite, and
    with ``text`` a string or key that is not Unicode text (a lone surrogate).
    Iterative: any depth."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list | tuple):
            if depth >= max_depth:
                return f"it nests deeper than {max_depth} levels"
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
            if text and isinstance(item, dict):
                stack.extend((key, depth) for key in item)
        elif isinstance(item, float) and not math.isfinite(item):
            return f"it holds the number {item}, which JSON cannot carry"
        elif text and isinstance(item, str) and not _unicode(item):
            return "it holds text that is not Unicode (a lone surrogate)"
    return None


def _unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _named(state_id: str) -> str:
    """``state_id`` for a message: its repr, cut after 100 characters."""
    if len(state_id) <= 100:
        return repr(state_id)
    return f"{state_id[:100]!r}... ({len(state_id)} characters)"


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
