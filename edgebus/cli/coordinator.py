"""``edgebus coordinator run``: a commit coordinator as its own process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from edgebus.cli._common import ConfigOption, JsonOption, command_group, serve_until_signal
from edgebus.cli._output import emit, err_console
from edgebus.cli._runner import UNTIL_CTRL_C, Call, run_command
from edgebus.config import EdgeConfig
from edgebus.errors import ConfigError, InvalidInput

__all__ = ["app"]

app = command_group("Run a commit coordinator (decides strong writes).")


@app.command("run")
def run(
    ctx: typer.Context,
    instance_id: str | None = typer.Option(
        None, "--instance-id", help="A stable name for this instance: a restart with the "
        "same id takes its commit-log partitions back at once (Kafka static membership)."
    ),
    metrics_listen: str | None = typer.Option(
        None, "--metrics-listen", help="Serve Prometheus metrics at http://HOST:PORT/metrics "
        "(e.g. 0.0.0.0:9464; port 0: any free one). Default: off."
    ),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Join the coordinator group on the commit log and decide the strong writes of the
    partitions Kafka assigns this instance, until Ctrl-C / SIGTERM. Run several for
    fail-over: a dead instance's partitions move to the others. While one runs, SDK
    clients (strong.coordinator "auto", the default) run no coordinator of their own."""

    async def body(call: Call) -> None:
        await _run(call.config, instance_id, call.as_json, metrics_listen)

    run_command(ctx, body, as_json=as_json, config=config, interrupts=UNTIL_CTRL_C)


async def _run(
    config: EdgeConfig, instance_id: str | None, as_json: bool, metrics_listen: str | None
) -> None:
    from edgebus.commit.coordinator import Coordinator
    from edgebus.commit.metrics import CoordinatorMetrics
    from edgebus.kafka.clusters import resolve_clusters
    from edgebus.prometheus import serve_metrics

    bootstrap = resolve_clusters(config)[config.strong_log_region]
    coordinator = Coordinator(config, bootstrap, instance_id=instance_id, kind="service")
    runner: Any = None
    metrics_url: str | None = None
    if metrics_listen is not None:
        auth = _metrics_auth(config, metrics_listen)
        try:
            runner, metrics_url = await serve_metrics(
                CoordinatorMetrics(coordinator).render, metrics_listen,
                (lambda header: auth.refusal("admin", header)) if auth.enabled else None,
            )
        except (ValueError, OSError) as e:
            raise InvalidInput(
                f"--metrics-listen {metrics_listen}: {e}. Pass HOST:PORT with a free port "
                "(or 0 for any free one)."
            ) from e
    try:
        await coordinator.start()
        emit(as_json, {"ok": True, "event": "started", "coordinator": coordinator.name,
                       "saga_log": bootstrap, "metrics": metrics_url},
             lambda d: err_console.print(
                 f"coordinator [bold]{d['coordinator']}[/] up on the commit log at "
                 f"{d['saga_log']}"
                 + (f", metrics at {d['metrics']}" if d["metrics"] else "")
                 + " (Ctrl-C to stop)", highlight=False))
        await serve_until_signal(coordinator)
    finally:
        if runner is not None:
            await runner.cleanup()


def _metrics_auth(config: EdgeConfig, listen: str) -> Any:
    """The query tokens that guard ``--metrics-listen`` (the admin token, as a region's
    ``/metrics``); without tokens only a loopback address is served."""
    from edgebus.server.query import QueryAuth
    from edgebus.wire.announcement import is_loopback

    auth = QueryAuth.from_config(config.query)
    host = listen.rpartition(":")[0].strip("[]") or "127.0.0.1"
    if not auth.enabled and not is_loopback(host):
        raise ConfigError(
            f"Refusing to serve metrics on {host!r} (--metrics-listen {listen}) without "
            "tokens: set query.admin_token_env (or query.admin_token_file) and "
            "query.read_token_env (or _file), and scrape with the admin token, or listen "
            "on 127.0.0.1, ::1 or localhost."
        )
    return auth
