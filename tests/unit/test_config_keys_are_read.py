"""Every key of ``edge_config`` is read by the code it configures (issue 19): a key
that is validated and then ignored would silently turn a setting off.

Static, over the source of ``edgebus/``: a key counts as read where a function (or a
module's top level) names it as an attribute (``config.replication.min_regions``) or a
string (``getattr(monitoring, "health_check_interval")``). A name that several sections
share (``health_check_interval`` is ``discovery``'s and ``monitoring``'s) must be read
where its section is named too. Field declarations are not reads.
"""

from __future__ import annotations

import ast
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel

from edgebus.config import EdgeConfig

SOURCE = Path(__file__).resolve().parents[2] / "edgebus"


def leaf_keys(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from leaf_keys(annotation, (*prefix, name))
        else:
            yield (*prefix, name)


def scopes() -> Iterator[set[str]]:
    """For every function and module of edgebus/: the attribute names and strings it
    mentions."""
    for path in SOURCE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        roots: list[ast.AST] = [tree]
        functions = (ast.FunctionDef, ast.AsyncFunctionDef)
        roots += [n for n in ast.walk(tree) if isinstance(n, functions)]
        for root in roots:
            names: set[str] = set()
            for node in ast.walk(root):
                if isinstance(node, ast.Attribute):
                    names.add(node.attr)
                elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                    names.add(node.value)
            yield names


def unread_keys(model: type[BaseModel] = EdgeConfig) -> list[str]:
    keys = list(leaf_keys(model))
    shared = Counter(key[-1] for key in keys)
    all_scopes = list(scopes())
    unread = []
    for key in keys:
        name, section = key[-1], key[-2] if len(key) > 1 else None
        needs_section = shared[name] > 1 and section is not None
        if not any(
            name in scope and (not needs_section or section in scope) for scope in all_scopes
        ):
            unread.append(".".join(key))
    return unread


def test_every_config_key_is_read_somewhere() -> None:
    assert unread_keys() == [], (
        "these edge_config keys are validated but read nowhere: make them do what their "
        "name says, or refuse them"
    )


def test_the_walk_finds_every_section_and_would_catch_an_unread_key() -> None:
    keys = {".".join(k) for k in leaf_keys(EdgeConfig)}
    assert {"replication.min_regions", "monitoring.trace_enabled", "dataflow_integration",
            "monitoring.health_check_interval", "discovery.health_check_interval"} <= keys

    class Extended(EdgeConfig):
        no_such_setting_anywhere: bool = False

    class Watch(BaseModel):
        debug: bool = False  # shared with EdgeConfig.debug, never read with "watch"

    class WithWatch(EdgeConfig):
        watch: Watch = Watch()

    assert unread_keys(Extended) == ["no_such_setting_anywhere"]
    assert unread_keys(WithWatch) == ["watch.debug"]
