"""What runs between a start and a stop: the region service, a coordinator, a saga
runner. :class:`Lifecycle` gives each ``async with`` (start on entry, stop on exit)."""

from __future__ import annotations

import abc
from typing import Self

__all__ = ["Lifecycle"]


class Lifecycle(abc.ABC):
    """Base of a part that runs between :meth:`start` and :meth:`stop`; ``async with``
    starts it and stops it again, whatever ends the block."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Start (connect, join, serve...)."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop again."""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
