"""The node registry: type names -> node classes.

``@register_node()`` registers a :class:`~edgebus.workflow.node.Node` subclass under
its class name (or the name given); ``@processing_node()`` turns a plain function into
a registered node. Two built-in processing nodes serve examples and glue:
``Passthrough`` (``result`` = ``input``) and ``Merge`` (several inputs, one dict).
"""

from __future__ import annotations

import difflib
import inspect
import threading
import typing
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar

from pydantic import Field, create_model

from edgebus.workflow.errors import UnknownNodeType
from edgebus.workflow.node import Node, NodeParams

__all__ = [
    "Merge",
    "Passthrough",
    "node_class",
    "processing_node",
    "register_node",
    "registered",
]

N = TypeVar("N", bound=type[Node])

_registry: dict[str, type[Node]] = {}
_lock = threading.Lock()


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def register_node(name: str | None = None) -> Callable[[N], N]:
    """Class decorator: register a Node subclass under ``name`` (default: class name).

    Registering the same class again is harmless; registering another class under a
    taken name raises ValueError naming both classes.
    """

    def decorate(cls: N) -> N:
        if not (isinstance(cls, type) and issubclass(cls, Node)):
            raise TypeError(
                f"@register_node() decorates Node subclasses, not {cls!r}: derive the class "
                "from edgebus.workflow.Node (or EdgeNode), or use @processing_node() on a "
                "function"
            )
        type_name = name if name is not None else cls.__name__
        if not isinstance(type_name, str) or not type_name:
            raise ValueError(f"A node type name must be a non-empty string, got {type_name!r}")
        with _lock:
            taken = _registry.get(type_name)
            if taken is not None and taken is not cls:
                raise ValueError(
                    f"Node type {type_name!r} is already registered to {_qualname(taken)}; "
                    f"cannot register {_qualname(cls)} under the same name. Pass another "
                    "name: @register_node('MyName')."
                )
            _registry[type_name] = cls
        return cls

    return decorate


def node_class(type_name: str) -> type[Node]:
    """The class registered under ``type_name``; UnknownNodeType (with a did-you-mean)."""
    cls = _registry.get(type_name)
    if cls is not None:
        return cls
    known = registered()
    near = difflib.get_close_matches(str(type_name), list(known), n=1, cutoff=0.6)
    if not near:  # a case slip ("passthrough") is too short a match for difflib
        near = [k for k in known if k.lower() == str(type_name).lower()][:1]
    raise UnknownNodeType(str(type_name), near[0] if near else None, sorted(known))


def registered() -> dict[str, type[Node]]:
    """A copy of the registry: type name -> class."""
    with _lock:
        return dict(_registry)


def processing_node(
    name: str | None = None,
) -> Callable[[Callable[..., Any]], type[Node]]:
    """Function decorator: a plain (sync or async) function as a registered node.

    The function's parameters are the node's input ports (a ``**kwargs`` parameter
    accepts any port); its return value is the ``result`` output. Build-time params
    give default input values, checked against the function's annotations: ::

        @processing_node()
        def scale(value: float, factor: float = 2.0) -> float:
            return value * factor

        builder.add_node("scale", "s", {"factor": 3.0})

    At run time a node's inputs are, lowest precedence first: its params, connected
    outputs, then the runtime's ``parameters[node_id]``. The decorator returns the
    node class (registered under ``name``, default the function's name).
    """

    def decorate(fn: Callable[..., Any]) -> type[Node]:
        return register_node(name)(_function_node(fn, name or fn.__name__))

    return decorate


def _function_node(fn: Callable[..., Any], type_name: str) -> type[Node]:
    signature = inspect.signature(fn)
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # unresolvable annotations: accept anything
        hints = {}
    fields: dict[str, Any] = {}
    ports: list[str] = []
    any_input = False
    for param in signature.parameters.values():
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            any_input = True
            continue
        if param.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.POSITIONAL_ONLY):
            raise TypeError(
                f"@processing_node() function {fn.__qualname__} has parameter "
                f"{param.name!r} that cannot be passed by keyword: node inputs are "
                "keyword arguments"
            )
        ports.append(param.name)
        fields[param.name] = (hints.get(param.name, Any), Field(default=None))
    params_model = create_model(f"{type_name}Params", __base__=NodeParams, **fields)
    is_async = inspect.iscoroutinefunction(fn)

    class FunctionNode(Node):
        Params: ClassVar[type[NodeParams]] = params_model
        inputs: ClassVar[tuple[str, ...]] = tuple(ports)
        outputs: ClassVar[tuple[str, ...]] = ("result",)
        accepts_any_input: ClassVar[bool] = any_input
        function: ClassVar[Callable[..., Any]] = staticmethod(fn)

        def static_inputs(self) -> dict[str, Any]:
            return dict(self.params.model_dump(exclude_unset=True))

        async def async_run(self, **inputs: Any) -> Mapping[str, Any]:
            if is_async:
                return {"result": await fn(**inputs)}
            return await super().async_run(**inputs)

        def run(self, **inputs: Any) -> Mapping[str, Any]:
            return {"result": fn(**inputs)}

    FunctionNode.__name__ = FunctionNode.__qualname__ = type_name
    FunctionNode.__module__ = fn.__module__
    FunctionNode.__doc__ = fn.__doc__
    return FunctionNode


@register_node()
class Passthrough(Node):
    """Hands its ``input`` on unchanged as ``result``."""

    def run(self, input: Any = None, **_: Any) -> Mapping[str, Any]:
        return {"result": input}


@register_node()
class Merge(Node):
    """Combines several inputs (any port names) into one dict, the ``result``.

    By default the result maps each port to its value; with ``flatten`` every input
    must be a mapping and their items are merged, ports in name order (a later port's
    key wins).
    """

    class Params(NodeParams):
        flatten: bool = False

    inputs: ClassVar[tuple[str, ...]] = ()
    accepts_any_input: ClassVar[bool] = True

    def run(self, **inputs: Any) -> Mapping[str, Any]:
        if not getattr(self.params, "flatten", False):
            return {"result": dict(sorted(inputs.items()))}
        merged: dict[str, Any] = {}
        for port, value in sorted(inputs.items()):
            if not isinstance(value, Mapping):
                raise TypeError(
                    f"Merge node {self.node_id!r} with flatten=True needs mappings, but "
                    f"input {port!r} is {type(value).__name__}; connect mappings or set "
                    "flatten=False"
                )
            merged.update(value)
        return {"result": merged}
