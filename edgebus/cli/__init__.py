"""The ``edgebus`` command line: one module per command group, a global ``--json``."""

from __future__ import annotations

import logging
import os

import typer

from edgebus.cli import bench, coordinator, dlq, kafka, region, saga, state
from edgebus.cli.demo import demo
from edgebus.cli.discover import discover
from edgebus.cli.import_ import import_
from edgebus.cli.read import read
from edgebus.cli.replay import replay, verify
from edgebus.cli.status import status
from edgebus.cli.tail import tail
from edgebus.cli.write import write

__all__ = ["app", "main"]

app = typer.Typer(
    name="edgebus",
    help="Geo-distributed, compliance-aware data on Apache Kafka.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root(
    ctx: typer.Context,
    json_output: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    ctx.obj = {"json": json_output}


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
app.command("import")(import_)
app.command("demo")(demo)


def main() -> None:
    """Console-script entry point. ``EDGEBUS_LOG_LEVEL`` (e.g. ``INFO``, ``DEBUG``)
    turns on timestamped logs on stderr; by default only warnings are printed."""
    level = os.environ.get("EDGEBUS_LOG_LEVEL")
    if level:
        logging.basicConfig(
            level=level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s"
        )
    app()
