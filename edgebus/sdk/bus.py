"""The producer SDK: ``async with EdgeBus(config) as bus: await bus.write(key, data)``.

:class:`EdgeBus` is a small facade over the SDK's parts, each a module of its own:
writes (:mod:`edgebus.sdk.writes`: classification, placement, encoding, batching),
reads (:mod:`edgebus.sdk.reads`: every consistency level), strong commits
(:mod:`edgebus.sdk.strong`), state-machine calls (:mod:`edgebus.sdk.states`) and the
session they share (:mod:`edgebus.sdk.sessions`). It owns their lifecycle and the
background health probes (:mod:`edgebus.sdk.discovery`). Options are typed
(:mod:`edgebus.sdk.options`); results are :mod:`edgebus.sdk.results`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast, overload

from typing_extensions import Unpack

from edgebus.config import EdgeConfig, load_config
from edgebus.core.envelope import new_event_id
from edgebus.core.placement import Placement
from edgebus.core.session import SessionToken
from edgebus.errors import EdgebusError, InfrastructureUnavailable
from edgebus.kafka import log_noise
from edgebus.kafka.clusters import resolve_clusters
from edgebus.sdk.discovery import Discovery
from edgebus.sdk.metrics import BusMetrics, recorded
from edgebus.sdk.options import (
    NO_READ_OPTIONS,
    NO_WRITE_OPTIONS,
    AnyWriteKeywords,
    CommitKeywords,
    PlacementKeywords,
    ReadKeywords,
    ReadOptions,
    StrongWriteKeywords,
    WriteKeywords,
    WriteOptions,
)
from edgebus.sdk.reads import Reader, read_kind
from edgebus.sdk.repair import RepairReport, repair_region
from edgebus.sdk.results import CommitResult, PreparedWrite, ReadResult, WriteReceipt
from edgebus.sdk.sessions import BusSession
from edgebus.sdk.states import StateCalls, StateKeywords
from edgebus.sdk.strong import StrongWrites
from edgebus.sdk.writes import Writer

if TYPE_CHECKING:
    from edgebus.state.client import StateResult

__all__ = ["EdgeBus"]


class EdgeBus:
    """Asynchronous producer SDK. Use as ``async with EdgeBus(config) as bus``."""

    def __init__(
        self,
        config: EdgeConfig | Mapping[str, Any] | str | Path | None = None,
        *,
        client_id: str | None = None,
        discovery: bool = True,
    ) -> None:
        """``discovery=False`` skips health probing (one-shot tools): placement then
        knows only what failed writes teach it."""
        self.config = load_config(config)
        self.client_id = client_id or f"edgebus-{new_event_id()[:8]}"
        #: latency / throughput / errors of write, commit, read and state calls (see
        #: edgebus.sdk.metrics); None when monitoring.metrics_enabled is false
        self.metrics: BusMetrics | None = (
            BusMetrics() if self.config.monitoring.metrics_enabled else None
        )
        self._discover = discovery
        self._discovery: Discovery | None = None
        self._clusters = resolve_clusters(self.config)
        self._session = BusSession(self.config, self._clusters)
        self._writes = Writer(
            self.config, self.client_id, self._clusters, self._session, self.metrics
        )
        self._reads = Reader(self.config, self._session)
        self._strong = StrongWrites(
            self.config, self.client_id, self._clusters, self._writes, self._session
        )
        self._states = StateCalls(self.config, self.client_id)

    @property
    def regions(self) -> tuple[str, ...]:
        """Configured regions, in order."""
        return self.config.regions

    @property
    def clusters(self) -> Mapping[str, str]:
        """Region -> Kafka bootstrap address."""
        return dict(self._clusters)

    @property
    def session(self) -> SessionToken:
        """Everything this bus has written and read: its session token."""
        return self._session.current

    @property
    def discovery(self) -> Discovery | None:
        """The health probes of the regions, while the bus runs with discovery."""
        return self._discovery

    def _use_discovery(self, discovery: Discovery | None) -> None:
        self._discovery = self._writes.discovery = self._reads.discovery = discovery

    async def __aenter__(self) -> EdgeBus:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Connect to every region's cluster (fail only if none answers) and start
        discovery's health probes in the background."""
        # a broker restart or a rebalance is one line per episode on the user's
        # terminal, not a stream of aiokafka's retries
        log_noise.install()
        if self._discover and self._discovery is None:
            discovery = Discovery(self.config, self._reads.client)
            discovery.start()
            self._use_discovery(discovery)
        failures = await self._writes.connect()
        if failures and len(failures) == len(set(self._clusters.values())):
            # nothing answers: stop discovery and its HTTP session, as close() would
            await self.close()
            self._writes.closed = False  # the caller may start() again once Kafka is up
            first = failures[0]
            if isinstance(first, EdgebusError):
                raise first
            raise InfrastructureUnavailable(
                str(first), sorted(set(self._clusters.values()))
            ) from first

    async def close(self) -> None:
        """Flush pending writes and disconnect."""
        await self._writes.close()
        if self._discovery is not None:
            await self._discovery.close()
            self._use_discovery(None)
        await self._reads.close()
        await self._strong.close()
        await self._states.close()

    # ------------------------------------------------------------------ writes

    @overload
    async def write(
        self, key: str, data: Any, **options: Unpack[StrongWriteKeywords]
    ) -> CommitResult: ...

    @overload
    async def write(
        self, key: str, data: Any, **options: Unpack[WriteKeywords]
    ) -> WriteReceipt: ...

    async def write(
        self, key: str, data: Any, **options: Unpack[AnyWriteKeywords]
    ) -> WriteReceipt | CommitResult:
        """Append one event to its home region's topic and return Kafka's receipt.

        Options (:class:`~edgebus.sdk.options.WriteKeywords`): ``region`` (the caller's
        location_id), ``classification``, ``operation`` (set|delete|increment|append|
        merge), ``conflict_resolution`` (last_write_wins|counter|append|merge: the
        spec's parameter, which picks the operation: a counter adds, append appends,
        merge sets fields), ``consistency`` (eventual|causal), ``replication_factor``,
        ``preferred_locations``, ``exclude_locations``, ``compliance_zones``,
        ``edge_strategy``, ``session``, ``fallback_strategy``, ``min_replicas``. In
        strict mode a region the data may not live in is refused with
        ComplianceViolation; otherwise the write is rerouted to a compliant region
        (``receipt.rerouted``). ``session`` makes this write causally follow everything
        that token covers.

        ``classification`` only adds to what detection finds in ``data`` (a record
        labelled ``public`` that holds an e-mail address is placed as ``pii``). To
        write it as labelled anyway, pass ``declassify`` (a reason, or a
        :class:`~edgebus.sdk.options.Declassification` naming who): the event records
        who, when and why in its ``eb-declassified`` header (``edgebus tail`` shows it).

        ``consistency="strong"`` is :meth:`commit` (two-phase commit across the
        placement; ``expected_version`` and ``timeout_ms`` allowed) and returns its
        :class:`CommitResult` instead of a receipt.
        """
        if options and options.get("consistency") == "strong":  # commit() records itself
            rest = cast(CommitKeywords, {k: v for k, v in options.items() if k != "consistency"})
            return await self.commit(key, data, **rest)
        return await self._writes.write(key, data, options)

    def prepare_write(
        self, key: str, data: Any, **options: Unpack[WriteKeywords]
    ) -> PreparedWrite:
        """Validate, classify, place, stamp and encode a write without sending it.

        Raises every error a write can raise before touching Kafka; :meth:`write`
        is this plus the send.
        """
        checked = WriteOptions.of(options) if options else NO_WRITE_OPTIONS
        return self._writes.prepare(key, data, checked)

    def plan(self, key: str, data: Any, **options: Unpack[PlacementKeywords]) -> Placement:
        """Classify and place without writing: where would this write go?"""
        checked = WriteOptions.of(options, "plan") if options else NO_WRITE_OPTIONS
        return self._writes.plan(key, data, checked).placement

    @recorded(lambda kw: "write.strong")
    async def commit(self, key: str, data: Any, **options: Unpack[CommitKeywords]) -> CommitResult:
        """A strong write: two-phase commit across every region of its placement.

        Same options as :meth:`write` (classification, operation, placement options),
        plus ``expected_version`` (commit only if the key's version is this in every
        participant: compare-and-set; ``0`` means "does not exist yet") and
        ``timeout_ms`` (default ``strong.timeout_ms``: undecided by then, it aborts).
        The compliance filter places it first: in strict mode, data no region may hold
        is refused with ComplianceViolation before anything is logged. Returns a
        :class:`CommitResult`; a lost race is ``outcome == "conflict"``, not an
        exception. Raises StrongOutcomeUnknown when no decision arrives (no
        coordinator running).
        """
        return await self._strong.commit(key, data, options)

    # ------------------------------------------------------------------ reads

    @recorded(lambda kw: read_kind(kw.get("consistency", "eventual")))
    async def read(
        self, key: str, region: str | None = None, **options: Unpack[ReadKeywords]
    ) -> ReadResult:
        """The key's value as a region holds it, at the consistency asked.

        Served by the region's service: the one embedded in this process if any
        (``RegionService``), else the one announced on ``edgebus.<region>.service``
        (``edgebus region run``), over its HTTP query endpoint. ``region`` defaults to
        the best-ranked healthy region (``edge_strategy`` over measured latency).

        * ``eventual``: what the region has applied so far.
        * ``causal``: the region first covers this bus's session plus ``session`` (a
          token from any process): read-your-writes, monotonic reads,
          writes-follow-reads.
        * ``bounded_staleness``: the answer is provably at most
          ``staleness_threshold_ms`` old (default ``reads.staleness_threshold_ms``)
          and, with ``max_versions_behind=K``, lacks at most K writes of its partition.
        * ``strong``: linearizable (the commit log's read barrier).

        When the region is not fresh enough it waits up to ``wait_ms`` (default
        ``reads.wait_ms``), then ``fallback`` (default ``reads.fallback``): ``route``
        serves from another region that is fresh enough, ``raise`` raises
        :class:`~edgebus.errors.SessionNotCovered` /
        :class:`~edgebus.errors.StalenessBoundExceeded`. Nothing staler than asked is
        ever returned. The result carries the session token after this read.
        """
        checked = ReadOptions.of(options) if options else NO_READ_OPTIONS
        return await self._reads.read(key, region, checked)

    async def replication_status(
        self, receipt: WriteReceipt, *, wait_ms: float = 0.0
    ) -> dict[str, str]:
        """Where the write is now: region -> ``completed`` (applied there),
        ``pending`` (placed there, not applied yet), ``failed`` (its region service
        does not answer, or the region was left out because it was unhealthy).

        ``wait_ms`` waits (concurrently, per region) for each placement region to
        apply it.
        """
        return await self._reads.replication_status(receipt, wait_ms)

    # ------------------------------------------------------------------ state machines

    @recorded(lambda kw: "state")
    async def state(
        self, state_id: str, operation: str = "get", **options: Unpack[StateKeywords]
    ) -> StateResult:
        """Run ``operation`` on state machine ``state_id`` (a durable object) at its owner.

        Operations: ``get | set | update | delete | increment | append | lock |
        unlock``; ``key`` names a field (none: the whole state). ``update_fn`` is a
        function name registered at the owner (:func:`edgebus.state.register_update_fn`)
        or a callable (registered here, so it runs when this process owns the state).
        ``lock``/``unlock`` take ``lock_name`` (default ``"state"``: the state's own
        lock) and ``holder`` (default this bus's client id); a lock lasts
        ``lease_duration_ms`` (default ``state.lease_ms``) unless renewed (lock again) or
        unlocked, and waits up to ``timeout_ms`` for the lock. ``lease_duration_ms``
        (500 ms .. one hour, else InvalidInput) is also the owner's lease of the state
        from this call on: a claim this call causes asks for it, and the owner renews
        with it once the call has run (left out: the lease stays as it is). ``classification``
        is the state's class (its jurisdiction: which regions may own or copy it;
        default the configured default class). ``region`` is where the call comes from
        (default ``state.host_region`` or the first region): ownership migrates toward
        it with ``enable_migration``. ``req_id`` makes a retry safe: a request id runs at
        most once.

        Returns :class:`~edgebus.state.client.StateResult` (value, version, where it ran,
        owner epoch, forwarded, forward_ms). Raises StateOperationRefused (the owner
        refused: state unchanged), ComplianceViolation, StateOperationTimeout (no owner
        answered: no region service hosting the class is running), InvalidInput.
        """
        return await self._states.call(state_id, operation, options)

    # ------------------------------------------------------------------ repair

    async def sync(self, region: str, *, timeout_s: float = 30.0) -> RepairReport:
        """Repair ``region``: every other region's service copies into it what it may
        hold and lacks (from its frontier on, even while replication into it is
        paused), then waits up to ``timeout_s`` until ``region`` applied it, and
        compares ``region``'s checksums with each peer's.

        Returns :class:`~edgebus.sdk.repair.RepairReport`: ``ok`` when nothing placed
        in ``region`` is missing (every origin answered and the region's frontier
        reached what it copied), what each origin copied, the frontier before and
        after, and the buckets that differ per peer (exact only for keys placed in
        both regions). Needs the admin token when tokens are configured. See
        :func:`edgebus.sdk.repair.repair_region`.
        """
        return await repair_region(
            self.config, region, timeout_s=timeout_s, client=self._reads.client
        )

