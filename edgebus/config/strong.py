"""The ``strong`` section: the commit log's region, two-phase commit deadlines, who
coordinates, and linearizable reads."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, model_validator

from edgebus.config.section import Section

__all__ = ["StrongConfig"]


class StrongConfig(Section):
    """Strong consistency: the commit log, two-phase commit and linearizable reads.

    The commit log (``edgebus.<log_region>.saga``, and ``edgebus.<log_region>.sagas`` for
    multi-step sagas) lives on the cluster of ``log_region`` (default: the first configured region);
    every coordinator, participant and strong client uses that cluster.
    """

    #: the region whose Kafka cluster holds the saga topics (None: the first region)
    log_region: str | None = None
    #: a strong write not decided within this many ms is aborted
    timeout_ms: int = Field(5_000, ge=100, le=600_000)
    #: how long a client waits for the decision past the deadline before reporting the
    #: outcome unknown (a coordinator must be running to decide)
    decision_grace_ms: int = Field(10_000, ge=0, le=600_000)
    #: who decides: ``auto`` (default) the ``edgebus coordinator run`` processes when
    #: one runs, else one EdgeBus among those writing strongly, taken over by another
    #: when it stops; ``service`` only coordinator processes (an EdgeBus never joins
    #: the coordinator group); ``embedded`` a coordinator in every EdgeBus (one
    #: process, or a few long-lived ones: each start and stop rebalances the group)
    coordinator: Literal["auto", "embedded", "service"] = "auto"
    #: deprecated spelling: true is ``coordinator = "embedded"``, false ``"service"``
    embedded_coordinator: bool | None = None
    #: how long a strong read waits for its region to reach the read barrier
    read_wait_ms: int = Field(5_000, ge=0, le=600_000)

    @model_validator(mode="before")
    @classmethod
    def _embedded_coordinator_alias(cls, data: Any) -> Any:
        if not isinstance(data, Mapping) or data.get("embedded_coordinator") is None:
            return data
        alias = "embedded" if data["embedded_coordinator"] else "service"
        given = data.get("coordinator")
        if given is not None and given != alias:
            raise ValueError(
                f"strong.embedded_coordinator = {data['embedded_coordinator']} (deprecated) "
                f"contradicts strong.coordinator = {given!r}: keep only strong.coordinator"
            )
        return {**data, "coordinator": alias}
