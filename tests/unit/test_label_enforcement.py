"""Labels are claims: an explicit class only adds to what detection finds, lowering it
is an explicit, recorded declassification, and the replicator checks content again at
the hop (issue 17, item 5). No Kafka: prepared writes and crafted records."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiokafka import ConsumerRecord

from edgebus.core.envelope import Operation, new_event_id
from edgebus.core.hlc import HLCTimestamp
from edgebus.core.placement import ComplianceRules
from edgebus.core.vector_clock import VectorClock
from edgebus.errors import ComplianceViolation, DecodeError, InvalidInput
from edgebus.region.replicator import copy_decision
from edgebus.sdk import EdgeBus
from edgebus.sdk.options import Declassification
from edgebus.wire.event_codec import encode_fields, encode_payload
from edgebus.wire.headers import (
    H_CLASS,
    H_DECLASSIFIED,
    Declassified,
    decode_headers,
    encode_declassified,
    parse_declassified,
)

EU, US, AP = "eu-west-1", "us-east-1", "ap-south-1"
RULES = ComplianceRules.from_mappings()
EMAIL = {"email": "a@example.com"}
SSN = {"note": "ssn 078-05-1120"}


@pytest.fixture
def bus() -> EdgeBus:
    return EdgeBus(client_id="writer-7", discovery=False)


def _headers(prepared: Any) -> dict[str, bytes]:
    return dict(prepared.encoded.headers)


# ------------------------------------------------------------------ the writer's rule


def test_a_write_labelled_public_holding_an_email_is_placed_as_pii(bus: EdgeBus) -> None:
    prepared = bus.prepare_write("k", EMAIL, classification="public")
    assert prepared.classification == ("pii",)
    assert prepared.placement.regions == (EU,)
    assert _headers(prepared)[H_CLASS] == b"pii"
    assert H_DECLASSIFIED not in _headers(prepared)


def test_a_label_adds_to_detection(bus: EdgeBus) -> None:
    prepared = bus.prepare_write("k", EMAIL, classification="financial")
    assert prepared.classification == ("financial", "pii")
    assert prepared.placement.regions == (EU,)  # gdpr and sox: eu-west-1 only


def test_strict_mode_refuses_a_public_label_the_home_cannot_hold_as_pii(bus: EdgeBus) -> None:
    with pytest.raises(ComplianceViolation) as caught:
        bus.prepare_write("k", EMAIL, classification="public", region=US)
    message = str(caught.value)
    assert message.startswith("Compliance violation: cannot place data classified pii")
    assert "labelled public" in message and "detection found pii" in message
    assert "declassify=" in message


def test_non_strict_mode_reroutes_a_public_label_holding_pii() -> None:
    bus = EdgeBus({"compliance": {"strict_mode": False}}, discovery=False)
    prepared = bus.prepare_write("k", EMAIL, classification="public", region=AP)
    assert prepared.placement.rerouted and prepared.placement.regions == (EU,)


def test_plan_follows_the_same_rule(bus: EdgeBus) -> None:
    assert bus.plan("k", SSN, classification="public").regions == (EU,)


# ------------------------------------------------------------------ declassification


def test_declassify_writes_the_label_and_records_who_when_why(bus: EdgeBus) -> None:
    prepared = bus.prepare_write(
        "k", EMAIL, classification="public", region=US,
        declassify="test fixture address, not a person",
    )
    assert prepared.classification == ("public",)
    assert US in prepared.placement.regions
    record = parse_declassified(_headers(prepared)[H_DECLASSIFIED])
    assert record.by == "writer-7"  # the writer, by default
    assert record.reason == "test fixture address, not a person"
    assert record.detected == ("pii",) and record.written_as == ("public",)
    assert abs(record.at_ms - prepared.hlc.wall_ms) < 60_000


def test_declassify_names_who_with_a_declassification(bus: EdgeBus) -> None:
    prepared = bus.prepare_write(
        "k", SSN, classification="public",
        declassify=Declassification(reason="synthetic SSN from the test range", by="dpo-42"),
    )
    record = decode_headers(prepared.encoded.headers)[H_DECLASSIFIED]
    assert record["by"] == "dpo-42" and record["detected"] == ["pii"]
    assert record["written_as"] == ["public"]


def test_declassify_is_recorded_only_when_it_lowers_something(bus: EdgeBus) -> None:
    prepared = bus.prepare_write("k", {"page": "/"}, classification="public", declassify="x")
    assert H_DECLASSIFIED not in _headers(prepared)
    covered = bus.prepare_write("k", EMAIL, classification="pii", declassify="x")
    assert covered.classification == ("pii",) and H_DECLASSIFIED not in _headers(covered)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"declassify": "why"}, "declassify needs classification="),
        ({"declassify": "  ", "classification": "public"}, "reason must be text"),
        ({"declassify": Declassification("why", by=""), "classification": "public"},
         "by must be text"),
        ({"declassify": 3, "classification": "public"}, "must be a reason"),
        ({"declassify": "x" * 1001, "classification": "public"}, "reason must be text"),
    ],
)
def test_bad_declassify_options_are_refused(
    bus: EdgeBus, options: dict[str, Any], match: str
) -> None:
    with pytest.raises(InvalidInput, match=match):
        bus.prepare_write("k", EMAIL, **options)


def test_declassify_is_refused_for_strong_writes(bus: EdgeBus) -> None:
    from edgebus.sdk.options import WriteOptions

    for keywords, call in (({"consistency": "strong"}, "write"), ({}, "commit")):
        with pytest.raises(InvalidInput, match="eventual and causal writes only"):
            WriteOptions.of({**keywords, "classification": "public", "declassify": "x"}, call)


def test_a_declassification_record_may_not_hold_personal_data(bus: EdgeBus) -> None:
    with pytest.raises(InvalidInput, match="name the person by an id"):
        bus.prepare_write("k", EMAIL, classification="public",
                          declassify=Declassification("ok", by="ann@example.com"))
    with pytest.raises(InvalidInput, match="holds pii"):
        bus.prepare_write("k", EMAIL, classification="public",
                          declassify="approved by ann@example.com")


def test_the_declassified_header_round_trips_and_refuses_junk() -> None:
    record = Declassified("dpo", 1_700_000_000_000, "raison d'être", ("pii",), ("public",))
    raw = encode_declassified(record)
    assert json.loads(raw) == {"by": "dpo", "at_ms": 1_700_000_000_000,
                               "reason": "raison d'être", "detected": ["pii"],
                               "written_as": ["public"]}
    assert parse_declassified(raw) == record
    for junk in (b"", b"[]", b"\xff", b'{"by": "x"}', b"{" * 5000,
                 raw.replace(b'"dpo"', b'""'), raw.replace(b"1700000000000", b"-1"),
                 raw.replace(b'["pii"]', b'"pii"'), b" " * 9000):
        with pytest.raises(DecodeError, match="Bad eb-declassified header"):
            parse_declassified(junk)


# ------------------------------------------------------------------ the hop


def _record(
    payload: Any, classes: tuple[str, ...], extra: list[tuple[str, bytes]] | None = None,
    placement: tuple[str, ...] = (EU, AP),
) -> ConsumerRecord[bytes, bytes]:
    """An event as a foreign producer could write it to eu-west-1's topic."""
    encoded = encode_fields(
        new_event_id(), "k", Operation.SET, encode_payload(payload), EU, placement, classes,
        HLCTimestamp(1_000, 0), VectorClock.empty(), "foreign",
    )
    headers = [*encoded.headers, *(extra or [])]
    return ConsumerRecord(f"edgebus.{EU}.events", 0, 7, 0, 0, encoded.key, encoded.value,
                          None, len(encoded.key), len(encoded.value), headers)


@pytest.mark.parametrize("payload", [EMAIL, SSN, {"contact": {"mail": "x@y.org"}}])
def test_the_replicator_refuses_pii_labelled_public_by_content(payload: Any) -> None:
    copy, refusal = copy_decision(_record(payload, ("public",)), EU, AP, RULES)
    assert copy is False
    assert refusal is not None
    assert "content holds pii" in refusal and "labelled public" in refusal
    assert f"does not allow pii data in {AP}" in refusal and "gdpr" in refusal


def test_the_replicator_still_copies_clean_public_data_and_what_the_target_may_hold() -> None:
    assert copy_decision(_record({"page": "/"}, ("public",)), EU, AP, RULES) == (True, None)
    assert copy_decision(_record({"n": 1}, ("public",)), EU, AP, RULES) == (True, None)
    assert copy_decision(_record(EMAIL, ("public",), placement=(EU, US)), EU, US,
                         RULES)[0] is False
    # a target whose zones hold pii gets the copy (the label is raised, not refused)
    gdpr_everywhere = ComplianceRules.from_mappings(zones={"gdpr": (EU, AP)})
    assert copy_decision(_record(EMAIL, ("public",)), EU, AP, gdpr_everywhere) == (True, None)


def _declassified(detected: tuple[str, ...] = ("pii",),
                  written_as: tuple[str, ...] = ("public",), by: str = "dpo-1",
                  reason: str = "synthetic") -> tuple[str, bytes]:
    return H_DECLASSIFIED, encode_declassified(
        Declassified(by, 1_700_000_000_000, reason, detected, written_as))


def test_the_replicator_copies_a_declassified_event_as_labelled() -> None:
    record = _record(EMAIL, ("public",), [_declassified()])
    assert copy_decision(record, EU, AP, RULES) == (True, None)


@pytest.mark.parametrize(
    ("header", "match"),
    [
        ((H_DECLASSIFIED, b"not json"), "Bad eb-declassified header"),
        (_declassified(written_as=("financial",)), "was written as financial"),
        (_declassified(detected=("financial",)), "declassification does not cover it"),
        (_declassified(by="ann@example.com"), "record holds pii"),
    ],
)
def test_the_replicator_refuses_a_declassification_that_does_not_hold(
    header: tuple[str, bytes], match: str
) -> None:
    copy, refusal = copy_decision(_record(EMAIL, ("public",), [header]), EU, AP, RULES)
    assert copy is False and refusal is not None and match in refusal


def test_a_bad_declassification_is_refused_even_on_clean_content() -> None:
    record = _record({"page": "/"}, ("public",), [(H_DECLASSIFIED, b"{}")])
    copy, refusal = copy_decision(record, EU, AP, RULES)
    assert copy is False and refusal is not None and "no by" in refusal


def test_the_label_check_still_comes_first() -> None:
    copy, refusal = copy_decision(_record(EMAIL, ("pii",)), EU, AP, RULES)
    assert copy is False and refusal is not None and "compliance does not allow pii" in refusal


async def test_a_strong_write_with_declassify_is_refused_before_anything_is_logged(
    bus: EdgeBus,
) -> None:
    with pytest.raises(InvalidInput, match="eventual and causal writes only"):
        await bus.write(  # type: ignore[call-overload]  # the types refuse it too
            "k", EMAIL, consistency="strong", classification="public", declassify="synthetic")


# ------------------------------------------------------------------ edgebus tail


def test_tail_shows_a_declassified_event(
    bus: EdgeBus, capsys: pytest.CaptureFixture[str]
) -> None:
    from edgebus.cli.tail import _render, decode_record

    prepared = bus.prepare_write("k", EMAIL, classification="public",
                                 declassify=Declassification("fixture [data]", by="dpo-42"))
    encoded = prepared.encoded
    record = ConsumerRecord(f"edgebus.{EU}.events", 0, 3, 0, 0, encoded.key, encoded.value,
                            None, len(encoded.key), len(encoded.value), encoded.headers)
    item = decode_record(record)
    shown = json.loads(json.dumps(item, default=str))["headers"][H_DECLASSIFIED]
    assert shown["by"] == "dpo-42" and shown["reason"] == "fixture [data]"
    assert shown["detected"] == ["pii"] and shown["written_as"] == ["public"]
    _render(item)
    out = capsys.readouterr().out
    assert "declassified by dpo-42: fixture [data]" in out


# ------------------------------------------------------------------ states: the same rule


def test_a_states_declared_class_only_adds_to_what_its_values_hold() -> None:
    from edgebus.config import load_config
    from edgebus.core.state_machine import StateRequest
    from edgebus.state.client import StateClient

    client = StateClient(load_config(None), "test-client", EU)
    email = StateRequest("profile", "r1", "set", EU, key="email", value="a@example.com")
    with pytest.raises(ComplianceViolation, match="of class public"):
        client.check_compliance(email, "public")
    client.check_compliance(email, "pii")  # pii may hold it
    clean = StateRequest("profile", "r2", "set", EU, key="page", value="/home")
    client.check_compliance(clean, "pii")  # a stricter declared class stands
