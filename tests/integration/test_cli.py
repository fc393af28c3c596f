"""`edgebus write` and `edgebus tail` as a user runs them: subprocesses, JSON out."""

from __future__ import annotations

import concurrent.futures
import json
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from edgebus.kafka.reading import end_offsets
from edgebus.kafka.topics import events_topic
from tests.child_process import ChildProcess
from tests.kafka_settings import KAFKA

EDGEBUS = str(Path(sys.executable).parent / "edgebus")
REGIONS = ("us-east-1", "eu-west-1", "ap-south-1")


def run(args: list[str], env: dict[str, str], timeout: float = 60) -> tuple[int, Any, str]:
    done = subprocess.run(
        [EDGEBUS, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    parsed = lines[0] if len(lines) == 1 else lines
    return done.returncode, parsed, done.stdout + done.stderr


def env_for(bootstrap: str, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "EDGEBUS_CONFIG"}
    env["EDGEBUS_BOOTSTRAP"] = bootstrap
    env["EDGEBUS_STATE_DIR"] = str(tmp_path / "state")
    return env


def test_write_then_tail_shows_the_decoded_event_and_headers(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    env = env_for(kafka_bootstrap, tmp_path)
    key = f"cli:{uuid.uuid4()}"
    code, receipt, out = run(
        ["write", "--region", "eu-west-1", "--key", key,
         "--data", '{"email": "ann@example.com"}', "--json"], env)  # fmt: skip
    assert code == 0, out
    assert receipt["ok"] is True
    assert receipt["placement"] == ["eu-west-1"]
    assert receipt["classification"] == ["pii"]
    code, records, out = run(
        ["tail", "--region", "eu-west-1", "--from-beginning", "--json"],
        env,
    )
    assert code == 0, out
    records = records if isinstance(records, list) else [records]
    [mine] = [r for r in records if r["key"] == key]
    assert (mine["partition"], mine["offset"]) == (receipt["partition"], receipt["offset"])
    assert mine["event"]["payload"] == {"email": "ann@example.com"}
    assert mine["event"]["event_id"] == receipt["event_id"]
    assert mine["headers"]["eb-origin"] == "eu-west-1"
    assert mine["headers"]["eb-class"] == ["pii"]
    assert mine["headers"]["eb-placement"] == ["eu-west-1"]


def test_tail_limit_stops_after_n_records(kafka_bootstrap: str, tmp_path: Path) -> None:
    env = env_for(kafka_bootstrap, tmp_path)
    for i in range(3):
        assert run(["write", "--region", "ap-south-1", "--key", f"n{i}",
                    "--data", str(i), "--json"], env)[0] == 0  # fmt: skip
    code, records, out = run(
        ["tail", "--region", "ap-south-1", "--from-beginning", "--limit", "2", "--json"], env
    )
    assert code == 0, out
    assert len(records) == 2


def test_refused_inputs_exit_2_with_a_clear_message_and_write_nothing(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    import asyncio

    env = env_for(kafka_bootstrap, tmp_path)
    assert run(["write", "--region", "us-east-1", "--key", "w", "--data", "1"], env)[0] == 0
    topics = [events_topic(r) for r in REGIONS]
    before = asyncio.run(end_offsets(KAFKA, kafka_bootstrap, topics))
    bad_config = tmp_path / "edge.json"
    bad_config.write_text(json.dumps({"compliance": {"strict_mod": True}}))
    cases = [
        (["--data", "{email: nope}", "--region", "us-east-1"], "--data is not valid JSON"),
        (["--data", "{}", "--region", "eu-wset-1"], "did you mean 'eu-west-1'"),
        (["--data", "{}", "--region", "us-east-1", "--config", str(bad_config)],
         "did you mean 'compliance.strict_mode'"),
        (["--data", '{"email": "a@example.com"}', "--region", "us-east-1"],
         "Compliance violation: cannot place data"),
        (["--data", "{}", "--region", "us-east-1", "--classification", "piii"],
         "did you mean 'pii'"),
    ]
    # the refusals are independent processes: run them side by side, check each in turn
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        runs = [
            (args, message,
             pool.submit(run, ["write", "--key", "refused", *args, "--json"], env),
             pool.submit(run, ["write", "--key", "refused", *args], env))
            for args, message in cases
        ]  # fmt: skip
        for args, message, as_json, as_text in runs:
            code, result, out = as_json.result()
            assert code == 2, (args, out)
            assert result["ok"] is False
            assert message in result["message"], (message, result["message"])
            code, _, out = as_text.result()
            assert code == 2
            assert message in " ".join(out.split()), out
    assert asyncio.run(end_offsets(KAFKA, kafka_bootstrap, topics)) == before


def test_no_reachable_broker_names_the_addresses_and_kafka_up(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
    config = tmp_path / "edge.toml"
    config.write_text(f'[kafka]\nbootstrap = "{address}"\nconnect_timeout_s = 3\n')
    env = env_for(address, tmp_path)
    code, result, _ = run(
        ["write", "--region", "us-east-1", "--key", "k", "--data", "{}",
         "--config", str(config), "--json"], env)  # fmt: skip
    assert code != 0
    assert result["message"].startswith("No edge infrastructure available")
    assert address in result["message"]
    assert "edgebus kafka up" in result["message"]


def test_kafka_up_maps_the_configs_regions_onto_the_clusters(tmp_path: Path) -> None:
    config = tmp_path / "edge.json"
    config.write_text(json.dumps({"discovery": {"locations": ["eu-west-1", "eu-central-1"]}}))
    env = {k: v for k, v in os.environ.items() if k not in ("EDGEBUS_CONFIG", "EDGEBUS_BOOTSTRAP")}
    env["EDGEBUS_STATE_DIR"] = str(tmp_path / "state")
    try:
        code, result, out = run(["kafka", "up", "--config", str(config), "--json"], env, 180)
        assert code == 0, out
        assert [c["regions"] for c in result["clusters"]] == [["eu-west-1", "eu-central-1"]]
    finally:
        run(["kafka", "down", "--wipe", "--json"], env, 120)


def region_config(bootstrap: str, tmp_path: Path) -> tuple[str, Path]:
    region = f"tail-{uuid.uuid4().hex[:8]}"
    config = tmp_path / "edge.json"
    config.write_text(json.dumps({"discovery": {"locations": [region]},
                                  "kafka": {"bootstrap": bootstrap}}))
    return region, config


def test_tail_prints_the_last_ten_records_and_exits(kafka_bootstrap: str, tmp_path: Path) -> None:
    env = env_for(kafka_bootstrap, tmp_path)
    region, config = region_config(kafka_bootstrap, tmp_path)
    for i in range(12):
        code, _, out = run(["write", "--region", region, "--key", f"k{i}", "--data", str(i),
                            "--config", str(config)], env)  # fmt: skip
        assert code == 0, out
    code, records, out = run(["tail", "--region", region, "--config", str(config), "--json"], env)
    assert code == 0, out
    assert sorted(r["event"]["payload"] for r in records) == list(range(2, 12))


def test_tail_follow_prints_a_record_written_after_it_started(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    env = env_for(kafka_bootstrap, tmp_path)
    region, config = region_config(kafka_bootstrap, tmp_path)
    assert run(["write", "--region", region, "--key", "old", "--data", "0",
                "--config", str(config)], env)[0] == 0  # fmt: skip
    follower = ChildProcess(
        [EDGEBUS, "tail", "--region", region, "--config", str(config), "--follow",
         "--limit", "1", "--idle-timeout", "60", "--json"],
        log=tmp_path / "follower.log", env=env, name="edgebus tail --follow",
    )  # fmt: skip
    try:
        import time

        follower.start()
        time.sleep(4)  # let it start and reach the end of the topic
        assert run(["write", "--region", region, "--key", "new", "--data", "1",
                    "--config", str(config)], env)[0] == 0  # fmt: skip
        follower.wait(60)
    finally:
        follower.kill()
    assert follower.returncode == 0, follower.describe()
    [record] = [json.loads(line) for line in follower.stdout_text().splitlines()]
    assert record["key"] == "new"


def test_bench_produce_reports_both_sides_and_their_ratio(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    # runs the benchmark's code path only; its figures are not judged here
    env = env_for(kafka_bootstrap, tmp_path)
    code, result, out = run(
        ["bench", "produce", "--events", "300", "--rounds", "1", "--concurrency", "16",
         "--json"], env, 180)  # fmt: skip
    assert code == 0, out
    assert result["events"] == 300
    assert result["sdk_writes_per_s"] > 0 and result["raw_sends_per_s"] > 0
    # the ratio comes from unrounded medians; the printed rates are rounded
    assert abs(result["ratio"] - result["sdk_writes_per_s"] / result["raw_sends_per_s"]) < 0.005
