"""The region query interface: JSON over HTTP, served by every region service.

Clients in other processes find a region's endpoint on the compacted topic
``edgebus.<R>.service`` (see :mod:`edgebus.region.client`). Endpoints:

| method and path | answer |
| --- | --- |
| ``GET /v1/keys/{key}`` | the key's state: ``key, region, exists, value, version, |
| | origin, hlc, event_id`` |
| ``GET /v1/keys?start=K&limit=N`` | up to N states in key order from K (``next`` resumes) |
| ``GET /v1/status`` | health, lag, positions, frontier, store size, counters |
| ``GET /v1/checksums`` | positions and per-bucket digests of one consistent snapshot |

Keys are URL-path-encoded. Errors are JSON ``{"error": "..."}`` with a 4xx/5xx status.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from edgebus.errors import InvalidInput
from edgebus.region.applier import state_row

if TYPE_CHECKING:
    from edgebus.region.service import RegionService

__all__ = ["serve"]

MAX_SCAN = 10_000


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=orjson.dumps(data), status=status, content_type="application/json"
    )


def _app(service: RegionService) -> web.Application:
    app = web.Application()

    async def get_key(request: web.Request) -> web.Response:
        return _json(await service.read(request.match_info["key"]))

    async def scan(request: web.Request) -> web.Response:
        start = request.query.get("start") or None
        try:
            limit = min(int(request.query.get("limit", "1000")), MAX_SCAN)
        except ValueError:
            return _json({"error": "limit must be an integer"}, 400)
        rows: list[dict[str, Any]] = []
        next_key = None
        async for state in service.store.scan(start):
            if len(rows) >= limit:
                next_key = state.key
                break
            rows.append(state_row(state, service.region))
        return _json({"region": service.region, "rows": rows, "next": next_key})

    async def status(request: web.Request) -> web.Response:
        return _json(await service.status())

    async def checksums(request: web.Request) -> web.Response:
        sums = await service.store.checksums()
        return _json(
            {
                "region": service.region,
                "positions": [[t, p, o] for (t, p), o in sorted(sums.positions.items())],
                "buckets": {str(b): h for b, h in sums.buckets.items()},
                "keys": sums.keys,
            }
        )

    @web.middleware
    async def errors(request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            response: web.StreamResponse = await handler(request)
            return response
        except web.HTTPException as e:
            return _json({"error": e.text or e.reason}, e.status)
        except InvalidInput as e:
            return _json({"error": str(e)}, 400)

    app.middlewares.append(errors)
    app.router.add_get("/v1/keys/{key:.+}", get_key)
    app.router.add_get("/v1/keys", scan)
    app.router.add_get("/v1/status", status)
    app.router.add_get("/v1/checksums", checksums)
    return app


async def serve(service: RegionService, listen: str) -> tuple[web.AppRunner, str]:
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
