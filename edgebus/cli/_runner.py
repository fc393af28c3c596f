"""One frame for every command: its config, ``--json``, errors to exit codes, its output.

A command declares its options and hands its body to :func:`run_command`::

    def read(ctx: typer.Context, key: str = ..., config: Path | None = ConfigOption,
             as_json: bool = JsonOption) -> None:
        async def body(call: Call) -> Document:
            return {"ok": True, **(await _read(call.config, key)).to_dict()}

        run_command(ctx, body, as_json=as_json, config=config, render=_render)

The body gets a :class:`Call`: whether JSON mode is on (the command's ``--json`` or the
global one) and the command's config, loaded, with its regions checked, the first time
the body asks for it (a body checks its other inputs first where it always has). A body
is a function or a coroutine function (run with :func:`asyncio.run`). It returns the
document to print (one JSON document in JSON mode, else the renderer's output), a
:class:`Reply` when the command exits non-zero after printing, or ``None`` when it
printed as it went (``tail``, ``region run``).

An :class:`~edgebus.errors.EdgebusError` is reported by :func:`~edgebus.cli._output.fail`
(one JSON document on stdout in JSON mode, red text on stderr otherwise) with its exit
code; an :class:`OptionError` the same way, with exit code 1; any other exception (one
edgebus did not expect, the renderer's included) as one line ``internal error: <type>:
<message>`` with exit code 1 (``EDGEBUS_DEBUG=1`` lets it through, traceback and all).
Commands that run until stopped pass ``interrupts=UNTIL_CTRL_C``: Ctrl-C ends them with
exit 130, no traceback.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import Any

import typer
from typer.exceptions import TyperException

from edgebus.cli._common import load_cli_config
from edgebus.cli._output import debugging, emit, fail, internal_error, json_mode
from edgebus.config import EdgeConfig
from edgebus.errors import EdgebusError

__all__ = [
    "UNTIL_CTRL_C",
    "UNTIL_CTRL_C_OR_SIGTERM",
    "Body",
    "Call",
    "Document",
    "OptionError",
    "Reply",
    "run_command",
]

#: what a command prints: one JSON document, or its renderer's view of it
Document = dict[str, Any]


@dataclass(frozen=True)
class Reply:
    """A body's answer when the command exits non-zero after printing its document (a
    check that failed, a lock not acquired, refused keys)."""

    document: Document
    exit_code: int = 0


Outcome = Document | Reply | None
Body = Callable[["Call"], Outcome] | Callable[["Call"], Coroutine[Any, Any, Outcome]]
Renderer = Callable[[Document], None]

#: a command that runs until Ctrl-C: it ends with exit 130 (128 + SIGINT), no traceback
UNTIL_CTRL_C: Mapping[type[BaseException], int] = MappingProxyType({KeyboardInterrupt: 130})
#: the same, and SIGTERM, which cancels the command's task (``edgebus.bench.children``)
#: once its child processes were stopped, ends it with exit 143 (128 + SIGTERM)
UNTIL_CTRL_C_OR_SIGTERM: Mapping[type[BaseException], int] = MappingProxyType(
    {KeyboardInterrupt: 130, asyncio.CancelledError: 143}
)


class OptionError(Exception):
    """A command's own refusal of an option's value, outside the EdgebusError family:
    reported like one (``"error": "Error"`` in JSON), exit code 1."""


class Call:
    """What a command's body is handed: JSON mode and the command's config."""

    def __init__(self, as_json: bool, config_path: Path | None, regions: tuple[str, ...]):
        self.as_json = as_json
        self._config_path = config_path
        self._regions = regions

    @cached_property
    def config(self) -> EdgeConfig:
        """The config (``--config``, else $EDGEBUS_CONFIG, else zero-config), loaded on
        first use; each region the command named must be one of its regions."""
        return load_cli_config(self._config_path, *self._regions)


def run_command(
    ctx: typer.Context,
    body: Body,
    *,
    as_json: bool = False,
    config: Path | None = None,
    regions: Iterable[str | None] = (),
    render: Renderer | None = None,
    interrupts: Mapping[type[BaseException], int] = MappingProxyType({}),
) -> None:
    """Run ``body`` as the command ``ctx`` names and print what it returns.

    ``as_json`` is the command's own ``--json`` (the global one counts too); ``config``
    its ``--config``; ``regions`` the regions it names that must be configured (``None``
    entries are skipped); ``render`` prints the document for people; ``interrupts`` maps
    the exceptions that stop a long-running command to its exit code.
    """
    call = Call(json_mode(ctx, as_json), config, tuple(r for r in regions if r is not None))
    try:
        outcome = _outcome(body, call)
        if outcome is None:
            return
        reply = outcome if isinstance(outcome, Reply) else Reply(outcome)
        emit(call.as_json, reply.document, render)
    except EdgebusError as e:
        raise fail(call.as_json, e) from None
    except OptionError as e:
        raise fail(call.as_json, str(e)) from None
    except (typer.Exit, typer.Abort, TyperException, BrokenPipeError):
        raise  # typer's own ways out, and a closed stdout: the app's entry point reports
    except BaseException as e:
        for kind, code in interrupts.items():
            if isinstance(e, kind):
                raise typer.Exit(code) from None
        if not isinstance(e, Exception) or debugging():
            raise
        raise fail(call.as_json, internal_error(e), 1) from None
    if reply.exit_code:
        raise typer.Exit(reply.exit_code)


def _outcome(body: Body, call: Call) -> Outcome:
    result = body(call)
    if isinstance(result, Coroutine):
        outcome: Outcome = asyncio.run(result)
        return outcome
    return result
