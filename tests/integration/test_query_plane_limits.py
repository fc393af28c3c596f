"""The region query plane under hostile or abandoned load (issue 16).

* A read waiting for freshness (``wait_ms`` up to 600,000) is cancelled when its client
  disconnects: 200 abandoned requests leave no task running in the service.
* At most ``reads.max_concurrent_requests`` requests run at once; one more is answered
  503 with ``Retry-After`` and a JSON error naming the limit and its key, and the SDK
  reads from another region instead.
* Bodies (oversized, bad, deep or non-object JSON; a body where none is taken, none or
  not JSON where one is), unknown or repeated parameters and malformed requests get
  400, 413 or 415 with a message, never a 500 or a traceback in the log.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from edgebus import EdgeBus
from edgebus.core.freshness import ReadRequest
from edgebus.errors import RegionUnavailable
from edgebus.sdk.region_client import RegionClient
from edgebus.server import registry
from edgebus.server.service import RegionService
from tests.integration.regions import eventually, make_regions

JSON = "application/json"
#: a read no region can serve before its wait ends: bounded staleness of a microsecond
LONG_WAIT = "/v1/keys/k?consistency=bounded_staleness&staleness_threshold_ms=0.001&wait_ms=600000"


@asynccontextmanager
async def waiting_requests(url: str, n: int) -> AsyncIterator[list[asyncio.StreamWriter]]:
    """``n`` connections, each with one long-waiting read sent; closed on exit without
    reading an answer (the client leaves)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    writers: list[asyncio.StreamWriter] = []
    try:
        for _ in range(n):
            _, writer = await asyncio.open_connection(host, port)
            writer.write(f"GET {LONG_WAIT} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            writers.append(writer)
        await asyncio.gather(*(w.drain() for w in writers))
        yield writers
    finally:
        for writer in writers:
            writer.close()
        await asyncio.gather(*(w.wait_closed() for w in writers), return_exceptions=True)


async def query_load(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with http.get(url + "/v1/status") as response:
        assert response.status == 200, await response.text()
        load: dict[str, Any] = (await response.json())["query"]
        return load


async def test_reads_abandoned_by_their_clients_stop_running(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    regions = make_regions(kafka_bootstrap, tmp_path)
    us = regions.us
    async with RegionService(us, regions.config, store=regions.store_url(us)) as service:
        assert service.url is not None
        url = service.url
        async with aiohttp.ClientSession() as http:
            await query_load(http, url)  # any task started lazily is started now
        baseline = len(asyncio.all_tasks())

        async with waiting_requests(url, 200), aiohttp.ClientSession() as http:
            async def all_waiting() -> bool:
                return (await query_load(http, url))["in_flight"] >= 201  # and this one

            await eventually(all_waiting, 30, "the 200 reads to wait in the service")
            assert len(asyncio.all_tasks()) >= baseline + 200
        # every client left: their reads must not run on for up to 600 s

        async def tasks_back() -> bool:
            return len(asyncio.all_tasks()) <= baseline + 5

        await eventually(tasks_back, 15, f"the service's tasks to return to {baseline}")
        async with aiohttp.ClientSession() as http:
            load = await query_load(http, url)
        assert load["in_flight"] == 1 and load["cancelled"] >= 200, load


async def test_requests_over_the_limit_get_503_and_the_sdk_reads_elsewhere(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    regions = make_regions(kafka_bootstrap, tmp_path)
    regions.config["reads"] = {"max_concurrent_requests": 2}
    us, eu = regions.us, regions.eu
    async with (
        RegionService(us, regions.config, store=regions.store_url(us)) as us_service,
        RegionService(eu, regions.config, store=regions.store_url(eu)),
        EdgeBus(regions.config, discovery=False) as bus,
    ):
        # us is reached over HTTP, as from another process; eu directly
        registry.unregister(us_service)
        assert us_service.url is not None
        url = us_service.url
        await bus.write("order:1", {"n": 1}, region=eu, replication_factor=1)

        async def in_eu() -> bool:
            return (await bus.read("order:1", eu)).exists

        await eventually(in_eu, 30, "eu to apply order:1")
        async with waiting_requests(url, 2), aiohttp.ClientSession() as http:

            async def busy() -> bool:
                async with http.get(url + "/v1/keys/order:1") as response:
                    return response.status == 503

            await eventually(busy, 30, "us to be busy with the two waiting reads")
            async with http.get(url + "/v1/keys/order:1") as response:
                assert response.status == 503
                assert response.headers["Retry-After"] == "1"
                error = await response.json()
            assert error["limit"] == 2 and error["key"] == "reads.max_concurrent_requests"
            assert "reads.max_concurrent_requests" in error["error"], error

            client = RegionClient(regions.edge_config())
            try:
                with pytest.raises(RegionUnavailable, match=r"503.*busy"):
                    await client.read_at(us, ReadRequest("order:1"))
            finally:
                await client.close()
            row = await bus.read("order:1", us)
            assert (row.exists, row.region, row.routed_from) == (True, eu, us), row
            # /metrics is outside the bound: a busy service can still be watched
            async with http.get(url + "/metrics") as response:
                assert response.status == 200

        async def served_again() -> bool:
            async with aiohttp.ClientSession() as http, http.get(
                url + "/v1/keys/order:1"
            ) as response:
                return response.status == 200

        await eventually(served_again, 15, "us to serve again once its clients left")


DEEP = b"[" * 2000 + b"]" * 2000  # under the 4 KiB a JSON body may have
FORM = "application/x-www-form-urlencoded"
CHUNKED = object()  # a body sent in chunks, without Content-Length: read, bounded
#: (method, path, body, content type, status, what the error says)
HOSTILE: list[tuple[str, str, Any, str | None, int, str]] = [
    ("POST", "/v1/replication", b"x" * (4 * 1024 * 1024), JSON, 413, "over the 4,096"),
    ("POST", "/v1/replication", CHUNKED, JSON, 413, "at most 4,096 bytes"),
    ("POST", "/v1/replication", b"{not json", JSON, 400, "the body is not JSON"),
    ("POST", "/v1/replication", DEEP, JSON, 400, "the body is not JSON"),
    ("POST", "/v1/replication", b'"a string"', JSON, 400, "a JSON str, not an object"),
    ("POST", "/v1/replication", b'{"paused": "yes"}', JSON, 400, '{"paused": true}'),
    ("POST", "/v1/replication", b'{"paused": true, "x": 1}', JSON, 400, "holds x"),
    ("POST", "/v1/replication", b"paused=true", FORM, 415, "application/json"),
    ("POST", "/v1/replication", b'{"paused": true}', None, 415, "application/json"),
    ("POST", "/v1/replication", None, None, 415, "takes a JSON body"),
    ("POST", "/v1/replication", None, JSON, 400, "none was sent"),
    ("POST", "/v1/replication?paused=true", b'{"paused": true}', JSON, 400,
     "no parameter 'paused'"),
    ("GET", "/v1/keys/k", b'{"consistency": "causal"}', None, 400, "no request body"),
    ("GET", "/v1/keys/k?consistancy=causal", None, None, 400, "did you mean 'consistency'"),
    ("GET", "/v1/keys/k?wait_ms=1&wait_ms=2", None, None, 400, "more than once"),
    ("GET", "/v1/keys/k?wait_ms=1e9", None, None, 400, "wait_ms must be from 0 to 600000"),
    ("GET", "/v1/keys/k?wait_ms=nan", None, None, 400, "finite"),
    ("GET", "/v1/keys/k?session=" + "A" * 100, None, None, 400, "Invalid session token"),
    ("GET", "/v1/keys/k?consistency=linearizable", None, None, 400, "consistency"),
    ("GET", "/v1/keys?limit=many", None, None, 400, "limit must be an integer"),
    ("GET", "/v1/status?verbose=1", None, None, 400, "takes no parameter 'verbose'"),
]


async def chunked() -> AsyncIterator[bytes]:
    for _ in range(10):
        yield b" " * 1024


async def test_hostile_requests_get_400_with_a_message(
    kafka_bootstrap: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    regions = make_regions(kafka_bootstrap, tmp_path)
    us = regions.us
    caplog.set_level(logging.ERROR)
    async with RegionService(us, regions.config, store=regions.store_url(us)) as service:
        assert service.url is not None
        url = service.url
        async with aiohttp.ClientSession() as http:
            for method, path, body, content_type, status, message in HOSTILE:
                headers = {"Content-Type": content_type} if content_type else {}
                data = chunked() if body is CHUNKED else body
                async with http.request(
                    method, url + path, data=data, headers=headers
                ) as response:
                    text = await response.text()
                    case = (path, repr(body)[:80], response.status, text)
                    assert response.status == status, case
                    assert message in (await response.json())["error"], case
            # a request that is not HTTP at all: aiohttp's own 400
            parts = urlsplit(url)
            reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
            writer.write(b"\x00\xff not http\r\n\r\n")
            await writer.drain()
            status_line = await asyncio.wait_for(reader.readline(), 10)
            writer.close()
            assert status_line.split()[1:2] == [b"400"], status_line
            # and the service still answers
            async with http.get(url + "/v1/keys/k") as response:
                assert response.status == 200 and (await response.json())["exists"] is False
            load = await query_load(http, url)
        assert load["refused_input"] >= 8, load
        assert not service.replication_paused
    # nothing the query plane logs as an error (aiohttp logs a handler's traceback)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR
              and r.name.startswith(("aiohttp", "edgebus.server.query"))]
    assert not errors, [r.getMessage() for r in errors]
