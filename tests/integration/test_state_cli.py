"""`edgebus state call | get | ls | owner` as an operator runs them: subprocesses, JSON out,
against real Kafka, with region services hosting the states in this process.

The test has its own regions (``<tag>-us``, ``-eu``, ``-ap``), so its state logs
(``edgebus.<home>.state.<class>``) start empty. States are set up through
``EdgeBus.state`` in this process (cheap), then read with the CLI. Leases are short
(2 s) so that renewals show in the ownership history.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from edgebus.errors import StateOperationTimeout
from edgebus.sdk import EdgeBus
from edgebus.server.service import RegionService
from tests.integration.regions import Regions, make_regions

LEASE_MS = 2_000


def state_regions(bootstrap: str, tmp_path: Path) -> Regions:
    regions = make_regions(bootstrap, tmp_path)
    regions.config["state"] = {"lease_ms": LEASE_MS, "stagger_ms": 100}
    regions.config_path.write_text(json.dumps(regions.config), encoding="utf-8")
    return regions


def service(regions: Regions, region: str) -> RegionService:
    """A region service hosting states, with its store (and so its states.db) in a
    directory of its own."""
    home = regions.tmp / region
    home.mkdir(exist_ok=True)
    return RegionService(region, regions.edge_config(), store=f"sqlite://{home / 'store.db'}",
                         serve=False, participate=False, replicate=False)


async def cli(regions: Regions, *args: str) -> tuple[int, Any, str]:
    """``edgebus state ARGS --json`` (exit code, JSON, output)."""
    return await asyncio.to_thread(regions.cli, "state", *args, timeout_s=60)


async def test_call_get_ls_owner_read_the_logs_and_follow_the_ownership(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    regions = state_regions(kafka_bootstrap, tmp_path)
    tag = uuid.uuid4().hex[:6]
    cart, twin, secret = f"cart-{tag}", f"twin-{tag}", f"user-{tag}"
    us_service = service(regions, regions.us)
    bus = EdgeBus(regions.config, client_id=f"test-{tag}", discovery=False)
    await us_service.start()
    try:
        assert us_service.state_host is not None
        us_host = us_service.state_host.host_id
        setup = await asyncio.gather(
            bus.state(cart, "set", key="colour", value="red", region=regions.eu),
            bus.state(cart, "increment", key="items", increment=3, req_id=f"{cart}-inc"),
            bus.state(cart, "lock", lock_name="checkout", holder="alice",
                      lease_duration_ms=60_000),
            bus.state(twin, "set", key="n", value=1),
            bus.state(twin, "set", key="n", value=2, classification="financial"),
        )
        assert all((r.ok, r.region, r.host, r.epoch) == (True, regions.us, us_host, 1)
                   for r in setup), setup
        # pii may live only in eu, where no service runs: the request waits in the log
        with pytest.raises(StateOperationTimeout):
            await bus.state(secret, "get", classification="pii", timeout_ms=300)

        resent, blocked, bad = await asyncio.gather(
            cli(regions, "call", cart, "increment", "--key", "items", "--increment", "3",
                "--req-id", f"{cart}-inc"),
            cli(regions, "call", cart, "lock", "--lock-name", "checkout", "--holder", "bob",
                "--timeout-ms", "200"),
            cli(regions, "call", cart, "set", "--value", "{items: 1"),
        )
        code, again, out = resent
        assert code == 0, out
        assert (again["ok"], again["duplicate"], again["value"], again["version"]) == (
            True, True, 3, setup[1].version)
        assert (again["region"], again["host"], again["epoch"]) == (regions.us, us_host, 1)
        assert again["forwarded"] is True and again["classification"] == "public"
        code, lock, out = blocked
        assert code == 1, out
        assert (lock["ok"], lock["outcome"], lock["value"]["holder"]) == (False, "timeout",
                                                                           "alice")
        code, refused, out = bad
        assert code == 2, out
        assert refused["error"] == "InvalidInput" and "--value is not valid JSON" in out

        got, twins, listed, mine, owner, unknown = await asyncio.gather(
            cli(regions, "get", cart, "--key", "items", "--class", "public"),
            cli(regions, "get", twin),
            cli(regions, "ls"),
            cli(regions, "ls", "--owner", regions.us, "--limit", "1"),
            cli(regions, "owner", cart),
            cli(regions, "owner", cart, "--class", "pii"),
        )
        code, data, out = got
        assert code == 0, out
        [state] = data["states"]
        assert (state["classification"], state["key"], state["value"], state["version"]) == (
            "public", "items", 3, 2)
        assert (state["owner"], state["host"], state["epoch"]) == (regions.us, us_host, 1)
        assert (state["lease"], state["lease_running"], state["handed_to"]) == (
            "running", True, None)
        assert [(lk["name"], lk["holder"], lk["held"]) for lk in state["locks"]] == [
            ("checkout", "alice", True)]
        assert state["waiting"] == []
        assert state["topic"] == f"edgebus.{regions.us}.state.public"

        code, data, out = twins  # one id, two classes: two states
        assert code == 0, out
        assert sorted((s["classification"], s["value"]) for s in data["states"]) == [
            ("financial", {"n": 2}), ("public", {"n": 1})]

        code, data, out = listed
        assert code == 0, out
        rows = {(s["classification"], s["state_id"]): s for s in data["states"]}
        assert set(rows) == {("public", cart), ("public", twin), ("financial", twin),
                             ("pii", secret)}
        assert rows[("public", cart)] == {
            "classification": "public", "state_id": cart, "owner": regions.us, "epoch": 1,
            "version": 2, "lease": "running", "locks": 1, "waiting": 0}
        assert rows[("pii", secret)] == {
            "classification": "pii", "state_id": secret, "owner": None, "epoch": 0,
            "version": 0, "lease": "free", "locks": 0, "waiting": 1}

        code, data, out = mine
        assert code == 0, out
        assert [s["owner"] for s in data["states"]] == [regions.us]
        assert data["more"] == 2  # three states owned by us, one shown

        code, data, out = owner
        assert code == 0, out
        [own] = data["states"]
        assert (own["owner"], own["host"], own["epoch"]) == (regions.us, us_host, 1)
        claim = own["history"][0]
        assert {k: claim[k] for k in ("kind", "region", "host", "epoch", "granted",
                                      "lease_ms")} == {
            "kind": "claim", "region": regions.us, "host": us_host, "epoch": 1,
            "granted": True, "lease_ms": LEASE_MS}
        # set, increment, lock and the lock that timed out ran; the re-sent increment
        # was answered with its first answer (a slow answer may make a caller re-send more)
        assert (own["ops"]["accepted"], own["ops"]["not_accepted"]) == (4, 0)
        assert own["ops"]["duplicates"] >= 1

        code, data, out = unknown
        assert code == 2, out
        assert data["message"] == f"no state {cart!r} of class pii; `edgebus state ls` lists them"

        # the us host stops: it releases its states; the next call makes eu claim cart
        await us_service.stop()
        eu_service = service(regions, regions.eu)
        await eu_service.start()
        try:
            assert eu_service.state_host is not None
            eu_host = eu_service.state_host.host_id
            moved = await bus.state(cart, "get", region=regions.eu)
            code, data, out = await cli(regions, "owner", cart, "--class", "public")
        finally:
            await eu_service.stop()
        assert (moved.value, moved.version) == ({"colour": "red", "items": 3}, 2)
        assert (moved.region, moved.host, moved.epoch) == (regions.eu, eu_host, 2)
        assert code == 0, out
        [own] = data["states"]
        assert (own["owner"], own["host"], own["epoch"]) == (regions.eu, eu_host, 2)
        steps = [(h["kind"], h["region"], h["epoch"], h["granted"]) for h in own["history"]
                 if h["kind"] != "renew"]
        assert steps == [("claim", regions.us, 1, True), ("release", regions.us, 1, True),
                         ("claim", regions.eu, 2, True)]
        # runs of renewals, each by the owner of the claim before it, all granted
        holder = None
        for h in own["history"]:
            if h["kind"] == "claim":
                holder = (h["region"], h["host"], h["epoch"])
            elif h["kind"] == "renew":
                assert (h["region"], h["host"], h["epoch"]) == holder, own["history"]
                assert (h["granted"], h["refused"]) == (h["count"], 0), own["history"]
    finally:
        await bus.close()
        await us_service.stop()  # idempotent
