"""What the saga progress log may hold: only data its region may hold.

The progress log ``edgebus.<L>.sagas`` lives on the cluster of one region, L
(``strong.log_region``, default the first region), whatever regions a saga's steps
work in. Its records carry what a saga's actions hand each other: the saga's input and
names (``SagaBegun``; the saga id is also the key of every record), each step's result
(``StepCompleted``) and the texts of failures (``StepAborted``,
``CompensationAttemptFailed``). So before a record is appended, :class:`LogResidency`
classifies what it carries by content (field names, values and dict keys, with the
config's classifier limits) and checks the classes found against L's zones with the
compliance rules (DESIGN.md, invariants 5 and 7):

* an input, id or name L may not hold: :meth:`LogResidency.check_begun` raises
  :class:`~edgebus.errors.ComplianceViolation`, and nothing is written;
* a step result L may not hold: :meth:`LogResidency.result_refusal` finds it and
  :meth:`LogResidency.refusal_text` says why (classes, never data); the runner does not
  log the result, undoes the step and fails it (:mod:`edgebus.sagas.runner`);
* an error text L may not hold: :meth:`LogResidency.loggable_error` gives the text to
  log instead, naming the exception's type and the classes.

Only what the content shows counts: data in which nothing is detected is public here
(as at a replication hop, :mod:`edgebus.wire.content_check`), because the log's
region is fixed by the config, not chosen for the data, so a default class for
unlabelled writes says nothing about it.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from edgebus.config import EdgeConfig
from edgebus.core.classification import (
    CLASSIFIER_CACHE_BYTES,
    MAX_FIELD_NAME_CHARS,
    PUBLIC,
    Classification,
    classify,
    combine,
)
from edgebus.core.placement import ComplianceRules
from edgebus.core.saga import Step
from edgebus.errors import ComplianceViolation, InvalidInput
from edgebus.kafka.topics import saga_progress_topic

__all__ = ["Held", "LogResidency"]

#: what to do instead, said by every refusal
_ADVICE = (
    "Keep personal data out of saga inputs and step results: pass keys, and read the "
    "data inside the step that needs it (an EdgeDataNode or bus read, in a region "
    "that may hold it)"
)


class Held(NamedTuple):
    """Data the log's region may not hold: its classes (sorted; PHI subsumes PII), the
    zones they require, and where they were found (paths; ``"the value"`` for the
    value itself, a path ending in ``(a field name)`` for data used as a dict key)."""

    classes: tuple[str, ...]
    zones_required: tuple[str, ...]
    where: tuple[str, ...]

    @property
    def label(self) -> str:
        """The classes joined with ``","``."""
        return ",".join(self.classes)


class LogResidency:
    """The compliance check of one saga progress log.

    ``region``: the log's region (L); ``topic``: the log's topic (for messages);
    ``rules``: the compliance rules; ``regions``: the configured regions (to name those
    that may hold refused data); the classifier's limits are the config's.
    """

    def __init__(
        self,
        region: str,
        rules: ComplianceRules,
        regions: Sequence[str] = (),
        *,
        topic: str | None = None,
        max_field_name_chars: int = MAX_FIELD_NAME_CHARS,
        cache_bytes: int = CLASSIFIER_CACHE_BYTES,
    ) -> None:
        self.region = region
        self.rules = rules
        self.regions = tuple(regions)
        self.topic = topic or saga_progress_topic(region)
        self.max_field_name_chars = max_field_name_chars
        self.cache_bytes = cache_bytes

    @classmethod
    def of(cls, config: EdgeConfig) -> LogResidency:
        """The check of ``config``'s saga log (region ``config.strong_log_region``)."""
        compliance = config.compliance
        return cls(
            config.strong_log_region,
            compliance.rules(),
            config.regions,
            max_field_name_chars=compliance.max_field_name_chars,
            cache_bytes=compliance.classifier_cache_bytes,
        )

    def held(self, data: Any) -> Held | None:
        """What in ``data`` (JSON-like) the log's region may not hold; ``None``: it may
        hold all of it. InvalidInput when ``data`` cannot be classified (a field name
        over ``compliance.max_field_name_chars``, nesting over 100 levels)."""
        found = self._classify(data)  # field names included (data used as keys)
        detected = combine((), found.detected)
        if not detected or self._allowed(detected):
            return None
        where = {f.path or "the value" for f in found.findings if not self._allowed((f.cls,))}
        zones = self.rules.zones_required(detected)
        return Held(tuple(sorted(detected)), zones, tuple(sorted(where)))

    def check_begun(self, saga_id: str, name: str, steps: Sequence[Step], context: Any) -> None:
        """Raise ComplianceViolation, before anything is written, when a saga's first
        record would carry data the log's region may not hold: in its input
        (``context``), its id (the key of every record), its name or its steps'
        names. InvalidInput when the input cannot be classified."""
        try:
            in_input = self.held(context)
        except InvalidInput as e:
            raise InvalidInput(
                f"saga {saga_id!r}: its input cannot be classified, so it cannot be "
                f"checked against the saga log region {self.region}: {e}"
            ) from None
        names = [saga_id, name]
        for s in steps:
            names += [n for n in (s.name, s.action, s.compensation) if isinstance(n, str)]
        in_names = self.held(names)
        parts = []
        if in_input is not None:
            where = ", ".join(in_input.where[:5])
            parts.append(f"its input (at {where}) holds {in_input.label} data")
        if in_names is not None:
            parts.append(f"its id, name or step names hold {in_names.label} data")
        if not parts:
            return
        classes = combine((), (c for h in (in_input, in_names) if h for c in h.classes))
        reason = (
            f"saga {saga_id!r}: {' and '.join(parts)}, which the saga log region "
            f"{self.region} may not hold (its progress log {self.topic} keeps every "
            "saga's input, results and errors). Nothing was written"
        )
        raise self.violation(classes, reason)

    def violation(self, classes: Iterable[str], reason: str) -> ComplianceViolation:
        """A ComplianceViolation for data of ``classes`` the log's region may not hold,
        saying ``reason`` and what to do."""
        ordered = sorted(classes)
        zones = self.rules.zones_required(ordered)
        error = ComplianceViolation(ordered, zones, (self.region,), reason)
        error.args = (  # the generic advice (relabel the data) does not fit a saga log
            "Compliance violation: cannot place data classified "
            f"{', '.join(ordered) or 'unclassified'}: "
            f"{reason}. Zones required: {', '.join(zones) or 'none'}. Regions considered: "
            f"{self.region}. {self.advice(ordered)}.",
        )
        return error

    def advice(self, classes: Sequence[str]) -> str:
        """What to do about data of ``classes`` the log's region may not hold."""
        if not classes:
            return _ADVICE
        return (
            f"{_ADVICE}; or set strong.log_region to a region that may hold "
            f"{', '.join(classes)} data ({self._candidates(classes)})"
        )

    def result_refusal(self, index: int, step_name: str, result: Any) -> Held | str | None:
        """Why the result of step ``index`` cannot be logged: what it holds
        (:class:`Held`), or why it cannot be classified (a text); ``None``: it can."""
        try:
            return self.held(result)
        except InvalidInput:
            return (
                f"step {index} ({step_name}): its result cannot be classified (a field "
                "name over compliance.max_field_name_chars, or nesting over 100 levels), "
                f"so it cannot be checked against the saga log region {self.region}"
            )

    def refusal_text(self, index: int, step_name: str, refusal: Held | str) -> str:
        """Why the result of step ``index`` is not logged, as the log may hold it: the
        classes found, never the data (the paths and the step's name only when they
        hold nothing the region may not hold)."""
        if isinstance(refusal, str):
            return self._loggable(refusal, f"step {index}: its result cannot be classified")
        tail = (
            f"which the saga log region {self.region} may not hold (zones required: "
            f"{', '.join(refusal.zones_required) or 'none'}), so its result cannot be logged"
        )
        where = ", ".join(refusal.where[:5])
        return self._loggable(
            f"step {index} ({step_name}) returned {refusal.label} data (at {where}), {tail}",
            f"step {index} returned {refusal.label} data, {tail}",
        )

    def loggable_error(self, text: str, type_name: str) -> str:
        """``text`` (an exception's description) if the log's region may hold it; else
        a text naming the exception's type and the classes found, not the message."""
        held = self.held(text)  # a string: no field names, never refused
        if held is None:
            return text
        withheld = (
            f"(message withheld: it holds {held.label} data, which {self.region} may not hold)"
        )
        return self._loggable(f"{type_name}: {withheld}", f"error {withheld}")

    def _loggable(self, text: str, fallback: str) -> str:
        """``text`` if the log's region may hold it, else ``fallback`` (built of class,
        region and config names only)."""
        return text if self.held(text) is None else fallback

    def _classify(self, data: Any) -> Classification:
        return classify(
            data,
            default=PUBLIC,
            max_field_name_chars=self.max_field_name_chars,
            cache_bytes=self.cache_bytes,
        )

    def _allowed(self, classes: Iterable[str]) -> bool:
        return bool(self.rules.allowed_regions((self.region,), classes))

    def _candidates(self, classes: Sequence[str]) -> str:
        may = [r for r in self.rules.allowed_regions(self.regions, classes) if r != self.region]
        if may:
            return ", ".join(may)
        zones = ", ".join(self.rules.zones_required(classes)) or "none"
        return f"no configured region may: compliance.zones maps {zones} to none of them"
