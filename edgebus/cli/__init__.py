"""The ``edgebus`` command line: one module per command group, a global ``--json``.

Whatever fails, the command prints one line and exits non-zero, never a traceback: a
command's own errors are reported by :func:`~edgebus.cli._runner.run_command`; what
fails around it (a usage error, an option typer cannot parse, an error outside a
command's body) by the root group :class:`_Edgebus`: ``error: <message>`` on stderr
(one JSON document on stdout with ``--json``), exit 2 for usage errors, the error's
exit code for an :class:`~edgebus.errors.EdgebusError`, 1 for anything unexpected
(``EDGEBUS_DEBUG=1`` shows its traceback instead).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence
from importlib import metadata
from typing import Any

import typer
from typer.core import TyperGroup, TyperOption
from typer.exceptions import TyperException

from edgebus import __version__
from edgebus.cli import bench, coordinator, dlq, kafka, region, saga, state
from edgebus.cli._output import debugging, fail, internal_error
from edgebus.cli.demo import demo
from edgebus.cli.discover import discover
from edgebus.cli.import_ import import_
from edgebus.cli.read import read
from edgebus.cli.repair import repair
from edgebus.cli.replay import replay, verify
from edgebus.cli.status import status
from edgebus.cli.tail import tail
from edgebus.cli.write import write
from edgebus.errors import EdgebusError

__all__ = ["app", "main"]


def _flags_show_no_type() -> None:
    """Help renders a flag as a flag (``--json``), not as an option taking a value
    (typer 0.2x prints ``--json <bool>``); options that take values keep their type."""
    display = TyperOption.display_type_rich

    def display_type_rich(self: TyperOption, ctx: Any) -> str | None:
        return None if self.is_flag else display(self, ctx)

    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_flags_show_no_type()


class _Edgebus(TyperGroup):
    """The root group: every failure that reaches it becomes one line and an exit code."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        extra["windows_expand_args"] = windows_expand_args
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        argv = list(sys.argv[1:] if args is None else args)
        as_json = "--json" in argv
        try:
            code = super().main(argv, prog_name, complete_var, False, **extra)
        except TyperException as e:  # typer's (click's) usage errors and the like
            if type(e).__name__ == "NoArgsIsHelpError":
                sys.exit(e.exit_code)  # typer printed the help already
            ctx = getattr(e, "ctx", None)
            hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
            exit_code = fail(as_json, e.format_message() + hint, e.exit_code).exit_code
            raise SystemExit(exit_code) from None
        except typer.Abort:
            raise SystemExit(fail(as_json, "aborted", 1).exit_code) from None
        except EdgebusError as e:
            raise SystemExit(fail(as_json, e).exit_code) from None
        except BrokenPipeError:
            sys.exit(1)  # stdout closed (`edgebus ... | head`): nothing more to say
        except KeyboardInterrupt:  # Ctrl-C: the shell's code for SIGINT, no traceback
            sys.stderr.write("interrupted\n")
            sys.exit(130)
        except (Exception, asyncio.CancelledError) as e:
            if debugging():
                raise
            raise SystemExit(fail(as_json, internal_error(e), 1).exit_code) from None
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    name="edgebus",
    cls=_Edgebus,
    help="Geo-distributed, compliance-aware data on Apache Kafka.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _print_version(value: bool) -> None:
    """``--version``: the installed distribution's version (JSON with ``--json``)."""
    if not value:
        return
    try:
        version = metadata.version("edgebus")
    except metadata.PackageNotFoundError:  # a source tree on sys.path, not installed
        version = __version__
    print(json.dumps({"version": version}) if "--json" in sys.argv[1:]
          else f"edgebus {version}")
    raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    json_output: bool = typer.Option(False, "--json", help="Print one JSON document."),
    _version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True,
        help="Print edgebus's version and exit.",
    ),
    _verbose: bool = typer.Option(
        False, "-v", "--verbose",
        help="Log at INFO, the libraries' logs too (aiokafka's), with times and names.",
    ),
) -> None:
    ctx.obj = {"json": json_output}  # -v: main() configured logging before parsing


def _verbose_requested(argv: Sequence[str]) -> bool:
    """Whether ``-v``/``--verbose`` is among the global options (before the command)."""
    for arg in argv:
        if not arg.startswith("-"):
            return False
        if arg in ("-v", "--verbose"):
            return True
    return False


def _edgebus_warnings(record: logging.LogRecord) -> bool:
    """The default console's filter: edgebus's own warnings and errors only (aiokafka's
    retries and reconnects are its business; edgebus says what matters, once:
    :mod:`edgebus.kafka.log_noise`)."""
    return record.name.startswith("edgebus") and record.levelno >= logging.WARNING


def _console_logging(verbose: bool) -> None:
    """Where logs go when ``EDGEBUS_LOG_LEVEL`` is not set: stderr, edgebus's warnings
    and errors as bare messages (as Python prints unconfigured warnings); with
    ``verbose`` (``-v``) every logger at INFO, with times, names and levels."""
    handler = logging.StreamHandler()
    if verbose:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        logging.getLogger().setLevel(logging.INFO)
    else:
        handler.addFilter(_edgebus_warnings)
    logging.getLogger().addHandler(handler)


app.add_typer(kafka.app, name="kafka")
app.add_typer(bench.app, name="bench")
app.add_typer(region.app, name="region")
app.add_typer(dlq.app, name="dlq")
app.add_typer(coordinator.app, name="coordinator")
app.add_typer(saga.app, name="saga")
app.add_typer(state.app, name="state")
app.command("write")(write)
app.command("read")(read)
app.command("tail")(tail)
app.command("status")(status)
app.command("discover")(discover)
app.command("replay")(replay)
app.command("verify")(verify)
app.command("repair")(repair)
app.command("import")(import_)
app.command("demo")(demo)


def main() -> None:
    """Console-script entry point. ``EDGEBUS_LOG_LEVEL`` (e.g. ``INFO``, ``DEBUG``)
    turns on timestamped logs of every logger on stderr; by default only edgebus's own
    warnings and errors are printed (``-v``: everything at INFO). Ctrl-C exits 130."""
    level = os.environ.get("EDGEBUS_LOG_LEVEL")
    if level:
        try:
            logging.basicConfig(
                level=level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s"
            )
        except ValueError:
            raise SystemExit(fail(
                "--json" in sys.argv[1:],
                f"EDGEBUS_LOG_LEVEL={level[:40]!r} is not a log level: use DEBUG, INFO, "
                "WARNING or ERROR (or unset it)", 2,
            ).exit_code) from None
    else:
        _console_logging(_verbose_requested(sys.argv[1:]))
    try:
        app()
    except KeyboardInterrupt:  # Ctrl-C before or after the command ran
        sys.stderr.write("interrupted\n")
        sys.exit(130)
