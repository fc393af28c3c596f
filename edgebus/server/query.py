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

Every request is untrusted input, answered in bounded time and memory:

* a request whose client disconnects is cancelled at once (a causal or bounded read's
  wait, up to ``wait_ms``, does not run on for nobody);
* at most ``reads.max_concurrent_requests`` requests run at once; one more is answered
  503 with ``Retry-After`` and ``{"error", "limit", "key"}`` (the SDK counts the region
  as unavailable for that read and routes to another one) - ``/metrics`` is not
  counted, so that an overloaded service can still be watched;
* no endpoint takes a request body: one with a body gets 400 (the body is not read and
  the connection is closed); a query parameter an endpoint does not know, or one given
  twice, gets 400 naming the parameters it takes (a typo such as ``consistancy`` must
  not silently read at another level);
* an error the service did not expect is 500 ``{"error": "internal error: ..."}``, its
  traceback only in the service's log.
"""

from __future__ import annotations

import asyncio
import difflib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import orjson
from aiohttp import web

from connectors.base import Store
from edgebus.config import EdgeConfig
from edgebus.core.freshness import ReadRequest
from edgebus.errors import EdgebusError, InvalidInput
from edgebus.prometheus import metrics_response
from edgebus.region.applier import state_row
from edgebus.server.metrics import RegionMetrics
from edgebus.server.registry import EmbeddedRegion

__all__ = ["QueryHost", "serve"]

log = logging.getLogger(__name__)

#: the most states one scan answers
MAX_SCAN = 10_000
#: the largest request body aiohttp would read (none is read: no endpoint takes one)
MAX_BODY_BYTES = 64 * 1024
#: seconds a client told "busy" is asked to wait before trying this region again
RETRY_AFTER_S = 1
LIMIT_KEY = "reads.max_concurrent_requests"

#: route name -> the query parameters it takes (None: any, for Prometheus scrapers)
_PARAMS: dict[str, frozenset[str] | None] = {
    "key": frozenset({"consistency", "session", "staleness_threshold_ms",
                      "max_versions_behind", "wait_ms"}),
    "scan": frozenset({"start", "limit"}),
    "status": frozenset(),
    "checksums": frozenset(),
    "replication": frozenset({"paused"}),
    "metrics": None,
}
#: routes outside the concurrency bound
_UNCOUNTED = frozenset({"metrics"})


class QueryHost(EmbeddedRegion, Protocol):
    """What the query endpoint serves from: a region service (what an SDK in its own
    process calls directly, and its store for scans and checksums)."""

    @property
    def store(self) -> Store:
        """The region's store (scans and checksums read it directly)."""

    @property
    def config(self) -> EdgeConfig:
        """The region's config (``reads.max_concurrent_requests``)."""


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=orjson.dumps(data), status=status, content_type="application/json"
    )


class _Load:
    """Requests running now, the bound, and what was refused (in ``/v1/status``)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0
        self.cancelled = 0
        self.refused_busy = 0
        self.refused_input = 0

    def to_dict(self) -> dict[str, int]:
        return {
            "in_flight": self.in_flight,
            "max_concurrent_requests": self.limit,
            "cancelled": self.cancelled,
            "refused_busy": self.refused_busy,
            "refused_input": self.refused_input,
        }


class _Endpoints:
    """The handlers of one region service's endpoint."""

    def __init__(self, service: QueryHost) -> None:
        self.service = service
        self.metrics = RegionMetrics(service)
        self.load = _Load(service.config.reads.max_concurrent_requests)

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
        document = await self.service.status()
        document["query"] = self.load.to_dict()
        return _json(document)

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


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _guard(load: _Load) -> Any:
    """The outer middleware: refuse what no endpoint takes, bound the requests running
    at once, count those cancelled by their client leaving."""

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        route = request.match_info.route.name
        refusal = _refusal(request, route)
        if refusal is not None:
            load.refused_input += 1
            response = _json({"error": refusal}, 400)
            if request.body_exists:
                response.force_close()  # its body is never read: do not wait for it
            return response
        if route in _UNCOUNTED:
            return await handler(request)
        if load.in_flight >= load.limit:
            load.refused_busy += 1
            response = _json({
                "error": f"busy: {load.limit} requests are running already ({LIMIT_KEY}); "
                         f"retry after {RETRY_AFTER_S} s or read from another region",
                "limit": load.limit,
                "key": LIMIT_KEY,
            }, 503)
            response.headers["Retry-After"] = str(RETRY_AFTER_S)
            return response
        load.in_flight += 1
        try:
            return await handler(request)
        except asyncio.CancelledError:
            load.cancelled += 1  # the client left: its wait ends here
            raise
        finally:
            load.in_flight -= 1

    return guard


def _refusal(request: web.Request, route: str | None) -> str | None:
    """Why a request is refused before it runs (None: it is not)."""
    where = f"{request.method} {request.path[:200]}"
    if request.body_exists:
        size = request.content_length
        got = f" ({size:,} bytes)" if size is not None else ""
        return f"{where} takes no request body{got}: pass its parameters in the query string"
    allowed = _PARAMS.get(route or "")
    if route is None or allowed is None:
        return None
    for name in request.query:
        if name not in allowed:
            near = difflib.get_close_matches(name, sorted(allowed), n=1, cutoff=0.6)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            takes = ", ".join(sorted(allowed)) or "none"
            return f"{where} takes no parameter {name[:80]!r}{hint}; it takes: {takes}"
        if len(request.query.getall(name)) > 1:
            return f"{where}: parameter {name[:80]!r} is given more than once"
    return None


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """HTTP errors and refused input as JSON ``{"error": ...}``; never a traceback."""
    try:
        return await handler(request)
    except web.HTTPException as e:
        return _json({"error": e.text or e.reason}, e.status)
    except InvalidInput as e:
        return _json({"error": str(e)}, 400)
    except EdgebusError as e:
        return _json({"error": str(e)}, 503 if e.retriable else 500)
    except (ConnectionResetError, asyncio.CancelledError):
        raise  # the client left
    except Exception as e:
        log.exception("query %s %s failed", request.method, request.path[:200])
        return _json({"error": f"internal error: {type(e).__name__} (see the service's log)"},
                     500)


def _app(service: QueryHost) -> web.Application:
    endpoints = _Endpoints(service)
    app = web.Application(
        middlewares=[_guard(endpoints.load), _errors], client_max_size=MAX_BODY_BYTES
    )
    app.router.add_get("/v1/keys/{key:.+}", endpoints.get_key, name="key")
    app.router.add_get("/v1/keys", endpoints.scan, name="scan")
    app.router.add_get("/v1/status", endpoints.status, name="status")
    app.router.add_get("/v1/checksums", endpoints.checksums, name="checksums")
    app.router.add_post("/v1/replication", endpoints.replication, name="replication")
    app.router.add_get("/metrics", endpoints.prometheus, name="metrics")
    return app


async def serve(service: QueryHost, listen: str) -> tuple[web.AppRunner, str]:
    """Start serving on ``host:port`` (port 0: any free port); returns runner and URL."""
    host, _, port_text = listen.rpartition(":")
    try:
        port = int(port_text)
    except ValueError:
        raise InvalidInput(f"--listen {listen!r} is not HOST:PORT (e.g. 127.0.0.1:8700)") from None
    # handler_cancellation: a request whose client disconnected is cancelled
    runner = web.AppRunner(_app(service), access_log=None, handler_cancellation=True)
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
