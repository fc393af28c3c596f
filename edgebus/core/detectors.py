"""Value detectors: which string values are e-mail addresses, SSNs, phone numbers, card
numbers, IBANs or UK National Insurance numbers.

Detectors run on string values only (numbers, bools and bytes are never inspected):
e-mail addresses and US SSNs are found anywhere in a string; phone numbers, UK
National Insurance numbers, payment cards (leading digit 2-6, 13-19 digits, Luhn) and
IBANs (country length, mod-97) must be the whole value (surrounding whitespace
aside), so order numbers and codes inside free text do not trip them. ISO
dates/timestamps, UUIDs, plain digit strings, dotted versions and IPv4 addresses are
never phone numbers.

:func:`scan_value` runs them all, cheap checks first, and returns ``(class, rule)``
pairs; :mod:`edgebus.core.classification` turns them into findings.

Pure: no I/O, no clock, no logging; a detector's answer depends on the string alone.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from edgebus.core.data_classes import FINANCIAL, PII

__all__ = [
    "has_email",
    "is_card",
    "is_iban",
    "is_nino",
    "is_phone",
    "luhn_ok",
    "scan_value",
]

#: the part of an e-mail address after "@" (matched from the "@", so never quadratic)
_EMAIL_DOMAIN_RE = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9\-]{0,62}(?:\.[A-Za-z0-9\-]{1,63})*\.[A-Za-z]{2,24}(?![A-Za-z0-9\-])",
    re.ASCII,
)
_EMAIL_LOCAL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_%+-")
_SSN_RE = re.compile(
    r"(?<![0-9-])(?!000|666|9[0-9]{2})[0-9]{3}-(?!00)[0-9]{2}-(?!0000)[0-9]{4}(?![0-9-])",
    re.ASCII,
)
_NINO_RE = re.compile(
    r"(?!BG|GB|KN|NK|NT|TN|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]"
    r" ?[0-9]{2} ?[0-9]{2} ?[0-9]{2} ?[A-D]",
    re.ASCII,
)
_CARD_RE = re.compile(r"[2-6](?:[ -]?[0-9]){12,18}", re.ASCII)
_PHONE_E164_RE = re.compile(r"\+[1-9][0-9]{9,14}", re.ASCII)
_PHONE_FMT_RE = re.compile(
    r"(?:\+[0-9]{1,3}[ .-]?)?(?:\([0-9]{1,4}\)[ .-]?)?[0-9]{1,4}(?:[ .-][0-9]{2,8}){1,5}",
    re.ASCII,
)
_PHONE_DOTTED_RE = re.compile(r"[0-9]{3}\.[0-9]{3}\.[0-9]{4}", re.ASCII)
_ISO_DATE_PREFIX_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)
_IBAN_RE = re.compile(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}", re.ASCII)
_IBAN_LENGTHS: Mapping[str, int] = {
    "AD": 24, "AE": 23, "AT": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29, "CH": 21,
    "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "EE": 20, "ES": 24, "FI": 18, "FO": 18,
    "FR": 27, "GB": 22, "GI": 23, "GL": 18, "GR": 27, "HR": 21, "HU": 28, "IE": 22,
    "IL": 23, "IS": 26, "IT": 27, "KW": 30, "KZ": 20, "LB": 28, "LI": 21, "LT": 20,
    "LU": 20, "LV": 21, "MC": 27, "MT": 31, "NL": 18, "NO": 15, "PL": 28, "PT": 25,
    "QA": 29, "RO": 24, "SA": 24, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "TR": 26,
    "UA": 29,
}  # fmt: skip
_IBAN_TO_DIGITS = str.maketrans({chr(ord("A") + i): str(10 + i) for i in range(26)})
_LUHN_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)
_DIGITS = frozenset("0123456789")
_CARD_STARTS = frozenset("23456")
_PHONE_STARTS = frozenset("0123456789+(")

_EMAIL_HIT = (PII, "value:email")
_SSN_HIT = (PII, "value:ssn")
_NINO_HIT = (PII, "value:nino")
_PHONE_HIT = (PII, "value:phone")
_CARD_HIT = (FINANCIAL, "value:card-luhn")
_IBAN_HIT = (FINANCIAL, "value:iban")
_NO_HITS: tuple[tuple[str, str], ...] = ()
_EMAIL_ONLY = (_EMAIL_HIT,)
_HEX = frozenset("0123456789abcdefABCDEF")
_BORING_RE = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
    r"(?:[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:[.,][0-9]{1,9})?)?(?:Z|[+-][0-9]{2}:?[0-9]{2})?)?"
    r"|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
    re.ASCII,
)


def has_email(s: str) -> bool:
    """An ``x@domain.tld`` anywhere in ``s``: look at each "@" rather than search."""
    at = s.find("@")
    while at != -1:
        if at > 0 and s[at - 1] in _EMAIL_LOCAL_CHARS and _EMAIL_DOMAIN_RE.match(s, at + 1):
            return True
        at = s.find("@", at + 1)
    return False


def luhn_ok(digits: str) -> bool:
    """Whether a string of ASCII digits passes the Luhn check (payment cards)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        total += _LUHN_DOUBLED[d] if i & 1 else d
    return total % 10 == 0


def is_card(s: str) -> bool:
    """A payment card number: leading 2-6, 13-19 digits (spaces, dashes), Luhn."""
    if _CARD_RE.fullmatch(s) is None:
        return False
    digits = s.replace(" ", "").replace("-", "")
    return 13 <= len(digits) <= 19 and luhn_ok(digits)


def is_phone(s: str) -> bool:
    """A phone number (E.164 or formatted, 10-15 digits), not a date, version or IPv4."""
    if s[0] == "+" and _PHONE_E164_RE.fullmatch(s) is not None:
        return True
    if _PHONE_FMT_RE.fullmatch(s) is None:
        return False
    digits = sum(1 for ch in s if ch in _DIGITS)
    if not 10 <= digits <= 15:
        return False
    if _ISO_DATE_PREFIX_RE.match(s) is not None:
        return False
    if "-" not in s and " " not in s and "(" not in s and s[0] != "+":
        # only dots: versions and IPv4 look like this; accept the 555.123.4567 shape
        return _PHONE_DOTTED_RE.fullmatch(s) is not None
    return True


def is_iban(s: str) -> bool:
    """An IBAN (spaces allowed, any case): its country's length, mod-97 check == 1."""
    compact = s.replace(" ", "").upper()
    if _IBAN_RE.fullmatch(compact) is None:
        return False
    expected = _IBAN_LENGTHS.get(compact[:2])
    if expected is not None and len(compact) != expected:
        return False
    if not 15 <= len(compact) <= 34:
        return False
    return int((compact[4:] + compact[:4]).translate(_IBAN_TO_DIGITS)) % 97 == 1


def is_nino(s: str) -> bool:
    """A UK National Insurance number (``AB 12 34 56 C``, spaces optional)."""
    return _NINO_RE.fullmatch(s) is not None


def _whole_value_hit(s: str) -> tuple[str, str] | None:
    """The detector (card, phone, IBAN, NINO) that matches the whole stripped value."""
    c0 = s[0]
    n = len(s)
    if c0.isalpha():
        if s[1].isalpha() and (s[2] in _DIGITS or s[2] == " "):
            if n >= 15 and is_iban(s):
                return _IBAN_HIT
            if n <= 13 and _NINO_RE.fullmatch(s) is not None:
                return _NINO_HIT
    elif c0 in _PHONE_STARTS:
        if c0 in _CARD_STARTS and n >= 13 and is_card(s):
            return _CARD_HIT
        if n >= 10 and is_phone(s):
            return _PHONE_HIT
    return None


def scan_value(s: str) -> tuple[tuple[str, str], ...]:
    """``(class, rule)`` pairs the string value triggers. Cheap checks go first."""
    n = len(s)
    if n < 5:
        return _NO_HITS
    email = "@" in s and has_email(s)
    if n < 9:
        return _EMAIL_ONLY if email else _NO_HITS
    c0 = s[0]
    # ISO dates/timestamps and UUIDs are everywhere and hold nothing: leave early
    if c0 in _HEX and (s[4] == "-" or s[8] == "-") and _BORING_RE.fullmatch(s) is not None:
        return _NO_HITS
    whole = s.strip() if c0.isspace() or s[-1].isspace() else s
    hit = _whole_value_hit(whole) if len(whole) >= 9 else None
    ssn = n >= 11 and "-" in s and _SSN_RE.search(s) is not None
    if hit is None and not ssn:
        return _EMAIL_ONLY if email else _NO_HITS
    hits = [_EMAIL_HIT] if email else []
    if ssn:
        hits.append(_SSN_HIT)
    if hit is not None:
        hits.append(hit)
    return tuple(hits)
