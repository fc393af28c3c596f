"""edge_config validation: defaults, files, and refusal of what would silently misbehave."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgebus.config import EdgeConfig, load_config
from edgebus.errors import ConfigError


def test_zero_config_has_three_regions_spec_zones_and_strict_mode() -> None:
    cfg = load_config(None)
    assert cfg.regions == ("us-east-1", "eu-west-1", "ap-south-1")
    assert cfg.compliance.strict_mode is True
    assert cfg.compliance.zones["gdpr"] == ("eu-west-1", "eu-central-1")
    assert cfg.compliance.data_classifications["pii"] == ("gdpr",)
    assert cfg.compliance.default_classification == "public"


def test_spec_quick_start_config_is_accepted() -> None:
    cfg = EdgeConfig.from_mapping(
        {
            "discovery": {"locations": ["us-east-1", "eu-west-1", "ap-south-1"],
                          "refresh_interval": 300},
            "compliance": {"strict_mode": True, "default_classification": "pii"},
        }
    )
    assert cfg.compliance.default_classification == "pii"


def test_unknown_key_is_refused_naming_the_nearest_valid_key() -> None:
    with pytest.raises(ConfigError, match=r"'compliance.strickt_mode'.*'compliance.strict_mode'"):
        EdgeConfig.from_mapping({"compliance": {"strickt_mode": False}})


def test_unknown_top_level_key_is_refused() -> None:
    with pytest.raises(ConfigError, match="did you mean 'discovery'"):
        EdgeConfig.from_mapping({"discovry": {}})


def test_classification_requiring_an_undefined_zone_is_refused() -> None:
    with pytest.raises(ConfigError, match="ccpa"):
        EdgeConfig.from_mapping({"compliance": {"data_classifications": {"pii": ["ccpa"]}}})


def test_default_classification_must_be_known() -> None:
    with pytest.raises(ConfigError, match="default_classification"):
        EdgeConfig.from_mapping({"compliance": {"default_classification": "secret"}})


def test_region_names_that_cannot_be_topic_names_are_refused() -> None:
    with pytest.raises(ConfigError, match="letters, digits"):
        EdgeConfig.from_mapping({"discovery": {"locations": ["us east"]}})


def test_wrong_type_names_the_field() -> None:
    with pytest.raises(ConfigError, match=r"compliance\.strict_mode"):
        EdgeConfig.from_mapping({"compliance": {"strict_mode": "maybe"}})


def test_json_and_toml_files_load_with_or_without_an_edge_config_wrapper(tmp_path: Path) -> None:
    j = tmp_path / "edge.json"
    j.write_text(json.dumps({"edge_config": {"discovery": {"locations": ["eu-west-1"]}}}))
    t = tmp_path / "edge.toml"
    t.write_text('[discovery]\nlocations = ["us-east-1"]\n[compliance]\nstrict_mode = false\n')
    assert load_config(j).regions == ("eu-west-1",)
    cfg = load_config(t)
    assert cfg.regions == ("us-east-1",)
    assert cfg.compliance.strict_mode is False


def test_env_var_names_the_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    j = tmp_path / "edge.json"
    j.write_text(json.dumps({"discovery": {"locations": ["ap-south-1"]}}))
    monkeypatch.setenv("EDGEBUS_CONFIG", str(j))
    assert load_config(None).regions == ("ap-south-1",)


def test_missing_or_malformed_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="Cannot read config file"):
        load_config(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid"):
        load_config(bad)


def test_a_config_nested_deeper_than_64_levels_is_refused_without_recursion(
    tmp_path: Path,
) -> None:
    deep = 100_000
    cases = {
        "deep.json": '{"discovery": ' + "[" * deep + "]" * deep + "}",
        "deep-objects.json": '{"a": ' * deep + "1" + "}" * deep,
        "just-past.json": '{"discovery": ' + "[" * 64 + "]" * 64 + "}",
        "deep.toml": "a = " + "[" * deep + "]" * deep + "\n",
        "dotted.toml": ".".join(["a"] * 5_000) + " = 1\n",
    }
    for name, text in cases.items():
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        with pytest.raises(ConfigError, match="nested deeper than 64 levels"):
            load_config(path)
    # 64 levels are fine as far as nesting goes (the key is refused for what it is)
    fine = tmp_path / "fine.json"
    fine.write_text('{"discovery": ' + "[" * 63 + "]" * 63 + "}", encoding="utf-8")
    with pytest.raises(ConfigError, match="discovery") as refused:
        load_config(fine)
    assert "nested deeper" not in str(refused.value)


def test_a_mapping_nested_too_deep_or_cyclic_is_refused() -> None:
    cyclic: dict[str, object] = {}
    cyclic["discovery"] = cyclic
    with pytest.raises(ConfigError, match="nested deeper than 64 levels"):
        EdgeConfig.from_mapping(cyclic)
    nested: object = []
    for _ in range(1_000):
        nested = [nested]
    with pytest.raises(ConfigError, match="nested deeper than 64 levels"):
        EdgeConfig.from_mapping({"discovery": {"locations": nested}})
    with pytest.raises(ConfigError, match="must be a mapping"):
        EdgeConfig.from_mapping({"edge_config": 5})
    with pytest.raises(ConfigError, match="must be a mapping"):
        EdgeConfig.from_mapping([1, 2])  # type: ignore[arg-type]


def test_config_files_too_large_not_utf8_or_with_huge_numbers_are_refused(
    tmp_path: Path,
) -> None:
    big = tmp_path / "big.json"
    with big.open("wb") as f:
        f.write(b'{"debug": false' + b" " * (16 * 1024 * 1024) + b"}")
    with pytest.raises(ConfigError, match="larger than 16 MiB"):
        load_config(big)
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(binary)
    huge = tmp_path / "huge.json"
    huge.write_text('{"kafka": {"partitions": ' + "9" * 10_000 + "}}", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(huge)
    with pytest.raises(ConfigError, match="Cannot read config file"):
        load_config(tmp_path)  # a directory
