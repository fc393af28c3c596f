"""The pure core of durable state machines: each operation run by the owner
(:func:`execute`, then :meth:`StateObject.apply`), request validation, locks,
duplicates, fencing of the fold, pending requests, snapshots, who claims a free state
and when, and the access counts that drive migration."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from typing import Any

import pytest

from edgebus.core.ownership import Claim, Handoff, Release, Renew
from edgebus.core.state_machine import (
    LockHold,
    StateObject,
    StateOp,
    StateRequest,
    acknowledged,
    claim_delay_ms,
    execute,
    validate_request,
)
from edgebus.errors import InvalidInput

LEASE = 10_000
REGION, HOST = "eu", "h1"
_ids = itertools.count()


def owned(state_id: str = "s", *, at: int = 0) -> StateObject:
    """A state whose owner is (REGION, HOST) at epoch 1, leased from ``at``."""
    obj = StateObject(state_id)
    assert obj.fold(Claim(REGION, 1, LEASE, HOST), at)
    return obj


def req(operation: Any, **fields: Any) -> StateRequest:
    fields.setdefault("req_id", f"r{next(_ids)}")
    fields.setdefault("from_region", "us")
    return StateRequest(state_id="s", operation=operation, **fields)


def exe(obj: StateObject, request: StateRequest, *, now: int = 100, sent: int | None = None,
        update_fn: Any = None, region: str = REGION, host: str = HOST) -> StateOp | None:
    return execute(obj, request, region=region, host=host,
                   lease_until_ms=obj.view.lease_until_ms, now_ms=now,
                   sent_ms=now if sent is None else sent, update_fn=update_fn)


def run(obj: StateObject, request: StateRequest, *, now: int = 100, sent: int | None = None,
        update_fn: Any = None) -> StateOp:
    """The owner runs ``request`` and applies the record it computed."""
    op = exe(obj, request, now=now, sent=sent, update_fn=update_fn)
    assert op is not None and not op.duplicate
    obj.apply(op, now)
    return op


def norm(snapshot: dict[str, Any]) -> Any:
    return json.loads(json.dumps(snapshot))


# -- operations ---------------------------------------------------------------------


def test_get_returns_the_whole_state_or_one_field_and_changes_nothing() -> None:
    obj = owned()
    run(obj, req("set", value={"a": 1, "b": [1, 2]}))
    before = obj.snapshot()["data"], obj.version
    whole = run(obj, req("get"))
    assert whole.outcome == "ok" and whole.result == {"a": 1, "b": [1, 2]}
    assert run(obj, req("get", key="b")).result == [1, 2]
    assert run(obj, req("get", key="missing")).result is None
    assert (obj.data, obj.version) == before
    assert whole.changes == {} and whole.removed == () and not whole.cleared


def test_get_answers_a_copy_that_does_not_alias_the_state() -> None:
    obj = owned()
    run(obj, req("set", key="b", value=[1]))
    answer = run(obj, req("get", key="b")).result
    answer.append(2)
    assert obj.value("b") == [1]


def test_set_with_a_key_sets_that_field_and_keeps_the_others() -> None:
    obj = owned()
    run(obj, req("set", key="a", value=1))
    op = run(obj, req("set", key="b", value={"x": [1]}))
    assert op.outcome == "ok" and op.result == {"x": [1]}
    assert obj.value() == {"a": 1, "b": {"x": [1]}}


def test_set_without_a_key_replaces_the_whole_state_removing_the_other_fields() -> None:
    obj = owned()
    run(obj, req("set", value={"a": 1, "b": 2}))
    op = run(obj, req("set", value={"b": 3, "c": 4}))
    assert op.removed == ("a",)
    assert obj.value() == {"b": 3, "c": 4}


def test_update_without_update_fn_merges_the_value_into_the_state() -> None:
    obj = owned()
    run(obj, req("set", value={"a": 1, "b": 2}))
    op = run(obj, req("update", value={"b": 20, "c": 30}))
    assert op.outcome == "ok" and op.result == {"a": 1, "b": 20, "c": 30}
    assert obj.value() == {"a": 1, "b": 20, "c": 30}


def test_update_without_update_fn_merges_into_the_field_key_creating_it_if_absent() -> None:
    obj = owned()
    run(obj, req("update", key="cfg", value={"x": 1}))
    run(obj, req("update", key="cfg", value={"y": 2}))
    assert obj.value() == {"cfg": {"x": 1, "y": 2}}


def test_merging_into_a_field_that_is_not_an_object_is_refused_and_changes_nothing() -> None:
    obj = owned()
    run(obj, req("set", key="n", value=5))
    before = obj.value(), obj.version
    op = run(obj, req("update", key="n", value={"x": 1}))
    assert op.outcome == "refused" and "'n'" in op.message and "int" in op.message
    assert (obj.value(), obj.version) == before


def test_update_fn_computes_the_new_value_of_a_field_or_of_the_whole_state() -> None:
    obj = owned()
    run(obj, req("set", value={"n": 2, "gone": True}))
    op = run(obj, req("update", key="n", update_fn="double"), update_fn=lambda v: v * 2)
    assert op.outcome == "ok" and op.result == 4 and obj.value("n") == 4
    whole = run(obj, req("update", update_fn="keep_n"),
                update_fn=lambda state: {"n": state["n"] + 1})
    assert whole.outcome == "ok" and whole.removed == ("gone",)
    assert obj.value() == {"n": 5}


def test_update_fn_gets_a_copy_so_mutating_its_argument_changes_nothing_before_apply() -> None:
    obj = owned()
    run(obj, req("set", key="l", value=[1]))

    def mutate(value: list[int]) -> list[int]:
        value.append(2)
        return value

    op = exe(obj, req("update", key="l", update_fn="mutate"), update_fn=mutate)
    assert op is not None and op.result == [1, 2]
    assert obj.value("l") == [1]  # execute changed nothing


@pytest.mark.parametrize(
    ("key", "fn", "words"),
    [
        ("n", lambda v: 1 / 0, "ZeroDivisionError"),
        ("n", lambda v: {1, 2}, "TypeError"),  # not JSON
        ("n", lambda v: float("nan"), "ValueError"),  # not finite
        (None, lambda state: [1, 2], "must give an object"),  # the whole state as a list
    ],
)
def test_a_failing_update_fn_is_refused_with_its_error_and_the_state_is_unchanged(
    key: str | None, fn: Any, words: str
) -> None:
    obj = owned()
    run(obj, req("set", value={"n": 1}))
    before = obj.value(), obj.version
    op = run(obj, req("update", key=key, update_fn="f"), update_fn=fn)
    assert op.outcome == "refused" and words in op.message
    assert op.changes == {} and op.removed == () and not op.cleared
    assert (obj.value(), obj.version) == before


def test_an_update_fn_not_registered_at_the_owner_is_refused_naming_how_to_register() -> None:
    obj = owned()
    run(obj, req("set", key="n", value=1))
    op = run(obj, req("update", key="n", update_fn="nowhere"), update_fn=None)
    assert op.outcome == "refused"
    assert "'nowhere'" in op.message and "register_update_fn" in op.message
    assert obj.value() == {"n": 1} and obj.version == 1


def test_delete_a_key_removes_that_field_and_answers_its_old_value() -> None:
    obj = owned()
    run(obj, req("set", value={"a": 1, "b": 2}))
    op = run(obj, req("delete", key="a"))
    assert op.outcome == "ok" and op.result == 1 and op.removed == ("a",)
    assert obj.value() == {"b": 2} and obj.version == 2


def test_deleting_an_absent_key_changes_nothing_and_keeps_the_version() -> None:
    obj = owned()
    run(obj, req("set", key="a", value=1))
    op = run(obj, req("delete", key="zzz"))
    assert op.outcome == "ok" and op.result is None and op.removed == ()
    assert obj.value() == {"a": 1} and obj.version == 1


def test_delete_without_a_key_clears_the_whole_state_and_answers_it() -> None:
    obj = owned()
    run(obj, req("set", value={"a": 1, "b": 2}))
    op = run(obj, req("delete"))
    assert op.outcome == "ok" and op.cleared and op.result == {"a": 1, "b": 2}
    assert obj.value() == {} and obj.version == 2


def test_increment_defaults_to_the_field_value_from_zero_and_answers_the_total() -> None:
    obj = owned()
    assert run(obj, req("increment")).result == 1
    assert run(obj, req("increment", increment=2.5)).result == 3.5
    assert run(obj, req("increment", increment=-4)).result == -0.5
    assert obj.value() == {"value": -0.5}


def test_increment_with_a_key_counts_in_that_field() -> None:
    obj = owned()
    run(obj, req("increment", key="hits", increment=3))
    run(obj, req("increment", key="hits", increment=4))
    assert obj.value() == {"hits": 7}


@pytest.mark.parametrize(("held", "kind"), [("x", "str"), (True, "bool"), ([1], "list"),
                                            (None, "NoneType")])
def test_incrementing_a_field_that_is_not_a_number_is_refused(held: Any, kind: str) -> None:
    obj = owned()
    run(obj, req("set", key="value", value=held))
    op = run(obj, req("increment"))
    assert op.outcome == "refused"
    assert "'value'" in op.message and kind in op.message and "not a number" in op.message
    assert obj.value() == {"value": held} and obj.version == 1


def test_an_increment_whose_total_is_not_finite_is_refused_and_changes_nothing() -> None:
    obj = owned()
    run(obj, req("increment", increment=1e308))
    op = run(obj, req("increment", increment=1e308))
    assert op.outcome == "refused" and "overflows" in op.message and "'value'" in op.message
    assert obj.value() == {"value": 1e308} and obj.version == 1
    json.dumps(obj.snapshot(), allow_nan=False)  # the state stays JSON


def test_append_defaults_to_the_field_items_and_answers_the_new_list() -> None:
    obj = owned()
    assert run(obj, req("append", value=1)).result == [1]
    assert run(obj, req("append", value={"x": 2})).result == [1, {"x": 2}]
    run(obj, req("append", key="log", value="a"))
    assert obj.value() == {"items": [1, {"x": 2}], "log": ["a"]}


def test_appending_to_a_field_that_is_not_a_list_is_refused() -> None:
    obj = owned()
    run(obj, req("set", key="items", value={"a": 1}))
    op = run(obj, req("append", value=1))
    assert op.outcome == "refused"
    assert "'items'" in op.message and "dict" in op.message and "not a list" in op.message
    assert obj.value() == {"items": {"a": 1}} and obj.version == 1


def test_the_version_bumps_by_one_on_each_mutation_and_only_on_mutations() -> None:
    obj = owned()
    versions = []
    for request in [
        req("set", key="a", value=1),  # +1
        req("get"),
        req("update", value={"b": 2}),  # +1
        req("increment"),  # +1
        req("append", value=0),  # +1
        req("delete", key="a"),  # +1
        req("increment", key="b", update_fn=None, increment=0),  # +1 (a write, even of +0)
        req("lock", lock_name="L", holder="x"),
        req("unlock", lock_name="L", holder="x"),
        req("unlock", lock_name="L", holder="x"),  # refused
        req("append", key="b", value=1),  # refused: b is a number
        req("delete", key="absent"),
        req("delete"),  # +1
    ]:
        op = run(obj, request)
        versions.append(op.version)
        assert obj.version == op.version
    assert versions == [1, 1, 2, 3, 4, 5, 6, 6, 6, 6, 6, 6, 7]


def test_execute_computes_the_record_without_changing_the_object() -> None:
    obj = owned()
    run(obj, req("set", value={"a": [1]}))
    run(obj, req("lock", lock_name="L", holder="x"))
    before = norm(obj.snapshot())
    for request in [req("set", key="a", value=2), req("delete"), req("append", key="a", value=2),
                    req("increment", key="n"), req("update", value={"z": 1}),
                    req("lock", lock_name="M", holder="y"),
                    req("unlock", lock_name="L", holder="x")]:
        assert exe(obj, request) is not None
    assert norm(obj.snapshot()) == before


def test_the_record_names_the_owner_its_epoch_and_the_lease_it_knew() -> None:
    obj = owned(at=500)
    op = run(obj, req("increment", from_region="ap"), now=600)
    assert (op.region, op.host, op.epoch, op.lease_until_ms) == (REGION, HOST, 1, 500 + LEASE)
    assert (op.state_id, op.from_region, op.operation) == ("s", "ap", "increment")


def test_enable_migration_on_any_applied_request_makes_the_state_migratable_for_good() -> None:
    obj = owned()
    run(obj, req("get"))
    assert not obj.migratable
    run(obj, req("get", enable_migration=True))
    run(obj, req("get"))
    assert obj.migratable


# -- validation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"operation": "frobnicate"}, "unknown state operation 'frobnicate': use one of get, set"),
        ({"operation": "get", "state_id": ""}, "state_id is empty"),
        ({"operation": "lock", "holder": "x"}, "lock needs lock_name"),
        ({"operation": "unlock", "holder": "x"}, "unlock needs lock_name"),
        ({"operation": "lock", "lock_name": "L"}, "lock needs a holder"),
        ({"operation": "unlock", "lock_name": "L"}, "unlock needs a holder"),
        ({"operation": "lock", "lock_name": "L", "holder": "x", "lease_ms": -1},
         "must be positive (or 0: none named), got -1"),
        ({"operation": "get", "timeout_ms": -1}, "timeout_ms must be at least 0, got -1"),
        ({"operation": "set", "value": [1]}, "value must be an object (a dict); pass key="),
        ({"operation": "set", "value": None}, "pass key= to set one field"),
        ({"operation": "increment", "increment": float("nan")}, "finite number, got nan"),
        ({"operation": "increment", "increment": float("inf")}, "finite number, got inf"),
        ({"operation": "increment", "increment": True}, "finite number, got True"),
        ({"operation": "increment", "increment": "1"}, "finite number, got '1'"),
        ({"operation": "update", "value": 3}, "update needs update_fn"),
        ({"operation": "set", "key": "k", "value": {1, 2}}, "value must be JSON"),
        ({"operation": "set", "key": "k", "value": float("inf")}, "finite numbers"),
        ({"operation": "append", "value": object()}, "value must be JSON"),
        ({"operation": "update", "value": {"x": float("nan")}}, "value must be JSON"),
    ],
)
def test_an_invalid_request_is_rejected_saying_what_to_pass_and_refused_by_the_owner(
    fields: dict[str, Any], says: str
) -> None:
    fields = {"state_id": "s", "req_id": "r", "from_region": "us", **fields}
    request = StateRequest(**fields)
    with pytest.raises(InvalidInput) as raised:
        validate_request(request)
    assert says in str(raised.value)
    obj = owned()
    op = exe(obj, request)
    assert op is not None and op.outcome == "refused" and op.message == str(raised.value)
    assert op.changes == {} and op.locks is None and op.version == obj.version


@pytest.mark.parametrize(
    "fields",
    [
        {"operation": "get"},
        {"operation": "set", "value": {"a": [1, None, "x", 1.5, True]}},
        {"operation": "set", "key": "k", "value": None},
        {"operation": "update", "update_fn": "f"},
        {"operation": "delete"},
        {"operation": "increment", "increment": -2},
        {"operation": "append", "value": [1]},
        {"operation": "lock", "lock_name": "L", "holder": "x", "timeout_ms": 0},
        {"operation": "unlock", "lock_name": "L", "holder": "x"},
    ],
)
def test_valid_requests_pass_validation(fields: dict[str, Any]) -> None:
    validate_request(StateRequest(state_id="s", req_id="r", from_region="us", **fields))


# -- locks ----------------------------------------------------------------------------


def lock(holder: str, *, name: str = "L", lease: int = 1_000, timeout: int = 500,
         **fields: Any) -> StateRequest:
    return req("lock", lock_name=name, holder=holder, lease_ms=lease, timeout_ms=timeout,
               **fields)


def unlock(holder: str, *, name: str = "L") -> StateRequest:
    return req("unlock", lock_name=name, holder=holder)


def test_a_free_lock_is_granted_for_its_lease_from_now() -> None:
    obj = owned()
    op = run(obj, lock("alice"), now=100)
    assert op.outcome == "ok"
    assert op.result == {"lock": "L", "holder": "alice", "until_ms": 1_100}
    assert obj.locks == {"L": LockHold("L", "alice", 1_100)}


def test_the_holder_locking_again_renews_and_extends_its_lease() -> None:
    obj = owned()
    run(obj, lock("alice"), now=100)
    op = run(obj, lock("alice"), now=900)
    assert op.outcome == "ok" and op.result["until_ms"] == 1_900
    assert obj.locks["L"] == LockHold("L", "alice", 1_900)


def test_another_holder_waits_until_its_deadline_then_times_out() -> None:
    obj = owned()
    run(obj, lock("alice"), now=100)  # held until 1_100
    bob = lock("bob", timeout=500)
    assert exe(obj, bob, now=200, sent=200) is None
    assert exe(obj, bob, now=699, sent=200) is None
    op = exe(obj, bob, now=700, sent=200)
    assert op is not None and op.outcome == "timeout"
    assert op.result == {"lock": "L", "holder": "alice", "until_ms": 1_100}
    assert "'alice'" in op.message and "waited 500 ms" in op.message
    assert op.locks is None
    obj.apply(op, 700)
    assert obj.locks["L"].holder == "alice" and bob.req_id in obj.applied


def test_a_waiting_lock_is_granted_once_the_hold_expires_before_its_deadline() -> None:
    obj = owned()
    run(obj, lock("alice", lease=300), now=100)  # held through 400
    bob = lock("bob", timeout=1_000)
    assert exe(obj, bob, now=400, sent=150) is None  # a hold lasts through its until_ms
    op = exe(obj, bob, now=401, sent=150)
    assert op is not None and op.outcome == "ok" and op.result["holder"] == "bob"


def test_an_expired_hold_is_granted_to_another_holder_at_once() -> None:
    obj = owned()
    run(obj, lock("alice", lease=100), now=100)
    op = run(obj, lock("bob", timeout=0), now=5_000)
    assert op.outcome == "ok" and obj.locks == {"L": LockHold("L", "bob", 6_000)}


def test_a_held_lock_with_no_timeout_times_out_at_once() -> None:
    obj = owned()
    run(obj, lock("alice"), now=100)
    op = exe(obj, lock("bob", timeout=0), now=100)
    assert op is not None and op.outcome == "timeout"


def test_unlock_by_the_holder_frees_the_lock_for_another() -> None:
    obj = owned()
    run(obj, lock("alice"), now=100)
    op = run(obj, unlock("alice"), now=200)
    assert op.outcome == "ok" and op.result == {"released": True, "lock": "L"}
    assert obj.locks == {}
    assert run(obj, lock("bob", timeout=0), now=200).outcome == "ok"


def test_unlock_by_someone_who_does_not_hold_the_lock_is_refused_and_keeps_the_hold() -> None:
    obj = owned()
    run(obj, lock("alice"), now=100)
    op = run(obj, unlock("bob"), now=200)
    assert op.outcome == "refused" and op.result == {"released": False}
    assert "'bob'" in op.message and "held by 'alice'" in op.message
    assert obj.locks == {"L": LockHold("L", "alice", 1_100)}
    expired = run(obj, unlock("alice"), now=2_000)
    assert expired.outcome == "refused" and "held by nobody" in expired.message
    never = run(obj, unlock("alice", name="other"), now=2_000)
    assert never.outcome == "refused" and "held by nobody" in never.message


def test_locks_are_independent_by_name_and_expired_holds_are_dropped() -> None:
    obj = owned()
    run(obj, lock("alice", name="A", lease=100), now=100)  # through 200
    run(obj, lock("bob", name="B", lease=1_000), now=150)
    assert set(obj.locks) == {"A", "B"}
    run(obj, lock("carol", name="C"), now=300)  # A has expired by now
    assert obj.locks == {"B": LockHold("B", "bob", 1_150), "C": LockHold("C", "carol", 1_300)}


# -- duplicates -----------------------------------------------------------------------


def test_a_request_already_applied_gets_its_first_answer_again_marked_duplicate() -> None:
    obj = owned()
    first = run(obj, req("increment", req_id="x", increment=5))
    run(obj, req("increment", increment=1))
    again = exe(obj, req("increment", req_id="x", increment=5), now=300)
    assert again is not None and again.duplicate
    assert (again.outcome, again.result, again.version, again.message) == (
        first.outcome, first.result, first.version, first.message)
    assert again.changes == {} and again.removed == () and again.locks is None
    assert obj.value() == {"value": 6}


def test_a_refused_request_re_sent_gets_the_same_refusal_without_running_again() -> None:
    obj = owned()
    run(obj, req("set", key="value", value="text"))
    first = run(obj, req("increment", req_id="x"))
    run(obj, req("set", key="value", value=1))  # now it would succeed
    again = exe(obj, req("increment", req_id="x"))
    assert again is not None and again.duplicate
    assert (again.outcome, again.message) == ("refused", first.message)


def test_the_fold_ignores_duplicate_answers_and_second_answers_to_the_same_request() -> None:
    owner, reader = owned(), owned()
    first = run(owner, req("increment", req_id="x", increment=5), now=100)
    assert reader.fold(first, 100)
    dup = exe(owner, req("increment", req_id="x", increment=5), now=200)
    assert dup is not None and dup.duplicate
    before = norm(reader.snapshot())
    assert not reader.fold(dup, 200)
    # a second non-duplicate answer (an owner that re-ran the request) is ignored too
    rerun = exe(owned(), req("increment", req_id="x", increment=5), now=300)
    assert rerun is not None and not rerun.duplicate
    assert not reader.fold(rerun, 300)
    snap = norm(reader.snapshot())
    assert snap == {**before, "last_append_ms": 300}
    assert reader.value() == {"value": 5}


def test_the_fold_never_applies_an_op_marked_duplicate_even_for_an_unknown_request() -> None:
    obj = owned()
    obj.fold(req("increment", req_id="x"), 10)
    marked = replace(op_by(REGION, HOST, 1, req_id="x"), duplicate=True)
    assert obj.accepts(marked, 20)  # the current owner's, in its lease: only the mark
    assert not obj.fold(marked, 20)
    assert obj.value() == {} and "x" in obj.pending and obj.access_counts(0) == {}


def test_a_request_re_appended_after_its_answer_is_not_pending_again() -> None:
    obj = owned()
    request = req("get", req_id="x")
    assert obj.fold(request, 10)
    assert not obj.fold(request, 11)  # already pending
    op = exe(obj, request, now=20)
    assert op is not None and obj.fold(op, 20)
    assert not obj.fold(request, 30)
    assert obj.pending == {}


# -- fencing --------------------------------------------------------------------------


def op_by(region: str, host: str, epoch: int, *, req_id: str = "q") -> StateOp:
    return StateOp(state_id="s", req_id=req_id, operation="set", region=region, host=host,
                   epoch=epoch, lease_until_ms=0, from_region="us", outcome="ok",
                   version=1, changes={"k": req_id})


def test_the_fold_accepts_an_op_only_from_the_current_region_host_and_epoch() -> None:
    obj = owned(at=0)  # (eu, h1) at epoch 1, lease through 10_000
    assert not obj.accepts(op_by("us", HOST, 1), 100)
    assert not obj.accepts(op_by(REGION, "h2", 1), 100)
    assert not obj.accepts(op_by(REGION, HOST, 0), 100)
    assert not obj.accepts(op_by(REGION, HOST, 2), 100)
    assert obj.accepts(op_by(REGION, HOST, 1), 100)
    for wrong in [op_by("us", HOST, 1), op_by(REGION, "h2", 1), op_by(REGION, HOST, 2)]:
        assert not obj.fold(wrong, 100)
    assert obj.value() == {} and obj.version == 0


def test_nothing_is_accepted_before_any_claim_or_after_a_release() -> None:
    fresh = StateObject("s")
    assert not fresh.accepts(op_by("", "", 0), 0)
    released = owned()
    released.fold(Release(REGION, 1, HOST), 50)
    assert not released.fold(op_by(REGION, HOST, 1), 60)
    assert released.value() == {}


def test_the_fold_accepts_an_op_only_when_appended_within_the_lease() -> None:
    obj = owned(at=0)
    assert obj.accepts(op_by(REGION, HOST, 1), LEASE)  # the lease's last ms
    assert not obj.accepts(op_by(REGION, HOST, 1), LEASE + 1)
    obj.fold(Renew(REGION, 1, LEASE, HOST), 5_000)
    assert obj.accepts(op_by(REGION, HOST, 1), LEASE + 1)
    assert obj.fold(op_by(REGION, HOST, 1), 5_000 + LEASE)
    assert obj.value() == {"k": "q"}


def test_a_stale_owners_op_after_a_new_claim_is_ignored() -> None:
    obj = owned(at=0)
    assert obj.fold(Claim("us", 2, LEASE, "h9"), LEASE + 1)  # eu's lease ran out
    assert not obj.fold(op_by(REGION, HOST, 1, req_id="stale"), LEASE + 2)
    assert obj.fold(op_by("us", "h9", 2, req_id="new"), LEASE + 3)
    assert obj.value() == {"k": "new"}


def test_after_a_hand_off_only_the_new_owners_ops_are_accepted() -> None:
    obj = owned(at=0)
    obj.fold(Handoff(REGION, 1, "ap", HOST), 100)
    assert obj.accepts(op_by(REGION, HOST, 1), 150)  # still the owner until ap claims
    obj.fold(Claim("ap", 2, LEASE, "h2"), 200)
    assert not obj.accepts(op_by(REGION, HOST, 1), 250)
    assert obj.accepts(op_by("ap", "h2", 2), 250)


def test_an_acknowledged_op_is_accepted_by_the_fold_even_if_appended_late() -> None:
    # The owner claims at 0 (lease through LEASE) and renews at 4_000 (through 14_000);
    # it runs requests with the lease it knows, and their records are appended later,
    # with other records (a rival's claim) in between.
    log: list[tuple[Any, int]] = [(Claim(REGION, 1, LEASE, HOST), 0)]
    owner = owned(at=0)
    early = exe(owner, req("set", key="a", value=1), now=3_000)
    assert early is not None and early.lease_until_ms == LEASE
    owner.apply(early, 3_000)
    log.append((Renew(REGION, 1, LEASE, HOST), 4_000))
    owner.fold(Renew(REGION, 1, LEASE, HOST), 4_000)
    late = exe(owner, req("set", key="b", value=2), now=9_000)
    assert late is not None and late.lease_until_ms == 14_000
    owner.apply(late, 9_000)
    zombie = exe(owner, req("set", key="c", value=3), now=13_000)
    assert zombie is not None
    log += [(early, LEASE), (Claim("us", 2, LEASE, "h9"), 12_000),  # refused: lease runs
            (late, 14_000), (Claim("us", 2, LEASE, "h9"), 14_001),  # granted
            (zombie, 14_002)]
    reader = StateObject("s")
    verdicts = {}
    for record, at in log:
        if isinstance(record, StateOp):
            verdicts[record.req_id] = (acknowledged(at, record.lease_until_ms),
                                       reader.accepts(record, at))
        reader.fold(record, at)
    assert verdicts[early.req_id] == (True, True)
    assert verdicts[late.req_id] == (True, True)
    assert verdicts[zombie.req_id] == (False, False)
    assert reader.value() == {"a": 1, "b": 2}
    assert reader.view.owner == "us"


def test_acknowledged_means_appended_within_the_lease_the_owner_knew() -> None:
    assert acknowledged(100, 100)
    assert acknowledged(0, 100)
    assert not acknowledged(101, 100)


# -- pending requests -----------------------------------------------------------------


def test_requests_wait_in_pending_in_log_order_until_their_op_is_applied() -> None:
    obj = owned()
    first, second = req("get", req_id="a"), req("increment", req_id="b")
    assert obj.fold(first, 10) and obj.fold(second, 20)
    assert list(obj.pending) == ["a", "b"] and obj.pending["a"] == (first, 10)
    op = exe(obj, second, now=30)
    assert op is not None and obj.fold(op, 30)
    assert list(obj.pending) == ["a"]


def test_a_refused_or_timed_out_request_leaves_pending_too() -> None:
    obj = owned()
    run(obj, lock("alice"), now=0)
    refused, waiting = unlock("bob"), lock("bob", timeout=10)
    obj.fold(refused, 5)
    obj.fold(waiting, 5)
    run(obj, refused, now=6)
    assert exe(obj, waiting, now=7, sent=5) is None
    assert waiting.req_id in obj.pending
    run(obj, waiting, now=15, sent=5)
    assert obj.pending == {}


def test_a_fenced_op_leaves_its_request_pending() -> None:
    obj = owned()
    request = req("get", req_id="q")
    obj.fold(request, 10)
    assert not obj.fold(op_by("us", HOST, 1, req_id="q"), 20)
    assert list(obj.pending) == ["q"]


# -- snapshots ------------------------------------------------------------------------


def busy_object() -> StateObject:
    obj = owned()
    obj.fold(Renew(REGION, 1, LEASE, HOST), 50)
    obj.fold(Handoff(REGION, 1, "ap", HOST), 60)
    for at, request in enumerate([req("set", value={"a": [1, {"b": None}]}, from_region="us"),
                                  req("increment", from_region="ap", enable_migration=True),
                                  req("lock", lock_name="L", holder="x", from_region="eu"),
                                  req("set", key="value", value="s", from_region="us"),
                                  req("increment", from_region="us")],  # refused
                                 start=100):
        assert obj.fold(request, at)
        op = exe(obj, request, now=at)
        assert op is not None and obj.fold(op, at)
    obj.fold(req("append", value=[1.5, "x"], req_id="waiting", lease_ms=7), 200)
    return obj


def test_a_snapshot_round_trips_to_an_equal_fold() -> None:
    obj = busy_object()
    snap = obj.snapshot()
    assert StateObject.from_snapshot(snap).snapshot() == snap
    persisted = json.loads(json.dumps(snap, allow_nan=False))
    restored = StateObject.from_snapshot(persisted)
    assert norm(restored.snapshot()) == norm(snap)
    assert restored.pending["waiting"][0] == obj.pending["waiting"][0]
    assert restored.view == obj.view and restored.locks == obj.locks
    assert restored.access_counts(0) == obj.access_counts(0)
    # and both fold what comes next the same way
    nxt = req("append", value=2)
    for copy_ in (obj, restored):
        copy_.fold(nxt, 300)
        op = exe(copy_, nxt, now=300)
        assert op is not None and copy_.fold(op, 300)
        dup = exe(copy_, req("increment", req_id=next(iter(copy_.applied))), now=301)
        assert dup is not None and dup.duplicate
    assert norm(obj.snapshot()) == norm(restored.snapshot())


def test_a_snapshot_is_a_copy_that_later_operations_do_not_change() -> None:
    obj = owned()
    run(obj, req("set", key="k", value={"deep": [1]}))
    snap = obj.snapshot()
    run(obj, req("set", key="k", value=2))
    run(obj, req("append", value=1))
    assert snap["data"] == {"k": {"deep": [1]}}
    assert [r for r, *_ in snap["applied"]] == [next(iter(obj.applied))]


def test_copy_is_independent_of_the_original() -> None:
    obj = busy_object()
    before = norm(obj.snapshot())
    twin = obj.copy()
    assert norm(twin.snapshot()) == before
    run(twin, req("append", key="a", value=9), now=400)
    twin.data["a"][1]["b"] = "changed"
    twin.fold(Release(REGION, 1, HOST), 500)
    assert norm(obj.snapshot()) == before
    run(obj, req("set", value={}), now=400)
    assert twin.value("a") == [1, {"b": "changed"}, 9]


# -- who claims a free state, and when ------------------------------------------------

ALLOWED = ("us", "eu", "ap")
STAGGER = 100


def delay(obj: StateObject, region: str, *, now: int, allowed: Any = ALLOWED) -> int | None:
    return claim_delay_ms(obj, region, allowed, now_ms=now, stagger_ms=STAGGER)


def test_the_hand_off_target_claims_at_once_and_nobody_else_while_the_lease_runs() -> None:
    obj = owned(at=0)
    obj.fold(Handoff(REGION, 1, "ap", HOST), 100)
    assert delay(obj, "ap", now=200) == 0
    assert delay(obj, "us", now=200) is None
    assert delay(obj, REGION, now=200) is None


def test_an_owned_state_whose_lease_runs_is_left_alone() -> None:
    obj = owned(at=0)
    obj.fold(req("get"), 10)  # even with requests waiting
    assert all(delay(obj, r, now=LEASE) is None for r in ALLOWED)


def test_a_free_state_nobody_asks_for_is_not_claimed() -> None:
    never = StateObject("s")
    assert all(delay(never, r, now=0) is None for r in ALLOWED)
    released = owned()
    released.fold(Release(REGION, 1, HOST), 10)
    assert all(delay(released, r, now=20) is None for r in ALLOWED)


def test_a_free_state_with_requests_goes_first_to_the_oldest_requests_region() -> None:
    obj = StateObject("s")
    obj.fold(req("get", from_region="ap"), 10)
    obj.fold(req("get", from_region="eu"), 20)
    assert [delay(obj, r, now=30) for r in ALLOWED] == [STAGGER, 2 * STAGGER, 0]


def test_a_request_from_a_region_not_allowed_leaves_the_configured_order() -> None:
    obj = StateObject("s")
    obj.fold(req("get", from_region="mars"), 10)
    assert [delay(obj, r, now=30) for r in ALLOWED] == [0, STAGGER, 2 * STAGGER]


def test_a_lapsed_owner_is_failed_over_with_its_own_region_last() -> None:
    obj = owned(at=0)  # eu, lease through LEASE
    after = LEASE + 1
    assert [delay(obj, r, now=after) for r in ALLOWED] == [0, 2 * STAGGER, STAGGER]
    obj.fold(req("get", from_region="ap"), after)
    assert [delay(obj, r, now=after) for r in ALLOWED] == [STAGGER, 2 * STAGGER, 0]


def test_a_region_not_allowed_never_claims() -> None:
    obj = StateObject("s")
    obj.fold(req("get", from_region="mars"), 10)
    assert delay(obj, "mars", now=20) is None
    handed = owned()
    handed.fold(Handoff(REGION, 1, "mars", HOST), 10)
    assert delay(handed, "mars", now=20) is None


def test_duplicated_allowed_regions_count_once() -> None:
    obj = StateObject("s")
    obj.fold(req("get", from_region="us"), 10)
    allowed = ["us", "us", "eu", "eu", "ap"]
    assert [delay(obj, r, now=20, allowed=allowed) for r in ALLOWED] == [0, STAGGER, 2 * STAGGER]


# -- accesses -------------------------------------------------------------------------


def test_access_counts_count_accepted_ops_per_caller_region_since_a_time() -> None:
    obj = owned()
    for at, region in [(100, "us"), (200, "ap"), (300, "us"), (400, "us")]:
        request = req("get", from_region=region)
        obj.fold(request, at)
        op = exe(obj, request, now=at)
        assert op is not None and obj.fold(op, at)
    # neither requests, duplicates nor fenced ops count
    obj.fold(req("get", from_region="ap"), 450)
    dup = exe(obj, req("get", req_id=next(iter(obj.applied)), from_region="us"), now=460)
    assert dup is not None and not obj.fold(dup, 460)
    fenced = exe(obj, req("get", from_region="ap"), now=470, host="h2")
    assert fenced is not None and not obj.fold(fenced, 470)
    assert obj.access_counts(0) == {"us": 3, "ap": 1}
    assert obj.access_counts(200) == {"ap": 1, "us": 2}
    assert obj.access_counts(401) == {}

