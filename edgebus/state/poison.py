"""Poison records in a state log: what a state host refuses to fold or to run.

A state-log record that fails on its own goes to the dead-letter topic of the log's home
region (``edgebus.<home>.dlq``, stage ``state``; sent by that region's hosts, counted by
every host) with the reason, and the host goes on past it (STYLE.md, 14; DESIGN.md,
invariant 8). Refused records are not folded, by any host: :func:`refusal` is pure, so
every host's fold of a log is the same.

* bytes that are no state-log record (the decoder says why; a JSON text nested so deep
  that decoding it overflows the stack is one);
* a record whose values no host could carry (:func:`refusal`): a state id longer than
  :data:`MAX_STATE_ID_BYTES` (its claims would not fit a Kafka record), an epoch or
  version beyond :data:`MAX_COUNT` (the next one would not fit an Avro long), a claim or
  renewal of a lease longer than :data:`MAX_CLAIM_LEASE_MS` (the state would stay with
  one owner, maybe one that does not exist, for ages), a request whose lease or timeout
  is negative or beyond :data:`MAX_MS`, a request value nested deeper than
  :data:`MAX_REQUEST_DEPTH` (the owner's classifier reads 100 levels) or holding text
  that is not Unicode (a lone surrogate: no UTF-8 field name, no SQLite text), an
  operation whose changes or result nest deeper than :data:`MAX_OP_DEPTH`;
* a record whose fold or whose handling by the host raises anyway (a bug, a case no
  check foresaw): dead-lettered with the error.

A request the owner fails to run (its executor raises: an ``update_fn`` returning what no
state can hold) is refused by :class:`~edgebus.state.guarded_executor.GuardedExecutor`.

Transient trouble (:func:`transient`: Kafka, a timeout, the network) is never a reason.
"""

from __future__ import annotations

import math
import time
from typing import Any

from aiokafka import ConsumerRecord
from aiokafka.errors import (
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
)

from edgebus.core.ownership import Claim, Handoff, Release, Renew
from edgebus.core.state_machine import StateLogRecord, StateOp, StateRequest
from edgebus.errors import EdgebusError
from edgebus.wire.state_log import encode_state_record, state_headers

__all__ = [
    "MAX_CLAIM_LEASE_MS",
    "MAX_COUNT",
    "MAX_MS",
    "MAX_OP_DEPTH",
    "MAX_REQUEST_DEPTH",
    "MAX_STATE_ID_BYTES",
    "STAGE",
    "json_problem",
    "letter_of",
    "refusal",
    "transient",
]

#: the ``eb-dlq-stage`` of a state host's dead letters
STAGE = "state"
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
_TOO_LARGE = (MessageSizeTooLargeError, RecordTooLargeError, RecordListTooLargeError)


def transient(error: BaseException) -> bool:
    """Whether ``error`` is infrastructure trouble that passes (retried, never a reason
    to refuse a record): Kafka (except a record too large for it), a timeout, the
    network, a retriable edgebus error."""
    if isinstance(error, _TOO_LARGE):
        return False
    if isinstance(error, KafkaError | TimeoutError | OSError):
        return True
    return isinstance(error, EdgebusError) and error.retriable


def json_problem(value: Any, max_depth: int, *, text: bool) -> str | None:
    """What is wrong with a decoded JSON ``value`` for a host, or ``None``: nesting deeper
    than ``max_depth`` containers, a number that is not finite, and with ``text`` a
    string or key that is not Unicode text (a lone surrogate). Iterative: any depth."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
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


def _count(what: str, value: int) -> str | None:
    if not 0 <= value <= MAX_COUNT:
        return f"its {what} {value} is outside 0 .. 2^53"
    return None


def refusal(state_id: str, record: StateLogRecord) -> str | None:
    """Why no host may fold ``record`` (of state ``state_id``), or ``None``. Pure."""
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
    assert isinstance(record, StateOp)
    problem = _count("epoch", record.epoch) or _count("version", record.version)
    if problem is not None:
        return problem
    for name, value in (("result", record.result), ("changes", dict(record.changes))):
        problem = json_problem(value, MAX_OP_DEPTH, text=False)
        if problem is not None:
            return f"its {name}: {problem}"
    return None


def _request_refusal(request: StateRequest) -> str | None:
    for name, ms in (("lease", request.lease_ms), ("timeout", request.timeout_ms)):
        if not 0 <= ms <= MAX_MS:
            return f"its {name} of {ms} ms is outside 0 .. 2^48 ms"
    problem = json_problem(request.value, MAX_REQUEST_DEPTH, text=True)
    if problem is not None:
        return f"its value: {problem}"
    return None


def letter_of(topic: str, partition: int, state_id: str, record: StateLogRecord
              ) -> ConsumerRecord[bytes, bytes]:
    """A dead letter's original record for a request that never was a record at this
    position (a local caller's) or whose position the host no longer knows: offset -1."""
    key = state_id.encode("utf-8", "surrogatepass")
    try:
        value: bytes | None = encode_state_record(state_id, record)
    except Exception:  # what the owner could not run may not encode either
        value = None
    return ConsumerRecord(topic, partition, -1, int(time.time() * 1000), 0, key, value, None,
                          len(key), len(value or b""), state_headers(record))
