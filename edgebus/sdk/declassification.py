"""The ``eb-declassified`` record of a write whose writer lowered what detection found
(the SDK option ``declassify``): who, when, why, what was found and what is written."""

from __future__ import annotations

import logging

from edgebus.config.compliance import ComplianceConfig
from edgebus.core.classification import Classification, classify
from edgebus.errors import InvalidInput
from edgebus.sdk.options import WriteOptions
from edgebus.wire.event_codec import EncodedEvent
from edgebus.wire.headers import H_DECLASSIFIED, Declassified, encode_declassified

__all__ = ["declassified"]

log = logging.getLogger("edgebus.edge")


def declassified(
    encoded: EncodedEvent,
    options: WriteOptions,
    found: Classification,
    classes: tuple[str, ...],
    now_ms: int,
    writer: str,
    compliance: ComplianceConfig,
) -> EncodedEvent:
    """``encoded`` with the ``eb-declassified`` header: who lowered what detection
    found to ``classes``, when, why. Refused (InvalidInput) when ``by`` or ``reason``
    holds data detection classifies: the record goes wherever the event goes."""
    declassify = options.declassify
    assert declassify is not None
    record = Declassified(declassify.by or writer, now_ms, declassify.reason,
                          tuple(sorted(found.detected)), classes)
    in_record = classify(
        (record.by, record.reason), default="public",
        max_field_name_chars=compliance.max_field_name_chars,
        cache_bytes=compliance.classifier_cache_bytes,
    ).detected
    if in_record:
        raise InvalidInput(
            f"declassify's by or reason holds {', '.join(sorted(in_record))} data "
            "(the record travels with the event to every region it is placed in): "
            "name the person by an id, not an e-mail address, and keep personal "
            "data out of the reason"
        )
    log.info("declassified %s: detection found %s, written as %s, by %s: %s",
             encoded.key[:80], ",".join(record.detected), ",".join(classes),
             record.by, record.reason)
    return encoded._replace(
        headers=[*encoded.headers, (H_DECLASSIFIED, encode_declassified(record))])
