"""The caller's side of a state machine: run an operation wherever the owner is.

A call goes straight to this process's state host when that host owns the state
(``local``); otherwise it is *forwarded*: appended to the state's log as a request,
which the owner reads, runs and answers in the same log. The caller takes the first
answer to its request whose append time is within the lease its owner knew
(:func:`~edgebus.core.state_machine.acknowledged`), read with the decoder the hosts fold
with (an answer no host may fold is no answer here either). No answer within
``state.resend_ms``: it appends the request again (same id: an owner runs it at most
once and answers a re-send with the first answer), until ``timeout_ms``.

Before anything is written the caller checks compliance: a state's class (its
``classification``, default the configured default class) fixes the regions allowed
to own or copy it; a value that needs a stricter class is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from typing import Any, NamedTuple

from edgebus.config import EdgeConfig
from edgebus.core.state_machine import StateOp, StateRequest, acknowledged, validate_request
from edgebus.errors import (
    ComplianceViolation,
    InvalidInput,
    StateOperationRefused,
    StateOperationTimeout,
)
from edgebus.kafka.clients import Consumer
from edgebus.kafka.clusters import resolve_clusters
from edgebus.kafka.reading import topic_partitions
from edgebus.state.executor import classify_values
from edgebus.state.host import NotOwner, StateHost
from edgebus.state.log import (
    StateLogWriter,
    allowed_regions,
    home_region,
    start_consumer,
    state_classes,
    state_topic,
)
from edgebus.wire.state_log import H_STATE, decode_state_record

__all__ = ["StateClient", "StateResult"]

log = logging.getLogger("edgebus.state")


class StateResult(NamedTuple):
    """The answer to a state operation.

    ``value`` is what the operation returns (``get``: the field or whole state;
    ``set``/``update``/``increment``/``append``: the new value; ``delete``: the removed
    value; ``lock``: ``{"lock", "holder", "until_ms"}``; ``unlock``:
    ``{"released": True}``). ``outcome`` is ``ok``, or ``timeout`` for a lock not
    acquired within ``timeout_ms``. ``region``/``host``/``epoch`` say where it ran and
    under which owner epoch; ``forwarded`` whether it went through the log to another
    process, ``forward_ms`` how long that took (0 when local).
    """

    state_id: str
    operation: str
    outcome: str
    value: Any
    version: int
    region: str
    host: str
    epoch: int
    forwarded: bool
    forward_ms: float
    latency_ms: float
    req_id: str
    classification: str
    duplicate: bool
    message: str

    @property
    def ok(self) -> bool:
        """Whether the operation ran (a lock: was acquired)."""
        return self.outcome == "ok"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (the EdgeStateMachine node's result)."""
        out = self._asdict()
        out["ok"] = self.ok
        return out


class StateClient:
    """Runs state operations for one EdgeBus (``region`` is where calls come from)."""

    def __init__(self, config: EdgeConfig, client_id: str, region: str,
                 host: StateHost | None = None) -> None:
        self.config = config
        self.client_id = client_id
        self.region = region
        self.host = host
        self._writer = StateLogWriter(config, f"{client_id}-state")
        self._clusters = resolve_clusters(config)
        self._consumers: dict[str, Consumer] = {}
        self._assigned: set[str] = set()
        self._waiting: dict[str, asyncio.Future[tuple[StateOp, int]]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._lock = asyncio.Lock()
        self._allowed: dict[str, tuple[str, ...]] = {}
        self._classes = state_classes(config)

    async def stop(self) -> None:
        """Stop reading answers; calls in flight raise StateOperationTimeout."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        for consumer in self._consumers.values():
            with contextlib.suppress(Exception):
                await consumer.stop()
        self._consumers.clear()
        self._assigned.clear()
        await self._writer.stop()

    def data_class(self, classification: str | None) -> str:
        """The state class named (validated), or the configured default."""
        name = (classification or self.config.compliance.default_classification).lower()
        known = self._classes
        if name not in known:
            raise InvalidInput(f"unknown classification {name!r} for a state: use one of "
                               f"{', '.join(known)}")
        return name

    def check_compliance(self, request: StateRequest, data_class: str) -> None:
        """Raise ComplianceViolation when the state's class has no region, or the value
        needs a stricter class than the state's."""
        allowed = self._allowed.get(data_class)
        if allowed is None:
            home_region(self.config, data_class)  # raises when no region is allowed
            allowed = self._allowed[data_class] = allowed_regions(self.config, data_class)
        if request.operation not in ("set", "update", "append") or request.value is None:
            return
        rules = self.config.compliance.rules()
        value = request.value if request.key is None else {request.key: request.value}
        # as the owner will: size and field names first, then field and value rules
        found = classify_values(self.config, value, data_class)
        value_allowed = rules.allowed_regions(self.config.regions, found.classes)
        if not set(allowed) <= set(value_allowed):
            raise ComplianceViolation(
                sorted(found.classes), rules.zones_required(found.classes), allowed,
                f"state {request.state_id!r} is of class {data_class} and may be owned "
                f"and copied in {', '.join(allowed)}, which {found.label} data may not all "
                f"enter; declare the state with classification={found.label!r} (a "
                "state's class is part of its identity, like a Durable Object's "
                "jurisdiction)",
            )

    async def call(self, request: StateRequest, data_class: str) -> StateResult:
        """Run ``request`` at the owner and return its answer."""
        validate_request(request)
        self.check_compliance(request, data_class)
        started = time.monotonic()
        if self.host is not None and self.host.owns(data_class, request.state_id):
            try:
                op, _where = await asyncio.wait_for(
                    self.host.submit_local(data_class, request),
                    request.timeout_ms / 1000 + 1)
                return self._result(op, data_class, started, forwarded=False)
            except (NotOwner, TimeoutError):
                pass  # ownership moved: forward through the log (same request id)
        await self._reader(data_class)
        future: asyncio.Future[tuple[StateOp, int]] = asyncio.get_running_loop().create_future()
        self._waiting[request.req_id] = future
        wait = request.timeout_ms / 1000
        if request.operation == "lock":
            wait += self.config.state.timeout_ms / 1000  # a lock waits, then is answered
        deadline = started + wait
        try:
            while True:
                await self._writer.append(data_class, request.state_id, request)
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                with contextlib.suppress(TimeoutError):
                    op, _at = await asyncio.wait_for(
                        asyncio.shield(future),
                        min(left, self.config.state.resend_ms / 1000))
                    return self._result(op, data_class, started, forwarded=True)
                if time.monotonic() >= deadline:
                    break
        finally:
            self._waiting.pop(request.req_id, None)
        raise StateOperationTimeout(
            f"no owner answered {request.operation} on state {request.state_id!r} (class "
            f"{data_class}) within {wait * 1000:.0f} ms: is a region service that may host "
            f"it running (`edgebus region run --region R` for R in "
            f"{', '.join(allowed_regions(self.config, data_class))})? The request waits in "
            f"the state log and runs once an owner takes the state; call again with "
            f"req_id={request.req_id!r} to get its answer without running it twice",
            request.state_id, request.req_id,
        )

    def _result(self, op: StateOp, data_class: str, started: float, *,
                forwarded: bool) -> StateResult:
        elapsed = (time.monotonic() - started) * 1000
        if op.outcome == "refused":
            if op.message.startswith("Compliance violation"):
                refused = ComplianceViolation([data_class], (), (), op.message)
                refused.args = (op.message,)  # the owner's message is whole already
                raise refused
            raise StateOperationRefused(
                f"{op.operation} on state {op.state_id!r} refused by its owner "
                f"({op.region}): {op.message}", op.state_id, op.req_id)
        return StateResult(
            state_id=op.state_id, operation=op.operation, outcome=op.outcome,
            value=op.result, version=op.version, region=op.region, host=op.host,
            epoch=op.epoch, forwarded=forwarded, forward_ms=elapsed if forwarded else 0.0,
            latency_ms=elapsed, req_id=op.req_id, classification=data_class,
            duplicate=op.duplicate, message=op.message,
        )

    async def _reader(self, data_class: str) -> None:
        """Read answers from the class's log, from its current end (before the request
        is appended, so its answer cannot be missed)."""
        if data_class in self._assigned:
            return
        topic = state_topic(self.config, data_class)
        async with self._lock:
            if data_class in self._assigned:
                return
            bootstrap = self._clusters[home_region(self.config, data_class)]
            await self._writer.producer(data_class)  # creates the topic
            consumer = await start_consumer(self.config, bootstrap,
                                            f"{self.client_id}-state-answers")
            try:
                tps = await topic_partitions(consumer, [topic])
                consumer.assign(tps)
                ends = await consumer.end_offsets(tps)
                for tp in tps:
                    consumer.seek(tp, ends[tp])
            except BaseException:
                await consumer.stop()
                raise
            self._consumers[topic] = consumer
            self._assigned.add(data_class)
            self._tasks.append(asyncio.create_task(self._read(consumer),
                                                   name=f"state answers {topic}"))

    async def _read(self, consumer: Consumer) -> None:
        while True:
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            for records in batch.values():
                if not self._waiting:
                    continue
                for record in records:
                    if not any(k == H_STATE and bytes(v) == b"op"
                               for k, v in record.headers or ()):
                        continue
                    try:
                        _state_id, op = decode_state_record(record.value)
                    except Exception:
                        continue
                    if not isinstance(op, StateOp):
                        continue
                    future = self._waiting.get(op.req_id)
                    if (future is not None and not future.done()
                            and acknowledged(int(record.timestamp), op.lease_until_ms)):
                        future.set_result((op, int(record.timestamp)))


def new_request_id() -> str:
    """A fresh request id."""
    return uuid.uuid4().hex
