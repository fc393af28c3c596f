"""The ``edgebus`` command line: one module per command group, a global ``--json``."""

from __future__ import annotations

import typer

from edgebus.cli import kafka

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


def main() -> None:
    """Console-script entry point."""
    app()
