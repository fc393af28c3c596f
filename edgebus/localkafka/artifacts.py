"""The Apache Kafka jars, and the ``java`` and Maven that get and run them.

The jars come from Maven Central (``pom.xml`` in :mod:`edgebus.kafka`, resolved once by
``mvn dependency:copy-dependencies`` into ``$EDGEBUS_CACHE_DIR/kafka/<version>/libs``).
JVMs started from them use a class-data-sharing archive when there is one
(:mod:`edgebus.localkafka.class_archive` makes it; :func:`jvm_flags` uses it). This
module knows the cache and the JVM command line; it starts no broker, so the
modules that do (:mod:`~edgebus.localkafka.broker`) build on it.

Every failure to find Java or get the jars becomes an edgebus error whose message says
what to do (:class:`JavaMissing`, :class:`MavenMissing`, :class:`ArtifactResolutionFailed`).

Layout of ``$EDGEBUS_CACHE_DIR/kafka/<version>``::

    libs/                        the jars
    COMPLETE                     written when the jars are complete; then Maven is not called
    .lock, .cds.lock             serialize downloading and making the archive
    log4j2.yaml                  logging configuration of JVMs run by kafka_java_command
    cds/<jvm>.jsa                class-data archive for one JVM build
    cds/<jvm>.failed             why making it failed (delete it to retry)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from edgebus.errors import ArtifactResolutionFailed, InvalidInput, JavaMissing, MavenMissing
from edgebus.localkafka.processes import file_lock

__all__ = [
    "DEFAULT_KAFKA_VERSION",
    "HEAP_MAX",
    "HEAP_MIN",
    "MIN_JAVA",
    "FetchResult",
    "JavaInfo",
    "check_version",
    "default_cache_dir",
    "ensure_jars",
    "find_java",
    "jvm_flags",
    "log4j_config",
]

DEFAULT_KAFKA_VERSION = "4.1.1"

#: the JVM heap of brokers and Kafka tools
HEAP_MAX = "-Xmx512m"
#: the initial heap of brokers
HEAP_MIN = "-Xms128m"
#: the oldest Java that runs Kafka 4
MIN_JAVA = 17

_MARKER = "COMPLETE"
_VERSION_RE = re.compile(r"^(\d+)\.(\d+)\.(\d+)(?:[.-][A-Za-z0-9]+)*$")
_ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_INSTALL_JAVA = (
    "Install OpenJDK 17 or newer (Debian/Ubuntu: `apt-get install openjdk-17-jre-headless`; "
    "macOS: `brew install openjdk@17`) and make sure `java` is on PATH or JAVA_HOME is set, "
    "or point EDGEBUS_BOOTSTRAP at a Kafka broker you already run."
)


# --------------------------------------------------------------------------- paths


def default_cache_dir() -> Path:
    """Where downloaded jars live: ``$EDGEBUS_CACHE_DIR``, else ``~/.cache/edgebus``."""
    value = os.environ.get("EDGEBUS_CACHE_DIR")
    directory = Path(value).expanduser() if value else Path.home() / ".cache" / "edgebus"
    return directory.absolute()


def _package_file(name: str) -> bytes:
    return resources.files("edgebus.localkafka").joinpath(name).read_bytes()


# --------------------------------------------------------------------------- value types


@dataclass(frozen=True)
class FetchResult:
    """Where the Kafka jars are, and whether this call had to download them."""

    version: str
    libs_dir: Path
    downloaded: bool
    jars: int
    #: class-data-sharing archive that makes JVMs start faster (None: start without)
    class_archive: Path | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "kafka_version": self.version,
            "libs_dir": str(self.libs_dir),
            "downloaded": self.downloaded,
            "jars": self.jars,
            "class_archive": str(self.class_archive) if self.class_archive else None,
        }


@dataclass(frozen=True)
class JavaInfo:
    """The ``java`` the launcher runs."""

    path: str
    major: int
    #: what ``java -version`` printed (identifies the JVM build)
    version_text: str

    @property
    def fingerprint(self) -> str:
        """Short id of this JVM build; a class-data archive only fits the build that made it."""
        real = os.path.realpath(self.path)
        return hashlib.sha256(f"{real}\n{self.version_text}".encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- input checks


def check_version(version: str) -> None:
    """Raise :class:`InvalidInput` unless ``version`` names an Apache Kafka 4.x or newer."""
    match = _VERSION_RE.match(version)
    if match is None or int(match.group(1)) < 4:
        raise InvalidInput(
            f"Kafka version {version!r} is not supported: edgebus runs Apache Kafka 4.x or newer "
            f"in KRaft mode (e.g. {DEFAULT_KAFKA_VERSION}). Pass a version such as "
            f"`--kafka-version {DEFAULT_KAFKA_VERSION}`."
        )


# --------------------------------------------------------------------------- java, maven, jars


def find_java() -> JavaInfo:
    """The ``java`` to run (``$JAVA_HOME/bin/java``, else from PATH) and its version.

    Raises :class:`JavaMissing` when there is none or it is older than Java 17.
    """
    java: str | None = None
    java_home = os.environ.get("JAVA_HOME")
    if java_home and os.access(Path(java_home) / "bin" / "java", os.X_OK):
        java = str(Path(java_home) / "bin" / "java")
    if java is None:
        java = shutil.which("java")
    if java is None:
        raise JavaMissing(
            "Java 17 or newer is needed to run the local Kafka broker, but no `java` was "
            f"found on PATH or in JAVA_HOME. {_INSTALL_JAVA}"
        )
    try:
        proc = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise JavaMissing(
            f"Java 17 or newer is needed, and {java} could not be run ({e}). {_INSTALL_JAVA}"
        ) from e
    output = (proc.stderr + proc.stdout).strip()
    match = re.search(r'version "([^"]+)"', output)
    major = _java_major(match.group(1)) if match else None
    if major is None:
        raise JavaMissing(
            f"Java 17 or newer is needed, and the version of {java} could not be read "
            f"(`java -version` said: {output[:200]!r}). {_INSTALL_JAVA}"
        )
    if major < MIN_JAVA:
        raise JavaMissing(
            f"Java 17 or newer is needed to run Kafka 4, but {java} is Java {major}. "
            f"{_INSTALL_JAVA}"
        )
    return JavaInfo(java, major, output)


def _java_major(version: str) -> int | None:
    parts = re.findall(r"\d+", version)
    if not parts:
        return None
    major = int(parts[0])
    if major == 1 and len(parts) > 1:  # 1.8.0_292 -> 8
        major = int(parts[1])
    return major


def _count_jars(libs: Path) -> int:
    return sum(1 for _ in libs.glob("*.jar")) if libs.is_dir() else 0


def ensure_jars(
    version: str = DEFAULT_KAFKA_VERSION,
    *,
    cache: Path | None = None,
    timeout_s: float = 900.0,
) -> FetchResult:
    """Make sure the jars of Kafka ``version`` are in the cache; download them if not.

    A complete download leaves a marker file; while it is there no Maven call is made
    at all (``downloaded`` is False). Concurrent callers wait for one download. The
    result has no ``class_archive``; :func:`edgebus.localkafka.install.fetch` adds it.
    """
    check_version(version)
    root = (cache or default_cache_dir()).absolute() / "kafka" / version
    libs = root / "libs"
    downloaded = False
    if not (root / _MARKER).is_file():
        with file_lock(root / ".lock", timeout_s, f"downloading Kafka {version}"):
            if not (root / _MARKER).is_file():  # nobody finished it while we waited
                _download(version, root, timeout_s)
                downloaded = True
    return FetchResult(version, libs, downloaded, _count_jars(libs))


def _download(version: str, root: Path, timeout_s: float) -> None:
    libs = root / "libs"
    find_java()  # Maven needs it too; say so clearly first
    mvn = shutil.which("mvn")
    if mvn is None:
        raise MavenMissing(
            f"Maven (`mvn`) is needed once to download the Kafka {version} jars from Maven "
            f"Central into {libs}, but it is not on PATH. Install it (Debian/Ubuntu: "
            "`apt-get install maven`; macOS: `brew install maven`) and run "
            "`edgebus kafka fetch`, or point EDGEBUS_BOOTSTRAP at a running broker."
        )
    work = Path(tempfile.mkdtemp(prefix="fetch.", dir=root))
    try:
        (work / "pom.xml").write_bytes(_package_file("pom.xml"))
        out = work / "libs"
        cmd = [
            mvn, "-q", "-B", "-Dstyle.color=never",
            "-f", str(work / "pom.xml"),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={out}",
            "-DincludeScope=runtime",
            f"-Dkafka.version={version}",
        ]  # fmt: skip
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, timeout=timeout_s, check=False,
                stdin=subprocess.DEVNULL, cwd=work,
            )  # fmt: skip
        except subprocess.TimeoutExpired as e:
            raise ArtifactResolutionFailed(
                f"Maven did not finish resolving Kafka {version} within {timeout_s:.0f} s. "
                "Check that Maven Central is reachable (proxy settings go in "
                "~/.m2/settings.xml) and run `edgebus kafka fetch` again."
            ) from e
        broker_jar = out / f"kafka_2.13-{version}.jar"
        if proc.returncode != 0 or not broker_jar.is_file():
            said = _ANSI_RE.sub("", (proc.stdout + proc.stderr)).strip().splitlines()
            tail = "\n".join(line for line in said[-25:] if line.strip())
            raise ArtifactResolutionFailed(
                f"Maven could not resolve the jars of Kafka {version} (exit code "
                f"{proc.returncode}). Check that the version exists on Maven Central "
                f"(e.g. {DEFAULT_KAFKA_VERSION}) and that Maven Central is reachable "
                "(proxy settings go in ~/.m2/settings.xml), then run `edgebus kafka fetch` "
                f"again. Maven said:\n{tail}"
            )
        if libs.exists():
            shutil.rmtree(libs)
        shutil.rmtree(root / "cds", ignore_errors=True)  # archives of the old jars
        os.replace(out, libs)
        (root / _MARKER).write_text(
            json.dumps({"kafka_version": version, "jars": _count_jars(libs), "fetched_at": _now()})
            + "\n"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


# --------------------------------------------------------------------------- JVM command line


def jvm_flags(archive: Path | None, *, short_lived: bool = False) -> list[str]:
    """JVM options that use the class-data ``archive`` (if any); ``short_lived`` for tools."""
    flags = [f"-XX:SharedArchiveFile={archive}"] if archive is not None else []
    if short_lived:  # a tool that runs for a second: the C2 compiler only costs time
        flags.append("-XX:TieredStopAtLevel=1")
    return flags


def log4j_config(directory: Path) -> Path:
    """Copy log4j2.yaml out of the package (brokers outlive any reinstall of it)."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / "log4j2.yaml"
    content = _package_file("log4j2.yaml")
    if not target.is_file() or target.read_bytes() != content:
        tmp = target.with_suffix(f".tmp{os.getpid()}")
        tmp.write_bytes(content)
        os.replace(tmp, target)
    return target


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
