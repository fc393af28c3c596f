"""Update functions for ``update`` operations, registered by name.

An ``update`` runs at the state's owner, which may be another process: the caller
names the function and the owner looks it up here. Register functions in every
process that hosts states (region services import the modules listed in
``EDGEBUS_STATE_FUNCTIONS``, comma-separated, when they start)::

    from edgebus.state import register_update_fn

    @register_update_fn("add_item")
    def add_item(cart):
        return {**(cart or {}), "items": (cart or {}).get("items", 0) + 1}

A callable passed to ``EdgeBus.state(update_fn=...)`` is registered in the caller's
process under its qualified name, so it runs when that process hosts the owner
(``state.embedded_host``); another owner refuses it, saying so.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from typing import Any

from edgebus.errors import InvalidInput

__all__ = ["ENV_FUNCTIONS", "import_function_modules", "register_update_fn", "resolve",
           "update_fn_name"]

ENV_FUNCTIONS = "EDGEBUS_STATE_FUNCTIONS"
UpdateFn = Callable[[Any], Any]
_REGISTRY: dict[str, UpdateFn] = {}


def register_update_fn(name: str | None = None) -> Callable[[UpdateFn], UpdateFn]:
    """Decorator: register ``fn`` (current value -> new value) under ``name`` (default:
    ``module.qualname``)."""

    def wrap(fn: UpdateFn) -> UpdateFn:
        _REGISTRY[name or update_fn_name(fn)] = fn
        return fn

    return wrap


def update_fn_name(fn: UpdateFn) -> str:
    """The name a callable is registered under by default."""
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def resolve(name: str | None) -> UpdateFn | None:
    """The function registered as ``name`` in this process, if any."""
    return None if name is None else _REGISTRY.get(name)


def import_function_modules(spec: str | None = None) -> list[str]:
    """Import the modules named in ``spec`` (default: ``$EDGEBUS_STATE_FUNCTIONS``)."""
    names = [n.strip() for n in (spec if spec is not None else
                                 os.environ.get(ENV_FUNCTIONS, "")).split(",") if n.strip()]
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise InvalidInput(
                f"cannot import state function module {name!r} (from {ENV_FUNCTIONS}): "
                f"{e}. Put it on PYTHONPATH or fix the name."
            ) from e
    return names
