"""The region query interface: JSON over HTTP, served by every region service.

Clients in other processes find a region's endpoint on the compacted topic
``edgebus.<R>.service`` (see :mod:`edgebus.sdk.region_client`). Endpoints:

| method and path | answer |
| --- | --- |
| ``GET /v1/keys/{key}`` | the key's state: ``key, region, exists, value, version, |
| | origin, hlc, event_id``, plus ``consistency, session_token, staleness_ms, |
| | waited_ms, served``. Query: ``consistency`` (eventual, causal, |
| | bounded_staleness), ``session`` (token), ``staleness_threshold_ms``, |
| | ``max_versions_behind``, ``wait_ms``. 409 when the region cannot serve it in |
| | time: ``reason`` session_not_covered (``missing``) or staleness_bound_exceeded |
| ``POST /v1/replication?paused=true|false`` | pause or resume copying from other |
| | regions (maintenance, fault drills) |
| ``GET /v1/keys?start=K&limit=N`` | up to N states in key order from K (``next`` resumes) |
| ``GET /v1/status`` | health, lag, positions, frontier, store size, counters |
| ``GET /v1/checksums`` | positions and per-bucket digests of one consistent snapshot |
| ``GET /metrics`` | Prometheus text format (``edgebus.prometheus``; docs/operations.md) |

Keys are URL-path-encoded. Errors are JSON ``{"error": "..."}`` with a 4xx/5xx status.
"""

from __future__ import annotations

from typing import Any, Protocol

import orjson
from aiohttp import web

from connectors.base import Store
from edgebus.core.freshness import ReadRequest
from edgebus.errors import InvalidInput
from edgebus.prometheus import metrics_response
from edgebus.region.applier import state_row
from edgebus.server.metrics import RegionMetrics
from edgebus.server.registry import EmbeddedRegion

__all__ = ["QueryHost", "serve"]

#: the most states one scan answers
MAX_SCAN = 10_000


class QueryHost(EmbeddedRegion, Protocol):
    """What the query endpoint serves from: a region service (what an SDK in its own
    process calls directly, and its store for scans and checksums)."""

    @property
    def store(self) -> Store:
        """The region's store (scans and checksums read it directly)."""


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=orjson.dumps(data), status=status, content_type="application/json"
    )


class _Endpoints:
    """The handlers of one region service's endpoint."""

    def __init__(self, service: QueryHost) -> None:
        self.service = service
        self.metrics = RegionMetrics(service)

    async def get_key(self, request: web.Request) -> web.Response:
        read = ReadRequest.from_params(request.match_info["key"], request.query)
        result = await self.service.read_at(read)
        return _json(result, 200 if result["served"] else 409)

    async def replication(self, request: web.Request) -> web.Response:
        paused = request.query.get("paused", "").lower()
        if paused not in ("true", "false"):
            return _json({"error": "pass paused=true or paused=false"}, 400)
        self.service.pause_replication(paused == "true")
        return _json({"region": self.service.region, "replication_paused": paused == "true"})

    async def scan(self, request: web.Request) -> web.Response:
        start = request.query.get("start") or None
        try:
            limit = min(int(request.query.get("limit", "1000")), MAX_SCAN)
        except ValueError:
            return _json({"error": "limit must be an integer"}, 400)
        rows: list[dict[str, Any]] = []
        next_key = None
        async for state in self.service.store.scan(start):
            if len(rows) >= limit:
                next_key = state.key
                break
            rows.append(state_row(state, self.service.region))
        return _json({"region": self.service.region, "rows": rows, "next": next_key})

    async def status(self, request: web.Request) -> web.Response:
        return _json(await self.service.status())

    async def checksums(self, request: web.Request) -> web.Response:
        sums = await self.service.store.checksums()
        return _json(
            {
                "region": self.service.region,
                "positions": [[t, p, o] for (t, p), o in sorted(sums.positions.items())],
                "buckets": {str(b): h for b, h in sums.buckets.items()},
                "keys": sums.keys,
            }
        )

    async def prometheus(self, request: web.Request) -> web.Response:
        return metrics_response(await self.metrics.render())


@web.middleware
async def _errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """HTTP errors and refused input as JSON ``{"error": ...}``."""
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except web.HTTPException as e:
        return _json({"error": e.text or e.reason}, e.status)
    except InvalidInput as e:
        return _json({"error": str(e)}, 400)


def _app(service: QueryHost) -> web.Application:
    app = web.Application(middlewares=[_errors])
    endpoints = _Endpoints(service)
    app.router.add_get("/v1/keys/{key:.+}", endpoints.get_key)
    app.router.add_get("/v1/keys", endpoints.scan)
    app.router.add_get("/v1/status", endpoints.status)
    app.router.add_get("/v1/checksums", endpoints.checksums)
    app.router.add_post("/v1/replication", endpoints.replication)
    app.router.add_get("/metrics", endpoints.prometheus)
    return app


async def serve(service: QueryHost, listen: str) -> tuple[web.AppRunner, str]:
    """Start serving on ``host:port`` (port 0: any free port); returns runner and URL."""
    host, _, port_text = listen.rpartition(":")
    try:
        port = int(port_text)
    except ValueError:
        raise InvalidInput(f"--listen {listen!r} is not HOST:PORT (e.g. 127.0.0.1:8700)") from None
    runner = web.AppRunner(_app(service), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host or "127.0.0.1", port)
    try:
        await site.start()
    except OSError as e:
        await runner.cleanup()
        raise InvalidInput(
            f"cannot listen on {listen}: {e.strerror}. Choose another --listen port "
            "(or 0 for any free one)."
        ) from e
    server: Any = site._server
    sockets = server.sockets if server is not None else []
    bound = sockets[0].getsockname() if sockets else (host, port)
    return runner, f"http://{bound[0]}:{bound[1]}"
