"""A DataFlow model: its record schema, primary key and keys, from an annotated class.

Pure: :func:`describe_model` reads a class and returns its :class:`ModelInfo` (or
raises TypeError saying what to declare); :class:`DataFlow <edgebus.workflow.dataflow.
DataFlow>` registers the model's nodes (:mod:`edgebus.workflow.dataflow_nodes`).

The primary key, first match wins: ``__primary_key__ = "<field>"`` in the class; a
field named ``id``; the first field ``<x>_id`` where ``<x>`` is the snake-case class
name or a leading part of it. A record is one edgebus key, ``<Model>:<primary key>``.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from edgebus.errors import InvalidInput

__all__ = [
    "DATAFLOW_MODULE",
    "OPERATIONS",
    "REGION_FIELD",
    "ModelInfo",
    "describe_model",
    "primary_key",
]

#: the generated node types, in this order: ``<Model><Operation>Node``
OPERATIONS: tuple[str, ...] = ("Create", "Read", "Update", "Delete", "List")

#: the field that routes a record's placement
REGION_FIELD = "region"

#: the module the generated schemas, params and node classes name as theirs: DataFlow's,
#: where users meet them (the node registry's messages name ``<module>.<class>``)
DATAFLOW_MODULE = "edgebus.workflow.dataflow"

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


def describe_model(cls: Any) -> ModelInfo:
    """The :class:`ModelInfo` of an annotated class (``@db.model``'s argument).

    Every annotated field is required unless the class gives it a default; a
    container field (dict, list, set, tuple) without a default defaults to empty.
    Raises TypeError when ``cls`` is not a class, has no fields or no primary key.
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
    pk = primary_key(name, fields, getattr(cls, "__primary_key__", None))
    schema = _record_schema(cls, hints, fields, pk)
    return ModelInfo(name, cls, schema, pk, fields)


def primary_key(name: str, fields: Sequence[str], declared: Any) -> str:
    """The primary key field of model ``name`` (``declared``: its ``__primary_key__``)."""
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


def _record_schema(
    cls: type, hints: Mapping[str, Any], fields: Sequence[str], pk: str
) -> type[BaseModel]:
    """The pydantic model records are validated against (unknown fields refused)."""
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
        cls.__name__,
        __config__=ConfigDict(extra="forbid"),
        __module__=DATAFLOW_MODULE,
        **definitions,
    )
    return schema
