"""Errors of the workflow API (all under :class:`~edgebus.errors.EdgebusError`).

A workflow that cannot be built raises :class:`WorkflowValidationError` listing every
problem at once, so a user fixes them in one pass; a node that fails while running
raises :class:`WorkflowExecutionError`, which keeps the results of the nodes that
completed before it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from edgebus.errors import EdgebusError, InvalidInput

__all__ = [
    "NodeNotInitialized",
    "UnknownNodeType",
    "WorkflowExecutionError",
    "WorkflowValidationError",
]


class UnknownNodeType(InvalidInput):
    """A node type name that no class is registered under."""

    def __init__(self, type_name: str, suggestion: str | None, known: Sequence[str]) -> None:
        self.type_name = type_name
        self.suggestion = suggestion
        self.known = tuple(known)
        hint = f" (did you mean {suggestion!r}?)" if suggestion else ""
        listing = ", ".join(self.known) or "none"
        super().__init__(
            f"Unknown node type {type_name!r}{hint}. Registered node types: {listing}. "
            "Register your class with @register_node() (or a function with "
            "@processing_node()) and import its module before building the workflow."
        )


class WorkflowValidationError(InvalidInput):
    """``WorkflowBuilder.build()`` found problems; ``problems`` lists each of them."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        count = len(self.problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(
            f"Invalid workflow: {count} problem{'s' if count != 1 else ''}. "
            f"Fix {'them' if count != 1 else 'it'} and build again:\n{lines}"
        )


class WorkflowExecutionError(EdgebusError):
    """A node failed while the workflow ran; the nodes after it did not run.

    ``results`` holds the outputs of the nodes that completed, ``cause`` the node's
    error; ``retriable`` and ``exit_code`` are the cause's when it is an edgebus error.
    """

    def __init__(
        self,
        node_id: str,
        type_name: str,
        cause: BaseException,
        results: Mapping[str, Mapping[str, Any]],
        run_id: str,
        not_run: Sequence[str] = (),
    ) -> None:
        self.node_id = node_id
        self.type_name = type_name
        self.cause = cause
        self.results = dict(results)
        self.run_id = run_id
        self.not_run = tuple(not_run)
        self.retriable = bool(getattr(cause, "retriable", False))
        self.exit_code = int(getattr(cause, "exit_code", 1))
        done = ", ".join(self.results) or "none"
        skipped = ", ".join(self.not_run) or "none"
        reason = str(cause) or type(cause).__name__
        super().__init__(
            f"Node {node_id!r} ({type_name}) failed: {type(cause).__name__}: {reason}. "
            f"Completed before it: {done}; not run: {skipped} (run {run_id}). "
            "Fix the cause and execute the workflow again."
        )


class NodeNotInitialized(EdgebusError):
    """An edge node's infrastructure was used before the runtime initialized it."""

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        super().__init__(
            f"Edge node {node_id!r} was not initialized: run it through LocalRuntime "
            "(which injects and starts the shared EdgeInfrastructure), or call "
            "`await node.initialize(EdgeInfrastructure.shared(edge_config))` first."
        )
