"""What the saga progress log may hold (edgebus.sagas.residency), without Kafka: inputs,
results and error texts are classified by content and checked against the log region's
zones; refusals name classes, never the data."""

from __future__ import annotations

import pytest

from edgebus.config import load_config
from edgebus.core.saga import Step
from edgebus.errors import ComplianceViolation, InvalidInput
from edgebus.sagas.residency import Held, LogResidency

EMAIL = "alice.residency@example.com"
STEPS = (Step("reserve", "reserve", "release"), Step("ship", "ship", None))


def residency(log_region: str = "us-east-1") -> LogResidency:
    config = load_config(
        {
            "discovery": {"locations": ["us-east-1", "eu-west-1", "ap-south-1"]},
            "strong": {"log_region": log_region},
        }
    )
    return LogResidency.of(config)


def test_public_data_is_held_anywhere() -> None:
    check = residency()
    assert check.held({"order": 17, "items": [{"sku": "A-1", "qty": 2}]}) is None
    assert check.held("RuntimeError: no courier available") is None
    assert check.held(None) is None


def test_an_email_address_is_pii_which_only_the_gdpr_zone_may_hold() -> None:
    held = residency().held({"contact": {"note": f"write to {EMAIL}"}})
    assert held == Held(("pii",), ("gdpr",), ("contact.note",))
    assert residency("eu-west-1").held({"contact": EMAIL}) is None


def test_field_names_and_dict_keys_count() -> None:
    check = residency()
    held = check.held({"email": "x"})  # the field name says pii
    assert held is not None and held.where == ("email",)
    held = check.held({"by_owner": {EMAIL: 3}})  # an address as a key
    assert held is not None and held.classes == ("pii",)
    assert held.where == ("by_owner.(a field name)",)


def test_a_saga_input_the_log_region_may_not_hold_is_a_compliance_violation() -> None:
    with pytest.raises(ComplianceViolation) as raised:
        residency().check_begun("signup-1", "signup", STEPS, {"user": {"email": EMAIL}})
    error = raised.value
    text = str(error)
    assert error.classification == ("pii",)
    assert error.zones_required == ("gdpr",)
    assert error.regions_considered == ("us-east-1",)
    assert text.startswith("Compliance violation: cannot place data classified pii: ")
    assert "its input (at user.email) holds pii data" in text
    assert "edgebus.us-east-1.sagas" in text and "Nothing was written" in text
    assert "pass keys" in text
    assert "set strong.log_region to a region that may hold pii data (eu-west-1)" in text
    assert EMAIL not in text


def test_a_saga_id_or_name_holding_an_address_is_refused_too() -> None:
    with pytest.raises(ComplianceViolation, match="its id, name or step names hold pii"):
        residency().check_begun(f"welcome-{EMAIL}", "welcome", STEPS, {"plan": "pro"})


def test_a_saga_input_in_a_log_region_that_may_hold_it_passes() -> None:
    residency("eu-west-1").check_begun("signup-1", "signup", STEPS, {"email": EMAIL})
    residency().check_begun("signup-1", "signup", STEPS, {"user_id": 42})


def test_an_input_that_cannot_be_classified_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="cannot be classified") as raised:
        residency().check_begun("s", "n", STEPS, {"x" * 2000: 1})
    assert not isinstance(raised.value, ComplianceViolation)


def test_with_no_region_allowed_the_advice_says_so() -> None:
    config = load_config({"discovery": {"locations": ["us-east-1"]}})
    with pytest.raises(ComplianceViolation, match="no configured region may"):
        LogResidency.of(config).check_begun("s", "n", STEPS, {"email": EMAIL})


def test_a_step_result_refusal_names_the_step_and_classes_not_the_data() -> None:
    check = residency()
    refusal = check.result_refusal(0, "lookup", {"owner": {"mail": EMAIL}})
    assert isinstance(refusal, Held)
    text = check.refusal_text(0, "lookup", refusal)
    assert text == (
        "step 0 (lookup) returned pii data (at owner.mail), which the saga log region "
        "us-east-1 may not hold (zones required: gdpr), so its result cannot be logged"
    )
    assert check.result_refusal(0, "lookup", {"reservation": "r-17"}) is None


def test_paths_that_hold_data_are_left_out_of_the_refusal() -> None:
    check = residency()
    refusal = check.result_refusal(1, "lookup", {EMAIL: {"email": "x"}})
    assert isinstance(refusal, Held)
    text = check.refusal_text(1, "lookup", refusal)
    assert EMAIL not in text
    assert text.startswith("step 1 returned pii data, which the saga log region us-east-1")
    assert check.held(text) is None


def test_an_unclassifiable_result_is_refused_with_a_text() -> None:
    check = residency()
    refusal = check.result_refusal(2, "lookup", {"y" * 5000: 1})
    assert isinstance(refusal, str) and "cannot be classified" in refusal
    assert check.refusal_text(2, "lookup", refusal) == refusal


def test_an_error_text_holding_data_is_withheld_naming_type_and_classes() -> None:
    check = residency()
    assert check.loggable_error(f"ValueError: no account for {EMAIL}", "ValueError") == (
        "ValueError: (message withheld: it holds pii data, which us-east-1 may not hold)"
    )
    assert check.loggable_error("RuntimeError: bank busy", "RuntimeError") == (
        "RuntimeError: bank busy"
    )
    assert residency("eu-west-1").loggable_error(f"ValueError: {EMAIL}", "ValueError") == (
        f"ValueError: {EMAIL}"
    )


def test_a_type_name_holding_data_is_withheld_too() -> None:
    text = residency().loggable_error(f"{EMAIL}: boom {EMAIL}", EMAIL)
    assert EMAIL not in text
    assert text.startswith("error (message withheld: it holds pii data")
