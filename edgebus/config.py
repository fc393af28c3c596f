"""The spec's ``edge_config``, validated.

An ``edge_config`` is a plain dict (the spec passes one to the runtime), a JSON or
TOML file (``--config PATH`` or ``EDGEBUS_CONFIG``), or nothing at all: zero-config
gives three regions on the local Kafka that ``edgebus kafka up`` started, the spec's
compliance zones and classifications, and strict mode.

Unknown keys are refused with the nearest valid key, so a typo never silently turns
a safety setting off (``strickt_mode`` would otherwise leave strict mode at its
default without a word).
"""

from __future__ import annotations

import difflib
import functools
import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from edgebus.core.placement import (
    DEFAULT_DATA_CLASSIFICATIONS,
    DEFAULT_REGIONS,
    DEFAULT_ZONES,
    ComplianceRules,
    Strategy,
)
from edgebus.errors import ConfigError

__all__ = [
    "ComplianceConfig",
    "DiscoveryConfig",
    "EdgeConfig",
    "KafkaConfig",
    "MonitoringConfig",
    "ReplicationConfig",
    "default_state_dir",
    "load_config",
]

ENV_CONFIG = "EDGEBUS_CONFIG"
ENV_STATE_DIR = "EDGEBUS_STATE_DIR"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DiscoveryConfig(_Section):
    """Which regions exist and how often their health is refreshed."""

    locations: tuple[str, ...] = DEFAULT_REGIONS
    refresh_interval: float = Field(300.0, gt=0)
    health_check_interval: float = Field(60.0, gt=0)
    #: a region is unhealthy past this consumer lag (events not yet materialized) ...
    max_lag_events: int = Field(10_000, ge=1)
    #: ... or when its oldest origin watermark is older than this
    max_watermark_age_ms: float = Field(10_000.0, gt=0)
    #: a health probe (broker metadata, region status) that takes longer has failed
    probe_timeout_ms: float = Field(2_000.0, gt=0)
    #: consecutive failed probes before a region is unhealthy
    max_probe_failures: int = Field(2, ge=1)

    @model_validator(mode="after")
    def _unique_locations(self) -> DiscoveryConfig:
        if not self.locations:
            raise ValueError("discovery.locations is empty: list at least one region")
        dupes = sorted({r for r in self.locations if self.locations.count(r) > 1})
        if dupes:
            raise ValueError(f"discovery.locations repeats {', '.join(dupes)}")
        for region in self.locations:
            if not region or not all(c.isalnum() or c in "-_" for c in region):
                raise ValueError(
                    f"region name {region!r} may hold only letters, digits, '-' and '_' "
                    "(it becomes part of Kafka topic names)"
                )
        return self


class ComplianceConfig(_Section):
    """Zones (zone -> regions) and which zones each data class requires."""

    strict_mode: bool = True
    zones: dict[str, tuple[str, ...]] = Field(
        default_factory=lambda: {k: tuple(v) for k, v in DEFAULT_ZONES.items()}
    )
    data_classifications: dict[str, tuple[str, ...]] = Field(
        default_factory=lambda: {k: tuple(v) for k, v in DEFAULT_DATA_CLASSIFICATIONS.items()}
    )
    default_classification: str = "public"
    #: longest field name a write may carry (longer: refused before classification)
    max_field_name_chars: int = Field(1_024, ge=16, le=1_048_576)
    #: bytes the classifier's memo caches (field names, values) may hold together
    classifier_cache_bytes: int = Field(16 * 1024 * 1024, ge=0, le=1024 * 1024 * 1024)

    @model_validator(mode="after")
    def _zones_defined(self) -> ComplianceConfig:
        for cls, zones in self.data_classifications.items():
            unknown = [z for z in zones if z not in self.zones]
            if unknown:
                raise ValueError(
                    f"data_classifications.{cls} requires zone(s) {', '.join(unknown)} "
                    f"that compliance.zones does not define (defined: "
                    f"{', '.join(self.zones) or 'none'})"
                )
        known = {"public", *self.data_classifications}
        if self.default_classification not in known:
            raise ValueError(
                f"default_classification {self.default_classification!r} is not 'public' "
                f"nor a key of data_classifications ({', '.join(sorted(known))})"
            )
        return self

    def rules(self) -> ComplianceRules:
        """The pure-core view of these settings (built once per distinct settings)."""
        return _rules(
            tuple(self.zones.items()), tuple(self.data_classifications.items()),
            self.strict_mode, self.default_classification,
        )


@functools.lru_cache(maxsize=64)
def _rules(
    zones: tuple[tuple[str, tuple[str, ...]], ...],
    classes: tuple[tuple[str, tuple[str, ...]], ...],
    strict_mode: bool,
    default_classification: str,
) -> ComplianceRules:
    return ComplianceRules.from_mappings(
        zones=dict(zones), data_classifications=dict(classes), strict_mode=strict_mode,
        default_classification=default_classification,
    )


class ReplicationConfig(_Section):
    """How many regions a write should reach."""

    strategy: Literal["multi_region", "single_region"] = "multi_region"
    min_regions: int = Field(1, ge=1)
    #: how often each region service writes a heartbeat watermark into every partition
    #: of its topic: the resolution of bounded-staleness reads and of frontiers passing
    #: events placed elsewhere
    watermark_interval_ms: int = Field(500, ge=10, le=60_000)
    #: events a region holds back until their dependencies are applied, before it stops
    #: fetching partitions that cannot help (see docs/consistency.md)
    max_causal_buffer: int = Field(100_000, ge=1)
    #: bytes (record keys, values and headers) the causal buffer may hold before it
    #: stops fetching, as ``max_causal_buffer`` does for events
    max_causal_buffer_bytes: int = Field(256 * 1024 * 1024, ge=1024 * 1024)
    #: how long an event may wait for a dependency that is not applied here; past it
    #: the event goes to the dead-letter topic (reason ``dependency-timeout``) instead
    #: of blocking its stream forever (redrive it once the dependency is there)
    dependency_timeout_ms: int = Field(600_000, ge=1_000, le=7 * 24 * 3_600_000)
    #: how far a heartbeat's origin time may lie ahead of this region's clock; a later
    #: heartbeat is dead-lettered (reason ``clock-drift``), never taken as fresh
    max_clock_drift_ms: int = Field(60_000, ge=100, le=24 * 3_600_000)


class ReadsConfig(_Section):
    """What causal and bounded-staleness reads do when the region asked is behind."""

    #: how long a read waits for the region to catch up before ``fallback``
    wait_ms: float = Field(2_000.0, ge=0, le=600_000)
    #: ``route``: serve from another region that is fresh enough (else raise);
    #: ``raise``: raise SessionNotCovered / StalenessBoundExceeded
    fallback: Literal["route", "raise"] = "route"
    #: bounded-staleness threshold when a read names none (the spec's example: 5 s)
    staleness_threshold_ms: float = Field(5_000.0, gt=0)
    #: query requests one region service handles at once; more get HTTP 503 with
    #: ``Retry-After`` (the SDK retries elsewhere)
    max_concurrent_requests: int = Field(256, ge=1, le=100_000)


class StrongConfig(_Section):
    """Strong consistency: the commit log, two-phase commit and linearizable reads.

    The commit log (``edgebus.<log_region>.saga``, and ``edgebus.<log_region>.sagas`` for
    multi-step sagas) lives on the cluster of ``log_region`` (default: the first configured region);
    every coordinator, participant and strong client uses that cluster.
    """

    #: the region whose Kafka cluster holds the saga topics (None: the first region)
    log_region: str | None = None
    #: a strong write not decided within this many ms is aborted
    timeout_ms: int = Field(5_000, ge=100, le=600_000)
    #: how long a client waits for the decision past the deadline before reporting the
    #: outcome unknown (a coordinator must be running to decide)
    decision_grace_ms: int = Field(10_000, ge=0, le=600_000)
    #: who decides: ``auto`` (default) the ``edgebus coordinator run`` processes when
    #: one runs, else one EdgeBus among those writing strongly, taken over by another
    #: when it stops; ``service`` only coordinator processes (an EdgeBus never joins
    #: the coordinator group); ``embedded`` a coordinator in every EdgeBus (one
    #: process, or a few long-lived ones: each start and stop rebalances the group)
    coordinator: Literal["auto", "embedded", "service"] = "auto"
    #: deprecated spelling: true is ``coordinator = "embedded"``, false ``"service"``
    embedded_coordinator: bool | None = None
    #: how long a strong read waits for its region to reach the read barrier
    read_wait_ms: int = Field(5_000, ge=0, le=600_000)

    @model_validator(mode="before")
    @classmethod
    def _embedded_coordinator_alias(cls, data: Any) -> Any:
        if not isinstance(data, Mapping) or data.get("embedded_coordinator") is None:
            return data
        alias = "embedded" if data["embedded_coordinator"] else "service"
        given = data.get("coordinator")
        if given is not None and given != alias:
            raise ValueError(
                f"strong.embedded_coordinator = {data['embedded_coordinator']} (deprecated) "
                f"contradicts strong.coordinator = {given!r}: keep only strong.coordinator"
            )
        return {**data, "coordinator": alias}


class StateConfig(_Section):
    """State machines (EdgeStateMachine): ownership leases, fail-over, migration.

    A state's log is ``edgebus.<home>.state.<class>`` on the cluster of its home: the
    first region its data class allows (the strong log region when allowed). Region
    services host states (``edgebus region run``); an EdgeBus hosts them too with
    ``embedded_host``.
    """

    #: the owner's lease when a state names none (``lease_duration_ms``)
    lease_ms: int = Field(10_000, ge=500, le=3_600_000)
    #: the owner stops serving this long before its lease ends by its own clock
    lease_margin_ms: int = Field(500, ge=0, le=60_000)
    #: hosts of the next candidate regions claim a free state this much later, each
    stagger_ms: int = Field(300, ge=0, le=60_000)
    #: how long an operation waits for its answer when it names no timeout_ms
    timeout_ms: int = Field(10_000, ge=100, le=600_000)
    #: a caller re-sends a request (same id: never run twice) when no owner answered
    resend_ms: int = Field(1_500, ge=50, le=600_000)
    #: migration (enable_migration): another region's share of the accesses over the
    #: window that moves ownership there, and the fewest accesses that count
    migration_threshold: float = Field(0.6, gt=0.5, le=1.0)
    migration_window_ms: int = Field(10_000, ge=100, le=3_600_000)
    migration_min_accesses: int = Field(20, ge=1)
    #: how often a host writes its folded states and log positions to SQLite
    snapshot_interval_ms: int = Field(1_000, ge=50, le=600_000)
    #: host states inside every EdgeBus too (its region: ``host_region``, default the
    #: first region); operations on states it owns then skip the forward
    embedded_host: bool = False
    host_region: str | None = None


class MonitoringConfig(_Section):
    """Metrics and tracing switches."""

    metrics_enabled: bool = True
    trace_enabled: bool = False
    health_check_interval: float = Field(30.0, gt=0)


class KafkaSecurityConfig(_Section):
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


class KafkaConfig(_Section):
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


class QueryConfig(_Section):
    """The region query endpoint's security: bearer tokens, TLS, the hosts clients trust.

    A config never holds a token, only where one is: an environment variable or a file
    (its first line), read when a service starts serving and when a client first calls.
    The read token reads keys; the admin token does everything (docs/security.md, "The
    query plane"). Without tokens the endpoint is open and listens on loopback only.
    """

    #: environment variable holding the read token (at least 16 characters) ...
    read_token_env: str | None = None
    #: ... or the file holding it (keep it mode 0600)
    read_token_file: str | None = None
    admin_token_env: str | None = None
    admin_token_file: str | None = None
    #: serve HTTPS with this certificate chain (PEM) and its private key
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    #: clients verify an https endpoint with this CA bundle (PEM; default: the system's);
    #: set (or tls_cert_file set), clients call https endpoints only
    ca_file: str | None = None
    #: hosts an announced endpoint may name: names, IP addresses, networks (10.0.0.0/8);
    #: empty: loopback (127.0.0.0/8, ::1, localhost) and the Kafka bootstrap hosts
    allowed_hosts: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> QueryConfig:
        for role in ("read", "admin"):
            env, file = getattr(self, f"{role}_token_env"), getattr(self, f"{role}_token_file")
            if env is not None and file is not None:
                raise ValueError(f"query.{role}_token_env and query.{role}_token_file are both "
                                 f"set: keep one source of the {role} token")
            if env is not None and not (env.isascii() and env.isidentifier()):
                raise ValueError(f"query.{role}_token_env must name an environment variable "
                                 "(letters, digits, '_'), not hold the token itself")
        for key in ("read_token_file", "admin_token_file", "tls_cert_file", "tls_key_file",
                    "ca_file"):
            if getattr(self, key) == "":
                raise ValueError(f"query.{key} is empty: name a file, or remove the key")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("query.tls_cert_file and query.tls_key_file go together: give "
                             "the certificate chain and its private key, or neither")
        import ipaddress  # only here: the one check of allowed_hosts

        for host in self.allowed_hosts:
            bad = not host or len(host) > 255 or not host.isascii() or not host.isprintable()
            if not bad and ("/" in host or ":" in host):  # a network, an IPv6 address
                try:
                    ipaddress.ip_network(host.strip("[]"), strict=False)
                except ValueError:
                    bad = True  # also name:port: a port is not part of a host
            if bad or any(c in host for c in " @?#\\") or "://" in host:
                raise ValueError(f"query.allowed_hosts entry {host[:80]!r} is not a host name, "
                                 "an IP address or a network such as 10.0.0.0/8")
        return self

    @property
    def has_tokens(self) -> bool:
        """Whether any token is configured (not whether it can be read)."""
        return any((self.read_token_env, self.read_token_file, self.admin_token_env,
                    self.admin_token_file))

    def client_role(self) -> Literal["admin", "read"] | None:
        """The token a client sends: admin if configured, else read, else none."""
        if self.admin_token_env or self.admin_token_file:
            return "admin"
        return "read" if self.read_token_env or self.read_token_file else None

    def token(self, role: Literal["admin", "read"]) -> str | None:
        """The ``role`` token from its environment variable or file (None: none is
        configured); ConfigError, never showing the value, when it is unset, unreadable,
        not 16 to 4096 characters long or holds anything but visible ASCII."""
        shortest, longest = 16, 4096
        env, file = getattr(self, f"{role}_token_env"), getattr(self, f"{role}_token_file")
        if env is not None:
            where, given = f"query.{role}_token_env ({env})", os.environ.get(env)
            if given is None:
                raise ConfigError(f"{where} is not set: export the {role} token in it, or "
                                  f"remove query.{role}_token_env")
            value = given.strip()
        elif file is not None:
            where = f"query.{role}_token_file ({file})"
            try:
                with Path(file).open("rb") as f:
                    raw = f.read(longest + 2)
            except OSError as e:
                raise ConfigError(f"Cannot read {where}: {e.strerror or e}. Write the {role} "
                                  "token into it (mode 0600), or fix the path") from None
            lines = raw.splitlines()
            value = lines[0].decode("ascii", "replace").strip() if lines else ""
        else:
            return None
        if not shortest <= len(value) <= longest or not all("!" <= c <= "~" for c in value):
            raise ConfigError(
                f"The {role} token in {where} must be {shortest} to {longest} visible ASCII "
                "characters (no spaces), e.g. from `openssl rand -hex 32`"
            )
        return value


class EdgeConfig(_Section):
    """The whole ``edge_config`` of the spec, plus edgebus's own ``kafka`` section."""

    discovery: DiscoveryConfig = DiscoveryConfig()
    compliance: ComplianceConfig = ComplianceConfig()
    replication: ReplicationConfig = ReplicationConfig()
    monitoring: MonitoringConfig = MonitoringConfig()
    reads: ReadsConfig = ReadsConfig()
    strong: StrongConfig = StrongConfig()
    state: StateConfig = StateConfig()
    kafka: KafkaConfig = KafkaConfig()
    query: QueryConfig = QueryConfig()
    edge_strategy: Strategy = "compliance_first"
    debug: bool = False
    dataflow_integration: bool = False

    @property
    def regions(self) -> tuple[str, ...]:
        """Known regions, in configured order."""
        return self.discovery.locations

    @property
    def strong_log_region(self) -> str:
        """The region whose cluster holds the saga topics."""
        return self.strong.log_region or self.discovery.locations[0]

    @model_validator(mode="after")
    def _log_region_known(self) -> EdgeConfig:
        if self.strong.log_region is not None and self.strong.log_region not in self.regions:
            raise ValueError(
                f"strong.log_region {self.strong.log_region!r} is not one of the regions "
                f"({', '.join(self.regions)}): name a configured region"
            )
        if self.state.host_region is not None and self.state.host_region not in self.regions:
            raise ValueError(
                f"state.host_region {self.state.host_region!r} is not one of the regions "
                f"({', '.join(self.regions)}): name a configured region"
            )
        if self.state.lease_margin_ms * 2 >= self.state.lease_ms:
            raise ValueError(
                f"state.lease_margin_ms ({self.state.lease_margin_ms}) must be less than "
                f"half of state.lease_ms ({self.state.lease_ms})"
            )
        return self

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None) -> EdgeConfig:
        """Validate a plain dict; unknown keys, bad values and structures nested deeper
        than MAX_CONFIG_DEPTH raise ConfigError."""
        if data is not None and not isinstance(data, Mapping):
            raise ConfigError(
                "edge_config must be a mapping (a JSON object, a TOML table), got "
                f"{type(data).__name__}"
            )
        _check_depth(data or {})
        data = dict(data or {})
        if "edge_config" in data and len(data) == 1:
            inner = data["edge_config"]
            if not isinstance(inner, Mapping):
                raise ConfigError(
                    "edge_config must be a mapping (a JSON object, a TOML table), got "
                    f"{type(inner).__name__}"
                )
            data = dict(inner)
        _check_keys(data, cls, "")
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'edge_config'}: "
                f"{err['msg'].removeprefix('Value error, ')}"
                for err in e.errors()
            )
            raise ConfigError(f"Invalid edge_config: {problems}. Fix these values.") from e


#: the deepest nesting of objects and arrays a config may hold (a real one needs 4)
MAX_CONFIG_DEPTH = 64
#: the largest config file read
MAX_CONFIG_BYTES = 16 * 1024 * 1024


def _check_depth(data: Any, where: str = "edge_config") -> None:
    """ConfigError if ``data`` nests mappings and lists deeper than MAX_CONFIG_DEPTH
    (walked iteratively: no recursion, and a self-referencing dict ends the walk)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, Mapping):
            children: Any = value.values()
        elif isinstance(value, list | tuple):
            children = value
        else:
            continue
        if depth > MAX_CONFIG_DEPTH:
            raise ConfigError(
                f"{where} is nested deeper than {MAX_CONFIG_DEPTH} levels (objects and "
                "arrays within each other): an edge_config needs a few; fix the file"
            )
        stack.extend((child, depth + 1) for child in children)


def load_config(source: EdgeConfig | Mapping[str, Any] | str | Path | None = None) -> EdgeConfig:
    """An EdgeConfig from an object, a dict, a JSON/TOML file, EDGEBUS_CONFIG, or defaults."""
    if isinstance(source, EdgeConfig):
        return source
    if isinstance(source, Mapping):
        return EdgeConfig.from_mapping(source)
    path = source if source is not None else os.environ.get(ENV_CONFIG) or None
    if path is None:
        return EdgeConfig()
    return EdgeConfig.from_mapping(_read_file(Path(path)))


def _read_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise ConfigError(
            f"Cannot read config file {path}: {e.strerror or e}. Pass --config with an "
            f"existing JSON or TOML file, or unset {ENV_CONFIG}."
        ) from e
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"Config file {path} is larger than {MAX_CONFIG_BYTES // (1024 * 1024)} MiB: "
            "not an edge_config; pass the right file"
        )
    kind = "TOML" if path.suffix.lower() == ".toml" else "JSON"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"Config file {path} is not UTF-8 text: {e}") from None
    try:
        data: Any = tomllib.loads(text) if kind == "TOML" else json.loads(text)
    except RecursionError:
        raise ConfigError(
            f"Config file {path} is nested deeper than {MAX_CONFIG_DEPTH} levels (objects "
            "and arrays within each other): an edge_config needs a few; fix the file"
        ) from None
    except ValueError as e:  # JSONDecodeError, TOMLDecodeError, an over-long number
        raise ConfigError(f"Config file {path} is not valid {kind}: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"Config file {path} must hold an object (the edge_config)")
    _check_depth(data, f"Config file {path}")
    return data


def _check_keys(data: Mapping[str, Any], model: type[BaseModel], path: str) -> None:
    fields = model.model_fields
    for key, value in data.items():
        where = f"{path}{key}"
        if key not in fields:
            near = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.5)
            hint = f"; did you mean '{path}{near[0]}'?" if near else "."
            hint += getattr(model, "KEY_HINTS", {}).get(str(key), "")
            raise ConfigError(
                f"Unknown config key {where!r}{hint} Valid keys here: "
                f"{', '.join(fields)}."
            )
        annotation = fields[key].annotation
        if (
            isinstance(annotation, type)
            and issubclass(annotation, BaseModel)
            and isinstance(value, Mapping)
        ):
            _check_keys(value, annotation, f"{where}.")


def default_state_dir() -> Path:
    """Where this machine's edgebus state lives: ``$EDGEBUS_STATE_DIR``, else
    ``~/.local/state/edgebus`` (region stores, state-host snapshots, and what
    ``edgebus kafka up`` records about the brokers it runs)."""
    value = os.environ.get(ENV_STATE_DIR)
    directory = Path(value).expanduser() if value else Path.home() / ".local" / "state" / "edgebus"
    return directory.absolute()
