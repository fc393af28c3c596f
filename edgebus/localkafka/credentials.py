"""The SCRAM principals of a secure local Kafka and their passwords, in private files.

``edgebus kafka up --secure`` makes one SCRAM-SHA-512 user per role when it formats
the clusters' storage (:mod:`edgebus.localkafka.security` passes them to the storage
tool): ``admin`` (the super user the launcher and, by default, every later edgebus
command connect as), ``region-<R>`` for each region service, ``coordinator`` for the
commit-log coordinators and ``writer`` for the SDK's writers. Each password is random
(:func:`new_password`) and lives alone in ``<state dir>/secrets/<user>.password``
(no trailing newline), the form ``kafka.security.password_file`` reads; the directory
is 0700, every file 0600 (:func:`write_private`). They are made at first use and kept
while the files exist, since the brokers' metadata holds the SCRAM credentials made
from them; ``kafka down --wipe`` removes them with the data.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterable, Sequence
from pathlib import Path

# The principal names are the plan's (ACLs are granted to them): the super user
# ``admin`` (``super.users``: the launcher's own connections, and the default principal
# of the client settings recorded in ``state.json``), ``region-<R>``, ``coordinator``
# and ``writer``; re-exported here.
from edgebus.kafka.acl_plan import (
    ADMIN,
    COORDINATOR,
    WRITER,
    managed_principals,
    region_principal,
)

__all__ = [
    "ADMIN",
    "COORDINATOR",
    "SCRAM_MECHANISM",
    "SECRETS_DIR",
    "WRITER",
    "ensure_passwords",
    "new_password",
    "password_file",
    "passwords_intact",
    "principals_for",
    "private_dir",
    "read_password",
    "region_principal",
    "write_private",
]

#: the directory of the passwords (and the Kafka tools' admin client settings)
SECRETS_DIR = "secrets"
#: the SASL mechanism of every principal
SCRAM_MECHANISM = "SCRAM-SHA-512"


def principals_for(regions: Iterable[str]) -> tuple[str, ...]:
    """Every SCRAM user of a secure local Kafka hosting ``regions``, admin first: the
    super user, then the principals of the least-privilege plan
    (:func:`edgebus.kafka.acl_plan.managed_principals`)."""
    return (ADMIN, *managed_principals(regions))


def new_password() -> str:
    """A random password: 32 URL-safe characters (192 bits), nothing to quote anywhere."""
    return secrets.token_urlsafe(24)


# --------------------------------------------------------------------------- private files


def private_dir(path: Path) -> Path:
    """Create ``path`` (and its parents) if needed and make it 0700; returns it."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)
    return path


def write_private(path: Path, data: str | bytes) -> Path:
    """Replace ``path`` atomically with ``data``, readable by its owner only (0600).

    The content is written to a temporary file created 0600 beside it, so no other
    user can read it at any moment, not even while it is written.
    """
    raw = data.encode() if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o600)  # an older leftover keeps its mode otherwise
            handle.write(raw)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return path


# --------------------------------------------------------------------------- passwords


def password_file(directory: Path, user: str) -> Path:
    """Where the password of ``user`` is kept in the state directory ``directory``."""
    return directory / SECRETS_DIR / f"{user}.password"


def read_password(path: Path) -> str:
    """The password kept in ``path``."""
    return path.read_text().strip()


def passwords_intact(directory: Path, users: Sequence[str]) -> bool:
    """True when every one of ``users`` has a non-empty password file in ``directory``."""
    for user in users:
        path = password_file(directory, user)
        try:
            if not read_password(path):
                return False
        except OSError:
            return False
    return True


def ensure_passwords(directory: Path, users: Sequence[str]) -> dict[str, Path]:
    """user -> password file, for every one of ``users``; a missing one is made now.

    Existing files are kept (and made 0600 again), so a restart on kept data finds
    the passwords its SCRAM credentials were made from.
    """
    private_dir(directory / SECRETS_DIR)
    out: dict[str, Path] = {}
    for user in users:
        path = password_file(directory, user)
        try:
            existing = read_password(path)
        except FileNotFoundError:
            existing = ""
        if existing:
            path.chmod(0o600)
        else:
            write_private(path, new_password())
        out[user] = path
    return out
