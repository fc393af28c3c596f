"""The node types DataFlow generates for a model: Create, Read, Update, Delete, List.

:func:`node_class` builds ``<Model><Operation>Node`` (an :class:`EdgeNode`) with its
params class (:func:`params_class`); :class:`DataFlow
<edgebus.workflow.dataflow.DataFlow>` registers them. The nodes read and write the
model's records through the injected infrastructure's bus; a record whose model has a
``region`` field is placed as its :class:`Router` (the DataFlow) says.

DataFlow nodes run only with ``"dataflow_integration": True`` in the edge_config
(the spec's "Enable DataFlow hooks"): :func:`dataflow_integration_problem` is the
check ``WorkflowBuilder.build()`` (when the builder has an edge_config) and
``LocalRuntime`` (when a run starts) make, so a workflow of DataFlow nodes with the
setting off fails before any node runs.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, Literal, Protocol
from urllib.parse import quote

from pydantic import Field, create_model, model_validator

from edgebus.config import EdgeConfig
from edgebus.errors import EdgebusError, InvalidInput
from edgebus.sdk import EdgeBus, ReadResult
from edgebus.workflow.dataflow_model import DATAFLOW_MODULE, REGION_FIELD, ModelInfo
from edgebus.workflow.node import EdgeNode, NodeParams

__all__ = [
    "LIST_PAGE",
    "Router",
    "dataflow_integration_problem",
    "is_dataflow_node",
    "node_class",
    "params_class",
    "scan_keys",
]

#: rows asked per page of a region's key listing
LIST_PAGE = 500

WriteConsistency = Literal["eventual", "causal"]
ReadConsistency = Literal["eventual", "causal"]


class Router(Protocol):
    """What the nodes ask where a record goes (a :class:`DataFlow` is one)."""

    def routing(self, region: Any, config: EdgeConfig) -> dict[str, Any]:
        """The write options a record's ``region`` value asks for."""
        ...


class NodeSpec(Protocol):
    """What the DataFlow check reads of a workflow's node (a ``WorkflowNode``)."""

    @property
    def node_id(self) -> str: ...

    @property
    def type_name(self) -> str: ...

    @property
    def node_class(self) -> type[Any]: ...


def is_dataflow_node(cls: object) -> bool:
    """Whether ``cls`` is a node type a :class:`DataFlow <edgebus.workflow.dataflow.DataFlow>`
    generated (``<Model><Operation>Node``)."""
    return isinstance(cls, type) and issubclass(cls, _ModelNode)


def dataflow_integration_problem(config: EdgeConfig, nodes: Iterable[NodeSpec]) -> str | None:
    """Why a workflow of ``nodes`` cannot run with ``config``: it holds DataFlow nodes
    and ``dataflow_integration`` is off (None: it can)."""
    if config.dataflow_integration:
        return None
    found = [f"{n.node_id!r} ({n.type_name})" for n in nodes if is_dataflow_node(n.node_class)]
    if not found:
        return None
    return (
        f"DataFlow node{'s' if len(found) > 1 else ''} {', '.join(found)} need DataFlow "
        'integration, which this edge_config leaves off: set "dataflow_integration": True '
        "in the edge_config (given to WorkflowBuilder(edge_config) or "
        "LocalRuntime(edge_config)) to run DataFlow nodes."
    )


# ------------------------------------------------------------------------------ params


class _ModelParams(NodeParams):
    """Params every generated node shares (``model``, ``location_id``)."""

    dataflow_model: ClassVar[str] = ""
    dataflow_pk: ClassVar[str] = ""

    model: str | None = None
    location_id: str | None = Field(None, min_length=1)
    session: str | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _model_matches(self) -> _ModelParams:
        expected = type(self).dataflow_model
        if self.model is not None and self.model != expected:
            raise ValueError(
                f"'model' is {self.model!r}, but this node type is for model "
                f"{expected!r}: use {self.model}<Operation>Node, or leave 'model' out"
            )
        pk = type(self).dataflow_pk
        given = getattr(self, "id", None), getattr(self, pk, None)
        if pk != "id" and None not in given and str(given[0]) != str(given[1]):
            raise ValueError(f"'id' ({given[0]!r}) and {pk!r} ({given[1]!r}) differ")
        return self


def params_class(info: ModelInfo, op: str) -> type[NodeParams]:
    """The params of ``<Model><op>Node``."""
    fields: dict[str, Any] = {}
    if op in ("Create", "Update"):
        fields["data"] = (dict[str, Any] | None, None)
        fields["consistency"] = (WriteConsistency, "eventual")
    else:
        fields["consistency"] = (ReadConsistency, "causal")
    if op in ("Read", "Update", "Delete"):
        fields["id"] = (str | int | None, None)
        if info.primary_key != "id":
            fields[info.primary_key] = (str | int | None, None)
    if op == "List":
        fields["limit"] = (int, Field(100, ge=1, le=10_000))
    params: type[_ModelParams] = create_model(
        f"{info.name}{op}Params", __base__=_ModelParams, __module__=DATAFLOW_MODULE, **fields
    )
    params.dataflow_model = info.name
    params.dataflow_pk = info.primary_key
    return params


def node_class(dataflow: Router, info: ModelInfo, op: str) -> type[EdgeNode]:
    """The node type ``<Model><op>Node`` of ``info`` (not registered yet)."""
    runner: Callable[..., Any] = {
        "Create": _ModelNode.create,
        "Read": _ModelNode.read,
        "Update": _ModelNode.update,
        "Delete": _ModelNode.delete,
        "List": _ModelNode.list,
    }[op]
    name = info.node_types[op]
    cls = type(
        name,
        (_ModelNode,),
        {
            "Params": params_class(info, op),
            "dataflow": dataflow,
            "model_info": info,
            "operation": op,
            "runner": staticmethod(runner),
            "__doc__": f"{op} {info.name} records on the edge bus (DataFlow).",
            "__module__": DATAFLOW_MODULE,
        },
    )
    return cls


# ------------------------------------------------------------------------------ nodes


class _ModelNode(EdgeNode):
    """Base of the generated DataFlow nodes."""

    inputs: ClassVar[tuple[str, ...]] = ("input", "session_token")
    outputs: ClassVar[tuple[str, ...]] = ("result", "session_token")
    dataflow: ClassVar[Router]
    model_info: ClassVar[ModelInfo]
    operation: ClassVar[str]
    runner: ClassVar[Callable[..., Any]]

    def _param(self, name: str, default: Any = None) -> Any:
        return getattr(self.params, name, default)

    @property
    def bus(self) -> EdgeBus:
        bus: EdgeBus = self.infrastructure.bus
        return bus

    async def async_run(
        self, input: Any = None, session_token: str | None = None, **_: Any
    ) -> Mapping[str, Any]:
        session = session_token or self._param("session")
        result: Mapping[str, Any] = await type(self).runner(self, input, session)
        return result

    # ------------------------------------------------------------------ helpers

    def _pk(self, input: Any) -> str:
        info = self.model_info
        for name in ("id", info.primary_key):
            value = self._param(name)
            if value is not None:
                return str(value)
        if isinstance(input, str | int) and not isinstance(input, bool) and input != "":
            return str(input)
        if isinstance(input, Mapping):
            record = input.get("record")
            if isinstance(record, Mapping) and record.get(info.primary_key) is not None:
                return str(record[info.primary_key])
            for name in (info.primary_key, "id"):
                if input.get(name) is not None:
                    return str(input[name])
            key = input.get("key")
            if isinstance(key, str) and key.startswith(info.prefix):
                return key[len(info.prefix) :]
        raise InvalidInput(
            f"{type(self).__name__} {self.node_id!r} has no {info.name} id: set the 'id' "
            f"(or {info.primary_key!r}) param, or connect an id, a record or a DataFlow "
            "result to its 'input'"
        )

    def _has_id(self) -> bool:
        return self._param("id") is not None or self._param(self.model_info.primary_key) is not None

    def _regions(self) -> tuple[str, ...]:
        location = self._param("location_id")
        return (location,) if location is not None else tuple(self.infrastructure.config.regions)

    def _write_options(self, record: Mapping[str, Any], session: str | None) -> dict[str, Any]:
        options: dict[str, Any] = {"consistency": self._param("consistency", "eventual")}
        location = self._param("location_id")
        if location is not None:
            options["region"] = location
        if self.model_info.routed:
            options.update(
                self.dataflow.routing(record.get(REGION_FIELD), self.infrastructure.config)
            )
        if session is not None:
            options["session"] = session
        return options

    async def _locate(self, key: str, session: str | None) -> ReadResult | None:
        """The newest state of ``key`` over the regions read (None: none answered
        with it; a deleted record is a state whose ``exists`` is false)."""
        best: ReadResult | None = None
        failures: list[str] = []
        regions = self._regions()
        for region in regions:
            try:
                found = await self.bus.read(
                    key,
                    region,
                    consistency=self._param("consistency", "causal"),
                    session=session,
                )
            except EdgebusError as e:
                if len(regions) == 1:
                    raise
                failures.append(f"{region}: {e}")
                continue
            if found.version and (best is None or _newer(found, best)):
                best = found
        if len(failures) == len(regions):
            raise InvalidInput(
                f"{type(self).__name__} {self.node_id!r}: no region answered for {key!r}: "
                + "; ".join(failures)
            )
        return best

    async def _write(
        self, key: str, data: Any, options: dict[str, Any], **shown: Any
    ) -> Mapping[str, Any]:
        """Write ``data`` under ``key``; the operation's output: its result (``shown``,
        then the key, where the write was placed and the session token after it)."""
        receipt = await self.bus.write(key, data, **options)
        token = receipt.session_token
        result = {
            "success": True,
            **shown,
            "key": key,
            "placement": list(receipt.placement),
            "session_token": token,
        }
        return {"result": result, "session_token": token}

    # ------------------------------------------------------------------ operations

    async def create(self, input: Any, session: str | None) -> Mapping[str, Any]:
        info = self.model_info
        data = self._param("data") if input is None else input
        if data is None:
            raise InvalidInput(
                f"{type(self).__name__} {self.node_id!r} has no data: set the 'data' param "
                f"or connect a {info.name} record to its 'input'"
            )
        record = info.validate(data)
        key = info.key(record[info.primary_key])
        return await self._write(key, record, self._write_options(record, session), record=record)

    async def read(self, input: Any, session: str | None) -> Mapping[str, Any]:
        key = self.model_info.key(self._pk(input))
        found = await self._locate(key, session)
        exists = found is not None and found.exists
        result: dict[str, Any] = {
            "success": True,
            "found": exists,
            "key": key,
            "record": found.value if exists and found is not None else None,
            "version": found.version if found is not None else 0,
            "region": found.region if found is not None else None,
        }
        token = found.session_token if found is not None else None
        return {"result": result, "session_token": token or session}

    async def update(self, input: Any, session: str | None) -> Mapping[str, Any]:
        info = self.model_info
        changes, pk = self._changes(input)
        key = info.key(pk)
        found = await self._locate(key, session)
        if found is None or not found.exists:
            missing: dict[str, Any] = {
                "success": False,
                "found": False,
                "record": None,
                "key": key,
                "placement": [],
                "session_token": session,
            }
            return {"result": missing, "session_token": session}
        current = dict(found.value)
        record = info.validate({**current, **changes})
        if info.routed and record.get(REGION_FIELD) != current.get(REGION_FIELD):
            raise InvalidInput(
                f"{info.name} {pk!r}: an update cannot move the record from region "
                f"{current.get(REGION_FIELD)!r} to {record.get(REGION_FIELD)!r}: delete it "
                "and create it again"
            )
        token_in = found.session_token or session
        return await self._write(key, record, self._write_options(record, token_in), found=True,
                                 record=record)

    def _changes(self, input: Any) -> tuple[Mapping[str, Any], str]:
        """An update's fields to set (the 'data' param, else a mapping ``input``) and
        the primary key of the record it changes."""
        info = self.model_info
        changes = self._param("data")
        if changes is None and isinstance(input, Mapping):
            changes = input
            input = None
        if not isinstance(changes, Mapping) or not changes:
            raise InvalidInput(
                f"{type(self).__name__} {self.node_id!r} has no fields to change: set the "
                "'data' param (the fields to set) or connect them to its 'input'"
            )
        if self._has_id() or changes.get(info.primary_key) is None:
            pk = self._pk(input)
        else:
            pk = str(changes[info.primary_key])
        if info.primary_key in changes and str(changes[info.primary_key]) != pk:
            raise InvalidInput(
                f"{info.name} {pk!r}: an update cannot change the primary key "
                f"{info.primary_key!r} (to {changes[info.primary_key]!r}): create a new record"
            )
        return changes, pk

    async def delete(self, input: Any, session: str | None) -> Mapping[str, Any]:
        key = self.model_info.key(self._pk(input))
        found = await self._locate(key, session)
        if found is None or not found.exists:
            return {
                "result": {"success": False, "found": False, "key": key},
                "session_token": session,
            }
        options = self._write_options(found.value, found.session_token or session)
        return await self._write(key, None, {**options, "operation": "delete"}, found=True)

    async def list(self, input: Any, session: str | None) -> Mapping[str, Any]:
        limit = int(self._param("limit", 100))
        newest, answered = await self._list_regions(limit, session)
        records = [newest[k]["value"] for k in sorted(newest) if newest[k]["exists"]][:limit]
        result: dict[str, Any] = {
            "success": True,
            "records": records,
            "count": len(records),
            "regions": answered,
        }
        return {"result": result, "session_token": session}

    async def _list_regions(
        self, limit: int, session: str | None
    ) -> tuple[dict[str, dict[str, Any]], builtins.list[str]]:
        """The newest row of each of the model's keys over the regions read, and the
        regions that answered (InvalidInput when none did). (``list`` in this class is
        the List operation.)"""
        from edgebus.sdk.region_client import RegionClient

        info = self.model_info
        regions = self._regions()
        newest: dict[str, dict[str, Any]] = {}
        answered: list[str] = []
        failures: list[str] = []
        client = RegionClient(
            self.infrastructure.config, self.infrastructure.config.kafka.connect_timeout_s
        )
        try:
            for region in regions:
                try:
                    if self._param("consistency") == "causal":
                        # the region first catches up with this process's session
                        await self.bus.read(
                            info.prefix,
                            region,
                            consistency="causal",
                            session=session,
                            fallback="raise",
                        )
                    rows = await scan_keys(client, region, info.prefix, limit)
                except EdgebusError as e:
                    if len(regions) == 1:
                        raise
                    failures.append(f"{region}: {e}")
                    continue
                answered.append(region)
                _keep_newest(newest, rows)
        finally:
            await client.close()
        if not answered:
            raise InvalidInput(
                f"{type(self).__name__} {self.node_id!r}: no region answered: "
                + "; ".join(failures)
            )
        return newest, answered


def _newer(a: ReadResult, b: ReadResult) -> bool:
    return (a.hlc or (0, 0)) > (b.hlc or (0, 0))


def _hlc(row: Mapping[str, Any]) -> tuple[int, int]:
    hlc = row.get("hlc") or {}
    return int(hlc.get("wall_ms", 0)), int(hlc.get("logical", 0))


def _keep_newest(newest: dict[str, dict[str, Any]], rows: list[dict[str, Any]]) -> None:
    """Fold a region's rows into ``newest`` (key -> the row with the highest HLC)."""
    for row in rows:
        kept = newest.get(row["key"])
        if kept is None or _hlc(row) > _hlc(kept):
            newest[row["key"]] = row


async def scan_keys(client: Any, region: str, prefix: str, limit: int) -> list[dict[str, Any]]:
    """Rows of ``region`` whose key starts with ``prefix`` (live ones up to ``limit``;
    deleted ones too, so a newer delete hides an older copy elsewhere)."""
    rows: list[dict[str, Any]] = []
    live = 0
    start: str | None = prefix
    while start is not None and live < limit:
        page = await client.get(region, f"/v1/keys?start={quote(start, safe='')}&limit={LIST_PAGE}")
        for row in page.get("rows", []):
            if not str(row["key"]).startswith(prefix):
                return rows
            rows.append(row)
            live += bool(row["exists"])
        start = page.get("next")
    return rows
