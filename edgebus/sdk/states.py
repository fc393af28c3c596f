"""State-machine calls from the SDK (the spec's EdgeStateMachine, like Durable Objects).

A call becomes a :class:`~edgebus.core.state_machine.StateRequest` and runs at the
state's owner: directly when this process hosts it (``state.embedded_host``), else
forwarded through the state's log (:mod:`edgebus.state.client`).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict

from edgebus.config import EdgeConfig
from edgebus.core.envelope import new_event_id
from edgebus.core.state_machine import OPERATIONS, StateRequest
from edgebus.errors import InvalidInput, UnknownRegion
from edgebus.sdk.lazily import Lazily
from edgebus.state.functions import register_update_fn, update_fn_name

if TYPE_CHECKING:  # imported when the first state call starts them
    from edgebus.state.client import StateClient, StateResult
    from edgebus.state.host import StateHost

__all__ = ["StateCalls", "StateKeywords"]


class StateKeywords(TypedDict, total=False):
    """The options of :meth:`EdgeBus.state <edgebus.sdk.EdgeBus.state>`."""

    #: a field of the state (none: the whole state)
    key: str | None
    value: Any
    #: a registered function name, or a callable (registered here)
    update_fn: str | Callable[[Any], Any] | None
    increment: float
    lock_name: str | None
    #: default: the bus's client id
    holder: str | None
    timeout_ms: int | None
    lease_duration_ms: int | None
    enable_persistence: bool
    enable_replication: bool
    enable_migration: bool
    #: the state's class (its jurisdiction)
    classification: str | None
    #: where the call comes from
    region: str | None
    #: makes a retry safe: a request id runs at most once
    req_id: str | None


_NAMES = frozenset(StateKeywords.__annotations__)


@dataclass(frozen=True)
class _Started:
    client: StateClient
    host: StateHost | None


class StateCalls:
    """The state calls of one EdgeBus: its state client and, with
    ``state.embedded_host``, a state host of its own."""

    def __init__(self, config: EdgeConfig, client_id: str) -> None:
        self.config = config
        self.client_id = client_id
        self._regions = frozenset(config.regions)
        self._parts: Lazily[_Started] = Lazily(self._start)

    async def _start(self) -> _Started:
        from edgebus.state.client import StateClient
        from edgebus.state.host import StateHost

        region = self.config.state.host_region or self.config.regions[0]
        host = None
        if self.config.state.embedded_host:
            # in memory: this process's folds are rebuilt from the log when it starts
            # (a file would be shared with other processes hosting the same region)
            host = StateHost(self.config, region, db_path=":memory:")
            await host.start()
        return _Started(StateClient(self.config, self.client_id, region, host), host)

    async def close(self) -> None:
        """Stop the state client and the embedded host."""
        await self._parts.stop(lambda parts: (parts.client, parts.host))

    async def call(
        self, state_id: str, operation: str, options: Mapping[str, Any]
    ) -> StateResult:
        """Run ``operation`` on ``state_id`` at its owner."""
        request, classification = self._request(state_id, operation, options)
        client = (await self._parts.get()).client
        return await client.call(request, client.data_class(classification))

    def _request(
        self, state_id: str, operation: str, options: Mapping[str, Any]
    ) -> tuple[StateRequest, str | None]:
        unknown = sorted(set(options) - _NAMES)
        if unknown:
            near = difflib.get_close_matches(unknown[0], sorted(_NAMES), n=1)
            hint = f"; did you mean {near[0]!r}?" if near else "."
            raise InvalidInput(f"state() got unknown option(s) {', '.join(unknown)}{hint}")
        if not isinstance(state_id, str) or not state_id:
            raise InvalidInput(f"state_id must be a non-empty string, got {state_id!r}")
        if operation not in OPERATIONS:
            near = difflib.get_close_matches(str(operation), OPERATIONS, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else "."
            raise InvalidInput(f"unknown state operation {operation!r}{hint} Use one of "
                               f"{', '.join(OPERATIONS)}.")
        if not options.get("enable_persistence", True) or not options.get(
            "enable_replication", True
        ):
            raise InvalidInput(
                "edgebus states are always persisted (their log, and snapshots at every "
                "host) and replicated to standbys in the regions their class allows: that "
                "is how a fail-over keeps every acknowledged operation. Leave "
                "enable_persistence and enable_replication true."
            )
        origin = options.get("region") or self.config.state.host_region or self.config.regions[0]
        if origin not in self._regions:
            raise UnknownRegion(origin, self.config.regions)
        update_fn = options.get("update_fn")
        fn_name: str | None
        if callable(update_fn):
            fn_name = update_fn_name(update_fn)
            register_update_fn(fn_name)(update_fn)
        else:
            fn_name = update_fn
        timeout_ms, lease_ms = options.get("timeout_ms"), options.get("lease_duration_ms")
        for name, number in (("timeout_ms", timeout_ms), ("lease_duration_ms", lease_ms)):
            if number is not None and (isinstance(number, bool) or not isinstance(number, int)
                                       or number <= 0):
                raise InvalidInput(f"{name} must be a positive int (ms), got {number!r}")
        request = StateRequest(
            state_id=state_id, req_id=options.get("req_id") or new_event_id(),
            operation=operation, from_region=origin,
            holder=options.get("holder") or self.client_id, key=options.get("key"),
            value=options.get("value"), increment=options.get("increment", 1),
            update_fn=fn_name, lock_name=options.get("lock_name"),
            lease_ms=lease_ms or self.config.state.lease_ms,
            timeout_ms=timeout_ms or self.config.state.timeout_ms,
            enable_migration=options.get("enable_migration", False),
        )
        return request, options.get("classification")
