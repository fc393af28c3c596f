"""The query plane's security without a broker (issue 17, item 6): the ``query`` config
section, token reading and comparison, which routes need which role, which announced
hosts a client calls, and the refusal to listen beyond loopback without tokens."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import ConsumerRecord

import edgebus.sdk.region_client as client_module
import edgebus.server.query as query_module
from edgebus.config import EdgeConfig, QueryConfig, load_config
from edgebus.errors import ConfigError
from edgebus.sdk.region_client import RegionClient
from edgebus.server.query import HEALTH_FIELDS, ROLES, QueryAuth, serve
from edgebus.wire.announcement import (
    Announcement,
    EndpointPolicy,
    bootstrap_hosts,
    encode_announcement,
    host_matches,
    is_loopback,
)

READ = "read-token-0123456789abcdef"
ADMIN = "admin-token-0123456789abcdef"


def query(**settings: Any) -> QueryConfig:
    return EdgeConfig.from_mapping({"query": settings}).query


# ------------------------------------------------------------------ config


@pytest.mark.parametrize(
    "settings, says",
    [
        ({"read_token_env": "A", "read_token_file": "/f"}, "keep one source of the read token"),
        ({"admin_token_env": "A", "admin_token_file": "/f"}, "one source of the admin token"),
        ({"tls_cert_file": "/c.pem"}, "tls_cert_file and query.tls_key_file go together"),
        ({"tls_key_file": "/k.pem"}, "go together"),
        ({"read_token_env": "s3cr3t token!"}, "must name an environment variable"),
        ({"admin_token_file": ""}, "query.admin_token_file is empty"),
        ({"allowed_hosts": ["http://evil.example"]}, "is not a host name"),
        ({"allowed_hosts": ["edgebus-eu:8700"]}, "is not a host name"),
        ({"allowed_hosts": ["10.0.0.0/33"]}, "is not a host name"),
        ({"allowed_hosts": [""]}, "is not a host name"),
        ({"allowed_hosts": ["a b"]}, "is not a host name"),
    ],
)
def test_contradictory_or_malformed_query_settings_are_refused(
    settings: dict[str, Any], says: str
) -> None:
    with pytest.raises(ConfigError, match="query") as raised:
        query(**settings)
    assert says in str(raised.value)


def test_a_misspelt_query_key_is_refused_naming_the_right_one() -> None:
    with pytest.raises(ConfigError, match=r"did you mean 'query\.admin_token_env'"):
        EdgeConfig.from_mapping({"query": {"admin_tokn_env": "X"}})


def test_sound_query_settings_are_accepted_and_the_default_is_no_tokens() -> None:
    assert not load_config(None).query.has_tokens
    assert load_config(None).query.client_role() is None
    q = query(read_token_env="EB_READ", admin_token_file="/run/admin",
              tls_cert_file="/c.pem", tls_key_file="/k.pem", ca_file="/ca.pem",
              allowed_hosts=["edgebus-eu", "10.0.0.0/8", "::1", "[fe80::1]", "192.0.2.7"])
    assert q.has_tokens and q.client_role() == "admin"
    assert query(read_token_file="/r").client_role() == "read"


def test_a_token_comes_from_its_environment_variable_or_the_first_line_of_its_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("EB_READ", f"  {READ}\n")
    path = tmp_path / "admin"
    path.write_text(f"{ADMIN}\nsecond line\n", encoding="utf-8")
    q = query(read_token_env="EB_READ", admin_token_file=str(path))
    assert (q.token("read"), q.token("admin")) == (READ, ADMIN)
    assert query().token("read") is None


@pytest.mark.parametrize(
    "value, says",
    [
        (None, "is not set: export the read token"),
        ("short-token", "must be 16 to 4096 visible ASCII characters"),
        ("a token with spaces in it", "visible ASCII"),
        ("tökenökenökenökenöken", "visible ASCII"),
        ("x" * 4097, "16 to 4096"),
    ],
)
def test_a_missing_short_or_odd_token_is_refused_without_showing_it(
    monkeypatch: pytest.MonkeyPatch, value: str | None, says: str
) -> None:
    if value is None:
        monkeypatch.delenv("EB_READ", raising=False)
    else:
        monkeypatch.setenv("EB_READ", value)
    with pytest.raises(ConfigError, match="EB_READ") as raised:
        query(read_token_env="EB_READ").token("read")
    assert says in str(raised.value)
    if value:
        assert value not in str(raised.value)


def test_a_token_file_that_cannot_be_read_or_is_short_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"Cannot read query.admin_token_file .*absent"):
        query(admin_token_file=str(tmp_path / "absent")).token("admin")
    short = tmp_path / "short"
    short.write_text("tiny\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="16 to 4096") as raised:
        query(admin_token_file=str(short)).token("admin")
    assert "tiny" not in str(raised.value)
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    with pytest.raises(ConfigError, match="16 to 4096"):
        query(admin_token_file=str(empty)).token("admin")


def test_no_token_appears_in_a_config_repr_or_an_auth_repr(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EB_READ", READ)
    monkeypatch.setenv("EB_ADMIN", ADMIN)
    config = EdgeConfig.from_mapping(
        {"query": {"read_token_env": "EB_READ", "admin_token_env": "EB_ADMIN"}}
    )
    auth = QueryAuth.from_config(config.query)
    for shown in (repr(config), str(config), config.model_dump_json(), repr(auth),
                  str(auth.describe())):
        assert READ not in shown and ADMIN not in shown
    assert repr(auth) == "QueryAuth(read_token=set, admin_token=set)"


# ------------------------------------------------------------------ who may call what


def test_the_route_roles_are_the_documented_ones() -> None:
    assert {r for r, role in ROLES.items() if role == "admin"} == {
        "status", "checksums", "metrics", "replication", "repair"}
    assert {r for r, role in ROLES.items() if role == "read"} == {"key", "scan", "health"}
    # the health subset holds nothing an operator alone should see
    assert not {"broker", "store", "pid", "failure", "saga_participant", "state_host",
                "materializer", "replicators", "query"} & set(HEALTH_FIELDS)


def test_without_tokens_every_request_is_let_in() -> None:
    auth = QueryAuth()
    assert not auth.enabled
    assert auth.refusal("admin", None) is None


@pytest.mark.parametrize(
    "needs, header, status, says",
    [
        ("read", None, 401, "send 'Authorization: Bearer <token>'"),
        ("admin", "", 401, "the admin token"),
        ("read", f"Basic {READ}", 401, "Bearer"),
        ("read", "Bearer", 401, "needs a token"),
        ("read", "Bearer wrong-token-0123456789abcdef", 401, "not the read or the admin token"),
        ("read", f"Bearer {READ[:-1]}", 401, "not the read"),
        ("read", f"Bearer {READ}x", 401, "not the read"),
        ("admin", f"Bearer {READ}", 403, "needs the admin token"),
        ("admin", "Bearer ünïcode-token-0123456789", 401, "not the admin token"),
    ],
)
def test_a_request_without_the_role_a_route_needs_is_refused(
    needs: Any, header: str | None, status: int, says: str
) -> None:
    refusal = QueryAuth(READ, ADMIN).refusal(needs, header)
    assert refusal is not None
    assert refusal[0] == status and says in refusal[1], refusal
    assert READ not in refusal[1] and ADMIN not in refusal[1]


@pytest.mark.parametrize(
    "needs, header",
    [("read", f"Bearer {READ}"), ("read", f"Bearer {ADMIN}"), ("admin", f"Bearer {ADMIN}"),
     ("read", f"bearer   {READ}  ")],
)
def test_the_right_token_is_let_in(needs: Any, header: str) -> None:
    assert QueryAuth(READ, ADMIN).refusal(needs, header) is None


def test_with_only_a_read_token_admin_routes_are_closed_and_with_only_admin_reads_need_it(
) -> None:
    read_only = QueryAuth(read=READ)
    refusal = read_only.refusal("admin", f"Bearer {READ}")
    assert refusal is not None and refusal[0] == 403 and "has none" in refusal[1]
    admin_only = QueryAuth(admin=ADMIN)
    assert admin_only.refusal("read", f"Bearer {ADMIN}") is None
    assert admin_only.refusal("read", None) is not None


def test_tokens_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = query_module.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(query_module.hmac, "compare_digest", spy)
    auth = QueryAuth(READ, ADMIN)
    compared.clear()
    assert auth.refusal("read", f"Bearer {READ}") is None
    # both tokens are compared, whichever matches: no early exit on the first
    assert sorted(b for _, b in compared) == sorted([READ.encode(), ADMIN.encode()])


def test_the_same_token_for_both_roles_is_refused() -> None:
    with pytest.raises(ConfigError, match="read and admin tokens are the same"):
        QueryAuth(READ, READ)


async def test_a_non_loopback_listen_address_without_tokens_is_refused() -> None:
    service: Any = SimpleNamespace(config=load_config(None))
    for listen in ("0.0.0.0:8700", "[::]:8700", "10.0.0.7:0", "edgebus-eu:8700"):
        with pytest.raises(ConfigError, match=r"without tokens.*query.read_token_env"):
            await serve(service, listen)


# ------------------------------------------------------------------ which hosts clients call


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost", "LOCALHOST.",
             "::ffff:127.0.0.1"],
)
def test_loopback_hosts(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["evil.example", "10.0.0.7", "128.0.0.1", "localhost.evil",
                                  "2130706433", "127.1", "", "::2"])
def test_not_loopback_hosts(host: str) -> None:
    assert not is_loopback(host)


def test_bootstrap_hosts_are_the_hosts_of_every_address() -> None:
    assert bootstrap_hosts(["kafka-eu:19092,Kafka-EU:19093", "[::1]:9092", "10.0.0.5",
                            "SASL_SSL://broker.example:9093"]) == (
        "kafka-eu", "::1", "10.0.0.5", "broker.example")


def test_host_entries_match_names_addresses_and_networks() -> None:
    assert host_matches("Edgebus-EU", "edgebus-eu")
    assert host_matches("10.1.2.3", "10.0.0.0/8") and not host_matches("11.1.2.3", "10.0.0.0/8")
    assert host_matches("fe80::1", "[fe80::1]") and host_matches("192.0.2.7", "192.0.2.7")
    assert not host_matches("edgebus-eu.evil", "edgebus-eu")
    assert not host_matches("edgebus-eu", "10.0.0.0/8")
    assert not host_matches("", "")


def test_by_default_clients_call_loopback_and_bootstrap_hosts_only() -> None:
    policy = EndpointPolicy(bootstrap_hosts=("kafka-eu",))
    for url in ("http://127.0.0.1:8700", "http://[::1]:1", "https://localhost:8",
                "http://kafka-eu:8700"):
        assert policy.problem(url) is None, url
    problem = policy.problem("http://evil.example:8700")
    assert problem is not None and "neither loopback nor a Kafka bootstrap host" in problem
    assert policy.problem("http://10.0.0.7:8700") is not None


def test_with_allowed_hosts_only_those_are_called() -> None:
    policy = EndpointPolicy(allowed_hosts=("edgebus-eu", "10.0.0.0/8"),
                            bootstrap_hosts=("kafka-eu",))
    assert policy.problem("http://EDGEBUS-EU:8700") is None
    assert policy.problem("http://10.9.8.7:8700") is None
    for url in ("http://127.0.0.1:8700", "http://kafka-eu:8700", "http://evil.example"):
        problem = policy.problem(url)
        assert problem is not None and "not in query.allowed_hosts" in problem, url


def test_a_client_expecting_tls_calls_https_endpoints_only() -> None:
    policy = EndpointPolicy(https_only=True)
    assert policy.problem("https://127.0.0.1:8700") is None
    problem = policy.problem("http://127.0.0.1:8700")
    assert problem is not None and "is not https" in problem


def _record(offset: int, url: str) -> Any:
    value = encode_announcement(Announcement("us-east-1", url, 1, "h", "sqlite:///x.db", 1))
    return ConsumerRecord("edgebus.us-east-1.service", 0, offset, 0, 0, b"query", value, None,
                          5, len(value), [])


@pytest.mark.parametrize(
    "settings, good, hostile",
    [
        ({}, "http://127.0.0.1:8701", "http://evil.example:8700"),
        ({}, "http://127.0.0.1:8701", "http://10.0.0.66:8700"),
        ({"allowed_hosts": ["edgebus-us"]}, "http://edgebus-us:8700", "http://127.0.0.1:1"),
        ({"ca_file": "/ca.pem"}, "https://127.0.0.1:8701", "http://127.0.0.1:8702"),
    ],
)
async def test_a_hostile_endpoint_in_the_newest_announcement_is_skipped_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
    settings: dict[str, Any], good: str, hostile: str,
) -> None:
    async def announcements(kafka: Any, bootstrap: str, topic: str) -> list[Any]:
        return [_record(0, "http://127.0.0.1:1"), _record(1, good), _record(2, hostile)]

    monkeypatch.setattr(client_module, "read_to_end", announcements)
    client = RegionClient(EdgeConfig.from_mapping({"query": settings}))
    try:
        with caplog.at_level(logging.WARNING, logger="edgebus.edge"):
            assert await client.endpoint("us-east-1") == good
        assert "skipped the service announcement at partition 0 offset 2" in caplog.text
        assert "Traceback" not in caplog.text
    finally:
        await client.close()
