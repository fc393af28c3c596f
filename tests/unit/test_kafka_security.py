"""kafka.security: validation, secrets from env and files, aiokafka's settings per
protocol and mechanism, and why a secured client failed, without a broker."""

from __future__ import annotations

import asyncio
import inspect
import json
import socket
import ssl
import subprocess
import sys
import types
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka.abc import AbstractTokenProvider
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import (
    IllegalSaslStateError,
    KafkaConnectionError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)

from edgebus.config import EdgeConfig, KafkaConfig, KafkaSecurityConfig
from edgebus.errors import ConfigError, InfrastructureUnavailable, KafkaAuthFailed
from edgebus.kafka import clients, security
from edgebus.kafka.security import TokenProviderFailed, explain

SECRET = "s3cr3t-Pa55word"
BOOTSTRAP = "broker-1.example:9093,broker-2.example:9093"


def kafka(**security_settings: Any) -> KafkaConfig:
    """The kafka section of a config whose kafka.security is ``security_settings``."""
    return EdgeConfig.from_mapping({"kafka": {"security": security_settings}}).kafka


SCRAM = {"protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "username": "edgebus-eu",
         "password_env": "EDGEBUS_TEST_KAFKA_PASSWORD"}


# ------------------------------------------------------------------ validation


def test_the_default_is_plaintext_with_no_cluster_settings() -> None:
    config = EdgeConfig.from_mapping({})
    assert config.kafka.security == KafkaSecurityConfig()
    assert config.kafka.security.protocol == "PLAINTEXT"
    assert config.kafka.cluster_security == {}


def test_plaintext_produces_exactly_the_settings_of_before(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("EDGEBUS_STATE_DIR", str(tmp_path))  # no local Kafka recorded
    for bootstrap in ("127.0.0.1:9092", "kafka.example.net:9092,kafka-2.example.net:9092"):
        assert clients._connection(EdgeConfig().kafka, bootstrap) == {
            "bootstrap_servers": bootstrap
        }


def record_secure_cluster(state_dir: Path, port: int) -> dict[str, str]:
    """A state.json as ``edgebus kafka up --secure`` writes it: one running cluster."""
    (state_dir / "admin.password").write_text(SECRET + "\n")
    recorded = {"protocol": "SASL_SSL", "ca_file": str(state_dir / "ca.pem"),
                "sasl_mechanism": "SCRAM-SHA-512", "username": "admin",
                "password_file": str(state_dir / "admin.password")}
    (state_dir / "state.json").write_text(json.dumps({
        "regions": {"us-east-1": f"127.0.0.1:{port}"},
        "clusters": [{"pid": 4242, "bootstrap": f"127.0.0.1:{port}", "security": recorded}],
        "principals": {"admin": str(state_dir / "admin.password")},
    }))
    return recorded


def test_a_secure_local_kafka_is_reached_with_the_settings_it_recorded(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pki: Path
) -> None:
    monkeypatch.setenv("EDGEBUS_STATE_DIR", str(tmp_path))
    (tmp_path / "ca.pem").write_bytes((pki / "ca.pem").read_bytes())
    record_secure_cluster(tmp_path, 39092)
    options = clients._connection(EdgeConfig().kafka, "127.0.0.1:39092")
    assert options["security_protocol"] == "SASL_SSL"
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("admin", SECRET)
    # another cluster, or one the config gives settings for, is not affected
    assert clients._connection(EdgeConfig().kafka, "127.0.0.1:39094") == {
        "bootstrap_servers": "127.0.0.1:39094"
    }
    explicit = kafka(protocol="SSL", ca_file=str(pki / "ca.pem"))
    assert clients._connection(explicit, "127.0.0.1:39092")["security_protocol"] == "SSL"


@pytest.mark.parametrize(("settings", "fix"), [
    ({"ca_file": "/ca.pem"}, r'protocol is PLAINTEXT .* ca_file is set: set protocol = "SSL"'),
    ({"check_hostname": False}, r'check_hostname is set: set protocol = "SSL"'),
    ({"sasl_mechanism": "PLAIN"}, r'sasl_mechanism is set: set protocol = "SASL_SSL"'),
    ({"protocol": "SSL", "sasl_mechanism": "PLAIN", "username": "u"},
     r'protocol SSL does not use SASL but sasl_mechanism, username are set: set protocol = '
     r'"SASL_SSL"'),
    ({"protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN", "username": "u",
      "password_env": "P", "ca_file": "/ca.pem"},
     r'protocol SASL_PLAINTEXT does not use TLS but ca_file is set: set protocol = "SASL_SSL"'),
    ({"protocol": "SASL_SSL"}, r"SASL_SSL needs sasl_mechanism: PLAIN, SCRAM-SHA-256"),
    ({"protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-256", "password_env": "P"},
     r"SCRAM-SHA-256 needs a username: set username \(or username_env"),
    ({**SCRAM, "username_env": "KAFKA_USER"}, r"set username .*not both"),
    ({**SCRAM, "password_env": None}, r"needs a password from password_env .* or password_file"),
    ({**SCRAM, "password_file": "/run/secrets/kafka"}, r"set one of them, not both"),
    ({**SCRAM, "token_provider": "pkg.mod:tokens"},
     r'token_provider is for OAUTHBEARER, not SCRAM-SHA-512: remove it'),
    ({"protocol": "SASL_SSL", "sasl_mechanism": "OAUTHBEARER"},
     r"OAUTHBEARER needs token_provider"),
    ({"protocol": "SASL_SSL", "sasl_mechanism": "OAUTHBEARER", "token_provider": "a:b",
      "username": "u"}, r"not with username: remove them"),
    ({"protocol": "SSL", "cert_file": "/c.pem"}, r"cert_file is set without key_file.*set both"),
    ({"protocol": "SSL", "key_file": "/k.pem"}, r"key_file is set without cert_file.*set both"),
    ({"protocol": "SSL", "key_password_env": "K"}, r"key_password_env is the password of key_file"),
    ({"protocol": "SSL", "ca_file": ""}, r"ca_file is empty"),
    ({"protocol": "SASL_SSL", "sasl_mechanism": "OAUTHBEARER", "token_provider": "tokens"},
     r'not an import path: write "package.module:callable"'),
    ({"protocol": "TLS"}, r"kafka\.security\.protocol"),
])
def test_contradictory_or_incomplete_settings_are_refused_naming_the_fix(
    settings: dict[str, Any], fix: str
) -> None:
    with pytest.raises(ConfigError, match=fix):
        kafka(**settings)


def test_a_secret_put_where_a_variable_name_goes_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigError, match="names an environment variable") as caught:
        kafka(**{**SCRAM, "password_env": SECRET})
    assert SECRET not in str(caught.value)
    with pytest.raises(ValueError) as direct:
        KafkaSecurityConfig(**{**SCRAM, "password_env": SECRET})
    assert SECRET not in str(direct.value)


@pytest.mark.parametrize("where", ["security", "cluster_security"])
def test_an_inline_password_gets_did_you_mean_and_where_secrets_come_from(where: str) -> None:
    section = {**SCRAM, "password_env": None, "password": SECRET}
    data = {"security": section} if where == "security" else {
        "cluster_security": {"10.0.0.5:9093": section}
    }
    with pytest.raises(ConfigError) as caught:
        EdgeConfig.from_mapping({"kafka": data})
    message = str(caught.value)
    assert "did you mean 'kafka." in message and "password_env'" in message
    assert "environment variable" in message and "password_file" in message
    assert SECRET not in message


def test_aiokafka_setting_names_at_the_kafka_level_point_at_the_security_section() -> None:
    with pytest.raises(ConfigError, match=r"'kafka.security_protocol'.*kafka\.security section"):
        EdgeConfig.from_mapping({"kafka": {"security_protocol": "SSL"}})


def test_cluster_settings_apply_to_their_cluster_only() -> None:
    config = EdgeConfig.from_mapping({"kafka": {
        "clusters": {"eu-west-1": "eu-1:9093, eu-2:9093"},
        "security": {"protocol": "SSL"},
        "cluster_security": {"eu-1:9093,eu-2:9093": SCRAM},
    }}).kafka
    where, settings = config.security_for("eu-1:9093, eu-2:9093")
    assert where == "kafka.cluster_security['eu-1:9093,eu-2:9093']"
    assert settings.sasl_mechanism == "SCRAM-SHA-512"
    assert config.security_for("us-1:9093") == ("kafka.security", config.security)


def test_one_cluster_named_twice_is_refused() -> None:
    with pytest.raises(ConfigError, match="names the cluster a:1,b:2 twice"):
        EdgeConfig.from_mapping({"kafka": {"cluster_security": {
            "a:1,b:2": {"protocol": "SSL"}, "a:1, b:2": {"protocol": "SSL"},
        }}})


def test_a_config_round_trips_through_its_json_dump_as_the_benchmarks_do() -> None:
    config = EdgeConfig.from_mapping({"kafka": {
        "security": SCRAM, "cluster_security": {"x:1": {"protocol": "SSL"}},
    }})
    assert EdgeConfig.from_mapping(config.model_dump(mode="json")) == config


# ------------------------------------------------------------------ secrets


def test_the_password_is_read_from_the_environment_at_client_creation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EDGEBUS_TEST_KAFKA_PASSWORD", SECRET)
    monkeypatch.setenv("KAFKA_USER", "from-env")
    config = kafka(**{**SCRAM, "protocol": "SASL_PLAINTEXT", "username": None,
                      "username_env": "KAFKA_USER"})
    assert clients._connection(config, BOOTSTRAP) == {
        "bootstrap_servers": BOOTSTRAP, "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "from-env",
        "sasl_plain_password": SECRET,
    }
    monkeypatch.setenv("EDGEBUS_TEST_KAFKA_PASSWORD", "rotated")
    assert clients._connection(config, BOOTSTRAP)["sasl_plain_password"] == "rotated"


@pytest.mark.parametrize("value", [None, ""])
def test_a_missing_password_variable_is_named_never_the_secret(
    monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    monkeypatch.setenv("KAFKA_USER_UNUSED", SECRET)
    if value is None:
        monkeypatch.delenv("EDGEBUS_TEST_KAFKA_PASSWORD", raising=False)
    else:
        monkeypatch.setenv("EDGEBUS_TEST_KAFKA_PASSWORD", value)
    config = kafka(**{**SCRAM, "protocol": "SASL_PLAINTEXT"})
    state = "not set" if value is None else "empty"
    with pytest.raises(ConfigError, match=(
        r"kafka\.security\.password_env names the environment variable "
        rf"EDGEBUS_TEST_KAFKA_PASSWORD, which is {state}: export the SASL password"
    )):
        clients._connection(config, BOOTSTRAP)


def test_the_password_file_gives_its_first_line(tmp_path: Path) -> None:
    secret_file = tmp_path / "kafka-password"
    secret_file.write_text(f"{SECRET}\nsomething else\n")
    config = kafka(**{**SCRAM, "protocol": "SASL_PLAINTEXT", "password_env": None,
                      "password_file": str(secret_file)})
    assert clients._connection(config, BOOTSTRAP)["sasl_plain_password"] == SECRET


@pytest.mark.parametrize(("content", "problem"), [
    (None, "cannot read kafka.security.password_file .*No such file"),
    (b"\nsecond-line-" + SECRET.encode(), "has an empty first line"),
    (b"\xff\xfe" + SECRET.encode(), "is not UTF-8 text"),
])
def test_an_unusable_password_file_is_named_never_its_content(
    tmp_path: Path, content: bytes | None, problem: str
) -> None:
    secret_file = tmp_path / "kafka-password"
    if content is not None:
        secret_file.write_bytes(content)
    config = kafka(**{**SCRAM, "protocol": "SASL_PLAINTEXT", "password_env": None,
                      "password_file": str(secret_file)})
    with pytest.raises(ConfigError, match=problem) as caught:
        clients._connection(config, BOOTSTRAP)
    assert str(secret_file) in str(caught.value)
    assert SECRET not in str(caught.value)


def test_no_secret_is_in_the_config_its_repr_or_its_dump(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("EDGEBUS_TEST_KAFKA_PASSWORD", SECRET)
    (tmp_path / "pw").write_text(SECRET)
    config = EdgeConfig.from_mapping({"kafka": {
        "security": SCRAM,
        "cluster_security": {"x:1": {**SCRAM, "password_env": None,
                                     "password_file": str(tmp_path / "pw")}},
    }})
    clients._connection(config.kafka, "x:1")
    clients._connection(config.kafka, BOOTSTRAP)
    for text in (repr(config), str(config), str(config.model_dump()), config.model_dump_json()):
        assert SECRET not in text


# ------------------------------------------------------------------ aiokafka's settings


def test_sasl_plain_over_tls_gives_aiokafka_a_context_and_the_credentials(
    monkeypatch: pytest.MonkeyPatch, pki: Path
) -> None:
    monkeypatch.setenv("EDGEBUS_TEST_KAFKA_PASSWORD", SECRET)
    config = kafka(**{**SCRAM, "sasl_mechanism": "PLAIN", "ca_file": str(pki / "ca.pem")})
    options = clients._connection(config, BOOTSTRAP)
    context = options.pop("ssl_context")
    assert options == {
        "bootstrap_servers": BOOTSTRAP, "security_protocol": "SASL_SSL",
        "sasl_mechanism": "PLAIN", "sasl_plain_username": "edgebus-eu",
        "sasl_plain_password": SECRET,
    }
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_scram_uses_aiokafkas_plain_username_and_password_settings(
    monkeypatch: pytest.MonkeyPatch, mechanism: str
) -> None:
    monkeypatch.setenv("EDGEBUS_TEST_KAFKA_PASSWORD", SECRET)
    options = clients._connection(kafka(**{**SCRAM, "sasl_mechanism": mechanism}), BOOTSTRAP)
    assert options["sasl_mechanism"] == mechanism
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == (
        "edgebus-eu", SECRET
    )
    assert isinstance(options["ssl_context"], ssl.SSLContext)  # the system's CAs


def test_tls_without_hostname_check_still_verifies_the_certificate(pki: Path) -> None:
    config = kafka(protocol="SSL", ca_file=str(pki / "ca.pem"), check_hostname=False)
    options = clients._connection(config, BOOTSTRAP)
    assert set(options) == {"bootstrap_servers", "security_protocol", "ssl_context"}
    assert options["security_protocol"] == "SSL"
    assert options["ssl_context"].verify_mode == ssl.CERT_REQUIRED
    assert not options["ssl_context"].check_hostname


def test_the_ssl_context_of_one_set_of_settings_is_built_once(pki: Path) -> None:
    config = kafka(protocol="SSL", ca_file=str(pki / "ca.pem"))
    first = clients._connection(config, BOOTSTRAP)["ssl_context"]
    assert clients._connection(config, "other:9093")["ssl_context"] is first


def test_mutual_tls_loads_an_encrypted_key_with_its_password_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, pki: Path
) -> None:
    monkeypatch.setenv("EDGEBUS_TEST_KEY_PASSWORD", SECRET)
    config = kafka(protocol="SSL", ca_file=str(pki / "ca.pem"), cert_file=str(pki / "client.pem"),
                   key_file=str(pki / "client.key"), key_password_env="EDGEBUS_TEST_KEY_PASSWORD")
    assert isinstance(clients._connection(config, BOOTSTRAP)["ssl_context"], ssl.SSLContext)


def test_a_wrong_key_password_is_refused_without_quoting_it(
    monkeypatch: pytest.MonkeyPatch, pki: Path
) -> None:
    monkeypatch.setenv("EDGEBUS_TEST_KEY_PASSWORD", "not-" + SECRET)
    config = kafka(protocol="SSL", cert_file=str(pki / "client.pem"),
                   key_file=str(pki / "client.key"), key_password_env="EDGEBUS_TEST_KEY_PASSWORD")
    with pytest.raises(ConfigError, match=r"cannot load the client certificate.*key_password_env") \
            as caught:
        clients._connection(config, BOOTSTRAP)
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize(("name", "problem"), [
    ("missing.pem", r"cannot read kafka\.security\.ca_file .*missing\.pem: No such file"),
    ("client.key", r"kafka\.security\.ca_file .*client\.key holds no usable PEM certificate"),
])
def test_an_unusable_ca_file_is_named(pki: Path, name: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        clients._connection(kafka(protocol="SSL", ca_file=str(pki / name)), BOOTSTRAP)


async def test_aiokafka_accepts_the_settings_of_every_protocol_and_mechanism(
    monkeypatch: pytest.MonkeyPatch, pki: Path, token_module: str
) -> None:
    monkeypatch.setenv("EDGEBUS_TEST_KAFKA_PASSWORD", SECRET)
    ca = str(pki / "ca.pem")
    oauth = {"sasl_mechanism": "OAUTHBEARER", "username": None, "password_env": None,
             "token_provider": f"{token_module}:sync_token"}
    for settings in (
        {}, {"protocol": "SSL", "ca_file": ca}, {**SCRAM, "protocol": "SASL_PLAINTEXT"},
        {**SCRAM, "ca_file": ca}, {**SCRAM, "sasl_mechanism": "PLAIN"}, {**SCRAM, **oauth},
    ):
        client = AIOKafkaClient(**clients._connection(kafka(**settings), BOOTSTRAP))
        await client.close()


def test_every_client_class_takes_the_security_settings() -> None:
    names = {"security_protocol", "ssl_context", "sasl_mechanism", "sasl_plain_username",
             "sasl_plain_password", "sasl_oauth_token_provider"}
    for client_class in (clients.Producer, clients.Consumer, clients.Admin,
                         clients.MetadataClient):
        assert names <= set(inspect.signature(client_class.__init__).parameters)


# ------------------------------------------------------------------ OAUTHBEARER


@pytest.fixture
def token_module(monkeypatch: pytest.MonkeyPatch) -> str:
    """An importable module of token providers of every accepted kind."""
    module = types.ModuleType("edgebus_test_tokens")

    def sync_token() -> str:
        return "sync-token"

    async def async_token() -> str:
        return "async-token"

    def failing() -> str:
        raise RuntimeError(f"the IdP refused client secret {SECRET}")

    class Provider(AbstractTokenProvider):  # type: ignore[misc]
        async def token(self) -> str:
            return "class-token"

        def extensions(self) -> dict[str, str]:
            return {"tenant": "eu"}

    module.__dict__.update(sync_token=sync_token, async_token=async_token, failing=failing,
                           Provider=Provider, not_callable=42, empty=lambda: "")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    security.token_provider.cache_clear()
    return module.__name__


def oauth(path: str) -> KafkaConfig:
    return kafka(protocol="SASL_SSL", sasl_mechanism="OAUTHBEARER", token_provider=path)


@pytest.mark.parametrize(("name", "token", "extensions"), [
    ("sync_token", "sync-token", {}),
    ("async_token", "async-token", {}),
    ("Provider", "class-token", {"tenant": "eu"}),
])
async def test_a_token_provider_is_loaded_by_import_path(
    token_module: str, name: str, token: str, extensions: dict[str, str]
) -> None:
    options = clients._connection(oauth(f"{token_module}:{name}"), BOOTSTRAP)
    provider = options["sasl_oauth_token_provider"]
    assert options["sasl_mechanism"] == "OAUTHBEARER" and "sasl_plain_password" not in options
    assert isinstance(provider, AbstractTokenProvider)
    assert await provider.token() == token
    assert provider.extensions() == extensions
    assert clients._connection(oauth(f"{token_module}:{name}"), BOOTSTRAP)[
        "sasl_oauth_token_provider"] is provider


@pytest.mark.parametrize(("path", "problem"), [
    ("edgebus_no_such_module:tokens", r"cannot import edgebus_no_such_module"),
    ("{module}:missing", r"has no missing"),
    ("{module}:not_callable", r"is a int, not a callable"),
])
def test_a_token_provider_that_cannot_be_loaded_is_a_config_error(
    token_module: str, path: str, problem: str
) -> None:
    with pytest.raises(ConfigError, match=rf"kafka\.security\.token_provider .*{problem}"):
        clients._connection(oauth(path.format(module=token_module)), BOOTSTRAP)


@pytest.mark.parametrize(("name", "problem"), [
    ("failing", "raised RuntimeError"), ("empty", "gave str, not a token"),
])
async def test_a_failing_token_provider_is_reported_without_its_message(
    token_module: str, name: str, problem: str
) -> None:
    provider = clients._connection(oauth(f"{token_module}:{name}"), BOOTSTRAP)[
        "sasl_oauth_token_provider"]
    with pytest.raises(TokenProviderFailed, match=problem) as caught:
        await provider.token()
    assert SECRET not in str(caught.value)


# ------------------------------------------------------------------ why a start failed


def scram() -> KafkaSecurityConfig:
    return KafkaSecurityConfig(**SCRAM)


def test_a_refused_password_says_to_check_the_credentials_and_hides_the_secret() -> None:
    refused = SaslAuthenticationFailed(f"Authentication failed for {SECRET}")
    error = explain(refused, scram(), "kafka.security", BOOTSTRAP, secrets=[SECRET])
    assert isinstance(error, KafkaAuthFailed) and isinstance(error, InfrastructureUnavailable)
    assert not error.retriable and error.exit_code == 2
    message = str(error)
    assert message.startswith("No edge infrastructure available: Kafka refused the connection")
    assert "SASL SCRAM-SHA-512 authentication failed" in message
    assert "Check the credentials of kafka.security" in message and BOOTSTRAP in message
    assert SECRET not in message


@pytest.mark.parametrize(("error", "check"), [
    (UnsupportedSaslMechanismError("enabled: ['PLAIN']"), "kafka.security.sasl_mechanism"),
    (TokenProviderFailed("the OAuth token provider a:b raised OSError"),
     "kafka.security.token_provider"),
    (ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"),
     "that this listener speaks TLS"),
    (ConnectionResetError(), "that this listener speaks TLS"),
    (IllegalSaslStateError(), "that this listener takes SASL"),
])
def test_each_refusal_names_what_to_check(error: Exception, check: str) -> None:
    found = explain(error, scram(), "kafka.security", BOOTSTRAP)
    assert found is not None and check in found.check


def test_a_sasl_listener_reached_without_sasl_is_named() -> None:
    tls_only = KafkaSecurityConfig(protocol="SSL")
    closed = KafkaConnectionError("Connection at broker-1.example:9093 closed")
    found = explain(closed, tls_only, "kafka.security", BOOTSTRAP, connected=True)
    assert found is not None and "a SASL listener needs SASL_SSL" in found.check
    assert explain(closed, scram(), "kafka.security", BOOTSTRAP, connected=True) is None


@pytest.mark.parametrize("error", [ConnectionRefusedError(111, "refused"), TimeoutError()])
def test_a_broker_that_does_not_answer_is_not_an_auth_failure(error: Exception) -> None:
    assert explain(error, scram(), "kafka.security", BOOTSTRAP) is None


async def test_a_plaintext_client_that_cannot_connect_is_unavailable_as_before() -> None:
    config = EdgeConfig.from_mapping({"kafka": {"connect_timeout_s": 2}}).kafka
    with pytest.raises(InfrastructureUnavailable) as caught:
        await clients.start_producer(config, f"127.0.0.1:{closed_port()}", "log")
    assert not isinstance(caught.value, KafkaAuthFailed)


async def test_a_broker_certificate_from_another_ca_is_a_kafka_auth_failure(
    pki: Path, tls_server: int
) -> None:
    config = EdgeConfig.from_mapping({"kafka": {"connect_timeout_s": 3, "security": {
        "protocol": "SSL", "ca_file": str(pki / "other-ca.pem"),
    }}}).kafka
    with pytest.raises(KafkaAuthFailed, match=r"certificate did not verify.*Check "
                       r"kafka\.security\.ca_file"):
        await clients.start_producer(config, f"127.0.0.1:{tls_server}", "log")


async def test_a_metadata_client_refused_by_tls_is_a_kafka_auth_failure(
    pki: Path, tls_server: int
) -> None:
    config = kafka(protocol="SSL", ca_file=str(pki / "other-ca.pem"))
    with pytest.raises(KafkaAuthFailed, match="certificate did not verify"):
        await clients.start_metadata_client(
            config, f"127.0.0.1:{tls_server}", client_id="test", timeout_s=3
        )


async def test_a_certificate_for_another_host_name_is_a_kafka_auth_failure(
    pki: Path, tls_server: int
) -> None:
    config = EdgeConfig.from_mapping({"kafka": {"connect_timeout_s": 3, "security": {
        "protocol": "SSL", "ca_file": str(pki / "ca.pem"),
    }}}).kafka
    with pytest.raises(KafkaAuthFailed, match=r"did not verify .*mismatch"):
        await clients.start_producer(config, f"localhost:{tls_server}", "log")


# ------------------------------------------------------------------ fixtures


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a server certificate it signed for 127.0.0.1 only, another CA, and a client
    certificate whose key is encrypted with SECRET."""
    d = tmp_path_factory.mktemp("pki")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256")
    for ca in ("ca", "other-ca"):
        _openssl("req", "-x509", *ec, "-nodes", "-keyout", f"{ca}.key", "-out", f"{ca}.pem",
                 "-days", "3650", "-subj", f"/CN=edgebus test {ca}", cwd=d)
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for leaf in ("server", "client"):
        _openssl("req", *ec, "-nodes", "-keyout", f"{leaf}.plain.key", "-out", f"{leaf}.csr",
                 "-subj", f"/CN={leaf}", cwd=d)
        _openssl("x509", "-req", "-in", f"{leaf}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{leaf}.pem", "-days", "3650",
                 "-extfile", "san.ext", cwd=d)
    _openssl("pkey", "-in", "client.plain.key", "-aes256", "-passout", f"pass:{SECRET}",
             "-out", "client.key", cwd=d)
    return d


@pytest.fixture
async def tls_server(pki: Path) -> AsyncIterator[int]:
    """A TLS listener (certificate for 127.0.0.1, signed by ``ca.pem``) that drops
    every connection after the handshake."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki / "server.pem", pki / "server.plain.key")

    async def drop(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(drop, "127.0.0.1", 0, ssl=context)
    async with server:
        yield int(server.sockets[0].getsockname()[1])
