"""Where edgebus finds its Avro schemas: the wheel's copy first, else the checkout's."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgebus.errors import DecodeError
from edgebus.wire.schema_registry import schemas_dir


def _schemas(directory: Path) -> Path:
    directory.mkdir(parents=True)
    (directory / "event.v2.avsc").write_text("{}")
    return directory


def test_an_installed_package_uses_its_own_copy_not_a_schemas_folder_beside_it(
    tmp_path: Path,
) -> None:
    site = tmp_path / "site-packages"
    _schemas(site / "schemas")  # another package's top-level schemas/
    own = _schemas(site / "edgebus" / "_schemas")
    assert schemas_dir(site / "edgebus") == own


def test_a_source_checkout_uses_the_schemas_folder_of_the_repository(tmp_path: Path) -> None:
    checkout = _schemas(tmp_path / "schemas")
    (tmp_path / "edgebus").mkdir()
    assert schemas_dir(tmp_path / "edgebus") == checkout


def test_no_schemas_anywhere_says_to_reinstall(tmp_path: Path) -> None:
    (tmp_path / "edgebus").mkdir()
    with pytest.raises(DecodeError, match="reinstall edgebus"):
        schemas_dir(tmp_path / "edgebus")
