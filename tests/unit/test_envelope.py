"""The event envelope: its invariants, and event ids."""

from __future__ import annotations

import os
import uuid

import pytest
from pydantic import ValidationError

from edgebus.core.envelope import EventEnvelope, Operation, new_event_id
from edgebus.core.hlc import HLCTimestamp


def envelope(**changes: object) -> EventEnvelope:
    fields: dict[str, object] = {
        "event_id": new_event_id(),
        "key": "k",
        "payload": {"a": 1},
        "origin_region": "eu-west-1",
        "placement": ("eu-west-1", "us-east-1"),
        "classification": ("public",),
        "hlc": HLCTimestamp(1, 0),
    }
    fields.update(changes)
    return EventEnvelope(**fields)  # type: ignore[arg-type]


def test_event_ids_are_canonical_version_4_uuids_and_unique() -> None:
    ids = [new_event_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    for text in ids[:500]:
        parsed = uuid.UUID(text)
        assert parsed.version == 4
        assert str(parsed) == text


def test_a_forked_child_draws_fresh_event_ids() -> None:
    new_event_id()  # the parent has random bytes pooled now
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.write(write_end, new_event_id().encode())
        os._exit(0)
    os.close(write_end)
    child_id = os.read(read_end, 100).decode()
    os.waitpid(pid, 0)
    assert child_id != new_event_id()


def test_placement_must_start_with_the_origin_region() -> None:
    with pytest.raises(ValidationError, match="must start with the origin"):
        envelope(placement=("us-east-1", "eu-west-1"))


def test_placement_may_not_repeat_a_region() -> None:
    with pytest.raises(ValidationError, match="repeats"):
        envelope(placement=("eu-west-1", "eu-west-1"))


def test_a_delete_carries_no_payload_and_an_increment_a_number() -> None:
    assert envelope(operation=Operation.DELETE, payload=None).payload is None
    with pytest.raises(ValidationError, match="delete carries no payload"):
        envelope(operation=Operation.DELETE, payload={"a": 1})
    with pytest.raises(ValidationError, match="must be a number"):
        envelope(operation=Operation.INCREMENT, payload="5")
    with pytest.raises(ValidationError, match="must be a number"):
        envelope(operation=Operation.INCREMENT, payload=True)


def test_event_id_must_be_a_uuid_and_key_non_empty() -> None:
    with pytest.raises(ValidationError, match="not a UUID"):
        envelope(event_id="nope")
    with pytest.raises(ValidationError):
        envelope(key="")
