"""The region query interface: JSON over HTTP, served by every region service.

Clients in other processes find a region's endpoint on the compacted topic
``edgebus.<R>.service`` (see :mod:`edgebus.sdk.region_client`). Endpoints:

| method and path | role | answer |
| --- | --- | --- |
| ``GET /v1/keys/{key}`` | read | the key's state: ``key, region, exists, value, |
| | | version, origin, hlc, event_id``, plus ``consistency, session_token, |
| | | staleness_ms, waited_ms, served``. Query: ``consistency`` (eventual, causal, |
| | | bounded_staleness), ``session`` (token), ``staleness_threshold_ms``, |
| | | ``max_versions_behind``, ``wait_ms``. 409 when the region cannot serve it in |
| | | time: ``reason`` session_not_covered (``missing``) or staleness_bound_exceeded |
| ``GET /v1/keys?start=K&limit=N`` | read | up to N states in key order from K (``next`` |
| | | resumes; what the read role may read key by key) |
| ``GET /v1/health`` | read | the health part of ``/v1/status`` (what discovery needs) |
| ``POST /v1/replication`` | admin | body ``{"paused": true|false, "into": R}``: pause or |
| | | resume pushing this region's events to R, or to every region without ``into`` |
| | | (maintenance, fault drills) |
| ``POST /v1/repair`` | admin | body ``{"into": R, "from": {"<partition>": <first offset>}}``: |
| | | copy into R what it may hold of this region's events from those offsets to the |
| | | topic's end now, even while replication into R is paused; answers the report |
| | | (``examined, copied, refused, watermarks, starts, ends, reach``; |
| | | :mod:`edgebus.region.catch_up`, ``edgebus repair``) |
| ``GET /v1/status`` | admin | health, lag, positions, frontier, broker, store, pid, |
| | | counters |
| ``GET /v1/checksums`` | admin | positions and per-bucket digests of one snapshot |
| ``GET /metrics`` | admin | Prometheus text format (``edgebus.prometheus``) |

Keys are URL-path-encoded. Errors are JSON ``{"error": "..."}`` with a 4xx/5xx status.

Who may call (``query`` config, :class:`QueryAuth`; docs/security.md): with a token
configured, every request needs ``Authorization: Bearer <token>``; the read token calls
read routes, the admin token every route. No token or a wrong one: 401 (with
``WWW-Authenticate: Bearer``); the read token on an admin route: 403. Tokens are
compared in constant time and never logged. With no token configured the endpoint is
open as before, but it listens on loopback addresses only and answers only requests
whose ``Host`` is loopback (a web page that rebinds its own name to 127.0.0.1 gets 403).
With ``query.tls_cert_file`` and ``tls_key_file`` it serves HTTPS and announces an
``https`` URL.

Every request is untrusted input, answered in bounded time and memory:

* a request whose client disconnects is cancelled at once (a causal or bounded read's
  wait, up to ``wait_ms``, does not run on for nobody);
* at most ``reads.max_concurrent_requests`` requests run at once; one more is answered
  503 with ``Retry-After`` and ``{"error", "limit", "key"}`` (the SDK counts the region
  as unavailable for that read and routes to another one) - ``/metrics`` is not
  counted, so that an overloaded service can still be watched;
* a route that changes state (``POST /v1/replication``, ``POST /v1/repair``) takes a
  JSON object of at most :data:`MAX_JSON_BODY_BYTES` (``/v1/repair``:
  :data:`MAX_REPAIR_BODY_BYTES`, room for an offset per partition) with
  ``Content-Type: application/json`` and nothing else
  (415 otherwise, 400 without a body: no cross-site form can post it); no other route
  takes a request body: one with a body gets 400 (the body is not read and the
  connection is closed); a query parameter an endpoint does not know, or one given
  twice, gets 400 naming the parameters it takes (a typo such as ``consistancy`` must
  not silently read at another level);
* an error the service did not expect is 500 ``{"error": "internal error: ..."}``, its
  traceback only in the service's log.
"""

from __future__ import annotations

import asyncio
import difflib
import hmac
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

import orjson
from aiohttp import web

from connectors.base import Store
from edgebus.config import EdgeConfig, QueryConfig
from edgebus.core.freshness import ReadRequest
from edgebus.errors import ConfigError, EdgebusError, InvalidInput
from edgebus.prometheus import metrics_response
from edgebus.region.applier import state_row
from edgebus.region.catch_up import REPAIR_EXAMPLE, parse_repair_body
from edgebus.server.metrics import RegionMetrics
from edgebus.server.registry import EmbeddedRegion
from edgebus.wire.announcement import is_loopback

__all__ = ["HEALTH_FIELDS", "ROLES", "QueryAuth", "QueryHost", "Role", "serve"]

log = logging.getLogger(__name__)

#: the most states one scan answers
MAX_SCAN = 10_000
#: the largest request body aiohttp would read (only a mutating route's is read)
MAX_BODY_BYTES = 64 * 1024
#: the largest JSON body a mutating route takes
MAX_JSON_BODY_BYTES = 4 * 1024
#: the largest JSON body ``POST /v1/repair`` takes (an offset for each of up to 1000
#: partitions)
MAX_REPAIR_BODY_BYTES = 32 * 1024
#: seconds a client told "busy" is asked to wait before trying this region again
RETRY_AFTER_S = 1
LIMIT_KEY = "reads.max_concurrent_requests"

#: route name -> the query parameters it takes (None: any, for Prometheus scrapers)
_PARAMS: dict[str, frozenset[str] | None] = {
    "key": frozenset({"consistency", "session", "staleness_threshold_ms",
                      "max_versions_behind", "wait_ms"}),
    "scan": frozenset({"start", "limit"}),
    "health": frozenset(),
    "status": frozenset(),
    "checksums": frozenset(),
    "replication": frozenset(),
    "repair": frozenset(),
    "metrics": None,
}
#: routes outside the concurrency bound
_UNCOUNTED = frozenset({"metrics"})

Role = Literal["read", "admin"]
#: route name -> the role it needs when tokens are configured (a path no route has:
#: read, so that a caller with a token gets its 404 or 405)
ROLES: dict[str, Role] = {
    "key": "read", "scan": "read", "health": "read",
    "status": "admin", "checksums": "admin", "metrics": "admin", "replication": "admin",
    "repair": "admin",
}
#: routes that change state -> an example of the JSON body they take
_MUTATING: dict[str, str] = {"replication": '{"paused": true}', "repair": REPAIR_EXAMPLE}
#: mutating routes that take a larger body than MAX_JSON_BODY_BYTES
_BODY_LIMITS: dict[str, int] = {"repair": MAX_REPAIR_BODY_BYTES}
#: what ``/v1/health`` answers of ``/v1/status``: health and progress, no broker
#: addresses, store path, pid, failure text or component internals
HEALTH_FIELDS = (
    "region", "healthy", "rebuilding", "positions_past_end", "positions", "end_offsets",
    "lag", "keys", "store_bytes", "url", "frontier", "staleness_ms", "watermark_age_ms",
    "replication_paused", "replication_paused_to", "causal_buffer", "uptime_s",
)


class QueryHost(EmbeddedRegion, Protocol):
    """What the query endpoint serves from: a region service (what an SDK in its own
    process calls directly, and its store for scans and checksums)."""

    @property
    def store(self) -> Store:
        """The region's store (scans and checksums read it directly)."""

    @property
    def config(self) -> EdgeConfig:
        """The region's config (``reads.max_concurrent_requests``)."""


class QueryAuth:
    """The read and admin tokens of an endpoint, and what a request's
    ``Authorization`` header may call (tokens compared in constant time; never shown)."""

    def __init__(self, read: str | None = None, admin: str | None = None) -> None:
        self._read = read.encode() if read else None
        self._admin = admin.encode() if admin else None
        if self._read is not None and _same(self._read, self._admin):
            raise ConfigError(
                "The query endpoint's read and admin tokens are the same, so every reader "
                "would be an admin: give query.read_token_* and query.admin_token_* "
                "different tokens"
            )

    @classmethod
    def from_config(cls, query: QueryConfig) -> QueryAuth:
        """The tokens ``query`` names, read now (ConfigError: unset, unreadable, short)."""
        return cls(query.token("read"), query.token("admin"))

    @property
    def enabled(self) -> bool:
        """Whether any token is configured (else every request is let in)."""
        return self._read is not None or self._admin is not None

    def describe(self) -> dict[str, bool]:
        """Which tokens are configured (for ``/v1/status``; never the tokens)."""
        return {"read_token": self._read is not None, "admin_token": self._admin is not None}

    def __repr__(self) -> str:
        return "QueryAuth(" + ", ".join(f"{k}={'set' if v else 'none'}"
                                        for k, v in self.describe().items()) + ")"

    def refusal(self, needs: Role, authorization: str | None) -> tuple[int, str] | None:
        """(401 or 403, what to do) when a request with this ``Authorization`` header
        may not call a route that ``needs`` a role; None when it may."""
        if not self.enabled:
            return None
        scheme, _, token = (authorization or "").strip().partition(" ")
        token = token.strip()
        wanted = "the admin token" if needs == "admin" else "the read or the admin token"
        if scheme.lower() != "bearer" or not token:
            return 401, (f"this endpoint needs a token: send 'Authorization: Bearer <token>' "
                         f"with {wanted} of the region (edgebus clients: set "
                         "query.read_token_env or query.admin_token_env, or their _file keys)")
        given = token.encode("utf-8", "surrogateescape")
        is_admin, is_read = _same(given, self._admin), _same(given, self._read)
        if not (is_admin or is_read):
            return 401, (f"the bearer token is not {wanted} of this region: check the "
                         "token the client's query.*_token_env or query.*_token_file holds")
        if needs == "admin" and not is_admin:
            if self._admin is None:
                return 403, ("this route needs the admin token and this service has none: "
                             "set query.admin_token_env or query.admin_token_file where it runs")
            return 403, ("this route needs the admin token (query.admin_token_env or "
                         "query.admin_token_file); the read token reads keys and health only")
        return None


def _same(given: bytes, expected: bytes | None) -> bool:
    """``given == expected`` in time that does not depend on where they differ."""
    return expected is not None and hmac.compare_digest(given, expected)


def _host_refusal(request: web.Request) -> str | None:
    """Without tokens: why a request addressed to another name than a loopback one is
    refused (a web page whose name was rebound to 127.0.0.1), or None."""
    given = request.headers.get("Host")
    if given is None:
        return None
    try:
        host = urlsplit(f"//{given}").hostname or ""
    except ValueError:
        host = ""
    if is_loopback(host):
        return None
    return (f"Host {given[:80]!r} is not a loopback name: without tokens this endpoint "
            "answers only requests to 127.0.0.1, ::1 or localhost (configure query tokens "
            "to serve it under other names)")


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
        self.refused_auth = 0

    def to_dict(self) -> dict[str, int]:
        return {
            "in_flight": self.in_flight,
            "max_concurrent_requests": self.limit,
            "cancelled": self.cancelled,
            "refused_busy": self.refused_busy,
            "refused_input": self.refused_input,
            "refused_auth": self.refused_auth,
        }


class _Endpoints:
    """The handlers of one region service's endpoint."""

    def __init__(self, service: QueryHost, auth: QueryAuth, tls: bool) -> None:
        self.service = service
        self.auth = auth
        self.tls = tls
        self.metrics = RegionMetrics(service)
        self.load = _Load(service.config.reads.max_concurrent_requests)

    async def get_key(self, request: web.Request) -> web.Response:
        read = ReadRequest.from_params(request.match_info["key"], request.query)
        result = await self.service.read_at(read)
        return _json(result, 200 if result["served"] else 409)

    async def replication(self, request: web.Request) -> web.Response:
        body = await _json_body(request, frozenset({"paused", "into"}))
        paused, into = body.get("paused"), body.get("into")
        if not isinstance(paused, bool) or not (into is None or isinstance(into, str)):
            return _json({"error": 'pass {"paused": true} or {"paused": false}, and '
                                   'optionally "into": a region'}, 400)
        self.service.pause_replication(paused, into)
        return _json({"region": self.service.region, "replication_paused": paused,
                      "into": into})

    async def repair(self, request: web.Request) -> web.Response:
        body = await _json_body(request, frozenset({"into", "from"}), MAX_REPAIR_BODY_BYTES)
        into, starts = parse_repair_body(body, self.service.region, self.service.config)
        report = await self.service.repair_into(into, starts)
        return _json({"region": self.service.region, **report})

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
        document["query"] = {**self.load.to_dict(), **self.auth.describe(), "tls": self.tls}
        return _json(document)

    async def health(self, request: web.Request) -> web.Response:
        document = await self.service.status()
        return _json({name: document[name] for name in HEALTH_FIELDS if name in document})

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


def _guard(load: _Load, auth: QueryAuth) -> Any:
    """The outer middleware: refuse callers without the role a route needs and what no
    endpoint takes, bound the requests running at once, count those cancelled by their
    client leaving."""

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        route = request.match_info.route.name
        refused = _refused(request, route, auth)
        if refused is not None:
            status, message = refused
            if status in (401, 403):
                load.refused_auth += 1
            else:
                load.refused_input += 1
            response = _json({"error": message}, status)
            if status == 401:
                response.headers["WWW-Authenticate"] = 'Bearer realm="edgebus"'
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


def _refused(
    request: web.Request, route: str | None, auth: QueryAuth
) -> tuple[int, str] | None:
    """(status, why) a request is refused before it runs: who calls first, then what
    it sends; None when it is not."""
    if auth.enabled:
        refusal = auth.refusal(ROLES.get(route or "", "read"),
                               request.headers.get("Authorization"))
        if refusal is not None:
            return refusal
    else:
        wrong_host = _host_refusal(request)
        if wrong_host is not None:
            return 403, wrong_host
    return _refusal(request, route)


def _refusal(request: web.Request, route: str | None) -> tuple[int, str] | None:
    """(status, why) a request's body or parameters are refused (None: they are not)."""
    where = f"{request.method} {request.path[:200]}"
    example = _MUTATING.get(route or "")
    if example is not None:
        size = request.content_length
        if request.content_type != "application/json":
            return 415, (f"{where} takes a JSON body with 'Content-Type: application/json' "
                         f"(got {request.content_type[:80]!r}), e.g. {example}")
        if not request.body_exists:
            return 400, f"{where} takes a JSON body, e.g. {example}; none was sent"
        limit = _BODY_LIMITS.get(route or "", MAX_JSON_BODY_BYTES)
        if size is not None and size > limit:
            return 413, (f"{where}: a body of {size:,} bytes is over the "
                         f"{limit:,} it takes, e.g. {example}")
    elif request.body_exists:
        size = request.content_length
        got = f" ({size:,} bytes)" if size is not None else ""
        return 400, (f"{where} takes no request body{got}: pass its parameters in the query "
                     "string")
    allowed = _PARAMS.get(route or "")
    if route is None or allowed is None:
        return None
    for name in request.query:
        if name not in allowed:
            near = difflib.get_close_matches(name, sorted(allowed), n=1, cutoff=0.6)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            takes = ", ".join(sorted(allowed)) or "none"
            body = f" and a JSON body, e.g. {example}" if example else ""
            return 400, (f"{where} takes no parameter {name[:80]!r}{hint}; it takes: "
                         f"{takes}{body}")
        if len(request.query.getall(name)) > 1:
            return 400, f"{where}: parameter {name[:80]!r} is given more than once"
    return None


async def _json_body(
    request: web.Request, fields: frozenset[str], limit: int = MAX_JSON_BODY_BYTES
) -> dict[str, Any]:
    """A mutating route's body: a JSON object of at most ``limit`` bytes holding only
    ``fields`` (InvalidInput otherwise)."""
    where = f"{request.method} {request.path[:200]}"
    raw = await request.read()  # at most MAX_BODY_BYTES (aiohttp's 413 beyond)
    if len(raw) > limit:
        raise web.HTTPRequestEntityTooLarge(limit, len(raw),
                                            text=f"{where} takes at most "
                                                 f"{limit:,} bytes of JSON")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise InvalidInput(f"{where}: the body is not JSON ({str(e)[:120]})") from None
    if not isinstance(body, dict):
        raise InvalidInput(f"{where}: the body is a JSON {type(body).__name__}, not an object")
    unknown = sorted(str(name)[:80] for name in body if name not in fields)
    if unknown:
        raise InvalidInput(f"{where}: the body holds {', '.join(unknown)[:200]}; it takes "
                           f"only {', '.join(sorted(fields))}")
    return body


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


def _app(service: QueryHost, auth: QueryAuth, tls: bool) -> web.Application:
    endpoints = _Endpoints(service, auth, tls)
    app = web.Application(
        middlewares=[_guard(endpoints.load, auth), _errors], client_max_size=MAX_BODY_BYTES
    )
    app.router.add_get("/v1/keys/{key:.+}", endpoints.get_key, name="key")
    app.router.add_get("/v1/keys", endpoints.scan, name="scan")
    app.router.add_get("/v1/health", endpoints.health, name="health")
    app.router.add_get("/v1/status", endpoints.status, name="status")
    app.router.add_get("/v1/checksums", endpoints.checksums, name="checksums")
    app.router.add_post("/v1/replication", endpoints.replication, name="replication")
    app.router.add_post("/v1/repair", endpoints.repair, name="repair")
    app.router.add_get("/metrics", endpoints.prometheus, name="metrics")
    return app


async def serve(service: QueryHost, listen: str) -> tuple[web.AppRunner, str]:
    """Start serving on ``host:port`` (port 0: any free port); returns runner and URL
    (``https`` with ``query.tls_cert_file``). ConfigError when a token or a TLS file
    cannot be read, or when ``host`` is not loopback and no token is configured."""
    host, _, port_text = listen.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        port = int(port_text)
    except ValueError:
        raise InvalidInput(f"--listen {listen!r} is not HOST:PORT (e.g. 127.0.0.1:8700)") from None
    query = service.config.query
    auth = QueryAuth.from_config(query)
    if not auth.enabled and not is_loopback(host):
        raise ConfigError(
            f"Refusing to serve the query endpoint on {host!r} (--listen {listen}) without "
            "tokens: anyone who reaches it could read every key and pause replication. Set "
            "query.read_token_env (or query.read_token_file) and query.admin_token_env (or "
            "query.admin_token_file), tokens of at least 16 characters, or listen on "
            "127.0.0.1, ::1 or localhost."
        )
    tls = _tls_context(query)
    # handler_cancellation: a request whose client disconnected is cancelled
    runner = web.AppRunner(_app(service, auth, tls is not None), access_log=None,
                           handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=tls)
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
    shown = f"[{bound[0]}]" if ":" in str(bound[0]) else bound[0]
    return runner, f"{'https' if tls else 'http'}://{shown}:{bound[1]}"


def _tls_context(query: QueryConfig) -> ssl.SSLContext | None:
    """The server's TLS settings from ``query.tls_cert_file`` and ``tls_key_file``."""
    if query.tls_cert_file is None or query.tls_key_file is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        # a key protected by a passphrase is refused, never prompted for on a terminal
        context.load_cert_chain(query.tls_cert_file, query.tls_key_file, password=_no_password)
    except (OSError, ssl.SSLError, ValueError) as e:
        raise ConfigError(
            f"Cannot serve HTTPS with query.tls_cert_file ({query.tls_cert_file}) and "
            f"query.tls_key_file ({query.tls_key_file}): {e}. Give a PEM certificate chain "
            "and its private key, unencrypted (mode 0600)."
        ) from None
    return context


def _no_password() -> str:
    raise ValueError("the private key is encrypted; give one without a passphrase")
