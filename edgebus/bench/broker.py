"""The broker a benchmark runs on: the one named, the configured one, or a private
broker started for the run (when nothing was named and nothing answers)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

from edgebus.bench.children import READY_TIMEOUT_S
from edgebus.config import EdgeConfig
from edgebus.errors import EdgebusError, InfrastructureUnavailable
from edgebus.kafka.clusters import ENV_BOOTSTRAP, resolve_clusters

__all__ = ["answers", "bench_broker"]


async def answers(bootstrap: str, timeout_s: float = 3.0) -> bool:
    """Whether the first address of ``bootstrap`` accepts a TCP connection."""
    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(host.strip("[]") or "127.0.0.1", int(port)), timeout_s
        )
    except (OSError, ValueError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()
    return True


@contextlib.asynccontextmanager
async def bench_broker(
    config: EdgeConfig, bootstrap: str | None, tmp: Path
) -> AsyncIterator[tuple[str, str]]:
    """Yield ``(bootstrap, how)``: the given address, the configured one, or a private
    broker started for this run (when nothing was named and nothing answers at the
    resolved address) and wiped afterwards."""
    first = config.regions[0]
    named = bootstrap or config.kafka.clusters.get(first) or config.kafka.bootstrap \
        or os.environ.get(ENV_BOOTSTRAP)
    address = bootstrap or resolve_clusters(config)[first]
    if await answers(address):
        yield address, "given" if bootstrap else "configured"
        return
    if named:
        raise InfrastructureUnavailable(
            f"no Kafka answers at {address}: start it, or name none (no --bootstrap, "
            f"kafka.bootstrap or {ENV_BOOTSTRAP}) and the benchmark starts a broker of its own",
            [address],
        )
    from edgebus.localkafka import launcher

    state = tmp / "kafka"
    try:
        up = await asyncio.to_thread(launcher.up, 1, state=state, timeout_s=READY_TIMEOUT_S)
        yield up.state.clusters[0].bootstrap, "started"
    finally:
        with contextlib.suppress(EdgebusError):
            await asyncio.to_thread(launcher.down, True, state=state)
