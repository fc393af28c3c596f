"""A region store built on one Kafka layout, served after the layout changed.

The operator's path of issue 15: a region service runs on ``edgebus kafka up
--clusters 1``; then ``kafka down`` and ``kafka up --clusters 3`` (new, empty
clusters), and the same service starts again on its store. The store's positions
belong to the old cluster (past the new topic's end): served as they are, every new
write would stay invisible. With ``--on-store-mismatch refuse`` the service stops with
a message saying what differs and changes nothing; by default it rebuilds the store
from the new topic, and new writes are read back.
"""

from __future__ import annotations

import json
from pathlib import Path

from edgebus.localkafka import launcher
from edgebus.sdk import EdgeBus
from edgebus.sdk.region_client import RegionClient
from tests.integration.regions import RegionProcess, eventually, make_regions, store_rows

WRITES = 40


async def test_a_store_built_on_another_kafka_layout_is_refused_or_rebuilt(
    tmp_path: Path,
) -> None:
    state = tmp_path / "kafka"
    procs: list[RegionProcess] = []
    try:
        one = launcher.up(1, state=state)
        regions = make_regions(one.state.clusters[0].bootstrap, tmp_path)
        us = regions.us
        store = regions.store_url(us)
        procs.append(RegionProcess(regions, us, store))
        procs[-1].start()
        async with EdgeBus(regions.config) as bus:
            for i in range(WRITES):
                await bus.write(f"old:{i}", i, region=us, replication_factor=1,
                                classification="public")

            async def all_applied() -> bool:
                return (await bus.read(f"old:{WRITES - 1}", region=us)).exists

            await eventually(all_applied, 60, "the first layout's writes applied")
        procs[-1].stop()

        # the layout changes under the store: three new, empty clusters
        launcher.down(state=state)
        three = launcher.up(3, regions=regions.names, state=state)
        regions.config["kafka"].pop("bootstrap")
        regions.config["kafka"]["clusters"] = three.state.regions
        regions.config_path.write_text(json.dumps(regions.config), encoding="utf-8")
        regions.env.pop("EDGEBUS_BOOTSTRAP")

        code, _doc, out = regions.cli("region", "run", "--region", us, "--store", store,
                                     "--on-store-mismatch", "refuse", timeout_s=120)
        assert code != 0, out
        assert "was not built from the Kafka it reads now" in out, out
        assert "past the topic's end" in out or "built from cluster" in out, out
        assert len(await store_rows(store)) == WRITES  # refusing changed nothing

        procs.append(RegionProcess(regions, us, store))
        procs[-1].start()  # default: rebuild from the new topic
        client = RegionClient(regions.edge_config())
        try:
            async with EdgeBus(regions.config) as bus:
                receipt = await bus.write("new:1", {"after": "layout change"}, region=us,
                                          replication_factor=1, classification="public")

                async def new_write_visible() -> bool:
                    return (await bus.read("new:1", region=us)).exists

                await eventually(new_write_visible, 30, "a new write to be read back")
                assert not (await bus.read("old:0", region=us)).exists  # the log's truth
            status = await client.status(us)
            assert status["healthy"], status
            assert not status["positions_past_end"], status
            ends = {int(p): o for p, o in status["end_offsets"].items()}
            for p, o in status["positions"].items():
                assert o <= ends[int(p)], status
            assert status["positions"][str(receipt.partition)] > receipt.offset
        finally:
            await client.close()
        log = procs[-1].log_tail(200)
        assert "rebuilding it from" in log, log
    finally:
        for proc in procs:
            proc.stop()
        launcher.down(wipe=True, state=state)
