"""A part of the SDK started on first use (the strong-commit client, the state client):
once, by whichever call needs it first; a failed start is tried again by the next."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable
from typing import Generic, Protocol, TypeVar

__all__ = ["Lazily", "Stoppable"]

T = TypeVar("T")


class Stoppable(Protocol):
    """A part with an async ``stop()``."""

    async def stop(self) -> None: ...


class Lazily(Generic[T]):
    """``await part.get()``: the started part; concurrent callers share one start."""

    def __init__(self, start: Callable[[], Awaitable[T]]) -> None:
        self._start = start
        self._ready: asyncio.Future[T] | None = None
        self.value: T | None = None

    async def get(self) -> T:
        """The started part (starting it if no start succeeded yet)."""
        if self.value is not None:
            return self.value
        ready = self._ready
        if ready is None or (ready.done() and ready.exception() is not None):
            ready = self._ready = asyncio.ensure_future(self._started())
        return await asyncio.shield(ready)

    async def _started(self) -> T:
        value = await self._start()
        self.value = value
        return value

    def forget(self) -> T | None:
        """Cancel a start under way; the started part (the caller stops it), if any."""
        if self._ready is not None and not self._ready.done():
            self._ready.cancel()
        self._ready = None
        value, self.value = self.value, None
        return value

    async def stop(self, parts: Callable[[T], Iterable[Stoppable | None]]) -> None:
        """:meth:`forget` the part, then stop what ``parts`` names of it, in order (the
        ``None`` ones are left out; a failure to stop is ignored)."""
        value = self.forget()
        if value is not None:
            for part in parts(value):
                if part is not None:
                    with contextlib.suppress(Exception):
                        await part.stop()
