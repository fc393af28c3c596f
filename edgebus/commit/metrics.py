"""A strong-commit coordinator's Prometheus metrics (``edgebus coordinator run
--metrics-listen``); ``docs/operations.md`` lists them."""

from __future__ import annotations

from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from edgebus.prometheus import ServiceMetrics

__all__ = ["CoordinatorMetrics", "coordinator_families"]


def coordinator_families(coordinator: Any) -> list[Any]:
    """The metric families of a :class:`~edgebus.commit.coordinator.Coordinator`."""
    name = [coordinator.name]
    decisions = CounterMetricFamily(
        "edgebus_saga_decisions", "Strong-write decisions this coordinator appended to the "
        "commit log", labels=["coordinator", "outcome"],
    )
    for outcome in ("commit", "abort"):
        decisions.add_metric([*name, outcome], float(coordinator.outcomes.get(outcome, 0)))
    timeouts = CounterMetricFamily(
        "edgebus_saga_timeouts", "Aborts decided because a participant did not vote "
        "before the deadline (also counted as aborts)", labels=["coordinator"],
    )
    timeouts.add_metric(name, float(coordinator.timeouts))
    partitions = GaugeMetricFamily(
        "edgebus_saga_partitions_assigned", "Commit-log partitions this coordinator decides",
        labels=["coordinator"],
    )
    partitions.add_metric(name, float(len(coordinator.logs)))
    undecided = GaugeMetricFamily(
        "edgebus_saga_undecided", "Transactions folded and not decided yet",
        labels=["coordinator"],
    )
    undecided.add_metric(name, float(sum(len(p.undecided()) for p in coordinator.logs.values())))
    families = [decisions, timeouts, partitions, undecided]
    latency = getattr(coordinator, "write_latency", None)
    if latency is not None:
        families.append(latency.histogram(
            "edgebus_strong_write_latency_ms",
            "Strong writes: time from the client's BEGIN (its clock) to this coordinator's "
            "decision in the commit log, in ms, by outcome",
            ["coordinator", "outcome"], name,
        ))
    return families


class CoordinatorMetrics:
    """A coordinator's registry."""

    def __init__(self, coordinator: Any) -> None:
        self._metrics = ServiceMetrics(lambda: coordinator_families(coordinator))

    async def render(self) -> bytes:
        """The text exposition of the coordinator's metrics now."""
        return self._metrics.render()
