"""How CLI commands print: a rich table for people, JSON for programs.

Every command takes ``--json`` (and the global ``edgebus --json``); in JSON mode it
prints exactly one JSON document on stdout, errors included, so a script can parse
the result of any call. Otherwise an error is one line on stderr, ``error: ...``; an
error edgebus did not expect is ``error: internal error: <type>: <message>``, with its
traceback only when ``EDGEBUS_DEBUG=1``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

__all__ = [
    "ENV_DEBUG", "console", "debugging", "emit", "err_console", "fail", "internal_error",
    "json_mode", "one_line",
]

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


def fail(as_json: bool, error: BaseException | str, exit_code: int | None = None) -> typer.Exit:
    """Report an error (one JSON document on stdout, or one red line on stderr) and
    return the Exit to raise. The message is put on one line."""
    message = one_line(str(error))
    code = exit_code if exit_code is not None else getattr(error, "exit_code", 1)
    if as_json:
        payload = {"ok": False, "error": type(error).__name__ if not isinstance(error, str)
                   else "Error", "message": message}
        sys.stdout.write(json.dumps(payload) + "\n")
        sys.stdout.flush()
    else:
        err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False,
                          soft_wrap=True)
    return typer.Exit(code if isinstance(code, int) else 1)


#: set (to anything but 0 or empty) to get the traceback of an unexpected error
ENV_DEBUG = "EDGEBUS_DEBUG"
#: the longest error message printed (a longer one is cut, with its length)
MAX_MESSAGE_CHARS = 4_000


def debugging() -> bool:
    """True when ``EDGEBUS_DEBUG`` asks for tracebacks of unexpected errors."""
    return os.environ.get(ENV_DEBUG, "") not in ("", "0")


def one_line(message: str) -> str:
    """``message`` on one line (line breaks and runs of blanks become one space), cut at
    MAX_MESSAGE_CHARS."""
    text = " ".join(message.split())
    if len(text) > MAX_MESSAGE_CHARS:
        text = f"{text[:MAX_MESSAGE_CHARS]}... ({len(text):,} chars)"
    return text


def internal_error(error: BaseException) -> str:
    """The one-line report of an error edgebus did not expect."""
    detail = one_line(str(error)) or "(no message)"
    return (f"internal error: {type(error).__name__}: {detail} "
            f"(run with {ENV_DEBUG}=1 for the traceback)")
