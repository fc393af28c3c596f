"""Interleaved rounds of batches, shared by the latency benchmarks: the order of the
batches, and the batches themselves (N workers, each doing one operation after the
other, until a count or a duration is done). :func:`drive`, the counted workers, also
drives the throughput benchmarks' rounds and fills.

The figures over the rounds are :func:`~edgebus.bench.figures.round_figures`."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence

from edgebus.bench.figures import round_figures

__all__ = ["counted_batch", "drive", "round_figures", "schedule", "timed_batch"]


def schedule(
    concurrencies: Sequence[int], modes: Sequence[str], rounds: int, rng: random.Random
) -> Iterator[tuple[int, int, str]]:
    """``(round, concurrency, mode)`` of every batch: each round holds every
    (concurrency, mode) pair once, in a new random order."""
    pairs = [(c, m) for c in concurrencies for m in modes]
    for n in range(rounds):
        rng.shuffle(pairs)
        for c, m in pairs:
            yield n, c, m


async def counted_batch(
    count: int, concurrency: int, one: Callable[[int, int], Awaitable[float]],
    timeout_s: float,
) -> tuple[list[float], float]:
    """``one(worker, i)`` for i < count by ``concurrency`` workers, each one at a time,
    within ``timeout_s``; ``(latencies in ms, wall seconds)``. ``one`` returns its own
    latency (ms)."""
    latencies: list[float] = []

    async def timed(w: int, i: int) -> None:
        latencies.append(await one(w, i))

    seconds = await asyncio.wait_for(drive(count, concurrency, timed), timeout_s)
    return latencies, seconds


async def drive(
    end: int, concurrency: int, one: Callable[[int, int], Awaitable[object]], first: int = 0
) -> float:
    """``one(worker, i)`` for i in ``first .. end - 1`` by ``concurrency`` workers, each
    doing one after the other; the wall seconds they took."""
    next_index = first

    async def worker(w: int) -> None:
        nonlocal next_index
        while next_index < end:
            i = next_index
            next_index += 1
            await one(w, i)

    started = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return time.perf_counter() - started


async def timed_batch(
    seconds: float, concurrency: int, one: Callable[[], Awaitable[float]], grace_s: float
) -> tuple[list[float], float]:
    """``concurrency`` workers, each calling ``one()`` one after the other until
    ``seconds`` have passed (the last calls may overrun by ``grace_s``); ``(latencies
    in ms, wall seconds)``."""
    latencies: list[float] = []
    started = time.perf_counter()
    deadline = started + seconds

    async def worker() -> None:
        while time.perf_counter() < deadline:
            latencies.append(await one())

    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))),
                           seconds + grace_s)
    return latencies, time.perf_counter() - started
