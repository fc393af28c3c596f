"""Store lineage: which Kafka a region's store was built from, and whether it still is.

A region service's store holds key states and the Kafka positions that produced them.
Those positions mean something only on the topic they were read from: after the
Kafka layout changes under a store (another cluster behind the same address, the
events topic deleted and recreated, a different partition count) the store would serve
stale data and resume from positions past the topic's end. The store therefore records
a :class:`StoreLineage` when it is built, and a service compares it, on start, with
what the broker says now (:func:`lineage_mismatch`).

Decisions:

* The bootstrap address is recorded for the operator's sake only: a cluster reached
  through a new address (same cluster id) is the same cluster, not a mismatch.
* A topic id is compared only on the same cluster and topic name: on another cluster
  it differs anyway, and the cluster change is the reason worth reporting.
* A store from an edgebus before lineage (``recorded`` is ``None``) can only be
  checked against the topic's end offsets; if it passes, the caller adopts it by
  recording the current lineage.

Pure: no I/O; the caller fetches the broker's view and the store's positions.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from edgebus.errors import StoreError

__all__ = ["StoreLineage", "lineage_mismatch"]


@dataclass(frozen=True, slots=True)
class StoreLineage:
    """The Kafka a store was built from: the cluster, the topic and its layout.

    ``topic_id`` is the topic's Kafka id as text (whatever form the caller records,
    as long as it is always the same form; :mod:`edgebus.kafka.identity` gives
    Kafka's own base64url form).
    """

    bootstrap: str  #: the address the cluster was reached at (informational)
    cluster_id: str
    topic: str
    topic_id: str
    partitions: int

    def to_json(self) -> str:
        """The lineage as one line of JSON (keys sorted), as stores record it."""
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> StoreLineage:
        """A lineage recorded by :meth:`to_json` (unknown keys are ignored, so a newer
        edgebus may add some); ``StoreError`` if ``text`` is not one."""
        try:
            record = json.loads(text)
        except ValueError as e:
            raise _unreadable(text, f"not JSON: {e}") from e
        if not isinstance(record, dict):
            raise _unreadable(text, "not a JSON object")
        return cls(**{f.name: _field(record, f.name, text) for f in fields(cls)})


def _field(record: Mapping[str, Any], name: str, text: str) -> Any:
    """One field of a recorded lineage, checked for its type."""
    value = record.get(name)
    if name == "partitions":
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise _unreadable(text, f"{name} is not a positive integer")
    elif not isinstance(value, str):
        raise _unreadable(text, f"{name} is missing or not a string")
    return value


def _unreadable(text: str, problem: str) -> StoreError:
    return StoreError(
        f"The store's recorded lineage {text[:200]!r} is unreadable ({problem}): it was "
        "changed by something other than edgebus. Remove the store, and the region "
        "service rebuilds it from Kafka."
    )


def lineage_mismatch(
    recorded: StoreLineage | None,
    actual: StoreLineage,
    positions: Mapping[int, int],
    end_offsets: Mapping[int, int],
) -> list[str]:
    """Why a store built from ``recorded`` cannot be used with the Kafka ``actual``
    describes, in words for an operator; empty when it can.

    ``positions`` are the store's next offsets per partition of ``actual.topic``;
    ``end_offsets`` the topic's end offsets per partition now (a partition missing
    from it is not checked against an end). ``recorded`` ``None`` (a store from an
    edgebus before lineage) is checked against the ends only.
    """
    reasons = [] if recorded is None else _layout_changes(recorded, actual)
    return reasons + _positions_past_the_end(actual, positions, end_offsets)


def _layout_changes(recorded: StoreLineage, actual: StoreLineage) -> list[str]:
    """What differs between the recorded and the actual cluster, topic and layout."""
    reasons: list[str] = []
    same_cluster = recorded.cluster_id == actual.cluster_id
    if not same_cluster:
        reasons.append(
            f"built from cluster {recorded.cluster_id}, the broker at {actual.bootstrap} "
            f"is cluster {actual.cluster_id}"
        )
    if recorded.topic != actual.topic:
        reasons.append(f"built from topic {recorded.topic}, now reading {actual.topic}")
    elif same_cluster and recorded.topic_id != actual.topic_id:
        reasons.append(
            f"topic {actual.topic} was recreated (topic id {recorded.topic_id}, "
            f"now {actual.topic_id})"
        )
    if recorded.partitions != actual.partitions:
        reasons.append(f"partition count {recorded.partitions}, now {actual.partitions}")
    return reasons


def _positions_past_the_end(
    actual: StoreLineage, positions: Mapping[int, int], end_offsets: Mapping[int, int]
) -> list[str]:
    """Stored positions the topic cannot have: past its end, or of no partition."""
    reasons: list[str] = []
    for partition, position in sorted(positions.items()):
        if not 0 <= partition < actual.partitions:
            reasons.append(
                f"partition {partition}: stored position {position}, but topic "
                f"{actual.topic} has no partition {partition}"
            )
            continue
        end = end_offsets.get(partition)
        if end is not None and position > end:
            reasons.append(
                f"partition {partition}: stored position {position} is past the "
                f"topic's end {end}"
            )
    return reasons
