"""Value detectors: which string values are or hold e-mail addresses, SSNs, phone
numbers, card numbers, IBANs or UK National Insurance numbers.

Detectors run on string values only (numbers, bools and bytes are never inspected).
E-mail addresses and US SSNs are found anywhere in a string. A whole value (surrounding
whitespace aside) is a phone number (E.164 or formatted), a UK National Insurance
number, a payment card (leading digit 2-6, 13-19 digits, Luhn) or an IBAN (country
length, mod-97; compact or printed in groups of 4). ISO dates/timestamps, UUIDs, plain
digit strings, dotted versions and IPv4 addresses are never phone numbers.

Free text (:func:`free_text_hits`): a value that is none of those as a whole may still
hold a card, an IBAN or a phone number among other words, and gets the same finding.
There the shapes are stricter, so that filenames, hostnames, URLs, order numbers,
timestamps, IP addresses, versions and amounts stay clean:

* a card is a word of its own, not part of a longer word, number, identifier, path,
  decimal or amount (``ORD-4111...``, ``#4111...``, ``/4111...``, ``4111....pdf``,
  ``4111...,00``, ``$4111...`` stay clean; nor the tail of a longer grouped number),
  13-19 digits written compact or in groups of 4 (or 4-6-5 / 4-6-4), with a real
  network's prefix and length (Visa, Mastercard, Amex, Discover, Diners, JCB,
  UnionPay) and a valid Luhn check digit, and not labelled as an identifier by the
  words just before it (``order 4111111111111111``, ``ref: ...``, ``invoice no. ...``);
* an IBAN is a word of its own in capitals, of a known country, exactly its country's
  length, compact or in groups of 4, with a valid mod-97 check;
* a phone number has an unmistakable shape: ``+`` and a country code then groups of
  digits (10-15 digits in all, separated by single spaces or hyphens, an area code in
  parentheses allowed), or a North American ``(415) 555-2671``, ``415-555-2671`` or
  ``415.555.2671``. A bare digit run is never a phone number in free text.

Free text is only searched when it is at least 14 characters long and holds at least
ten ASCII digits (every card and phone number does, and every IBAN a bank issues),
counted with three C calls (about 0.3 us for 200 characters); the candidates (and
those of SSNs) are found with ``bytes.find`` on a one-byte-per-character shape of the
string and checked where they stand, never with a regex search over the whole text,
so the cost is linear in the string and small for ordinary text.

:func:`scan_value` runs them all, cheap checks first, and returns ``(class, rule)``
pairs; :mod:`edgebus.core.classification` turns them into findings.

Pure: no I/O, no clock, no logging; a detector's answer depends on the string alone.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from edgebus.core.data_classes import FINANCIAL, PII

__all__ = [
    "free_text_hits",
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
    """An IBAN (any case; compact, or printed in groups of 4 with single spaces): its
    country's length, mod-97 check == 1."""
    compact = s.replace(" ", "").upper()
    if _IBAN_RE.fullmatch(compact) is None:
        return False
    if " " in s and (len(s) != len(compact) + (len(compact) - 1) // 4 or s[4::5].strip(" ")):
        return False  # spaces elsewhere: words of a sentence, not a printed IBAN
    expected = _IBAN_LENGTHS.get(compact[:2])
    if expected is not None and len(compact) != expected:
        return False
    if not 15 <= len(compact) <= 34:
        return False
    return int((compact[4:] + compact[:4]).translate(_IBAN_TO_DIGITS)) % 97 == 1


def is_nino(s: str) -> bool:
    """A UK National Insurance number (``AB 12 34 56 C``, spaces optional)."""
    return _NINO_RE.fullmatch(s) is not None


# ------------------------------------------------------------------------ free text

#: one byte per character: ASCII digits -> "0", capitals -> "A", small letters -> "a",
#: space, "-" and "." -> "_" (the separators inside a number); the rest unchanged
#: (a character beyond ASCII arrives as "?")
_SHAPE = bytes.maketrans(
    b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz -.",
    b"0" * 10 + b"A" * 26 + b"a" * 26 + b"___",
)
_FREE_TEXT_MIN_DIGITS = 10
_SSN_DIGITS = 9
_SSN_SHAPE = b"000_00_0000"
#: the shortest free text that can hold one: "x 415-555-2671" (shorter: a whole value)
_FREE_TEXT_MIN_CHARS = 14
_ASCII_DIGITS = b"0123456789"
_CARD_RUN = b"0" * 13
_CARD_GROUPS = b"0000_0000_0000"
_CARD_GROUPS_AMEX = b"0000_000000_0000"
_IBAN_START = b"AA00"
_PHONE_PLUS = b"+0"
_PHONE_PAREN = b"(000)"
_PHONE_NANP = b"000_000_0000"
#: in every grouped card and North American number (not in dates, times or amounts)
_GROUPED = b"0_000"
#: what may not touch a number found in free text (besides letters and digits, which
#: make it part of a word): "_" (a word too), "#", "/", "\\", "@" (an identifier, a path,
#: an address), "+" and currency signs (an amount)
_NOT_NEXT_TO = frozenset("_#/\\@+$\u20ac\u00a3\u00a5")
#: before a number, "-" or "." after a letter or digit join it to a longer identifier or
#: version (``ORD-4111...``, ``v1.4111...``); after it, these followed by a letter or
#: digit continue it (``...1111.pdf``, ``...1111,00``, ``...1111-2``, ``...1111:80``)
_JOINERS_BEFORE = frozenset("-.")
_JOINERS_AFTER = frozenset("-.,:")
_DIGIT_RUN_RE = re.compile(r"[0-9]+", re.ASCII)
_CARD_GROUPED_RE = re.compile(
    r"[0-9]{4}(?P<sep>[ -])(?:[0-9]{4}(?P=sep)[0-9]{4}(?P=sep)[0-9]{4}(?:(?P=sep)[0-9]{3})?"
    r"|[0-9]{6}(?P=sep)[0-9]{4,5})",
    re.ASCII,
)
_NEXT_GROUP_RE = re.compile(r"[ -][0-9]{4}(?![0-9])", re.ASCII)
#: words before a number that make it an identifier (``order 4111111111111111``)
_ID_WORDS = (
    "order", "invoice", "inv", "ref", "reference", "tracking", "ticket", "booking",
    "confirmation", "shipment", "parcel", "receipt", "po", "sku", "serial", "case", "id",
    "item", "part", "product", "batch", "job", "build", "request", "req",
)  # fmt: skip
_ID_CONTEXT_RE = re.compile(
    r"(?<![A-Za-z])(?:" + "|".join(_ID_WORDS) + r")s?\.?[ \t]*"
    r"(?:(?:no|nr|num|number|id)\.?[ \t]*)?[#:=]?[ \t]*\Z",
    re.ASCII | re.IGNORECASE,
)
_ID_CONTEXT_CHARS = 40
_PHONE_PLUS_RE = re.compile(
    r"\+[1-9][0-9]{0,14}(?:[ -]?\([0-9]{1,4}\)[0-9]{0,14}|[ -][0-9]{1,14}){0,7}", re.ASCII
)
_PHONE_PAREN_RE = re.compile(r"\([2-9][0-9]{2}\) ?[0-9]{3}[ .-][0-9]{4}", re.ASCII)
_PHONE_NANP_RE = re.compile(r"(?:1-)?[2-9][0-9]{2}(?P<sep>[-.])[0-9]{3}(?P=sep)[0-9]{4}", re.ASCII)
_DATE_IN_PHONE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)


def _card_network_ok(digits: str) -> bool:
    """Whether ``digits`` has the prefix and length of a card network (IIN ranges of
    Visa, Mastercard, Amex, Discover, Diners, JCB, UnionPay)."""
    n = len(digits)
    if digits[0] == "4":
        return n in (13, 16, 19)
    p2, p3, p4 = int(digits[:2]), int(digits[:3]), int(digits[:4])
    if 51 <= p2 <= 55 or 2221 <= p4 <= 2720:
        return n == 16
    if p2 in (34, 37):
        return n == 15
    if p4 == 6011 or 644 <= p3 <= 649 or p2 == 65 or 3528 <= p4 <= 3589 or p2 == 62:
        return 16 <= n <= 19
    if 300 <= p3 <= 305 or p2 in (36, 38, 39):
        return 14 <= n <= 19
    return False


def _stands_alone(s: str, start: int, end: int) -> bool:
    """Whether ``s[start:end]`` is a word of its own: nothing joins it to a longer
    word, number, identifier, path or amount on either side."""
    if start > 0:
        c = s[start - 1]
        if c.isalnum() or c in _NOT_NEXT_TO:
            return False
        if c in _JOINERS_BEFORE and start > 1 and s[start - 2].isalnum():
            return False
    if end < len(s):
        c = s[end]
        if c.isalnum() or c in _NOT_NEXT_TO:
            return False
        if c in _JOINERS_AFTER and end + 1 < len(s) and s[end + 1].isalnum():
            return False
    return True


def _labelled_identifier(s: str, start: int) -> bool:
    """Whether the words just before ``start`` call the number there an identifier."""
    return _ID_CONTEXT_RE.search(s, max(0, start - _ID_CONTEXT_CHARS), start) is not None


def _card_in(s: str, digits: str, start: int, end: int) -> bool:
    """Whether ``digits`` (written at ``s[start:end]``) is a card number in free text."""
    return (
        _stands_alone(s, start, end)
        and _card_network_ok(digits)
        and luhn_ok(digits)
        and not _labelled_identifier(s, start)
    )


def _has_card(s: str, shape: bytes) -> bool:
    """A payment card number anywhere in free text (see the module docstring)."""
    at = shape.find(_CARD_RUN)
    while at != -1:
        run = _DIGIT_RUN_RE.match(s, at)
        end = run.end() if run is not None else at + 1
        if end - at <= 19 and _card_in(s, s[at:end], at, end):
            return True
        at = shape.find(_CARD_RUN, end)
    if _GROUPED not in shape:
        return False
    for needle in (_CARD_GROUPS, _CARD_GROUPS_AMEX):
        at = shape.find(needle)
        while at != -1:
            grouped = _CARD_GROUPED_RE.match(s, at)
            if grouped is not None:
                text, sep = grouped.group(), grouped.group("sep")
                # 4-4-4-4-3: the last 3 digits may be the text's, not the card's
                ends = (at + len(text), at + 19) if len(text) == 23 else (at + len(text),)
                # a group of digits just before: the card would be the tail of a
                # longer grouped number (an IBAN's groups, an account number)
                after_digits = at >= 2 and s[at - 1] == sep and s[at - 2].isdigit()
                for end in () if after_digits else ends:
                    if _NEXT_GROUP_RE.match(s, end) is None and _card_in(
                        s, s[at:end].replace(sep, ""), at, end
                    ):
                        return True
            at = shape.find(needle, at + 1)
    return False


def _iban_at(s: str, start: int) -> bool:
    """An IBAN in capitals starting at ``start``, compact or in groups of 4."""
    length = _IBAN_LENGTHS.get(s[start : start + 2])
    if length is None:
        return False
    compact = s[start : start + length]
    if len(compact) == length and compact.isalnum() and compact.isascii():
        end = start + length
    else:
        end = start + length + (length - 1) // 4
        grouped = s[start:end]
        if len(grouped) != end - start or grouped[4::5].strip(" ") != "":
            return False
        compact = grouped.replace(" ", "")
        if len(compact) != length or not (compact.isalnum() and compact.isascii()):
            return False
    if not compact.isupper() or not _stands_alone(s, start, end):
        return False
    return int((compact[4:] + compact[:4]).translate(_IBAN_TO_DIGITS)) % 97 == 1


def _has_iban(s: str, shape: bytes) -> bool:
    """An IBAN anywhere in free text (see the module docstring)."""
    at = shape.find(_IBAN_START)
    while at != -1:
        if _iban_at(s, at):
            return True
        at = shape.find(_IBAN_START, at + 1)
    return False


def _phone_plus_at(s: str, start: int) -> bool:
    """``+`` and a country code, then groups: 10-15 digits (trailing groups past 15
    are left to the text after the number)."""
    found = _PHONE_PLUS_RE.match(s, start)
    if found is None:
        return False
    text = found.group()
    digits = sum(map(text.count, "0123456789"))
    while digits > 15:
        cut = max(text.rfind(" "), text.rfind("-"))
        if cut <= 0:
            return False
        text = text[:cut]
        digits = sum(map(text.count, "0123456789"))
    if digits < 10 or _DATE_IN_PHONE_RE.search(text) is not None:
        return False
    return _stands_alone(s, start, start + len(text))


def _has_phone(s: str, shape: bytes) -> bool:
    """A phone number of an unmistakable shape anywhere in free text."""
    at = shape.find(b"+")  # one byte: memchr, faster than looking for "+0"
    while at != -1:
        if shape.startswith(_PHONE_PLUS, at) and _phone_plus_at(s, at):
            return True
        at = shape.find(b"+", at + 1)
    at = shape.find(b"(")
    while at != -1:
        if shape.startswith(_PHONE_PAREN, at):
            found = _PHONE_PAREN_RE.match(s, at)
            if found is not None and _stands_alone(s, at, found.end()):
                return True
        at = shape.find(b"(", at + 1)
    if _GROUPED not in shape:
        return False
    at = shape.find(_PHONE_NANP)
    while at != -1:
        start = at - 2 if s[max(0, at - 2) : at] == "1-" else at
        found = _PHONE_NANP_RE.match(s, start)
        if found is not None and _stands_alone(s, start, found.end()):
            return True
        at = shape.find(_PHONE_NANP, at + 1)
    return False


def _shape(s: str) -> tuple[bytes, int]:
    """``s`` as one byte per character (see ``_SHAPE``), and how many ASCII digits it
    holds (two C calls: no shape is made for text with too few digits to matter)."""
    ascii_s = s.encode("ascii", "replace")  # a character beyond ASCII: one "?"
    digits = len(ascii_s) - len(ascii_s.translate(None, _ASCII_DIGITS))
    return (ascii_s.translate(_SHAPE) if digits >= _SSN_DIGITS else b""), digits


def _free_text(s: str, shape: bytes) -> tuple[tuple[str, str], ...]:
    hits: list[tuple[str, str]] = []
    if _has_card(s, shape):
        hits.append(_CARD_HIT)
    if _has_iban(s, shape):
        hits.append(_IBAN_HIT)
    if _has_phone(s, shape):
        hits.append(_PHONE_HIT)
    return tuple(hits)


def free_text_hits(s: str) -> tuple[tuple[str, str], ...]:
    """``(class, rule)`` pairs of the cards, IBANs and phone numbers found anywhere in
    ``s`` (in that order, each rule once): the findings a whole value of that kind
    gets. Strings with fewer than ten ASCII digits hold none."""
    shape, digits = _shape(s)
    return _free_text(s, shape) if digits >= _FREE_TEXT_MIN_DIGITS else _NO_HITS


def _has_ssn(s: str, shape: bytes) -> bool:
    """A US SSN anywhere in ``s``: ``_SSN_RE`` tried where the shape has ddd-dd-dddd
    (searching with the regex itself walks every character through a lookbehind)."""
    at = shape.find(_SSN_SHAPE)
    while at != -1:
        if _SSN_RE.match(s, at) is not None:
            return True
        at = shape.find(_SSN_SHAPE, at + 1)
    return False


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
    """``(class, rule)`` pairs the string value triggers, in this order: e-mail, SSN,
    then the whole-value detector that matched, else what the free text holds (card,
    IBAN, phone). Cheap checks go first."""
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
    ssn = False
    free = _NO_HITS
    dashed = n >= 11 and "-" in s
    if dashed or (hit is None and n >= _FREE_TEXT_MIN_CHARS):
        shape, digits = _shape(s)
        ssn = dashed and digits >= _SSN_DIGITS and _has_ssn(s, shape)
        if hit is None and n >= _FREE_TEXT_MIN_CHARS and digits >= _FREE_TEXT_MIN_DIGITS:
            # not a card, IBAN or phone number as a whole: it may hold one in its text
            free = _free_text(s, shape)
    if hit is None and not ssn and not free:
        return _EMAIL_ONLY if email else _NO_HITS
    hits = [_EMAIL_HIT] if email else []
    if ssn:
        hits.append(_SSN_HIT)
    if hit is not None:
        hits.append(hit)
    hits.extend(free)
    return tuple(hits)
