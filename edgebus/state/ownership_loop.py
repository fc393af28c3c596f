"""A state host's ownership of states: claims, renewals, hand-offs, demotion, releases.

Decide, then do: the rules are pure, in :mod:`edgebus.core.ownership` (leases, the
migration rule) and :mod:`edgebus.core.state_machine` (who claims when); this module
appends the records they call for and keeps ``owned``, the states this host owns now.

* **claim**: a free state that is wanted is claimed after its candidate delay
  (:func:`~edgebus.core.state_machine.claim_delay_ms`); the host owns it from the moment
  its consumer reads the granted claim (:meth:`OwnershipLoop.claim_landed`).
* **renew** every third of the lease; the host may serve until the lease by its own
  clock minus the margin (:func:`~edgebus.core.ownership.lease_valid_until`).
* **lease**: a call naming ``lease_duration_ms`` sets the owner's lease to it
  (:func:`~edgebus.core.ownership.lease_asked`): the claim it causes asks for it,
  and when it runs at the owner (:meth:`OwnershipLoop.set_lease`) the owner renews at
  once with it, and with it from then on.
* **migrate**: when another allowed region made enough of the accesses
  (:func:`~edgebus.core.ownership.migration_target`), wait for the events in flight,
  append a hand-off and stop serving.
* **release** the owned states when the host stops gracefully.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from edgebus.core.ownership import (
    Claim,
    Handoff,
    Release,
    Renew,
    claim_lease_ms,
    lease_valid_until,
    migration_target,
)
from edgebus.core.state_machine import StateObject, claim_delay_ms
from edgebus.state.log import allowed_regions
from edgebus.state.owned import HostContext, HostPart, Key, OwnedState, tell_not_owner, wall_ms

__all__ = ["OwnershipLoop"]

log = logging.getLogger("edgebus.state")

#: seconds before a host sends a second claim for a state it has not read back
CLAIM_RETRY_S = 5
#: seconds between two rounds of the loop
TICK_S = 0.1


class OwnershipLoop(HostPart):
    """Which states this host owns (``owned``), and the records that claim, keep, hand
    off and release them."""

    def __init__(
        self,
        host: HostContext,
        classes: tuple[str, ...],
        background: Callable[[Coroutine[Any, Any, None]], None],
    ) -> None:
        super().__init__(host)
        self.owned: dict[Key, OwnedState] = {}
        self._background = background
        self._allowed = {c: allowed_regions(host.config, c) for c in classes}
        self._claim_times: dict[Key, float] = {}  # when this host sent a claim
        self._claimable: dict[Key, float] = {}

    def owns(self, key: Key) -> bool:
        """Whether this host owns the state and may serve it now."""
        own = self.owned.get(key)
        return own is not None and not own.handing_off and time.monotonic() < own.valid_until

    # -- the loop --------------------------------------------------------------------------
    async def run(
        self,
        objects: Mapping[Key, StateObject],
        unpark: Callable[[Key, OwnedState], None],
    ) -> None:
        """Every 100 ms: re-queue parked lock requests (``unpark``), renew and migrate
        the owned states, claim the wanted ones among ``objects``."""
        while True:
            await asyncio.sleep(TICK_S)
            now = time.monotonic()
            wall = wall_ms()
            for key, own in list(self.owned.items()):
                try:
                    if own.parked:
                        unpark(key, own)
                    self._keep(key, own, now, wall)
                except Exception as e:  # one state's trouble stops no other's
                    log.error("%s: keeping state %s/%s failed: %r", self.region, key[0],
                              key[1], e)
                    self.demote(key, f"keeping it failed: {e!r}")
            self._claim_wanted(objects, now, wall)

    def _keep(self, key: Key, own: OwnedState, now: float, wall: int) -> None:
        if not own.renewing and not own.handing_off and (
                now - own.renew_sent) * 1000 >= own.lease_ms / 3:
            own.renewing = True
            self._background(self._renew(key, own))
        if own.work.migratable and not own.handing_off:
            self._maybe_migrate(key, own, wall)

    # -- claims ----------------------------------------------------------------------------
    def _claim_wanted(self, objects: Mapping[Key, StateObject], now: float,
                      wall: int) -> None:
        stagger_ms = self.config.state.stagger_ms
        for key, obj in objects.items():
            if key in self.owned:
                continue
            sent = self._claim_times.get(key)
            if sent is not None and now - sent < CLAIM_RETRY_S:
                continue
            delay = claim_delay_ms(obj, self.region, self._allowed[key[0]],
                                   now_ms=wall, stagger_ms=stagger_ms)
            if delay is None:
                self._claimable.pop(key, None)
                continue
            since = self._claimable.setdefault(key, now)
            if (now - since) * 1000 >= delay:
                self._claimable.pop(key, None)
                self._claim(key, obj)

    def _claim(self, key: Key, obj: StateObject) -> None:
        # the lease the oldest waiting call asks for (its lease_duration_ms, within
        # MIN_LEASE_MS .. MAX_LEASE_MS), else state.lease_ms
        lease = claim_lease_ms((r.lease_ms for r, _at in obj.pending.values()),
                               self.config.state.lease_ms)
        self._claim_times[key] = time.monotonic()
        self._counters["claims"] += 1
        claim = Claim(self.region, obj.view.epoch + 1, lease, self.host_id)

        async def send() -> None:
            try:
                await self._writer.append(key[0], key[1], claim)
            except Exception as e:  # Kafka's own errors too: claimed again later
                log.warning("%s: claim of %s failed: %r", self.region, key[1], e)
                self._claim_times.pop(key, None)

        self._background(send())

    def claim_landed(self, key: Key, obj: StateObject, claim: Claim, append_ms: int,
                     new: bool) -> bool:
        """This host's ``claim`` was read back (``obj`` has folded it; ``new``: the fold
        changed something). True when the log granted it: the host owns the state now,
        and the caller queues the requests waiting for it."""
        sent = self._claim_times.pop(key, time.monotonic())
        if not (obj.view.epoch == claim.epoch and obj.view.holder == self.host_id and new):
            return False
        self._become_owner(key, obj, claim, append_ms, sent)
        return True

    def _become_owner(self, key: Key, obj: StateObject, claim: Claim, append_ms: int,
                      sent: float) -> None:
        margin = min(self.config.state.lease_margin_ms, claim.lease_ms // 4)
        self.owned[key] = OwnedState(
            data_class=key[0], state_id=key[1], epoch=claim.epoch, lease_ms=claim.lease_ms,
            lease_until_ms=append_ms + claim.lease_ms,
            valid_until=lease_valid_until(sent * 1000, claim.lease_ms, margin) / 1000,
            work=obj.copy(), renew_sent=sent,
        )
        self._counters["takeovers"] += 1
        log.info("%s: %s owns state %s/%s at epoch %d (%d requests waiting)", self.region,
                 self.host_id, key[0], key[1], claim.epoch, len(obj.pending))

    # -- renewals ----------------------------------------------------------------------------
    def set_lease(self, key: Key, own: OwnedState, lease_ms: int) -> None:
        """Make ``lease_ms`` the owner's lease of ``own`` (a call asked for it): renewed
        with it at once (or, when a renewal is in flight, right after that one lands),
        and with it from then on. The log never shortens a lease: a shorter one takes
        over when the running one ends."""
        if lease_ms == own.lease_ms:
            return
        log.debug("%s: state %s/%s: the owner's lease is now %d ms (was %d ms)",
                  self.region, key[0], key[1], lease_ms, own.lease_ms)
        own.lease_ms = lease_ms
        if own.renewing or own.handing_off:
            return  # the renewal in flight sees the change when it lands
        own.renewing = True
        self._background(self._renew(key, own))

    async def _renew(self, key: Key, own: OwnedState) -> None:
        sent = time.monotonic()
        lease = own.lease_ms
        try:
            where = await self._writer.append(
                own.data_class, own.state_id,
                Renew(self.region, own.epoch, lease, self.host_id))
        except Exception as e:  # Kafka's own errors too: renewed again at the next tick
            log.warning("%s: renewal of %s failed: %r", self.region, own.state_id, e)
            own.renewing = False
            own.renew_sent = 0.0  # at the next tick (also when set_lease asked for it)
            return
        own.renewing = False
        if self.owned.get(key) is not own:
            return
        if where.append_ms > own.lease_until_ms:
            self.demote(key, "a renewal landed after the lease had run out")
            return
        margin = min(self.config.state.lease_margin_ms, lease // 4)
        own.lease_until_ms = max(own.lease_until_ms, where.append_ms + lease)
        own.valid_until = max(own.valid_until,
                              lease_valid_until(sent * 1000, lease, margin) / 1000)
        # the lease changed while this renewal was in flight: renew with the new one at
        # the next tick (a longer lease's third may be past the end of this one)
        own.renew_sent = sent if own.lease_ms == lease else 0.0

    # -- migration ---------------------------------------------------------------------------
    def _maybe_migrate(self, key: Key, own: OwnedState, wall: int) -> None:
        cfg = self.config.state
        counts = own.work.access_counts(wall - cfg.migration_window_ms)
        target = migration_target(
            counts, self.region, threshold=cfg.migration_threshold,
            min_accesses=cfg.migration_min_accesses,
            allowed=frozenset(self._allowed[key[0]]),
        )
        if target is None:
            return
        own.handing_off = True
        self._background(self._hand_off(key, own, target, counts))

    async def _hand_off(self, key: Key, own: OwnedState, target: str,
                        counts: dict[str, int]) -> None:
        while own.inflight > 0:  # noqa: ASYNC110 - a few ms: the events in flight land
            await asyncio.sleep(0.005)
        try:
            await self._writer.append(own.data_class, own.state_id,
                                      Handoff(self.region, own.epoch, target, self.host_id))
        except Exception as e:
            log.warning("%s: hand-off of %s failed: %r", self.region, own.state_id, e)
        self._counters["handoffs"] += 1
        self.demote(key, f"migrating to {target} (accesses over the window: {counts})")

    # -- the end of ownership ----------------------------------------------------------------
    def demote(self, key: Key, reason: str) -> None:
        """Stop owning the state (its parked local callers forward their requests)."""
        own = self.owned.pop(key, None)
        if own is None:
            return
        self._counters["demoted"] += 1
        for _request, _at, local in own.parked:
            tell_not_owner(local, f"{self.host_id} stopped owning {key[1]}: {reason}")
        log.info("%s: %s stops owning state %s/%s: %s", self.region, self.host_id, key[0],
                 key[1], reason)

    async def release_all(self, timeout_s: float = 2.0) -> None:
        """Stop taking operations, wait up to ``timeout_s`` for the events in flight, and
        append a release for each owned state with none left in flight."""
        owned = list(self.owned.items())
        if not owned:
            return
        for _key, own in owned:
            own.handing_off = True  # no new operations
        deadline = time.monotonic() + timeout_s
        while any(own.inflight for _k, own in owned) and time.monotonic() < deadline:  # noqa: ASYNC110 - bounded: the events in flight land
            await asyncio.sleep(0.01)
        releases = [
            self._writer.append(own.data_class, own.state_id,
                                Release(self.region, own.epoch, self.host_id))
            for _key, own in owned if own.inflight == 0
        ]
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.gather(*releases, return_exceptions=True),
                                   max(0.1, deadline - time.monotonic()))
