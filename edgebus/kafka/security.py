"""TLS and SASL for edgebus's Kafka clients: from ``kafka.security`` to aiokafka's settings.

:mod:`edgebus.kafka.clients` asks :func:`client_security` for the settings of every
client it builds; this module turns the config's :class:`~edgebus.config.KafkaSecurityConfig`
of a cluster (its ``kafka.cluster_security`` entry, else ``kafka.security``) into
aiokafka's keyword arguments:

========================  =========================================================
``protocol``              aiokafka
========================  =========================================================
``PLAINTEXT``             nothing (aiokafka's defaults: today's clients, unchanged)
``SSL``                   ``security_protocol``, ``ssl_context``
``SASL_PLAINTEXT``        ``security_protocol``, ``sasl_mechanism`` and its credentials
``SASL_SSL``              all of the above
========================  =========================================================

The credentials of PLAIN and SCRAM-SHA-* are ``sasl_plain_username`` and
``sasl_plain_password``; OAUTHBEARER's is ``sasl_oauth_token_provider``.

Secrets are read when a client is created, from the environment variable or the file
the config names (so a rotated password is used by the next client); a missing one
is a :class:`~edgebus.errors.ConfigError` naming the variable or the file, never the
secret. The SSL context of a set of settings is built once (its key's password read
then); a token provider is imported once per import path.

A cluster the config says nothing about (PLAINTEXT by default) that ``edgebus kafka up
--secure`` runs on this machine gets the client settings the launcher recorded
(:func:`~edgebus.kafka.clusters.recorded_security`).

When a client with TLS or SASL fails to start, :func:`auth_failure` connects once more
to find out why and names what to check (:class:`~edgebus.errors.KafkaAuthFailed`).
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import inspect
import os
import ssl
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Final

from aiokafka.abc import AbstractTokenProvider
from aiokafka.conn import create_conn, get_ip_port_afi
from aiokafka.errors import (
    AuthenticationFailedError,
    AuthenticationMethodNotSupported,
    IllegalSaslStateError,
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)
from aiokafka.protocol.metadata import MetadataRequest
from pydantic import ValidationError

from edgebus.config import KafkaConfig, KafkaSecurityConfig
from edgebus.errors import ConfigError, KafkaAuthFailed
from edgebus.kafka.clusters import recorded_security

__all__ = [
    "TokenProviderFailed",
    "auth_failure",
    "client_security",
    "explain",
    "security_options",
    "settings_for",
    "ssl_context",
    "token_provider",
]

#: the most of a password file read (its first line is the password)
_MAX_SECRET_FILE_BYTES: Final = 64 * 1024
_SASL_REFUSED: Final = (
    SaslAuthenticationFailed, AuthenticationFailedError, AuthenticationMethodNotSupported,
)


class TokenProviderFailed(KafkaError):  # type: ignore[misc]  # aiokafka is untyped
    """The OAuth token provider raised, or gave no token (a KafkaError: aiokafka treats
    it as a failed connection, and :func:`auth_failure` reports it)."""


def client_security(kafka: KafkaConfig, bootstrap: str) -> dict[str, Any]:
    """aiokafka's TLS and SASL keyword arguments for a client of the cluster at
    ``bootstrap`` (``{}`` for PLAINTEXT). Reads the secrets now; ConfigError when one
    is missing."""
    return security_options(*settings_for(kafka, bootstrap))


def settings_for(kafka: KafkaConfig, bootstrap: str) -> tuple[KafkaSecurityConfig, str]:
    """The security settings of the cluster at ``bootstrap`` and where they come from:
    its ``kafka.cluster_security`` entry, else ``kafka.security``; when neither says
    anything (PLAINTEXT by default) and the cluster is one ``edgebus kafka up --secure``
    runs here, the client settings it recorded (a secure cluster takes nothing else)."""
    where, settings = kafka.security_for(bootstrap)
    if where == "kafka.security" and settings == _DEFAULT and _is_loopback(bootstrap):
        recorded = recorded_security(bootstrap)
        if recorded is not None:
            return _recorded(tuple(sorted(recorded.items()))), "the recorded kafka.security"
    return settings, where


_DEFAULT: Final = KafkaSecurityConfig()


def _is_loopback(bootstrap: str) -> bool:
    hosts = (part.strip().rpartition(":")[0] for part in bootstrap.split(","))
    return any(host in ("127.0.0.1", "localhost") for host in hosts)


@functools.lru_cache(maxsize=16)
def _recorded(items: tuple[tuple[str, str], ...]) -> KafkaSecurityConfig:
    """What ``edgebus kafka up --secure`` recorded, validated as a config section."""
    try:
        return KafkaSecurityConfig.model_validate(dict(items))
    except ValidationError as e:
        problems = "; ".join(err["msg"].removeprefix("Value error, ") for err in e.errors())
        raise ConfigError(
            f"the client settings `edgebus kafka up --secure` recorded are not valid "
            f"({problems}): run `edgebus kafka down --wipe` and `edgebus kafka up --secure`"
            ", or set kafka.security in the config"
        ) from None


def security_options(settings: KafkaSecurityConfig, where: str) -> dict[str, Any]:
    """aiokafka's keyword arguments for ``settings`` (found at ``where`` in the config,
    for error messages)."""
    if settings.protocol == "PLAINTEXT":
        return {}
    options: dict[str, Any] = {"security_protocol": settings.protocol}
    if settings.uses_tls:
        options["ssl_context"] = ssl_context(settings, where)
    if settings.uses_sasl:
        options["sasl_mechanism"] = settings.sasl_mechanism
        if settings.sasl_mechanism == "OAUTHBEARER":
            assert settings.token_provider is not None  # the config's validation
            options["sasl_oauth_token_provider"] = token_provider(
                settings.token_provider, f"{where}.token_provider"
            )
        else:
            options["sasl_plain_username"] = _username(settings, where)
            options["sasl_plain_password"] = _password(settings, where)
    return options


# ------------------------------------------------------------------ secrets


def _username(settings: KafkaSecurityConfig, where: str) -> str:
    if settings.username is not None:
        return settings.username
    assert settings.username_env is not None  # the config's validation
    return _from_env(settings.username_env, f"{where}.username_env", "the SASL user name")


def _password(settings: KafkaSecurityConfig, where: str) -> str:
    if settings.password_env is not None:
        return _from_env(settings.password_env, f"{where}.password_env", "the SASL password")
    assert settings.password_file is not None  # the config's validation
    return _first_line(settings.password_file, f"{where}.password_file")


def _from_env(name: str, setting: str, what: str) -> str:
    """The value of the environment variable ``name``; ConfigError naming it (and the
    setting that names it) when it is unset or empty."""
    value = os.environ.get(name)
    if not value:
        state = "empty" if value == "" else "not set"
        raise ConfigError(
            f"{setting} names the environment variable {name}, which is {state}: "
            f"export {what} in it before starting edgebus"
        )
    return value


def _first_line(path: str, setting: str) -> str:
    """The first line of the file at ``path``; ConfigError naming the file when it
    cannot be read or the line is empty (the content is never quoted)."""
    file = Path(path).expanduser()
    try:
        with file.open("rb") as f:
            raw = f.read(_MAX_SECRET_FILE_BYTES)
    except OSError as e:
        raise ConfigError(
            f"cannot read {setting} {file}: {e.strerror or type(e).__name__}; point it at "
            "a file this user can read whose first line is the password"
        ) from None
    try:
        lines = raw.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise ConfigError(f"{setting} {file} is not UTF-8 text: its first line must be "
                          "the password") from None
    if not lines or not lines[0]:
        raise ConfigError(f"{setting} {file} has an empty first line: write the password "
                          "on it")
    return lines[0]


# ------------------------------------------------------------------ TLS


@functools.lru_cache(maxsize=32)
def ssl_context(settings: KafkaSecurityConfig, where: str) -> ssl.SSLContext:
    """The SSL context of ``settings``, built once: the brokers' certificates verified
    against ``ca_file`` (else the system's CAs), their host names checked unless
    ``check_hostname`` is false, and the client certificate of mutual TLS loaded.
    ConfigError naming the file that cannot be used."""
    ca_file = None if settings.ca_file is None else str(Path(settings.ca_file).expanduser())
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    except ssl.SSLError as e:
        reason = getattr(e, "reason", None) or e
        raise ConfigError(
            f"{where}.ca_file {ca_file} holds no usable PEM certificate ({reason}): "
            "point it at the CA bundle that signed the brokers' certificates"
        ) from None
    except OSError as e:
        raise ConfigError(f"cannot read {where}.ca_file {ca_file}: "
                          f"{e.strerror or type(e).__name__}") from None
    context.check_hostname = settings.check_hostname
    if settings.cert_file is not None and settings.key_file is not None:
        _load_client_certificate(context, settings, where)
    return context


def _load_client_certificate(
    context: ssl.SSLContext, settings: KafkaSecurityConfig, where: str
) -> None:
    assert settings.cert_file is not None and settings.key_file is not None
    cert = Path(settings.cert_file).expanduser()
    key = Path(settings.key_file).expanduser()
    password = (
        "" if settings.key_password_env is None else
        _from_env(settings.key_password_env, f"{where}.key_password_env",
                  "the password of the client key")
    )
    for file, setting in ((cert, "cert_file"), (key, "key_file")):
        if not os.access(file, os.R_OK):
            raise ConfigError(f"cannot read {where}.{setting} {file}: no such file, or not "
                              "readable by this user")
    try:
        # a callable, even for no password: OpenSSL would otherwise prompt on the terminal
        context.load_cert_chain(cert, key, password=lambda: password)
    except (ssl.SSLError, OSError) as e:
        reason = getattr(e, "reason", None) or e.strerror or type(e).__name__
        raise ConfigError(
            f"cannot load the client certificate {where}.cert_file {cert} with "
            f"{where}.key_file {key} ({reason}): check that both are PEM, that the key "
            "belongs to the certificate, and, for an encrypted key, key_password_env"
        ) from None


# ------------------------------------------------------------------ OAUTHBEARER


class _ImportedTokenProvider(AbstractTokenProvider):  # type: ignore[misc]  # untyped
    """aiokafka's token provider around what ``token_provider`` names: its failures
    become :class:`TokenProviderFailed` naming the import path, never the token."""

    def __init__(
        self, path: str, source: Callable[[], Any], extensions: Callable[[], Any] | None
    ) -> None:
        self._path = path
        self._source = source
        self._extensions = extensions

    async def token(self) -> str:
        """A token from the provider (awaited when it gives an awaitable)."""
        try:
            value = self._source()
            if inspect.isawaitable(value):
                value = await value
        except Exception as e:  # its message may hold a client secret: not chained
            raise TokenProviderFailed(
                f"the OAuth token provider {self._path} raised {type(e).__name__}"
            ) from None
        if not isinstance(value, str) or not value:
            raise TokenProviderFailed(
                f"the OAuth token provider {self._path} gave {type(value).__name__}, not a "
                "token (a non-empty str)"
            )
        return value

    def extensions(self) -> dict[str, str]:
        """The provider's SASL extensions, if it has any."""
        return dict(self._extensions()) if self._extensions is not None else {}

    def __repr__(self) -> str:
        return f"<OAuth token provider {self._path}>"


@functools.lru_cache(maxsize=16)
def token_provider(path: str, setting: str) -> AbstractTokenProvider:
    """The token provider ``"module:callable"`` names, imported once: an aiokafka
    ``AbstractTokenProvider`` (class or instance), or a callable returning a token or
    an awaitable of one. ConfigError when it cannot be imported or is neither."""
    target = _import(path, setting)
    if isinstance(target, type) and issubclass(target, AbstractTokenProvider):
        try:
            target = target()
        except Exception as e:
            raise ConfigError(f"{setting} {path}: creating it raised "
                              f"{type(e).__name__}") from None
    if isinstance(target, AbstractTokenProvider):
        return _ImportedTokenProvider(path, target.token, target.extensions)
    if callable(target):
        return _ImportedTokenProvider(path, target, None)
    raise ConfigError(
        f"{setting} {path} is a {type(target).__name__}, not a callable returning an OAuth "
        "token nor an aiokafka AbstractTokenProvider"
    )


def _import(path: str, setting: str) -> Any:
    module_name, _, attribute = path.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(f"{setting} {path}: cannot import {module_name} ({e.msg}); "
                          "install it or fix the path") from None
    except Exception as e:
        raise ConfigError(f"{setting} {path}: importing {module_name} raised "
                          f"{type(e).__name__}") from None
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ConfigError(f"{setting} {path}: {module_name} has no {attribute}") from None
    return target


# ------------------------------------------------------------------ why a start failed


async def auth_failure(
    kafka: KafkaConfig, bootstrap: str, timeout_s: float, what: str = "Kafka"
) -> KafkaAuthFailed | None:
    """After a client of the cluster at ``bootstrap`` failed to start: whether TLS or
    SASL is why, found by connecting once more (to its first broker, with the same
    settings, within ``timeout_s``). None when security is off or the failure is not
    one of TLS or SASL (the caller keeps its InfrastructureUnavailable)."""
    settings, where = settings_for(kafka, bootstrap)
    if settings.protocol == "PLAINTEXT":
        return None
    options = security_options(settings, where)
    host, port, _ = get_ip_port_afi(KafkaConfig.address_key(bootstrap).split(",")[0])
    conn = None
    try:
        async with asyncio.timeout(timeout_s):
            conn = await create_conn(
                host, port, client_id="edgebus-auth-check",
                request_timeout_ms=max(1, int(timeout_s * 1000)), **options,
            )
            # a listener that wants SASL lets a client without it connect, then hangs up
            await conn.send(MetadataRequest([]))
    except Exception as e:
        return explain(e, settings, where, bootstrap, what, _secrets(options),
                       connected=conn is not None)
    finally:
        if conn is not None:
            conn.close()
    return None


def explain(
    error: BaseException, settings: KafkaSecurityConfig, where: str, bootstrap: str,
    what: str = "Kafka", secrets: Iterable[str] = (), *, connected: bool = False,
) -> KafkaAuthFailed | None:
    """The KafkaAuthFailed that ``error`` (raised connecting with ``settings``; after
    the connection and its handshakes succeeded if ``connected``) means, or None when
    it is not a TLS or SASL failure (a broker that does not answer)."""
    if connected:
        found = _after_connecting(error, settings, where)
    else:
        found = _diagnosis(error, settings, where)
    if found is None:
        return None
    detail, check = found
    for secret in secrets:
        detail = detail.replace(secret, "***")
    return KafkaAuthFailed(f"{what} refused the connection: {detail}", check, [bootstrap])


def _after_connecting(
    error: BaseException, settings: KafkaSecurityConfig, where: str
) -> tuple[str, str] | None:
    """A broker that hung up on a request after the handshakes: a SASL listener
    reached without SASL."""
    if isinstance(error, KafkaConnectionError) and not settings.uses_sasl:
        return (
            "the broker closed the connection at the first request (a listener that "
            "requires SASL authentication does)",
            f"that this listener takes {where}.protocol {settings.protocol} (a SASL "
            "listener needs SASL_SSL or SASL_PLAINTEXT, with credentials)",
        )
    return None


def _diagnosis(
    error: BaseException, settings: KafkaSecurityConfig, where: str
) -> tuple[str, str] | None:
    """(what happened, what to check) for a TLS or SASL failure; None otherwise."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return (
            f"its TLS certificate did not verify ({error.verify_message})",
            f"{where}.ca_file (the CA that signed the brokers' certificates) and that the "
            "bootstrap host is a name the broker's certificate holds",
        )
    if isinstance(error, ssl.SSLError):
        reason = getattr(error, "reason", None) or error.strerror or error
        return (
            f"the TLS handshake failed ({reason})",
            f"that this listener speaks TLS ({where}.protocol {settings.protocol}) and, for "
            f"mutual TLS, {where}.cert_file and key_file",
        )
    if isinstance(error, ConnectionResetError | ssl.SSLEOFError) and settings.uses_tls:
        return (
            "the broker closed the connection during the TLS handshake",
            f"that this listener speaks TLS ({where}.protocol {settings.protocol}; a "
            "listener without TLS needs PLAINTEXT or SASL_PLAINTEXT)",
        )
    if isinstance(error, IllegalSaslStateError):
        return (
            "the broker did not expect SASL authentication on this listener",
            f"that this listener takes SASL ({where}.protocol {settings.protocol}; a "
            "listener without SASL needs PLAINTEXT or SSL)",
        )
    if isinstance(error, TokenProviderFailed):
        return str(error), f"{where}.token_provider"
    if isinstance(error, UnsupportedSaslMechanismError):
        message = error.args[0] if error.args and isinstance(error.args[0], str) else ""
        enabled = message[message.find("Enabled mechanisms"):] if "Enabled" in message else ""
        return (
            f"the broker does not enable SASL mechanism {settings.sasl_mechanism}"
            + (f" ({enabled})" if enabled else ""),
            f"{where}.sasl_mechanism against the mechanisms the broker enables",
        )
    if isinstance(error, _SASL_REFUSED):
        detail = f": {error.args[0]}" if error.args and isinstance(error.args[0], str) else ""
        return (
            f"SASL {settings.sasl_mechanism} authentication failed{detail}",
            f"the credentials of {where} (username, password_env or password_file, "
            "token_provider) and that the user exists on this cluster",
        )
    if isinstance(error, KafkaConnectionError) and not settings.uses_tls:
        return (
            "the broker closed the connection during the Kafka handshake",
            f"that this listener takes {where}.protocol {settings.protocol} (a TLS "
            "listener needs SSL or SASL_SSL)",
        )
    return None


def _secrets(options: dict[str, Any]) -> list[str]:
    password = options.get("sasl_plain_password")
    return [password] if isinstance(password, str) and password else []
