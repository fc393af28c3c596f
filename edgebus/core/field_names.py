"""What a field's name says: its tokens, and the rules that classify a field by name.

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

Linear time in the length of a name (compounds are split by dynamic programming
over at most ``_LONGEST_WORD`` characters ahead of each position). Nothing here is
cached: :mod:`edgebus.core.classification` keeps a memo bounded in bytes, and refuses
names over its length limit before they reach this module.

Pure: no I/O, no clock, no logging.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

from edgebus.core.data_classes import FINANCIAL, PHI, PII

__all__ = ["field_rules", "field_tokens"]

# ------------------------------------------------------------------- vocabulary

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


# ------------------------------------------------------------------------ tokens


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
    """Split an all-lower-case compound into known words (fewest pieces, preferring a
    longer first piece), or None.

    Linear in ``len(word)``: each position looks at most ``_LONGEST_WORD`` characters
    ahead and keeps only a count and where its first piece ends; the pieces are read
    back once at the end (keeping each position's whole split, as tuples, made a
    220 KB name take half a minute).
    """
    n = len(word)
    words, longest = _SEGMENT_WORDS, _LONGEST_WORD
    # pieces[i]: fewest pieces word[i:] splits into (-1: it does not split);
    # ends[i]: where the first of those pieces ends
    pieces = [-1] * (n + 1)
    ends = [0] * (n + 1)
    pieces[n] = 0
    for i in range(n - 1, -1, -1):
        best = -1
        for j in range(min(n, i + longest), i + 1, -1):
            rest = pieces[j]
            if rest >= 0 and (best < 0 or rest + 1 < best) and word[i:j] in words:
                best = rest + 1
                ends[i] = j
        pieces[i] = best
    if pieces[0] < 2:
        return None
    found: list[str] = []
    i = 0
    while i < n:
        found.append(word[i : ends[i]])
        i = ends[i]
    return tuple(found)


def field_tokens(name: str) -> tuple[str, ...]:
    """The lower-case tokens of a field name, compounds split and aliases applied."""
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


# ------------------------------------------------------------------------- rules


def field_rules(name: str) -> tuple[tuple[str, str], ...]:
    """``(class, rule)`` pairs the field name alone triggers, in a fixed order: PHI
    rules, then PII, then financial, each rule once (``rule`` is
    ``"field:<concept>"``)."""
    tokens = field_tokens(name)
    if not tokens:
        return ()
    ts = frozenset(tokens)
    found: list[tuple[str, str]] = []
    for cls, concepts in (
        (PHI, _phi_concepts(tokens, ts)),
        (PII, _pii_concepts(tokens, ts)),
        (FINANCIAL, _financial_concepts(tokens, ts)),
    ):
        for concept in concepts:
            pair = (cls, "field:" + concept)
            if pair not in found:
                found.append(pair)
    return tuple(found)


def _word_concepts(tokens: tuple[str, ...], words: Mapping[str, str]) -> Iterator[str]:
    """The concepts ``words`` gives the tokens, in the tokens' order."""
    return (words[t] for t in tokens if t in words)


def _qualified_concepts(
    ts: frozenset[str], rules: tuple[tuple[str, frozenset[str], str], ...]
) -> Iterator[str]:
    """Each rule's concept, in order, when the tokens hold its word and one of its
    qualifiers: ``(word, qualifiers, concept)``."""
    return (concept for word, qualifiers, concept in rules if word in ts and ts & qualifiers)


#: health concepts named by a word and a qualifier (``lab`` + ``result``...)
_PHI_QUALIFIED = (
    ("lab", _LAB_QUALIFIERS, "lab-result"),
    ("condition", _CONDITION_QUALIFIERS, "medical-condition"),
    ("health", _HEALTH_QUALIFIERS, "health-record"),
)


def _phi_concepts(tokens: tuple[str, ...], ts: frozenset[str]) -> Iterator[str]:
    """The health concepts the tokens name (protected health information)."""
    yield from _word_concepts(tokens, _PHI_WORDS)
    yield from _qualified_concepts(ts, _PHI_QUALIFIED)


def _pii_concepts(tokens: tuple[str, ...], ts: frozenset[str]) -> Iterator[str]:
    """The personal concepts the tokens name: contact details, identifiers, names."""
    yield from _word_concepts(tokens, _PII_WORDS)
    alone = sum(1 for t in ts if not t.isdigit()) == 1
    if ("mobile" in ts or "fax" in ts) and (alone or ts & _PHONE_CONTEXT):
        yield "phone"
    if "social" in ts and "security" in ts:
        yield "ssn"
    if "national" in ts and ts & _NATIONAL_QUALIFIERS:
        yield "national-id"
    if "identity" in ts and ts & {"number", "card", "document"}:
        yield "national-id"
    if ts & _LICENSE_OWNERS and ts & {"license", "licence"}:
        yield "drivers-license"
    if "tax" in ts and ts & _TAX_ID_QUALIFIERS:
        yield "tax-id"
    if ("postal" in ts or "zip" in ts) and "code" in ts:
        yield "address"
    yield from _place_concepts(ts)
    if "name" in ts and _name_is_personal(tokens):
        yield "person-name"


def _place_concepts(ts: frozenset[str]) -> Iterator[str]:
    """Addresses of a person (postal, IP, MAC), unless an infrastructure word says
    the address is a machine's."""
    if ts & _INFRA:
        return
    if "ip" in ts:
        yield "ip-address"
    elif "mac" in ts and "address" in ts:
        yield "mac-address"
    elif "address" in ts and "email" not in ts:
        yield "address"


def _financial_concepts(tokens: tuple[str, ...], ts: frozenset[str]) -> Iterator[str]:
    """The financial concepts the tokens name: cards, accounts, money, tax."""
    yield from _word_concepts(tokens, _FINANCIAL_WORDS)
    if "card" in ts and ts & _CARD_QUALIFIERS:
        yield "card"
    if "account" in ts and (ts & _NUMBERISH or "bank" in ts):
        yield "account-number"
    if "routing" in ts and ts & _NUMBERISH:
        yield "routing-number"
    if "sort" in ts and "code" in ts:
        yield "sort-code"
    if "credit" in ts and ts & _CREDIT_QUALIFIERS:
        yield "credit"
