"""The ``kafka`` section: where the brokers are, how edgebus lays out its topics, and
how its clients reach each cluster (``kafka.security``, ``kafka.cluster_security``:
TLS and SASL, never a secret; docs/security.md)."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import ConfigDict, Field, model_validator

from edgebus.config.section import Section

__all__ = ["KafkaConfig", "KafkaSecurityConfig"]


class KafkaSecurityConfig(Section):
    """How edgebus's Kafka clients reach a cluster: in the clear (``PLAINTEXT``, the
    default), over TLS (``SSL``), with SASL authentication (``SASL_PLAINTEXT``), or both
    (``SASL_SSL``). No secret is written here: passwords come from an environment
    variable or a file named here, OAuth tokens from a provider named by import path,
    and they are read when a client is created (docs/security.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    #: keys people write for a secret, and where it goes instead (the unknown-key error)
    KEY_HINTS: ClassVar[Mapping[str, str]] = dict.fromkeys(
        (
            "password", "sasl_plain_password", "sasl_password", "secret", "key_password",
            "ssl_password", "token", "oauth_token",
        ),
        " Secrets are never written in the config: name an environment variable that "
        "holds it (password_env) or a file whose first line holds it (password_file).",
    )
    TLS_FIELDS: ClassVar[tuple[str, ...]] = ("ca_file", "cert_file", "key_file", "key_password_env")
    SASL_FIELDS: ClassVar[tuple[str, ...]] = (
        "sasl_mechanism", "username", "username_env", "password_env", "password_file",
        "token_provider",
    )

    protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    #: PEM CA bundle to verify the brokers' certificates (None: the system's CAs)
    ca_file: str | None = None
    #: the client certificate (mutual TLS), PEM, and its private key
    cert_file: str | None = None
    key_file: str | None = None
    #: the environment variable holding the key's password (an encrypted key_file)
    key_password_env: str | None = None
    #: whether the broker's certificate must name the host connected to
    check_hostname: bool = True
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] | None = None
    #: the SASL user, or the environment variable holding it
    username: str | None = None
    username_env: str | None = None
    #: the environment variable holding the SASL password, or a file (its first line)
    password_env: str | None = None
    password_file: str | None = None
    #: ``"module:callable"`` giving OAuth tokens (OAUTHBEARER): a callable returning a
    #: token (or an awaitable of one), or an aiokafka ``AbstractTokenProvider``
    token_provider: str | None = None

    @property
    def uses_tls(self) -> bool:
        """Whether connections are wrapped in TLS."""
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        """Whether connections authenticate with SASL."""
        return self.protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    @classmethod
    def unknown_key(cls, where: str, key: str) -> str:
        """The error for an unknown key ``key`` of a section at ``where``."""
        near = difflib.get_close_matches(key, list(cls.model_fields), n=1, cutoff=0.5)
        hint = f"; did you mean '{where}{near[0]}'?" if near else "."
        return (
            f"Unknown config key '{where}{key}'{hint}{cls.KEY_HINTS.get(key, '')} "
            f"Valid keys here: {', '.join(cls.model_fields)}"
        )

    @model_validator(mode="after")
    def _consistent(self) -> KafkaSecurityConfig:
        problem = self._format_problem() or self._protocol_problem() or self._tls_problem()
        if problem is None and self.uses_sasl:
            problem = self._sasl_problem()
        if problem is not None:
            raise ValueError(problem)
        return self

    @staticmethod
    def _is_import_path(value: str) -> bool:
        module, colon, attribute = value.partition(":")
        parts = [*module.split("."), *attribute.split(".")]
        return bool(colon) and all(p.isascii() and p.isidentifier() for p in parts)

    @staticmethod
    def _listed(names: list[str]) -> str:
        return f"{', '.join(names)} {'is' if len(names) == 1 else 'are'}"

    @staticmethod
    def _them(names: list[str]) -> str:
        return "it" if len(names) == 1 else "them"

    def _given(self, names: tuple[str, ...]) -> list[str]:
        return [n for n in names if getattr(self, n) is not None]

    def _format_problem(self) -> str | None:
        for name in (*self.TLS_FIELDS, *self.SASL_FIELDS):
            value = getattr(self, name)
            if isinstance(value, str) and not value.strip():
                return f"{name} is empty: give a value or leave it out"
        for name in ("key_password_env", "username_env", "password_env"):
            value = getattr(self, name)
            if value is not None and not (value.isascii() and value.isidentifier()):
                return (
                    f"{name} names an environment variable (letters, digits and '_', e.g. "
                    "EDGEBUS_KAFKA_PASSWORD), not the secret itself: export the secret in "
                    "a variable and name the variable here"
                )
        if self.token_provider is not None and not self._is_import_path(self.token_provider):
            return (
                f"token_provider {self.token_provider!r} is not an import path: write "
                "\"package.module:callable\""
            )
        return None

    def _protocol_problem(self) -> str | None:
        tls = self._given(self.TLS_FIELDS) + ([] if self.check_hostname else ["check_hostname"])
        sasl = self._given(self.SASL_FIELDS)
        if self.protocol == "PLAINTEXT" and (tls or sasl):
            wanted = "SASL_SSL" if sasl else "SSL"
            return (
                f"protocol is PLAINTEXT (no TLS, no SASL) but {self._listed(tls + sasl)} set: "
                f"set protocol = \"{wanted}\" to use {self._them(tls + sasl)}, or remove "
                f"{self._them(tls + sasl)}"
            )
        if tls and not self.uses_tls:
            return (
                f"protocol {self.protocol} does not use TLS but {self._listed(tls)} set: set "
                f"protocol = \"SASL_SSL\" to use {self._them(tls)}, or remove {self._them(tls)}"
            )
        if sasl and not self.uses_sasl:
            return (
                f"protocol {self.protocol} does not use SASL but {self._listed(sasl)} set: set "
                f"protocol = \"SASL_SSL\" to authenticate with SASL over TLS, or remove "
                f"{self._them(sasl)}"
            )
        return None

    def _tls_problem(self) -> str | None:
        if (self.cert_file is None) != (self.key_file is None):
            given, missing = ("cert_file", "key_file")[:: 1 if self.cert_file else -1]
            return (
                f"{given} is set without {missing}: mutual TLS needs the client certificate "
                "(cert_file) and its private key (key_file); set both, or neither"
            )
        if self.key_password_env is not None and self.key_file is None:
            return "key_password_env is the password of key_file: set key_file, or remove it"
        return None

    def _sasl_problem(self) -> str | None:
        mechanism = self.sasl_mechanism
        if mechanism is None:
            return (
                f"protocol {self.protocol} needs sasl_mechanism: PLAIN, SCRAM-SHA-256, "
                "SCRAM-SHA-512 or OAUTHBEARER (or set protocol = \"SSL\" for TLS alone)"
            )
        if mechanism == "OAUTHBEARER":
            extra = self._given(("username", "username_env", "password_env", "password_file"))
            if extra:
                return (
                    "sasl_mechanism OAUTHBEARER authenticates with a token from "
                    f"token_provider, not with {', '.join(extra)}: remove them, or set "
                    "sasl_mechanism to PLAIN or SCRAM-SHA-512 to use a password"
                )
            if self.token_provider is None:
                return (
                    "sasl_mechanism OAUTHBEARER needs token_provider: \"package.module:"
                    "callable\" returning an OAuth token"
                )
            return None
        if self.token_provider is not None:
            return (
                f"token_provider is for OAUTHBEARER, not {mechanism}: remove it, or set "
                "sasl_mechanism = \"OAUTHBEARER\""
            )
        if (self.username is None) == (self.username_env is None):
            return (
                f"sasl_mechanism {mechanism} needs a username: set username (or "
                "username_env, an environment variable holding it), not both"
                if self.username is not None else
                f"sasl_mechanism {mechanism} needs a username: set username (or "
                "username_env, an environment variable holding it)"
            )
        if (self.password_env is None) == (self.password_file is None):
            which = "one of them, not both" if self.password_env else "one of them"
            return (
                f"sasl_mechanism {mechanism} needs a password from password_env (an "
                f"environment variable holding it) or password_file (a file holding it): "
                f"set {which}; a password is never written in the config"
            )
        return None


class KafkaConfig(Section):
    """Where the brokers are and how edgebus lays out its topics.

    Broker addresses are resolved, first match wins: ``clusters[region]``,
    ``bootstrap``, the ``EDGEBUS_BOOTSTRAP`` environment variable, the clusters that
    ``edgebus kafka up`` recorded, then ``127.0.0.1:9092``.
    """

    bootstrap: str | None = None
    clusters: dict[str, str] = Field(default_factory=dict)
    partitions: int = Field(6, ge=1, le=1000)
    topic_replication_factor: int = Field(1, ge=1)
    linger_ms: int = Field(5, ge=0)
    #: the largest batch (and so the largest event) a producer sends; Kafka's default
    #: message.max.bytes is about 1 MiB
    max_batch_bytes: int = Field(512 * 1024, ge=1024, le=64 * 1024 * 1024)
    connect_timeout_s: float = Field(10.0, gt=0)
    #: how long a producer keeps an unacknowledged record through a broker's absence
    #: (a restart, a leader election) before the write fails; retries never duplicate
    #: (every producer is idempotent). Kafka's ``delivery.timeout.ms``.
    delivery_timeout_ms: int = Field(120_000, ge=1000, le=3_600_000)
    #: TLS and SASL settings of every client (PLAINTEXT: none) ...
    security: KafkaSecurityConfig = KafkaSecurityConfig()
    #: ... except on the clusters named here by their bootstrap address (as written in
    #: ``clusters`` / ``bootstrap``), whose clients use these settings instead
    cluster_security: dict[str, KafkaSecurityConfig] = Field(default_factory=dict)

    #: aiokafka's and librdkafka's names for security settings (the unknown-key error)
    KEY_HINTS: ClassVar[Mapping[str, str]] = dict.fromkeys(
        (
            "security_protocol", "ssl_context", "ssl_cafile", "ssl_certfile", "ssl_keyfile",
            "sasl_mechanism", "sasl_plain_username", "sasl_plain_password", "username",
            "password",
        ),
        " TLS and SASL settings go in the kafka.security section (protocol, ca_file, "
        "sasl_mechanism, username, password_env, ...; see docs/security.md).",
    )

    @model_validator(mode="before")
    @classmethod
    def _cluster_security_keys(cls, data: Any) -> Any:
        sections = data.get("cluster_security") if isinstance(data, Mapping) else None
        if not isinstance(sections, Mapping):
            return data
        for address, section in sections.items():
            if not isinstance(section, Mapping):
                continue
            for key in section:
                if key not in KafkaSecurityConfig.model_fields:
                    raise ValueError(KafkaSecurityConfig.unknown_key(
                        f"kafka.cluster_security[{address!r}].", str(key)
                    ))
        return data

    @model_validator(mode="after")
    def _cluster_security_addresses(self) -> KafkaConfig:
        seen: dict[str, str] = {}
        for address in self.cluster_security:
            key = self.address_key(address)
            if not key:
                raise ValueError("cluster_security has an empty address: name a cluster's "
                                 "bootstrap address (host:port[,host:port...])")
            if key in seen:
                raise ValueError(f"cluster_security names the cluster {key} twice "
                                 f"({seen[key]!r} and {address!r}): keep one")
            seen[key] = address
        return self

    @staticmethod
    def address_key(bootstrap: str) -> str:
        """A bootstrap address as ``cluster_security`` matches it: its comma-separated
        ``host:port`` parts without spaces."""
        return ",".join(part.strip() for part in bootstrap.split(",") if part.strip())

    def security_for(self, bootstrap: str) -> tuple[str, KafkaSecurityConfig]:
        """The security settings of the clients of the cluster at ``bootstrap``, and
        where they are in the config (``kafka.security`` or a ``cluster_security``
        entry: for error messages)."""
        key = self.address_key(bootstrap)
        for address, settings in self.cluster_security.items():
            if self.address_key(address) == key:
                return f"kafka.cluster_security[{address!r}]", settings
        return "kafka.security", self.security
