"""One deployment for every spec example: region services of the spec's default
regions (us-east-1, eu-west-1, ap-south-1) in this process, on the session's Kafka.

The spec's examples name real regions (us-east-1, eu-west-1, ...), so unlike the
integration tests these services use those names; keys the examples write are the
examples' own (a node's key is its node id). ``EDGEBUS_BOOTSTRAP`` points at the test
broker for the module (zero-config examples resolve the broker from it) and
``EDGEBUS_CONFIG`` is unset. At module end every shared EdgeInfrastructure is closed,
on the test loop and on the runtime's background loop (synchronous ``execute``).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from edgebus.server.service import RegionService
from edgebus.workflow import EdgeInfrastructure
from edgebus.workflow import runtime as runtime_module

REGIONS = ("us-east-1", "eu-west-1", "ap-south-1")


@dataclass
class Deployment:
    bootstrap: str
    kafka: dict[str, Any]

    def config(self, example: dict[str, Any] | None = None) -> dict[str, Any]:
        """The example's edge_config with the test's kafka section merged in."""
        return {**(example or {}), "kafka": dict(self.kafka)}


@pytest.fixture(scope="module")
async def deployment(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Deployment]:
    tmp: Path = tmp_path_factory.mktemp("spec-examples")
    saved = {k: os.environ.get(k) for k in ("EDGEBUS_BOOTSTRAP", "EDGEBUS_CONFIG")}
    os.environ["EDGEBUS_BOOTSTRAP"] = kafka_bootstrap
    os.environ.pop("EDGEBUS_CONFIG", None)
    kafka = {"bootstrap": kafka_bootstrap}
    services = [
        RegionService(region, {"kafka": kafka}, store=f"sqlite://{tmp / region}.db")
        for region in REGIONS
    ]
    try:
        # started (and stopped) concurrently: each joins its consumer groups
        started = await asyncio.gather(*(s.start() for s in services), return_exceptions=True)
        errors = [e for e in started if isinstance(e, BaseException)]
        if errors:
            raise errors[0]
        yield Deployment(kafka_bootstrap, kafka)
    finally:
        try:
            await EdgeInfrastructure.close_all()
            background = runtime_module._background
            if background is not None:
                await asyncio.wrap_future(
                    asyncio.run_coroutine_threadsafe(
                        EdgeInfrastructure.close_all(), background.loop
                    )
                )
        finally:
            await asyncio.gather(*(s.stop() for s in services), return_exceptions=True)
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
