"""Compliance classification of a record: which data classes it holds, and why.

Order of precedence (DESIGN.md, "Compliance and placement"): an explicit class given
by the writer wins; otherwise field-name rules and value detectors run over the whole
record; when nothing fires the record gets the configured default class.

Classes detected here are ``"pii"``, ``"phi"`` and ``"financial"``
(:mod:`edgebus.core.data_classes`). PHI subsumes PII: a record with both holds
protected health information about an identifiable person, so its classes contain
``"phi"`` and not ``"pii"`` (the findings still list the PII rules that fired, so a
reader sees why). Financial combines with either.

What fires, and the decisions behind it, is in two modules of its own:

* :mod:`edgebus.core.field_names`: field names split into tokens (``snake_case``,
  ``camelCase``, compounds of known words) and the rules on them, which match tokens,
  never substrings (``filename`` is not a person's name, ``healthcheck`` not PHI).
* :mod:`edgebus.core.detectors`: value detectors, on string values only (numbers,
  bools and bytes are never inspected): e-mail addresses and US SSNs anywhere in a
  string; phone numbers, UK National Insurance numbers, payment cards (Luhn) and
  IBANs (mod-97) only as the whole value.

This module walks the record and gathers the findings. Paths: ``a.b`` for keys,
``a[0]`` for list/tuple/set items (sets walked sorted by ``repr``), ``""`` for the
record itself. Nesting deeper than 100 levels (or a record containing itself) is
refused with :class:`~edgebus.errors.InvalidInput`.

Pure: no I/O, no clock, no logging. Field-name decisions are cached per name.
"""

from __future__ import annotations

import difflib
import functools
import operator
from collections.abc import Collection, Iterable, Mapping, Sequence, Set
from dataclasses import dataclass
from typing import Any

from edgebus.core.data_classes import FINANCIAL, PHI, PII, PUBLIC
from edgebus.core.detectors import scan_value
from edgebus.core.field_names import field_rules
from edgebus.errors import InvalidInput

__all__ = [
    "FINANCIAL",
    "PHI",
    "PII",
    "PUBLIC",
    "Classification",
    "Finding",
    "classify",
]

#: deeper nesting than this is refused (and stops a self-referencing record)
_MAX_DEPTH = 100
_SCALARS = frozenset({int, float, bool, type(None)})


@dataclass(frozen=True, slots=True)
class Finding:
    """One rule that fired: where (``path``), which class, which rule.

    ``path`` is ``"email"``, ``"contact.email"``, ``"items[0].card"``; ``""`` is the
    record itself (a bare string value, an explicit class or the default). ``rule``
    is ``"field:<concept>"``, ``"value:<detector>"``, ``"explicit"`` or ``"default"``.
    """

    path: str
    cls: str
    rule: str


@dataclass(frozen=True, slots=True)
class Classification:
    """The classes a record holds and the findings that put them there."""

    classes: frozenset[str]
    findings: tuple[Finding, ...]
    explicit: bool

    @property
    def label(self) -> str:
        """The classes sorted and joined with ``","`` (the header value)."""
        return ",".join(sorted(self.classes))


# ----------------------------------------------------------------------------- walking

#: memo of Finding objects: paths and rules repeat from record to record
_FINDINGS: dict[tuple[str, str, str], Finding] = {}
_TOP_LEVEL: dict[str, tuple[Finding, ...]] = {}
_MEMO_LIMIT = 8192
_CLS_OF = operator.attrgetter("cls")


def _finding(path: str, cls: str, rule: str) -> Finding:
    key = (path, cls, rule)
    found = _FINDINGS.get(key)
    if found is None:
        if len(_FINDINGS) >= _MEMO_LIMIT:
            _FINDINGS.clear()
        found = _FINDINGS[key] = Finding(path, cls, rule)
    return found


def _top_level_findings(name: str) -> tuple[Finding, ...]:
    """Findings of a top-level field (path == name), built once per name."""
    found = _TOP_LEVEL.get(name)
    if found is None:
        if len(_TOP_LEVEL) >= _MEMO_LIMIT:
            _TOP_LEVEL.clear()
        found = _TOP_LEVEL[name] = tuple(Finding(name, c, r) for c, r in field_rules(name))
    return found


#: short string values in which no detector found anything, seen in fields no rule
#: classifies: values repeat from record to record (event names, pages, statuses), and
#: a detector's answer depends on the string alone. Values of classified fields are
#: never kept, so the memo holds no data a rule calls personal.
_CLEAN: dict[str, None] = {}
_CLEAN_LIMIT = 4096
_CLEAN_MAX_CHARS = 64


def _walk(value: object, path: str, out: list[Finding], depth: int) -> None:
    """Walk any value; ``depth`` counts the containers above it."""
    if depth > _MAX_DEPTH:
        raise InvalidInput(
            f"Cannot classify data nested more than {_MAX_DEPTH} levels deep at "
            f"{path or 'the top level'!r} (or containing itself). Flatten the record."
        )
    if type(value) is dict:
        _walk_mapping(value, path, out, depth)
    elif type(value) is list or type(value) is tuple:
        _walk_items(enumerate(value), path, out, depth)
    elif isinstance(value, str):
        for cls, rule in scan_value(str(value)):
            out.append(_finding(path, cls, rule))
    elif isinstance(value, Mapping):
        _walk_mapping(value, path, out, depth)
    elif isinstance(value, (bytes, bytearray, memoryview)):
        return
    elif isinstance(value, Set):
        # sets have no stable order: walk them sorted by repr so findings are stable
        _walk_items(enumerate(sorted(value, key=repr)), path, out, depth)
    elif isinstance(value, Sequence):
        _walk_items(enumerate(value), path, out, depth)


def _walk_items(
    items: Iterable[tuple[int, object]], path: str, out: list[Finding], depth: int
) -> None:
    for i, item in items:
        kind = type(item)
        if kind is str:
            hits = scan_value(item)  # type: ignore[arg-type]
            if hits:
                child = f"{path}[{i}]"
                for cls, rule in hits:
                    out.append(_finding(child, cls, rule))
        elif kind not in _SCALARS:
            _walk(item, f"{path}[{i}]", out, depth + 1)


def _walk_mapping(data: Mapping[Any, object], path: str, out: list[Finding], depth: int) -> None:
    top = _TOP_LEVEL
    clean = _CLEAN
    for key, item in data.items():
        if not path and type(key) is str:
            # the hot path: a top-level field of a flat record
            child = key
            found = top.get(key)
            if found is None:
                found = _top_level_findings(key)
            if found:
                out.extend(found)
            if type(item) is str:
                if item in clean:
                    continue
                hits = scan_value(item)
                if hits:
                    for cls, rule in hits:
                        out.append(_finding(child, cls, rule))
                elif not found and len(item) <= _CLEAN_MAX_CHARS:
                    if len(clean) >= _CLEAN_LIMIT:
                        clean.clear()
                    clean[item] = None
                continue
        elif isinstance(key, str):
            name = str(key)
            if path:
                child = f"{path}.{name}"
                for cls, rule in field_rules(name):
                    out.append(_finding(child, cls, rule))
            else:
                child = name
                out.extend(_top_level_findings(name))
        else:
            child = f"{path}.{key}" if path else str(key)
        kind = type(item)
        if kind is str:
            hits = scan_value(item)  # type: ignore[arg-type]
            if hits:
                for cls, rule in hits:
                    out.append(_finding(child, cls, rule))
        elif kind not in _SCALARS:
            _walk(item, child, out, depth + 1)


# ---------------------------------------------------------------------------- classify


@functools.lru_cache(maxsize=64)
def _default_classification(default: str) -> Classification:
    return Classification(frozenset({default}), (Finding("", default, "default"),), False)


def _explicit_classes(explicit: str | Sequence[str]) -> tuple[str, ...]:
    parts = explicit.split(",") if isinstance(explicit, str) else list(explicit)
    classes: list[str] = []
    for part in parts:
        if not isinstance(part, str):
            raise InvalidInput(
                f"Explicit classification must be strings, got {part!r}. "
                "Pass a class name such as 'pii' or a list of them."
            )
        cls = part.strip().lower()
        if cls and cls not in classes:
            classes.append(cls)
    return tuple(sorted(classes))


def _check_known(classes: tuple[str, ...], known: Collection[str], default: str) -> None:
    allowed = {k.lower() for k in known} | {PUBLIC, default}
    for cls in classes:
        if cls not in allowed:
            choices = sorted(allowed)
            match = difflib.get_close_matches(cls, choices, n=1)
            hint = f" (did you mean {match[0]!r}?)" if match else ""
            raise InvalidInput(
                f"Unknown data classification {cls!r}{hint}. Known classifications: "
                f"{', '.join(choices)}. Use one of them, or add {cls!r} to "
                "compliance.data_classifications in your edge_config."
            )


def classify(
    data: object,
    explicit: str | Sequence[str] | None = None,
    *,
    default: str = PUBLIC,
    known_classes: Collection[str] | None = None,
) -> Classification:
    """Classify ``data`` (a record: dicts, lists, tuples, strings, nested).

    ``explicit`` (a class, a comma-separated list of classes, or a sequence) wins
    over detection and is returned lower-cased; with ``known_classes`` each explicit
    class must be known (or be ``"public"`` or ``default``), else
    :class:`~edgebus.errors.InvalidInput` names it and suggests the nearest. An
    empty explicit value counts as none.

    Without an explicit class, field-name rules and value detectors run over the
    whole record; when nothing fires, the classes are ``{default}``.
    """
    if explicit is not None:
        classes = _explicit_classes(explicit)
        if classes:
            if known_classes is not None:
                _check_known(classes, known_classes, default.strip().lower() or PUBLIC)
            return Classification(
                frozenset(classes), tuple(Finding("", c, "explicit") for c in classes), True
            )
    findings: list[Finding] = []
    if type(data) is dict:
        _walk_mapping(data, "", findings, 0)
    else:
        _walk(data, "", findings, 0)
    if not findings:
        return _default_classification(default.strip().lower() or PUBLIC)
    found = set(map(_CLS_OF, findings))
    if PHI in found:
        found.discard(PII)
    return Classification(frozenset(found), tuple(findings), False)
