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
