"""The optional C module (edgebus._speedups) gives exactly the pure-Python results."""

from __future__ import annotations

import os
import shlex
import shutil
import sysconfig
import uuid
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors import sqlite as sqlite_store
from edgebus.core.conflict import KeyState, Stamp
from edgebus.core.envelope import EventEnvelope, Operation
from edgebus.core.hlc import HLCTimestamp
from edgebus.core.vector_clock import VectorClock
from edgebus.wire import event_codec
from edgebus.wire.event_codec import (
    EncodedEvent,
    encode_payload,
    route_encoding,
)
from tests.property.test_wire_properties import events, fastavro_bytes

try:
    from edgebus import _speedups
except ImportError:
    _speedups = None  # type: ignore[assignment]


def _built_here() -> bool:
    """Whether installing edgebus here compiled the module (a C compiler exists and
    EDGEBUS_NO_SPEEDUPS is unset). setup.py's build uses the compiler setuptools picks:
    ``$CC`` if set, else the one Python was built with."""
    cc = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")
    return not os.environ.get("EDGEBUS_NO_SPEEDUPS") and shutil.which(cc[0]) is not None


@pytest.fixture
def native() -> Any:
    """The C module. Missing: a failure under CI=true or where it should have been
    built; a skip only on a machine without a C compiler (or EDGEBUS_NO_SPEEDUPS)."""
    if _speedups is None:
        if os.environ.get("CI") == "true" or _built_here():
            pytest.fail("edgebus._speedups is not built: reinstall (`pip install -e .`) "
                        "and read what setup.py said on stderr (`pip install -v`)")
        pytest.skip("no C compiler here (or EDGEBUS_NO_SPEEDUPS): pure Python is used")
    return _speedups


def test_the_c_module_is_used_when_it_is_built(native: Any) -> None:
    expected = None if os.environ.get("EDGEBUS_NO_SPEEDUPS") else native
    assert event_codec._native is expected


@settings(max_examples=300)
@given(events())
def test_pure_python_encoding_writes_fastavros_bytes(event: EventEnvelope) -> None:
    payload_json = encode_payload(event.payload)
    encoding = route_encoding(
        event.origin_region, event.placement, event.classification, event.writer
    )
    encoded = encoding.encode_python(event.event_id, event.key, event.operation, payload_json,
                                     event.hlc, event.dependencies)
    assert encoded.value == fastavro_bytes(event)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(event=events())
def test_native_encoding_equals_the_pure_python_encoding(
    native: Any, event: EventEnvelope
) -> None:
    encoding = route_encoding(
        event.origin_region, event.placement, event.classification, event.writer
    )
    args = (event.event_id, event.key, event.operation, encode_payload(event.payload),
            event.hlc, event.dependencies)
    fast = encoding.encode(*args)
    slow = encoding.encode_python(*args)
    assert type(fast) is EncodedEvent
    assert fast == slow


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(min_size=16, max_size=16 * 20).filter(lambda b: len(b) % 16 == 0))
def test_native_uuid4_texts_are_the_uuid4s_of_the_random_bytes(native: Any, raw: bytes) -> None:
    texts = native.uuid4_texts(raw)
    assert len(texts) == len(raw) // 16
    for k, text in enumerate(texts):
        chunk = bytearray(raw[16 * k : 16 * (k + 1)])
        chunk[6] = (chunk[6] & 0x0F) | 0x40
        chunk[8] = (chunk[8] & 0x3F) | 0x80
        expected = uuid.UUID(bytes=bytes(chunk))
        assert text == str(expected)
        assert expected.version == 4 and expected.variant == uuid.RFC_4122


def test_native_uuid4_texts_refuses_a_partial_id(native: Any) -> None:
    with pytest.raises(ValueError, match="multiple of 16"):
        native.uuid4_texts(b"\x00" * 17)


def test_native_encoding_refuses_bad_arguments_without_crashing(native: Any) -> None:
    encoding = route_encoding("us-east-1", ("us-east-1",), ("public",), None)
    good = ("e" * 36, "k", Operation.SET, b"{}", HLCTimestamp(1, 0), VectorClock.empty())
    with pytest.raises(TypeError):
        native.encode_event(EncodedEvent, (), (), b"", *good[:2])
    with pytest.raises(TypeError):  # a payload that is not bytes
        encoding.encode(good[0], good[1], good[2], "{}", good[4], good[5])  # type: ignore[arg-type]
    with pytest.raises(TypeError):  # not a tuple type to build
        native.encode_event(
            dict, ("a", "b", "c", "d"), (), b"", "id", "k", b"\x00", b"set", None, b"", 1, 0,
            b"\x00", b"\x01\x00", b"\x00",
        )
    with pytest.raises(ValueError, match="HLC out of range"):
        native.encode_event(
            EncodedEvent, ("a", "b", "c", "d"), (), b"", "id", "k", b"\x00", b"set", None, b"",
            1 << 48, 0, b"\x00", b"\x01\x00", b"\x00",
        )


json_leaves = (st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
               | st.text(max_size=5) | st.floats(allow_nan=False, allow_infinity=False))
stamps = st.builds(Stamp, st.integers(0, 2**63 - 1), st.sampled_from(["eu", "us"]),
                   st.uuids().map(str))


@st.composite
def key_states(draw: st.DrawFn) -> KeyState:
    n_ops = draw(st.integers(0, 3))
    return KeyState(
        draw(st.text(min_size=1, max_size=8)), draw(st.booleans()),
        draw(st.recursive(json_leaves, lambda inner: st.lists(inner, max_size=3)
                          | st.dictionaries(st.text(max_size=3), inner, max_size=3),
                          max_leaves=5)),
        draw(st.none() | stamps), draw(stamps), draw(st.integers(1, 10**6)), n_ops,
        draw(st.booleans()), None if n_ops else (), draw(st.booleans()),
        draw(json_leaves),
    )


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(key_states(), max_size=5))
def test_native_state_rows_are_the_sqlite_stores_rows(
    native: Any, states: list[KeyState]
) -> None:
    expected = None if os.environ.get("EDGEBUS_NO_SPEEDUPS") else native.state_rows
    assert sqlite_store._native_rows is expected  # built: used (a missing build fails above)
    assert sqlite_store._state_rows(states) == [
        sqlite_store.SQLiteStore._state_row(s) for s in states
    ]


def test_native_state_rows_raise_what_json_cannot_hold(native: Any) -> None:
    state = KeyState("k", True, 2**64, None, Stamp(1, "eu", "e"), 1)
    with pytest.raises(orjson.JSONEncodeError):
        sqlite_store._state_rows([state])
    with pytest.raises(orjson.JSONEncodeError):
        sqlite_store.SQLiteStore._state_row(state)
