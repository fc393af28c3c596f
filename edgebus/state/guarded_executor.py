"""A state host's executor with a guard around each request it runs.

:class:`~edgebus.state.executor.Executor` runs the requests of the states a host owns,
one at a time, and answers with a refusal a request whose answer no state-log record can
carry (values that cannot be classified, text that is not Unicode, a record too large
for Kafka): the guard dead-letters that request (``on_refused``). A request whose run
raises otherwise (a case no check foresaw) would stop the executor, and with it every
state of the host; after a restart the request, still waiting in the log, would stop it
again. The guard refuses such a request instead: it is dead-lettered, its local caller
gets :class:`~edgebus.errors.StateOperationRefused` with the error, and the owner's
working copy is dropped (it may hold part of the failed run): the host takes the state
again from its fold of the log once the lease it holds runs out, and then answers the
request, still waiting in the log, with a refusal record instead of running it again
(so a caller waiting on the log gets its answer, re-sending the same request id if its
timeout was shorter). Transient trouble (Kafka, a timeout) only drops the working copy:
the request runs again at the next owner.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from edgebus.core.state_machine import StateOp
from edgebus.errors import StateOperationRefused
from edgebus.state.executor import Executor, failure_reason
from edgebus.state.owned import HostContext, Work, tell_not_owner, wall_ms
from edgebus.state.ownership_loop import OwnershipLoop
from edgebus.state.poison import transient

__all__ = ["GuardedExecutor", "OnRefused"]

#: told of a request the owner failed to run: (the work, why)
OnRefused = Callable[[Work, str], None]
#: request ids this host refused and remembers (the newest)
MAX_REFUSED = 10_000


class GuardedExecutor(Executor):
    """The host's executor, with a guard around each request it runs: a request whose
    run raises (other than for transient trouble) is refused instead of stopping the
    executor."""

    def __init__(self, host: HostContext, ownership: OwnershipLoop,
                 on_refused: OnRefused) -> None:
        super().__init__(host, ownership)
        self._on_refused = on_refused
        self._refused: dict[str, str] = {}  #: request id -> why, newest last

    async def _run(self, work: Work) -> None:
        why = self._refused.get(work.request.req_id)
        try:
            if why is not None:
                await self._answer_refused(work, why)
            else:
                await super()._run(work)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self._refuse(work, e)

    def _report_refused(self, work: Work, reason: str) -> None:
        super()._report_refused(work, reason)
        self._on_refused(work, reason)

    def _refuse(self, work: Work, error: Exception) -> None:
        key, request = work.key, work.request
        reason = failure_reason(request, error)
        # the working copy may hold part of the failed run: the host takes the state
        # again (from its fold of the log) when the lease it holds runs out
        self._ownership.demote(key, reason)
        if transient(error):
            tell_not_owner(work.local, reason)
            return
        if request.req_id not in self._refused:
            self._refused[request.req_id] = reason
            while len(self._refused) > MAX_REFUSED:
                del self._refused[next(iter(self._refused))]
            self._report_refused(work, reason)
        local = work.local
        if local is not None and not local.done():
            local.set_exception(StateOperationRefused(reason, request.state_id, request.req_id))

    async def _answer_refused(self, work: Work, reason: str) -> None:
        """Answer a request refused before with a refusal record, on a working copy the
        host took since (so callers that wait on the log get their answer, and the
        request leaves every fold's pending requests)."""
        key, request = work.key, work.request
        own = self._ownership.owned.get(key)
        if own is None or own.handing_off:
            tell_not_owner(work.local, f"{self.host_id} does not own {key[1]}")
            return
        op = StateOp(
            state_id=request.state_id, req_id=request.req_id, operation=request.operation,
            region=self.region, host=self.host_id, epoch=own.epoch,
            lease_until_ms=own.lease_until_ms, from_region=request.from_region,
            outcome="refused", version=own.work.version, message=reason,
        )
        value = self._writer.encode(request.state_id, op)  # raises before any change
        own.work.apply(op, wall_ms())
        await self._append(work, own, op, value)
