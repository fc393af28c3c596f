"""State-machine calls from the SDK (the spec's EdgeStateMachine, like Durable Objects).

A call becomes a :class:`~edgebus.core.state_machine.StateRequest` and runs at the
state's owner: directly when this process hosts it (``state.embedded_host``), else
forwarded through the state's log (:mod:`edgebus.state.client`).

Options are checked here against the state hosts' own limits (a state id of at most
64 KiB of UTF-8, a ``timeout_ms`` of at most 2^48 ms), so a caller gets InvalidInput
saying what to pass instead of a request every host refuses. ``lease_duration_ms`` is
the lease the caller asks for, from :data:`~edgebus.core.ownership.MIN_LEASE_MS` to
:data:`~edgebus.core.ownership.MAX_LEASE_MS` (500 ms to one hour; anything else is
refused, giving the bounds): a lock's lease, and the owner's lease of the state from
this call on (:func:`~edgebus.core.ownership.lease_asked`). Left out, the request
names none (``lease_ms`` 0): a lock lasts the owner's ``state.lease_ms`` and the
owner's lease stays as it is. A ``lock`` or ``unlock`` without ``lock_name`` is on
the state's own lock, :data:`~edgebus.core.state_machine.DEFAULT_LOCK_NAME`
(``"state"``).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict

from edgebus.config import EdgeConfig
from edgebus.core.envelope import new_event_id
from edgebus.core.ownership import check_lease_duration
from edgebus.core.state_machine import DEFAULT_LOCK_NAME, OPERATIONS, StateRequest
from edgebus.errors import InvalidInput, UnknownRegion
from edgebus.sdk.lazily import Lazily
from edgebus.state.functions import register_update_fn, update_fn_name
from edgebus.wire.state_log import MAX_MS, MAX_STATE_ID_BYTES

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
    #: ``lock``/``unlock``: the lock (default: the state's own, ``"state"``)
    lock_name: str | None
    #: default: the bus's client id
    holder: str | None
    timeout_ms: int | None
    #: the lease asked for (a lock's, and the owner's), 500 ms .. one hour
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
        _check_state_id(state_id)
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
        timeout_ms = _milliseconds("timeout_ms", options.get("timeout_ms"))
        lease = options.get("lease_duration_ms")
        lease_ms = 0 if lease is None else check_lease_duration(lease)  # 0: none named
        lock_name = options.get("lock_name")
        if lock_name is None and operation in ("lock", "unlock"):
            lock_name = DEFAULT_LOCK_NAME
        request = StateRequest(
            state_id=state_id, req_id=options.get("req_id") or new_event_id(),
            operation=operation, from_region=origin,
            holder=options.get("holder") or self.client_id, key=options.get("key"),
            value=options.get("value"), increment=options.get("increment", 1),
            update_fn=fn_name, lock_name=lock_name,
            lease_ms=lease_ms,
            timeout_ms=timeout_ms or self.config.state.timeout_ms,
            enable_migration=options.get("enable_migration", False),
        )
        return request, options.get("classification")


def _check_state_id(state_id: object) -> None:
    """InvalidInput unless ``state_id`` is text a state log can carry: not empty,
    Unicode (no lone surrogate), at most :data:`MAX_STATE_ID_BYTES` of UTF-8."""
    if not isinstance(state_id, str) or not state_id:
        raise InvalidInput(f"state_id must be a non-empty string, got {state_id!r}")
    try:
        size = len(state_id.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidInput(
            f"state_id {state_id[:80]!r} is not Unicode text (it holds a lone surrogate): "
            "decode it properly, or name the state with a hash of it"
        ) from None
    if size > MAX_STATE_ID_BYTES:
        raise InvalidInput(
            f"state_id is {size} bytes of UTF-8, over the {MAX_STATE_ID_BYTES} bytes a "
            "state log takes: name the state with something shorter (a hash of it, say)"
        )


def _milliseconds(name: str, number: object) -> int | None:
    """An optional ``timeout_ms``: a positive int of at most
    :data:`MAX_MS` (2^48 ms, about 8,900 years: the state hosts refuse more), else
    InvalidInput."""
    if number is None:
        return None
    if isinstance(number, bool) or not isinstance(number, int) or number <= 0:
        raise InvalidInput(f"{name} must be a positive int (ms), got {number!r}")
    if number > MAX_MS:
        raise InvalidInput(
            f"{name} of {number} ms is over the {MAX_MS} ms (2^48, about 8,900 years) state "
            f"hosts take: pass at most {MAX_MS}"
        )
    return number
