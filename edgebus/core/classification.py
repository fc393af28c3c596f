"""Compliance classification of a record: which data classes it holds, and why.

Field-name rules and value detectors run over the whole record, always; an explicit
class given by the writer can only *add* to what they find (DESIGN.md, "Trust
boundaries": labels are claims, not proof). The record's classes are the union of the
explicit classes and the detected ones (:func:`combine`); when nothing fires, the
explicit classes stand, and without them the record gets the configured default class.
Lowering what detection found is a declassification: the caller's explicit, recorded
choice (the SDK's ``declassify`` option writes the ``eb-declassified`` header), never
this module's; :attr:`Classification.uncovered` says what a label leaves out.

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
  bools and bytes are never inspected): e-mail addresses, US SSNs, payment cards
  (Luhn), IBANs (mod-97) and phone numbers anywhere in a string (in free text with
  stricter shapes, so filenames, order numbers, timestamps and versions stay
  clean); UK National Insurance numbers only as the whole value.

This module walks the record and gathers the findings. Paths: ``a.b`` for keys,
``a[0]`` for list/tuple/set items (sets walked sorted by ``repr``), ``""`` for the
record itself. Field names are data too: the value detectors read every key (a
record keyed by e-mail addresses holds PII), and such a finding's path ends in
``KEY_PATH`` instead of the key, which would show the data. Nesting deeper than 100
levels (or a record containing itself) is refused with
:class:`~edgebus.errors.InvalidInput`, and so is a field name longer than
``max_field_name_chars`` (``compliance.max_field_name_chars``), before any work on it.
The size of a record is the caller's to check, before classifying it (the SDK and the
state host refuse an event over ``kafka.max_batch_bytes`` first); every detector is
linear in the length of a string.

Field-name decisions, findings and short clean values are remembered in memos bounded
in bytes (:class:`~edgebus.core.bounded_cache.BoundedCache`), together at most
``cache_bytes`` (``compliance.classifier_cache_bytes``).

Pure: no I/O, no clock, no logging. The limits are arguments (their defaults are the
config's), not read from the config.
"""

from __future__ import annotations

import difflib
import functools
import operator
from collections.abc import Collection, Iterable, Mapping, Sequence, Set
from dataclasses import dataclass
from typing import Any

from edgebus.core.bounded_cache import ENTRY_OVERHEAD, BoundedCache, str_bytes
from edgebus.core.data_classes import FINANCIAL, PHI, PII, PUBLIC
from edgebus.core.detectors import scan_value
from edgebus.core.field_names import field_rules
from edgebus.errors import InvalidInput

__all__ = [
    "CLASSIFIER_CACHE_BYTES",
    "FINANCIAL",
    "KEY_PATH",
    "MAX_FIELD_NAME_CHARS",
    "PHI",
    "PII",
    "PUBLIC",
    "Classification",
    "Finding",
    "classify",
    "combine",
    "covers",
]

#: the path of a finding in a field *name* (the name itself is the data: not shown)
KEY_PATH = "(a field name)"

#: deeper nesting than this is refused (and stops a self-referencing record)
_MAX_DEPTH = 100
#: the default of ``compliance.max_field_name_chars``: longer field names are refused
MAX_FIELD_NAME_CHARS = 1_024
#: the default of ``compliance.classifier_cache_bytes``: what the memos hold together
CLASSIFIER_CACHE_BYTES = 16 * 1024 * 1024
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
    """The classes a record holds and the findings that put them there.

    ``classes`` is what placement uses: the union of ``labelled`` (the explicit
    classes, empty when none was given) and ``detected`` (what field-name rules and
    value detectors found, empty when nothing fired), by :func:`combine`; or the
    default class when both are empty.
    """

    classes: frozenset[str]
    findings: tuple[Finding, ...]
    explicit: bool
    detected: frozenset[str] = frozenset()
    labelled: frozenset[str] = frozenset()

    @property
    def label(self) -> str:
        """The classes sorted and joined with ``","`` (the header value)."""
        return ",".join(sorted(self.classes))

    @property
    def uncovered(self) -> frozenset[str]:
        """The detected classes the explicit label does not cover: what the label
        alone would have lowered (empty without a label, or when it covers them)."""
        if not self.explicit:
            return frozenset()
        return frozenset(c for c in self.detected if not covers(self.labelled, (c,)))


def combine(labelled: Iterable[str], detected: Iterable[str]) -> frozenset[str]:
    """The classes of a record labelled ``labelled`` in which detection found
    ``detected``: their union, where PHI subsumes PII (as in detection) and
    ``public``, which requires nothing, is dropped beside any other class."""
    classes = {*labelled, *detected}
    if PHI in classes:
        classes.discard(PII)
    if len(classes) > 1:
        classes.discard(PUBLIC)
    return frozenset(classes)


def covers(classes: Collection[str], detected: Iterable[str]) -> bool:
    """Whether data of ``classes`` may hold what detection found (``detected``): each
    detected class is among them (PII also under PHI, which subsumes it)."""
    return all(c in classes or (c == PII and PHI in classes) for c in detected)


# ----------------------------------------------------------------------------- walking

#: what a Finding or a ``(class, rule)`` pair costs in a memo besides its strings
_FINDING_BYTES = 64
_RULE_BYTES = 128


def _weigh_findings(name: str, found: tuple[Finding, ...]) -> int:
    return str_bytes(name) + ENTRY_OVERHEAD + _FINDING_BYTES * len(found)


def _weigh_rules(name: str, rules: tuple[tuple[str, str], ...]) -> int:
    return str_bytes(name) + ENTRY_OVERHEAD + _RULE_BYTES * len(rules)


def _weigh_finding(key: tuple[str, str, str], _found: Finding) -> int:
    return str_bytes(key[0]) + ENTRY_OVERHEAD + 2 * _FINDING_BYTES


def _weigh_clean(value: str, _seen: bool) -> int:
    return str_bytes(value) + ENTRY_OVERHEAD


#: the memos; each holds a quarter of ``cache_bytes``. Field names and paths repeat
#: from record to record, and so do short values (event names, pages, statuses).
#: Findings of a top-level field (path == name), built once per name
_TOP_LEVEL: BoundedCache[str, tuple[Finding, ...]] = BoundedCache(
    CLASSIFIER_CACHE_BYTES // 4, _weigh_findings
)
#: the rules of the names of nested fields
_RULES: BoundedCache[str, tuple[tuple[str, str], ...]] = BoundedCache(
    CLASSIFIER_CACHE_BYTES // 4, _weigh_rules
)
#: Finding objects by (path, class, rule)
_FINDINGS: BoundedCache[tuple[str, str, str], Finding] = BoundedCache(
    CLASSIFIER_CACHE_BYTES // 4, _weigh_finding
)
#: short string values in which no detector found anything, seen in fields no rule
#: classifies: a detector's answer depends on the string alone. Values of classified
#: fields are never kept, so the memo holds no data a rule calls personal.
_CLEAN: BoundedCache[str, bool] = BoundedCache(CLASSIFIER_CACHE_BYTES // 4, _weigh_clean)
_CLEAN_MAX_CHARS = 64
_MEMOS = (_TOP_LEVEL, _RULES, _FINDINGS, _CLEAN)
#: the memos' dicts and lookups, for the hot path (the memos never replace them)
_TOP_GET = _TOP_LEVEL.entries.get
_CLEAN_ENTRIES = _CLEAN.entries
_FINDING_GET = _FINDINGS.entries.get
#: what the memos hold together at most, as last set by classify()
_cache_bytes = CLASSIFIER_CACHE_BYTES
#: the longest name _TOP_LEVEL may hold (names are checked against the limit when
#: first seen: a call with a lower limit than this starts that memo afresh)
_longest_top_name = 0
_CLS_OF = operator.attrgetter("cls")


def _set_cache_bytes(total: int) -> None:
    global _cache_bytes
    if total < 0:
        raise InvalidInput(f"cache_bytes must be at least 0, got {total}")
    for memo in _MEMOS:
        memo.resize(total // len(_MEMOS))
    _cache_bytes = total


def _forget_top_level_names() -> None:
    global _longest_top_name
    _TOP_LEVEL.clear()
    _longest_top_name = 0


def _name_too_long(path: str, name: str, limit: int) -> InvalidInput:
    where = f" in {path[:60]!r}" if path else ""
    shown = name if len(name) <= 40 else name[:40] + "..."
    return InvalidInput(
        f"Field name {shown!r}{where} is {len(name)} characters long, over "
        f"the limit of {limit} (compliance.max_field_name_chars). Shorten it (keep data "
        "in values, not in field names), or raise compliance.max_field_name_chars."
    )


def _finding(path: str, cls: str, rule: str) -> Finding:
    key = (path, cls, rule)
    found = _FINDING_GET(key)  # not marked used: see _walk_mapping
    if found is None:
        found = Finding(path, cls, rule)
        _FINDINGS.put(key, found)
    return found


def _top_level_findings(name: str, limit: int) -> tuple[Finding, ...]:
    """Findings of a top-level field (path == name), built once per name."""
    global _longest_top_name
    found = _TOP_LEVEL.get(name)
    if found is None:
        if len(name) > limit:
            raise _name_too_long("", name, limit)
        found = tuple(Finding(name, c, r) for c, r in field_rules(name)) + tuple(
            Finding(KEY_PATH, c, r) for c, r in _key_hits(name)
        )
        _TOP_LEVEL.put(name, found)
        _longest_top_name = max(_longest_top_name, len(name))
    return found


def _nested_rules(path: str, name: str, limit: int) -> tuple[tuple[str, str], ...]:
    """The rules of the name of a field inside ``path``."""
    if len(name) > limit:
        raise _name_too_long(path, name, limit)
    rules = _RULES.get(name)
    if rules is None:
        rules = field_rules(name)
        _RULES.put(name, rules)
    return rules


def _key_hits(name: str) -> tuple[tuple[str, str], ...]:
    """What the value detectors find in a field *name* (data used as a key, such as
    ``{"ann@example.com": 1}``): ``(class, rule)`` pairs, built once per name."""
    memo = "\0" + name  # beside the names' rules, never equal to one
    hits = _RULES.get(memo)
    if hits is None:
        hits = tuple(scan_value(name))
        _RULES.put(memo, hits)
    return hits


def _walk(value: object, path: str, out: list[Finding], depth: int, limit: int) -> None:
    """Walk any value; ``depth`` counts the containers above it, ``limit`` is the
    longest field name allowed."""
    if depth > _MAX_DEPTH:
        raise InvalidInput(
            f"Cannot classify data nested more than {_MAX_DEPTH} levels deep at "
            f"{path[:200] or 'the top level'!r} (or containing itself). Flatten the record."
        )
    if type(value) is dict:
        _walk_mapping(value, path, out, depth, limit)
    elif type(value) is list or type(value) is tuple:
        _walk_items(enumerate(value), path, out, depth, limit)
    elif isinstance(value, str):
        for cls, rule in scan_value(str(value)):
            out.append(_finding(path, cls, rule))
    elif isinstance(value, Mapping):
        _walk_mapping(value, path, out, depth, limit)
    elif isinstance(value, (bytes, bytearray, memoryview)):
        return
    elif isinstance(value, Set):
        # sets have no stable order: walk them sorted by repr so findings are stable
        _walk_items(enumerate(sorted(value, key=repr)), path, out, depth, limit)
    elif isinstance(value, Sequence):
        _walk_items(enumerate(value), path, out, depth, limit)


def _walk_items(
    items: Iterable[tuple[int, object]], path: str, out: list[Finding], depth: int, limit: int
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
            _walk(item, f"{path}[{i}]", out, depth + 1, limit)


def _walk_mapping(
    data: Mapping[Any, object], path: str, out: list[Finding], depth: int, limit: int
) -> None:
    # the memos' dicts, read directly: a hit is not marked used (on this path the
    # memos are first-in first-out; marking costs more than an occasional miss)
    top_get = _TOP_GET
    clean = _CLEAN_ENTRIES
    for key, item in data.items():
        if not path and type(key) is str:
            # the hot path: a top-level field of a flat record
            child = key
            found = top_get(key)
            if found is None:
                found = _top_level_findings(key, limit)
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
                    _CLEAN.put(item, True)
                continue
        elif isinstance(key, str):
            name = str(key)
            if path:
                child = f"{path}.{name}"
                for cls, rule in _nested_rules(path, name, limit):
                    out.append(_finding(child, cls, rule))
                for cls, rule in _key_hits(name):  # the path would hold the data
                    out.append(_finding(f"{path}.{KEY_PATH}", cls, rule))
            else:
                child = name
                out.extend(_top_level_findings(name, limit))
        else:
            child = f"{path}.{key}" if path else str(key)
        kind = type(item)
        if kind is str:
            hits = scan_value(item)  # type: ignore[arg-type]
            if hits:
                for cls, rule in hits:
                    out.append(_finding(child, cls, rule))
        elif kind not in _SCALARS:
            _walk(item, child, out, depth + 1, limit)


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
    max_field_name_chars: int = MAX_FIELD_NAME_CHARS,
    cache_bytes: int = CLASSIFIER_CACHE_BYTES,
) -> Classification:
    """Classify ``data`` (a record: dicts, lists, tuples, strings, nested).

    Field-name rules and value detectors run over the whole record. ``explicit`` (a
    class, a comma-separated list of classes, or a sequence; lower-cased) can only add
    to what they find: the classes are their union (:func:`combine`: a record labelled
    ``public`` holding an e-mail address is ``pii``). When nothing fires the explicit
    classes stand, and without them the classes are ``{default}``. With
    ``known_classes`` each explicit class must be known (or be ``"public"`` or
    ``default``), else :class:`~edgebus.errors.InvalidInput` names it and suggests the
    nearest. An empty explicit value counts as none.

    A field name longer than ``max_field_name_chars`` is refused with
    :class:`~edgebus.errors.InvalidInput` before any work on it. ``cache_bytes`` bounds
    what the classifier's memos hold together (shared by every call in the process:
    the last value given wins).
    """
    if cache_bytes != _cache_bytes:
        _set_cache_bytes(cache_bytes)
    labelled: tuple[str, ...] = ()
    if explicit is not None:
        labelled = _explicit_classes(explicit)
        if labelled and known_classes is not None:
            _check_known(labelled, known_classes, default.strip().lower() or PUBLIC)
    if max_field_name_chars < _longest_top_name:
        _forget_top_level_names()  # it may hold names this call must refuse
    findings: list[Finding] = []
    if type(data) is dict:
        _walk_mapping(data, "", findings, 0, max_field_name_chars)
    else:
        _walk(data, "", findings, 0, max_field_name_chars)
    if labelled:
        return _labelled(labelled, findings)
    if not findings:
        return _default_classification(default.strip().lower() or PUBLIC)
    found = set(map(_CLS_OF, findings))
    if PHI in found:
        found.discard(PII)
    detected = frozenset(found)
    return Classification(detected, tuple(findings), False, detected)


def _labelled(labelled: tuple[str, ...], findings: list[Finding]) -> Classification:
    """The classification of a record labelled ``labelled`` with ``findings``."""
    detected = combine((), map(_CLS_OF, findings)) if findings else frozenset()
    return Classification(
        combine(labelled, detected),
        (*findings, *(Finding("", c, "explicit") for c in labelled)),
        True,
        detected,
        frozenset(labelled),
    )
