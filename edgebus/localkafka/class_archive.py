"""The class-data-sharing archive that makes Kafka JVMs start with about half the CPU.

Made once per Kafka version and JVM build, in ``$EDGEBUS_CACHE_DIR/kafka/<version>/cds``
(see :mod:`edgebus.localkafka.artifacts` for the layout), by a training run: a
throwaway broker started with ``-XX:ArchiveClassesAtExit`` from the same primitives
``up`` uses (:mod:`edgebus.localkafka.broker`). It is only an optimization: when it
cannot be made, JVMs start without it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from edgebus.errors import JavaMissing, LauncherError
from edgebus.localkafka.artifacts import find_java, log4j_config
from edgebus.localkafka.broker import (
    base_properties,
    format_storage,
    new_cluster_id,
    run_sync,
    start_broker,
    wait_ready,
    write_properties,
)
from edgebus.localkafka.processes import file_lock, free_ports
from edgebus.localkafka.state import ClusterRecord, timestamp

__all__ = ["cds_enabled", "ensure_class_archive"]


def cds_enabled() -> bool:
    """False when ``EDGEBUS_KAFKA_CDS`` is 0, off or false: then JVMs start without an archive."""
    return os.environ.get("EDGEBUS_KAFKA_CDS", "1").strip().lower() not in ("0", "off", "false")


def ensure_class_archive(root: Path, libs: Path) -> Path | None:
    """The class-data archive for these jars and this JVM; made once, None if impossible.

    A failed attempt leaves ``cds/<jvm>.failed`` (with the reason) so it is not retried
    on every start; delete that file to retry.
    """
    try:
        java = find_java()
    except JavaMissing:
        return None  # `up` reports that itself
    cds = root / "cds"
    target = cds / f"{java.fingerprint}.jsa"
    failed = cds / f"{java.fingerprint}.failed"
    if target.is_file():
        return target
    if failed.exists():
        return None
    with file_lock(root / ".cds.lock", 300, "making the class-data archive"):
        if target.is_file():
            return target
        if failed.exists():
            return None
        try:
            _build_class_archive(java.path, libs, log4j_config(root), target)
        except Exception as e:  # an optimization only: never fail a start for it
            failed.write_text(f"{timestamp()} {type(e).__name__}: {e}\n")
            return None
    return target


def _build_class_archive(java: str, libs: Path, log4j: Path, target: Path) -> None:
    """Start a throwaway broker with -XX:ArchiveClassesAtExit, stop it, check the archive.

    The JVM writes the archive while it exits; a truncated archive crashes every JVM
    that maps it, so it is written under a temporary name, tried by a short JVM run,
    and only then renamed into place.
    """
    # the training run is an ordinary broker start, made of the same primitives as `up`
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="build.", dir=target.parent))
    try:
        port, controller_port = free_ports(2)
        rec = ClusterRecord(
            index=0,
            cluster_id=new_cluster_id(),
            pid=None,
            port=port,
            controller_port=controller_port,
            data_dir=str(work / "data"),
            log_file=str(work / "broker.log"),
            config_file=str(work / "server.properties"),
        )
        write_properties(work / "server.properties", base_properties(rec), "CDS training run")
        dumped = work / "kafka.jsa"

        async def train() -> None:
            await format_storage(java, libs, log4j, rec, Path(rec.config_file), archive=None)
            proc = start_broker(
                java, libs, log4j, rec, archive=None, detach=False,
                extra=[f"-XX:ArchiveClassesAtExit={dumped}"],
            )  # fmt: skip
            try:
                await wait_ready(rec, proc, time.monotonic() + 120, 120)
            finally:
                proc.terminate()
                try:
                    await asyncio.to_thread(proc.wait, 90)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                    raise LauncherError("the training broker did not exit") from None

        run_sync(train)
        if not dumped.is_file() or dumped.stat().st_size == 0:
            raise LauncherError(f"the JVM wrote no archive; see {rec.log_file}")
        _check_loads(java, libs, log4j, dumped, work)
        os.replace(dumped, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _check_loads(java: str, libs: Path, log4j: Path, archive: Path, work: Path) -> None:
    """Run a short Kafka tool with ``archive``; LauncherError unless the JVM uses it."""
    check = subprocess.run(
        [java, f"-XX:SharedArchiveFile={archive}", "-Xshare:auto", "-cp", f"{libs}/*",
         f"-Dlog4j2.configurationFile={log4j}", "kafka.tools.StorageTool", "random-uuid"],
        capture_output=True, text=True, timeout=120, check=False, cwd=work,
    )  # fmt: skip
    if check.returncode != 0 or "Unable to use shared archive" in check.stdout + check.stderr:
        raise LauncherError(f"the archive does not load (exit code {check.returncode})")
