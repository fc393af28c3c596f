"""``kafka down --wipe`` removes the region stores kept in the state directory and says
exactly what it removed and kept (no broker: nothing is recorded, files only)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edgebus.localkafka import launcher
from edgebus.localkafka.region_files import is_region_store_file
from edgebus.server.service import default_store_url
from edgebus.state.host import default_state_db
from tests.conftest import run_cli


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def _default_files(state: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The files region services make under ``state`` by default, with SQLite's side
    files: named by the services' own functions, so a renamed default fails here."""
    monkeypatch.setenv("EDGEBUS_STATE_DIR", str(state))
    files = []
    for region in ("us-east-1", "eu-west-1"):
        store = Path(default_store_url(region).removeprefix("sqlite://"))
        states = default_state_db(region)
        assert store.is_relative_to(state) and states.is_relative_to(state)
        files += [_touch(store), _touch(Path(f"{store}-wal")), _touch(Path(f"{store}-shm")),
                  _touch(states), _touch(Path(f"{states}-journal"))]
    return files


def test_region_store_names_are_recognised_and_nothing_else() -> None:
    for name in ("store.db", "store.db-wal", "store.db-shm", "states-eu-west-1.db",
                 "states-eu-west-1.db-wal", "store.db-journal"):
        assert is_region_store_file(name), name
    for name in ("store.db.bak", "notes.txt", "mystore.db", "states.db", "store.db-old"):
        assert not is_region_store_file(name), name


def test_wipe_removes_the_default_region_stores_and_reports_what_it_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "state"
    files = _default_files(state, monkeypatch)
    _touch(state / "kafka" / "cluster-0" / "data" / "meta.properties")
    custom = _touch(state / "regions" / "us-east-1" / "custom.db")
    notes = _touch(state / "notes.txt")
    outside = _touch(tmp_path / "elsewhere" / "store.db")
    os.symlink(outside.parent, state / "regions" / "linked")

    result = launcher.down(wipe=True, state=state)

    assert not any(f.exists() for f in files)
    assert not (state / "kafka").exists()
    assert custom.exists() and notes.exists() and outside.exists()
    assert (state / "regions" / "linked").is_symlink()
    relative = sorted(str(f.relative_to(state)) for f in files)
    assert sorted(result.removed) == sorted(["kafka", *relative])
    assert set(result.kept) == {
        "kafka.lock", "notes.txt", "regions/linked", "regions/us-east-1/custom.db",
    }
    assert not (state / "regions" / "eu-west-1").exists()  # emptied, so removed


def test_the_cli_says_what_the_wipe_removed_and_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "state"
    files = _default_files(state, monkeypatch)
    env = {**os.environ, "EDGEBUS_STATE_DIR": str(state)}
    env.pop("EDGEBUS_CONFIG", None)
    code, doc, out, err = run_cli(["kafka", "down", "--wipe", "--json"], env)
    assert code == 0, out + err
    assert doc["wiped"] is True and doc["had_state"] is False
    assert len(doc["removed"]) == len(files) and doc["kept"] == ["kafka.lock"]
    assert not any(f.exists() for f in files)

    _default_files(state, monkeypatch)
    _touch(state / "regions" / "us-east-1" / "custom.db")
    code, _, out, err = run_cli(["kafka", "down", "--wipe"], env)
    assert code == 0, out + err
    text = " ".join(out.split())
    assert f"Removed from {state}: 10 region store file(s) under regions/." in text
    assert ("Kept there: kafka.lock (the launcher's lock file), "
            "regions/us-east-1/custom.db.") in text
    assert "Data and state removed" not in text
