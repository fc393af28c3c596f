"""``edgebus demo``: the quick start, end to end, on a local Kafka it starts itself.

It starts (or reuses) a local Kafka with one cluster per region, starts a region
service per region in this process (the workflow's bus embeds the strong-write
coordinator), runs the quick-start workflow (WorkflowBuilder -> LocalRuntime: writes
placed by compliance, a strong write, a state machine, a causal chat thread, a
bounded-staleness read, monitoring with an alert), a one-node workflow whose PII
placement strict mode refuses, a saga whose strong write is compensated, then reads
every region's topic back, and stops what it started.

This module is the command and its local Kafka (section 1); the workflows are in
``_demo_workflows``, sections 2 to 6 in ``_demo_tour``.
"""

from __future__ import annotations

import asyncio
import logging
import time

import typer

from edgebus.cli._demo_tour import tour
from edgebus.cli._output import console
from edgebus.cli._runner import Call, run_command
from edgebus.localkafka import launcher

__all__ = ["demo"]


def demo(
    ctx: typer.Context,
    keep_kafka: bool = typer.Option(
        False, "--keep-kafka", help="Leave the Kafka this demo started running."
    ),
) -> None:
    """Start Kafka (one cluster per region), write across regions, show where data landed."""
    # aiokafka logs (and retries) the moments a freshly created topic has no leader or
    # group coordinator yet; in a demo they are noise, and real failures still raise
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    kafka = _LocalKafka()

    def body(call: Call) -> None:
        kafka.start()
        asyncio.run(tour())

    try:
        run_command(ctx, body)
    finally:  # outside the runner: an error is reported first, then Kafka stopped
        if not keep_kafka:
            kafka.stop()


class _LocalKafka:
    """The local Kafka the demo runs on: the running one, else three clusters it starts
    (and stops again, unless --keep-kafka)."""

    def __init__(self) -> None:
        self.started_here = False

    def start(self) -> None:
        """Section 1: use the running local Kafka, or start one cluster per region."""
        report = launcher.status()
        if report.healthy:
            console.print(f"Using the running local Kafka: {report.message}")
            return
        console.rule("1. Local Kafka: three single-node KRaft clusters, one per region")
        began = time.monotonic()
        result = launcher.up(clusters=3)
        self.started_here = result.started
        for cluster in result.state.clusters:
            regions = ", ".join(result.state.regions_of(cluster.index))
            console.print(f"  cluster {cluster.index}: {cluster.bootstrap}  <- {regions}")
        console.print(f"  ready in {time.monotonic() - began:.1f} s")

    def stop(self) -> None:
        """Stop the Kafka this demo started (none if it used a running one)."""
        if self.started_here:
            launcher.down(wipe=True)
            console.print("Stopped the Kafka this demo started (edgebus kafka down --wipe).")
