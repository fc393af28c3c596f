"""The calls of ``edgebus bench state``: one phase's increments on its state, each
answer counted and checked, and the state log read back for the append times of each
call's records (its stages)."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import TopicPartition

from edgebus.bench.children import READY_TIMEOUT_S
from edgebus.bench.state_figures import PhaseCheck, check_phase
from edgebus.config import EdgeConfig
from edgebus.core.state_machine import StateOp, StateRequest
from edgebus.errors import DecodeError, EdgebusError
from edgebus.sdk import EdgeBus
from edgebus.state.log import start_consumer, state_partition, state_topic
from edgebus.wire.state_log import decode_state_record

__all__ = ["DATA_CLASS", "FIELD", "Call", "Phase", "read_append_times"]

#: the states' class (every region may hold it) and the field incremented
DATA_CLASS = "public"
FIELD = "n"


@dataclass
class Call:
    """A measured call: its request id, concurrency and wall-clock start and end (ms)."""

    concurrency: int
    req_id: str
    started_ms: float
    ended_ms: float


class Phase:
    """The increments of one phase on its state, and what their answers said."""

    def __init__(self, name: str, bus: EdgeBus, state_id: str, region: str) -> None:
        self.name = name
        self.bus = bus
        self.state_id = state_id
        self.region = region
        self.expect_forwarded = name == "forwarded"
        self.values: list[float] = []
        self.hosts: set[str] = set()
        self.calls: list[Call] = []
        self.wrong_path = 0
        self.duplicates = 0
        self.errors: list[str] = []

    async def call(self, operation: str, req_id: str | None = None) -> Any:
        return await self.bus.state(self.state_id, operation, key=FIELD,
                                    classification=DATA_CLASS, region=self.region,
                                    req_id=req_id)

    async def increment(self, concurrency: int | None) -> tuple[float, Any]:
        """One increment (measured at ``concurrency``; ``None``: warm-up): its latency
        (ms) and result (``None`` when it raised: counted)."""
        req_id = uuid.uuid4().hex
        wall = time.time() * 1000
        started = time.perf_counter()
        try:
            result = await self.call("increment", req_id)
        except EdgebusError as e:
            elapsed = (time.perf_counter() - started) * 1000
            self.errors.append(f"increment {req_id} raised {type(e).__name__}: {e}")
            return elapsed, None
        elapsed = (time.perf_counter() - started) * 1000
        self.values.append(result.value)
        self.hosts.add(result.host)
        if result.duplicate:
            self.duplicates += 1
        if concurrency is not None:
            if result.forwarded != self.expect_forwarded:
                self.wrong_path += 1
            self.calls.append(Call(concurrency, req_id, wall, time.time() * 1000))
        return elapsed, result

    async def settle(self) -> None:
        """Until a call takes the phase's path: the owner has claimed the state (its
        first call waits for that) and, locally, this process's host owns it. A call
        that raised is made again with its request id (it runs at most once)."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        req_id = uuid.uuid4().hex
        while True:
            try:
                result = await self.call("increment", req_id)
            except EdgebusError as e:
                last = f"{type(e).__name__}: {e}"
            else:
                req_id = uuid.uuid4().hex
                self.values.append(result.value)
                self.hosts.add(result.host)
                if result.forwarded == self.expect_forwarded:
                    return
                last = f"answered by {result.host}, forwarded={result.forwarded}"
            if time.monotonic() > deadline:
                where = ("the benchmark's embedded state host did not become the owner "
                         if not self.expect_forwarded else "no owner answered ")
                raise EdgebusError(
                    f"{where}of state {self.state_id} in region {self.region} within "
                    f"{READY_TIMEOUT_S:.0f} s (last: {last}): is another state host of the "
                    "region running? Run the benchmark without region services, or name a "
                    "fresh region (--region)"
                )

    async def check(self) -> PhaseCheck:
        final: float | None = None
        try:
            final = (await self.call("get")).value
        except EdgebusError as e:
            self.errors.append(f"the final get raised {type(e).__name__}: {e}")
        return check_phase(
            self.name, self.state_id, self.values, final, hosts=sorted(self.hosts),
            measured=len(self.calls), wrong_path=self.wrong_path,
            duplicates=self.duplicates, errors=self.errors,
        )


async def read_append_times(
    config: EdgeConfig, bootstrap: str, state_ids: Sequence[str], since_ms: int
) -> dict[str, dict[str, int]]:
    """Append times of the first request and the first state event (not a repeat) of
    every request on ``state_ids`` appended since ``since_ms``: ``{req_id: {"request":
    ms, "op": ms}}``."""
    topic = state_topic(config, DATA_CLASS)
    tps = sorted({TopicPartition(topic, state_partition(s, config.kafka.partitions))
                  for s in state_ids})
    consumer = await start_consumer(config, bootstrap, "edgebus-bench-state-log")
    out: dict[str, dict[str, int]] = {}
    wanted = set(state_ids)
    try:
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        found = await consumer.offsets_for_times({tp: since_ms for tp in tps})
        for tp in tps:
            at = found.get(tp)
            consumer.seek(tp, at.offset if at is not None else ends[tp])
        remaining = {tp for tp in tps if await consumer.position(tp) < ends[tp]}
        deadline = time.monotonic() + READY_TIMEOUT_S
        while remaining and time.monotonic() < deadline:
            batch = await consumer.getmany(*remaining, timeout_ms=500, max_records=10_000)
            for tp, records in batch.items():
                for record in records:
                    with contextlib.suppress(DecodeError):
                        state_id, rec = decode_state_record(record.value)
                        if state_id in wanted and isinstance(rec, StateRequest):
                            out.setdefault(rec.req_id, {}).setdefault("request",
                                                                      record.timestamp)
                        elif (state_id in wanted and isinstance(rec, StateOp)
                              and not rec.duplicate):
                            out.setdefault(rec.req_id, {}).setdefault("op", record.timestamp)
                    if record.offset + 1 >= ends[tp]:
                        remaining.discard(tp)
    finally:
        await consumer.stop()
    return out
