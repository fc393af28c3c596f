"""DataFlow: models whose records live on the edge bus, with generated CRUD nodes.

The spec's "Integration with DataFlow" (see docs/nodes.md, section DataFlow)::

    from edgebus.dataflow import DataFlow

    db = DataFlow()

    @db.model
    class UserProfile:
        user_id: str
        region: str
        preferences: dict

    workflow.add_node("UserProfileCreateNode", "create_user", {
        "model": "UserProfile",
        "data": {"user_id": "123", "region": "eu"},   # placed in the GDPR zone only
    })

``@db.model`` builds a pydantic model from the class's annotations (records are
validated against it), finds the primary key, and registers five edge node types:
``<Model>CreateNode``, ``ReadNode``, ``UpdateNode``, ``DeleteNode``, ``ListNode``.
A record is one edgebus key, ``<Model>:<primary key>``; its value is the record as
JSON. A model field named ``region`` routes the record's placement
(:meth:`DataFlow.routing`).
"""

from __future__ import annotations

import re
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator

from edgebus.config import EdgeConfig, load_config
from edgebus.errors import EdgebusError, InvalidInput
from edgebus.sdk import EdgeBus, ReadResult
from edgebus.workflow.node import EdgeNode, NodeParams
from edgebus.workflow.registry import register_node

__all__ = [
    "DEFAULT_REGION_ALIASES",
    "OPERATIONS",
    "DataFlow",
    "ModelInfo",
]

C = TypeVar("C", bound=type)

#: the generated node types, in this order: ``<Model><Operation>Node``
OPERATIONS: tuple[str, ...] = ("Create", "Read", "Update", "Delete", "List")

#: region alias -> compliance zone: a record whose ``region`` is the alias is placed
#: in that zone's regions only
DEFAULT_REGION_ALIASES: Mapping[str, str] = {"eu": "gdpr"}

#: the field that routes a record's placement
REGION_FIELD = "region"

#: rows asked per page of a region's key listing
LIST_PAGE = 500

WriteConsistency = Literal["eventual", "causal"]
ReadConsistency = Literal["eventual", "causal"]

_CONTAINERS = (dict, list, set, frozenset, tuple)


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


@dataclass(frozen=True)
class ModelInfo:
    """One registered model: its name, record schema, primary key and node types."""

    name: str
    cls: type
    schema: type[BaseModel]
    primary_key: str
    fields: tuple[str, ...]

    @property
    def routed(self) -> bool:
        """Whether a ``region`` field routes the records' placement."""
        return REGION_FIELD in self.fields

    @property
    def node_types(self) -> dict[str, str]:
        """Operation -> registered node type name."""
        return {op: f"{self.name}{op}Node" for op in OPERATIONS}

    def key(self, pk: Any) -> str:
        """The edgebus key of the record whose primary key is ``pk``."""
        return f"{self.name}:{pk}"

    @property
    def prefix(self) -> str:
        """The key prefix of every record of the model."""
        return f"{self.name}:"

    def validate(self, data: Any) -> dict[str, Any]:
        """The record as JSON-ready dict; InvalidInput naming the model and field."""
        if isinstance(data, BaseModel):
            data = data.model_dump()
        if not isinstance(data, Mapping):
            raise InvalidInput(
                f"{self.name} record must be an object of fields "
                f"({', '.join(self.fields)}), got {type(data).__name__}"
            )
        try:
            record = self.schema.model_validate(dict(data))
        except ValidationError as e:
            problems = "; ".join(
                f"field {'.'.join(map(str, err['loc'])) or '?'!r}: {err['msg']}"
                for err in e.errors()
            )
            raise InvalidInput(
                f"{self.name} record refused, nothing written: {problems}. Fields: "
                f"{', '.join(self.fields)}."
            ) from None
        return dict(record.model_dump(mode="json"))


def _primary_key(name: str, fields: Sequence[str], declared: Any) -> str:
    if declared is not None:
        if declared not in fields:
            raise TypeError(
                f"@db.model {name}: __primary_key__ = {declared!r} is not one of its "
                f"annotated fields ({', '.join(fields)})"
            )
        return str(declared)
    if "id" in fields:
        return "id"
    snake = _snake(name)
    for field in fields:
        if not field.endswith("_id"):
            continue
        stem = field[: -len("_id")]
        if stem and (snake == stem or snake.startswith(stem + "_")):
            return field
    raise TypeError(
        f"@db.model {name} has no primary key: name a field 'id' or '<{snake}>_id' (or a "
        f"leading part of it, e.g. '{snake.split('_')[0]}_id'), or set __primary_key__ = "
        f"'<field>' (fields: {', '.join(fields) or 'none'})"
    )


class DataFlow:
    """Models stored on the edge bus; ``@db.model`` registers their CRUD nodes.

    ``edge_config``: what :meth:`runtime` runs with (anything
    :func:`~edgebus.config.load_config` takes; None: zero-config). The nodes always
    use the infrastructure the runtime injects. ``region_aliases`` adds to (or
    overrides) :data:`DEFAULT_REGION_ALIASES` (alias -> compliance zone).
    """

    def __init__(
        self,
        edge_config: EdgeConfig | Mapping[str, Any] | str | Path | None = None,
        *,
        region_aliases: Mapping[str, str] | None = None,
    ) -> None:
        self.edge_config: EdgeConfig = load_config(edge_config)
        self.region_aliases: dict[str, str] = {
            **DEFAULT_REGION_ALIASES,
            **{k.lower(): v for k, v in (region_aliases or {}).items()},
        }
        self.models: dict[str, ModelInfo] = {}

    def runtime(self) -> Any:
        """A :class:`~edgebus.workflow.LocalRuntime` for this DataFlow's edge_config."""
        from edgebus.workflow.runtime import LocalRuntime

        return LocalRuntime(self.edge_config)

    def model(self, cls: C) -> C:
        """Class decorator: register ``cls`` (an annotated class) as a model.

        Every annotated field is required unless the class gives it a default; a
        container field (dict, list, set, tuple) without a default defaults to empty.
        Raises TypeError when the class has no fields or no primary key, and
        ValueError when its node type names are taken by other classes.
        """
        if not isinstance(cls, type):
            raise TypeError(f"@db.model decorates a class, not {cls!r}")
        name = cls.__name__
        hints = typing.get_type_hints(cls)
        fields = tuple(f for f in hints if not f.startswith("_"))
        if not fields:
            raise TypeError(
                f"@db.model {name} has no annotated fields: declare them as "
                "`field: type` lines in the class body"
            )
        pk = _primary_key(name, fields, getattr(cls, "__primary_key__", None))
        definitions: dict[str, Any] = {}
        for field in fields:
            annotation = hints[field]
            if field in cls.__dict__ and field != pk:
                definitions[field] = (annotation, cls.__dict__[field])
            elif field != pk and (typing.get_origin(annotation) or annotation) in _CONTAINERS:
                origin = typing.get_origin(annotation) or annotation
                definitions[field] = (annotation, Field(default_factory=origin))
            else:
                definitions[field] = (annotation, ...)
        schema: type[BaseModel] = create_model(
            name, __config__=ConfigDict(extra="forbid"), **definitions
        )
        info = ModelInfo(name, cls, schema, pk, fields)
        for op in OPERATIONS:
            register_node(info.node_types[op])(_node_class(self, info, op))
        self.models[name] = info
        cls.__dataflow__ = info  # type: ignore[attr-defined]
        return cls

    def info(self, model: str | type) -> ModelInfo:
        """The registered model named ``model`` (or that class)."""
        name = model if isinstance(model, str) else model.__name__
        found = self.models.get(name)
        if found is None:
            raise InvalidInput(
                f"No DataFlow model {name!r}: models are {', '.join(self.models) or 'none'}"
            )
        return found

    def routing(self, region: Any, config: EdgeConfig) -> dict[str, Any]:
        """The write options a record's ``region`` value asks for.

        A configured region name -> ``{"region": name}`` (the write's home); an alias
        (``"eu"``, case-insensitive) whose zone the config defines ->
        ``{"compliance_zones": (zone,)}`` (placed in that zone's regions only); None
        -> no routing. Anything else is refused with the accepted values.
        """
        if region is None:
            return {}
        if isinstance(region, str):
            if region in config.regions:
                return {"region": region}
            zone = self.region_aliases.get(region.lower())
            if zone is not None and zone in config.compliance.zones:
                return {"compliance_zones": (zone,)}
        aliases = [a for a, z in self.region_aliases.items() if z in config.compliance.zones]
        accepted = [
            *(f"{a!r} (zone {self.region_aliases[a]})" for a in aliases),
            *map(repr, config.regions),
        ]
        raise InvalidInput(f"region {region!r} routes nowhere: use one of {', '.join(accepted)}")


# ------------------------------------------------------------------------------ nodes


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


def _params_class(info: ModelInfo, op: str) -> type[NodeParams]:
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
        f"{info.name}{op}Params", __base__=_ModelParams, **fields
    )
    params.dataflow_model = info.name
    params.dataflow_pk = info.primary_key
    return params


def _node_class(db: DataFlow, info: ModelInfo, op: str) -> type[EdgeNode]:
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
            "Params": _params_class(info, op),
            "dataflow": db,
            "model_info": info,
            "operation": op,
            "runner": staticmethod(runner),
            "__doc__": f"{op} {info.name} records on the edge bus (DataFlow).",
            "__module__": __name__,
        },
    )
    return cls


class _ModelNode(EdgeNode):
    """Base of the generated DataFlow nodes."""

    inputs: ClassVar[tuple[str, ...]] = ("input", "session_token")
    outputs: ClassVar[tuple[str, ...]] = ("result", "session_token")
    dataflow: ClassVar[DataFlow]
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

    async def _write(self, key: str, data: Any, options: dict[str, Any]) -> tuple[list[str], str]:
        receipt = await self.bus.write(key, data, **options)
        return list(receipt.placement), receipt.session_token

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
        placement, token = await self._write(key, record, self._write_options(record, session))
        result = {
            "success": True,
            "record": record,
            "key": key,
            "placement": placement,
            "session_token": token,
        }
        return {"result": result, "session_token": token}

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
        placement, token = await self._write(key, record, self._write_options(record, token_in))
        result = {
            "success": True,
            "found": True,
            "record": record,
            "key": key,
            "placement": placement,
            "session_token": token,
        }
        return {"result": result, "session_token": token}

    def _has_id(self) -> bool:
        return self._param("id") is not None or self._param(self.model_info.primary_key) is not None

    async def delete(self, input: Any, session: str | None) -> Mapping[str, Any]:
        key = self.model_info.key(self._pk(input))
        found = await self._locate(key, session)
        if found is None or not found.exists:
            return {
                "result": {"success": False, "found": False, "key": key},
                "session_token": session,
            }
        options = self._write_options(found.value, found.session_token or session)
        placement, token = await self._write(key, None, {**options, "operation": "delete"})
        result = {
            "success": True,
            "found": True,
            "key": key,
            "placement": placement,
            "session_token": token,
        }
        return {"result": result, "session_token": token}

    async def list(self, input: Any, session: str | None) -> Mapping[str, Any]:
        from edgebus.sdk.region_client import RegionClient

        info = self.model_info
        limit = int(self._param("limit", 100))
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
                    rows = await _scan(client, region, info.prefix, limit)
                except EdgebusError as e:
                    if len(regions) == 1:
                        raise
                    failures.append(f"{region}: {e}")
                    continue
                answered.append(region)
                for row in rows:
                    kept = newest.get(row["key"])
                    if kept is None or _hlc(row) > _hlc(kept):
                        newest[row["key"]] = row
        finally:
            await client.close()
        if not answered:
            raise InvalidInput(
                f"{type(self).__name__} {self.node_id!r}: no region answered: "
                + "; ".join(failures)
            )
        records = [newest[k]["value"] for k in sorted(newest) if newest[k]["exists"]][:limit]
        result: dict[str, Any] = {
            "success": True,
            "records": records,
            "count": len(records),
            "regions": answered,
        }
        return {"result": result, "session_token": session}


def _newer(a: ReadResult, b: ReadResult) -> bool:
    return (a.hlc or (0, 0)) > (b.hlc or (0, 0))


def _hlc(row: Mapping[str, Any]) -> tuple[int, int]:
    hlc = row.get("hlc") or {}
    return int(hlc.get("wall_ms", 0)), int(hlc.get("logical", 0))


async def _scan(client: Any, region: str, prefix: str, limit: int) -> list[dict[str, Any]]:
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
