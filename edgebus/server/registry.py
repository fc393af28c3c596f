"""The region services running in this process, by region.

An SDK in the same process calls such a service directly instead of over HTTP
(:class:`~edgebus.sdk.region_client.RegionClient`), but only from the service's own
event loop: a service on another loop is reached over HTTP like any other (its
objects cannot be awaited from there). This module is all the SDK needs of the
services: it imports none of them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Protocol

from edgebus.core.freshness import ReadRequest

__all__ = ["EmbeddedRegion", "embedded", "register", "unregister"]


class EmbeddedRegion(Protocol):
    """What a region service in this process answers directly."""

    region: str
    #: the event loop it runs on (None until started)
    loop: asyncio.AbstractEventLoop | None

    async def read(self, key: str) -> dict[str, Any]:
        """The key's state in the region (``exists`` false if none)."""

    async def read_at(self, request: ReadRequest) -> dict[str, Any]:
        """A read at a consistency level (``served`` false when not fresh in time)."""

    async def status(self) -> dict[str, Any]:
        """The status document."""

    def pause_replication(self, paused: bool = True, into: str | None = None) -> None:
        """Stop (or resume) pushing this region's events into ``into`` (None: all)."""

    async def repair_into(self, into: str, starts: Mapping[int, int]) -> dict[str, Any]:
        """Copy into ``into`` what it lacks of this region's events from ``starts``
        (partition -> first offset): the catch-up's report."""


_RUNNING: dict[str, EmbeddedRegion] = {}


def register(service: EmbeddedRegion) -> None:
    """A started service of ``service.region`` serves this process from now on."""
    _RUNNING[service.region] = service


def unregister(service: EmbeddedRegion) -> None:
    """``service`` stopped (another one of its region may have replaced it already)."""
    if _RUNNING.get(service.region) is service:
        del _RUNNING[service.region]


def embedded(region: str) -> EmbeddedRegion | None:
    """The running region service for ``region`` in this process, if it runs on the
    caller's event loop."""
    service = _RUNNING.get(region)
    if service is None:
        return None
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    return service if service.loop is loop else None
