"""``edgebus kafka up | status | down | fetch`` against real brokers, run as a subprocess.

Every test uses its own EDGEBUS_STATE_DIR and shares the jar cache. The three-cluster
cycle runs once (module fixture); the tests that use it run in file order and the
last ones stop it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from edgebus.errors import InvalidInput
from edgebus.kafka.clusters import recorded_regions
from edgebus.kafka.reading import read_to_end
from edgebus.localkafka.launcher import DEFAULT_REGIONS, map_regions
from tests.kafka_settings import KAFKA

Cli = Callable[..., tuple[int, Any, str, str]]


def cli_ok(cli: Cli, args: list[str], env: Mapping[str, str]) -> Any:
    """``edgebus ARGS`` with ``env``, which must exit 0; its JSON."""
    code, parsed, out, err = cli(args, env)
    assert code == 0, out + err
    return parsed


def launcher_env(state: Path) -> dict[str, str]:
    """The test process's environment with a private state dir and no preset broker."""
    env = dict(os.environ)
    env["EDGEBUS_STATE_DIR"] = str(state)
    env.pop("EDGEBUS_BOOTSTRAP", None)
    env.pop("EDGEBUS_CONFIG", None)
    return env


def pid_running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def processes_mentioning(text: str) -> list[int]:
    """Live pids whose command line contains ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if text.encode() in (entry / "cmdline").read_bytes() and pid_running(int(entry.name)):
                found.append(int(entry.name))
    return found


async def describe(bootstrap: str) -> dict[str, Any]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    await admin.start()
    try:
        info: dict[str, Any] = await admin.describe_cluster()
        return info
    finally:
        await admin.close()


def stop_leftovers(cli: Cli, env: dict[str, str], state: Path) -> None:
    """Whatever a failed test left running under ``state``: `down --wipe`, then SIGKILL."""
    cli(["kafka", "down", "--wipe", "--json"], env)
    for pid in processes_mentioning(str(state)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)


# --------------------------------------------------------------------------- 3 clusters


class Launched(NamedTuple):
    """What `edgebus kafka up` ran with, and the JSON document it printed."""

    env: dict[str, str]
    doc: dict[str, Any]


@pytest.fixture(scope="module")
def three(cli: Cli, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launched]:
    """`edgebus kafka up --clusters 3` once for this module."""
    state = tmp_path_factory.mktemp("three-clusters")
    env = launcher_env(state)
    try:
        code, doc, out, err = cli(["kafka", "up", "--clusters", "3", "--json"], env)
        assert code == 0, f"up failed: {out}{err}"
        yield Launched(env, doc)
    finally:
        stop_leftovers(cli, env, state)


def test_up_three_clusters_gives_each_region_its_own_cluster(
    three: Launched,
) -> None:
    doc = three.doc
    clusters = doc["clusters"]
    assert doc["ok"] is True and doc["started"] is True
    assert [c["index"] for c in clusters] == [0, 1, 2]
    assert len({c["cluster_id"] for c in clusters}) == 3
    ports = [c["port"] for c in clusters] + [c["controller_port"] for c in clusters]
    assert len(set(ports)) == 6
    assert len({c["data_dir"] for c in clusters}) == 3
    assert set(doc["regions"]) == set(DEFAULT_REGIONS)
    assert len(set(doc["regions"].values())) == 3
    for i, region in enumerate(DEFAULT_REGIONS):
        assert clusters[i]["regions"] == [region]
        assert doc["regions"][region] == clusters[i]["bootstrap"] == f"127.0.0.1:{ports[i]}"


async def test_each_cluster_answers_a_metadata_call_with_its_own_cluster_id(
    three: Launched,
) -> None:
    doc = three.doc
    for cluster in doc["clusters"]:
        info = await describe(cluster["bootstrap"])
        assert info["cluster_id"] == cluster["cluster_id"]
        assert [b["port"] for b in info["brokers"]] == [cluster["port"]]


def test_status_reports_every_cluster_running(
    cli: Cli, three: Launched
) -> None:
    status = cli_ok(cli, ["kafka", "status", "--json"], three.env)
    assert status["running"] is True
    assert [c["state"] for c in status["clusters"]] == ["running"] * 3
    assert all(c["pid_alive"] and c["metadata_ok"] for c in status["clusters"])
    assert [c["pid"] for c in status["clusters"]] == [c["pid"] for c in three.doc["clusters"]]
    assert status["regions"] == three.doc["regions"]


def test_status_for_people_is_a_table_of_the_clusters(
    cli: Cli, three: Launched
) -> None:
    code, _, out, err = cli(["kafka", "status"], {**three.env, "COLUMNS": "200"})
    assert code == 0, out + err
    for cluster in three.doc["clusters"]:
        assert cluster["bootstrap"] in out and str(cluster["pid"]) in out
    assert "running" in out


def test_recorded_regions_maps_each_region_to_its_running_cluster(
    three: Launched,
) -> None:
    assert recorded_regions(Path(three.env["EDGEBUS_STATE_DIR"])) == three.doc["regions"]


async def test_writes_find_the_recorded_clusters_and_land_in_their_regions_own_cluster(
    cli: Cli, three: Launched
) -> None:
    env = {k: v for k, v in three.env.items() if k not in ("EDGEBUS_BOOTSTRAP", "EDGEBUS_CONFIG")}
    receipt = cli_ok(
        cli, ["write", "--key", "user:1", "--data", '{"email": "ann@example.com"}', "--json",
              "--region", "eu-west-1"], env)  # fmt: skip
    eu, us = three.doc["regions"]["eu-west-1"], three.doc["regions"]["us-east-1"]
    records = await read_to_end(KAFKA, eu, "edgebus.eu-west-1.events")
    assert [(r.partition, r.offset) for r in records] == [
        (receipt["partition"], receipt["offset"])
    ]
    # the us-east-1 cluster holds only its own region's topic
    admin = AIOKafkaAdminClient(bootstrap_servers=us)
    await admin.start()
    try:
        topics = [t for t in await admin.list_topics() if t.startswith("edgebus.")]
    finally:
        await admin.close()
    assert topics == ["edgebus.us-east-1.events"]


def test_second_up_starts_nothing_and_reports_the_same_pids(
    cli: Cli, three: Launched
) -> None:
    again = cli_ok(cli, ["kafka", "up", "--clusters", "3", "--json"], three.env)
    assert again["started"] is False
    assert [c["pid"] for c in again["clusters"]] == [c["pid"] for c in three.doc["clusters"]]
    assert again["regions"] == three.doc["regions"]


def test_a_plain_second_up_reports_the_running_layout_and_starts_nothing(
    cli: Cli, three: Launched
) -> None:
    again = cli_ok(cli, ["kafka", "up", "--json"], three.env)  # no --clusters: as it runs
    assert again["started"] is False
    assert [c["pid"] for c in again["clusters"]] == [c["pid"] for c in three.doc["clusters"]]
    assert again["regions"] == three.doc["regions"]


def test_up_with_another_layout_while_running_says_to_run_down_first(
    cli: Cli, three: Launched
) -> None:
    code, refused, _, _ = cli(["kafka", "up", "--clusters", "1", "--json"], three.env)
    assert code == 1
    assert refused["ok"] is False and refused["error"] == "LauncherError"
    assert "edgebus kafka down" in refused["message"]
    assert all(pid_running(c["pid"]) for c in three.doc["clusters"])


def test_fetch_after_up_downloads_nothing(
    cli: Cli, three: Launched
) -> None:
    fetched = cli_ok(cli, ["kafka", "fetch", "--json"], three.env)
    assert fetched["downloaded"] is False
    assert fetched["jars"] > 50
    assert Path(fetched["libs_dir"], "kafka_2.13-4.1.1.jar").is_file()


def test_down_stops_exactly_the_recorded_pids_and_keeps_the_data(
    cli: Cli, three: Launched
) -> None:
    env, doc = three
    pids = [c["pid"] for c in doc["clusters"]]
    down = cli_ok(cli, ["kafka", "down", "--json"], env)
    assert sorted(down["stopped"]) == sorted(pids)
    assert not any(pid_running(p) for p in pids)
    assert all(Path(c["data_dir"], "meta.properties").is_file() for c in doc["clusters"])
    code, status, _, _ = cli(["kafka", "status", "--json"], env)
    assert code == 1
    assert [c["state"] for c in status["clusters"]] == ["stopped"] * 3
    assert recorded_regions(Path(env["EDGEBUS_STATE_DIR"])) is None


def test_down_wipe_removes_the_data_and_the_state(
    cli: Cli, three: Launched
) -> None:
    env, doc = three
    # a region service's default store (as `region run` leaves it) goes too
    store = Path(env["EDGEBUS_STATE_DIR"], "regions", "us-east-1", "store.db")
    store.parent.mkdir(parents=True, exist_ok=True)
    store.write_bytes(b"old values")
    down = cli_ok(cli, ["kafka", "down", "--wipe", "--json"], env)
    assert down["wiped"] is True
    assert not any(Path(c["data_dir"]).exists() for c in doc["clusters"])
    assert not Path(env["EDGEBUS_STATE_DIR"], "state.json").exists()
    assert not store.exists()
    assert sorted(down["removed"]) == ["kafka", "regions/us-east-1/store.db", "state.json"]
    assert down["kept"] == ["kafka.lock"]
    code, status, _, _ = cli(["kafka", "status", "--json"], env)
    assert code == 1 and status["clusters"] == []
    assert "edgebus kafka up" in status["message"]


# --------------------------------------------------------------------------- one cluster


def free_port_pair() -> int:
    """A base port p with p and p + 1 both free on 127.0.0.1."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = int(s.getsockname()[1])
        if base < 65535:
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", base + 1))
                except OSError:
                    continue
            return base
    raise AssertionError("no two adjacent free ports")


async def test_down_then_up_restarts_on_the_kept_data_and_port(cli: Cli, tmp_path: Path) -> None:
    env = launcher_env(tmp_path)
    base = free_port_pair()
    try:
        code, first, out, err = cli(["kafka", "up", "--port", str(base), "--json"], env)
        assert code == 0, out + err
        assert first["clusters"][0]["port"] == base
        assert first["clusters"][0]["controller_port"] == base + 1
        bootstrap = first["clusters"][0]["bootstrap"]
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
        await admin.start()
        try:
            await admin.create_topics([NewTopic("kept", num_partitions=3, replication_factor=1)])
        finally:
            await admin.close()

        assert cli(["kafka", "down", "--json"], env)[0] == 0
        code, second, out, err = cli(["kafka", "up", "--port", str(base), "--json"], env)
        assert code == 0, out + err
        assert second["started"] is True and second["reused_data"] is True
        assert second["clusters"][0]["cluster_id"] == first["clusters"][0]["cluster_id"]
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
        await admin.start()
        try:
            assert "kept" in await admin.list_topics()
        finally:
            await admin.close()
    finally:
        stop_leftovers(cli, env, tmp_path)


def test_a_broker_that_dies_while_starting_reports_broker_exited_with_its_log(
    cli: Cli, tmp_path: Path
) -> None:
    env = launcher_env(tmp_path)
    try:
        code, doc, out, err = cli(
            ["kafka", "up", "--broker-config", "num.network.threads=0", "--json"], env
        )
        assert code == 1, out + err
        assert doc["error"] == "BrokerExited"
        assert "exited with code" in doc["message"]
        # the last log lines say why
        assert "Invalid value 0 for configuration num.network.threads" in doc["message"]
        assert not Path(tmp_path, "state.json").exists()
        assert processes_mentioning(str(tmp_path)) == []
    finally:
        stop_leftovers(cli, env, tmp_path)


# --------------------------------------------------------------------------- no broker


def test_without_java_up_fails_and_names_java_17(cli: Cli, tmp_path: Path) -> None:
    env = launcher_env(tmp_path / "state")
    empty_bin = tmp_path / "bin"  # the CLI runs by absolute path; PATH finds no java
    empty_bin.mkdir()
    env["PATH"] = str(empty_bin)
    env.pop("JAVA_HOME", None)
    code, doc, out, err = cli(["kafka", "up", "--json"], env)
    assert code != 0, out + err
    assert doc["error"] == "JavaMissing"
    assert "Java 17" in doc["message"] and "openjdk-17" in doc["message"]
    code, _, _, err = cli(["kafka", "up"], env)
    assert code != 0 and "Java 17" in err


def test_java_older_than_17_is_refused_with_its_version(cli: Cli, tmp_path: Path) -> None:
    env = launcher_env(tmp_path / "state")
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    java = fake_bin / "java"
    java.write_text("#!/bin/sh\necho 'openjdk version \"11.0.20\" 2023-07-18' >&2\n")
    java.chmod(0o755)
    env["PATH"] = str(fake_bin)
    env.pop("JAVA_HOME", None)
    code, doc, out, err = cli(["kafka", "up", "--json"], env)
    assert code == 1, out + err
    assert doc["error"] == "JavaMissing"
    assert "is Java 11" in doc["message"] and "Java 17" in doc["message"]


def test_without_maven_a_first_fetch_fails_naming_maven(cli: Cli, tmp_path: Path) -> None:
    java = shutil.which("java")
    assert java is not None
    env = launcher_env(tmp_path / "state")
    only_java = tmp_path / "bin"
    only_java.mkdir()
    (only_java / "java").symlink_to(os.path.realpath(java))
    env["PATH"] = str(only_java)
    env["EDGEBUS_CACHE_DIR"] = str(tmp_path / "empty-cache")  # nothing fetched yet
    code, doc, out, err = cli(["kafka", "fetch", "--json"], env)
    assert code == 1, out + err
    assert doc["error"] == "MavenMissing"
    assert "apt-get install maven" in doc["message"]


def test_a_kafka_version_maven_cannot_resolve_fails_with_what_maven_said(
    cli: Cli, tmp_path: Path
) -> None:
    env = launcher_env(tmp_path / "state")
    env["EDGEBUS_CACHE_DIR"] = str(tmp_path / "empty-cache")
    code, doc, out, err = cli(["kafka", "fetch", "--kafka-version", "4.99.0", "--json"], env)
    assert code == 1, out + err
    assert doc["error"] == "ArtifactResolutionFailed"
    message = doc["message"]
    assert "could not resolve the jars of Kafka 4.99.0" in message
    assert "Maven Central" in message and "edgebus kafka fetch" in message
    assert "Maven said:" in message and "kafka_2.13" in message
    assert not (tmp_path / "empty-cache" / "kafka" / "4.99.0" / "libs").exists()


def test_a_requested_port_in_use_fails_with_port_in_use(cli: Cli, tmp_path: Path) -> None:
    env = launcher_env(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, doc, out, err = cli(["kafka", "up", "--port", str(port), "--json"], env)
    assert code == 1, out + err
    assert doc["error"] == "PortInUse"
    assert f"Port {port} " in doc["message"] and "--port" in doc["message"]
    assert not Path(tmp_path, "state.json").exists()


def test_bad_input_exits_2_before_anything_starts(cli: Cli, tmp_path: Path) -> None:
    env = launcher_env(tmp_path)
    for args in (
        ["--clusters", "0"],
        ["--clusters", "3", "--regions", "us-east-1,eu-west-1"],
        ["--regions", "us east"],
        ["--kafka-version", "3.7.0"],
        ["--broker-config", "listeners=PLAINTEXT://0.0.0.0:1"],
    ):
        code, doc, out, err = cli(["kafka", "up", *args, "--json"], env)
        assert code == 2, (args, out, err)
        assert doc["error"] == "InvalidInput", args
    assert not Path(tmp_path, "state.json").exists()


def test_down_with_nothing_recorded_is_a_no_op(cli: Cli, tmp_path: Path) -> None:
    code, doc, out, err = cli(["kafka", "down", "--json"], launcher_env(tmp_path))
    assert code == 0, out + err
    assert doc == {
        "ok": True,
        "state_dir": str(tmp_path),
        "had_state": False,
        "stopped": [],
        "killed": [],
        "wiped": False,
        "removed": [],
        "kept": [],
    }


def test_regions_map_onto_clusters_round_robin() -> None:
    assert set(map_regions(DEFAULT_REGIONS, 1).values()) == {0}
    assert list(map_regions(DEFAULT_REGIONS, 3).values()) == [0, 1, 2]
    assert map_regions(["a", "b", "c", "d"], 2) == {"a": 0, "b": 1, "c": 0, "d": 1}
    with pytest.raises(InvalidInput):
        map_regions(["a", "a"], 1)
