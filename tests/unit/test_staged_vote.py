"""What a participant checks of a strong write whose payload is staged in its own region
(``edgebus.commit.prepared``), and how its tail of the staged topic keeps payloads in
bounded memory (``edgebus.commit.staged_tail``), without Kafka.

Config: the default regions, us-east-1 outside the GDPR zone, eu-west-1 in it.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import pytest
from aiokafka import ConsumerRecord

from edgebus.commit import staged_tail
from edgebus.commit.poison import DeadLetters
from edgebus.commit.prepared import PrepareChecks, Prepared, commit_event, prepared_of
from edgebus.commit.staged_tail import StagedPayloads, read_staged
from edgebus.config import load_config
from edgebus.core.commit_log import BeginRecord, DecisionRecord, Txn
from edgebus.core.commit_vote import Decision, TxnOutcome, Vote
from edgebus.core.hlc import HLCTimestamp
from edgebus.core.staged_write import SALT_BYTES, StagedWrite
from edgebus.errors import DecodeError
from edgebus.kafka.batching import partition_for
from edgebus.wire.event_reader import read_event
from edgebus.wire.headers import H_DECLASSIFIED, H_TXN, Declassified, encode_declassified
from edgebus.wire.staged_write import encode_staged_write

PARTITIONS = 3
CONFIG = load_config({"kafka": {"bootstrap": "127.0.0.1:1", "partitions": PARTITIONS}})
US, EU = "us-east-1", "eu-west-1"
NOW = int(time.time() * 1000)
EMAIL = b'{"contact":"ann.smith@example.eu","plan":"pro"}'


def staged(txn_id: str = "0b7f1c9e-5c1a-4d55-8f7e-2f6b1b7c9a10", **fields: Any) -> StagedWrite:
    base = StagedWrite(
        txn_id, "customer:1", "set", EMAIL, None, bytes(SALT_BYTES), NOW + 10_000, "client-1", NOW
    )
    return dataclasses.replace(base, **fields)


def begin_of(write: StagedWrite, **fields: Any) -> BeginRecord:
    base = BeginRecord(
        write.txn_id,
        write.key,
        write.operation,
        None,
        (US, EU),
        ("public",),
        None,
        write.deadline_ms,
        NOW << 16,
        write.writer,
        write.time_ms,
        write.digest,
    )
    return dataclasses.replace(base, **fields)


def log_partition(begin: BeginRecord) -> int:
    return partition_for(begin.key.encode(), PARTITIONS)


# --------------------------------------------------------------------------- the vote's checks


def test_an_inline_payload_is_prepared_as_it_is_and_needs_nothing_staged() -> None:
    begin = dataclasses.replace(begin_of(staged()), payload=b'{"plan":"pro"}', staged_digest=None)
    assert not begin.staged
    assert prepared_of(begin, None) == Prepared(begin)
    prepared, poison, compliance = PrepareChecks(CONFIG, US).for_vote(
        begin, log_partition(begin), NOW, None
    )
    assert (prepared, poison, compliance) == (Prepared(begin), None, None)


def test_a_staged_begin_whose_payload_is_not_read_yet_waits() -> None:
    begin = begin_of(staged())
    assert PrepareChecks(CONFIG, EU).for_vote(begin, log_partition(begin), NOW, None) == (
        None,
        None,
        None,
    )


def test_a_bad_request_is_refused_before_its_staged_payload_is_looked_for() -> None:
    begin = begin_of(staged(), txn_id="t\u00e9")
    _, poison, _ = PrepareChecks(CONFIG, EU).for_vote(begin, log_partition(begin), NOW, None)
    assert poison is not None and "transaction id" in poison
    good = begin_of(staged())
    wrong = (log_partition(good) + 1) % PARTITIONS
    _, poison, _ = PrepareChecks(CONFIG, EU).for_vote(good, wrong, NOW, None)
    assert poison is not None and "partition" in poison


@pytest.mark.parametrize(
    "found, says",
    [
        ("its staged payload is missing: ...", "missing"),
        (staged(payload=b'{"contact":"eve@example.eu"}'), "digest is not the BEGIN's"),
        (staged(key="customer:2"), "of another key"),
    ],
)
def test_a_missing_or_foreign_staged_payload_is_a_refusal(found: Any, says: str) -> None:
    begin = begin_of(staged())
    prepared, poison, _ = PrepareChecks(CONFIG, EU).for_vote(
        begin, log_partition(begin), NOW, found
    )
    assert prepared is None and poison is not None and says in poison


def test_a_staged_payload_that_is_no_event_is_refused_without_naming_it() -> None:
    write = staged(payload=b'{"contact":"ann.smith@example.eu"')  # cut short: not JSON
    begin = begin_of(write)
    _, poison, _ = PrepareChecks(CONFIG, EU).for_vote(begin, log_partition(begin), NOW, write)
    assert poison is not None and "no event this region can apply" in poison
    assert "example.eu" not in poison


def test_an_email_labelled_public_may_not_be_held_outside_the_gdpr_zone_by_content() -> None:
    write = staged()
    begin = begin_of(write)
    prepared, poison, compliance = PrepareChecks(CONFIG, US).for_vote(
        begin, log_partition(begin), NOW, write
    )
    assert prepared is not None and prepared.staged and poison is None
    assert prepared.begin.payload == EMAIL
    assert compliance is not None
    assert compliance.startswith(f"compliance: by its content region {US} may not hold it")
    assert "pii" in compliance and "labelled public" in compliance and "gdpr" in compliance
    # the reason goes to the commit log: no data, no field name
    assert "example.eu" not in compliance and "contact" not in compliance
    # the GDPR region may hold it
    assert PrepareChecks(CONFIG, EU).for_vote(begin, log_partition(begin), NOW, write)[1:] == (
        None,
        None,
    )


def test_a_valid_declassification_record_lets_the_label_stand() -> None:
    record = encode_declassified(
        Declassified("dpo", NOW, "synthetic address", ("pii",), ("public",))
    )
    write = staged(declassified=record)
    begin = begin_of(write)
    prepared, poison, compliance = PrepareChecks(CONFIG, US).for_vote(
        begin, log_partition(begin), NOW, write
    )
    assert (poison, compliance) == (None, None)
    assert prepared is not None and prepared.declassified == record
    forged = staged(declassified=b'{"by": "x"}')  # not a valid record: refused
    _, _, compliance = PrepareChecks(CONFIG, US).for_vote(
        begin_of(forged), log_partition(begin), NOW, forged
    )
    assert compliance is not None and "declassification record does not stand" in compliance


def test_a_commit_is_checked_again_and_its_event_carries_the_declassification() -> None:
    record = encode_declassified(
        Declassified("dpo", NOW, "synthetic address", ("pii",), ("public",))
    )
    write = staged(declassified=record)
    begin = begin_of(write)
    txn = Txn(begin.txn_id, begin.key, begin)
    txn.decision = DecisionRecord(
        begin.txn_id, begin.key, TxnOutcome(Decision.COMMIT), NOW << 16, 1, "c", NOW
    )
    checks = PrepareChecks(CONFIG, US)
    refused = checks.for_commit(txn, log_partition(begin), NOW, write)
    assert isinstance(refused, str) and "without a yes vote" in refused  # forged: no votes
    txn.votes = {r: Vote(begin.txn_id, r, True, version=0) for r in (US, EU)}
    prepared = checks.for_commit(txn, log_partition(begin), NOW, write)
    assert isinstance(prepared, Prepared)
    event = commit_event(prepared, US, HLCTimestamp(NOW, 0))
    headers = dict(event.headers)
    assert headers[H_TXN] == begin.txn_id.encode() and headers[H_DECLASSIFIED] == record
    assert read_event(event.value).payload == {"contact": "ann.smith@example.eu", "plan": "pro"}
    assert isinstance(checks.for_commit(txn, log_partition(begin), NOW, staged()), str)


# --------------------------------------------------------------------------- the tail's memory


def record_of(
    write: StagedWrite,
    offset: int,
    *,
    key: bytes | None = None,
    partition: int | None = None,
    value: bytes | None = None,
) -> ConsumerRecord[bytes, bytes]:
    k = write.txn_id.encode() if key is None else key
    p = partition_for(write.txn_id.encode(), PARTITIONS) if partition is None else partition
    v = encode_staged_write(write) if value is None else value
    return ConsumerRecord(
        "edgebus.eu-west-1.staged", p, offset, NOW, 0, k, v, None, len(k), len(v), []
    )


class Letters(DeadLetters):
    def __init__(self) -> None:
        super().__init__(CONFIG, EU)
        self.letters: list[tuple[ConsumerRecord[bytes, bytes], str]] = []

    async def send(self, record: ConsumerRecord[bytes, bytes], reason: str) -> None:
        self.letters.append((record, reason))


def test_a_staged_record_under_another_key_or_partition_is_no_staged_write() -> None:
    write = staged()
    assert read_staged(record_of(write, 0), PARTITIONS) == write
    with pytest.raises(DecodeError, match="key is not its transaction id"):
        read_staged(record_of(write, 0, key=b"other"), PARTITIONS)
    home = partition_for(write.txn_id.encode(), PARTITIONS)
    with pytest.raises(DecodeError, match=f"its transaction id's partition is {home}"):
        read_staged(record_of(write, 0, partition=(home + 1) % PARTITIONS), PARTITIONS)


async def test_the_tail_keeps_the_first_staged_write_and_dead_letters_poison() -> None:
    letters = Letters()
    tail = StagedPayloads(CONFIG, EU, letters)
    first, again = staged(), staged(payload=b'{"plan":"free"}')
    await tail._take(record_of(first, 0), NOW)
    await tail._take(record_of(again, 1), NOW)
    await tail._take(record_of(first, 2, value=b"\x00garbage"), NOW)
    assert tail.held(first.txn_id) == first
    assert [r.offset for r, _ in letters.letters] == [2]
    assert letters.letters[0][1].startswith("not a staged write")
    assert tail.status()["poison"] == 1


async def test_the_tail_holds_payloads_in_bounded_memory_and_forgets_stale_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(staged_tail, "MAX_HELD_BYTES", 3 * (len(EMAIL) + 250))
    monkeypatch.setattr(staged_tail, "MAX_ENTRIES", 5)
    tail = StagedPayloads(CONFIG, EU, Letters())
    writes = [staged(f"txn-{i}") for i in range(7)]
    for i, write in enumerate(writes):
        await tail._take(record_of(write, i), NOW)
    status = tail.status()
    assert status["held"] == 5 and status["held_bytes"] <= staged_tail.MAX_HELD_BYTES
    assert [tail.held(w.txn_id) is not None for w in writes] == [False] * 4 + [True] * 3
    assert "txn-2" in tail._entries and tail._entries["txn-2"].staged is None  # by position
    assert "txn-0" not in tail._entries  # over MAX_ENTRIES: forgotten (searched for if needed)
    tail.forget("txn-6")
    assert tail.held("txn-6") is None and tail.status()["held"] == 4
    # a stale staged write (past its deadline) is not kept; unclaimed ones are swept out
    await tail._take(record_of(staged("late", deadline_ms=NOW - 120_000), 9), NOW)
    assert "late" not in tail._entries
    # txn-4 and txn-5 are claimed (held() above): kept past their deadline, until the
    # participant is done with them; the others, unclaimed, are swept out
    tail._sweep(NOW + 80_000)
    assert list(tail._entries) == ["txn-4", "txn-5"] and tail.status()["held_bytes"] > 0


def test_a_staged_begin_read_past_its_deadline_is_late_whatever_its_payload() -> None:
    """A participant catching up on old BEGINs votes them late (``vote`` says so): it
    neither waits for their payloads nor dead-letters them."""
    begin = begin_of(staged())
    after = begin.deadline_ms + 1
    checks = PrepareChecks(CONFIG, EU)
    for found in (None, "no staged payload of txn ... before the transaction's deadline"):
        assert checks.for_vote(begin, log_partition(begin), after, found) == (
            Prepared(begin),
            None,
            None,
        )
    txn = Txn(begin.txn_id, begin.key, begin)
    txn.decision = DecisionRecord(
        begin.txn_id, begin.key, TxnOutcome(Decision.COMMIT), NOW << 16, 1, "c", NOW
    )
    txn.votes = {r: Vote(begin.txn_id, r, True, version=0) for r in (US, EU)}
    assert checks.for_commit(txn, log_partition(begin), after, None) == (
        "its staged payload is missing"
    )  # a commit is never applied without its payload
