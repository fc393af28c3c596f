"""How CLI commands print: a rich table for people, JSON for programs.

Every command takes ``--json`` (and the global ``edgebus --json``); in JSON mode it
prints exactly one JSON document on stdout, errors included, so a script can parse
the result of any call.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import typer
from rich.console import Console

from edgebus.errors import EdgebusError

__all__ = ["console", "emit", "fail", "json_mode"]

console = Console()
err_console = Console(stderr=True)


def json_mode(ctx: typer.Context | None, flag: bool = False) -> bool:
    """True when either the command's own ``--json`` or the global one was given."""
    if flag:
        return True
    root = ctx.find_root() if ctx is not None else None
    return bool(root is not None and isinstance(root.obj, dict) and root.obj.get("json"))


def emit(as_json: bool, data: Any, render: Callable[[Any], None] | None = None) -> None:
    """Print ``data`` as one JSON document, or hand it to ``render`` for people."""
    if as_json or render is None:
        sys.stdout.write(json.dumps(data, indent=None, default=str) + "\n")
        sys.stdout.flush()
    else:
        render(data)


def fail(as_json: bool, error: EdgebusError | str, exit_code: int | None = None) -> typer.Exit:
    """Report an error (JSON or red text on stderr) and return the Exit to raise."""
    message = str(error)
    code = exit_code if exit_code is not None else getattr(error, "exit_code", 1)
    if as_json:
        payload = {"ok": False, "error": type(error).__name__ if not isinstance(error, str)
                   else "Error", "message": message}
        sys.stdout.write(json.dumps(payload) + "\n")
        sys.stdout.flush()
    else:
        err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)
