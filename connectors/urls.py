"""Stores and sources chosen by URL (faust's ``stores.by_url``, STYLE.md 7).

Accepted forms (the path is taken literally: no percent-decoding):

- ``sqlite:///absolute/path.db`` and ``sqlite:relative/path.db`` (relative to the
  current directory when the URL is resolved); ``?synchronous=FULL`` asks SQLite to
  survive power loss too (the default ``NORMAL`` survives process crashes);
- ``jsonl:///absolute/path.jsonl`` and ``jsonl:relative/path.jsonl``.

A host part (``sqlite://host/path``), an empty path, an unknown scheme or an unknown
query parameter raise :class:`StoreURLError` (a :class:`~edgebus.errors.StoreError`
with ``exit_code`` 2) that lists the accepted forms.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final, NamedTuple
from urllib.parse import parse_qsl

from connectors.base import Store
from connectors.jsonl import JsonlStore, read_jsonl_states
from connectors.sqlite import SYNCHRONOUS_MODES, SQLiteStore, read_sqlite_states
from edgebus.core.conflict import KeyState
from edgebus.errors import StoreError

__all__ = [
    "ACCEPTED_FORMS",
    "StoreURL",
    "StoreURLError",
    "by_url",
    "parse_url",
    "path_of",
    "source_by_url",
]

#: what a store URL may look like, quoted by every URL error
ACCEPTED_FORMS: Final = (
    "sqlite:///absolute/path.db",
    "sqlite:relative/path.db",
    "sqlite:///absolute/path.db?synchronous=FULL",
    "jsonl:///absolute/path.jsonl",
    "jsonl:relative/path.jsonl",
)

_SCHEMES: Final = ("sqlite", "jsonl")


class StoreURLError(StoreError):
    """A store URL edgebus cannot use; the message lists the accepted forms."""

    exit_code = 2

    def __init__(self, url: str, problem: str) -> None:
        self.url = url
        super().__init__(
            f"Store URL {url!r} {problem}. Use one of: {', '.join(ACCEPTED_FORMS)}."
        )


class StoreURL(NamedTuple):
    """A parsed store URL."""

    scheme: str  #: ``sqlite`` or ``jsonl``
    path: Path  #: absolute path of the store's file
    synchronous: str  #: SQLite ``synchronous`` pragma (``NORMAL`` unless asked)


def parse_url(url: str) -> StoreURL:
    """Split a store URL into scheme, absolute path and options; raises
    :class:`StoreURLError` if it is not one of :data:`ACCEPTED_FORMS`."""
    scheme, colon, rest = url.partition(":")
    if not colon or scheme not in _SCHEMES:
        what = f"has the unknown scheme {scheme!r}" if colon else "has no scheme"
        raise StoreURLError(url, what)
    rest, question, query = rest.partition("?")
    if rest.startswith("//"):
        host, slash, tail = rest[2:].partition("/")
        if host:
            raise StoreURLError(
                url,
                f"names the host {host!r}, but stores are local files: write three "
                f"slashes for an absolute path ({scheme}:///{host}/{tail}) or none for a "
                f"relative one ({scheme}:{host}/{tail})",
            )
        rest = slash + tail
    if not rest.strip("/"):
        raise StoreURLError(url, "has no file path")
    synchronous = "NORMAL"
    if question:
        try:
            params = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
        except ValueError:
            raise StoreURLError(url, f"has a malformed query {query!r}") from None
        for name, value in params:
            if scheme == "sqlite" and name == "synchronous":
                if value.upper() not in SYNCHRONOUS_MODES:
                    raise StoreURLError(
                        url,
                        f"asks for synchronous={value!r}; "
                        f"choose one of {', '.join(SYNCHRONOUS_MODES)}",
                    )
                synchronous = value.upper()
            else:
                raise StoreURLError(url, f"has the unknown parameter {name!r}")
    return StoreURL(scheme, Path(os.path.abspath(rest)), synchronous)


def path_of(url: str) -> Path:
    """The absolute path of the file a store URL names."""
    return parse_url(url).path


def by_url(url: str) -> Store:
    """An unopened store for a URL: use it as ``async with by_url(url) as store:``."""
    parsed = parse_url(url)
    if parsed.scheme == "sqlite":
        return SQLiteStore(parsed.path, synchronous=parsed.synchronous)
    return JsonlStore(parsed.path)


def source_by_url(url: str) -> AsyncIterator[KeyState]:
    """The final key states of an existing store, in key order, retained ops loaded.

    Reads without changing the store (a JSON Lines file being written to is read up to
    its last commit marker). Raises :class:`~edgebus.errors.StoreError` right away when
    the URL is bad or its file does not exist.
    """
    parsed = parse_url(url)
    if not parsed.path.is_file():
        raise StoreError(
            f"Store {url!r} cannot be read: {parsed.path} does not exist. "
            "Check the path, or export a store there first."
        )
    if parsed.scheme == "sqlite":
        return read_sqlite_states(parsed.path)
    return read_jsonl_states(parsed.path)
