"""Kafka ready to run on this machine: the jars, plus the archive that starts JVMs fast.

:func:`fetch` gets the jars (:mod:`edgebus.localkafka.artifacts`) and then makes the
class-data archive (:mod:`edgebus.localkafka.class_archive`, which starts a training
broker); :func:`kafka_java_command` runs any Kafka tool from what it fetched. It sits
above both: the jars know nothing of brokers, and the archive needs a broker to make.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from edgebus.localkafka.artifacts import (
    DEFAULT_KAFKA_VERSION,
    HEAP_MAX,
    FetchResult,
    ensure_jars,
    find_java,
    jvm_flags,
    log4j_config,
)
from edgebus.localkafka.class_archive import cds_enabled, ensure_class_archive

__all__ = ["fetch", "kafka_java_command"]


def fetch(
    version: str = DEFAULT_KAFKA_VERSION,
    *,
    cache: Path | None = None,
    timeout_s: float = 900.0,
    class_archive: bool = True,
) -> FetchResult:
    """Make sure the jars of Kafka ``version`` are in the cache; download them if not.

    A complete download leaves a marker file; while it is there no Maven call is made
    at all (``downloaded`` is False). Concurrent callers wait for one download.

    With ``class_archive`` (and unless ``EDGEBUS_KAFKA_CDS=0``) it also makes, once per
    Kafka version and JVM build, a class-data-sharing archive by starting and stopping
    a throwaway broker (about 20 s). Brokers started with it need about half the CPU
    to start, which is what lets three clusters start about as fast as one on a small
    machine. If making it fails, brokers simply start without it.
    """
    jars = ensure_jars(version, cache=cache, timeout_s=timeout_s)
    if not (class_archive and cds_enabled()):
        return jars
    return replace(jars, class_archive=ensure_class_archive(jars.libs_dir.parent, jars.libs_dir))


def kafka_java_command(
    main_class: str,
    args: Sequence[str] = (),
    *,
    version: str = DEFAULT_KAFKA_VERSION,
    heap: str = HEAP_MAX,
) -> list[str]:
    """A command line running ``main_class`` from the Kafka jars (fetched if needed).

    For example ``kafka_java_command("org.apache.kafka.tools.consumer.ConsoleConsumer",
    ["--bootstrap-server", bootstrap, "--topic", t, "--from-beginning"])``.
    """
    java = find_java()
    fetched = fetch(version)
    log4j = log4j_config(fetched.libs_dir.parent)
    return [
        java.path, heap, *jvm_flags(fetched.class_archive, short_lived=True),
        "-cp", f"{fetched.libs_dir}/*", f"-Dlog4j2.configurationFile={log4j}",
        main_class, *args,
    ]  # fmt: skip
