"""Errors of the workflow API (all under :class:`~edgebus.errors.EdgebusError`).

A workflow that cannot be built raises :class:`WorkflowValidationError` listing every
problem at once, so a user fixes them in one pass.

**The shape of a failed run.** Once a run has started (its workflow and parameters
were accepted), whatever stops it is raised as a :class:`WorkflowExecutionError`
(from ``LocalRuntime``, its subclass
:class:`~edgebus.workflow.compensation.CompensatedExecutionError`) that keeps
``node_id``, ``type_name``, ``cause``, ``results`` (the nodes that completed),
``run_id`` and ``not_run``; ``retriable`` and ``exit_code`` are the cause's. When the
cause is an edgebus error, the error raised is *also an instance of the cause's
class*: ``except ComplianceViolation:`` (or ``InfrastructureUnavailable``,
``InvalidInput``, ...) around ``runtime.execute`` catches it, and the cause's own
attributes (``zones_required``, ``addresses``, ...) are on it too (where a name is both
the run's and the cause's, the run's wins; the cause itself is ``cause``). Its class
(:meth:`WorkflowExecutionError.of`) derives from both and is made once per cause class;
the cause class's ``__init__`` is never called. Its message is the run's (``Node 'x'
(T) failed: <cause class>: <cause message>...``); ``str(error.cause)`` is the cause's.

A failure that is no node's (the edge infrastructure did not start, before any node
ran) has ``node_id`` and ``type_name`` None, ``results`` empty, every node in
``not_run``, and a message that starts with the cause's (``No edge infrastructure
available: ...``).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any, Self, TypeVar

from edgebus.errors import EdgebusError, InvalidInput

__all__ = [
    "NodeNotInitialized",
    "UnknownNodeType",
    "WorkflowExecutionError",
    "WorkflowValidationError",
    "joined_class",
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
    ``node_id`` and ``type_name`` are None when the run failed before any node ran for
    a reason that is no node's (its edge infrastructure did not start). Made with
    :meth:`of`, the error is also an instance of the cause's class (see the module
    doc).
    """

    def __init__(
        self,
        node_id: str | None,
        type_name: str | None,
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
        if node_id is None:
            if not isinstance(cause, EdgebusError):
                reason = f"{type(cause).__name__}: {reason}"
            stop = "" if reason.endswith(".") else "."
            message = f"{reason}{stop} No node ran (run {run_id}; not run: {skipped})."
        else:
            message = (
                f"Node {node_id!r} ({type_name}) failed: {type(cause).__name__}: {reason}. "
                f"Completed before it: {done}; not run: {skipped} (run {run_id}). "
                "Fix the cause and execute the workflow again."
            )
        # not super(): in a class joined with the cause's (see `of`), the next class
        # in the MRO is the cause's, whose __init__ takes other arguments
        EdgebusError.__init__(self, message)

    def __str__(self) -> str:
        # the run's message, whatever __str__ the joined cause class has
        return str(self.args[0]) if self.args else ""

    @classmethod
    def of(
        cls,
        node_id: str | None,
        type_name: str | None,
        cause: BaseException,
        results: Mapping[str, Mapping[str, Any]],
        run_id: str,
        not_run: Sequence[str] = (),
        **extra: Any,
    ) -> Self:
        """The error of a run stopped by ``cause``: a ``cls`` (made with these
        arguments and ``extra``, the subclass's own) that is also an instance of
        ``type(cause)`` when the cause is an edgebus error, carrying the cause's
        attributes too (the run's win where both have one)."""
        joined = joined_class(cls, type(cause))
        if joined is cls:
            return cls(node_id, type_name, cause, results, run_id, not_run, **extra)
        try:
            error = joined.__new__(joined)
        except Exception:  # a cause class whose __new__ wants its own arguments
            return cls(node_id, type_name, cause, results, run_id, not_run, **extra)
        cls.__init__(error, node_id, type_name, cause, results, run_id, not_run, **extra)
        mine = vars(error)
        for name, value in vars(cause).items():
            if name not in mine and not name.startswith("__"):
                setattr(error, name, value)
        return error


W = TypeVar("W", bound=WorkflowExecutionError)

_joined: dict[tuple[type, type], type] = {}
_joined_lock = threading.Lock()


def joined_class(base: type[W], cause: type[BaseException]) -> type[W]:
    """The class of a ``base`` error whose cause is a ``cause``: a subclass of both,
    named ``Base[Cause]`` (made on first use, then cached). ``base`` itself when the
    cause is no edgebus error, or the two classes cannot be combined; the cause class
    when it is a ``base`` already (a failed run inside a node)."""
    if not issubclass(cause, EdgebusError):
        return base
    if issubclass(cause, base):
        return cause
    with _joined_lock:
        found = _joined.get((base, cause))
        if found is None:
            name = f"{base.__name__}[{cause.__name__}]"
            try:
                found = type(name, (base, cause), {
                    "__module__": base.__module__,
                    "__qualname__": name,
                    "__doc__": f"A {base.__name__} whose cause is a {cause.__name__}: "
                               "an instance of both (see edgebus.workflow.errors).",
                })
            except TypeError:  # no consistent MRO, or a layout conflict
                found = base
            _joined[(base, cause)] = found
    return found


class NodeNotInitialized(EdgebusError):
    """An edge node's infrastructure was used before the runtime initialized it."""

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        super().__init__(
            f"Edge node {node_id!r} was not initialized: run it through LocalRuntime "
            "(which injects and starts the shared EdgeInfrastructure), or call "
            "`await node.initialize(EdgeInfrastructure.shared(edge_config))` first."
        )
