"""What makes a local Kafka secure (``edgebus kafka up --secure``): listeners, TLS,
SASL/SCRAM users and the authorizer, as broker settings and client settings.

Each cluster stays one KRaft node (broker and controller) on 127.0.0.1, with two
listeners:

    CLIENTS     SASL_SSL, SCRAM-SHA-512 only: every client, and the broker's own
                inter-broker connections (transaction markers to itself), which
                authenticate as ``admin``. The one advertised listener.
    CONTROLLER  SSL with a required client certificate (mutual TLS): the broker's
                connections to its controller (registration, heartbeats, forwarded
                admin requests). Only a certificate of the local CA gets in, and its
                key is gone once the brokers' certificate is made (:mod:`.tls`), so
                in practice only the broker does: its principal
                (:data:`~.tls.BROKER_PRINCIPAL`) is a super user, as the controller
                must authorize what the broker forwards.

Authorization is the KRaft ``StandardAuthorizer`` with ``super.users`` =
``User:admin`` and the broker's principal, and ``allow.everyone.if.no.acl.found``
false: a principal may do only what an ACL grants it (:mod:`.default_acls` grants the
permissive defaults). The SCRAM users (:mod:`.credentials`) are written into the
metadata when the storage is formatted (:func:`scram_arguments`, the storage tool's
``--add-scram``), which is what lets the broker authenticate its inter-broker
connections before anything else runs.

Clients get :func:`client_security`, recorded per cluster in ``state.json`` in the
shape of the config's ``kafka.security`` section and read back through
:func:`edgebus.kafka.clusters.recorded_security`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from edgebus.localkafka.credentials import (
    ADMIN,
    SCRAM_MECHANISM,
    SECRETS_DIR,
    ensure_passwords,
    principals_for,
    read_password,
    write_private,
)
from edgebus.localkafka.processes import HOST
from edgebus.localkafka.tls import BROKER_PRINCIPAL, TlsFiles, ensure_tls

__all__ = [
    "ADMIN_CLIENT_PROPERTIES",
    "AUTHORIZER",
    "CLIENT_LISTENER",
    "CONTROLLER_LISTENER",
    "PROTOCOL",
    "SECURE_MANAGED_PREFIXES",
    "SecureSetup",
    "admin_jaas",
    "client_security",
    "describe_security",
    "prepare_security",
    "scram_arguments",
    "secure_listener_properties",
]

#: the client listener's name and security protocol
CLIENT_LISTENER = "CLIENTS"
PROTOCOL = "SASL_SSL"
#: the controller listener's name (SSL, mutual TLS)
CONTROLLER_LISTENER = "CONTROLLER"
AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
#: broker settings ``--broker-config`` may not change on a secure cluster (a prefix)
SECURE_MANAGED_PREFIXES = (
    "ssl.", "sasl.", "listener.name.", "security.", "authorizer.", "super.users",
    "allow.everyone.if.no.acl.found", "principal.builder.", "early.start.listeners",
)  # fmt: skip
#: the Kafka tools' client settings (``--command-config``), in the secrets directory
ADMIN_CLIENT_PROPERTIES = "admin-client.properties"

_SCRAM_MODULE = "org.apache.kafka.common.security.scram.ScramLoginModule"


@dataclass(frozen=True)
class SecureSetup:
    """The TLS material and the passwords a secure start uses."""

    tls: TlsFiles
    #: user -> password file, admin first
    passwords: Mapping[str, Path]
    #: client settings for Kafka's own tools as ``admin`` (``--command-config``)
    admin_properties: Path

    @property
    def admin_password(self) -> str:
        """The super user's password (read from its file)."""
        return read_password(self.passwords[ADMIN])


def prepare_security(directory: Path, regions: Sequence[str]) -> SecureSetup:
    """The TLS material, the passwords of every principal of ``regions`` and the Kafka
    tools' admin settings, in ``directory``; made now where missing."""
    tls = ensure_tls(directory)
    passwords = ensure_passwords(directory, principals_for(regions))
    admin_properties = directory / SECRETS_DIR / ADMIN_CLIENT_PROPERTIES
    lines = [
        "# written by edgebus kafka up --secure: Kafka's tools as the super user, e.g.",
        "# kafka-topics.sh --bootstrap-server HOST:PORT --command-config THIS_FILE --list",
        f"security.protocol={PROTOCOL}",
        f"sasl.mechanism={SCRAM_MECHANISM}",
        f"sasl.jaas.config={admin_jaas(read_password(passwords[ADMIN]))}",
        "ssl.truststore.type=PEM",
        f"ssl.truststore.location={_escape(str(tls.ca_file))}",
    ]
    write_private(admin_properties, "\n".join(lines) + "\n")
    return SecureSetup(tls, passwords, admin_properties)


def admin_jaas(password: str) -> str:
    """The JAAS line that logs in as ``admin`` with SCRAM."""
    return f'{_SCRAM_MODULE} required username="{ADMIN}" password="{password}";'


def secure_listener_properties(
    port: int, controller_port: int, setup: SecureSetup
) -> dict[str, str]:
    """The broker settings of a secure cluster (they replace the plaintext listener's)."""
    prefix = f"listener.name.{CLIENT_LISTENER.lower()}"
    return {
        "listeners": (
            f"{CLIENT_LISTENER}://{HOST}:{port},{CONTROLLER_LISTENER}://{HOST}:{controller_port}"
        ),
        "advertised.listeners": f"{CLIENT_LISTENER}://{HOST}:{port}",
        "controller.listener.names": CONTROLLER_LISTENER,
        "listener.security.protocol.map": f"{CLIENT_LISTENER}:{PROTOCOL},{CONTROLLER_LISTENER}:SSL",
        "inter.broker.listener.name": CLIENT_LISTENER,
        "sasl.enabled.mechanisms": SCRAM_MECHANISM,
        "sasl.mechanism.inter.broker.protocol": SCRAM_MECHANISM,
        f"{prefix}.{SCRAM_MECHANISM.lower()}.sasl.jaas.config": admin_jaas(setup.admin_password),
        "ssl.keystore.type": "PKCS12",
        "ssl.keystore.location": _escape(str(setup.tls.keystore)),
        "ssl.keystore.password": setup.tls.keystore_password,
        "ssl.key.password": setup.tls.keystore_password,
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": _escape(str(setup.tls.ca_file)),
        "ssl.client.auth": "none",
        f"listener.name.{CONTROLLER_LISTENER.lower()}.ssl.client.auth": "required",
        "authorizer.class.name": AUTHORIZER,
        "super.users": f"User:{ADMIN};{BROKER_PRINCIPAL}",
        "allow.everyone.if.no.acl.found": "false",
    }


def scram_arguments(setup: SecureSetup) -> list[str]:
    """The storage tool's ``--add-scram`` arguments: one SCRAM-SHA-512 user per principal.

    They hold the passwords, so the launcher passes them in a private argument file,
    never on a command line other users can read.
    """
    out: list[str] = []
    for user, path in setup.passwords.items():
        out += ["--add-scram", f"{SCRAM_MECHANISM}=[name={user},password={read_password(path)}]"]
    return out


def client_security(setup: SecureSetup, user: str = ADMIN) -> dict[str, str]:
    """The client settings of a secure cluster as ``user``, in the shape of the config's
    ``kafka.security`` section (paths, never a secret)."""
    return {
        "protocol": PROTOCOL,
        "ca_file": str(setup.tls.ca_file),
        "sasl_mechanism": SCRAM_MECHANISM,
        "username": user,
        "password_file": str(setup.passwords[user]),
    }


def describe_security(security: Mapping[str, str] | None) -> str:
    """For people: ``secure (SASL_SSL, SCRAM-SHA-512)`` or ``plaintext``."""
    if not security:
        return "plaintext"
    return f"secure ({security.get('protocol')}, {security.get('sasl_mechanism')})"


def _escape(value: str) -> str:
    """``value`` as a Java properties value (a backslash would start an escape)."""
    return value.replace("\\", "\\\\")
