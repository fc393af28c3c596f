"""The authenticated query plane against a real region service (issue 17, item 6).

* With read and admin tokens (from environment variables): no token or a wrong one is
  401, the read token on an admin route 403, the right tokens 200; a bodiless or
  form-encoded POST to pause replication is refused even with the admin token.
* The SDK and the CLI send the configured token: the read token reads (and gets the
  health part of status), the admin token pauses replication, no token is told what
  to set.
* A hostile announcement (raw, on the service topic, naming a host not allowed) does not
  redirect the SDK.
* With a certificate and key the service serves HTTPS and announces an https URL; the
  SDK reads over it with ``query.ca_file``, and refuses it without.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaProducer

from edgebus import EdgeBus
from edgebus.config import load_config
from edgebus.core.freshness import ReadRequest
from edgebus.errors import ConfigError, RegionUnavailable
from edgebus.kafka.topics import service_topic
from edgebus.sdk.region_client import RegionClient
from edgebus.server import registry
from edgebus.server.service import RegionService
from edgebus.wire.announcement import ANNOUNCEMENT_KEY, Announcement, encode_announcement
from tests.integration.regions import Regions, eventually, make_regions

READ = "read-0123456789abcdef-token"
ADMIN = "admin-0123456789abcdef-token"
READ_ENV, ADMIN_ENV = "EDGEBUS_TEST_READ_TOKEN", "EDGEBUS_TEST_ADMIN_TOKEN"
TOKENS = {"read_token_env": READ_ENV, "admin_token_env": ADMIN_ENV}
READ_ROUTES = ("/v1/keys/k", "/v1/keys", "/v1/health")
ADMIN_ROUTES = ("/v1/status", "/v1/checksums", "/metrics")
JSON = {"Content-Type": "application/json"}


def with_query(regions: Regions, **query: Any) -> dict[str, Any]:
    return {**regions.config, "query": query}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def status_of(http: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> int:
    async with http.get(url, headers=headers) as response:
        await response.read()
        if response.status == 401:
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
        if response.status >= 400:
            assert "error" in json.loads(await response.read()), url
        return response.status


async def test_tokens_decide_who_calls_what(
    kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(READ_ENV, READ)
    monkeypatch.setenv(ADMIN_ENV, ADMIN)
    regions = make_regions(kafka_bootstrap, tmp_path)
    us = regions.us
    config = with_query(regions, **TOKENS)
    async with RegionService(us, config, store=regions.store_url(us)) as service:
        registry.unregister(service)  # reached over HTTP, as from another process
        assert service.url is not None and service.url.startswith("http://127.0.0.1:")
        url = service.url
        async with aiohttp.ClientSession() as http:
            for path in READ_ROUTES + ADMIN_ROUTES:
                assert await status_of(http, url + path, {}) == 401, path
                assert await status_of(http, url + path, bearer("x" * 20)) == 401, path
                assert await status_of(http, url + path, {"Authorization": READ}) == 401, path
                assert await status_of(http, url + path, bearer(ADMIN)) == 200, path
            for path in READ_ROUTES:
                assert await status_of(http, url + path, bearer(READ)) == 200, path
            for path in ADMIN_ROUTES:
                assert await status_of(http, url + path, bearer(READ)) == 403, path
            async with http.get(url + "/v1/status", headers=bearer(READ)) as response:
                error = (await response.json())["error"]
            assert "needs the admin token" in error and "query.admin_token_env" in error
            async with http.get(url + "/v1/health", headers=bearer(READ)) as response:
                health = await response.json()
            assert health["region"] == us and "healthy" in health
            assert not {"broker", "store", "pid", "failure"} & set(health)
            async with http.get(url + "/v1/status", headers=bearer(ADMIN)) as response:
                status = await response.json()
            assert status["query"]["read_token"] and status["query"]["admin_token"]
            assert READ not in json.dumps(status) and ADMIN not in json.dumps(status)
            assert status["query"]["refused_auth"] >= 3 * 6 + 3

            # mutating: a JSON body with its content type, whatever the token
            pause = url + "/v1/replication"
            for headers, body, code in [
                (bearer(ADMIN), None, 415),
                ({**bearer(ADMIN), **JSON}, None, 400),
                ({**bearer(ADMIN), "Content-Type": "application/x-www-form-urlencoded"},
                 b"paused=true", 415),
                ({**bearer(ADMIN), "Content-Type": "text/plain"}, b'{"paused": true}', 415),
                ({**bearer(READ), **JSON}, b'{"paused": true}', 403),
                (JSON, b'{"paused": true}', 401),
            ]:
                async with http.post(pause, data=body, headers=headers) as response:
                    assert response.status == code, (headers, body, await response.text())
                assert not service.replication_paused
            async with http.post(pause, json={"paused": True}, headers=bearer(ADMIN)) as response:
                assert response.status == 200, await response.text()
            assert service.replication_paused
            async with http.post(pause, json={"paused": False}, headers=bearer(ADMIN)) as response:
                assert response.status == 200
            assert not service.replication_paused

        await sdk_and_cli_send_their_tokens(regions, service, monkeypatch)


async def sdk_and_cli_send_their_tokens(
    regions: Regions, service: RegionService, monkeypatch: pytest.MonkeyPatch
) -> None:
    us = regions.us
    async with EdgeBus(regions.config, discovery=False) as bus:
        await bus.write("order:1", {"n": 1}, region=us, replication_factor=1)
    reader = RegionClient(load_config(with_query(regions, read_token_env=READ_ENV)))
    admin = RegionClient(load_config(with_query(regions, **TOKENS)))
    nobody = RegionClient(load_config(regions.config))
    try:
        async def readable() -> bool:
            return bool((await reader.read_at(us, ReadRequest("order:1")))["exists"])

        await eventually(readable, 30, "the SDK with the read token to read order:1")
        health = await reader.status(us)  # the health part: what discovery needs
        assert health["healthy"] is not None and "broker" not in health
        with pytest.raises(ConfigError, match=r"403.*needs the admin token.*its read token"):
            await reader.pause_replication(regions.eu, True, origins=[us])
        paused = await admin.pause_replication(regions.eu, True, origins=[us])
        assert paused["replication_paused"] is True and paused["origins"] == [us]
        assert service.paused_targets == [regions.eu]
        await admin.pause_replication(regions.eu, False, origins=[us])
        assert not service.replication_paused
        assert "broker" in await admin.status(us)
        with pytest.raises(ConfigError, match=r"401.*no token configured"):
            await nobody.read_at(us, ReadRequest("order:1"))
    finally:
        for client in (reader, admin, nobody):
            await client.close()

    path = regions.tmp / "with-tokens.json"
    path.write_text(json.dumps(with_query(regions, read_token_env=READ_ENV)), encoding="utf-8")
    env = {**regions.env, "EDGEBUS_CONFIG": str(path), READ_ENV: READ}
    # in a thread: the service answers from this test's event loop
    code, out, text = await asyncio.to_thread(regions.cli, "read", "order:1", "--region", us,
                                              env=env)
    assert code == 0 and out["value"] == {"n": 1}, text
    code, out, text = await asyncio.to_thread(regions.cli, "region", "pause-replication",
                                              "--region", regions.eu, "--from", us, env=env)
    assert code != 0 and "needs the admin token" in out["message"], text
    assert READ not in text
    assert not service.replication_paused


async def test_a_hostile_announcement_does_not_redirect_the_sdk(
    kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv(READ_ENV, READ)
    monkeypatch.setenv(ADMIN_ENV, ADMIN)
    regions = make_regions(kafka_bootstrap, tmp_path)
    us = regions.us
    config = with_query(regions, **TOKENS)
    async with RegionService(us, config, store=regions.store_url(us)) as service:
        registry.unregister(service)
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        try:
            for url in ("http://evil.example:8700", "https://10.66.66.66:443/steal"):
                hostile = Announcement(us, url, 1, "evil", "sqlite:///x.db", 1)
                await producer.send_and_wait(service_topic(us), encode_announcement(hostile),
                                             key=ANNOUNCEMENT_KEY)
        finally:
            await producer.stop()
        client = RegionClient(load_config(with_query(regions, read_token_env=READ_ENV)))
        try:
            with caplog.at_level(logging.WARNING, logger="edgebus.edge"):
                assert await client.endpoint(us, refresh=True) == service.url
                row = await client.read_at(us, ReadRequest("k"))
            assert row["region"] == us and row["exists"] is False
        finally:
            await client.close()
        assert "'evil.example' is neither loopback nor a Kafka bootstrap host" in caplog.text
        assert "'10.66.66.66'" in caplog.text and "Traceback" not in caplog.text


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, and its key (PEM files)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "edgebus test")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(private.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost"),
        ]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(private, hashes.SHA256())
    )
    cert, key = directory / "cert.pem", directory / "key.pem"
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ))
    os.chmod(key, 0o600)
    return cert, key


async def test_https_with_a_self_signed_certificate(
    kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = make_certificate(tmp_path)
    monkeypatch.setenv(READ_ENV, READ)
    monkeypatch.setenv(ADMIN_ENV, ADMIN)
    regions = make_regions(kafka_bootstrap, tmp_path)
    us = regions.us
    tls = {"tls_cert_file": str(cert), "tls_key_file": str(key)}
    config = with_query(regions, **TOKENS, **tls)
    async with RegionService(us, config, store=regions.store_url(us)) as service:
        registry.unregister(service)
        assert service.url is not None and service.url.startswith("https://127.0.0.1:")
        client = RegionClient(load_config(
            with_query(regions, read_token_env=READ_ENV, ca_file=str(cert))))
        untrusting = RegionClient(load_config(with_query(regions, read_token_env=READ_ENV)))
        try:
            row = await client.read_at(us, ReadRequest("k"))
            assert row["region"] == us and row["exists"] is False
            with pytest.raises(RegionUnavailable, match="certificate"):
                await untrusting.read_at(us, ReadRequest("k"))
        finally:
            await client.close()
            await untrusting.close()
        async with aiohttp.ClientSession() as http:
            plain = service.url.replace("https://", "http://")
            with pytest.raises(aiohttp.ClientError):
                async with http.get(plain + "/v1/health", headers=bearer(READ)) as response:
                    await response.read()


async def test_a_coordinators_metrics_need_the_admin_token_and_a_wide_bind_needs_tokens(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    from edgebus.prometheus import serve_metrics
    from edgebus.server.query import QueryAuth

    auth = QueryAuth(READ, ADMIN)

    async def render() -> bytes:
        return b"edgebus_up 1\n"

    runner, url = await serve_metrics(render, "127.0.0.1:0",
                                      lambda header: auth.refusal("admin", header))
    try:
        async with aiohttp.ClientSession() as http:
            for headers, code in [({}, 401), (bearer(READ), 403), (bearer(ADMIN), 200)]:
                async with http.get(url, headers=headers) as response:
                    assert response.status == code, (headers, await response.text())
    finally:
        await runner.cleanup()
    # without tokens, `coordinator run` refuses to serve metrics beyond loopback
    regions = make_regions(kafka_bootstrap, tmp_path)
    code, out, text = await asyncio.to_thread(
        regions.cli, "coordinator", "run", "--metrics-listen", "0.0.0.0:0"
    )
    assert code == 2 and "without tokens" in out["message"], text
