"""The ``state`` section: state machines' ownership leases, fail-over, migration and
snapshots (docs/state-machines.md)."""

from __future__ import annotations

from pydantic import Field

from edgebus.config.section import Section

__all__ = ["StateConfig"]


class StateConfig(Section):
    """State machines (EdgeStateMachine): ownership leases, fail-over, migration.

    A state's log is ``edgebus.<home>.state.<class>`` on the cluster of its home: the
    first region its data class allows (the strong log region when allowed). Region
    services host states (``edgebus region run``); an EdgeBus hosts them too with
    ``embedded_host``.
    """

    #: the owner's lease when a state names none (``lease_duration_ms``)
    lease_ms: int = Field(10_000, ge=500, le=3_600_000)
    #: the owner stops serving this long before its lease ends by its own clock
    lease_margin_ms: int = Field(500, ge=0, le=60_000)
    #: hosts of the next candidate regions claim a free state this much later, each
    stagger_ms: int = Field(300, ge=0, le=60_000)
    #: how long an operation waits for its answer when it names no timeout_ms
    timeout_ms: int = Field(10_000, ge=100, le=600_000)
    #: a caller re-sends a request (same id: never run twice) when no owner answered
    resend_ms: int = Field(1_500, ge=50, le=600_000)
    #: migration (enable_migration): another region's share of the accesses over the
    #: window that moves ownership there, and the fewest accesses that count
    migration_threshold: float = Field(0.6, gt=0.5, le=1.0)
    migration_window_ms: int = Field(10_000, ge=100, le=3_600_000)
    migration_min_accesses: int = Field(20, ge=1)
    #: how often a host writes its folded states and log positions to SQLite
    snapshot_interval_ms: int = Field(1_000, ge=50, le=600_000)
    #: host states inside every EdgeBus too (its region: ``host_region``, default the
    #: first region); operations on states it owns then skip the forward
    embedded_host: bool = False
    host_region: str | None = None
