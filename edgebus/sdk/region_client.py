"""Reading a region from any process: find its service, ask its query endpoint.

A region service announces ``{"region", "url", "pid", "host", "store", "started_ms"}``
(JSON, key ``query``; :mod:`edgebus.wire.announcement`) on the compacted topic
``edgebus.<R>.service`` of the region's cluster. :class:`RegionClient` reads the newest
announcement of that region, then talks HTTP to it (:mod:`edgebus.server.query`); a
service in the same process is called directly. An announcement that does not decode,
or names another region, is skipped with a warning.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

from edgebus.config import EdgeConfig
from edgebus.core.freshness import ReadRequest
from edgebus.errors import DecodeError, RegionUnavailable, UnknownRegion
from edgebus.kafka.clusters import resolve_clusters
from edgebus.kafka.reading import read_to_end
from edgebus.kafka.topics import service_topic
from edgebus.server.registry import embedded
from edgebus.wire.announcement import ANNOUNCEMENT_KEY, decode_announcement

__all__ = ["RegionClient"]

log = logging.getLogger("edgebus.edge")

#: how long a found endpoint is trusted before the announcement topic is read again (in
#: the background: reads keep using the known endpoint meanwhile)
ENDPOINT_TTL_S = 30.0


class RegionClient:
    """Reads region state through the regions' query endpoints."""

    def __init__(self, config: EdgeConfig, timeout_s: float = 10.0) -> None:
        self.config = config
        self.clusters = resolve_clusters(config)
        self.timeout_s = timeout_s
        self._endpoints: dict[str, tuple[str, float]] = {}
        self._refreshing: dict[str, asyncio.Task[None]] = {}
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        """Close the HTTP session (and stop endpoint refreshes)."""
        for task in list(self._refreshing.values()):
            task.cancel()
        await asyncio.gather(*self._refreshing.values(), return_exceptions=True)
        self._refreshing.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def read(self, key: str, region: str) -> dict[str, Any]:
        """The key's state in ``region`` (``exists`` false when it has none)."""
        service = embedded(region)
        if service is not None:
            return await service.read(key)
        return await self._get(region, f"/v1/keys/{quote(key, safe='')}")

    async def read_at(self, region: str, request: ReadRequest) -> dict[str, Any]:
        """:meth:`RegionService.read_at <edgebus.server.service.RegionService.read_at>`
        in ``region``, in this process or over HTTP; ``served`` false when the region
        could not serve it in time."""
        service = embedded(region)
        if service is not None:
            return await service.read_at(request)
        return await self._get(
            region, f"/v1/keys/{quote(request.key, safe='')}", request.params(),
            extra_s=request.wait_ms / 1000,
        )

    async def pause_replication(self, region: str, paused: bool = True) -> dict[str, Any]:
        """Pause (or resume) the region service's replication."""
        service = embedded(region)
        if service is not None:
            service.pause_replication(paused)
            return {"region": region, "replication_paused": paused}
        return await self._get(
            region, "/v1/replication", {"paused": "true" if paused else "false"}, method="POST"
        )

    async def status(self, region: str) -> dict[str, Any]:
        """The region service's status document."""
        service = embedded(region)
        if service is not None:
            return await service.status()
        return await self._get(region, "/v1/status")

    async def get(self, region: str, path: str) -> dict[str, Any]:
        """GET any query path of the region's endpoint."""
        return await self._get(region, path)

    async def endpoint(self, region: str, refresh: bool = False) -> str:
        """The region service's URL from its newest announcement."""
        if region not in self.clusters:
            raise UnknownRegion(region, tuple(self.clusters))
        cached = self._endpoints.get(region)
        if cached and not refresh:
            if time.monotonic() - cached[1] >= ENDPOINT_TTL_S and region not in self._refreshing:
                # stale: keep using it while the announcement is read again in the
                # background (a read that fails refreshes synchronously and retries)
                self._refreshing[region] = asyncio.ensure_future(self._refresh(region))
            return cached[0]
        return await self._lookup(region)

    async def _refresh(self, region: str) -> None:
        try:
            with contextlib.suppress(Exception):
                await self._lookup(region)
        finally:
            self._refreshing.pop(region, None)

    async def _lookup(self, region: str) -> str:
        records = await read_to_end(
            self.config.kafka, self.clusters[region], service_topic(region)
        )
        url = None
        for record in records:
            if record.key != ANNOUNCEMENT_KEY or not record.value:
                continue  # another record, or a tombstone (nothing announced)
            try:
                announcement = decode_announcement(record.value)
            except DecodeError as e:
                log.warning(
                    "%s: skipped the service announcement at partition %s offset %s of %s: %s",
                    region, record.partition, record.offset, service_topic(region), e,
                )
                continue
            if announcement.region != region:
                log.warning(
                    "%s: skipped the service announcement at partition %s offset %s of %s: "
                    "it announces region %r", region, record.partition, record.offset,
                    service_topic(region), announcement.region[:80],
                )
                continue
            url = announcement.url
        if not url:
            raise RegionUnavailable(
                f"No region service has announced itself for {region} (topic "
                f"{service_topic(region)} on {self.clusters[region]}). Start one with "
                f"`edgebus region run --region {region}`."
            )
        self._endpoints[region] = (url, time.monotonic())
        return str(url)

    async def _get(
        self,
        region: str,
        path: str,
        params: dict[str, str] | None = None,
        *,
        method: str = "GET",
        extra_s: float = 0.0,
    ) -> dict[str, Any]:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        timeout = aiohttp.ClientTimeout(total=self.timeout_s + extra_s)
        for attempt in (0, 1):
            url = await self.endpoint(region, refresh=attempt > 0)
            try:
                async with self._session.request(
                    method, url + path, params=params, timeout=timeout
                ) as response:
                    body = await response.read()
                    data = _json_object(body)
                    if data is None:  # not an edgebus query endpoint
                        raise RegionUnavailable(
                            f"{region} service at {url} answered {response.status} with "
                            f"something other than a JSON object: {body[:200]!r}"
                        )
                    if response.status == 409 and data.get("served") is False:
                        return data  # not fresh enough in time: the caller decides
                    if response.status >= 400:
                        raise RegionUnavailable(
                            f"{region} service at {url} answered {response.status}: "
                            f"{data.get('error', body[:200])}"
                        )
                    return data
            except (TimeoutError, aiohttp.ClientError, OSError) as e:
                if attempt:
                    raise RegionUnavailable(
                        f"The {region} region service announced at {url} does not answer "
                        f"({e or type(e).__name__}). Is `edgebus region run --region {region}` "
                        "still running? Start it again."
                    ) from e
        raise AssertionError("unreachable")


def _json_object(body: bytes) -> dict[str, Any] | None:
    """``body`` as a JSON object, or None if it is not one."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None
