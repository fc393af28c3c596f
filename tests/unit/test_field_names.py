"""Field-name tokens and rules (edgebus.core.field_names) on their own."""

from __future__ import annotations

import pytest

from edgebus.core.field_names import field_rules, field_tokens


@pytest.mark.parametrize(
    ("name", "tokens"),
    [("first_name", ("first", "name")), ("firstName", ("first", "name")),
     ("FirstName", ("first", "name")), ("first-name", ("first", "name")),
     ("firstname", ("first", "name")), ("filename", ("file", "name")),
     ("healthcheck", ("health", "check")), ("eMail", ("email",)), ("e_mail", ("email",)),
     ("ipv4_addr", ("ip", "4", "address")), ("HTTPServer", ("http", "server")),
     ("names", ("name",)), ("martin", ("martin",)), ("", ())],
)  # fmt: skip
def test_field_tokens(name: str, tokens: tuple[str, ...]) -> None:
    assert field_tokens(name) == tokens


@pytest.mark.parametrize(
    ("name", "rules"),
    [("email", (("pii", "field:email"),)),
     ("patient_name", (("phi", "field:patient"), ("pii", "field:person-name"))),
     ("tax_id", (("pii", "field:tax-id"), ("financial", "field:tax"))),
     ("cardholder", (("pii", "field:person-name"), ("financial", "field:card"))),
     ("card_number", (("financial", "field:card"),)),
     ("server_ip", ()), ("ip_address", (("pii", "field:ip-address"),)),
     ("mac", ()), ("mac_address", (("pii", "field:mac-address"),)),
     ("email_address", (("pii", "field:email"),)),
     ("is_mobile", ()), ("mobile_number", (("pii", "field:phone"),)),
     ("file_name", ()), ("gizmo_name", (("pii", "field:person-name"),)),
     ("user_id", ()), ("lab_result", (("phi", "field:lab-result"),)),
     ("bank_account", (("financial", "field:account-number"),))],
)  # fmt: skip
def test_field_rules_in_phi_pii_financial_order(
    name: str, rules: tuple[tuple[str, str], ...]
) -> None:
    assert field_rules(name) == rules


def test_a_rule_fires_once_however_many_tokens_name_it() -> None:
    assert field_rules("phone_telephone_tel") == (("pii", "field:phone"),)
    assert field_rules("national_id_number") == (("pii", "field:national-id"),)
