"""``LocalRuntime``: run a built workflow in this process.

Nodes run one at a time in the workflow's topological order. A node's inputs are,
lowest precedence first: its own static inputs (a processing node's params), the
outputs connected into it, and ``parameters[node_id]`` given to ``execute``. Results
map each node id to its output mapping.

The run's edge_config: the runtime's own when it was given one (``LocalRuntime(
edge_config)``, or an injected infrastructure's), else the workflow's
(``WorkflowBuilder(edge_config)``), else ``EDGEBUS_CONFIG`` or the defaults. When the
runtime and the workflow were both given one and they differ, the run is refused
(InvalidInput naming the sections that differ): give it to one of them only. A
workflow holding DataFlow nodes runs only with ``"dataflow_integration": True`` in the
run's edge_config (ConfigError before anything runs otherwise).

Edge nodes get the shared :class:`~edgebus.workflow.EdgeInfrastructure` of the
run's edge_config: before any node runs, the runtime starts it (only when the
workflow has edge nodes) and initializes each edge node once. With no reachable broker
that start fails with :class:`~edgebus.errors.InfrastructureUnavailable` ("No edge
infrastructure available: ...") and no node runs.

``execute`` blocks; it runs ``execute_async`` on one process-wide background event
loop, so shared infrastructure (bound to a loop) is shared by every synchronous
caller, and it works from inside a running event loop too. Shared infrastructure
stays connected for the next run; an application that runs ``execute_async`` on its
own loop awaits ``EdgeInfrastructure.close_all()`` before that loop ends.

Run-time ``parameters`` map node id -> {input port: value}; unknown node ids and
input names are refused (with a did-you-mean) before anything runs.

When a node fails, the runtime runs the saga compensations of the strong steps that
completed before it, newest first: every completed node with a ``compensate(output)``
coroutine (an EdgeDataNode's committed strong write, see
:mod:`edgebus.workflow.compensation`) is asked to undo its step.

**Errors.** Before a run starts: InvalidInput for a workflow that is not built,
parameters naming unknown nodes or inputs, or an edge_config conflict, and
ConfigError for DataFlow nodes without ``dataflow_integration``. Once it has started,
everything that stops it is one shape (:mod:`edgebus.workflow.errors`): a
:class:`~edgebus.workflow.compensation.CompensatedExecutionError` (a
WorkflowExecutionError: ``node_id``, ``type_name``, ``cause``, ``results``, ``run_id``,
``not_run``, and ``compensations`` saying how each undo ended) that is also an instance
of the cause's class when the cause is an edgebus error. So ``except
ComplianceViolation:`` around ``execute`` catches a node's compliance violation, and
``except InfrastructureUnavailable:`` the start that found no broker (that one has
``node_id`` None: no node ran, and its message starts "No edge infrastructure
available").
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import difflib
import logging
import threading
import time
import uuid
from collections.abc import Coroutine, Mapping
from pathlib import Path
from typing import Any, TypeVar

from edgebus.config import EdgeConfig, load_config
from edgebus.errors import ConfigError, InvalidInput
from edgebus.tracing import Tracer, attributes, tracer_for
from edgebus.workflow.builder import Workflow
from edgebus.workflow.compensation import CompensatedExecutionError, Compensation
from edgebus.workflow.dataflow_nodes import dataflow_integration_problem
from edgebus.workflow.infrastructure import EdgeInfrastructure
from edgebus.workflow.node import Node

__all__ = ["LocalRuntime"]

log = logging.getLogger("edgebus.workflow")
infra_log = logging.getLogger("edgebus.workflow.edge_infrastructure")
T = TypeVar("T")

Results = dict[str, dict[str, Any]]


class LocalRuntime:
    """Runs workflows in this process: ``results, run_id = runtime.execute(workflow)``.

    ``edge_config`` is anything :func:`~edgebus.config.load_config` takes; it is
    validated here. None: the workflow's edge_config (``WorkflowBuilder(edge_config)``)
    when it has one, else ``EDGEBUS_CONFIG`` or zero-config. ``infrastructure``
    injects an edge infrastructure instead of the shared one (tests); its config is
    then the runtime's.
    """

    def __init__(
        self,
        edge_config: EdgeConfig | Mapping[str, Any] | str | Path | None = None,
        *,
        infrastructure: Any = None,
    ) -> None:
        self._infrastructure = infrastructure
        #: whether this runtime was given a config (its own, or its infrastructure's)
        self._config_given = edge_config is not None or infrastructure is not None
        if infrastructure is not None and edge_config is None:
            self.edge_config: EdgeConfig = infrastructure.config
        else:
            self.edge_config = load_config(edge_config)

    def execute(
        self, workflow: Workflow, parameters: Mapping[str, Mapping[str, Any]] | None = None
    ) -> tuple[Results, str]:
        """Run the workflow and block until done; returns ``(results, run_id)``."""
        return _background_loop().run(self.execute_async(workflow, parameters))

    async def execute_async(
        self, workflow: Workflow, parameters: Mapping[str, Mapping[str, Any]] | None = None
    ) -> tuple[Results, str]:
        """Run the workflow; returns ``(results, run_id)``.

        Raises InvalidInput (ConfigError) before anything runs for a workflow or
        parameters it cannot run (see the module doc), and a WorkflowExecutionError
        (CompensatedExecutionError), also an instance of its cause's class when that is
        an edgebus error, when the run stops: a node failed (its ``results`` hold the
        nodes that completed) or edge nodes need a broker and none answers (an
        InfrastructureUnavailable too, ``node_id`` None).
        """
        _require_built(workflow)
        config = self.config_for(workflow)
        problem = dataflow_integration_problem(config, workflow.nodes)
        if problem is not None:
            raise ConfigError(problem)
        params = _check_parameters(workflow, parameters)
        run_id = uuid.uuid4().hex
        nodes = _instantiate(workflow, run_id)
        log.debug("run %s: %d node(s) in order %s", run_id, len(nodes), list(nodes))
        if workflow.edge_node_ids:
            try:
                infra = await self._started_infrastructure(workflow, config, run_id)
            except Exception as e:
                raise CompensatedExecutionError.of(
                    None, None, e, {}, run_id, workflow.node_ids
                ) from e
            await _initialize_edge_nodes(workflow, nodes, infra, run_id)
        tracer = tracer_for(config, "edgebus-workflow")
        return await _run_nodes(workflow, nodes, params, run_id, tracer), run_id

    def config_for(self, workflow: Workflow) -> EdgeConfig:
        """The edge_config a run of ``workflow`` uses: this runtime's when it was given
        one, else the workflow's, else this runtime's (``EDGEBUS_CONFIG`` or the
        defaults). InvalidInput when both were given one and they differ."""
        theirs = workflow.edge_config
        if theirs is None:
            return self.edge_config
        if not self._config_given:
            return theirs
        if theirs != self.edge_config:
            differ = [name for name in type(theirs).model_fields
                      if getattr(theirs, name) != getattr(self.edge_config, name)]
            raise InvalidInput(
                "The workflow was built with an edge_config (WorkflowBuilder(edge_config)) "
                "and this LocalRuntime was given another one (they differ in: "
                f"{', '.join(differ)}). Give the edge_config to one of them only: drop it "
                "from LocalRuntime(...) to run with the workflow's, or from "
                "WorkflowBuilder(...) to run with the runtime's."
            )
        return self.edge_config

    async def _started_infrastructure(
        self, workflow: Workflow, config: EdgeConfig, run_id: str
    ) -> Any:
        """The edge infrastructure of this run (the injected one, else the shared one of
        ``config``), started."""
        infra = self._infrastructure or EdgeInfrastructure.shared(config)
        start = getattr(infra, "start", None)
        if start is not None:
            await start()
        infra_log.debug("run %s: edge nodes %s use %r", run_id, list(workflow.edge_node_ids), infra)
        return infra


def _require_built(workflow: object) -> None:
    if not isinstance(workflow, Workflow):
        raise InvalidInput(
            f"execute() takes a built Workflow, got {type(workflow).__name__}: "
            "call WorkflowBuilder.build() first"
        )


def _instantiate(workflow: Workflow, run_id: str) -> dict[str, Node]:
    """Node id -> a new instance of its node, in execution order; a node whose
    constructor raises fails the run before anything runs."""
    nodes: dict[str, Node] = {}
    for spec in workflow.nodes:
        try:
            nodes[spec.node_id] = spec.instantiate()
        except Exception as e:
            raise CompensatedExecutionError.of(
                spec.node_id, spec.type_name, e, {}, run_id, workflow.node_ids
            ) from e
    return nodes


async def _initialize_edge_nodes(
    workflow: Workflow, nodes: Mapping[str, Node], infra: Any, run_id: str
) -> None:
    """Hand ``infra`` to each edge node (its ``initialize``, else plain injection)."""
    for node_id in workflow.edge_node_ids:
        node = nodes[node_id]
        try:
            initialize = getattr(node, "initialize", None)
            if initialize is not None:
                await initialize(infra)
            else:  # an edge node by name or attribute only: plain injection
                node.infrastructure = infra  # type: ignore[attr-defined]
        except Exception as e:
            spec = workflow.node(node_id)
            raise CompensatedExecutionError.of(
                node_id, spec.type_name, e, {}, run_id, list(nodes)
            ) from e
        log.debug("run %s: initialized edge node %s", run_id, node_id)


async def _run_nodes(
    workflow: Workflow,
    nodes: Mapping[str, Node],
    params: Mapping[str, Mapping[str, Any]],
    run_id: str,
    tracer: Tracer | None = None,
) -> Results:
    """Run the nodes one at a time in order, each in an ``edgebus.node <id>`` span when
    tracing is on (edgebus.tracing: the writes it makes are its children); on a
    failure, compensate the completed steps and raise CompensatedExecutionError."""
    needed = _needed_outputs(workflow)
    results: Results = {}
    order = workflow.node_ids
    for position, spec in enumerate(workflow.nodes):
        node = nodes[spec.node_id]
        inputs = _node_inputs(workflow, spec.node_id, node, results, params)
        log.debug(
            "run %s: node %s (%s) starts with inputs %s",
            run_id,
            spec.node_id,
            spec.type_name,
            sorted(inputs),
        )
        began = time.perf_counter()
        span = (
            contextlib.nullcontext() if tracer is None else tracer.start_as_current_span(
                f"edgebus.node {spec.node_id}",
                attributes=attributes(node=spec.node_id, node_type=spec.type_name, run=run_id),
            )
        )
        try:
            with span:
                output = _checked_output(
                    await node.async_run(**inputs), needed.get(spec.node_id, set())
                )
        except Exception as e:
            log.debug("run %s: node %s (%s) failed: %r", run_id, spec.node_id, spec.type_name, e)
            compensations = await _compensate(nodes, results, run_id)
            raise CompensatedExecutionError.of(
                spec.node_id,
                spec.type_name,
                e,
                results,
                run_id,
                order[position + 1 :],
                compensations=compensations,
            ) from e
        results[spec.node_id] = dict(output)
        log.debug(
            "run %s: node %s (%s) finished in %.1f ms, outputs %s",
            run_id,
            spec.node_id,
            spec.type_name,
            (time.perf_counter() - began) * 1000,
            sorted(output),
        )
    return results


def _needed_outputs(workflow: Workflow) -> dict[str, set[str]]:
    """Node id -> the output ports its outgoing connections read."""
    needed: dict[str, set[str]] = {}
    for conn in workflow.connections:
        needed.setdefault(conn.source, set()).add(conn.source_output)
    return needed


def _node_inputs(
    workflow: Workflow,
    node_id: str,
    node: Node,
    results: Results,
    params: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    """A node's inputs, lowest precedence first: its static inputs, the outputs
    connected into it, the run-time parameters."""
    inputs = dict(node.static_inputs())
    for conn in workflow.incoming(node_id):
        inputs[conn.target_input] = results[conn.source][conn.source_output]
    inputs.update(params.get(node_id, {}))
    return inputs


def _checked_output(output: object, needed: set[str]) -> Mapping[str, Any]:
    """``output`` if it is a mapping holding every port in ``needed`` (TypeError,
    KeyError otherwise)."""
    if not isinstance(output, Mapping):
        raise TypeError(
            f"async_run returned {type(output).__name__}, not a mapping of output port -> value"
        )
    missing = sorted(needed - set(output))
    if missing:
        raise KeyError(
            f"produced no output {', '.join(map(repr, missing))} that a "
            f"connection reads (it produced: {', '.join(map(str, output)) or 'none'})"
        )
    return output


async def _compensate(
    nodes: Mapping[str, Node], results: Results, run_id: str
) -> list[Compensation]:
    """Run the compensations of the completed nodes, newest first (one at a time)."""
    done: list[Compensation] = []
    for node_id in reversed(list(results)):
        compensate = getattr(nodes[node_id], "compensate", None)
        if compensate is None:
            continue
        try:
            outcome = await compensate(results[node_id])
        except Exception as e:  # a compensate() that raises: report, go on with the rest
            log.warning("run %s: compensation of node %s raised %r", run_id, node_id, e)
            continue
        if outcome is not None:
            log.debug("run %s: %s", run_id, outcome.describe())
            done.append(outcome)
    return done


def _check_parameters(
    workflow: Workflow, parameters: Mapping[str, Mapping[str, Any]] | None
) -> dict[str, dict[str, Any]]:
    if parameters is None:
        return {}
    if not isinstance(parameters, Mapping):
        raise InvalidInput(
            f"parameters must map node id -> {{input: value}}, got {type(parameters).__name__}"
        )
    ids = list(workflow.node_ids)
    out: dict[str, dict[str, Any]] = {}
    for node_id, values in parameters.items():
        if node_id not in ids:
            near = difflib.get_close_matches(str(node_id), ids, n=1, cutoff=0.6)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise InvalidInput(
                f"parameters name unknown node {node_id!r}{hint}. Nodes: {', '.join(ids)}."
            )
        if not isinstance(values, Mapping):
            raise InvalidInput(
                f"parameters[{node_id!r}] must map input name -> value, got {type(values).__name__}"
            )
        spec = workflow.node(node_id)
        ports = spec.node_class.inputs
        if not spec.node_class.accepts_any_input:
            for name in values:
                if name not in ports:
                    near = difflib.get_close_matches(str(name), ports, n=1, cutoff=0.6)
                    hint = f" (did you mean {near[0]!r}?)" if near else ""
                    raise InvalidInput(
                        f"parameters[{node_id!r}] name unknown input {name!r}{hint} of node "
                        f"{node_id!r} ({spec.type_name}); its inputs: "
                        f"{', '.join(ports) or 'none'}."
                    )
        out[node_id] = dict(values)
    return out


class _BackgroundLoop:
    """One event loop on a daemon thread, for every synchronous ``execute``."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="edgebus-workflow", daemon=True
        )
        self.thread.start()
        atexit.register(self.shutdown)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        if threading.current_thread() is self.thread:
            coro.close()
            raise RuntimeError(
                "LocalRuntime.execute() was called from a node running on the runtime's "
                "own event loop, which would deadlock: await execute_async() instead"
            )
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def shutdown(self, timeout_s: float = 10.0) -> None:
        """Close the infrastructure shared on this loop (flushing writes), stop the loop."""
        if self.loop.is_closed() or not self.thread.is_alive():
            return
        done = asyncio.run_coroutine_threadsafe(EdgeInfrastructure.close_all(), self.loop)
        with contextlib.suppress(Exception):
            done.result(timeout_s)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout_s)


_background: _BackgroundLoop | None = None
_background_lock = threading.Lock()


def _background_loop() -> _BackgroundLoop:
    global _background
    with _background_lock:
        if _background is None:
            _background = _BackgroundLoop()
        return _background
