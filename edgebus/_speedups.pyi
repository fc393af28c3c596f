from typing import Any

def uuid4_texts(random: bytes, /) -> list[str]: ...
def encode_event(
    cls: type[Any],
    names: tuple[str, str, str, str],
    route_headers: tuple[tuple[str, bytes], ...],
    prefix: bytes,
    event_id: str,
    key: str,
    op_byte: bytes,
    op_header: bytes,
    payload: bytes | None,
    chunk: bytes,
    wall_ms: int,
    logical: int,
    deps_avro: bytes,
    deps_header: bytes,
    tail: bytes,
    /,
) -> Any: ...
def read_event(
    value: bytes, prefix: bytes, ops: tuple[Any, ...], event_cls: type[Any],
    hlc_cls: type[Any], loads: Any, /,
) -> Any: ...
def apply_run(
    records: list[Any], start: int, fixed: tuple[Any, ...], batch: tuple[Any, ...], /,
) -> tuple[int, int, int, tuple[str, int] | None]: ...
def interleave(records: list[Any], /) -> list[Any]: ...
def state_rows(states: Any, slots: tuple[Any, ...], dumps: Any, /) -> list[tuple[Any, ...]]: ...
