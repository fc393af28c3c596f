"""Reading a region from any process: find its service, ask its query endpoint.

A region service announces ``{"region", "url", "pid", "host", "store", "started_ms"}``
(JSON, key ``query``; :mod:`edgebus.wire.announcement`) on the compacted topic
``edgebus.<R>.service`` of the region's cluster. :class:`RegionClient` reads the newest
announcement of that region, then talks HTTP to it (:mod:`edgebus.server.query`); a
service in the same process is called directly. An announcement that does not decode,
names another region, or names an endpoint :class:`~edgebus.wire.announcement.EndpointPolicy`
refuses (a host not in ``query.allowed_hosts``, by default not loopback nor a Kafka
bootstrap host; ``http`` where TLS is expected) is skipped with a warning, and the
newest valid one is used.

Every request carries the configured token (``Authorization: Bearer``; the admin token
if one is configured, else the read token; see ``docs/security.md``) and verifies an
https endpoint with ``query.ca_file`` (else the system's CAs). A refusal (401, 403) is a
:class:`~edgebus.errors.ConfigError` naming the setting to fix, not an unavailable
region to route around.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

from edgebus.config import EdgeConfig
from edgebus.core.freshness import ReadRequest
from edgebus.errors import (
    ConfigError,
    DecodeError,
    InvalidInput,
    RegionUnavailable,
    UnknownRegion,
)
from edgebus.kafka.clusters import resolve_clusters
from edgebus.kafka.reading import read_to_end
from edgebus.kafka.topics import service_topic
from edgebus.server.registry import embedded
from edgebus.wire.announcement import (
    ANNOUNCEMENT_KEY,
    EndpointPolicy,
    bootstrap_hosts,
    decode_announcement,
)

__all__ = ["RegionClient"]

log = logging.getLogger("edgebus.edge")

#: how long a found endpoint is trusted before the announcement topic is read again (in
#: the background: reads keep using the known endpoint meanwhile)
ENDPOINT_TTL_S = 30.0
#: what a client with only the read token asks for status: the health part of it
HEALTH_PATH = "/v1/health"


class RegionClient:
    """Reads region state through the regions' query endpoints."""

    def __init__(self, config: EdgeConfig, timeout_s: float = 10.0) -> None:
        self.config = config
        self.clusters = resolve_clusters(config)
        self.timeout_s = timeout_s
        self._endpoints: dict[str, tuple[str, float]] = {}
        self._refreshing: dict[str, asyncio.Task[None]] = {}
        self._session: aiohttp.ClientSession | None = None
        query = config.query
        self.policy = EndpointPolicy(
            allowed_hosts=query.allowed_hosts,
            bootstrap_hosts=bootstrap_hosts(self.clusters.values()),
            https_only=bool(query.ca_file or query.tls_cert_file),
        )
        #: headers every request carries (the token: read on first use)
        self._headers: dict[str, str] | None = None
        self._ssl: ssl.SSLContext | bool = True

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

    async def pause_replication(
        self, region: str, paused: bool = True, *, origins: Sequence[str] | None = None
    ) -> dict[str, Any]:
        """Pause (or resume) replication into ``region``: every origin region's service
        (``origins``, default every other region) stops (or resumes) pushing its events
        and heartbeats there. Each origin's service must be reachable; the pause lasts
        until resumed or until that service restarts."""
        if region not in self.config.regions:
            raise UnknownRegion(region, self.config.regions)
        others = [r for r in self.config.regions if r != region]
        chosen = others if origins is None else list(origins)
        for origin in chosen:
            if origin not in self.config.regions or origin == region:
                raise InvalidInput(
                    f"origin {origin!r:.60}: name other configured regions than {region} "
                    f"({', '.join(others)})"
                )
        for origin in chosen:
            service = embedded(origin)
            if service is not None:
                service.pause_replication(paused, region)
            else:
                await self._get(origin, "/v1/replication", method="POST",
                                body={"paused": paused, "into": region})
        return {"region": region, "replication_paused": paused, "origins": chosen}

    async def repair(
        self, origin: str, into: str, starts: Mapping[int, int], *, timeout_s: float
    ) -> dict[str, Any]:
        """Ask ``origin``'s service to copy into ``into`` what it may hold of
        ``origin``'s events from ``starts`` (partition -> first offset) to its topic's
        end (``POST /v1/repair``, admin token; :func:`~edgebus.region.catch_up.copy_missing`):
        the catch-up's report. ``timeout_s`` bounds the wait for it beyond the client's
        own timeout."""
        service = embedded(origin)
        if service is not None:
            return await service.repair_into(into, starts)
        body = {"into": into, "from": {str(p): o for p, o in sorted(starts.items())}}
        return await self._get(origin, "/v1/repair", method="POST", body=body,
                               extra_s=timeout_s)

    async def checksums(self, region: str) -> dict[str, Any]:
        """The region's positions and per-bucket digests of one snapshot
        (``GET /v1/checksums``, admin token): ``region, positions, buckets, keys``."""
        return await self._get(region, "/v1/checksums")

    async def status(self, region: str) -> dict[str, Any]:
        """The region service's status document (with only a read token configured,
        its health part, ``GET /v1/health``: what discovery and ``edgebus status``
        show, without broker addresses, store path, pid and internals)."""
        service = embedded(region)
        if service is not None:
            return await service.status()
        path = HEALTH_PATH if self.config.query.client_role() == "read" else "/v1/status"
        return await self._get(region, path)

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
        topic = service_topic(region)
        records = await read_to_end(self.config.kafka, self.clusters[region], topic)
        url = None
        for record in records:
            if record.key != ANNOUNCEMENT_KEY or not record.value:
                continue  # another record, or a tombstone (nothing announced)
            try:
                announcement = decode_announcement(record.value)
            except DecodeError as e:
                problem: str | None = str(e)
            else:
                problem = (
                    f"it announces region {announcement.region[:80]!r}"
                    if announcement.region != region
                    else self.policy.problem(announcement.url)
                )
            if problem is not None:
                log.warning(
                    "%s: skipped the service announcement at partition %s offset %s of %s: %s",
                    region, record.partition, record.offset, topic, problem,
                )
                continue
            url = announcement.url
        if not url:
            raise RegionUnavailable(
                f"No region service has announced itself for {region} (topic "
                f"{topic} on {self.clusters[region]}). Start one with "
                f"`edgebus region run --region {region}`."
            )
        self._endpoints[region] = (url, time.monotonic())
        return str(url)

    def _http(self) -> aiohttp.ClientSession:
        """The HTTP session; the token and the TLS settings are read on first use."""
        if self._session is None:
            query = self.config.query
            role = query.client_role()
            token = query.token(role) if role is not None else None
            self._headers = {"Authorization": f"Bearer {token}"} if token else {}
            if query.ca_file:
                try:
                    self._ssl = ssl.create_default_context(cafile=query.ca_file)
                except (OSError, ssl.SSLError) as e:
                    raise ConfigError(
                        f"Cannot load query.ca_file ({query.ca_file}): {e}. Give the PEM "
                        "certificate of the CA that signed the region services' certificates."
                    ) from None
            self._session = aiohttp.ClientSession()
        return self._session

    async def _get(
        self,
        region: str,
        path: str,
        params: dict[str, str] | None = None,
        *,
        method: str = "GET",
        body: dict[str, Any] | None = None,
        extra_s: float = 0.0,
    ) -> dict[str, Any]:
        session = self._http()
        timeout = aiohttp.ClientTimeout(total=self.timeout_s + extra_s)
        for attempt in (0, 1):
            url = await self.endpoint(region, refresh=attempt > 0)
            try:
                async with session.request(
                    method, url + path, params=params, timeout=timeout, json=body,
                    headers=self._headers, ssl=self._ssl, allow_redirects=False,
                ) as response:
                    return _answer(region, url, response.status, await response.read(),
                                   self.config.query.client_role())
            except (TimeoutError, aiohttp.ClientError, OSError) as e:
                if attempt:
                    raise RegionUnavailable(
                        f"The {region} region service announced at {url} does not answer "
                        f"({e or type(e).__name__}). Is `edgebus region run --region {region}` "
                        "still running? Start it again."
                    ) from e
        raise AssertionError("unreachable")


def _answer(region: str, url: str, status: int, body: bytes, role: str | None) -> dict[str, Any]:
    """A query endpoint's answer as a JSON object; its refusals as errors saying what to
    fix (``role``: the token the request carried, if any)."""
    data = _json_object(body)
    if data is None:  # not an edgebus query endpoint
        raise RegionUnavailable(
            f"{region} service at {url} answered {status} with something other than a "
            f"JSON object: {body[:200]!r}"
        )
    if status == 409 and data.get("served") is False:
        return data  # not fresh enough in time: the caller decides
    if status in (401, 403):
        sent = (f"this client sent its {role} token (query.{role}_token_env or "
                f"query.{role}_token_file)" if role else "this client has no token configured "
                "(query.read_token_env / query.admin_token_env or their _file keys)")
        raise ConfigError(
            f"{region} service at {url} refused the request ({status}): "
            f"{str(data.get('error', ''))[:300]} ({sent})"
        )
    if status >= 300:
        raise RegionUnavailable(
            f"{region} service at {url} answered {status}: {data.get('error', body[:200])}"
        )
    return data


def _json_object(body: bytes) -> dict[str, Any] | None:
    """``body`` as a JSON object, or None if it is not one."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None
