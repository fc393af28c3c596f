"""The blocking SDK for scripts: ``with EdgeBusSync() as bus: bus.write(key, data)``."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from typing_extensions import Unpack

from edgebus.config import EdgeConfig
from edgebus.sdk.bus import EdgeBus
from edgebus.sdk.options import ReadKeywords, WriteKeywords
from edgebus.sdk.results import ReadResult, WriteReceipt
from edgebus.sdk.states import StateKeywords

if TYPE_CHECKING:
    from edgebus.state.client import StateResult

__all__ = ["EdgeBusSync"]

T = TypeVar("T")


class EdgeBusSync:
    """Blocking facade over :class:`~edgebus.sdk.EdgeBus` for scripts: ``with
    EdgeBusSync() as bus``.

    Runs an event loop on a private thread; every method blocks until done.
    """

    def __init__(
        self,
        config: EdgeConfig | Mapping[str, Any] | str | Path | None = None,
        *,
        client_id: str | None = None,
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="edgebus-sync", daemon=True
        )
        self._thread.start()
        try:
            self._bus = self._call(_make_bus(config, client_id))
        except BaseException:
            self._stop_loop()
            raise

    def __enter__(self) -> EdgeBusSync:
        try:
            self._call(self._bus.start())
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def bus(self) -> EdgeBus:
        """The asynchronous bus underneath."""
        return self._bus

    def write(self, key: str, data: Any, **options: Unpack[WriteKeywords]) -> WriteReceipt:
        """Blocking :meth:`EdgeBus.write <edgebus.sdk.EdgeBus.write>`."""
        return self._call(self._bus.write(key, data, **options))

    def read(
        self, key: str, region: str | None = None, **options: Unpack[ReadKeywords]
    ) -> ReadResult:
        """Blocking :meth:`EdgeBus.read <edgebus.sdk.EdgeBus.read>`."""
        return self._call(self._bus.read(key, region, **options))

    def state(
        self, state_id: str, operation: str = "get", **options: Unpack[StateKeywords]
    ) -> StateResult:
        """Blocking :meth:`EdgeBus.state <edgebus.sdk.EdgeBus.state>`."""
        return self._call(self._bus.state(state_id, operation, **options))

    def close(self) -> None:
        """Flush, disconnect and stop the private loop (idempotent)."""
        if self._loop.is_closed():
            return
        try:
            self._call(self._bus.close())
        finally:
            self._stop_loop()

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


async def _make_bus(config: Any, client_id: str | None) -> EdgeBus:
    return EdgeBus(config, client_id=client_id)
