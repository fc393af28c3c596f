"""The owner's compliance check of the changes it is about to write
(:func:`edgebus.state.executor.comply`): a change that needs a stricter class than the
state's is refused, state unchanged; everything else passes as it is."""

from __future__ import annotations

from typing import Any

from edgebus.config import load_config
from edgebus.core.state_machine import StateOp
from edgebus.state.executor import comply

CONFIG = load_config(None)  # zero-config: pii lives only in the GDPR zone (eu-west-1)


def op(changes: dict[str, Any], *, outcome: Any = "ok") -> StateOp:
    return StateOp("profile", "r1", "set", "us-east-1", "us-east-1/h1", 1, 10_000,
                   "us-east-1", outcome, result=changes, version=4, changes=changes)


def test_a_change_needing_a_stricter_class_is_refused_and_changes_nothing() -> None:
    refused = comply(CONFIG, "public", 3, op({"email": "ada@example.com"}))
    assert refused.outcome == "refused"
    assert (refused.result, refused.changes, refused.removed) == (None, {}, ())
    assert (refused.cleared, refused.locks, refused.version) == (False, None, 3)
    assert refused.message.startswith(
        "Compliance violation: cannot place data classified pii in state 'profile' of "
        "class public")
    assert refused.message.endswith("use a state declared with that classification")


def test_a_change_the_class_allows_passes_unchanged() -> None:
    allowed = op({"email": "ada@example.com"})
    assert comply(CONFIG, "pii", 3, allowed) is allowed
    plain = op({"visits": 2})
    assert comply(CONFIG, "public", 3, plain) is plain


def test_refusals_and_operations_without_changes_are_not_checked() -> None:
    refused = op({"email": "ada@example.com"}, outcome="refused")
    assert comply(CONFIG, "public", 3, refused) is refused
    empty = op({})
    assert comply(CONFIG, "public", 3, empty) is empty
