"""A BEGIN with its payload at hand, and what a participant checks of it before it votes
and again before it applies a COMMIT.

A BEGIN carries its payload inline (old clients) or has it staged in each participant's
own region (:mod:`edgebus.core.staged_write`); :func:`prepared_of` pairs it with the
staged payload this region holds, or says why that payload is none of it.
:class:`PrepareChecks` then asks, in order: is the request well formed
(:func:`~edgebus.commit.poison.request_refusal`), is its event one this region's
materializer applies (:func:`~edgebus.commit.poison.event_of`), and may this region
hold it *by its content* (:func:`edgebus.wire.content_check.content_refusal`: the
payload is classified again, the label only adds to what detection finds, a valid
declassification record of the write lets the label stand). Labels are claims: a
writer that labels an e-mail address ``public`` and places it in a region outside the
GDPR zone gets a no vote, as it would get a refused copy from a replicator.

Every reason here may end up in a vote, in the commit log, which may lie in a region
the data may not: reasons about a staged payload name classes, regions and kinds of
error, never the data (or a field name) itself.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from edgebus.commit.poison import commit_refusal, event_of, request_refusal
from edgebus.config import EdgeConfig
from edgebus.core.classification import PUBLIC, classify
from edgebus.core.commit_log import BeginRecord, Txn
from edgebus.core.envelope import Operation
from edgebus.core.hlc import HLCTimestamp
from edgebus.core.staged_write import StagedWrite, staged_mismatch, with_staged_payload
from edgebus.core.vector_clock import VectorClock
from edgebus.errors import InvalidInput
from edgebus.wire.content_check import ContentCheck, content_refusal
from edgebus.wire.event_codec import EncodedEvent, encode_fields
from edgebus.wire.event_reader import ReadEvent
from edgebus.wire.headers import H_DECLASSIFIED, H_TXN

__all__ = ["PrepareChecks", "Prepared", "commit_event", "prepared_of", "txn_event_id"]

_TXN_NAMESPACE = uuid.UUID("6f1d0c2e-5a1b-4c39-9a47-2f3f0e1b7c55")


def txn_event_id(txn_id: str) -> str:
    """The event id of a transaction's event (the same in every participant)."""
    return str(uuid.uuid5(_TXN_NAMESPACE, txn_id))


@dataclass(frozen=True, slots=True)
class Prepared:
    """A BEGIN whose ``begin.payload`` is inline (a staged one put in), with the
    declassification record its staged payload carries (``eb-declassified``, UTF-8
    JSON), if any. ``staged``: whether the payload came from this region's staged
    topic."""

    begin: BeginRecord
    declassified: bytes | None = None
    staged: bool = False


def prepared_of(begin: BeginRecord, staged: StagedWrite | str | None) -> Prepared | str:
    """``begin`` with its payload: inline, or ``staged`` (this region's staged payload of
    the transaction, or why there is none); a string saying why not."""
    if not begin.staged:
        return Prepared(begin)
    if staged is None:
        return f"no staged payload of txn {begin.txn_id} in this region"
    if isinstance(staged, str):
        return staged
    mismatch = staged_mismatch(begin, staged)
    if mismatch is not None:
        return mismatch
    return Prepared(with_staged_payload(begin, staged), staged.declassified, staged=True)


def commit_event(prepared: Prepared, region: str, stamp: HLCTimestamp) -> EncodedEvent:
    """The event ``region`` writes for a committed ``prepared`` write, stamped
    ``stamp``: the transaction's event id, the placement starting with ``region``, the
    header ``eb-txn`` (and ``eb-declassified`` when its staged payload carries one)."""
    begin = prepared.begin
    placement = (region, *(r for r in begin.placement if r != region))
    encoded = encode_fields(
        txn_event_id(begin.txn_id),
        begin.key,
        Operation(begin.operation),
        begin.payload,
        region,
        placement,
        begin.classification,
        stamp,
        VectorClock(),
        begin.writer,
    )
    headers = [*encoded.headers, (H_TXN, begin.txn_id.encode("ascii"))]
    if prepared.declassified is not None:
        headers.append((H_DECLASSIFIED, prepared.declassified))
    return encoded._replace(headers=headers)


class PrepareChecks:
    """The checks of one participant region (its compliance rules, the classifier's
    limits, the commit log's partition count, the clock drift it allows)."""

    def __init__(self, config: EdgeConfig, region: str) -> None:
        self.region = region
        self.rules = config.compliance.rules()
        self.content = ContentCheck.of(config)
        self.partitions = config.kafka.partitions
        self.max_drift_ms = config.replication.max_clock_drift_ms

    def request_refusal(self, begin: BeginRecord, partition: int, now_ms: int) -> str | None:
        """:func:`~edgebus.commit.poison.request_refusal` of ``begin``, read on commit-log
        ``partition``: checked before a staged payload is looked for."""
        return request_refusal(
            begin,
            partition=partition,
            partitions=self.partitions,
            now_ms=now_ms,
            max_drift_ms=self.max_drift_ms,
        )

    def event(self, prepared: Prepared, now_ms: int) -> ReadEvent | str:
        """The event this region would apply for ``prepared``, or why it cannot (a
        staged payload's reason names the kind of error only: see the module)."""
        try:
            return event_of(prepared.begin, self.region, now_ms)
        except Exception as e:  # whatever the event codecs refuse, the materializer refuses
            if prepared.staged:
                return f"its staged payload is no event this region can apply ({type(e).__name__})"
            return f"its event could not be applied here: {type(e).__name__}: {e}"

    def label_allows(self, begin: BeginRecord) -> bool:
        """Whether this region's zones allow ``begin``'s label."""
        return bool(self.rules.allowed_regions((self.region,), begin.classification))

    def content_refusal(self, prepared: Prepared, event: ReadEvent) -> str | None:
        """Why this region may not hold ``event`` by its content (the vote's reason: it
        names classes, never the data or its field names), or ``None``."""
        found = content_refusal(event, prepared.declassified, self.region, self.rules, self.content)
        if found is None:
            return None
        label = ",".join(event.classification) or PUBLIC
        classes = (*event.classification,)
        try:
            detected = classify(
                event.payload,
                default=PUBLIC,
                max_field_name_chars=self.content.max_field_name_chars,
                cache_bytes=self.content.cache_bytes,
            ).detected
        except InvalidInput:
            return (
                f"compliance: region {self.region} cannot classify the payload (a field "
                "name over compliance.max_field_name_chars) and refuses what it cannot "
                "classify"
            )
        what = ",".join(sorted(detected)) or "no more"
        declassified = (
            "; its declassification record does not stand here (malformed, "
            "of another label, holding data this region may not hold, or not "
            "covering what detection finds)"
            if prepared.declassified
            else ""
        )
        return (
            f"compliance: by its content region {self.region} may not hold it: "
            f"detection finds {what} data in the payload, labelled {label}"
            f"{declassified}; zones required: "
            f"{', '.join(self.rules.zones_required((*classes, *detected))) or 'none'}"
        )

    def for_vote(
        self,
        begin: BeginRecord,
        partition: int,
        now_ms: int,
        staged: StagedWrite | str | None,
        *,
        voting: bool = True,
    ) -> tuple[Prepared | None, str | None, str | None]:
        """``(prepared, poison, compliance)`` of ``begin`` (read on commit-log
        ``partition``) for a vote, with ``staged``: this region's staged payload of a
        staged write (``None``: not read yet, then all three are ``None``: wait for it),
        or why there is none. ``poison``: why it is no write this region can apply
        (dead-lettered, voted no); ``compliance``: why its content may not be held here
        (voted no). A staged write ``voting`` past its deadline without its payload is
        prepared without it: the vote is late anyway (no, ``late``)."""
        reason = self.request_refusal(begin, partition, now_ms)
        if reason is not None:
            return None, reason, None
        if begin.staged and not isinstance(staged, StagedWrite):
            if voting and now_ms > begin.deadline_ms:
                return Prepared(begin), None, None
            if staged is None:
                return None, None, None
        prepared = prepared_of(begin, staged)
        if isinstance(prepared, str):
            return None, prepared, None
        return (prepared, *self.refusal(prepared, now_ms))

    def for_commit(
        self, txn: Txn, partition: int, now_ms: int, staged: StagedWrite | str | None
    ) -> Prepared | str:
        """``txn``'s COMMIT with its payload (``staged``: as :meth:`for_vote`, read by
        now), or why this region must not apply it: its BEGIN and payload are checked
        again (a yes vote of this region may be forged), then
        :func:`~edgebus.commit.poison.commit_refusal`."""
        begin = txn.begin
        assert begin is not None
        prepared, poison, compliance = self.for_vote(begin, partition, now_ms, staged, voting=False)
        if prepared is None or poison is not None or compliance is not None:
            return poison or compliance or "its staged payload is missing"
        refusal = commit_refusal(
            txn, now_ms=now_ms, max_drift_ms=self.max_drift_ms, may_hold=self.label_allows(begin)
        )
        return prepared if refusal is None else refusal

    def refusal(self, prepared: Prepared, now_ms: int) -> tuple[str | None, str | None]:
        """``(poison, compliance)``: why ``prepared`` is no write this region can apply
        (dead-lettered, voted no), else why its content may not be held here (voted no
        for compliance); ``(None, None)`` when neither."""
        event = self.event(prepared, now_ms)
        if isinstance(event, str):
            return event, None
        return None, self.content_refusal(prepared, event)
