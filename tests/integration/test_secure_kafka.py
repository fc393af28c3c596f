"""``edgebus kafka up --secure`` on a real broker: SASL_SSL, SCRAM users, ACLs.

One secure cluster for the module (its own EDGEBUS_STATE_DIR: the ``secure`` fixture
of ``tests/integration/secure_kafka.py``), checked with raw aiokafka clients: the
recorded credentials and CA work, a client without them or with a wrong password is
refused, a principal is held to its ACLs, the secrets are private files, and ``down
--wipe`` removes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import ssl
import stat
import struct
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError
from aiokafka.helpers import create_ssl_context
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    pkcs12,
)

from edgebus.kafka.clusters import recorded_regions, recorded_security
from tests.integration.secure_kafka import Secure, password, sasl_ssl
from tests.integration.test_kafka_launcher import Cli, cli_ok

SECURE_LABEL = "secure (SASL_SSL, SCRAM-SHA-512)"
REFUSED_WITHIN_S = 15.0


async def refused(caplog: pytest.LogCaptureFixture, **settings: Any) -> str:
    """Start an admin client with ``settings``; it must fail. What it failed with, and
    what aiokafka logged about it (the broker's reason, e.g. SaslAuthenticationFailed)."""
    caplog.clear()
    admin = AIOKafkaAdminClient(request_timeout_ms=5000, **settings)
    try:
        with caplog.at_level(logging.ERROR, logger="aiokafka"):
            await asyncio.wait_for(admin.start(), REFUSED_WITHIN_S)
            await asyncio.wait_for(admin.describe_cluster(), REFUSED_WITHIN_S)
    except (KafkaError, TimeoutError, OSError) as e:
        return f"{type(e).__name__}: {caplog.text}"
    finally:
        with contextlib.suppress(Exception):  # closing a half-started client
            await admin.close()
    raise AssertionError(f"a client with {sorted(settings)} was let in")


# --------------------------------------------------------------------------- what up did


def test_up_secure_records_the_client_settings_per_cluster(secure: Secure) -> None:
    doc, security = secure.doc, secure.security
    assert doc["ok"] is True and doc["started"] is True and doc["secure"] is True
    assert doc["default_acls_applied"] is True and "edgebus kafka acls --apply" in doc["acls_note"]
    assert security == {
        "protocol": "SASL_SSL",
        "ca_file": str(secure.state / "tls" / "ca.pem"),
        "sasl_mechanism": "SCRAM-SHA-512",
        "username": "admin",
        "password_file": str(secure.state / "secrets" / "admin.password"),
    }
    assert doc["clusters"][0]["security_label"] == SECURE_LABEL
    assert set(doc["principals"]) == {
        "admin", "region-us-east-1", "region-eu-west-1", "region-ap-south-1",
        "coordinator", "writer",
    }  # fmt: skip
    recorded = json.loads((secure.state / "state.json").read_text())
    assert recorded["clusters"][0]["security"] == security and recorded["secure"] is True
    # what later commands read: the library finds the settings by bootstrap address
    assert recorded_security(secure.bootstrap, secure.state) == security
    port = secure.bootstrap.rsplit(":", 1)[1]
    assert recorded_security(f"localhost:{port}", secure.state) == security
    assert recorded_security("127.0.0.1:1", secure.state) is None
    as_writer = recorded_security(secure.bootstrap, secure.state, principal="writer")
    assert as_writer is not None and as_writer["username"] == "writer"
    assert as_writer["password_file"] == str(secure.state / "secrets" / "writer.password")
    assert recorded_regions(secure.state) == doc["regions"]


def test_secrets_are_private_files_and_never_printed(secure: Secure, cli: Cli) -> None:
    state = secure.state
    private = [
        state / "tls" / "ca.pem", state / "tls" / "broker.p12",
        state / "tls" / "broker.p12.password", state / "secrets" / "admin-client.properties",
        *(Path(p) for p in secure.doc["principals"].values()),
        *(Path(c["config_file"]) for c in secure.doc["clusters"]),
    ]  # fmt: skip
    for path in private:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for directory in (state / "tls", state / "secrets"):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
    secrets = [password(secure.security, user) for user in secure.doc["principals"]]
    assert all(len(s) >= 32 for s in secrets) and len(set(secrets)) == len(secrets)
    code, _, out, err = cli(["kafka", "status", "--json"], secure.env)
    shown = json.dumps(secure.doc) + out + err + (state / "state.json").read_text()
    shown += "".join(Path(c["log_file"]).read_text() for c in secure.doc["clusters"])
    assert code == 0 and not any(s in shown for s in secrets)


def test_status_shows_each_cluster_secure_and_answering(secure: Secure, cli: Cli) -> None:
    status = cli_ok(cli, ["kafka", "status", "--json"], secure.env)
    assert status["running"] is True and status["secure"] is True
    assert [(c["state"], c["security_label"]) for c in status["clusters"]] == [
        ("running", SECURE_LABEL)
    ]
    code, _, out, err = cli(["kafka", "status"], {**secure.env, "COLUMNS": "200"})
    assert code == 0, out + err
    assert SECURE_LABEL in " ".join(out.split())


def test_a_second_up_secure_starts_nothing_and_a_plaintext_up_is_refused(
    secure: Secure, cli: Cli
) -> None:
    again = cli_ok(cli, ["kafka", "up", "--secure", "--json"], secure.env)
    assert again["started"] is False
    assert again["clusters"][0]["pid"] == secure.doc["clusters"][0]["pid"]
    code, refused_doc, _, _ = cli(["kafka", "up", "--json"], secure.env)
    assert code == 1 and refused_doc["error"] == "LauncherError"


# --------------------------------------------------------------------------- clients


async def test_the_recorded_credentials_and_ca_produce_and_consume(secure: Secure) -> None:
    topic = f"edgebus.secure-test.{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=secure.bootstrap, **sasl_ssl(secure.security))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(
        bootstrap_servers=secure.bootstrap, enable_idempotence=True, acks="all",
        **sasl_ssl(secure.security),
    )  # fmt: skip
    await producer.start()
    try:
        sent = await producer.send_and_wait(topic, b"over TLS", key=b"k")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=secure.bootstrap, auto_offset_reset="earliest",
        group_id=f"edgebus.secure-test.{uuid.uuid4().hex[:8]}", **sasl_ssl(secure.security),
    )  # fmt: skip
    await consumer.start()
    try:
        record = await asyncio.wait_for(consumer.getone(), 20)
    finally:
        await consumer.stop()
    assert (record.value, record.offset) == (b"over TLS", sent.offset)


async def test_edgebus_commands_use_the_recorded_settings_without_flags(
    secure: Secure, cli: Cli
) -> None:
    receipt = cli_ok(
        cli, ["write", "--key", "user:1", "--data", '{"email": "ann@example.com"}',
              "--region", "eu-west-1", "--json"], secure.env,
    )  # fmt: skip
    consumer = AIOKafkaConsumer(
        bootstrap_servers=secure.bootstrap, enable_auto_commit=False,
        **sasl_ssl(secure.security),
    )  # fmt: skip
    await consumer.start()
    try:
        partition = TopicPartition("edgebus.eu-west-1.events", receipt["partition"])
        consumer.assign([partition])
        consumer.seek(partition, receipt["offset"])
        record = await asyncio.wait_for(consumer.getone(), 20)
    finally:
        await consumer.stop()
    assert record.key == b"user:1"


async def test_a_principal_works_within_the_default_acls_and_not_beyond(secure: Secure) -> None:
    topic = f"edgebus.writer-test.{uuid.uuid4().hex[:8]}"
    as_writer = sasl_ssl(secure.security, "writer")
    admin = AIOKafkaAdminClient(bootstrap_servers=secure.bootstrap, **as_writer)
    await admin.start()
    try:  # Create on edgebus.* topics is granted
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(
        bootstrap_servers=secure.bootstrap, enable_idempotence=True, request_timeout_ms=10000,
        **as_writer,
    )  # fmt: skip
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"granted")
        with pytest.raises(KafkaError) as denied:  # nothing outside edgebus.*
            await producer.send_and_wait("not-edgebus", b"denied")
    finally:
        await producer.stop()
    assert "Authorization" in type(denied.value).__name__


async def test_clients_without_valid_credentials_are_refused(
    secure: Secure, caplog: pytest.LogCaptureFixture
) -> None:
    bootstrap = secure.bootstrap
    tls = create_ssl_context(cafile=secure.security["ca_file"])
    # plaintext to the SASL_SSL port
    assert "KafkaConnectionError" in await refused(caplog, bootstrap_servers=bootstrap)
    # TLS with the right CA but no SASL
    assert "KafkaConnectionError" in await refused(
        caplog, bootstrap_servers=bootstrap, security_protocol="SSL", ssl_context=tls
    )
    # a wrong password, and an unknown user: refused. The broker says why in aiokafka's
    # log, which edgebus's log_noise (installed by earlier tests of the same run) shows
    # once per episode only, so the reason may not be in this test's log
    wrong = sasl_ssl(secure.security, "admin", secret="not-the-password")
    nobody = sasl_ssl(secure.security, "nobody", secret=password(secure.security))
    for settings in (wrong, nobody):
        why = await refused(caplog, bootstrap_servers=bootstrap, **settings)
        assert "SaslAuthenticationFailed" in why or "KafkaConnectionError" in why, why
    # TLS that does not trust the local CA: the client is refused, and the reason is the
    # certificate (checked on a handshake of our own: aiokafka's log may be muted)
    untrusting = {**sasl_ssl(secure.security), "ssl_context": create_ssl_context()}
    assert "KafkaConnectionError" in await refused(
        caplog, bootstrap_servers=bootstrap, **untrusting
    )
    port = int(bootstrap.rsplit(":", 1)[1])
    with pytest.raises(ssl.SSLCertVerificationError, match="CERTIFICATE_VERIFY_FAILED"):
        api_versions(port, ssl.create_default_context())
    # and the right credentials still get in (the refusals above were not an outage)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **sasl_ssl(secure.security))
    await admin.start()
    try:
        assert (await admin.describe_cluster())["cluster_id"] == secure.doc["clusters"][0][
            "cluster_id"
        ]
    finally:
        await admin.close()


def api_versions(port: int, context: ssl.SSLContext) -> bytes:
    """Send an ApiVersions request over TLS to ``port``; the first bytes of the answer."""
    request = struct.pack(">hhih", 18, 0, 1, -1)  # ApiVersions v0, correlation id 1
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(struct.pack(">i", len(request)) + request)
        return tls.recv(4)


def test_the_controller_listener_admits_only_the_brokers_certificate(
    secure: Secure, tmp_path: Path
) -> None:
    port = secure.doc["clusters"][0]["controller_port"]
    anonymous = ssl.create_default_context(cafile=secure.security["ca_file"])
    with pytest.raises(ssl.SSLError):
        api_versions(port, anonymous)
    # the broker's own certificate gets an answer: the refusal above was for the lack of one
    keystore = secure.state / "tls" / "broker.p12"
    secret = (secure.state / "tls" / "broker.p12.password").read_bytes().strip()
    key, cert, _ = pkcs12.load_key_and_certificates(keystore.read_bytes(), secret)
    assert key is not None and cert is not None
    pem = tmp_path / "broker.pem"
    pem.write_bytes(
        key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        + cert.public_bytes(Encoding.PEM)
    )
    broker = ssl.create_default_context(cafile=secure.security["ca_file"])
    broker.load_cert_chain(pem)
    assert len(api_versions(port, broker)) == 4


# --------------------------------------------------------------------------- down


async def test_down_then_up_secure_restarts_on_the_kept_data_and_credentials(
    secure: Secure, cli: Cli
) -> None:
    topic = f"edgebus.restart-test.{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=secure.bootstrap, **sasl_ssl(secure.security))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    cli_ok(cli, ["kafka", "down", "--json"], secure.env)
    assert recorded_security(secure.bootstrap, secure.state) is None  # nothing runs
    again = cli_ok(cli, ["kafka", "up", "--secure", "--json"], secure.env)
    assert again["started"] is True and again["reused_data"] is True
    assert again["default_acls_applied"] is False  # the ACLs the cluster has are kept
    cluster = again["clusters"][0]
    assert cluster["cluster_id"] == secure.doc["clusters"][0]["cluster_id"]
    # the SCRAM users made at the first format still match the kept passwords
    as_writer = sasl_ssl(cluster["security"], "writer")
    producer = AIOKafkaProducer(bootstrap_servers=cluster["bootstrap"], **as_writer)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"after a restart")
    finally:
        await producer.stop()


def test_down_wipe_removes_the_tls_material_and_the_passwords(secure: Secure, cli: Cli) -> None:
    down = cli_ok(cli, ["kafka", "down", "--wipe", "--json"], secure.env)
    assert sorted(down["removed"]) == ["kafka", "secrets", "state.json", "tls"]
    assert down["kept"] == ["kafka.lock"]
    assert not (secure.state / "tls").exists() and not (secure.state / "secrets").exists()
    assert recorded_security(secure.bootstrap, secure.state) is None
