"""``EdgeStateMachine``: one operation on a globally unique state (a durable object).

The node calls :meth:`edgebus.sdk.EdgeBus.state` on the runtime's shared edge
infrastructure: the operation runs at the state's single owner (see
docs/state-machines.md). A connected ``input`` is the operation's ``value`` (it
overrides the ``value`` param). Output ``result``: the
:class:`~edgebus.state.client.StateResult` as a dict plus ``"success"`` (its ``ok``:
the operation ran; a lock was acquired).

``lock``/``unlock`` without ``lock_name`` are on the state's own lock, named
``"state"`` (:data:`~edgebus.core.state_machine.DEFAULT_LOCK_NAME`): one lock per
state id. ``lease_duration_ms`` is the lease the node asks for, checked at build
against :data:`~edgebus.core.ownership.MIN_LEASE_MS` ..
:data:`~edgebus.core.ownership.MAX_LEASE_MS` (500 ms .. one hour): a lock lasts it,
and it is the owner's lease of the state from this call on (the claim it causes asks
for it; the owner that runs it renews with it). Left out: a lock lasts
``state.lease_ms`` and the owner's lease stays as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from edgebus.core.ownership import check_lease_duration
from edgebus.errors import InvalidInput
from edgebus.sdk import EdgeBus
from edgebus.workflow.node import EdgeNode, NodeParams
from edgebus.workflow.registry import register_node

__all__ = ["EdgeStateMachine", "EdgeStateParams"]

StateOperation = Literal["get", "set", "update", "delete", "increment", "append", "lock", "unlock"]


class EdgeStateParams(NodeParams):
    """The parameters of an EdgeStateMachine (checked when the workflow is built)."""

    #: the state's globally unique id
    state_id: str = Field(min_length=1)
    operation: StateOperation = "get"
    #: a field of the state (none: the whole state)
    key: str | None = Field(None, min_length=1)
    value: Any = None
    #: ``update``: the name of a function registered with edgebus.state.register_update_fn
    update_fn: str | None = Field(None, min_length=1)
    increment: float = 1
    #: ``lock``/``unlock``: the lock (none: the state's own lock, ``"state"``)
    lock_name: str | None = Field(None, min_length=1)
    holder: str | None = Field(None, min_length=1)
    timeout_ms: int | None = Field(None, gt=0)
    #: the lease asked for: a lock's, and the owner's (500 ms .. one hour)
    lease_duration_ms: int | None = None
    enable_persistence: bool = True
    enable_replication: bool = True
    enable_migration: bool = False
    classification: str | None = Field(None, min_length=1)
    #: where the call comes from (ownership migrates toward it with enable_migration)
    location_id: str | None = Field(None, min_length=1)

    @field_validator("lease_duration_ms")
    @classmethod
    def _lease_within_bounds(cls, value: int | None) -> int | None:
        if value is None:
            return None
        try:
            return check_lease_duration(value)
        except InvalidInput as e:  # a ValueError is what pydantic reports per field
            raise ValueError(str(e)) from None

    @field_validator("enable_persistence", "enable_replication")
    @classmethod
    def _always(cls, value: bool) -> bool:
        if not value:
            raise ValueError(
                "edgebus states are always persisted (their log, and snapshots at every "
                "host) and replicated to standbys in the regions their class allows: "
                "leave it true"
            )
        return value


@register_node("EdgeStateMachine")
class EdgeStateMachine(EdgeNode):
    """Globally unique state instances (like Cloudflare Durable Objects)."""

    Params: ClassVar[type[NodeParams]] = EdgeStateParams
    inputs: ClassVar[tuple[str, ...]] = ("input",)
    outputs: ClassVar[tuple[str, ...]] = ("result",)

    @property
    def state_params(self) -> EdgeStateParams:
        """The node's params, typed."""
        assert isinstance(self.params, EdgeStateParams)
        return self.params

    async def async_run(self, input: Any = None, **_: Any) -> Mapping[str, Any]:
        p = self.state_params
        bus: EdgeBus = self.infrastructure.bus
        value = p.value if input is None else input
        if p.operation == "set" and p.key is None and value is None:
            value = {}  # the spec's examples set a state without a value: an empty state
        answer = await bus.state(
            p.state_id,
            p.operation,
            key=p.key,
            value=value,
            update_fn=p.update_fn,
            increment=p.increment,
            lock_name=p.lock_name,
            holder=p.holder,
            timeout_ms=p.timeout_ms,
            lease_duration_ms=p.lease_duration_ms,
            enable_persistence=p.enable_persistence,
            enable_replication=p.enable_replication,
            enable_migration=p.enable_migration,
            classification=p.classification,
            region=p.location_id,
        )
        result: dict[str, Any] = answer.to_dict()
        result["success"] = bool(answer.ok)
        return {"result": result}
