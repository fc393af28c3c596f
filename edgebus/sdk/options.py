"""The options of the SDK's calls, as typed values checked once.

:class:`EdgeBus <edgebus.sdk.EdgeBus>`'s methods take their options as keywords, typed
by the TypedDicts below (mypy checks names and types at every call site). At the entry
of a call the keywords become one immutable value — :class:`WriteOptions` or
:class:`ReadOptions` — that has checked every value that does not depend on the
configuration (levels, operations, strategies, numbers, name lists), so the layers
below (placement, encoding, routing) take one typed value instead of a dozen loose
parameters. A call without options uses a shared default value: the write hot path
checks nothing twice.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, Required, TypedDict

from edgebus.core.envelope import Operation
from edgebus.core.freshness import MAX_WAIT_MS
from edgebus.core.placement import FALLBACKS, STRATEGIES, Fallback, Strategy
from edgebus.core.session import SessionToken
from edgebus.errors import InvalidInput, UnsupportedConsistency
from edgebus.wire.headers import MAX_DECLASSIFIED_BY_CHARS, MAX_DECLASSIFIED_REASON_CHARS

__all__ = [
    "NO_READ_OPTIONS",
    "NO_WRITE_OPTIONS",
    "AnyWriteKeywords",
    "CommitKeywords",
    "Declassification",
    "PlacementKeywords",
    "ReadKeywords",
    "ReadOptions",
    "StrongWriteKeywords",
    "WriteKeywords",
    "WriteOptions",
    "names",
]

EdgeStrategy = Strategy
EDGE_STRATEGIES: tuple[str, ...] = ("lowest_latency", "balanced", "compliance_first")
WRITE_LEVELS: tuple[str, ...] = ("eventual", "causal", "strong")
READ_LEVELS: tuple[str, ...] = ("eventual", "causal", "bounded_staleness", "strong")
READ_FALLBACKS: tuple[str, ...] = ("route", "raise")


class PlacementKeywords(TypedDict, total=False):
    """Where a write may go (:meth:`EdgeBus.plan <edgebus.sdk.EdgeBus.plan>`)."""

    #: the caller's location (its home region, if compliance allows it)
    region: str | None
    #: explicit class(es); detection may find more
    classification: str | Sequence[str] | None
    replication_factor: int | None
    preferred_locations: str | Sequence[str]
    exclude_locations: str | Sequence[str]
    compliance_zones: str | Sequence[str]
    edge_strategy: EdgeStrategy | None
    #: ``any_available``: another healthy compliant region when the home is down
    fallback_strategy: Literal["none", "any_available"] | None
    min_replicas: int | None


@dataclass(frozen=True, slots=True)
class Declassification:
    """The ``declassify`` option of a write: write the data with its explicit
    ``classification`` although detection found more, and record who, when and why in
    the event (header ``eb-declassified``). ``by`` defaults to the writer (the bus's
    ``client_id``); neither ``by`` nor ``reason`` may hold data detection classifies
    (the record travels with every copy of the event)."""

    reason: str
    by: str | None = None


class WriteKeywords(PlacementKeywords, total=False):
    """The options of an eventual or causal write (:meth:`EdgeBus.write
    <edgebus.sdk.EdgeBus.write>`)."""

    #: lower what detection found to ``classification`` (a reason, or who and why),
    #: recorded in the event; without it a label only adds to detection
    declassify: str | Declassification | None
    operation: str | Operation | None
    #: the spec's parameter: picks the operation (a counter adds, append appends, ...)
    conflict_resolution: str | None
    consistency: Literal["eventual", "causal"]
    #: a session token (any process): this write causally follows what it covers
    session: SessionToken | str | None


class CommitKeywords(PlacementKeywords, total=False):
    """The options of a strong write (:meth:`EdgeBus.commit <edgebus.sdk.EdgeBus.commit>`)."""

    operation: str | Operation | None
    conflict_resolution: str | None
    session: SessionToken | str | None
    #: compare-and-set: commit only if the key's version is this everywhere (0: absent)
    expected_version: int | None
    #: undecided by then, it aborts (default ``strong.timeout_ms``)
    timeout_ms: int | None


class StrongWriteKeywords(CommitKeywords, total=False):
    """``write(..., consistency="strong")``: a commit."""

    consistency: Required[Literal["strong"]]


class AnyWriteKeywords(CommitKeywords, total=False):
    """Every option a write may be given (its level decides which apply)."""

    consistency: Literal["eventual", "causal", "strong"]
    #: eventual and causal writes only (a strong write refuses it)
    declassify: str | Declassification | None


class ReadKeywords(TypedDict, total=False):
    """The options of a read (:meth:`EdgeBus.read <edgebus.sdk.EdgeBus.read>`)."""

    consistency: Literal["eventual", "causal", "bounded_staleness", "strong"]
    session: SessionToken | str | None
    staleness_threshold_ms: float | None
    max_versions_behind: int | None
    wait_ms: float | None
    #: ``route``: another region fresh enough serves; ``raise``: raise instead
    fallback: Literal["route", "raise"] | None
    exclude_locations: str | Sequence[str]
    #: regions to ask first (in this order), before the strategy's ranking
    preferred_locations: str | Sequence[str]
    #: how the other regions are ranked (default: the config's ``edge_strategy``)
    edge_strategy: Strategy | None


_WRITE_NAMES = frozenset(WriteKeywords.__annotations__) | frozenset(
    CommitKeywords.__annotations__
) | frozenset(PlacementKeywords.__annotations__)
_READ_NAMES = frozenset(ReadKeywords.__annotations__)


def names(value: str | Sequence[str], what: str) -> tuple[str, ...]:
    """A list of names; a single string is one name (not a list of characters)."""
    if value == () and value.__class__ is tuple:  # the default: most calls
        return ()
    if isinstance(value, str):
        return (value,) if value else ()
    try:
        found = tuple(value)
    except TypeError:
        raise InvalidInput(f"{what} must be a name or a list of names, got {value!r}") from None
    if not all(isinstance(n, str) for n in found):
        raise InvalidInput(f"{what} must be a name or a list of names, got {value!r}")
    return found


def _unknown(given: Mapping[str, Any], known: frozenset[str], call: str) -> None:
    unknown = sorted(set(given) - known)
    if unknown:
        near = difflib.get_close_matches(unknown[0], sorted(known), n=1)
        hint = f"; did you mean {near[0]!r}?" if near else "."
        raise InvalidInput(
            f"{call}() got unknown option(s) {', '.join(unknown)}{hint} Its options: "
            f"{', '.join(sorted(known))}."
        )


_NO_PLACEMENT: tuple[Any, ...] = ((), (), (), None, None, None, None)


def _positive_int(name: str, value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
        raise InvalidInput(f"{name} must be a positive int, got {value!r}")


def _count(name: str, value: Any) -> Any:
    """``value``: None or an int >= 0 (InvalidInput naming ``name`` otherwise)."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise InvalidInput(f"{name} must be an int >= 0, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class WriteOptions:
    """Every option of a write, commit or plan, checked (immutable and hashable).

    Made by :meth:`of` from a call's keywords. What depends on the configuration
    (whether a region exists, which regions a session token names) and on the data
    (an increment's number) is checked where the configuration and the data are.
    """

    region: str | None = None
    #: None, one class name, or a tuple of them
    classification: str | tuple[str, ...] | None = None
    operation: Operation | None = None
    conflict_resolution: str | None = None
    consistency: str = "eventual"
    replication_factor: int | None = None
    preferred_locations: tuple[str, ...] = ()
    exclude_locations: tuple[str, ...] = ()
    compliance_zones: tuple[str, ...] = ()
    edge_strategy: EdgeStrategy | None = None
    session: SessionToken | str | None = None
    fallback_strategy: Fallback | None = None
    min_replicas: int | None = None
    expected_version: int | None = None
    timeout_ms: int | None = None
    #: write with the explicit classification although detection found more (recorded)
    declassify: Declassification | None = None
    #: the placement options as one hashable value, None when none is given (then the
    #: route depends only on the data's classes, the caller's region and what
    #: discovery knows); derived once, when the value is made
    placement: tuple[Any, ...] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        given = (
            self.preferred_locations, self.exclude_locations, self.compliance_zones,
            self.replication_factor, self.edge_strategy, self.fallback_strategy,
            self.min_replicas,
        )
        object.__setattr__(self, "placement", None if given == _NO_PLACEMENT else given)

    @classmethod
    def of(cls, keywords: Mapping[str, Any], call: str = "write") -> WriteOptions:
        """Check a call's keywords (``call`` names the method in messages).

        Calls that repeat the same hashable options (``region="eu-west-1"`` on every
        write, say) get the value checked the first time: the check runs once."""
        if "session" in keywords:  # tokens change from call to call: not remembered
            return cls._checked(keywords, call)
        try:
            remembered = _CHECKED.get(tuple(keywords.items()))
        except TypeError:  # a list among the values: check it every time
            return cls._checked(keywords, call)
        if remembered is not None:
            if remembered.declassify is not None and call == "commit":
                raise _not_for_commits()  # checked for a write: remembered for any call
            return remembered
        checked = cls._checked(keywords, call)
        if len(_CHECKED) >= _CHECKED_MAX:
            _CHECKED.clear()
        _CHECKED[tuple(keywords.items())] = checked
        return checked

    @classmethod
    def _checked(cls, keywords: Mapping[str, Any], call: str) -> WriteOptions:
        _unknown(keywords, _WRITE_NAMES, call)
        consistency = keywords.get("consistency", "eventual")
        if consistency not in WRITE_LEVELS:
            raise UnsupportedConsistency(
                f"consistency {consistency!r} is not a write level: use 'eventual' or "
                "'causal' (append to the home region; 'causal' orders the write after the "
                "session token) or 'strong' (two-phase commit across the placement). "
                "bounded_staleness is a read level."
            )
        operation = keywords.get("operation")
        if operation is not None and operation.__class__ is not Operation:
            try:
                operation = Operation(operation)
            except ValueError:
                choices = ", ".join(o.value for o in Operation)
                raise InvalidInput(f"operation {operation!r} is not one of {choices}") from None
        classification = keywords.get("classification")
        if classification is not None and not isinstance(classification, str):
            classification = names(classification, "classification")
        strategy = keywords.get("edge_strategy")
        if strategy is not None and strategy not in EDGE_STRATEGIES:
            raise InvalidInput(
                f"edge_strategy {strategy!r} is not one of lowest_latency, balanced, "
                "compliance_first"
            )
        fallback = keywords.get("fallback_strategy")
        if fallback is not None and fallback not in FALLBACKS:
            raise InvalidInput(
                f"fallback_strategy {fallback!r} is not one of {', '.join(FALLBACKS)}"
            )
        expected = _count("expected_version", keywords.get("expected_version"))
        _positive_int("timeout_ms", keywords.get("timeout_ms"))
        declassify = _declassification(keywords.get("declassify"), classification,
                                       "commit" if consistency == "strong" else call)
        return cls(
            region=keywords.get("region"),
            classification=classification,
            operation=operation,
            conflict_resolution=keywords.get("conflict_resolution"),
            consistency=consistency,
            replication_factor=keywords.get("replication_factor"),
            preferred_locations=names(keywords.get("preferred_locations", ()),
                                      "preferred_locations"),
            exclude_locations=names(keywords.get("exclude_locations", ()), "exclude_locations"),
            compliance_zones=names(keywords.get("compliance_zones", ()), "compliance_zones"),
            edge_strategy=strategy,
            session=keywords.get("session"),
            fallback_strategy=fallback,
            min_replicas=keywords.get("min_replicas"),
            expected_version=expected,
            timeout_ms=keywords.get("timeout_ms"),
            declassify=declassify,
        )


def _declassification(value: Any, classification: Any, call: str) -> Declassification | None:
    """The ``declassify`` option, checked: a reason (text) or a Declassification, given
    with the classification to write as, on an eventual or causal write."""
    if value is None:
        return None
    if isinstance(value, str):
        value = Declassification(value)
    if not isinstance(value, Declassification):
        raise InvalidInput(
            f"declassify must be a reason (text) or a Declassification, got {value!r:.80}")
    if call == "commit":
        raise _not_for_commits()
    if not classification:
        raise InvalidInput(
            "declassify needs classification=, the classes to write the data as (e.g. "
            "classification='public', declassify='...why...')")
    for name, text, limit in (("reason", value.reason, MAX_DECLASSIFIED_REASON_CHARS),
                              ("by", value.by, MAX_DECLASSIFIED_BY_CHARS)):
        if text is None and name == "by":
            continue
        if not isinstance(text, str) or not text.strip() or len(text) > limit:
            raise InvalidInput(
                f"declassify's {name} must be text of 1 to {limit} characters, got "
                f"{text!r:.80}: say {'who declassifies' if name == 'by' else 'why'}")
    return value


def _not_for_commits() -> InvalidInput:
    return InvalidInput(
        "declassify applies to eventual and causal writes only: a strong commit does "
        "not carry the declassification record. Write the data eventually (or "
        "causally), or commit it with the classes detection finds")


#: a call without options
NO_WRITE_OPTIONS = WriteOptions()
#: the options of recent calls, by their keywords (every value hashable), checked
_CHECKED: dict[tuple[tuple[str, Any], ...], WriteOptions] = {}
_CHECKED_MAX = 1024


class ReadOptions(NamedTuple):
    """Every option of a read, checked (immutable)."""

    consistency: str = "eventual"
    session: SessionToken | str | None = None
    staleness_threshold_ms: float | None = None
    max_versions_behind: int | None = None
    wait_ms: float | None = None
    fallback: str | None = None
    exclude_locations: tuple[str, ...] = ()
    preferred_locations: tuple[str, ...] = ()
    edge_strategy: Strategy | None = None

    @classmethod
    def of(cls, keywords: Mapping[str, Any]) -> ReadOptions:
        """Check a read's keywords."""
        _unknown(keywords, _READ_NAMES, "read")
        consistency = keywords.get("consistency", "eventual")
        if consistency not in READ_LEVELS:
            raise InvalidInput(
                f"consistency {consistency!r} is not one of eventual, causal, "
                "bounded_staleness, strong"
            )
        wait = keywords.get("wait_ms")
        if wait is not None:
            if isinstance(wait, bool) or not isinstance(wait, int | float):
                raise InvalidInput(f"wait_ms must be a number of ms, got {wait!r}")
            if not 0 <= wait <= MAX_WAIT_MS:
                raise InvalidInput(
                    f"wait_ms must be from 0 to {MAX_WAIT_MS} ms (a region holds the read "
                    f"that long), got {wait!r}"
                )
        fallback = keywords.get("fallback")
        if fallback is not None and fallback not in READ_FALLBACKS:
            raise InvalidInput(f"fallback {fallback!r} is not one of route, raise")
        threshold = keywords.get("staleness_threshold_ms")
        if threshold is not None and (
            isinstance(threshold, bool) or not isinstance(threshold, int | float)
            or threshold <= 0
        ):
            raise InvalidInput(
                f"staleness_threshold_ms must be a positive number, got {threshold!r}"
            )
        behind = _count("max_versions_behind", keywords.get("max_versions_behind"))
        return cls(
            consistency=consistency,
            session=keywords.get("session"),
            staleness_threshold_ms=threshold,
            max_versions_behind=behind,
            wait_ms=None if wait is None else float(wait),
            fallback=fallback,
            exclude_locations=names(keywords.get("exclude_locations", ()), "exclude_locations"),
            preferred_locations=names(
                keywords.get("preferred_locations", ()), "preferred_locations"
            ),
            edge_strategy=_strategy(keywords.get("edge_strategy")),
        )


def _strategy(value: Any) -> Strategy | None:
    """A read's ``edge_strategy``, checked (None: the config's)."""
    if value is None or value in STRATEGIES:
        return value  # type: ignore[no-any-return]
    raise InvalidInput(f"edge_strategy {value!r} is not one of {', '.join(STRATEGIES)}")


#: a read without options
NO_READ_OPTIONS = ReadOptions()
