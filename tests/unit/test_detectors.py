"""Value detectors (edgebus.core.detectors) on their own, and their place in classify."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgebus.core import classification, data_classes
from edgebus.core.classification import classify
from edgebus.core.detectors import (
    free_text_hits,
    has_email,
    is_card,
    is_iban,
    is_nino,
    is_phone,
    luhn_ok,
    scan_value,
)

VISA = "4111111111111111"
IBAN = "GB82WEST12345698765432"


def test_names_stay_importable_from_classification() -> None:
    for name in classification.__all__:
        assert hasattr(classification, name), name
    assert (classification.PII, classification.PHI) == (data_classes.PII, data_classes.PHI)
    assert (classification.FINANCIAL, classification.PUBLIC) == ("financial", "public")


@pytest.mark.parametrize(
    ("digits", "ok"),
    [("4111111111111111", True), ("4111111111111112", False), ("79927398713", True),
     ("79927398710", False), ("0", True), ("18", True), ("", True)],
)  # fmt: skip
def test_luhn_check(digits: str, ok: bool) -> None:
    assert luhn_ok(digits) is ok


@pytest.mark.parametrize(
    ("value", "card"),
    [(VISA, True), ("4111 1111 1111 1111", True), ("4111-1111-1111-1111", True),
     ("378282246310005", True), ("4111111111111112", False), ("1700000000004", False),
     ("4111--1111111111111", False), ("41111111", False), ("7111111111111111", False)],
)  # fmt: skip
def test_card_numbers_need_a_network_digit_a_length_and_luhn(value: str, card: bool) -> None:
    assert is_card(value) is card


@pytest.mark.parametrize(
    ("value", "iban"),
    [(IBAN, True), ("GB82 WEST 1234 5698 7654 32", True), ("gb82west12345698765432", True),
     ("DE89370400440532013000", True), ("GB83WEST12345698765432", False),
     ("GB82WEST1234569876543", False), ("NO9386011117947", True), ("NO938601111794", False)],
)  # fmt: skip
def test_iban_needs_its_country_length_and_mod_97(value: str, iban: bool) -> None:
    assert is_iban(value) is iban


@pytest.mark.parametrize(
    ("value", "phone"),
    [("+14155552671", True), ("(415) 555-2671", True), ("415-555-2671", True),
     ("555.123.4567", True), ("+44 20 7946 0958", True), ("2024-01-02-1234", False),
     ("10.0.0.1", False), ("1.2.3.4.5.6.7", False), ("4155552671", False),
     ("12-34", False)],
)  # fmt: skip
def test_phone_numbers_but_not_dates_versions_or_addresses(value: str, phone: bool) -> None:
    assert is_phone(value) is phone


@pytest.mark.parametrize(
    ("value", "nino"),
    [("AB123456C", True), ("AB 12 34 56 C", True), ("GB123456C", False), ("AB123456E", False)],
)
def test_uk_national_insurance_numbers(value: str, nino: bool) -> None:
    assert is_nino(value) is nino


@pytest.mark.parametrize(
    ("value", "email"),
    [("a@b.io", True), ("write to first.last+x@sub.example.co.uk now", True),
     ("user@host", False), ("@handle", False), ("a@b.c", False), ("foo@@bar", False)],
)  # fmt: skip
def test_email_anywhere_in_the_string(value: str, email: bool) -> None:
    assert has_email(value) is email


def test_scan_value_pairs_in_order_email_ssn_then_the_whole_value_detector() -> None:
    assert scan_value("x@example.com 123-45-6789") == (
        ("pii", "value:email"),
        ("pii", "value:ssn"),
    )
    assert scan_value(f"  {VISA} ") == (("financial", "value:card-luhn"),)
    assert scan_value(IBAN) == (("financial", "value:iban"),)
    assert scan_value("+14155552671") == (("pii", "value:phone"),)
    assert scan_value("AB123456C") == (("pii", "value:nino"),)


@pytest.mark.parametrize(
    "value",
    ["", "abcd", "page_view", "2024-01-02T03:04:05Z", "123e4567-e89b-12d3-a456-426614174000",
     "order 4111111111111111 shipped", "1.2.3"],
)  # fmt: skip
def test_scan_value_finds_nothing_in_ordinary_values(value: str) -> None:
    assert scan_value(value) == ()


@given(st.text(max_size=40))
def test_scan_value_is_what_classify_reports_for_a_string_field(value: str) -> None:
    field_findings = {(f.cls, f.rule) for f in classify({"x": value}).findings}
    assert set(scan_value(value)) == field_findings - {("public", "default")}


# ------------------------------------------------------------------------ free text


@pytest.mark.parametrize(
    ("text", "hits"),
    [("please charge 4111 1111 1111 1111 tomorrow", (("financial", "value:card-luhn"),)),
     ("card 4111111111111111, exp 12/25", (("financial", "value:card-luhn"),)),
     ("amex 3782 822463 10005 ok", (("financial", "value:card-luhn"),)),
     ("pay GB82 WEST 1234 5698 7654 32 please", (("financial", "value:iban"),)),
     ("to DE89370400440532013000.", (("financial", "value:iban"),)),
     ("call +44 20 7946 0958 today", (("pii", "value:phone"),)),
     ("ring (415) 555-2671 or 1-800-555-0199", (("pii", "value:phone"),)),
     ("card 4111111111111111, iban DE89370400440532013000, tel +14155552671",
      (("financial", "value:card-luhn"), ("financial", "value:iban"), ("pii", "value:phone"))),
     ("naïve café 4111 1111 1111 1111 ok", (("financial", "value:card-luhn"),))],
)  # fmt: skip
def test_free_text_finds_cards_ibans_and_phones_among_other_words(
    text: str, hits: tuple[tuple[str, str], ...]
) -> None:
    assert free_text_hits(text) == hits
    assert scan_value(text) == hits


@pytest.mark.parametrize(
    "text",
    ["order 4111111111111111 shipped", "Order no. 4111 1111 1111 1111", "ref: 4111111111111111",
     "invoice #4111111111111111", "ticket=4111111111111111", "tracking number 4111111111111111"],
)  # fmt: skip
def test_a_number_the_words_before_it_call_an_identifier_is_not_a_card(text: str) -> None:
    assert free_text_hits(text) == ()


def test_a_word_containing_an_identifier_word_does_not_make_an_identifier() -> None:
    assert free_text_hits("the border 4111111111111111 here") == (
        ("financial", "value:card-luhn"),
    )


def test_a_card_followed_by_three_more_digits_is_read_without_them() -> None:
    # 4-4-4-4-3: a 19-digit card, or a 16-digit card and a CVV
    assert free_text_hits("card 4111 1111 1111 1111 123") == (("financial", "value:card-luhn"),)
    # a fifth group of 4: a longer number, not a card
    assert free_text_hits("no 4111 1111 1111 1111 2222") == ()


def test_free_text_needs_capitals_for_an_iban_and_ten_digits_for_anything() -> None:
    assert is_iban("gb82west12345698765432")  # a whole value may be in any case
    assert free_text_hits("iban gb82west12345698765432 ok") == ()
    assert free_text_hits("short 411111111") == ()  # nine digits


def test_characters_beyond_ascii_keep_offsets_and_join_words() -> None:
    assert free_text_hits("€€ 4111111111111111 €") == (("financial", "value:card-luhn"),)
    assert free_text_hits("€4111111111111111") == ()  # an amount
    assert free_text_hits("é4111111111111111") == ()  # inside a word


def test_a_phone_number_longer_than_e164_keeps_its_first_fifteen_digits() -> None:
    assert free_text_hits("call +44 20 7946 0958 2024 1234") == (("pii", "value:phone"),)
    assert free_text_hits("n +1234567890123456789") == ()  # one group past 15 digits


def test_an_iban_must_be_printed_compact_or_in_groups_of_4() -> None:
    assert is_iban("GB82 WEST 1234 5698 7654 32")
    assert not is_iban("GB82 WEST12345698765432")
    assert not is_iban("id 12345678901234567890 ZAWSGMDTKY")  # mod-97 holds, spaces do not
