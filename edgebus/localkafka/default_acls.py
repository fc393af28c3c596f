"""The permissive default ACLs of a secure local Kafka, applied once when it is made.

With the ``StandardAuthorizer`` and ``allow.everyone.if.no.acl.found=false`` a
principal without ACLs can do nothing, so ``edgebus kafka up --secure`` grants every
non-admin principal (``region-<R>``, ``coordinator``, ``writer``) what edgebus does
today, on every cluster:

    topics with prefix ``edgebus.``           Read, Write, Create, Describe
    groups with prefix ``edgebus.``           Read (which implies Describe)
    transactional ids with prefix ``edgebus``  Write, Describe (the strong benchmark)
    the cluster                               IdempotentWrite, Describe

These are broad on purpose, a starting point: ``edgebus kafka acls --apply`` narrows
them to least privilege per principal. They are applied only to a newly formatted
cluster, never on a restart, so narrowed ACLs survive ``down`` and ``up``.

aiokafka's admin client has no ACL calls, so Kafka's own tool
(``org.apache.kafka.tools.AclCommand``, ``kafka-acls.sh``) runs from the jars, as
``admin`` through a client settings file (the password is never on a command line).
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import Sequence
from pathlib import Path

from edgebus.errors import LauncherError
from edgebus.localkafka.artifacts import jvm_flags
from edgebus.localkafka.credentials import ADMIN
from edgebus.localkafka.processes import LOG_TAIL_LINES
from edgebus.localkafka.security import SecureSetup
from edgebus.localkafka.state import ClusterRecord

__all__ = ["ACL_TOOL", "PERMISSIVE_NOTE", "acl_invocations", "apply_default_acls"]

ACL_TOOL = "org.apache.kafka.tools.AclCommand"
#: what ``up --secure`` tells people about the ACLs it applied
PERMISSIVE_NOTE = (
    "The ACLs applied are permissive defaults (every edgebus principal may read, write "
    "and create topics and groups prefixed edgebus.) until `edgebus kafka acls --apply` "
    "narrows them to least privilege."
)
#: how long one run of the tool may take
TOOL_TIMEOUT_S = 120.0
_TOOL_HEAP = "-Xmx256m"
#: tool runs at once (each is a JVM; the machine may have two cores)
_PARALLEL = 3


def acl_invocations(principals: Sequence[str]) -> list[list[str]]:
    """The tool's arguments (after the connection options) granting the defaults to
    ``principals``: one run for the prefixed resources, one for the cluster."""
    allow = [a for p in principals for a in ("--allow-principal", f"User:{p}")]
    return [
        # --producer: topics Write, Describe, Create; transactional ids Write, Describe;
        # with --idempotent the cluster's IdempotentWrite. --consumer: topics Read,
        # Describe; groups Read.
        ["--add", "--producer", "--consumer", "--idempotent", "--resource-pattern-type",
         "prefixed", "--topic", "edgebus.", "--group", "edgebus.", "--transactional-id",
         "edgebus", *allow],
        ["--add", "--cluster", "--operation", "Describe", *allow],
    ]  # fmt: skip


async def apply_default_acls(
    java: str,
    libs: Path,
    log4j: Path,
    archive: Path | None,
    records: Sequence[ClusterRecord],
    setup: SecureSetup,
) -> None:
    """Grant the permissive defaults on every cluster of ``records`` (running, secure)."""
    principals = [p for p in setup.passwords if p != ADMIN]
    gate = asyncio.Semaphore(_PARALLEL)

    async def one(rec: ClusterRecord, args: list[str]) -> None:
        async with gate:
            await _run_tool(java, libs, log4j, archive, rec, setup, args)

    try:
        async with asyncio.TaskGroup() as tasks:  # the first failure cancels the others
            for rec in records:
                for args in acl_invocations(principals):
                    tasks.create_task(one(rec, args))
    except BaseExceptionGroup as group:
        raise group.exceptions[0] from None


async def _run_tool(
    java: str,
    libs: Path,
    log4j: Path,
    archive: Path | None,
    rec: ClusterRecord,
    setup: SecureSetup,
    args: list[str],
) -> None:
    """One run of the ACL tool against ``rec``; :class:`LauncherError` if it fails."""
    proc = await asyncio.create_subprocess_exec(
        java, _TOOL_HEAP, *jvm_flags(archive, short_lived=True),
        "-cp", f"{libs}/*", f"-Dlog4j2.configurationFile={log4j}", ACL_TOOL,
        "--bootstrap-server", rec.bootstrap, "--command-config", str(setup.admin_properties),
        *args,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        cwd=Path(rec.config_file).parent,
    )  # fmt: skip
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), TOOL_TIMEOUT_S)
    except TimeoutError:
        await _kill(proc)
        raise LauncherError(
            f"Applying the default ACLs to Kafka cluster {rec.index} ({rec.bootstrap}) took "
            f"more than {TOOL_TIMEOUT_S:.0f} s. See {rec.log_file}, then run "
            "`edgebus kafka down --wipe` and `edgebus kafka up --secure` again."
        ) from None
    except BaseException:  # cancelled: a tool run must not outlive the start
        await _kill(proc)
        raise
    if proc.returncode != 0:
        said = out.decode(errors="replace").strip().splitlines()
        raise LauncherError(
            f"Applying the default ACLs to Kafka cluster {rec.index} ({rec.bootstrap}) failed "
            f"(exit code {proc.returncode}). The tool said:\n"
            + "\n".join(said[-LOG_TAIL_LINES:])
            + f"\nSee {rec.log_file}, then run `edgebus kafka down --wipe` and "
            "`edgebus kafka up --secure` again."
        )


async def _kill(proc: asyncio.subprocess.Process) -> None:
    """Kill a tool run (if it still runs) and collect it."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
