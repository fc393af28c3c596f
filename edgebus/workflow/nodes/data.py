"""``EdgeDataNode``: write, read, replicate or sync one key of the edge data layer.

The node runs one :class:`~edgebus.sdk.EdgeBus` operation on the runtime's shared
edge infrastructure (see docs/nodes.md):

* ``write``: ``bus.write`` (``consistency="strong"``: a two-phase commit across the
  placement); the data is the ``data`` param, with the classes of a connected
  ``input`` (an upstream result's ``classification``) added to its own; without
  ``data``, the connected ``input`` is the data. Neither silently replaces the other.
* ``read``: ``bus.read`` from ``location_id`` at ``consistency``, asking
  ``preferred_locations`` first and ranking the rest by ``edge_strategy``, never
  ``exclude_locations``.
* ``replicate``: a write, then waits (up to ``timeout_ms``) until every region of its
  placement applied it (``bus.replication_status``).
* ``sync``: really synchronizes the node's region (``location_id``, else the config's
  first region): ``bus.sync`` makes every other region's service copy into it what it
  may hold and lacks (even while replication into it is paused) and waits, up to
  ``timeout_ms`` (default :data:`DEFAULT_SYNC_TIMEOUT_MS`), until it applied the copies
  (:mod:`edgebus.sdk.repair`); then a causal read of the key there (covering this
  infrastructure's session and ``session``). The result is the read's, plus ``"sync"``:
  the repair report (what each origin copied, the frontier before and after, checksums
  compared with each peer); ``"success"`` is the report's ``ok`` (nothing placed in the
  region is missing).

The key: the ``key`` param; else, for read and sync, the ``input`` when it is a
string, or the ``"key"`` of a mapping input (an upstream EdgeDataNode's result);
else the node id. Outputs: ``result`` (a dict with ``"success"``) and
``session_token`` (pass it to later reads for read-your-writes, in any process).

A strong write with ``compensate: true`` first reads the key strongly, then
commits with ``expected_version`` = the version read (compare-and-set, retried up to
:data:`STRONG_WRITE_ATTEMPTS` times when another writer gets in between), so its
result's ``"compensation"`` record holds exactly the state it replaced. When a later
node of the workflow fails, the runtime calls :meth:`EdgeDataNode.compensate` to
restore it (see :mod:`edgebus.workflow.compensation`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator

from edgebus.sdk import CommitResult, EdgeBus
from edgebus.workflow.compensation import (
    Compensation,
    failed,
    outcome_of,
    step_record,
    undo_of,
)
from edgebus.workflow.node import EdgeNode, NodeParams
from edgebus.workflow.registry import register_node

__all__ = [
    "DEFAULT_REPLICATION_WAIT_MS",
    "DEFAULT_SYNC_TIMEOUT_MS",
    "STRONG_WRITE_ATTEMPTS",
    "EdgeDataNode",
    "EdgeDataParams",
]

#: how long ``replicate`` waits for the placement regions when no timeout_ms is given
DEFAULT_REPLICATION_WAIT_MS = 10_000
#: how long ``sync`` waits for the origins' copies and their application, by default
DEFAULT_SYNC_TIMEOUT_MS = 30_000
#: a compensable strong write: read + compare-and-set attempts before it reports the
#: conflict (``outcome == "conflict"``, ``success`` false)
STRONG_WRITE_ATTEMPTS = 3

Action = Literal["write", "read", "replicate", "sync"]
Consistency = Literal["strong", "eventual", "causal", "bounded_staleness"]
ConflictResolution = Literal["last_write_wins", "counter", "append", "merge"]
Strategy = Literal["lowest_latency", "balanced", "compliance_first"]
Fallback = Literal["none", "any_available"]


class EdgeDataParams(NodeParams):
    """The parameters of an EdgeDataNode (checked when the workflow is built)."""

    action: Action = "write"
    #: the key (default: see the module doc)
    key: str | None = Field(None, min_length=1)
    #: what a write stores when no ``input`` is connected
    data: Any = None
    #: the region the node runs at: a write's home, the region a read asks
    location_id: str | None = Field(None, min_length=1)
    consistency: Consistency = "eventual"
    replication_factor: int | None = Field(None, ge=1)
    #: how concurrent writes combine: last_write_wins replaces the value, counter adds
    #: a number, append adds to a list, merge sets the given fields of an object
    conflict_resolution: ConflictResolution = "last_write_wins"
    #: bounded_staleness reads: the answer is at most this old (default: the config's)
    staleness_threshold_ms: float | None = Field(None, gt=0)
    edge_strategy: Strategy | None = None
    preferred_locations: list[str] = Field(default_factory=list)
    exclude_locations: list[str] = Field(default_factory=list)
    compliance_zones: list[str] = Field(default_factory=list)
    fallback_strategy: Fallback | None = None
    min_replicas: int | None = Field(None, ge=1)
    classification: str | list[str] | None = None
    #: a session token (from an earlier result) this operation follows
    session: str | None = Field(None, min_length=1)
    #: strong writes: the commit deadline (default strong.timeout_ms); replicate: how
    #: long to wait for the placement regions (default 10 000); sync: how long the
    #: repair waits (default 30 000)
    timeout_ms: int | None = Field(None, gt=0)
    #: strong writes: read the prior state first (one strong read) and commit as a
    #: compare-and-set on it, so the runtime can undo the write when a later node
    #: fails. Default (None): on for strong writes; false: a plain commit, nothing to
    #: undo
    compensate: bool | None = None

    @field_validator("consistency")
    @classmethod
    def _consistency_fits_action(cls, value: str, info: ValidationInfo) -> str:
        action = info.data.get("action", "write")
        if action in ("write", "replicate") and value == "bounded_staleness":
            raise ValueError(
                f"'bounded_staleness' is a read level, not for action {action!r}: use "
                "eventual, causal or strong, or action 'read'"
            )
        if action == "replicate" and value == "strong":
            raise ValueError(
                "action 'replicate' waits for asynchronous replication; a strong write is "
                "applied in every placement region once committed: use action 'write'"
            )
        if action == "sync" and value not in ("eventual", "causal"):
            raise ValueError(
                f"action 'sync' is a causal read; consistency {value!r} does not apply: "
                "leave it out, or use action 'read'"
            )
        return value

    @field_validator("compensate")
    @classmethod
    def _compensate_needs_strong_write(
        cls, value: bool | None, info: ValidationInfo
    ) -> bool | None:
        if value and (info.data.get("action", "write") != "write"
                      or info.data.get("consistency") != "strong"):
            raise ValueError(
                "compensate applies to strong writes only (action 'write', consistency "
                "'strong'): other operations leave nothing the runtime could undo"
            )
        return value

    @field_validator("staleness_threshold_ms")
    @classmethod
    def _staleness_needs_bounded(cls, value: float | None, info: ValidationInfo) -> float | None:
        consistency = info.data.get("consistency")
        if value is not None and consistency is not None and consistency != "bounded_staleness":
            raise ValueError(
                "staleness_threshold_ms applies to consistency 'bounded_staleness' only "
                f"(this node's consistency is {consistency!r})"
            )
        return value


@register_node("EdgeDataNode")
class EdgeDataNode(EdgeNode):
    """Distributed data storage with consistency guarantees (see the module doc)."""

    Params: ClassVar[type[NodeParams]] = EdgeDataParams
    inputs: ClassVar[tuple[str, ...]] = ("input", "session_token")
    outputs: ClassVar[tuple[str, ...]] = ("result", "session_token")

    @property
    def data_params(self) -> EdgeDataParams:
        """The node's params, typed."""
        assert isinstance(self.params, EdgeDataParams)
        return self.params

    async def async_run(
        self, input: Any = None, session_token: str | None = None, **_: Any
    ) -> Mapping[str, Any]:
        p = self.data_params
        bus: EdgeBus = self.infrastructure.bus
        session = session_token or p.session
        if p.action in ("write", "replicate"):
            # its own data, with what a connected input was classified as; without
            # data, the connected input itself (docs/nodes.md, "Inputs")
            upstream: tuple[str, ...] = ()
            if p.data is not None:
                data, upstream = p.data, _classes_of(input)
            else:
                data = input
            if data is None:
                # the spec's own examples write without data: record that the key
                # exists (a new version) with an empty object
                data = {}
            return await self._write(bus, self._key(None), data, session, upstream)
        if p.action == "sync":
            return await self._sync(bus, self._key(input), session)
        return await self._read(bus, self._key(input), session, p.location_id)

    def _key(self, input: Any) -> str:
        p = self.data_params
        if p.key is not None:
            return p.key
        if isinstance(input, str) and input:
            return input
        if isinstance(input, Mapping) and isinstance(input.get("key"), str) and input["key"]:
            return str(input["key"])
        return self.node_id

    def _write_options(
        self, session: str | None, upstream: tuple[str, ...] = ()
    ) -> dict[str, Any]:
        """The write's options; ``upstream``: classes of a connected input, added to
        the node's own ``classification`` (a label only adds to what detection finds)."""
        p = self.data_params
        options: dict[str, Any] = {
            "consistency": p.consistency,
            "conflict_resolution": p.conflict_resolution,
            "preferred_locations": tuple(p.preferred_locations),
            "exclude_locations": tuple(p.exclude_locations),
            "compliance_zones": tuple(p.compliance_zones),
        }
        for name, value in (
            ("region", p.location_id),
            ("classification", p.classification),
            ("replication_factor", p.replication_factor),
            ("edge_strategy", p.edge_strategy),
            ("fallback_strategy", p.fallback_strategy),
            ("min_replicas", p.min_replicas),
            ("session", session),
        ):
            if value is not None:
                options[name] = value
        if p.consistency == "strong" and p.timeout_ms is not None:
            options["timeout_ms"] = p.timeout_ms
        if upstream:
            own = p.classification
            mine = [own] if isinstance(own, str) else list(own or ())
            options["classification"] = sorted({*mine, *upstream})
        return options

    async def _write(
        self, bus: EdgeBus, key: str, data: Any, session: str | None,
        upstream: tuple[str, ...] = (),
    ) -> Mapping[str, Any]:
        p = self.data_params
        options = self._write_options(session, upstream)
        if p.consistency == "strong":
            options.pop("consistency")
            if p.compensate is False:
                commit = await bus.commit(key, data, **options)
                result = commit.to_dict()
                result["success"] = commit.committed
                return {"result": result, "session_token": commit.session_token}
            return await self._strong_write(bus, key, data, options)
        receipt = await bus.write(key, data, **options)
        result = receipt.to_dict()
        result["success"] = True
        if p.action == "replicate":
            wait = DEFAULT_REPLICATION_WAIT_MS if p.timeout_ms is None else p.timeout_ms
            status = await bus.replication_status(receipt, wait_ms=wait)
            result["replication"] = status
            result["success"] = all(s == "completed" for s in status.values())
        return {"result": result, "session_token": receipt.session_token}

    async def _strong_write(
        self, bus: EdgeBus, key: str, data: Any, options: dict[str, Any]
    ) -> Mapping[str, Any]:
        """Strong read of the prior state, then a compare-and-set commit on it."""
        p = self.data_params
        for _ in range(STRONG_WRITE_ATTEMPTS):
            before = await bus.read(
                key, p.location_id, consistency="strong",
                exclude_locations=tuple(p.exclude_locations),
            )
            commit = await bus.commit(key, data, expected_version=before.version, **options)
            if commit.conflict is None:
                break
        result = commit.to_dict()
        result["success"] = commit.committed
        if commit.committed and commit.version is not None:
            record = step_record(key, commit.version, before.exists, before.value,
                                 before.version)
            record["placement"] = list(commit.placement)
            record["classification"] = list(commit.classification)
            result["compensation"] = record
        return {"result": result, "session_token": commit.session_token}

    async def compensate(self, output: Mapping[str, Any]) -> Compensation | None:
        """Undo this node's committed strong write (its ``output`` in the run), or None
        when it has nothing to undo. Never raises: a failed undo is ``failed``."""
        result = output.get("result")
        record = result.get("compensation") if isinstance(result, Mapping) else None
        if not isinstance(record, Mapping):
            return None
        undo = undo_of(record)
        placement = [str(r) for r in record.get("placement") or ()]
        try:
            bus: EdgeBus = self.infrastructure.bus
            options: dict[str, Any] = {
                "operation": undo.operation,
                "compliance_zones": tuple(self.data_params.compliance_zones),
            }
            if placement:  # the same regions as the step, home first
                options["region"] = placement[0]
                options["preferred_locations"] = tuple(placement)
                options["replication_factor"] = len(placement)
                options["exclude_locations"] = tuple(
                    r for r in bus.regions if r not in placement)
            if record.get("classification"):
                options["classification"] = list(record["classification"])
            if self.data_params.timeout_ms is not None:
                options["timeout_ms"] = self.data_params.timeout_ms
            commit: CommitResult = await bus.commit(
                undo.key, undo.data, expected_version=undo.expected_version, **options
            )
        except Exception as e:
            return failed(self.node_id, undo, e)
        return outcome_of(self.node_id, undo, commit)

    async def _sync(self, bus: EdgeBus, key: str, session: str | None) -> Mapping[str, Any]:
        """Repair the node's region (``bus.sync``), then read ``key`` there causally."""
        p = self.data_params
        region = p.location_id or self.infrastructure.config.regions[0]
        timeout_ms = DEFAULT_SYNC_TIMEOUT_MS if p.timeout_ms is None else p.timeout_ms
        report = await bus.sync(region, timeout_s=timeout_ms / 1000)
        out = await self._read(bus, key, session, region)
        result = dict(out["result"])
        result["sync"] = report.to_dict()
        result["success"] = bool(report.ok)
        return {**out, "result": result}

    async def _read(
        self, bus: EdgeBus, key: str, session: str | None, region: str | None
    ) -> Mapping[str, Any]:
        p = self.data_params
        consistency = "causal" if p.action == "sync" else p.consistency
        read = await bus.read(
            key,
            region,
            consistency=consistency,
            session=session,
            staleness_threshold_ms=p.staleness_threshold_ms,
            exclude_locations=tuple(p.exclude_locations),
            preferred_locations=tuple(p.preferred_locations),
            edge_strategy=p.edge_strategy,
        )
        result = read.to_dict()
        result["success"] = True
        return {"result": result, "session_token": read.session_token}


def _classes_of(input: Any) -> tuple[str, ...]:
    """The classes an upstream result says its data has (its ``classification``),
    without ``public``; nothing for any other input."""
    if not isinstance(input, Mapping):
        return ()
    found = input.get("classification")
    names = [found] if isinstance(found, str) else found
    if not isinstance(names, list | tuple):
        return ()
    return tuple(sorted({n for n in names if isinstance(n, str) and n and n != "public"}))
