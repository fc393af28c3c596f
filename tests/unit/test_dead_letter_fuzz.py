"""Dead letters are untrusted and size-safe.

* :func:`decode_dead_letter` lists any record a Kafka consumer can hand over, whatever
  its headers (forged header sets, arbitrary bytes, null values, repeats): it returns a
  view whose unreadable fields are ``None`` with a reason, within a per-call time limit
  (an interval timer, as in tests/unit/test_event_reader_fuzz.py); DecodeError only for
  what is not a record at all.
* :func:`build_letter` never makes a letter larger than a Kafka record may be: a record
  near the size limit, or with too many header bytes, becomes a reference letter.
* :func:`plan_redrive` never republishes edgebus's control headers from a letter, gives
  the letters of one record one applied-once marker, and never raises on forged input.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import pytest
from aiokafka import ConsumerRecord
from hypothesis import given, settings
from hypothesis import strategies as st

from edgebus.errors import DecodeError
from edgebus.kafka import dead_letters as dl
from edgebus.kafka import redrive as rd
from edgebus.kafka.dead_letter_view import DeadLetterView, decode_dead_letter
from edgebus.kafka.dead_letters import (
    DLQ_HEADERS,
    H_DLQ_DIGEST,
    H_DLQ_REASON,
    H_DLQ_REGION,
    H_DLQ_SOURCE,
    H_DLQ_STAGE,
    H_DLQ_TIME,
    H_DLQ_TRUNCATED,
    H_REDRIVE_OF,
    MAX_KEPT_HEADER_BYTES,
    MAX_LETTER_BYTES,
    build_letter,
)
from edgebus.kafka.redrive import RedrivePlan, plan_redrive
from edgebus.wire.commit_log import H_SAGA
from edgebus.wire.headers import H_DEPS, H_ORIGIN_POS, H_TXN
from edgebus.wire.state_log import H_STATE
from edgebus.wire.watermark import H_WATERMARK
from tests.unit.fuzzing import time_limit

#: seconds one call may take (a letter takes microseconds)
LIMIT_S = 2.0
REGION, OTHER = "us", "eu"
REGIONS = (REGION, OTHER, "ap")
EVENTS = f"edgebus.{REGION}.events"




def record(
    headers: list[tuple[str, bytes | None]], *, topic: str = f"edgebus.{REGION}.dlq",
    partition: int = 0, offset: int = 0, key: bytes | None = b"k", value: bytes | None = b"v",
) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(topic, partition, offset, 0, 0, key, value, None,
                          len(key or b""), len(value or b""), headers)


def test_the_control_header_names_are_those_of_edgebus_wire() -> None:
    """edgebus.kafka.redrive may not import edgebus.wire (a sibling layer): the names it
    strips on redrive must still be the wire's."""
    assert (rd._H_ORIGIN_POS, rd._H_TXN, rd._H_WATERMARK) == (H_ORIGIN_POS, H_TXN, H_WATERMARK)
    assert {H_SAGA, H_STATE} == rd._NOT_EVENT_HEADERS
    assert all(h.startswith("eb-dlq-") for h in DLQ_HEADERS)


# -- decoding forged letters -------------------------------------------------------------

names = st.sampled_from([
    *sorted(DLQ_HEADERS),
    H_REDRIVE_OF, H_TXN, H_ORIGIN_POS, H_DEPS, H_WATERMARK, "eb-dlq-other", "x-user",
]) | st.text(max_size=20)
hostile_values = st.one_of(
    st.none(),
    st.binary(max_size=64),
    st.sampled_from([
        b"", b"0", b"-1", b"1e9", b"nan", b" 12", b"\xff\xfe", b"9" * 40, b"9" * 5000,
        b"materialize", b"replicate", b"state", b"participant", b"MATERIALIZE", b"\x00", b"\x1b[2J",
        b"edgebus.us.events:0:0", b"edgebus.us.events:-1:0", b"t:99999999999:1", b"::",
        b"edgebus.us.events:0:" + b"9" * 30, "r\u00e9gion".encode(), b"0:0", b"a:b",
        str(int(time.time() * 1000)).encode(), b"f" * 64, b"F" * 64,
    ]),
)
header_sets = st.lists(st.tuples(names, hostile_values), max_size=12)


def check_view(view: DeadLetterView) -> None:
    document = view.to_dict()
    json.dumps(document)  # plain JSON types only
    for name, field in ((H_DLQ_STAGE, view.stage), (H_DLQ_SOURCE, view.source),
                        (H_DLQ_REGION, view.refused_by), (H_DLQ_TIME, view.time_ms)):
        assert (field is None) == (name in view.invalid), (name, field, view.invalid)
    assert view.stage is None or view.stage in dl.STAGES
    assert view.time_ms is None or 0 < view.time_ms < 10**13
    assert view.source is None or view.source_position is not None
    assert view.key is None or len(view.key) <= 257
    assert len(view.reason) <= 2001
    for text in (view.key or "", view.reason, *view.invalid.values()):
        assert text.isprintable(), text


@settings(max_examples=300, deadline=None)
@given(headers=header_sets, key=st.none() | st.binary(max_size=300),
       value=st.none() | st.binary(max_size=300))
def test_any_header_set_is_listed_with_unreadable_fields_shown_invalid(
    headers: list[tuple[str, bytes | None]], key: bytes | None, value: bytes | None
) -> None:
    with time_limit(LIMIT_S):
        view = decode_dead_letter(record(headers, key=key, value=value))
    check_view(view)


@settings(max_examples=100, deadline=None)
@given(size=st.sampled_from([10**6, 10**7]), name=names)
def test_huge_header_values_are_listed_in_bounded_time(size: int, name: str) -> None:
    headers = [(n, b"9" * size) for n in (H_DLQ_TIME, H_DLQ_REASON, H_DLQ_SOURCE, name)]
    with time_limit(LIMIT_S):
        view = decode_dead_letter(record(headers, key=b"\xff" * size))
    check_view(view)
    assert view.time_ms is None and view.source is None


def test_the_letter_a_region_writes_is_read_back_exactly() -> None:
    original = record([("eb-event-id", b"e1"), (H_DLQ_REASON, b"older letter")],
                      topic=EVENTS, partition=2, offset=7, key="clé".encode())
    letter = build_letter(original, "not Avro: 'é'", "materialize", REGION)
    view = decode_dead_letter(record(letter.headers, key=letter.key, value=letter.value))
    assert view.invalid == {} and not view.reference
    assert (view.key, view.reason, view.stage, view.refused_by) == (
        "clé", "not Avro: 'é'", "materialize", REGION)
    assert view.source_position == (EVENTS, 2, 7)
    assert view.time_ms is not None and abs(view.time_ms - time.time() * 1000) < 60_000
    # the older letter's reason is not kept: one reason per letter
    assert [v for k, v in letter.headers if k == H_DLQ_REASON] == [b"not Avro: '\xc3\xa9'"]


def test_only_what_is_not_a_record_at_all_is_a_decode_error() -> None:
    class Bare:
        partition, offset, key, value = 0, 0, b"k", b"v"
        headers: Any = ()

    for headers in ([("eb-dlq-time",)], [(b"eb-dlq-time", b"1")], [("eb-dlq-time", 12)],
                    [["eb-dlq-time", b"1"]], 5):
        bare = Bare()
        bare.headers = headers
        with pytest.raises(DecodeError):
            decode_dead_letter(bare)  # type: ignore[arg-type]
    bare = Bare()
    bare.partition = -1  # type: ignore[assignment]
    with pytest.raises(DecodeError):
        decode_dead_letter(bare)  # type: ignore[arg-type]


# -- size-safe letters -------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    value_size=st.sampled_from([0, 1, 1000, 500_000, 999_000, 999_900, 1_000_000, 1_048_576,
                                3_000_000]),
    key_size=st.sampled_from([0, 1, 100, 4096, 5000, 900_000]),
    header_sizes=st.lists(st.sampled_from([0, 10, 1000, 60_000, 70_000]), max_size=4),
    reason_size=st.sampled_from([0, 10, 1999, 2001, 100_000]),
)
def test_a_letter_never_exceeds_a_kafka_record(
    value_size: int, key_size: int, header_sizes: list[int], reason_size: int
) -> None:
    headers = [(f"h{i}", b"h" * n) for i, n in enumerate(header_sizes)]
    original = record(headers, topic=EVENTS, key=b"k" * key_size, value=b"v" * value_size)
    letter = build_letter(original, "é" * reason_size, "materialize", REGION)
    assert dl._record_size(letter.key, letter.value, letter.headers) <= MAX_LETTER_BYTES
    view = decode_dead_letter(record(letter.headers, key=letter.key, value=letter.value))
    assert view.invalid == {}
    assert len(view.reason.encode("utf-8")) <= 2000
    kept = sum(len(k) + len(v or b"") + 10 for k, v in headers)
    whole = (kept <= MAX_KEPT_HEADER_BYTES
             and dl._record_size(original.key, original.value, headers) + 2000 + 600
             <= MAX_LETTER_BYTES)
    if whole:
        assert not letter.reference and letter.value == original.value
    if letter.reference:
        assert view.reference and view.truncated == value_size and letter.value is None
        assert view.digest == hashlib.blake2b(b"v" * value_size, digest_size=32).hexdigest()
        assert not any(k.startswith("h") for k, _ in letter.headers)


# -- redrive plans -----------------------------------------------------------------------


def letter_of(
    offset: int, *, source: bytes | None = None, stage: bytes = b"materialize",
    extra: list[tuple[str, bytes | None]] | None = None, key: bytes = b"k", value: bytes = b"v",
    partition: int = 0,
) -> DeadLetterView:
    headers = [*(extra or []),
               (H_DLQ_REASON, b"why"), (H_DLQ_STAGE, stage),
               (H_DLQ_SOURCE, source if source is not None else f"{EVENTS}:1:{offset}".encode()),
               (H_DLQ_REGION, REGION.encode()), (H_DLQ_TIME, b"1700000000000")]
    return decode_dead_letter(record(headers, partition=partition, offset=offset, key=key,
                                     value=value))


def plan(*letters: DeadLetterView, selected: Any = None) -> list[RedrivePlan]:
    return plan_redrive(list(letters), REGION, REGIONS, 6, selected)


def test_redrive_drops_forged_control_headers_and_sets_its_own_marker() -> None:
    forged = letter_of(5, extra=[
        (H_REDRIVE_OF, b"0:0"), (H_REDRIVE_OF, b"garbage"), ("eb-dlq-truncated-not", b"1"),
        (H_SAGA, b"x"), (H_STATE, b"x"), ("eb-event-id", b"e1"), ("x-user", b"kept"),
        (H_DEPS, b"\x01\x00"),
    ])
    [p] = plan(forged)
    assert p.why_not is None and p.partition == 1 and p.marker == (0, 5)
    assert list(p.headers) == [("eb-event-id", b"e1"), ("x-user", b"kept"),
                               (H_DEPS, b"\x01\x00"), (H_REDRIVE_OF, b"0:5")]


def test_the_letters_of_one_record_share_one_marker_and_one_redrive() -> None:
    first = letter_of(3, source=f"{EVENTS}:1:40".encode())
    again = letter_of(9, source=f"{EVENTS}:1:40".encode())  # refused again after a crash
    # a failed redrive of the first: same key and value, names it
    failed = letter_of(12, source=f"{EVENTS}:1:77".encode(), extra=[(H_REDRIVE_OF, b"0:3")])
    # a letter naming the first but holding other content: not the same record
    other = letter_of(14, source=f"{EVENTS}:1:78".encode(), extra=[(H_REDRIVE_OF, b"0:3")],
                      value=b"other")
    plans = plan(first, again, failed, other)
    assert [p.why_not is None for p in plans] == [True, False, False, True]
    assert plans[0].marker == (0, 3) and plans[3].marker == (0, 14)
    assert "same record (0:3)" in (plans[1].why_not or "")
    # redriving only the later letters still uses the record's first letter's marker
    assert [p.marker for p in plan(first, again, failed, other, selected=[(0, 12)])] == [(0, 3)]
    assert [p.marker for p in plan(first, again, failed, other, selected=[(0, 9)])] == [(0, 3)]


def test_what_redrive_refuses() -> None:
    reasons = {
        "replication hop": letter_of(1, stage=b"replicate"),
        "state-log": letter_of(2, stage=b"state"),
        "commit-log": letter_of(12, stage=b"participant"),
        "only materialize": letter_of(3, stage=b"bogus"),
        "reference letter": decode_dead_letter(record([
            (H_DLQ_STAGE, b"materialize"), (H_DLQ_SOURCE, f"{EVENTS}:1:4".encode()),
            (H_DLQ_TRUNCATED, b"2000000"), (H_DLQ_DIGEST, b"0" * 64)], offset=4)),
        "does not name a record of": letter_of(5, source=b"edgebus.eu.events:1:5"),
        "watermark": letter_of(6, extra=[(H_WATERMARK, b"heartbeat")]),
        "disagree on eb-txn": letter_of(7, extra=[(H_TXN, b"t1"), (H_TXN, b"t2")]),
        "names no other configured region": letter_of(8, extra=[(H_ORIGIN_POS, b"us:1:3")]),
        "the replicator keeps partitions": letter_of(9, extra=[(H_ORIGIN_POS, b"eu:2:3")]),
        "not region:partition:offset": letter_of(10, extra=[(H_ORIGIN_POS, b"eu:1:-3")]),
        "more than once": letter_of(11, extra=[(H_ORIGIN_POS, b"eu:1:3")] * 2),
    }
    plans = plan(*reasons.values())
    for (expected, _), p in zip(reasons.items(), plans, strict=True):
        assert p.why_not is not None and expected in p.why_not, (expected, p.why_not)
    reference = plans[list(reasons).index("reference letter")].why_not or ""
    assert "kcat" in reference and f"{EVENTS}:1:4" in reference


def test_a_copy_keeps_its_origin_and_a_commit_its_txn() -> None:
    copy = letter_of(1, extra=[(H_ORIGIN_POS, b"eu:1:3"), (H_DEPS, b"\x01\x00")])
    commit = letter_of(2, extra=[(H_TXN, b"t1")])
    again = letter_of(3, source=f"{EVENTS}:1:2".encode(), extra=[(H_TXN, b"t1")])
    [p, q, r] = plan(copy, commit, again)
    assert p.origin == (OTHER, 1, 3) and (H_ORIGIN_POS, b"eu:1:3") in p.headers
    assert q.why_not is None and (H_TXN, b"t1") in q.headers
    assert r.why_not is not None  # the same record as the letter before
    # a record whose letters disagree on its txn is not redriven at all
    forged = letter_of(4, source=f"{EVENTS}:1:2".encode(), extra=[(H_TXN, b"t2")])
    assert all("disagree" in (x.why_not or "") for x in plan(commit, forged))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(header_sets, st.sampled_from([b"k", b"j"]),
                          st.sampled_from([b"v", b"w"]), st.integers(0, 2)), max_size=8))
def test_a_plan_over_forged_letters_never_raises_nor_republishes_control_headers(
    drawn: list[tuple[list[tuple[str, bytes | None]], bytes, bytes, int]],
) -> None:
    letters = []
    for offset, (headers, key, value, source) in enumerate(drawn):
        base = [(H_DLQ_STAGE, b"materialize"), (H_DLQ_SOURCE, f"{EVENTS}:1:{source}".encode())]
        letters.append(decode_dead_letter(record([*base, *headers], offset=offset, key=key,
                                                 value=value)))
    with time_limit(LIMIT_S):
        plans = plan(*letters)
    positions = {(d.partition, d.offset) for d in letters}
    sent_markers = []
    for p in plans:
        if p.why_not is not None:
            continue
        assert p.marker in positions
        names_sent = [k for k, _ in p.headers]
        assert names_sent[-1] == H_REDRIVE_OF and names_sent.count(H_REDRIVE_OF) == 1
        assert not any(k.startswith("eb-dlq-") for k in names_sent)
        assert H_WATERMARK not in names_sent and names_sent.count(H_ORIGIN_POS) <= 1
        assert names_sent.count(H_TXN) <= 1
        sent_markers.append(p.marker)
    assert len(sent_markers) == len(set(sent_markers)), "one record redriven twice in a run"
