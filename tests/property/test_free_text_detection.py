"""Free-text detection (edgebus.core.detectors): cards (Luhn), IBANs (mod-97), e-mail
addresses and phone numbers anywhere in a string value classify a record as the same
value alone does, and a corpus of look-alikes (filenames, hostnames, URLs, order
numbers, timestamps, IP addresses, versions, UUIDs, amounts, phone-like numbers)
stays public, alone or inside text."""

from __future__ import annotations

import string

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from edgebus.core import detectors
from edgebus.core.classification import classify
from edgebus.core.detectors import luhn_ok, scan_value

CARD = ("financial", "value:card-luhn")
IBAN = ("financial", "value:iban")
EMAIL = ("pii", "value:email")
PHONE = ("pii", "value:phone")

#: (prefix, lengths) of the card networks free text knows
NETWORKS = [
    ("4", (13, 16, 19)), ("51", (16,)), ("55", (16,)), ("2221", (16,)), ("2720", (16,)),
    ("34", (15,)), ("37", (15,)), ("6011", (16, 19)), ("65", (16, 17, 18, 19)),
    ("3528", (16,)), ("3589", (19,)), ("62", (16, 19)), ("36", (14,)), ("300", (14, 16)),
]  # fmt: skip
#: how a card of n digits is written in groups (besides compact)
GROUPS = {16: (4, 4, 4, 4), 19: (4, 4, 4, 4, 3), 15: (4, 6, 5), 14: (4, 6, 4)}

words = st.text(string.ascii_letters, min_size=1, max_size=10)


def check_digit(body: str) -> str:
    return next(d for d in "0123456789" if luhn_ok(body + d))


@st.composite
def card_numbers(draw: st.DrawFn) -> tuple[str, int]:
    """A valid card number (network prefix and length, Luhn) and where its check
    digit is."""
    prefix, lengths = draw(st.sampled_from(NETWORKS))
    length = draw(st.sampled_from(lengths))
    middle = draw(st.text("0123456789", min_size=length - len(prefix) - 1,
                          max_size=length - len(prefix) - 1))
    body = prefix + middle
    return body + check_digit(body), length - 1


def written(digits: str, sep: str, groups: tuple[int, ...] | None) -> str:
    if groups is None:
        return digits
    parts, at = [], 0
    for size in groups:
        parts.append(digits[at : at + size])
        at += size
    return sep.join(parts)


@st.composite
def texts_around(draw: st.DrawFn, thing: str) -> str:
    """``thing`` among random words (at least one), as a word of its own."""
    before = draw(st.lists(words, max_size=6))
    after = draw(st.lists(words, max_size=6))
    assume(before or after)
    opening = draw(st.sampled_from(["", "(", "\""]))
    closing = draw(st.sampled_from(["", ",", ".", ";", ")", "!", "\""]))
    text = " ".join([*before, f"{opening}{thing}{closing}", *after])
    # the words just before may call it an identifier (``order 4111...``): not a card
    assume(detectors._ID_CONTEXT_RE.search(" ".join(before) + " ") is None)
    return text


@given(card_numbers(), st.sampled_from([" ", "-"]), st.booleans(), st.data())
def test_a_valid_card_anywhere_in_text_is_found(
    card: tuple[str, int], sep: str, grouped: bool, data: st.DataObject
) -> None:
    digits, _ = card
    number = written(digits, sep, GROUPS.get(len(digits)) if grouped else None)
    text = data.draw(texts_around(number))
    assert scan_value(text) == (CARD,)
    assert classify({"note": text}).classes == {"financial"}


@given(card_numbers(), st.integers(1, 9), st.sampled_from([" ", "-"]), st.booleans(),
       st.data())
def test_the_same_digits_with_another_check_digit_are_not_a_card(
    card: tuple[str, int], shift: int, sep: str, grouped: bool, data: st.DataObject
) -> None:
    digits, at = card
    wrong = digits[:at] + str((int(digits[at]) + shift) % 10)
    # 4-4-4-4-3 holds a 16-digit reading too (a card and 3 more digits): compact only
    groups = GROUPS.get(len(wrong)) if grouped and len(wrong) != 19 else None
    text = data.draw(texts_around(written(wrong, sep, groups)))
    assert scan_value(text) == ()
    assert classify({"note": text}).classes == {"public"}


TO_DIGITS = str.maketrans({c: str(10 + i) for i, c in enumerate(string.ascii_uppercase)})


@st.composite
def ibans(draw: st.DrawFn, valid: bool = True) -> str:
    """An IBAN of a known country and length; with ``valid=False`` its check digits
    are wrong."""
    country, length = draw(st.sampled_from(sorted(detectors._IBAN_LENGTHS.items())))
    size = length - 4
    bank = ""
    if size - 4 >= 10 and size - 4 < 16 and draw(st.booleans()):
        bank = draw(st.text(string.ascii_uppercase, min_size=4, max_size=4))  # GB, NL
    bban = bank + draw(st.text("0123456789", min_size=size - len(bank),
                               max_size=size - len(bank)))
    check = 98 - int((bban + country + "00").translate(TO_DIGITS)) % 97
    if not valid:
        check = (check + draw(st.integers(1, 96))) % 97
    return f"{country}{check:02d}{bban}"


def grouped_by_4(iban: str) -> str:
    return " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))


@given(ibans(), st.booleans(), st.data())
def test_a_valid_iban_anywhere_in_text_is_found(
    iban: str, grouped: bool, data: st.DataObject
) -> None:
    text = data.draw(texts_around(grouped_by_4(iban) if grouped else iban))
    assert scan_value(text) == (IBAN,)
    assert classify({"note": text}).classes == {"financial"}


@given(ibans(valid=False), st.booleans(), st.data())
def test_an_iban_with_wrong_check_digits_is_not_found(
    iban: str, grouped: bool, data: st.DataObject
) -> None:
    text = data.draw(texts_around(grouped_by_4(iban) if grouped else iban))
    assert IBAN not in scan_value(text)


_label = st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=10)
emails = st.builds(
    lambda local, domain, labels, tld: f"{local}@{'.'.join([domain, *labels])}.{tld}",
    st.from_regex(r"[A-Za-z0-9](?:[A-Za-z0-9._+]{0,10}[A-Za-z0-9])?", fullmatch=True),
    _label, st.lists(_label, max_size=2), st.text(string.ascii_lowercase, min_size=2, max_size=6),
)


@given(emails, st.data())
def test_an_email_address_anywhere_in_text_is_found(email: str, data: st.DataObject) -> None:
    text = data.draw(texts_around(email))
    assert EMAIL in scan_value(text)
    assert "pii" in classify({"note": text}).classes


PHONES = [
    "+442079460958", "+44 20 7946 0958", "+1 (555) 123-4567", "+44 (0)20 7946 0958",
    "+33 1 23 45 67 89", "+49-30-1234-5678", "(415) 555-2671", "(415)555-2671",
    "415-555-2671", "415.555.2671", "1-800-555-0199",
]  # fmt: skip


@given(st.sampled_from(PHONES), st.data())
def test_a_phone_number_of_a_clear_shape_anywhere_in_text_is_found(
    phone: str, data: st.DataObject
) -> None:
    text = data.draw(texts_around(phone))
    assert scan_value(text) == (PHONE,)


#: look-alikes: none of them is personal or financial, alone or inside text
FALSE_POSITIVES = [
    # filenames
    "report.pdf", "IMG_20241207_101500.jpg", "backup-2024-12-07.tar.gz",
    "invoice_4111111111111111.pdf", "4111111111111111.pdf", "scan 20241207101500.png",
    "export_GB82WEST12345698765432.csv", "data/2024/12/07/part-00001-4111111111111111.parquet",
    # hostnames, URLs without user info
    "api.example.com", "web-1.internal", "ip-10-0-0-1.ec2.internal",
    "https://example.com/orders/4111111111111111?page=2",
    "https://shop.example.com/cart?ref=4111111111111111&qty=2", "http://10.0.0.1:8080/health",
    "s3://bucket/4111-1111-1111-1111/obj", "https://example.com/call/+442079460958",
    # order numbers and other identifiers
    "ORD-2024-000123", "order 4111111111111111 shipped", "order #4111111111111111",
    "Order no. 4111 1111 1111 1111", "ref: 5555555555554444", "invoice number 378282246310005",
    "tracking 1Z999AA10123456784", "PO-5555555555554444", "SKU 6011111111111117-B",
    "ticket=4111111111111111", "case id: 4111111111111111",
    # timestamps
    "2024-12-07T10:15:00Z", "2024-12-07 10:15:00", "2024-12-07T10:15:00.123456+01:00",
    "1733566500000", "epoch 1733566500123456", "20241207101500",
    "Sat, 07 Dec 2024 10:15:00 +0100", "10:15:00 +05:30",
    # IP addresses
    "192.168.100.200", "10.0.0.1 and 172.16.254.1", "2001:db8::8a2e:370:7334",
    "fe80::1ff:fe23:4567:890a",
    # versions
    "1.22.333.4444", "10.0.19045.2965", "v2.14.0-rc.1", "build 4111.1111.1111.1111",
    # UUIDs and hashes
    "123e4567-e89b-12d3-a456-426614174000", "8f14e45f-ceea-467a-9575-6f0b2d3b1a2c",
    "5d41402abc4b2a76b9719d911017c592",
    "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    # amounts
    "$1,234,567.89", "EUR 12345678.90", "+1234.56", "-4111111111111111.00",
    "total 4111111111111111.50 USD", "+12345678901.23", "\u20ac4111111111111111",
    "balance: 1 234 567,89 EUR",
    # phone-like, not phone numbers
    "12:30-13:45", "1234567890", "+12345", "call 4155552671 back", "555-1234", "+1 2024",
    "1-2-3-4-5-6-7-8-9-0", "score +12 2024-12-07 10:15",
    # digit runs failing Luhn, or too long for a card
    "4111111111111112", "41111111111111111111111", "id 12345678901234567890",
    "4111 1111 1111 1111 2222 3333",
    # IBAN-like, failing mod-97 or the country's length
    "GB83WEST12345698765432", "GB83 WEST 1234 5698 7654 32", "GB82WEST1234569876543",
    "XX82WEST12345698765432X", "DE89370400440532013001",
]  # fmt: skip


@pytest.mark.parametrize("value", FALSE_POSITIVES)
def test_look_alikes_are_public_alone_and_inside_text(value: str) -> None:
    assert scan_value(value) == ()
    assert scan_value(f"see {value} for details") == ()
    assert classify({"note": value, "x": f"at {value}."}).classes == {"public"}


@given(st.sampled_from(FALSE_POSITIVES), st.data())
def test_look_alikes_among_random_words_are_public(value: str, data: st.DataObject) -> None:
    assert scan_value(data.draw(texts_around(value))) == ()
