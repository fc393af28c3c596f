"""A secure local Kafka for integration tests: ``edgebus kafka up --secure`` in a state
dir of its own, and raw aiokafka settings for its principals.

The ``secure`` fixture (module scope, exposed by ``tests/integration/conftest.py``)
starts one cluster per test module that asks for it and wipes it at the end, so each
module may change its ACLs freely.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from aiokafka.helpers import create_ssl_context

from tests.integration.test_kafka_launcher import Cli, launcher_env, stop_leftovers

__all__ = ["Secure", "password", "sasl_ssl", "secure", "secure_security"]


class Secure(NamedTuple):
    """The state dir and environment of the module's secure cluster, and `up`'s JSON."""

    state: Path
    env: dict[str, str]
    doc: dict[str, Any]

    @property
    def bootstrap(self) -> str:
        """The (first) cluster's bootstrap address."""
        return str(self.doc["clusters"][0]["bootstrap"])

    @property
    def security(self) -> dict[str, str]:
        """The client settings `up` recorded (as admin), in kafka.security's shape."""
        return dict(self.doc["clusters"][0]["security"])


@pytest.fixture(scope="module")
def secure(cli: Cli, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secure]:
    """`edgebus kafka up --secure` once for this module; wiped at the end."""
    state = tmp_path_factory.mktemp("secure-kafka")
    env = launcher_env(state)
    try:
        code, doc, out, err = cli(["kafka", "up", "--secure", "--json"], env)
        assert code == 0, f"up --secure failed: {out}{err}"
        yield Secure(state, env, doc)
    finally:
        stop_leftovers(cli, env, state)


def password(security: dict[str, str], user: str | None = None) -> str:
    """The password of ``user`` (default: the recorded one), read from its file."""
    path = Path(security["password_file"])
    if user is not None:
        path = path.with_name(f"{user}.password")
    return path.read_text().strip()


def secure_security(security: dict[str, str], user: str) -> dict[str, str]:
    """The recorded client settings as ``user`` (a kafka.security section)."""
    path = Path(security["password_file"]).with_name(f"{user}.password")
    return {**security, "username": user, "password_file": str(path)}


def sasl_ssl(
    security: dict[str, str], user: str = "admin", secret: str | None = None
) -> dict[str, Any]:
    """aiokafka settings for SASL_SSL with the recorded CA, as ``user``."""
    return {
        "security_protocol": "SASL_SSL",
        "ssl_context": create_ssl_context(cafile=security["ca_file"]),
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": user,
        "sasl_plain_password": secret if secret is not None else password(security, user),
    }
