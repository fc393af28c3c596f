"""Hostile input for every edgebus decoder but the Event reader (that one has
``tests/unit/test_event_reader_fuzz.py``): any input decodes or raises DecodeError,
within a per-call time limit, and what decodes is what the writer could have written.

The decoders: the record headers (``parse_position``, ``decode_headers``), the vector
clock, the HLC timestamp, the session token, the watermark, the state log, the commit
(saga) log, staged strong-write payloads, saga progress and the service announcement.
Each gets real records mutated (bits flipped, bytes set, inserted or deleted, the rest
cut, a byte rewritten as a hostile varint: Avro's zig-zag, LEB128 or an overlong one)
and arbitrary bytes (for the Avro records, behind their own single-object header, so
the body is what is fuzzed). Each call runs under :data:`tests.unit.fuzzing.LIMIT_S`;
the example budget of each test is fixed (the same with and without ``CI=true``). The
named regression tests below the properties are the bugs the suite found.
"""

from __future__ import annotations

import base64
import math
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from io import BytesIO
from typing import Any

import orjson
import pytest
from fastavro import schemaless_reader
from hypothesis import given, settings
from hypothesis import strategies as st

from edgebus.core import clock_codec
from edgebus.core.clock_codec import MAX_OFFSET, MAX_PARTITION
from edgebus.core.commit_log import AckRecord, BeginRecord, DecisionRecord, VoteRecord
from edgebus.core.commit_vote import Vote
from edgebus.core.hlc import HLCTimestamp
from edgebus.core.saga import Saga, SagaBegun, StepCompleted
from edgebus.core.session import InvalidSessionToken, SessionToken
from edgebus.core.staged_write import SALT_BYTES, StagedWrite
from edgebus.core.vector_clock import Position, VectorClock
from edgebus.errors import DecodeError, InvalidInput
from edgebus.wire.announcement import (
    MAX_ANNOUNCEMENT_BYTES,
    Announcement,
    decode_announcement,
    encode_announcement,
)
from edgebus.wire.commit_log import decode_saga_record, encode_saga_record
from edgebus.wire.headers import (
    H_CLASS,
    H_DEPS,
    H_EVENT_ID,
    H_HLC,
    H_ORIGIN,
    H_ORIGIN_POS,
    H_PLACEMENT,
    H_SCHEMA,
    decode_headers,
    format_position,
    parse_position,
)
from edgebus.wire.saga_progress import ProgressEntry, decode_progress, encode_progress
from edgebus.wire.schema_registry import default_registry
from edgebus.wire.single_object import decode_single_object
from edgebus.wire.staged_write import decode_staged_write, encode_staged_write
from edgebus.wire.state_log import decode_state_record, encode_state_record
from edgebus.wire.watermark import (
    HEARTBEAT,
    REPLICATOR,
    Watermark,
    decode_watermark,
    encode_watermark,
)
from tests.unit.fuzzing import decoded, leb128, mutated, zigzag
from tests.unit.test_commit_log_codec import RECORDS as SAGA_LOG_RECORDS
from tests.unit.test_event_reader import encoded_events
from tests.unit.test_saga_progress_codec import ENTRIES as PROGRESS_ENTRIES
from tests.unit.test_staged_write_codec import RECORDS as STAGED_WRITES
from tests.unit.test_state_log_codec import RECORDS as STATE_LOG_RECORDS
from tests.unit.test_state_log_codec import raw_op, raw_record, raw_request

#: examples of each property, per decoder (the whole file takes about 15 s of CPU)
MUTATED_EXAMPLES = 500
ARBITRARY_EXAMPLES = 250

# ------------------------------------------------------------------ real records

names = st.text(min_size=1, max_size=12)
regions = st.sampled_from(["us-east-1", "eu-west-1", "ap-south-1"]) | names
partitions = st.integers(0, MAX_PARTITION) | st.integers(0, 12)
offsets = st.integers(0, MAX_OFFSET) | st.integers(0, 2**21)

clocks = st.dictionaries(st.tuples(regions, partitions), offsets, max_size=6).map(VectorClock)
encoded_clocks = clocks.map(VectorClock.encode)
hlcs = st.builds(HLCTimestamp, st.integers(0, 2**48 - 1), st.integers(0, 0xFFFF))
encoded_hlcs = hlcs.map(HLCTimestamp.encode)
ascii_names = st.text(st.characters(codec="ascii"), min_size=1, max_size=12)
positions = st.builds(Position, ascii_names, partitions, offsets)
encoded_positions = positions.map(format_position)
tokens = st.builds(SessionToken, clocks, st.just(0) | st.integers(1, 2**64 - 1))
encoded_tokens = tokens.map(lambda t: t.encode().encode("ascii"))
watermarks = st.builds(
    Watermark,
    regions,
    partitions,
    st.none() | st.integers(0, 2**63 - 1),
    st.sampled_from([HEARTBEAT, REPLICATOR]),
)
encoded_watermarks = watermarks.map(encode_watermark)
encoded_state_records = st.sampled_from(
    [encode_state_record(getattr(r, "state_id", "cart:1"), r) for _, r in STATE_LOG_RECORDS]
)
encoded_saga_records = st.sampled_from([encode_saga_record(r) for r in SAGA_LOG_RECORDS])
encoded_progress = st.sampled_from([encode_progress(e) for e in PROGRESS_ENTRIES])
encoded_staged_writes = st.sampled_from([encode_staged_write(r) for r in STAGED_WRITES])
announcements = st.builds(
    Announcement,
    regions,
    st.sampled_from(
        ["http://127.0.0.1:8700", "https://edge.example:443", "http://[::1]:9000/edgebus"]
    ),
    st.integers(0, 2**22),
    names,
    st.just("sqlite:///tmp/eu.db"),
    st.integers(0, 2**45),
)
encoded_announcements = announcements.map(encode_announcement)


def header_list(clock: bytes, hlc: bytes, position: bytes) -> list[tuple[str, bytes]]:
    return [
        (H_SCHEMA, bytes(8)),
        (H_EVENT_ID, b"0b7e4f2e-5b8f-4b0e-9d55-0c1c7a1c2f3a"),
        (H_ORIGIN, b"eu-west-1"),
        (H_PLACEMENT, b"eu-west-1,us-east-1"),
        (H_CLASS, b"pii"),
        (H_HLC, hlc),
        (H_DEPS, clock),
        (H_ORIGIN_POS, position),
        ("x-app", b"\xff\x00"),
    ]


header_lists = st.builds(header_list, encoded_clocks, encoded_hlcs, encoded_positions)


# ------------------------------------------------------------------ what decoding may give


def _clock_is_canonical(value: bytes, clock: VectorClock) -> None:
    assert clock.encode() == value  # one clock, one encoding


def _hlc_round_trips(value: bytes, ts: HLCTimestamp) -> None:
    assert ts.encode() == value


def _token_round_trips(value: str, token: SessionToken) -> None:
    assert token.encode() == value


def _position_is_in_kafkas_range(value: bytes, position: Position) -> None:
    assert position.region and position.region.isascii()
    assert 0 <= position.partition <= MAX_PARTITION and 0 <= position.offset <= MAX_OFFSET


def _watermark_is_in_range(value: bytes, mark: Watermark) -> None:
    assert mark.origin_region and 0 <= mark.partition <= MAX_PARTITION
    assert mark.origin_time_ms is None or 0 <= mark.origin_time_ms <= 2**63 - 1
    assert mark.source in (HEARTBEAT, REPLICATOR)


def _state_record_is_a_record(value: bytes, result: tuple[str, Any]) -> None:
    state_id, record = result
    assert isinstance(state_id, str)
    increment = getattr(record, "increment", 0)
    assert math.isfinite(increment)


def _saga_record_is_a_record(value: bytes, record: Any) -> None:
    assert isinstance(record, BeginRecord | VoteRecord | DecisionRecord | AckRecord)


def _staged_write_is_stageable(value: bytes, staged: Any) -> None:
    assert isinstance(staged, StagedWrite) and len(staged.salt) == SALT_BYTES
    assert staged.operation != "delete" and 0 < len(staged.txn_id) <= 200
    assert staged.txn_id.isascii() and staged.deadline_ms >= 0 and staged.time_ms >= 0
    assert isinstance(staged.payload, bytes)


def _progress_is_an_entry(value: bytes, entry: Any) -> None:
    assert isinstance(entry, ProgressEntry)


def _announcement_is_usable(value: bytes, a: Announcement) -> None:
    assert a.region and a.url.lower().startswith(("http://", "https://"))
    assert type(a.pid) is int and type(a.started_ms) is int and a.pid >= 0


def _headers_are_a_dict(value: Any, out: dict[str, Any]) -> None:
    assert isinstance(out, dict)


@dataclass(frozen=True)
class Decoder:
    """One decoder: its real records mutated, arbitrary input, and what a successful
    decode must satisfy."""

    name: str
    decode: Callable[[Any], Any]
    mutated: st.SearchStrategy[Any]
    arbitrary: st.SearchStrategy[Any]
    check: Callable[[Any, Any], None]

    def __str__(self) -> str:
        return self.name


def _behind_header(records: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """Arbitrary bodies behind the single-object header of one of ``records``."""
    return st.tuples(records, st.binary(max_size=200)).map(lambda t: t[0][:10] + t[1])


def _latin1(data: bytes) -> str:
    return data.decode("latin-1")  # every byte a character: mutations stay mutations


@st.composite
def mutated_tokens(draw: st.DrawFn) -> str:
    """A token string mutated, or a token around a mutated clock (so the clock decoder
    inside gets hostile varints)."""
    if draw(st.booleans()):
        return _latin1(draw(mutated(encoded_tokens)))
    prefix = draw(st.sampled_from(["eb1.", "eb2."]))
    hlc = draw(st.integers(1, 2**64 - 1)).to_bytes(8, "big") if prefix == "eb2." else b""
    body = base64.urlsafe_b64encode(hlc + draw(mutated(encoded_clocks))).rstrip(b"=")
    return prefix + body.decode("ascii")


@st.composite
def mutated_headers(draw: st.DrawFn) -> list[tuple[str, bytes | None]]:
    """Real record headers, one or two of their values mutated or left without one."""
    headers: list[tuple[str, bytes | None]] = list(draw(header_lists))
    for _ in range(draw(st.integers(1, 2))):
        at = draw(st.integers(0, len(headers) - 1))
        name, value = headers[at]
        if draw(st.integers(0, 9)) == 0 or value is None:
            headers[at] = (name, None)
        else:
            headers[at] = (name, draw(mutated(st.just(value))))
    return headers


arbitrary_headers = st.lists(
    st.tuples(
        st.sampled_from([n for n, _ in header_list(b"", b"", b"")]) | st.text(max_size=8),
        st.none() | st.binary(max_size=40),
    ),
    max_size=8,
)


DECODERS = [
    Decoder(
        "position",
        parse_position,
        mutated(encoded_positions),
        st.binary(max_size=320),
        _position_is_in_kafkas_range,
    ),
    Decoder("headers", decode_headers, mutated_headers(), arbitrary_headers, _headers_are_a_dict),
    Decoder(
        "vector clock",
        VectorClock.decode,
        mutated(encoded_clocks),
        st.binary(max_size=200).map(lambda b: b"\x01" + b),
        _clock_is_canonical,
    ),
    Decoder(
        "hlc", HLCTimestamp.decode, mutated(encoded_hlcs), st.binary(max_size=12), _hlc_round_trips
    ),
    Decoder(
        "session token",
        SessionToken.decode,
        mutated_tokens(),
        st.sampled_from(["eb1.", "eb2.", ""]).flatmap(
            lambda p: st.text(max_size=200).map(lambda t: p + t)
        ),
        _token_round_trips,
    ),
    Decoder(
        "watermark",
        decode_watermark,
        mutated(encoded_watermarks, 10),
        _behind_header(encoded_watermarks),
        _watermark_is_in_range,
    ),
    Decoder(
        "state log",
        decode_state_record,
        mutated(encoded_state_records, 10),
        _behind_header(encoded_state_records),
        _state_record_is_a_record,
    ),
    Decoder(
        "saga log",
        decode_saga_record,
        mutated(encoded_saga_records, 10),
        _behind_header(encoded_saga_records),
        _saga_record_is_a_record,
    ),
    Decoder(
        "staged write",
        decode_staged_write,
        mutated(encoded_staged_writes, 10),
        _behind_header(encoded_staged_writes),
        _staged_write_is_stageable,
    ),
    Decoder(
        "saga progress",
        decode_progress,
        mutated(encoded_progress, 10),
        _behind_header(encoded_progress),
        _progress_is_an_entry,
    ),
    Decoder(
        "announcement",
        decode_announcement,
        mutated(encoded_announcements),
        st.binary(max_size=300),
        _announcement_is_usable,
    ),
]


def check(decoder: Decoder, value: Any) -> None:
    result = decoded(decoder.decode, value)
    if not isinstance(result, DecodeError):
        decoder.check(value, result)


@pytest.mark.parametrize("decoder", DECODERS, ids=str)
@settings(max_examples=MUTATED_EXAMPLES, deadline=None)
@given(data=st.data())
def test_a_mutated_record_decodes_or_is_a_decode_error_in_bounded_time(
    decoder: Decoder, data: st.DataObject
) -> None:
    check(decoder, data.draw(decoder.mutated, label="value"))


@pytest.mark.parametrize("decoder", DECODERS, ids=str)
@settings(max_examples=ARBITRARY_EXAMPLES, deadline=None)
@given(data=st.data())
def test_arbitrary_input_is_a_decode_error_or_a_valid_record_in_bounded_time(
    decoder: Decoder, data: st.DataObject
) -> None:
    check(decoder, data.draw(decoder.arbitrary, label="value"))


# ------------------------------------------------------------------ the Avro layer

avro_records = (
    encoded_watermarks
    | encoded_state_records
    | encoded_saga_records
    | encoded_staged_writes
    | encoded_progress
    | encoded_events()
)


@settings(max_examples=MUTATED_EXAMPLES, deadline=None)
@given(mutated(avro_records, 10))
def test_what_the_checking_avro_reader_accepts_fastavro_reads_the_same(value: bytes) -> None:
    result = decoded(lambda v: decode_single_object(v, default_registry()), value)
    if not isinstance(result, DecodeError):
        writer, record = result
        assert fastavro_body(value, writer.parsed) == record


def fastavro_body(value: bytes, schema: Any = None) -> Any:
    """The body as fastavro alone reads it (by default with the Watermark schema)."""
    if schema is None:
        schema = default_registry().latest("io.edgebus.Watermark").parsed
    return schemaless_reader(BytesIO(value[10:]), schema, schema)


def a_watermark(time_ms: int | None = None) -> bytes:
    """``"eu"``, partition 3, ``time_ms``, HEARTBEAT: the body is 04 65 75 | 06 | the
    union branch (and the time) | the enum index."""
    return encode_watermark(Watermark("eu", 3, time_ms, HEARTBEAT))


def test_an_enum_index_of_minus_one_is_a_decode_error_not_the_last_symbol() -> None:
    forged = a_watermark()[:-1] + zigzag(-1)
    assert fastavro_body(forged)["source"] == "REPLICATOR"  # fastavro's reading
    with pytest.raises(DecodeError, match=r"WatermarkSource symbol index -1 .* out of range"):
        decode_watermark(forged)


def test_a_union_branch_of_minus_one_is_a_decode_error_not_the_last_branch() -> None:
    value = a_watermark()
    forged = value[:-2] + zigzag(-1) + zigzag(7) + value[-1:]
    assert fastavro_body(forged)["origin_time_ms"] == 7  # fastavro's reading
    with pytest.raises(DecodeError, match="union branch -1 at byte 14 is out of range"):
        decode_watermark(forged)


def test_bytes_after_a_record_are_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="2 bytes after the record"):
        decode_watermark(a_watermark() + b"\x00\x00")


def test_a_varint_longer_than_ten_bytes_is_a_decode_error_not_a_wrapped_number() -> None:
    value = a_watermark()
    forged = value[:13] + b"\xff" * 19 + b"\x01" + value[14:]  # the partition
    assert fastavro_body(forged)["partition"] == -(2**63)  # fastavro's reading
    with pytest.raises(DecodeError, match="varint at byte 13 is longer than 10 bytes"):
        decode_watermark(forged)


@pytest.mark.parametrize("partition", [-1, 2**31, 2**62])
def test_a_watermark_of_a_partition_kafka_cannot_have_is_a_decode_error(partition: int) -> None:
    value = a_watermark()
    with pytest.raises(DecodeError, match=f"partition {partition}, .* in 0..2147483647"):
        decode_watermark(value[:13] + zigzag(partition) + value[14:])


def test_a_watermark_with_a_negative_origin_time_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="origin time -5 ms"):
        decode_watermark(a_watermark(-5))


def test_a_boolean_byte_other_than_zero_or_one_is_a_decode_error() -> None:
    value = encode_saga_record(VoteRecord("t", "k", Vote("t", "eu", True), "w", 1))
    assert value.count(b"\x02\x04eu\x01") == 1  # the vote's branch, region, yes
    forged = value.replace(b"\x02\x04eu\x01", b"\x02\x04eu\x02")
    with pytest.raises(DecodeError, match=r"boolean byte 2 .* is neither 0 nor 1"):
        decode_saga_record(forged)


def a_saga_begun() -> bytes:
    """A SAGA_BEGUN of no steps: its steps array is the single 00 after the name "n"."""
    return encode_progress(ProgressEntry(SagaBegun(Saga("s", ()), 3), 1, "w", "n", None))


@pytest.mark.parametrize("count", [2**62, -(2**62), 2**63 - 1, -(2**63)])
def test_an_array_count_past_the_end_is_a_decode_error_at_once(count: int) -> None:
    value = a_saga_begun()
    at = value.index(b"\x02n\x00") + 2
    forged = value[:at] + zigzag(count) + (zigzag(0) if count < 0 else b"") + value[at + 1 :]
    result = decoded(decode_progress, forged)
    assert isinstance(result, DecodeError)
    assert f"array block count {abs(count)} at byte {at} is larger than" in str(result)


def test_a_negative_array_block_size_is_a_decode_error() -> None:
    value = a_saga_begun()
    at = value.index(b"\x02n\x00") + 2
    forged = value[:at] + zigzag(-1) + zigzag(-2) + value[at + 1 :]
    with pytest.raises(DecodeError, match=r"array block size -2 .* is negative"):
        decode_progress(forged)


def test_a_string_length_past_the_end_is_a_decode_error_saying_so() -> None:
    value = a_watermark()
    with pytest.raises(DecodeError, match=f"string of {2**62} bytes at byte 10 runs past"):
        decode_watermark(value[:10] + zigzag(2**62) + value[11:])
    with pytest.raises(DecodeError, match="string length -1 at byte 10 is negative"):
        decode_watermark(value[:10] + zigzag(-1) + value[11:])


# ------------------------------------------------------------------ big inputs: linear time


def test_a_megabyte_clock_cut_at_its_last_byte_is_a_decode_error_in_bounded_time() -> None:
    clock = VectorClock({(f"r{i:06d}", 0): 2**40 for i in range(70_000)})
    data = clock.encode()
    assert len(data) > 10**6
    assert decoded(VectorClock.decode, data) == clock
    assert isinstance(decoded(VectorClock.decode, data[:-1]), DecodeError)


def test_an_avro_array_of_half_a_million_items_cut_short_is_a_decode_error_in_bounded_time() -> (
    None
):
    # a state-log answer removing 500,000 fields, its last byte cut
    op = raw_record("OP", op=raw_op(removed=[""] * 500_000))
    assert isinstance(decoded(decode_state_record, op[:-1]), DecodeError)
    assert len(decoded(decode_state_record, op)[1].removed) == 500_000


# ------------------------------------------------------------------ JSON inside records

DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize("field", ["value_json", "increment_json"])
def test_deeply_nested_json_in_a_state_record_is_a_decode_error_not_a_recursion_error(
    field: str,
) -> None:
    with pytest.raises(DecodeError, match=f"{field} nests too deeply"):
        decode_state_record(raw_record("REQUEST", request=raw_request(**{field: DEEP})))


@pytest.mark.parametrize("text", ["1e400", "-1e400", "[1e999]"])
def test_a_number_out_of_a_doubles_range_in_a_state_record_is_a_decode_error(
    text: str,
) -> None:
    # (the encoder refuses infinities: json.loads alone read 1e400 as one)
    field = "increment_json" if text[0] != "[" else "value_json"
    with pytest.raises(DecodeError, match="out of a double's range"):
        decode_state_record(raw_record("REQUEST", request=raw_request(**{field: text})))


@pytest.mark.parametrize(
    "text, says",
    [
        (DEEP, "nests too deeply"),
        ("NaN", "not a JSON number"),
        ("1e400", "out of a double's range"),
    ],
)
def test_json_the_saga_runner_cannot_write_in_a_step_result_is_a_decode_error(
    text: str, says: str
) -> None:
    value = encode_progress(ProgressEntry(StepCompleted("s", 0, None), 1, "w"))
    assert value.count(b"\x08null") == 1  # the result_json "null"
    forged = value.replace(b"\x08null", zigzag(len(text)) + text.encode())
    with pytest.raises(DecodeError, match=f"result_json is not valid JSON .*{says}"):
        decode_progress(forged)


# ------------------------------------------------------------------ headers


def test_an_edgebus_header_without_a_value_is_a_decode_error_and_another_one_is_none() -> None:
    for name in (H_SCHEMA, H_HLC, H_DEPS, H_ORIGIN_POS, H_PLACEMENT, H_ORIGIN):
        with pytest.raises(DecodeError, match=f"Bad {name} header: it has no value"):
            decode_headers([(name, None)])
    assert decode_headers([("x-app", None)]) == {"x-app": None}


def test_a_bad_clock_or_hlc_header_is_a_decode_error_naming_the_header() -> None:
    with pytest.raises(DecodeError, match="Bad eb-deps header: Cannot decode vector clock"):
        decode_headers([(H_DEPS, b"\x01\x05")])
    with pytest.raises(DecodeError, match="Bad eb-hlc header: Cannot decode HLC timestamp"):
        decode_headers([(H_HLC, b"\x00")])


@pytest.mark.parametrize("raw", [None, 42, "eu:0:1"])
def test_an_origin_position_that_is_not_bytes_is_a_decode_error(raw: Any) -> None:
    with pytest.raises(DecodeError, match="Bad eb-origin-pos header"):
        parse_position(raw)


@pytest.mark.parametrize("raw", [b"eu:+1:5", b"eu: 1:5", b"eu:1_0:5", b"eu:1:5 ", b"eu:1:-0"])
def test_an_origin_position_with_signs_spaces_or_underscores_is_a_decode_error(
    raw: bytes,
) -> None:
    # (int() took each of them)
    with pytest.raises(DecodeError, match="must be decimal digits"):
        parse_position(raw)


# ------------------------------------------------------------------ clocks and tokens


def test_a_clock_with_a_region_count_of_2_to_the_62_is_a_decode_error_at_once() -> None:
    result = decoded(VectorClock.decode, b"\x01" + leb128(2**62) + b"\x02eu\x01\x00\x07")
    assert isinstance(result, DecodeError) and "truncated" in str(result)


def test_a_long_region_name_on_the_wire_is_not_remembered() -> None:
    # (every distinct name was kept, up to 1,024 of them: as many hostile names of up to
    # a record's size each)
    name = "r" * 300
    VectorClock.decode(VectorClock({(name, 0): 1}).encode())
    assert name.encode() not in clock_codec._NAMES
    VectorClock.decode(VectorClock({("eu-west-1", 0): 1}).encode())
    assert b"eu-west-1" in clock_codec._NAMES


def test_an_hlc_in_a_memoryview_of_wider_items_is_a_decode_error_not_a_misread() -> None:
    # (eight 4-byte items passed the length check and were read as 32 bytes)
    with pytest.raises(DecodeError, match="expected exactly 8 bytes, got 32"):
        HLCTimestamp.decode(memoryview(array("I", range(8))))


def test_an_invalid_session_token_is_a_decode_error_and_invalid_input() -> None:
    with pytest.raises(InvalidSessionToken) as raised:
        SessionToken.decode("eb1.AQ" + "A" * 10)
    assert isinstance(raised.value, DecodeError) and isinstance(raised.value, InvalidInput)


# ------------------------------------------------------------------ announcements

GOOD: dict[str, Any] = {
    "region": "eu-west-1",
    "url": "http://10.0.0.7:8700",
    "pid": 4242,
    "host": "node-7",
    "store": "sqlite:///eu.db",
    "started_ms": 1_764_000_000_123,
}


def test_an_announcement_round_trips_and_ignores_fields_it_does_not_know() -> None:
    announced = Announcement(**GOOD)
    assert decode_announcement(encode_announcement(announced)) == announced
    assert decode_announcement(orjson.dumps({**GOOD, "zone": "a"})) == announced


@pytest.mark.parametrize(
    "value, says",
    [
        (b"", "has no value"),
        (None, "has no value"),
        (b"\xff" * 10, "is not JSON"),
        (b"[" * 5000, "is not JSON"),
        (b'["eu-west-1"]', "is a JSON list, not an object"),
        (orjson.dumps({**GOOD, "url": "ftp://x"}), "not an http:// or https:// URL"),
        (orjson.dumps({**GOOD, "url": "javascript:alert(1)"}), "not an http:// or https://"),
        (orjson.dumps({**GOOD, "url": "http://"}), "not an http:// or https:// URL"),
        (orjson.dumps({**GOOD, "url": "http://h:99999"}), "is not a URL"),
        (orjson.dumps({**GOOD, "url": "http://h:0"}), "not an http:// or https:// URL"),
        (orjson.dumps({**GOOD, "url": "http://h/\nSet-Cookie: x"}), "holds characters"),
        (orjson.dumps({**GOOD, "url": "http://h/" + "a" * 3000}), "over 2048 characters"),
        (orjson.dumps({**GOOD, "url": 8700}), "url must be a string, got int 8700"),
        (orjson.dumps({**GOOD, "pid": True}), "pid must be an integer"),
        (orjson.dumps({**GOOD, "pid": -1}), "pid must be an integer"),
        (orjson.dumps({**GOOD, "started_ms": 1.5}), "started_ms must be an integer"),
        (orjson.dumps({**GOOD, "region": ""}), "region must have 1 to 249 characters"),
        (
            orjson.dumps({k: v for k, v in GOOD.items() if k != "host"}),
            "host must be a string, got nothing",
        ),
        (orjson.dumps({**GOOD, "store": "x" * (MAX_ANNOUNCEMENT_BYTES + 1)}), "over the 65536"),
    ],
)
def test_a_bad_announcement_is_a_decode_error_saying_what_is_wrong(
    value: bytes | None, says: str
) -> None:
    result = decoded(decode_announcement, value)
    assert isinstance(result, DecodeError) and says in str(result)


def test_an_announcement_decoding_would_refuse_is_refused_at_encoding() -> None:
    with pytest.raises(InvalidInput, match="--advertise"):
        encode_announcement(Announcement(**{**GOOD, "url": "10.0.0.7:8700"}))
