"""The ``query`` section: the region query endpoint's bearer tokens (where they are,
never what they are), its TLS, and the hosts a client trusts (docs/security.md)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import model_validator

from edgebus.config.section import Section
from edgebus.errors import ConfigError

__all__ = ["QueryConfig"]


class QueryConfig(Section):
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
