"""Coordinators that tolerate a fleet of clients (issue 15), without a broker: who takes
and who leaves the coordinator group's seat (``seat_move``), how a member's client id
names its kind, the ``strong.coordinator`` setting and its deprecated spelling, and
aiokafka's repeated messages logged once per episode (``edgebus.kafka.log_noise``),
and how a client waits for a decision (it nudges, it ends, it says what to run).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from edgebus.commit import client as commit_client
from edgebus.commit.client import StrongClient
from edgebus.commit.coordinator import (
    GroupView,
    coordinator_client_id,
    member_kind,
    seat_move,
)
from edgebus.config import EdgeConfig
from edgebus.errors import ConfigError
from edgebus.kafka import log_noise
from edgebus.kafka.log_noise import KafkaNoiseFilter, NoiseGate, is_group_churn

AUTO_A = coordinator_client_id("auto", "a")
AUTO_B = coordinator_client_id("auto", "b")
SERVICE = coordinator_client_id("service", "c1")
EMBEDDED = coordinator_client_id("embedded", "e")

# --------------------------------------------------------------------------- member kinds


def test_a_members_client_id_names_its_kind_and_unknown_ids_count_as_services() -> None:
    assert [member_kind(c) for c in (AUTO_A, SERVICE, EMBEDDED)] == [
        "auto", "service", "embedded"]
    # an older `edgebus coordinator run` (client id edgebus-<name>) is a service
    assert member_kind("edgebus-coordinator-host-12") == "service"
    assert member_kind("edgebus-coordinator.autox.a") == "service"


# --------------------------------------------------------------------------- the seat


def test_a_standby_takes_the_seat_only_when_the_group_has_no_member() -> None:
    for state in ("Empty", "Dead"):
        assert seat_move(GroupView(state, ()), AUTO_A, seated=False) == "take"
    for members in ((SERVICE,), (AUTO_B,), (EMBEDDED,)):
        for state in ("Stable", "PreparingRebalance", "CompletingRebalance"):
            assert seat_move(GroupView(state, members), AUTO_A, seated=False) == "stay"


def test_a_seated_auto_coordinator_leaves_to_a_service_or_an_explicitly_embedded_one() -> None:
    for other in (SERVICE, EMBEDDED):
        view = GroupView("Stable", tuple(sorted((AUTO_A, other))))
        assert seat_move(view, AUTO_A, seated=True) == "leave"


def test_of_several_seated_auto_coordinators_exactly_one_stays() -> None:
    members = tuple(sorted(coordinator_client_id("auto", n) for n in "dbca"))
    moves = {m: seat_move(GroupView("Stable", members), m, seated=True) for m in members}
    assert sorted(moves.values()) == ["leave", "leave", "leave", "stay"]
    assert moves[min(members)] == "stay"


def test_a_seated_coordinator_does_nothing_while_the_group_rebalances_or_before_it_joined(
) -> None:
    busy = GroupView("PreparingRebalance", (AUTO_A, SERVICE))
    assert seat_move(busy, AUTO_A, seated=True) == "stay"
    not_yet = GroupView("Stable", (SERVICE,))  # its join is not complete
    assert seat_move(not_yet, AUTO_A, seated=True) == "stay"
    alone = GroupView("Stable", (AUTO_A,))
    assert seat_move(alone, AUTO_A, seated=True) == "stay"


# --------------------------------------------------------------------------- the setting


def test_strong_coordinator_defaults_to_auto_and_the_old_flag_maps_onto_it() -> None:
    assert EdgeConfig().strong.coordinator == "auto"
    for flag, mode in ((True, "embedded"), (False, "service")):
        strong = EdgeConfig.from_mapping({"strong": {"embedded_coordinator": flag}}).strong
        assert strong.coordinator == mode
        same = {"embedded_coordinator": flag, "coordinator": mode}
        assert EdgeConfig.from_mapping({"strong": same}).strong.coordinator == mode


def test_strong_coordinator_refuses_a_contradiction_and_an_unknown_mode() -> None:
    both = {"embedded_coordinator": True, "coordinator": "service"}
    with pytest.raises(ConfigError, match=r"keep only strong\.coordinator"):
        EdgeConfig.from_mapping({"strong": both})
    with pytest.raises(ConfigError, match=r"strong\.coordinator"):
        EdgeConfig.from_mapping({"strong": {"coordinator": "everywhere"}})


# --------------------------------------------------------------------------- log noise


def test_the_gate_lets_one_message_of_an_episode_through_then_one_per_repeat_period() -> None:
    gate = NoiseGate(quiet_s=60, repeat_s=600)
    assert gate.admit("m", 0) == (True, 0)
    assert [gate.admit("m", t)[0] for t in range(1, 50)] == [False] * 49
    assert gate.admit("other", 10) == (True, 0)  # each message has its own episodes
    # a storm that never ends: one every repeat_s, with the count left out
    t = 50.0
    while t < 600:
        assert gate.admit("m", t) == (False, 0)
        t += 30
    assert gate.admit("m", 600) == (True, 49 + 19)
    # quiet for quiet_s: the next one starts a new episode, and says what was left out
    assert gate.admit("m", 601) == (False, 0)
    assert gate.admit("m", 700) == (True, 1)


def _record(name: str, level: int, msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


GROUP = "aiokafka.consumer.group_coordinator"
REBALANCING = "Heartbeat failed for group %s because it is rebalancing"


def test_group_churn_is_info_once_per_episode_and_other_warnings_keep_their_level() -> None:
    now = [0.0]
    noise = KafkaNoiseFilter(NoiseGate(quiet_s=60, repeat_s=600), clock=lambda: now[0])
    group_logger = logging.getLogger(GROUP)
    before = group_logger.level
    group_logger.setLevel(logging.INFO)
    try:
        first = _record(GROUP, logging.WARNING, REBALANCING, "g")
        assert noise.filter(first) and first.levelno == logging.INFO
        assert first.getMessage() == "Heartbeat failed for group g because it is rebalancing"
        assert not any(noise.filter(_record(GROUP, logging.WARNING, REBALANCING, "g"))
                       for _ in range(20))
        assert noise.left_out == 20
        now[0] = 120.0  # the next episode says how many were left out
        again = _record(GROUP, logging.WARNING, REBALANCING, "g")
        assert noise.filter(again) and "[20 more like this were not logged]" in again.getMessage()
    finally:
        group_logger.setLevel(before)
    other = _record("aiokafka.conn", logging.ERROR, "Unable connect to %s", "node")
    assert noise.filter(other) and other.levelno == logging.ERROR
    assert not noise.filter(_record("aiokafka.conn", logging.ERROR, "Unable connect to %s", "x"))
    info = _record(GROUP, logging.INFO, "Joined group %s", "g")
    assert all(noise.filter(info) for _ in range(3))  # below WARNING: untouched


def test_group_churn_is_dropped_where_info_is_not_enabled() -> None:
    noise = KafkaNoiseFilter(NoiseGate())
    group_logger = logging.getLogger(GROUP)
    before = group_logger.level
    group_logger.setLevel(logging.WARNING)
    try:
        assert not noise.filter(_record(GROUP, logging.WARNING, REBALANCING, "g"))
    finally:
        group_logger.setLevel(before)


def test_churn_is_only_the_group_coordinators_rebalance_and_heartbeat_messages() -> None:
    assert is_group_churn(GROUP, REBALANCING)
    assert is_group_churn(GROUP, "OffsetCommit failed for group %s due to group error (%s), "
                                 "will rejoin")
    assert not is_group_churn(GROUP, "User provided listener %s for group %s failed on "
                                     "partition assignment: %s")
    assert not is_group_churn("aiokafka.conn", REBALANCING)


@pytest.fixture
def installed() -> Iterator[KafkaNoiseFilter]:
    import aiokafka  # noqa: F401  - its loggers exist once it is imported

    noise = log_noise.install()
    yield noise
    log_noise.uninstall()


def test_install_puts_one_filter_on_every_aiokafka_logger_and_uninstall_removes_it(
    installed: KafkaNoiseFilter,
) -> None:
    assert log_noise.install() is installed  # a second install adds nothing
    group_logger = logging.getLogger(GROUP)
    assert group_logger.filters.count(installed) == 1
    log_noise.uninstall()
    assert installed not in group_logger.filters


def test_a_rebalance_storm_prints_nothing_on_a_terminal_without_logging_configured(
    installed: KafkaNoiseFilter, capsys: pytest.CaptureFixture[str],
) -> None:
    """No handler configured (Python's last resort prints WARNING and above on stderr):
    a storm of heartbeat failures prints nothing at all."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    root.handlers, root.level = [], logging.WARNING
    try:
        for _ in range(50):
            logging.getLogger(GROUP).warning(REBALANCING, "edgebus.us-east-1.coordinator")
    finally:
        root.handlers, root.level = handlers, level
    assert capsys.readouterr().err == ""


# --------------------------------------------------------------------------- the client's wait


def _client(mode: str, on_slow: Any = None) -> StrongClient:
    config = EdgeConfig.from_mapping({"strong": {"coordinator": mode}})
    return StrongClient(config, "127.0.0.1:1", "test", on_slow=on_slow)


async def test_a_write_waiting_for_its_decision_nudges_every_slow_period_and_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The client calls on_slow while a decision is late (the auto coordinator then
    looks whether anyone coordinates), gets the decision when it comes, and never
    waits past its end."""
    monkeypatch.setattr(commit_client, "SLOW_S", 0.05)
    loop = asyncio.get_running_loop()
    decided: asyncio.Future[Any] = loop.create_future()
    nudges: list[float] = []

    def nudge() -> None:
        # the decision comes during the fourth nudge: no timing decides the count
        nudges.append(loop.time())
        if len(nudges) == 4:
            decided.set_result("the decision")

    client = _client("auto", on_slow=nudge)
    assert await client._decision(decided, 60.0) == "the decision"
    assert len(nudges) == 4, nudges
    gaps = [later - earlier for earlier, later in itertools.pairwise(nudges)]
    assert all(gap >= 0.04 for gap in gaps), gaps  # one per slow period, not a busy loop
    never: asyncio.Future[Any] = loop.create_future()
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        await client._decision(never, 0.2)
    assert time.monotonic() - start < 1.0


def test_outcome_unknown_says_what_to_run_for_each_mode() -> None:
    begin = SimpleNamespace(txn_id="t1", key="k")
    service = _client("service")._no_decision(begin)  # type: ignore[arg-type]
    assert "`edgebus coordinator run`" in service and 'strong.coordinator to "auto"' in service
    auto = _client("auto")._no_decision(begin)  # type: ignore[arg-type]
    assert "while no other runs" in auto and "`edgebus coordinator run`" in auto
    assert "t1" in auto and "coordinator" in auto
