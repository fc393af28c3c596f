"""`edgebus replay --to jsonl:` exports a region; `edgebus import` writes it back."""

from __future__ import annotations

from pathlib import Path

from edgebus.kafka.reading import end_offsets
from edgebus.kafka.topics import events_topic
from edgebus.sdk import EdgeBus
from edgebus.server.service import RegionService
from tests.integration.regions import eventually, make_regions
from tests.kafka_settings import KAFKA


async def test_exported_region_imports_into_another_region_with_the_same_values(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    source = make_regions(kafka_bootstrap, tmp_path / "a")
    async with EdgeBus(source.config) as bus:
        await bus.write("plan:1", {"tier": "gold"}, region=source.eu)
        await bus.write("count", 4, region=source.eu, operation="increment")
        await bus.write("count", 1, region=source.eu, operation="increment")
        await bus.write("gone", 1, region=source.eu)
        await bus.write("gone", None, region=source.eu, operation="delete")
    export = tmp_path / "export.jsonl"
    code, out, _ = source.cli("replay", "--region", source.eu, "--to", f"jsonl://{export}")
    assert code == 0, out
    assert out["events"] == 5

    target = make_regions(kafka_bootstrap, tmp_path / "b")
    code, out, _ = target.cli("import", "--from", f"jsonl://{export}", "--region", target.us)
    assert code == 0, out
    assert (out["written"], out["skipped_deleted"], out["refused"]) == (2, 1, 0)
    async with (
        RegionService(target.us, target.config, store=target.store_url(target.us)),
        EdgeBus(target.config) as bus,
    ):
        async def imported() -> bool:
            return (await bus.read("count", target.us)).exists

        await eventually(imported, 30, "imported keys applied")
        assert (await bus.read("plan:1", target.us)).value == {"tier": "gold"}
        assert (await bus.read("count", target.us)).value == 5
        assert not (await bus.read("gone", target.us)).exists


async def test_import_refusing_one_key_writes_nothing(kafka_bootstrap: str, tmp_path: Path) -> None:
    source = make_regions(kafka_bootstrap, tmp_path / "a")
    async with EdgeBus(source.config) as bus:
        await bus.write("public", {"v": 1}, region=source.eu)
        await bus.write("person", {"email": "ann@example.com"}, region=source.eu)
    export = tmp_path / "export.jsonl"
    assert source.cli("replay", "--region", source.eu, "--to", f"jsonl://{export}")[0] == 0
    target = make_regions(kafka_bootstrap, tmp_path / "b")
    code, out, _ = target.cli("import", "--from", f"jsonl://{export}", "--region", target.ap)
    assert code == 2
    assert out["written"] == 0 and out["refused"] == 1
    assert "person" in out["problems"][0] and "Compliance violation" in out["problems"][0]
    ends = await end_offsets(KAFKA, kafka_bootstrap, [events_topic(r) for r in target.names])
    assert sum(ends.values()) == 0
