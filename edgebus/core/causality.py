"""Causal delivery: apply an event only after its dependencies, per origin stream FIFO.

A region receives *streams*: one per ``(origin region, partition)``, delivered in
origin order (the origin's own events in its topic; copies and forwarded watermarks
from a replicator, which keeps per-stream order). The region's *frontier* maps each
stream to the highest origin offset it has passed: every unit of that stream at or
below it that belongs in the region has been applied (events) or passed (watermarks,
which stand for events the region will never hold).

An event carries the vector clock of its writer's session (its dependencies). The
:class:`CausalGate` releases an event only when every dependency outside the event's
own stream is *passed* (its own stream is FIFO: everything earlier was offered before
it). A stream's position ``d`` is passed when the frontier reaches it, or when the
stream's next unit, even one still buffered, lies beyond ``d``: FIFO delivery means
every unit of the stream before that one that belongs here was delivered and applied,
so the positions in between are events placed elsewhere. An event whose dependencies
are not passed is *buffered*, and so is every later unit of its stream, so the stream
stays FIFO; each advance of the frontier re-examines the streams waiting on it. Hence,
in every region, an event is applied only after every event it depends on that is
placed there, and a frontier entry never passes an event that is still buffered.

Dependencies never form a cycle (a writer depends only on positions acknowledged
before it wrote), so every buffered unit is released once the units it waits for
arrive, or a watermark of their stream passes them.

A unit at or below its stream's frontier, or at or below the last unit buffered for
its stream, is a duplicate (replication is at-least-once): :meth:`CausalGate.offer`
refuses it.

A buffered unit whose dependency never arrives (a forged or corrupt clock) would hold
its stream forever: :meth:`CausalGate.expire` takes out the heads that have waited
since before a cutoff (the caller dead-letters them) and releases what follows them.
The gate counts what it buffers in units and in bytes (``Unit.size``), so that the
caller can bound both.

Pure: no I/O, no clock. ``origin_ms`` of a watermark is the origin's clock reading it
carries; the gate keeps the newest per stream (:attr:`CausalGate.fresh_ms`) for
bounded-staleness reads. ``arrived_ms`` is the caller's clock when it offered the unit.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from edgebus.core.vector_clock import VectorClock

__all__ = ["CausalGate", "FrontierView", "Stream", "Unit"]

#: (origin region, partition)
Stream = tuple[str, int]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Unit(Generic[T]):
    """One event or watermark of a stream, with what the caller needs to apply it.

    ``deps`` is ``None`` for a watermark; ``origin_ms`` is a heartbeat's origin time;
    ``size`` the bytes it holds while buffered; ``arrived_ms`` when it was offered.
    """

    stream: Stream
    offset: int
    deps: VectorClock | None
    item: T
    origin_ms: int | None = None
    size: int = 0
    arrived_ms: int = 0

    @property
    def is_watermark(self) -> bool:
        """True for a watermark (it moves the frontier and applies nothing)."""
        return self.deps is None


@dataclass(frozen=True, slots=True)
class FrontierView:
    """An immutable copy of a gate's frontier, taken when its effects were committed:
    what reads may rely on (the live gate runs ahead of the store during a batch)."""

    frontier: Mapping[Stream, int]
    heads: Mapping[Stream, int]  # blocked stream -> offset of its first buffered unit
    fresh_ms: Mapping[Stream, int]

    @classmethod
    def empty(cls) -> FrontierView:
        """The view of a region that has applied nothing."""
        return cls({}, {}, {})

    def passed(self, stream: Stream) -> int:
        """Highest offset of ``stream`` passed (see :meth:`CausalGate.passed`)."""
        return _passed(self.frontier.get(stream, -1), self.heads.get(stream))


def _unit_size(unit: Unit[T]) -> int:
    return unit.size


def _passed(level: int, head: int | None) -> int:
    """A stream's frontier, or the position before its first buffered unit if later."""
    return level if head is None or head - 1 <= level else head - 1


class CausalGate(Generic[T]):
    """Orders a region's incoming units so that each is applied after its dependencies.

    Mutable, single-threaded. ``frontier`` starts from what the region's store holds.
    """

    def __init__(
        self, frontier: Mapping[Stream, int] | None = None,
        size: Callable[[Unit[T]], int] | None = None,
    ) -> None:
        """``size(unit)``: the bytes a buffered unit holds (default: ``unit.size``),
        asked only of units that are buffered."""
        self._size: Callable[[Unit[T]], int] = size or _unit_size
        self.frontier: dict[Stream, int] = dict(frontier or {})
        #: newest heartbeat origin time passed, per stream
        self.fresh_ms: dict[Stream, int] = {}
        self._queues: dict[Stream, deque[Unit[T]]] = {}
        self._waiting: dict[Stream, set[Stream]] = {}  # stream -> blocked streams on it
        self._pending = 0
        self._pending_bytes = 0

    @property
    def pending(self) -> int:
        """Units buffered until their dependencies are applied."""
        return self._pending

    @property
    def pending_bytes(self) -> int:
        """The sizes of the units buffered, summed."""
        return self._pending_bytes

    def oldest_head_ms(self) -> int | None:
        """When the longest-waiting head of a blocked stream arrived (None: none)."""
        return min((q[0].arrived_ms for q in self._queues.values()), default=None)

    def heads(self) -> Iterator[Unit[T]]:
        """The first buffered unit of each blocked stream (the earliest of its stream)."""
        for queue in self._queues.values():
            yield queue[0]

    def pending_units(self) -> Iterator[Unit[T]]:
        """Every buffered unit, stream by stream in order."""
        for queue in self._queues.values():
            yield from queue

    def blocked(self) -> dict[Stream, tuple[int, dict[Stream, int]]]:
        """Blocked stream -> (offset of its head, the dependencies it still lacks)."""
        out: dict[Stream, tuple[int, dict[Stream, int]]] = {}
        for stream, queue in self._queues.items():
            head = queue[0]
            out[stream] = (head.offset, self._missing(head))
        return out

    def live_maps(
        self,
    ) -> tuple[dict[Stream, int], dict[Stream, deque[Unit[T]]], dict[Stream, set[Stream]]]:
        """The gate's own maps: frontier, the blocked streams' buffered units, and per
        stream the blocked streams waiting on it. For a compiled fold that releases a
        unit as :meth:`offer` would release it at once (its stream not blocked, nothing
        waiting on it, every dependency within the frontier): it reads the last two and
        moves the frontier, nothing else. Valid until :meth:`restore`."""
        return self.frontier, self._queues, self._waiting

    def release_after(self, stream: Stream) -> list[Unit[T]]:
        """What :meth:`offer` releases after a unit of ``stream`` passed (the frontier
        moved by a compiled fold, see :meth:`live_maps`): the buffered units whose
        dependencies are passed now, in order."""
        released: list[Unit[T]] = []
        self._cascade([stream], released)
        return released

    def is_duplicate(self, stream: Stream, offset: int) -> bool:
        """True when ``offset`` of ``stream`` was applied, passed or buffered already."""
        queue = self._queues.get(stream)
        if queue is not None and offset <= queue[-1].offset:
            return True
        return offset <= self.frontier.get(stream, -1)

    def offer(self, unit: Unit[T]) -> list[Unit[T]] | None:
        """Offer the next unit of its stream.

        Returns the units that may be applied now, in order (the unit itself and any
        buffered units it released; empty when it is buffered), or ``None`` for a
        duplicate, which the caller drops.
        """
        stream = unit.stream
        if self.is_duplicate(stream, unit.offset):
            return None
        queue = self._queues.get(stream)
        if queue is not None:  # its stream is blocked: keep FIFO
            queue.append(unit)
            self._pending += 1
            self._pending_bytes += self._size(unit)
            return []
        blocker = self._first_missing(unit)
        if blocker is not None:
            self._queues[stream] = deque((unit,))
            self._waiting.setdefault(blocker, set()).add(stream)
            self._pending += 1
            self._pending_bytes += self._size(unit)
            released: list[Unit[T]] = []
            # the positions before this head are passed now: others may wait on them
            self._cascade([stream], released)
            return released
        released = [unit]
        self._pass(unit)
        self._cascade([stream], released)
        return released

    def _pass(self, unit: Unit[T]) -> None:
        stream = unit.stream
        if unit.offset > self.frontier.get(stream, -1):
            self.frontier[stream] = unit.offset
        if unit.origin_ms is not None and unit.origin_ms > self.fresh_ms.get(stream, -1):
            self.fresh_ms[stream] = unit.origin_ms

    def _cascade(self, advanced: list[Stream], released: list[Unit[T]]) -> None:
        work = advanced
        while work:
            stream = work.pop()
            waiting = self._waiting.pop(stream, None)
            if not waiting:
                continue
            for blocked in waiting:
                if self._drain(blocked, released):
                    work.append(blocked)

    def _drain(self, stream: Stream, released: list[Unit[T]]) -> bool:
        """Release the units of a blocked stream whose dependencies are passed now, up
        to the next one still waiting; True when any was released."""
        queue = self._queues.get(stream)
        if queue is None:
            return False  # expired or drained since it was registered
        moved = False
        while queue:
            head = queue[0]
            blocker = self._first_missing(head)
            if blocker is not None:
                self._waiting.setdefault(blocker, set()).add(stream)
                break
            queue.popleft()
            self._pending -= 1
            self._pending_bytes -= self._size(head)
            self._pass(head)
            released.append(head)
            moved = True
        if not queue:
            del self._queues[stream]
        return moved

    def expire(self, cutoff_ms: int) -> tuple[list[Unit[T]], list[Unit[T]]]:
        """Take out the heads that arrived at or before ``cutoff_ms`` and still wait for
        a dependency, in rounds: each round takes one head per such stream whose wait is
        for no other blocked stream, and releases what that lets through (an event that
        waits for a position behind another stream's stuck head is let through once that
        head goes); the next round looks again.

        Returns ``(expired, released)``: the units taken out (the caller dead-letters
        them; the frontier does not pass them) and the units their removal released, in
        order. A stream with no unit left waiting is no longer blocked.
        """
        expired: list[Unit[T]] = []
        released: list[Unit[T]] = []
        queues = self._queues
        while True:
            old = [s for s, q in queues.items() if q[0].arrived_ms <= cutoff_ms]
            if not old:
                return expired, released
            # a head that waits for another blocked stream may be let through when that
            # stream's stuck head goes: take only heads that wait for no blocked stream
            # (when every one does, the waits form a cycle: take the oldest)
            stuck = [s for s in old if not any(w in queues for w in self._missing(queues[s][0]))]
            if not stuck:
                stuck = [min(old, key=lambda s: queues[s][0].arrived_ms)]
            for stream in stuck:
                queue = self._queues[stream]
                unit = queue.popleft()
                self._pending -= 1
                self._pending_bytes -= self._size(unit)
                expired.append(unit)
                if not queue:
                    del self._queues[stream]
            for stream in stuck:
                self._drain(stream, released)
            # what waits on these streams may pass their new heads now
            self._cascade(list(stuck), released)

    def snapshot(self) -> object:
        """The gate's state, to :meth:`restore` if the batch offered since fails."""
        return (
            dict(self.frontier), dict(self.fresh_ms),
            {s: deque(q) for s, q in self._queues.items()},
            {s: set(w) for s, w in self._waiting.items()},
            self._pending, self._pending_bytes,
        )

    def restore(self, snapshot: object) -> None:
        """Back to the state :meth:`snapshot` took."""
        (self.frontier, self.fresh_ms, self._queues, self._waiting, self._pending,
         self._pending_bytes) = snapshot  # type: ignore[misc]
        # a snapshot is restored at most once: nothing else holds its containers

    def view(self) -> FrontierView:
        """A copy of the frontier as it is now (take it once the effects are stored)."""
        return FrontierView(
            dict(self.frontier),
            {s: q[0].offset for s, q in self._queues.items()},
            dict(self.fresh_ms),
        )

    def passed(self, stream: Stream) -> int:
        """The highest offset of ``stream`` passed here (see the module docstring)."""
        queue = self._queues.get(stream)
        return _passed(self.frontier.get(stream, -1), queue[0].offset if queue else None)

    def _first_missing(self, unit: Unit[T]) -> Stream | None:
        deps = unit.deps
        if not deps:
            return None
        frontier = self.frontier
        own = unit.stream
        for stream, offset in deps.entries().items():
            if stream != own and frontier.get(stream, -1) < offset and self.passed(stream) < offset:
                return stream
        return None

    def _missing(self, unit: Unit[T]) -> dict[Stream, int]:
        deps = unit.deps
        if not deps:
            return {}
        return {
            s: o
            for s, o in deps.entries().items()
            if s != unit.stream and self.passed(s) < o
        }
