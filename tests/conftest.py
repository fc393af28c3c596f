"""Shared fixtures: one real Kafka for the whole session, and the CLI as a subprocess.

Where the broker comes from, first match wins:

1. ``EDGEBUS_BOOTSTRAP`` (a broker someone already runs, e.g. CI's or compose's);
2. a Docker engine that answers: an ``apache/kafka`` 4.x container (testcontainers);
3. the launcher (``edgebus kafka up``: Java 17+ and the Maven Central jars), in a
   private state directory, wiped at the end of the session.

A test that needs Kafka and finds none fails with what was tried and how to fix it;
it is never skipped (STYLE.md, 11).

Hypothesis runs with the profile ``dev`` (few examples: a fast local loop) or, where
``CI`` is ``true``, ``ci`` (more examples, no deadline); ``HYPOTHESIS_PROFILE`` (or
pytest's ``--hypothesis-profile``) picks one by name.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from edgebus.errors import EdgebusError
from edgebus.localkafka import launcher

#: a hung test prints where its asyncio tasks wait, and never hangs the session
pytest_plugins = ["tests.hang_watchdog"]

TESTS_DIR = Path(__file__).resolve().parent
INTEGRATION_DIR = TESTS_DIR / "integration"
KAFKA_IMAGE = os.environ.get("EDGEBUS_TEST_KAFKA_IMAGE", "apache/kafka:4.1.1")
DOCKER_PING_TIMEOUT_S = 5.0
BROKER_READY_TIMEOUT_S = 120.0

#: (returncode, parsed JSON or None, stdout, stderr)
CliResult = tuple[int, Any, str, str]


# --------------------------------------------------------------------------- Hypothesis

# Registered here, at import, before any test module builds its @settings (a test's
# own settings take what they do not set from the profile loaded at that moment). A
# test that sets max_examples keeps it in every profile: the CI count it needs (above
# ci's) or a small one because each example is expensive. Both profiles derive from
# Hypothesis's "default" profile, not from whatever it loaded by itself (it loads its
# own "ci" profile wherever a CI variable is set, whatever its value).
_BASE = settings.get_profile("default")

#: a fast local loop: a few examples of each property (the example database, in
#: .hypothesis/, replays the last failures first); no deadline and no too-slow health
#: check either: `make test` runs two workers beside two brokers, and a slow example
#: on a loaded machine is not a failure (a fresh-clone `make test` failed on one)
settings.register_profile(
    "dev", _BASE, max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
#: thorough, on shared and noisy machines: more examples, a fresh random sample each
#: run (so runs add up to more coverage; a failure prints the blob that reproduces
#: it), no deadline and no too-slow health check (a slow example is not a failure),
#: no example database (a clean clone each time)
settings.register_profile(
    "ci",
    _BASE,
    max_examples=200,
    derandomize=False,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
    print_blob=True,
)


def _hypothesis_profile() -> str:
    """``HYPOTHESIS_PROFILE`` if set, else ``ci`` where ``CI`` is true, else ``dev``."""
    chosen = os.environ.get("HYPOTHESIS_PROFILE")
    if chosen:
        return chosen
    return "ci" if os.environ.get("CI", "").lower() in ("true", "1") else "dev"


settings.load_profile(_hypothesis_profile())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test under tests/integration/ talks to a real broker: mark it ``kafka``."""
    for item in items:
        if INTEGRATION_DIR in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.kafka)


# --------------------------------------------------------------------------- the broker

_BROKER_SOURCE: list[str] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say how many real-Kafka tests ran, and against what: CI readers check this."""
    counts: dict[str, int] = {}
    for outcome in ("passed", "failed", "error", "skipped"):
        counts[outcome] = sum(
            1
            for report in terminalreporter.stats.get(outcome, [])
            if getattr(report, "when", "call") == "call" and "kafka" in report.keywords
        )
    ran = counts["passed"] + counts["failed"]
    if not ran and not counts["error"]:
        return
    sources = sorted(set(_BROKER_SOURCE))
    where = "; ".join(sources) if sources else "brokers the tests started themselves"
    terminalreporter.write_sep("-", "real Kafka")
    terminalreporter.write_line(
        f"integration tests on real Kafka ({where}): {ran} ran "
        f"({counts['passed']} ok, {counts['failed']} failing, {counts['error']} in error), "
        f"{counts['skipped']} skipped"
    )


def pytest_sessionfinish(session: pytest.Session) -> None:
    """On a pytest-xdist worker: hand the broker this worker used to the controller."""
    output = getattr(session.config, "workeroutput", None)
    if output is not None:
        output["edgebus_broker_source"] = list(_BROKER_SOURCE)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """On the pytest-xdist controller: note the broker each worker used."""
    _BROKER_SOURCE.extend(getattr(node, "workeroutput", {}).get("edgebus_broker_source", []))


def _docker_reachable() -> tuple[bool, str]:
    """Whether a Docker engine answers a ping, within a few seconds and without noise."""
    try:
        import docker
    except ImportError:
        return False, "the docker Python package is not installed"

    def ping() -> None:
        client = docker.from_env(timeout=int(DOCKER_PING_TIMEOUT_S))
        try:
            client.ping()
        finally:
            client.close()

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        pool.submit(ping).result(timeout=DOCKER_PING_TIMEOUT_S + 1)
    except concurrent.futures.TimeoutError:
        return False, f"no Docker engine answered within {DOCKER_PING_TIMEOUT_S:.0f} s"
    except Exception as e:  # any failure means "no Docker here"
        return False, f"no Docker engine answered ({type(e).__name__}: {e})"
    finally:
        pool.shutdown(wait=False)
    return True, ""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _cluster_answers(bootstrap: str) -> bool:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    try:
        await asyncio.wait_for(admin.start(), 5)
        info = await asyncio.wait_for(admin.describe_cluster(), 5)
        return bool(info.get("brokers"))
    except Exception:  # not up yet
        return False
    finally:
        with contextlib.suppress(Exception):  # closing a half-started client
            await admin.close()


def _wait_for_broker(bootstrap: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if asyncio.run(_cluster_answers(bootstrap)):
            return
        time.sleep(0.5)
    raise TimeoutError(f"{bootstrap} did not answer a metadata call within {timeout_s:.0f} s")


def _start_container() -> tuple[Any, str]:
    """A single-node KRaft broker from the apache/kafka image (its documented env vars).

    testcontainers' own KafkaContainer drives Confluent's image scripts, so the
    generic container is used: the host port is fixed up front because the broker
    must advertise the address clients reach it by.
    """
    from testcontainers.core.container import DockerContainer

    port = _free_port()
    container = DockerContainer(KAFKA_IMAGE)
    host = container.get_docker_client().host()
    env = {
        "KAFKA_NODE_ID": "1",
        "KAFKA_PROCESS_ROLES": "broker,controller",
        "KAFKA_LISTENERS": "PLAINTEXT://0.0.0.0:9092,CONTROLLER://0.0.0.0:9093",
        "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://{host}:{port}",
        "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "KAFKA_INTER_BROKER_LISTENER_NAME": "PLAINTEXT",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9093",
        "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false",
        "KAFKA_NUM_PARTITIONS": "1",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_OFFSETS_TOPIC_NUM_PARTITIONS": "5",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_NUM_PARTITIONS": "5",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR": "1",
        "KAFKA_MIN_INSYNC_REPLICAS": "1",
        "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
    }
    for key, value in env.items():
        container.with_env(key, value)
    container.with_bind_ports(9092, port)
    container.start()
    bootstrap = f"{host}:{port}"
    try:
        _wait_for_broker(bootstrap, BROKER_READY_TIMEOUT_S)
    except BaseException:
        container.stop()
        raise
    return container, bootstrap


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``host:port`` of a real Kafka 4 broker for the whole session (never skipped)."""
    given = os.environ.get("EDGEBUS_BOOTSTRAP")
    if given:
        _BROKER_SOURCE.append(f"EDGEBUS_BOOTSTRAP={given}")
        yield given
        return

    tried: list[str] = []
    docker_ok, why = _docker_reachable()
    if docker_ok:
        try:
            container, bootstrap = _start_container()
        except Exception as e:
            tried.append(f"Docker ({KAFKA_IMAGE}): {type(e).__name__}: {e}")
        else:
            _BROKER_SOURCE.append(f"a {KAFKA_IMAGE} container at {bootstrap}")
            try:
                yield bootstrap
            finally:
                container.stop()
            return
    else:
        tried.append(f"Docker: {why}")

    state = tmp_path_factory.mktemp("kafka-launcher")
    try:
        result = launcher.up(1, state=state)
    except EdgebusError as e:
        tried.append(f"the launcher (edgebus kafka up): {type(e).__name__}: {e}")
        with contextlib.suppress(EdgebusError):
            launcher.down(wipe=True, state=state)
    else:
        bootstrap = result.state.clusters[0].bootstrap
        _BROKER_SOURCE.append(
            f"Kafka {result.state.kafka_version} started by the launcher at {bootstrap}"
        )
        try:
            yield bootstrap
        finally:
            launcher.down(wipe=True, state=state)
        return

    pytest.fail(
        "These tests need a real Kafka broker and none could be had. Tried:\n  - "
        + "\n  - ".join(["EDGEBUS_BOOTSTRAP: not set", *tried])
        + "\nFix one of them: set EDGEBUS_BOOTSTRAP=host:port to a running Kafka 4 broker; "
        "or start a Docker engine; or install Java 17+ and Maven "
        "(`apt-get install openjdk-17-jre-headless maven`) so `edgebus kafka up` works "
        "(`edgebus kafka fetch` downloads the jars once).",
        pytrace=False,
    )


@pytest.fixture(scope="session")
def kafka_regions(kafka_bootstrap: str) -> dict[str, str]:
    """region -> bootstrap for the default regions, all on the session's cluster."""
    return {region: kafka_bootstrap for region in launcher.DEFAULT_REGIONS}


# --------------------------------------------------------------------------- the CLI


def edgebus_executable() -> str:
    """The ``edgebus`` console script of the interpreter running the tests."""
    beside = Path(sys.executable).parent / "edgebus"
    if beside.is_file():
        return str(beside)
    found = shutil.which("edgebus")
    if found is None:
        raise RuntimeError(
            "The `edgebus` console script is not installed; run `pip install -e '.[dev]'`."
        )
    return found


def run_cli(
    args: Sequence[str], env: Mapping[str, str] | None = None, timeout_s: float = 240.0
) -> CliResult:
    """Run ``edgebus ARGS``; return (returncode, parsed JSON or None, stdout, stderr)."""
    proc = subprocess.run(
        [edgebus_executable(), *args],
        env=dict(env) if env is not None else None,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    parsed: Any = None
    text = proc.stdout.strip()
    if text:
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
    return proc.returncode, parsed, proc.stdout, proc.stderr


@pytest.fixture(scope="session")
def cli() -> Callable[..., CliResult]:
    """``cli(args, env) -> (returncode, parsed JSON or None, stdout, stderr)``."""
    return run_cli


@pytest.fixture
def cli_env(kafka_bootstrap: str, tmp_path: Path) -> dict[str, str]:
    """Environment for ``edgebus`` subprocesses: the session broker, a fresh state dir."""
    env = dict(os.environ)
    env["EDGEBUS_BOOTSTRAP"] = kafka_bootstrap
    state = tmp_path / "edgebus-state"
    state.mkdir()
    env["EDGEBUS_STATE_DIR"] = str(state)
    env.pop("EDGEBUS_CONFIG", None)
    return env
