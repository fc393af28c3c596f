"""Classification: field-name rules and value detectors; an explicit class only adds to
what they find; the default when nothing fires and no class is given."""

from __future__ import annotations

import dataclasses
from collections import OrderedDict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgebus.core import classification as classification_module
from edgebus.core.classification import (
    KEY_PATH,
    PUBLIC,
    Classification,
    Finding,
    classify,
    combine,
    covers,
)
from edgebus.errors import InvalidInput

VALID_VISA = "4111111111111111"
VALID_IBAN = "GB82WEST12345698765432"


def classes(data: object) -> set[str]:
    return set(classify(data).classes)


def rules(data: object) -> list[tuple[str, str, str]]:
    return [(f.path, f.cls, f.rule) for f in classify(data).findings]


# ------------------------------------------------------------------ spec examples


def test_email_field_from_the_spec_is_pii() -> None:
    result = classify({"email": "user@example.com"})
    assert result.classes == {"pii"}
    assert ("email", "pii", "field:email") in rules({"email": "user@example.com"})
    assert ("email", "pii", "value:email") in rules({"email": "user@example.com"})
    assert result.explicit is False


def test_patient_name_with_diagnosis_is_phi_only_because_phi_subsumes_pii() -> None:
    result = classify({"patient_name": "Ann", "diagnosis": "flu"})
    assert result.classes == {"phi"}
    # the PII rule still shows in the findings, so a reader sees why
    assert ("patient_name", "pii", "field:person-name") in rules(
        {"patient_name": "Ann", "diagnosis": "flu"}
    )


def test_patient_name_alone_is_phi() -> None:
    assert classes({"patient_name": "Ann"}) == {"phi"}


def test_email_and_iban_combine_pii_and_financial() -> None:
    assert classes({"email": "a@example.com", "iban": VALID_IBAN}) == {"pii", "financial"}


def test_phi_and_financial_combine() -> None:
    assert classes({"diagnosis": "flu", "card_number": VALID_VISA}) == {"phi", "financial"}


def test_balance_from_the_spec_is_financial_even_with_an_integer_value() -> None:
    assert classes({"balance": 1000}) == {"financial"}


def test_transaction_from_the_spec_is_financial() -> None:
    assert classes({"transaction": "payment_456"}) == {"financial"}


def test_page_view_event_from_the_spec_is_public() -> None:
    result = classify({"event": "page_view"})
    assert result.classes == {"public"}
    assert result.findings == (Finding("", "public", "default"),)


def test_chat_message_from_the_spec_is_public() -> None:
    assert classes({"message": "Hello", "thread_id": "123"}) == {"public"}


def test_nothing_found_uses_the_configured_default() -> None:
    result = classify({"count": 3}, default="PII")
    assert result.classes == {"pii"}
    assert result.findings == (Finding("", "pii", "default"),)


def test_label_is_sorted_classes_joined_by_comma() -> None:
    assert classify({"email": "a@example.com", "iban": VALID_IBAN}).label == "financial,pii"


# ------------------------------------------------------- field names: tokens, not substrings


@pytest.mark.parametrize(
    "field",
    ["filename", "file_name", "fileName", "hostname", "host_name", "product_name",
     "service_name", "company_name", "table_name", "topic_name", "node_name",
     "nameserver", "namespace", "city_name"],
)  # fmt: skip
def test_name_of_a_thing_is_not_pii_because_name_is_qualified_by_a_non_person_word(
    field: str,
) -> None:
    assert classes({field: "x"}) == {"public"}


def test_filename_is_not_pii_because_it_contains_name() -> None:
    assert classes({"filename": "report.pdf"}) == {"public"}


@pytest.mark.parametrize(
    "field",
    ["name", "first_name", "firstName", "lastname", "LastName", "fullname", "full-name",
     "surname", "given_name", "family_name", "middle_name", "maiden_name", "nickname",
     "username", "user_name", "customer_name", "contact_name", "employee_name",
     "display_name", "legal_name", "names", "emergency_contact_name"],
)  # fmt: skip
def test_name_of_a_person_is_pii(field: str) -> None:
    assert classes({field: "Ann"}) == {"pii"}


def test_name_qualified_by_an_unknown_word_is_pii_to_be_conservative() -> None:
    assert classes({"zorblax_name": "Ann"}) == {"pii"}


@pytest.mark.parametrize(
    "field",
    ["health", "health_check", "healthcheck", "healthCheck", "health_status",
     "health_score", "condition"],
)  # fmt: skip
def test_health_without_a_medical_qualifier_is_not_phi(field: str) -> None:
    assert classes({field: "ok"}) == {"public"}


#: field names that mark a value as of a data class, by class
FIELDS_OF_CLASS = {
    "phi": [  # medical
        "diagnosis", "diagnoses", "medical_history", "medications", "prescription",
        "treatment", "symptoms", "allergies", "blood_type", "bloodGroup", "mrn", "icd10",
        "ICD10Code", "lab_results", "medical_condition", "health_condition",
        "health_record", "health_history", "health_insurance", "health_plan", "patient_id",
    ],
    "pii": [  # personal
        "email", "e-mail", "e_mail", "eMail", "email_address", "phone", "phone_number",
        "telephone", "mobile", "mobile_number", "fax", "ssn", "social_security_number",
        "passport", "passport_number", "national_id", "nin", "nino",
        "national_insurance_number", "date_of_birth", "dob", "birthdate", "birthday",
        "dateOfBirth", "address", "street_address", "home_address", "ip_address",
        "ipAddress", "client_ip", "mac_address", "postal_code", "zip_code",
    ],
    "financial": [
        "iban", "bic", "swift", "card_number", "cardNumber", "credit_card", "creditcard",
        "debit_card", "cvv", "cvc", "account_number", "routing_number", "sort_code",
        "balance", "salary", "income", "transactions", "payment", "amount", "invoice",
        "tax", "vat",
    ],
}  # fmt: skip


@pytest.mark.parametrize("field", FIELDS_OF_CLASS["phi"])
def test_medical_fields_are_phi(field: str) -> None:
    assert classes({field: "x"}) == {"phi"}


@pytest.mark.parametrize("field", FIELDS_OF_CLASS["pii"])
def test_personal_fields_are_pii(field: str) -> None:
    assert classes({field: "x"}) == {"pii"}


@pytest.mark.parametrize("field", FIELDS_OF_CLASS["financial"])
def test_financial_fields_are_financial(field: str) -> None:
    assert classes({field: "x"}) == {"financial"}


@pytest.mark.parametrize("field", ["tax_id", "taxId", "tin", "tax_number"])
def test_a_tax_identifier_is_pii_and_financial(field: str) -> None:
    assert classes({field: "x"}) == {"pii", "financial"}


def test_cardholder_name_is_pii_and_financial() -> None:
    assert classes({"cardholder_name": "Ann"}) == {"pii", "financial"}


@pytest.mark.parametrize(
    "field",
    ["server_ip", "broker_address", "bind_address", "server_address", "mac",
     "is_mobile", "mobile_app", "user_id", "customer_id", "card", "account_id",
     "timestamp", "created_at", "status", "description", "password", "notes"],
)  # fmt: skip
def test_machine_and_opaque_fields_are_not_sensitive(field: str) -> None:
    assert classes({field: "x"}) == {"public"}


def test_field_rules_match_tokens_not_substrings() -> None:
    # "tin" hides in "martin", "ssn" in "classnames", "iban" in "caribbean"
    for field in ("martin", "classnames", "caribbean", "continent", "taxonomy", "pantry"):
        assert classes({field: "x"}) == {"public"}, field


# ----------------------------------------------------------------- value detectors


@pytest.mark.parametrize(
    "value", ["user@example.com", "first.last+tag@sub.example.co.uk", "write to a@b.io now"]
)
def test_email_value_is_pii_anywhere_in_a_string(value: str) -> None:
    assert rules({"x": value}) == [("x", "pii", "value:email")]


@pytest.mark.parametrize("value", ["user@host", "@handle", "a@b.c", "foo@@bar"])
def test_at_sign_without_a_domain_is_not_an_email(value: str) -> None:
    assert classes({"x": value}) == {"public"}


@pytest.mark.parametrize(
    "value",
    [VALID_VISA, "4111 1111 1111 1111", "4111-1111-1111-1111", "5555555555554444",
     "378282246310005", "6011111111111117"],
)  # fmt: skip
def test_card_number_passing_luhn_is_financial(value: str) -> None:
    assert rules({"x": value}) == [("x", "financial", "value:card-luhn")]


@pytest.mark.parametrize(
    "value", ["4111111111111112", "4111 1111 1111 1112", "5555555555554445", "41111111"]
)
def test_card_number_failing_luhn_or_too_short_is_not_financial(value: str) -> None:
    assert classes({"x": value}) == {"public"}


def test_millisecond_timestamp_is_not_a_card_even_if_luhn_passes() -> None:
    # 13 digits, Luhn-valid, but no card network starts with 1
    assert classes({"x": "1700000000004"}) == {"public"}


@pytest.mark.parametrize(
    "value",
    [VALID_IBAN, "GB82 WEST 1234 5698 7654 32", "gb82west12345698765432",
     "DE89370400440532013000", "NL91ABNA0417164300"],
)  # fmt: skip
def test_iban_with_valid_check_digits_is_financial(value: str) -> None:
    assert rules({"x": value}) == [("x", "financial", "value:iban")]


@pytest.mark.parametrize(
    "value",
    ["GB83WEST12345698765432", "GB82WEST1234569876543", "XX82WEST12345698765432X"],
)
def test_iban_with_wrong_check_digits_or_length_is_not_financial(value: str) -> None:
    assert classes({"x": value}) == {"public"}


@pytest.mark.parametrize("value", ["123-45-6789", "SSN: 123-45-6789."])
def test_us_ssn_is_pii(value: str) -> None:
    assert rules({"x": value}) == [("x", "pii", "value:ssn")]


@pytest.mark.parametrize(
    "value", ["000-12-3456", "666-12-3456", "900-12-3456", "123-00-4567", "123-45-0000"]
)
def test_ssn_with_a_never_issued_area_group_or_serial_is_not_pii(value: str) -> None:
    assert classes({"x": value}) == {"public"}


@pytest.mark.parametrize("value", ["AB123456C", "AB 12 34 56 C"])
def test_uk_national_insurance_number_is_pii(value: str) -> None:
    assert rules({"x": value}) == [("x", "pii", "value:nino")]


@pytest.mark.parametrize("value", ["QQ123456C", "GB123456A", "AB123456E"])
def test_invalid_nino_prefix_or_suffix_is_not_pii(value: str) -> None:
    assert classes({"x": value}) == {"public"}


@pytest.mark.parametrize(
    "value",
    ["+442079460958", "+44 20 7946 0958", "+1 (555) 123-4567", "(555) 123-4567",
     "555-123-4567", "555.123.4567", "020 7946 0958", "1-800-555-0199"],
)  # fmt: skip
def test_phone_numbers_are_pii(value: str) -> None:
    assert rules({"x": value}) == [("x", "pii", "value:phone")]


@pytest.mark.parametrize(
    "value",
    ["12345678901", "2024-05-01", "2024-05-01T10:00:00Z", "2024-05-01 10:00:00.123+02:00",
     "123e4567-e89b-12d3-a456-426614174000", "8f14e45f-ceea-467a-9575-6f0b2d3b1a2c",
     "1.2.3", "10.0.19045.2965", "1.22.333.4444", "192.168.100.200", "+12345",
     "555-1234"],
)  # fmt: skip
def test_integers_dates_timestamps_uuids_versions_are_not_phones(value: str) -> None:
    assert classes({"x": value}) == {"public"}


def test_only_strings_are_inspected_by_value_detectors() -> None:
    assert classes({"x": 4111111111111111, "y": 4420794609580, "z": b"a@example.com"}) == {"public"}


# ------------------------------------------------------------------------ walking


def test_nested_paths_name_where_a_rule_fired() -> None:
    data = {
        "contact": {"email": "a@example.com"},
        "items": [{"sku": "A1"}, {"card": VALID_VISA}],
        "tags": ("x", "call +442079460958"),
    }
    assert rules(data) == [
        ("contact.email", "pii", "field:email"),
        ("contact.email", "pii", "value:email"),
        ("items[1].card", "financial", "value:card-luhn"),
        ("tags[1]", "pii", "value:phone"),
    ]
    assert classes(data) == {"pii", "financial"}


def test_a_phone_number_inside_free_text_is_pii_like_a_whole_value() -> None:
    assert rules({"note": "call +442079460958"}) == [("note", "pii", "value:phone")]
    # a bare run of digits in text is not a phone number, whatever its length
    assert classes({"note": "call 4420794609 back"}) == {"public"}


def test_list_of_values_gets_indexed_paths() -> None:
    assert rules({"emails": ["x", "b@example.com"]}) == [
        ("emails", "pii", "field:email"),
        ("emails[1]", "pii", "value:email"),
    ]


def test_top_level_string_and_list_are_classified_with_root_paths() -> None:
    assert rules("a@example.com") == [("", "pii", "value:email")]
    assert rules(["x", VALID_IBAN]) == [("[1]", "financial", "value:iban")]


def test_non_dict_mappings_and_non_string_keys_are_walked() -> None:
    data = OrderedDict([(1, "a@example.com"), ("iban", "x")])
    assert rules(data) == [("1", "pii", "value:email"), ("iban", "financial", "field:iban")]


def test_sets_are_walked_in_a_stable_order() -> None:
    first = classify({"s": frozenset({"b@example.com", "a@example.com", "zzz"})})
    second = classify({"s": frozenset({"zzz", "a@example.com", "b@example.com"})})
    assert first == second
    assert first.classes == {"pii"}


def test_findings_are_deterministic_for_equal_records() -> None:
    data = {"name": "Ann", "iban": VALID_IBAN, "nested": {"dob": "1990-01-01"}}
    assert classify(data) == classify(dict(data))
    assert hash(classify(data)) == hash(classify(dict(data)))


def test_a_self_referencing_record_is_refused_with_a_clear_error() -> None:
    data: dict[str, object] = {"a": 1}
    data["self"] = data
    with pytest.raises(InvalidInput, match="nested more than"):
        classify(data)


# ------------------------------------------------------------------------ explicit


def test_explicit_class_adds_to_detection() -> None:
    result = classify({"email": "a@example.com"}, "Financial")
    assert result.classes == {"financial", "pii"}
    assert result.explicit is True
    assert result.labelled == {"financial"} and result.detected == {"pii"}
    assert Finding("", "financial", "explicit") in result.findings
    assert any(f.path == "email" and f.cls == "pii" for f in result.findings)
    assert result.uncovered == {"pii"}


def test_explicit_public_never_lowers_an_email() -> None:
    result = classify({"email": "a@example.com"}, "public")
    assert result.classes == {"pii"}  # public requires nothing: dropped beside pii
    assert result.uncovered == {"pii"}
    free_text = classify({"note": "write to ann@example.com"}, "public")
    assert free_text.classes == {"pii"}


def test_explicit_classes_stand_when_detection_finds_nothing() -> None:
    result = classify({"page": "/home"}, "public", default="pii")
    assert result.classes == {"public"} and result.detected == frozenset()
    assert classify({"page": "/home"}, "financial").classes == {"financial"}
    assert classify({"page": "/home"}, "financial").uncovered == frozenset()


def test_explicit_and_detected_classes_follow_phi_subsuming_pii() -> None:
    assert classify({"email": "a@example.com"}, "phi").classes == {"phi"}
    assert classify({"email": "a@example.com"}, "phi").uncovered == frozenset()
    labelled_pii = classify({"diagnosis": "flu"}, "pii")
    assert labelled_pii.classes == {"phi"} and labelled_pii.uncovered == {"phi"}


def test_a_label_covering_detection_leaves_nothing_uncovered() -> None:
    result = classify({"email": "a@example.com", "iban": VALID_IBAN}, "pii,financial")
    assert result.classes == {"pii", "financial"} and result.uncovered == frozenset()
    assert classify({"email": "a@example.com"}).uncovered == frozenset()  # no label


def test_combine_and_covers() -> None:
    assert combine(["public"], ["pii"]) == {"pii"}
    assert combine(["public"], []) == {"public"}
    assert combine(["pii"], ["phi", "financial"]) == {"phi", "financial"}
    assert combine(["internal"], ["pii"]) == {"internal", "pii"}
    assert covers(["phi"], ["pii"]) and covers(["pii"], [])
    assert not covers(["public"], ["pii"]) and not covers(["pii"], ["phi"])


def test_explicit_classes_accept_a_list_or_a_comma_separated_label() -> None:
    from_list = classify({}, ["PII", "financial", "pii"])
    from_label = classify({}, "financial, pii")
    assert from_list == from_label
    assert from_list.label == "financial,pii"


def test_empty_explicit_class_counts_as_none() -> None:
    assert classify({"email": "a@example.com"}, "").classes == {"pii"}
    assert classify({"email": "a@example.com"}, []).explicit is False


def test_unknown_explicit_class_is_refused_with_did_you_mean() -> None:
    with pytest.raises(InvalidInput) as caught:
        classify({}, "finanical", known_classes=("pii", "phi", "financial"))
    message = str(caught.value)
    assert "'finanical'" in message
    assert "did you mean 'financial'?" in message
    assert "financial, phi, pii, public" in message
    assert "compliance.data_classifications" in message


def test_public_and_known_classes_are_accepted_explicitly() -> None:
    known = ("pii", "phi", "financial")
    assert classify({}, "public", known_classes=known).classes == {"public"}
    assert classify({}, "PHI", known_classes=known).classes == {"phi"}


def test_explicit_class_must_be_strings() -> None:
    with pytest.raises(InvalidInput, match="must be strings"):
        classify({}, ["pii", 3])  # type: ignore[list-item]


# ------------------------------------------------------------------------ value types


def test_classification_and_finding_are_frozen_and_hashable() -> None:
    result = classify({"email": "a@example.com"})
    assert isinstance(result, Classification)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.explicit = True  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.findings[0].cls = "phi"  # type: ignore[misc]
    assert len({result, classify({"email": "a@example.com"})}) == 1


# ------------------------------------------------------------------ the clean-value memo

_memo_values = st.sampled_from(
    ["page_view", "search", VALID_VISA, VALID_IBAN, "ann@example.com", "+1 415 555 0100",
     "078-05-1120", "AB123456C", "2026-11-27T10:00:00Z", "x" * 80, "  4111 1111 1111 1111"]
) | st.text(max_size=30)
_memo_fields = st.sampled_from(["event", "page", "email", "name", "note", "ref", "diagnosis"])


@settings(max_examples=300)
@given(st.lists(st.dictionaries(_memo_fields, _memo_values, max_size=5), min_size=1, max_size=6))
def test_remembered_clean_values_never_change_a_classification(
    records: list[dict[str, str]],
) -> None:
    first = [classify(r) for r in records]
    again = [classify(r) for r in records]  # now with whatever the first pass remembered
    classification_module._CLEAN.clear()
    fresh = [classify(r) for r in records]
    assert first == again == fresh


def test_values_of_a_classified_field_are_never_remembered() -> None:
    classification_module._CLEAN.clear()
    classify({"name": "Ann Example", "event": "signup"})
    assert "Ann Example" not in classification_module._CLEAN
    assert "signup" in classification_module._CLEAN
    classify({"email": "ann@example.com"})
    assert "ann@example.com" not in classification_module._CLEAN


def test_data_used_as_field_names_is_found_without_showing_it_in_the_path() -> None:
    top = classify({"ann@example.com": 1, "n": 2}, default=PUBLIC)
    nested = classify({"visits": {"bob@example.com": 3}}, default=PUBLIC)
    for result, path in ((top, KEY_PATH), (nested, f"visits.{KEY_PATH}")):
        assert result.detected == frozenset({"pii"})
        assert [f.path for f in result.findings] == [path]
        assert "@" not in repr(result.findings)
    # field names that are names, not data, find nothing by value
    assert classify({"city": "Lisbon", "count": 2}, default=PUBLIC).detected == frozenset()
