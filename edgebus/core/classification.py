"""Compliance classification of a record: which data classes it holds, and why.

Order of precedence (DESIGN.md, "Compliance and placement"): an explicit class given
by the writer wins; otherwise field-name rules and value detectors run over the whole
record; when nothing fires the record gets the configured default class.

Classes detected here are ``"pii"``, ``"phi"`` and ``"financial"``. PHI subsumes PII:
a record with both holds protected health information about an identifiable person,
so its classes contain ``"phi"`` and not ``"pii"`` (the findings still list the PII
rules that fired, so a reader sees why). Financial combines with either.

Field names are split into lower-case tokens at ``snake_case``, ``camelCase``,
``kebab-case``, dots and digit boundaries; an all-lower-case compound such as
``firstname`` or ``filename`` is split further, but only when every piece is a word
this module knows (``first`` + ``name``, ``file`` + ``name``). Rules match tokens,
never substrings: ``filename`` is ``file`` + ``name`` (the name of a file, not of a
person), ``healthcheck`` is ``health`` + ``check`` (not PHI).

Decisions (conservative where a person may be identified):

* ``name`` is PII when it stands alone, is qualified by a person word (``first``,
  ``last``, ``user``, ``customer``, ``display`` ...) or by a word this module does not
  know (``gizmo_name`` -> PII). It is not PII when qualified by a known non-person
  word (``file``, ``host``, ``product``, ``service``, ``company``, ``street`` ...).
  The qualifier is the token just before ``name`` (else the one just after).
  ``display_name`` and ``account_name`` are PII: they usually name a person.
* ``ip_address``/``ip`` and ``mac_address`` are PII (GDPR online and device
  identifiers), except when qualified by an infrastructure word (``server_ip``,
  ``broker_address``, ``bind_address``). A bare ``mac`` is not (message auth code).
* ``address``/``addr``, ``street``, ``postcode``/``postal_code``/``zip_code`` are PII.
* A tax identifier (``tax_id``, ``tax_number``, ``tin``) is PII *and* financial;
  ``tax`` and ``vat`` alone are financial.
* ``mobile`` and ``fax`` are phone PII only alone or with a number word
  (``mobile_number``): ``is_mobile`` / ``mobile_app`` are not. ``phone`` always is.
* ``treatment``, ``transaction``, ``amount``, ``balance`` are taken at face value
  (PHI, financial) even though A/B tests and databases reuse the words: a false
  positive restricts placement, a false negative leaks data.
* ``cardholder`` is PII and financial; ``card`` alone is neither (UI or game cards):
  it needs ``number``/``credit``/``debit``/``pan``/``holder``/``expiry``/``cvv``.
* Opaque identifiers (``user_id``, ``customer_id``) are not classified: they are
  pseudonymous keys. Write such records with an explicit class or compliance zone.
* Field names are tokenized as ASCII; other letters split tokens.

Value detectors run on string values only (numbers, bools and bytes are never
inspected): e-mail addresses and US SSNs are found anywhere in a string; phone
numbers, UK National Insurance numbers, payment cards (leading digit 2-6, 13-19
digits, Luhn) and IBANs (country length, mod-97) must be the whole value, so order
numbers and codes inside free text do not trip them. ISO dates/timestamps, UUIDs,
plain digit strings, dotted versions and IPv4 addresses are never phone numbers.

Paths: ``a.b`` for keys, ``a[0]`` for list/tuple/set items (sets walked sorted by
``repr``), ``""`` for the record itself. Nesting deeper than 100 levels (or a record
containing itself) is refused with :class:`~edgebus.errors.InvalidInput`.

Pure: no I/O, no clock, no logging. Field-name decisions are cached per name.
"""

from __future__ import annotations

import difflib
import functools
import operator
import re
from collections.abc import Collection, Iterable, Mapping, Sequence, Set
from dataclasses import dataclass
from typing import Any

from edgebus.errors import InvalidInput

__all__ = [
    "FINANCIAL",
    "PHI",
    "PII",
    "PUBLIC",
    "Classification",
    "Finding",
    "classify",
]

PII = "pii"
PHI = "phi"
FINANCIAL = "financial"
PUBLIC = "public"

#: deeper nesting than this is refused (and stops a self-referencing record)
_MAX_DEPTH = 100


@dataclass(frozen=True, slots=True)
class Finding:
    """One rule that fired: where (``path``), which class, which rule.

    ``path`` is ``"email"``, ``"contact.email"``, ``"items[0].card"``; ``""`` is the
    record itself (a bare string value, an explicit class or the default). ``rule``
    is ``"field:<concept>"``, ``"value:<detector>"``, ``"explicit"`` or ``"default"``.
    """

    path: str
    cls: str
    rule: str


@dataclass(frozen=True, slots=True)
class Classification:
    """The classes a record holds and the findings that put them there."""

    classes: frozenset[str]
    findings: tuple[Finding, ...]
    explicit: bool

    @property
    def label(self) -> str:
        """The classes sorted and joined with ``","`` (the header value)."""
        return ",".join(sorted(self.classes))


# --------------------------------------------------------------------------- field names

_NUMBERISH = frozenset({"number", "no", "num", "nr", "nbr"})

# token -> rule concept
_PHI_WORDS: Mapping[str, str] = {
    "diagnosis": "diagnosis",
    "diagnoses": "diagnosis",
    "prognosis": "diagnosis",
    "medical": "medical",
    "medication": "medication",
    "prescription": "prescription",
    "treatment": "treatment",
    "symptom": "symptom",
    "allergy": "allergy",
    "blood": "blood",
    "mrn": "mrn",
    "icd": "icd",
    "patient": "patient",
    "clinical": "clinical",
    "disease": "disease",
    "vaccination": "vaccination",
    "immunization": "vaccination",
}
_PII_WORDS: Mapping[str, str] = {
    "email": "email",
    "phone": "phone",
    "telephone": "phone",
    "tel": "phone",
    "cellphone": "phone",
    "msisdn": "phone",
    "ssn": "ssn",
    "passport": "passport",
    "nin": "national-id",
    "nino": "national-id",
    "dob": "date-of-birth",
    "birth": "date-of-birth",
    "birthdate": "date-of-birth",
    "birthday": "date-of-birth",
    "tin": "tax-id",
    "surname": "person-name",
    "cardholder": "person-name",
    "forename": "person-name",
    "street": "address",
    "postcode": "address",
    "zipcode": "address",
}
_FINANCIAL_WORDS: Mapping[str, str] = {
    "iban": "iban",
    "cardholder": "card",
    "bic": "bic",
    "swift": "bic",
    "cvv": "cvv",
    "cvc": "cvv",
    "balance": "balance",
    "salary": "salary",
    "wage": "salary",
    "payroll": "salary",
    "income": "income",
    "transaction": "transaction",
    "payment": "payment",
    "refund": "payment",
    "amount": "amount",
    "invoice": "invoice",
    "loan": "loan",
    "mortgage": "loan",
    "tax": "tax",
    "vat": "tax",
    "tin": "tax",
}
_CARD_QUALIFIERS = _NUMBERISH | {
    "credit", "debit", "pan", "holder", "expiry", "exp", "expiration", "cvv", "cvc",
    "verification", "security",
}  # fmt: skip
_CREDIT_QUALIFIERS = frozenset({"score", "limit", "line", "rating", "history"})
_NATIONAL_QUALIFIERS = _NUMBERISH | {"id", "identifier", "identity", "insurance"}
_TAX_ID_QUALIFIERS = _NUMBERISH | {"id", "identifier", "code"}
_CONDITION_QUALIFIERS = frozenset(
    {"medical", "health", "chronic", "preexisting", "existing", "underlying"}
)
_HEALTH_QUALIFIERS = frozenset(
    {
        "record", "condition", "history", "insurance", "plan", "data", "info",
        "information", "card", "problem", "issue", "assessment", "exam",
        "examination", "screening",
    }
)  # fmt: skip
_LAB_QUALIFIERS = frozenset({"result", "test", "report", "value"})
_PHONE_CONTEXT = _NUMBERISH | {"phone", "contact", "personal", "home", "work"}
_LICENSE_OWNERS = frozenset({"driver", "drivers", "driving"})

#: words that make ``address`` / ``ip`` / ``mac address`` about a machine, not a person
_INFRA = frozenset(
    {
        "server", "host", "broker", "bind", "listen", "listener", "bootstrap", "node",
        "memory", "base", "return", "socket", "endpoint", "proxy", "gateway", "cluster",
        "service", "api", "smtp", "dns", "rpc", "multicast", "broadcast", "loopback",
        "advertised", "contract", "kafka", "controller", "coordinator", "web", "url",
        "website", "site", "router", "load", "balancer", "vip",
    }
)  # fmt: skip

#: qualifiers that make ``name`` the name of a person
_PERSON = frozenset(
    {
        "first", "last", "full", "given", "family", "middle", "maiden", "sur", "fore",
        "nick", "legal", "user", "customer", "patient", "person", "contact", "client",
        "employee", "member", "display", "real", "preferred", "birth", "owner",
        "author", "sender", "recipient", "holder", "cardholder", "account",
        "beneficiary", "payee", "payer", "guardian", "parent", "father", "mother",
        "spouse", "child", "student", "teacher", "doctor", "physician", "nurse",
        "driver", "passenger", "guest", "visitor", "tenant", "applicant", "candidate",
        "buyer", "subscriber", "signer", "signatory", "kin", "manager", "agent",
        "officer", "assignee", "requester", "attendee", "speaker", "player", "people",
        "individual", "citizen", "resident", "traveler", "traveller", "donor",
        "caller", "emergency", "billing", "shipping",
    }
)  # fmt: skip

#: known non-person words: ``<word>_name`` is not PII (and they help split compounds)
_THINGS = frozenset(
    {
        "file", "host", "product", "service", "table", "node", "topic", "company",
        "team", "project", "bucket", "queue", "stream", "event", "workflow", "job",
        "task", "step", "schema", "field", "column", "database", "db", "index", "key",
        "app", "application", "device", "machine", "server", "cluster", "region",
        "zone", "location", "city", "country", "state", "brand", "model", "class",
        "function", "method", "module", "package", "library", "image", "container",
        "pod", "branch", "tag", "label", "metric", "attribute", "param", "parameter",
        "variable", "var", "env", "environment", "domain", "site", "page", "template",
        "type", "kind", "category", "group", "role", "org", "organization",
        "organisation", "business", "vendor", "merchant", "store", "shop", "plan",
        "tier", "feature", "flag", "config", "setting", "profile", "network",
        "interface", "channel", "code", "path", "dir", "directory", "folder", "object",
        "entity", "resource", "policy", "rule", "exchange", "partition", "consumer",
        "producer", "source", "sink", "connector", "plugin", "version", "release",
        "build", "pipeline", "stage", "sheet", "report", "dashboard", "widget", "item",
        "sku", "asset", "game", "song", "album", "track", "movie", "book", "course",
        "venue", "airport", "airline", "hotel", "vehicle", "part", "component",
        "color", "colour", "font", "layer", "view", "screen", "window", "tab", "menu",
        "button", "icon", "theme", "lang", "language", "locale", "currency", "unit",
        "format", "protocol", "algorithm", "cipher", "counter", "gauge", "timer",
        "alarm", "alert", "monitor", "check", "test", "suite", "scenario",
        "experiment", "variant", "segment", "campaign", "list", "set", "map", "cache",
        "session", "lock", "lease", "saga", "operation", "action", "command",
        "handler", "callback", "hook", "route", "dataset", "collection", "document",
        "record", "status", "result", "data", "info", "information", "history",
        "insurance", "card", "problem", "issue", "assessment", "exam", "screening",
        "score", "limit", "line", "rating", "number", "id", "identifier", "identity",
        "date", "of", "day", "time", "holder", "expiry", "expiration", "security",
        "verification", "credit", "debit", "pan", "account", "routing", "sort",
        "bank", "address", "addr", "ip", "mac", "mail", "condition", "lab", "health",
        "national", "social", "license", "licence", "postal", "zip", "mobile", "fax",
        "bic", "value", "target", "secret", "certificate", "cert", "token",
    }
)  # fmt: skip

_ALIASES: Mapping[str, str] = {"addr": "address", "ipv": "ip", "names": "name"}

_VOCAB = frozenset(
    set(_PHI_WORDS)
    | set(_PII_WORDS)
    | set(_FINANCIAL_WORDS)
    | _PERSON
    | _THINGS
    | _INFRA
    | _CARD_QUALIFIERS
    | _NATIONAL_QUALIFIERS
    | _CONDITION_QUALIFIERS
    | _HEALTH_QUALIFIERS
    | _LAB_QUALIFIERS
    | _PHONE_CONTEXT
    | _LICENSE_OWNERS
    | {"name", "address", "email", "e", "of", "sort", "code", "routing", "social"}
)
_SEGMENT_WORDS = frozenset(w for w in _VOCAB if len(w) >= 2)
_LONGEST_WORD = max(len(w) for w in _SEGMENT_WORDS)

_TOKEN_RE = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+", re.ASCII)


def _singular(token: str) -> str | None:
    if token in _VOCAB:
        return token
    if token.endswith("ies") and token[:-3] + "y" in _VOCAB:
        return token[:-3] + "y"
    if token.endswith("es") and token[:-2] in _VOCAB:
        return token[:-2]
    if token.endswith("s") and token[:-1] in _VOCAB:
        return token[:-1]
    return None


def _segment(word: str) -> tuple[str, ...] | None:
    """Split an all-lower-case compound into known words (fewest pieces), or None."""
    n = len(word)
    # best[i] = fewest-piece split of word[i:], preferring a longer first piece
    best: list[tuple[str, ...] | None] = [None] * (n + 1)
    best[n] = ()
    for i in range(n - 1, -1, -1):
        for j in range(min(n, i + _LONGEST_WORD), i + 1, -1):
            rest = best[j]
            if rest is not None and word[i:j] in _SEGMENT_WORDS:
                cand = (word[i:j], *rest)
                current = best[i]
                if current is None or len(cand) < len(current):
                    best[i] = cand
    found = best[0]
    return found if found is not None and len(found) >= 2 else None


@functools.lru_cache(maxsize=4096)
def _tokens(name: str) -> tuple[str, ...]:
    raw = [t.lower() for t in _TOKEN_RE.findall(name)]
    out: list[str] = []
    i = 0
    while i < len(raw):
        tok = raw[i]
        if tok == "e" and i + 1 < len(raw) and raw[i + 1] in ("mail", "mails"):
            out.append("email")
            i += 2
            continue
        i += 1
        if tok.isdigit():
            out.append(tok)
            continue
        tok = _ALIASES.get(tok, tok)
        known = _singular(tok)
        if known is not None:
            out.append(_ALIASES.get(known, known))
            continue
        pieces = _segment(tok)
        if pieces is None and tok.endswith("s"):
            pieces = _segment(tok[:-1])
        if pieces is None:
            out.append(tok)
        else:
            out.extend(_ALIASES.get(p, p) for p in pieces)
    return tuple(out)


def _name_is_personal(tokens: tuple[str, ...]) -> bool:
    words = [t for t in tokens if not t.isdigit()]
    at = words.index("name")
    if at > 0:
        qualifier: str | None = words[at - 1]
    elif at + 1 < len(words):
        qualifier = words[at + 1]
    else:
        qualifier = None
    if qualifier is None or qualifier in _PERSON:
        return True
    # a known non-person word names a thing; an unknown word might be a person: PII
    return qualifier not in _VOCAB


@functools.lru_cache(maxsize=4096)
def _field_rules(name: str) -> tuple[tuple[str, str], ...]:
    """``(class, rule)`` pairs the field name alone triggers, in a fixed order."""
    tokens = _tokens(name)
    if not tokens:
        return ()
    ts = frozenset(tokens)
    found: list[tuple[str, str]] = []

    def add(cls: str, concept: str) -> None:
        pair = (cls, "field:" + concept)
        if pair not in found:
            found.append(pair)

    # PHI
    for t in tokens:
        if t in _PHI_WORDS:
            add(PHI, _PHI_WORDS[t])
    if "lab" in ts and ts & _LAB_QUALIFIERS:
        add(PHI, "lab-result")
    if "condition" in ts and ts & _CONDITION_QUALIFIERS:
        add(PHI, "medical-condition")
    if "health" in ts and ts & _HEALTH_QUALIFIERS:
        add(PHI, "health-record")

    # PII
    for t in tokens:
        if t in _PII_WORDS:
            add(PII, _PII_WORDS[t])
    alone = sum(1 for t in ts if not t.isdigit()) == 1
    if ("mobile" in ts or "fax" in ts) and (alone or ts & _PHONE_CONTEXT):
        add(PII, "phone")
    if "social" in ts and "security" in ts:
        add(PII, "ssn")
    if "national" in ts and ts & _NATIONAL_QUALIFIERS:
        add(PII, "national-id")
    if "identity" in ts and ts & {"number", "card", "document"}:
        add(PII, "national-id")
    if ts & _LICENSE_OWNERS and ts & {"license", "licence"}:
        add(PII, "drivers-license")
    if "tax" in ts and ts & _TAX_ID_QUALIFIERS:
        add(PII, "tax-id")
    if ("postal" in ts or "zip" in ts) and "code" in ts:
        add(PII, "address")
    infra = bool(ts & _INFRA)
    if not infra:
        if "ip" in ts:
            add(PII, "ip-address")
        elif "mac" in ts and "address" in ts:
            add(PII, "mac-address")
        elif "address" in ts and "email" not in ts:
            add(PII, "address")
    if "name" in ts and _name_is_personal(tokens):
        add(PII, "person-name")

    # financial
    for t in tokens:
        if t in _FINANCIAL_WORDS:
            add(FINANCIAL, _FINANCIAL_WORDS[t])
    if "card" in ts and ts & _CARD_QUALIFIERS:
        add(FINANCIAL, "card")
    if "account" in ts and (ts & _NUMBERISH or "bank" in ts):
        add(FINANCIAL, "account-number")
    if "routing" in ts and ts & _NUMBERISH:
        add(FINANCIAL, "routing-number")
    if "sort" in ts and "code" in ts:
        add(FINANCIAL, "sort-code")
    if "credit" in ts and ts & _CREDIT_QUALIFIERS:
        add(FINANCIAL, "credit")
    return tuple(found)


# ---------------------------------------------------------------------- value detectors

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
_SCALARS = frozenset({int, float, bool, type(None)})
_BORING_RE = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
    r"(?:[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:[.,][0-9]{1,9})?)?(?:Z|[+-][0-9]{2}:?[0-9]{2})?)?"
    r"|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
    re.ASCII,
)


def _has_email(s: str) -> bool:
    """An ``x@domain.tld`` anywhere in ``s``: look at each "@" rather than search."""
    at = s.find("@")
    while at != -1:
        if at > 0 and s[at - 1] in _EMAIL_LOCAL_CHARS and _EMAIL_DOMAIN_RE.match(s, at + 1):
            return True
        at = s.find("@", at + 1)
    return False


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        total += _LUHN_DOUBLED[d] if i & 1 else d
    return total % 10 == 0


def _is_card(s: str) -> bool:
    if _CARD_RE.fullmatch(s) is None:
        return False
    digits = s.replace(" ", "").replace("-", "")
    return 13 <= len(digits) <= 19 and _luhn_ok(digits)


def _is_phone(s: str) -> bool:
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


def _is_iban(s: str) -> bool:
    compact = s.replace(" ", "").upper()
    if _IBAN_RE.fullmatch(compact) is None:
        return False
    expected = _IBAN_LENGTHS.get(compact[:2])
    if expected is not None and len(compact) != expected:
        return False
    if not 15 <= len(compact) <= 34:
        return False
    return int((compact[4:] + compact[:4]).translate(_IBAN_TO_DIGITS)) % 97 == 1


def _whole_value_hit(s: str) -> tuple[str, str] | None:
    """The detector (card, phone, IBAN, NINO) that matches the whole stripped value."""
    c0 = s[0]
    n = len(s)
    if c0.isalpha():
        if s[1].isalpha() and (s[2] in _DIGITS or s[2] == " "):
            if n >= 15 and _is_iban(s):
                return _IBAN_HIT
            if n <= 13 and _NINO_RE.fullmatch(s) is not None:
                return _NINO_HIT
    elif c0 in _PHONE_STARTS:
        if c0 in _CARD_STARTS and n >= 13 and _is_card(s):
            return _CARD_HIT
        if n >= 10 and _is_phone(s):
            return _PHONE_HIT
    return None


def _scan_value(s: str) -> tuple[tuple[str, str], ...]:
    """``(class, rule)`` pairs the string value triggers. Cheap checks go first."""
    n = len(s)
    if n < 5:
        return _NO_HITS
    email = "@" in s and _has_email(s)
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


# ----------------------------------------------------------------------------- walking

#: memo of Finding objects: paths and rules repeat from record to record
_FINDINGS: dict[tuple[str, str, str], Finding] = {}
_TOP_LEVEL: dict[str, tuple[Finding, ...]] = {}
_MEMO_LIMIT = 8192
_CLS_OF = operator.attrgetter("cls")


def _finding(path: str, cls: str, rule: str) -> Finding:
    key = (path, cls, rule)
    found = _FINDINGS.get(key)
    if found is None:
        if len(_FINDINGS) >= _MEMO_LIMIT:
            _FINDINGS.clear()
        found = _FINDINGS[key] = Finding(path, cls, rule)
    return found


def _top_level_findings(name: str) -> tuple[Finding, ...]:
    """Findings of a top-level field (path == name), built once per name."""
    found = _TOP_LEVEL.get(name)
    if found is None:
        if len(_TOP_LEVEL) >= _MEMO_LIMIT:
            _TOP_LEVEL.clear()
        found = _TOP_LEVEL[name] = tuple(Finding(name, c, r) for c, r in _field_rules(name))
    return found


#: short string values in which no detector found anything, seen in fields no rule
#: classifies: values repeat from record to record (event names, pages, statuses), and
#: a detector's answer depends on the string alone. Values of classified fields are
#: never kept, so the memo holds no data a rule calls personal.
_CLEAN: dict[str, None] = {}
_CLEAN_LIMIT = 4096
_CLEAN_MAX_CHARS = 64


def _walk(value: object, path: str, out: list[Finding], depth: int) -> None:
    """Walk any value; ``depth`` counts the containers above it."""
    if depth > _MAX_DEPTH:
        raise InvalidInput(
            f"Cannot classify data nested more than {_MAX_DEPTH} levels deep at "
            f"{path or 'the top level'!r} (or containing itself). Flatten the record."
        )
    if type(value) is dict:
        _walk_mapping(value, path, out, depth)
    elif type(value) is list or type(value) is tuple:
        _walk_items(enumerate(value), path, out, depth)
    elif isinstance(value, str):
        for cls, rule in _scan_value(str(value)):
            out.append(_finding(path, cls, rule))
    elif isinstance(value, Mapping):
        _walk_mapping(value, path, out, depth)
    elif isinstance(value, (bytes, bytearray, memoryview)):
        return
    elif isinstance(value, Set):
        # sets have no stable order: walk them sorted by repr so findings are stable
        _walk_items(enumerate(sorted(value, key=repr)), path, out, depth)
    elif isinstance(value, Sequence):
        _walk_items(enumerate(value), path, out, depth)


def _walk_items(
    items: Iterable[tuple[int, object]], path: str, out: list[Finding], depth: int
) -> None:
    for i, item in items:
        kind = type(item)
        if kind is str:
            hits = _scan_value(item)  # type: ignore[arg-type]
            if hits:
                child = f"{path}[{i}]"
                for cls, rule in hits:
                    out.append(_finding(child, cls, rule))
        elif kind not in _SCALARS:
            _walk(item, f"{path}[{i}]", out, depth + 1)


def _walk_mapping(data: Mapping[Any, object], path: str, out: list[Finding], depth: int) -> None:
    top = _TOP_LEVEL
    clean = _CLEAN
    for key, item in data.items():
        if not path and type(key) is str:
            # the hot path: a top-level field of a flat record
            child = key
            found = top.get(key)
            if found is None:
                found = _top_level_findings(key)
            if found:
                out.extend(found)
            if type(item) is str:
                if item in clean:
                    continue
                hits = _scan_value(item)
                if hits:
                    for cls, rule in hits:
                        out.append(_finding(child, cls, rule))
                elif not found and len(item) <= _CLEAN_MAX_CHARS:
                    if len(clean) >= _CLEAN_LIMIT:
                        clean.clear()
                    clean[item] = None
                continue
        elif isinstance(key, str):
            name = str(key)
            if path:
                child = f"{path}.{name}"
                for cls, rule in _field_rules(name):
                    out.append(_finding(child, cls, rule))
            else:
                child = name
                out.extend(_top_level_findings(name))
        else:
            child = f"{path}.{key}" if path else str(key)
        kind = type(item)
        if kind is str:
            hits = _scan_value(item)  # type: ignore[arg-type]
            if hits:
                for cls, rule in hits:
                    out.append(_finding(child, cls, rule))
        elif kind not in _SCALARS:
            _walk(item, child, out, depth + 1)


# ---------------------------------------------------------------------------- classify


@functools.lru_cache(maxsize=64)
def _default_classification(default: str) -> Classification:
    return Classification(frozenset({default}), (Finding("", default, "default"),), False)


def _explicit_classes(explicit: str | Sequence[str]) -> tuple[str, ...]:
    parts = explicit.split(",") if isinstance(explicit, str) else list(explicit)
    classes: list[str] = []
    for part in parts:
        if not isinstance(part, str):
            raise InvalidInput(
                f"Explicit classification must be strings, got {part!r}. "
                "Pass a class name such as 'pii' or a list of them."
            )
        cls = part.strip().lower()
        if cls and cls not in classes:
            classes.append(cls)
    return tuple(sorted(classes))


def _check_known(classes: tuple[str, ...], known: Collection[str], default: str) -> None:
    allowed = {k.lower() for k in known} | {PUBLIC, default}
    for cls in classes:
        if cls not in allowed:
            choices = sorted(allowed)
            match = difflib.get_close_matches(cls, choices, n=1)
            hint = f" (did you mean {match[0]!r}?)" if match else ""
            raise InvalidInput(
                f"Unknown data classification {cls!r}{hint}. Known classifications: "
                f"{', '.join(choices)}. Use one of them, or add {cls!r} to "
                "compliance.data_classifications in your edge_config."
            )


def classify(
    data: object,
    explicit: str | Sequence[str] | None = None,
    *,
    default: str = PUBLIC,
    known_classes: Collection[str] | None = None,
) -> Classification:
    """Classify ``data`` (a record: dicts, lists, tuples, strings, nested).

    ``explicit`` (a class, a comma-separated list of classes, or a sequence) wins
    over detection and is returned lower-cased; with ``known_classes`` each explicit
    class must be known (or be ``"public"`` or ``default``), else
    :class:`~edgebus.errors.InvalidInput` names it and suggests the nearest. An
    empty explicit value counts as none.

    Without an explicit class, field-name rules and value detectors run over the
    whole record; when nothing fires, the classes are ``{default}``.
    """
    if explicit is not None:
        classes = _explicit_classes(explicit)
        if classes:
            if known_classes is not None:
                _check_known(classes, known_classes, default.strip().lower() or PUBLIC)
            return Classification(
                frozenset(classes), tuple(Finding("", c, "explicit") for c in classes), True
            )
    findings: list[Finding] = []
    if type(data) is dict:
        _walk_mapping(data, "", findings, 0)
    else:
        _walk(data, "", findings, 0)
    if not findings:
        return _default_classification(default.strip().lower() or PUBLIC)
    found = set(map(_CLS_OF, findings))
    if PHI in found:
        found.discard(PII)
    return Classification(frozenset(found), tuple(findings), False)
