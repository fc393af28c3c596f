"""Poison records in a state log: what a state host does with a record it refuses.

A state-log record that fails on its own goes to the dead-letter topic of the log's home
region (``edgebus.<home>.dlq``, stage :data:`STAGE`; sent by that region's hosts, counted
by every host) with the reason, and the host goes on past it (STYLE.md, 14; DESIGN.md,
invariant 8):

* a record that does not decode: bytes that are no state-log record, or a record no host
  may fold (values no host could carry: an endless lease, a count past 2^53, JSON nested
  too deep...). The decoder refuses both
  (:func:`~edgebus.wire.state_log.decode_state_record`, with
  :func:`~edgebus.wire.state_log.record_refusal`), so every reader of a log (the hosts,
  ``edgebus state``, a client waiting for its answer) folds it the same;
* a record whose fold or whose handling by the host raises anyway (a bug, a case no
  check foresaw): dead-lettered with the error.

A request whose answer the owner cannot write (its new values cannot be classified, its
record cannot be encoded or is too large for Kafka) is answered with a refusal and
dead-lettered by the executor (:mod:`~edgebus.state.executor`); one whose run raises
otherwise is refused by :class:`~edgebus.state.guarded_executor.GuardedExecutor`.
:func:`letter_of` makes the dead letter of such a request.

Transient trouble (:func:`transient`: Kafka, a timeout, the network) is never a reason.
"""

from __future__ import annotations

import time

from aiokafka import ConsumerRecord
from aiokafka.errors import (
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
)

from edgebus.core.state_machine import StateLogRecord
from edgebus.errors import EdgebusError
from edgebus.wire.state_log import encode_state_record, state_headers

__all__ = ["STAGE", "letter_of", "transient"]

#: the ``eb-dlq-stage`` of a state host's dead letters
STAGE = "state"
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
