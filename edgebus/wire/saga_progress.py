"""Saga progress records on the wire: ``io.edgebus.SagaProgress`` (single-object Avro).

The pure saga state machine (:mod:`edgebus.core.saga`) decides progress records; the
saga runner appends each one to the topic ``edgebus.<log region>.sagas`` (key: the saga id) before
it performs the action the record leads to. This module turns one record, plus what
the log keeps beside it (the writer's clock and id; for :class:`SagaBegun` the saga's
name and input), into bytes and back.

On the wire a step's ``action`` and ``compensation`` are the *names* actions are
registered under, so any process that registers the same names can resume the saga.
Step results and the saga's input travel as JSON text: they must be JSON-able.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from typing import Any

from edgebus.core.saga import (
    CompensationAttemptFailed,
    CompensationCompleted,
    OperatorRetried,
    ProgressRecord,
    Saga,
    SagaBegun,
    Step,
    StepAborted,
    StepCompleted,
    StepRestarted,
)
from edgebus.errors import DecodeError, InvalidInput
from edgebus.wire.schema_registry import RegisteredSchema, default_registry
from edgebus.wire.single_object import decode_single_object, encode_single_object

__all__ = [
    "SAGA_PROGRESS_SCHEMA",
    "ProgressEntry",
    "decode_progress",
    "encode_progress",
    "to_json_text",
]

#: the full name of the schema in ``schemas/saga_progress.v1.avsc``
SAGA_PROGRESS_SCHEMA = "io.edgebus.SagaProgress"

_TYPES: dict[type[Any], str] = {
    SagaBegun: "SAGA_BEGUN",
    StepCompleted: "STEP_COMPLETED",
    StepRestarted: "STEP_RESTARTED",
    StepAborted: "STEP_ABORTED",
    CompensationCompleted: "COMPENSATION_COMPLETED",
    CompensationAttemptFailed: "COMPENSATION_ATTEMPT_FAILED",
    OperatorRetried: "OPERATOR_RETRIED",
}


@dataclass(frozen=True, slots=True)
class ProgressEntry:
    """One record of a saga's log: the pure ``record`` and what the log keeps beside it.

    ``time_ms``: the writer's wall clock (ms since the epoch), for people reading the
    log. ``writer_id``: which runner wrote it. ``name`` and ``context``: the saga's
    name and its JSON-able input; :class:`SagaBegun` only (empty / ``None`` otherwise).
    """

    record: ProgressRecord
    time_ms: int
    writer_id: str
    name: str = ""
    context: Any = None

    @property
    def saga_id(self) -> str:
        """The saga the record is about."""
        return self.record.saga_id

    @property
    def type(self) -> str:
        """The record type as the schema names it (``SAGA_BEGUN``, ``STEP_COMPLETED``...)."""
        return _TYPES[type(self.record)]


def to_json_text(value: Any, what: str) -> str:
    """``value`` as compact JSON; InvalidInput naming ``what`` when it is not JSON-able."""
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise InvalidInput(
            f"{what} must be JSON-able (dicts, lists, strings, numbers, booleans, None), "
            f"got {type(value).__name__}: {e}"
        ) from e


@cache
def _schema() -> RegisteredSchema:
    return default_registry().latest(SAGA_PROGRESS_SCHEMA)


def encode_progress(entry: ProgressEntry) -> bytes:
    """The Avro single-object value of one progress record.

    InvalidInput when the record cannot go on the wire: an action or compensation that
    is not a name (a string), a result or input that is not JSON-able, a name or input
    given with a record other than :class:`SagaBegun`.
    """
    record = entry.record
    kind = _TYPES.get(type(record))
    if kind is None:
        raise InvalidInput(
            f"{type(record).__name__} is not a saga progress record: pass one of "
            f"{', '.join(t.__name__ for t in _TYPES)}"
        )
    if not isinstance(record, SagaBegun) and (entry.name or entry.context is not None):
        raise InvalidInput(
            f"saga {record.saga_id!r}: only a SagaBegun record carries the saga's name "
            f"and input, not a {type(record).__name__}"
        )
    value: dict[str, Any] = {
        "saga_id": record.saga_id,
        "type": kind,
        "step_index": None,
        "run": None,
        "attempt": None,
        "error": None,
        "result_json": None,
        "definition": None,
        "time_ms": entry.time_ms,
        "writer_id": entry.writer_id,
    }
    if isinstance(record, SagaBegun):
        value["definition"] = {
            "name": entry.name,
            "steps": [_step_value(record.saga_id, i, s) for i, s in enumerate(record.saga.steps)],
            "context_json": to_json_text(entry.context, f"the input of saga {record.saga_id!r}"),
            "max_attempts": record.max_attempts,
        }
    else:
        value["step_index"] = record.index
    if isinstance(record, StepCompleted):
        value["result_json"] = to_json_text(
            record.result, f"the result of step {record.index} of saga {record.saga_id!r}"
        )
    elif isinstance(record, StepRestarted):
        value["run"] = record.run
    elif isinstance(record, StepAborted):
        value["error"] = record.error
    elif isinstance(record, CompensationAttemptFailed):
        value["attempt"] = record.attempt
        value["error"] = record.error
    return encode_single_object(_schema(), value)


def _step_value(saga_id: str, index: int, step: Step) -> dict[str, Any]:
    for role, name in (("action", step.action), ("compensation", step.compensation)):
        if name is not None and not isinstance(name, str):
            raise InvalidInput(
                f"saga {saga_id!r}, step {index} ({step.name}): the {role} must be the name "
                f"an action is registered under (a string), got {type(name).__name__}"
            )
    return {"name": step.name, "action": step.action, "compensation": step.compensation}


def decode_progress(value: bytes | None) -> ProgressEntry:
    """Parse :func:`encode_progress`'s bytes; DecodeError for anything else."""
    if not value:
        raise DecodeError("a saga progress record has no value (expected io.edgebus.SagaProgress)")
    writer, raw = decode_single_object(value, default_registry())
    if writer.full_name != SAGA_PROGRESS_SCHEMA:
        raise DecodeError(
            f"a record of the saga progress topic holds a {writer.full_name}, not a "
            f"{SAGA_PROGRESS_SCHEMA}: something other than a saga runner wrote to it"
        )
    try:
        return _entry(raw)
    except (KeyError, TypeError, ValueError) as e:
        saga = raw.get("saga_id", "?")
        raise DecodeError(
            f"saga progress record of saga {saga!r} ({raw.get('type', '?')}) is malformed: "
            f"{type(e).__name__}: {e}"
        ) from e


def _entry(raw: dict[str, Any]) -> ProgressEntry:
    sid: str = raw["saga_id"]
    kind: str = raw["type"]
    time_ms: int = raw["time_ms"]
    writer: str = raw["writer_id"]
    if kind == "SAGA_BEGUN":
        definition = _required(raw, "definition")
        steps = tuple(Step(s["name"], s["action"], s["compensation"]) for s in definition["steps"])
        context = _json(definition["context_json"], "context_json", sid)
        if definition["max_attempts"] < 1:
            raise ValueError(f"max_attempts is {definition['max_attempts']}, must be at least 1")
        begun = SagaBegun(Saga(sid, steps), definition["max_attempts"])
        return ProgressEntry(begun, time_ms, writer, definition["name"], context)
    index: int = _required(raw, "step_index")
    record: ProgressRecord
    if kind == "STEP_COMPLETED":
        result = _json(_required(raw, "result_json"), "result_json", sid)
        record = StepCompleted(sid, index, result)
    elif kind == "STEP_RESTARTED":
        record = StepRestarted(sid, index, _required(raw, "run"))
    elif kind == "STEP_ABORTED":
        record = StepAborted(sid, index, _required(raw, "error"))
    elif kind == "COMPENSATION_COMPLETED":
        record = CompensationCompleted(sid, index)
    elif kind == "COMPENSATION_ATTEMPT_FAILED":
        record = CompensationAttemptFailed(
            sid, index, _required(raw, "attempt"), _required(raw, "error")
        )
    elif kind == "OPERATOR_RETRIED":
        record = OperatorRetried(sid, index)
    else:  # the schema's enum holds no other symbol
        raise ValueError(f"unknown record type {kind!r}")
    return ProgressEntry(record, time_ms, writer)


def _required(raw: dict[str, Any], field: str) -> Any:
    value = raw.get(field)
    if value is None:
        raise ValueError(f"field {field} is null, but a {raw['type']} record needs it")
    return value


def _json(text: str, field: str, saga_id: str) -> Any:
    """JSON as :func:`to_json_text` writes it: finite numbers only."""
    try:
        return json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except (ValueError, RecursionError) as e:
        reason = "it nests too deeply" if isinstance(e, RecursionError) else str(e)
        raise DecodeError(
            f"saga progress record of saga {saga_id!r}: {field} is not valid JSON ({reason})"
        ) from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"{text[:40]} is out of a double's range")
    return number
