"""How deep an event's JSON payload may nest: 250 levels.

A store writes a key's value back as JSON, and its encoder stops at 255 levels; a
fold nests a payload one level deeper (an append puts it in a list, a merge in an
object). A payload deeper than 250 levels would decode, fold, and then fail the
store's commit of its whole batch; so writers refuse it and readers take it for a
corrupt event (a dead letter), whoever wrote it.
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["MAX_PAYLOAD_DEPTH", "too_deep"]

MAX_PAYLOAD_DEPTH = 250
#: the fewest bytes of JSON that nest deeper than MAX_PAYLOAD_DEPTH: "[" * 251 + "]" * 251
_SHORTEST_TOO_DEEP = 2 * (MAX_PAYLOAD_DEPTH + 1)


def too_deep(payload: Any, size: int) -> bool:
    """Whether ``payload`` (parsed from ``size`` bytes of JSON) nests deeper than
    :data:`MAX_PAYLOAD_DEPTH`; free below 502 bytes, one encode above."""
    if size < _SHORTEST_TOO_DEEP or not isinstance(payload, list | dict):
        return False
    wrapped: Any = payload
    for _ in range(254 - MAX_PAYLOAD_DEPTH):  # orjson encodes at most 254 levels
        wrapped = [wrapped]
    try:
        orjson.dumps(wrapped)
    except orjson.JSONEncodeError:
        return True
    return False
