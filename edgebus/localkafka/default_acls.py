"""The permissive default ACLs of a secure local Kafka, applied once when it is made.

With the ``StandardAuthorizer`` and ``allow.everyone.if.no.acl.found=false`` a
principal without ACLs can do nothing, so ``edgebus kafka up --secure`` grants every
non-admin principal (``region-<R>``, ``coordinator``, ``writer``) what edgebus did
before the least-privilege plan, on every cluster:

    topics with prefix ``edgebus.``           Read, Write, Create, Describe
    groups with prefix ``edgebus.``           Read, Describe
    transactional ids with prefix ``edgebus``  Write, Describe (the strong benchmark)
    the cluster                               IdempotentWrite, Describe

These are broad on purpose, a starting point: ``edgebus kafka acls --apply`` replaces
them with the least-privilege plan (:mod:`edgebus.kafka.acl_plan`). They are applied
only to a newly formatted cluster, never on a restart, so narrowed ACLs survive
``down`` and ``up``.

They are created through Kafka's admin protocol as ``admin``
(:func:`edgebus.kafka.acls.add_acls`), the same path ``acls --apply`` takes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from edgebus.config import KafkaConfig, KafkaSecurityConfig
from edgebus.errors import EdgebusError, LauncherError
from edgebus.kafka.acl_plan import ADMIN, AclBinding, Operation, PatternType, ResourceType
from edgebus.kafka.acls import add_acls
from edgebus.localkafka.security import SecureSetup, client_security
from edgebus.localkafka.state import ClusterRecord

__all__ = ["PERMISSIVE_NOTE", "apply_default_acls", "default_bindings"]

#: what ``up --secure`` tells people about the ACLs it applied
PERMISSIVE_NOTE = (
    "The ACLs applied are permissive defaults (every edgebus principal may read, write "
    "and create topics and groups prefixed edgebus.) until `edgebus kafka init` (creates "
    "the topics) and `edgebus kafka acls --apply` narrow them to least privilege."
)

_DEFAULTS: tuple[tuple[ResourceType, PatternType, str, tuple[Operation, ...]], ...] = (
    ("topic", "prefixed", "edgebus.", ("read", "write", "create", "describe")),
    ("group", "prefixed", "edgebus.", ("read", "describe")),
    ("transactional_id", "prefixed", "edgebus", ("write", "describe")),
    ("cluster", "literal", "kafka-cluster", ("idempotent_write", "describe")),
)


def default_bindings(principals: Sequence[str]) -> list[AclBinding]:
    """The permissive defaults of ``principals``, one ACL per operation."""
    return [
        AclBinding(p, resource_type, pattern, name, op)
        for p in principals
        for resource_type, pattern, name, ops in _DEFAULTS
        for op in ops
    ]


async def apply_default_acls(records: Sequence[ClusterRecord], setup: SecureSetup) -> None:
    """Grant the permissive defaults on every cluster of ``records`` (running, secure),
    connecting as ``admin``; :class:`LauncherError` if a cluster refuses."""
    bindings = default_bindings([p for p in setup.passwords if p != ADMIN])
    kafka = KafkaConfig(security=KafkaSecurityConfig.model_validate(client_security(setup)))

    async def one(rec: ClusterRecord) -> None:
        try:
            await add_acls(kafka, rec.bootstrap, bindings)
        except EdgebusError as e:
            raise LauncherError(
                f"Applying the default ACLs to Kafka cluster {rec.index} ({rec.bootstrap}) "
                f"failed: {e} See {rec.log_file}, then run `edgebus kafka down --wipe` and "
                "`edgebus kafka up --secure` again."
            ) from e

    await asyncio.gather(*(one(rec) for rec in records))
