"""The region services' files under the state directory, as ``kafka down --wipe``
removes them.

A region service run without ``--store`` folds its events into
``<state dir>/regions/<R>/store.db`` (``edgebus.server.service.default_store_url``),
and its state host keeps ``states-<R>.db`` beside its store
(``edgebus.state.host.default_state_db``); SQLite adds ``-wal``, ``-shm`` and
``-journal`` files. Those stores hold positions in the topics: once the brokers' data
is wiped they describe topics that no longer exist, and a region service started on
them would serve their old values. So the wipe removes them too.

Only regular files with those names directly under ``regions/<R>/`` are removed (a
symbolic link is not followed, nor removed), then the directories left empty; anything
else stays and is reported. Stores elsewhere (``--store URL``) are never touched.
"""

from __future__ import annotations

import contextlib
import fnmatch
from pathlib import Path
from typing import NamedTuple

__all__ = ["REGIONS_DIR", "Wiped", "is_region_store_file", "leftovers", "wipe_region_files"]

#: the directory of the region services' default files, in the state directory
REGIONS_DIR = "regions"

_STORES = ("store.db", "states-*.db")
_SQLITE_SUFFIXES = ("-wal", "-shm", "-journal")


class Wiped(NamedTuple):
    """What :func:`wipe_region_files` removed and kept (paths relative to the state
    directory, sorted)."""

    removed: tuple[str, ...]
    kept: tuple[str, ...]


def is_region_store_file(name: str) -> bool:
    """Whether ``name`` is a region store or a state host's database (or one of their
    SQLite side files), as region services name them by default."""
    for suffix in _SQLITE_SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in _STORES)


def wipe_region_files(directory: Path) -> Wiped:
    """Remove the region stores and state host databases under ``directory/regions``
    (see the module's docstring); report what was removed and what was kept there."""
    root = directory / REGIONS_DIR
    removed: list[Path] = []
    kept: list[Path] = []
    if root.is_symlink() or (root.exists() and not root.is_dir()):
        kept.append(root)
    elif root.is_dir():
        for region in sorted(root.iterdir()):
            if region.is_symlink() or not region.is_dir():
                kept.append(region)
                continue
            for path in sorted(region.iterdir()):
                regular = path.is_file() and not path.is_symlink()
                if regular and is_region_store_file(path.name):
                    path.unlink(missing_ok=True)
                    removed.append(path)
                else:
                    kept.append(path)
            with contextlib.suppress(OSError):
                region.rmdir()  # only when empty
        with contextlib.suppress(OSError):
            root.rmdir()
    return Wiped(_relative(directory, removed), _relative(directory, kept))


def leftovers(directory: Path, besides: Wiped) -> tuple[str, ...]:
    """Everything still in ``directory`` after a wipe: its entries other than
    ``regions/`` (whose kept files ``besides`` lists), then those files."""
    entries = (
        [p for p in directory.iterdir() if p.name != REGIONS_DIR]
        if directory.is_dir() else []
    )
    return tuple(sorted(_relative(directory, entries))) + besides.kept


def _relative(directory: Path, paths: list[Path]) -> tuple[str, ...]:
    """``paths`` as strings relative to ``directory``."""
    return tuple(str(p.relative_to(directory)) for p in paths)
