"""The content check at a hop: may a region hold an event, judged by its payload as
well as by its label?

Labels are claims: an explicit class may only add to what detection finds, so every
hop that hands an event to a region (the replicator pushing a copy, a participant
voting on a strong write) classifies the payload again and refuses what the target's
zones do not allow, unless the writer declassified it (an ``eb-declassified`` record
whose ``detected`` covers what this hop finds; the label then stands).
"""

from __future__ import annotations

from typing import NamedTuple

from edgebus.config import EdgeConfig
from edgebus.core.classification import (
    CLASSIFIER_CACHE_BYTES,
    MAX_FIELD_NAME_CHARS,
    PUBLIC,
    classify,
    combine,
    covers,
)
from edgebus.core.placement import ComplianceRules
from edgebus.errors import DecodeError, InvalidInput
from edgebus.wire.event_reader import ReadEvent
from edgebus.wire.headers import H_DECLASSIFIED, parse_declassified

__all__ = ["ContentCheck", "content_refusal"]


class ContentCheck(NamedTuple):
    """The classifier's limits at the hop: the config's (the classifier's memos are
    shared by the process, so every caller passes the same figures)."""

    max_field_name_chars: int = MAX_FIELD_NAME_CHARS
    cache_bytes: int = CLASSIFIER_CACHE_BYTES

    @classmethod
    def of(cls, config: EdgeConfig) -> ContentCheck:
        """The limits ``config`` sets."""
        compliance = config.compliance
        return cls(compliance.max_field_name_chars, compliance.classifier_cache_bytes)


def content_refusal(
    event: ReadEvent,
    declassified: bytes | None,
    target: str,
    rules: ComplianceRules,
    content: ContentCheck,
) -> str | None:
    """Why ``target`` may not hold ``event`` by its content (None: it may).

    The payload is classified again; its classes are the label plus what detection
    finds, unless ``declassified`` (the ``eb-declassified`` header) is a valid record
    of this label whose ``detected`` covers what detection finds here (the writer's
    recorded choice: the label stands). A malformed record, or one that holds data
    ``target`` may not hold itself, is a refusal."""
    label = event.classification
    try:
        found = classify(
            event.payload,
            default=PUBLIC,
            max_field_name_chars=content.max_field_name_chars,
            cache_bytes=content.cache_bytes,
        )
    except InvalidInput as e:
        return f"cannot classify its payload at the hop: {e}"
    detected = found.detected
    if declassified is None and covers(label, detected):
        return None  # the label (allowed in target: checked) holds what detection found
    if declassified is not None:
        try:
            record = parse_declassified(declassified)
        except DecodeError as e:
            return str(e)
        if record.written_as != tuple(sorted(label)):
            return (
                f"its {H_DECLASSIFIED} record was written as "
                f"{','.join(record.written_as)}, not as its label {','.join(label)}"
            )
        in_record = classify(
            (record.by, record.reason),
            default=PUBLIC,
            max_field_name_chars=content.max_field_name_chars,
            cache_bytes=content.cache_bytes,
        ).detected
        if in_record and not rules.allowed_regions((target,), in_record):
            return (
                f"its {H_DECLASSIFIED} record holds {','.join(sorted(in_record))} "
                f"data, which compliance does not allow in {target}"
            )
        if covers(record.detected, detected):
            return None  # declassified by its writer: the label stands
    classes = combine(label, detected)
    if rules.allowed_regions((target,), classes):
        return None
    where = sorted({f.path or "the value" for f in found.findings})
    return (
        f"its content holds {','.join(sorted(detected))} data (in {', '.join(where[:5])}) "
        f"although labelled {','.join(label) or 'public'}"
        f"{'; its declassification does not cover it' if declassified is not None else ''}"
        f": compliance does not allow {','.join(sorted(classes))} data in {target} "
        f"(zones required: {', '.join(rules.zones_required(classes)) or 'none'})"
    )
