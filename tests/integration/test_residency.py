"""Data residency end to end: after a mixed run, no record exists outside its placement.

Three region processes (us, eu, ap; zones gdpr=[eu], hipaa=[us], sox=[us, eu]) take
PII, PHI, financial and public writes from all three home regions, in strict mode
(a write whose home may not hold it is refused and nothing is written) and in
non-strict mode (it is rerouted to a compliant region). Once replication is done,
every region's topics and store are scanned: each record and each stored key is in a
region of its placement, and compliance allows its classes there.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from connectors import path_of
from edgebus.config import load_config
from edgebus.errors import ComplianceViolation
from edgebus.kafka.reading import read_to_end
from edgebus.kafka.topics import dlq_topic, events_topic
from edgebus.sdk import EdgeBus, WriteReceipt
from edgebus.wire.event_codec import decode_event
from edgebus.wire.headers import H_CLASS, H_PLACEMENT
from edgebus.wire.watermark import is_watermark
from tests.integration.regions import RegionProcess, eventually, make_regions, store_rows
from tests.kafka_settings import KAFKA

IBAN = "DE89370400440532013000"


class Kind(NamedTuple):
    """One kind of data: how it is written and where it may live (us, eu, ap)."""

    name: str
    classes: tuple[str, ...]
    allowed: frozenset[str]  #: "us", "eu", "ap"
    options: dict[str, Any]


KINDS = (
    Kind("pii", ("pii",), frozenset({"eu"}), {}),
    Kind("phi", ("phi",), frozenset({"us"}), {}),
    Kind("phi-explicit", ("phi",), frozenset({"us"}), {"classification": "phi"}),
    Kind("financial", ("financial",), frozenset({"us", "eu"}), {}),
    Kind("pii-financial", ("financial", "pii"), frozenset({"eu"}), {}),
    Kind("public", ("public",), frozenset({"us", "eu", "ap"}), {"replication_factor": 3}),
    Kind("public-one", ("public",), frozenset({"us", "eu", "ap"}), {"replication_factor": 1}),
)


def data_of(kind: str, marker: str) -> dict[str, Any]:
    """A record of that kind; ``marker`` (also the key) finds it in raw bytes."""
    return {
        "pii": {"email": f"{marker}@example.com"},
        "phi": {"diagnosis": "influenza", "ref": marker},
        "phi-explicit": {"visit": "annual", "ref": marker},
        "financial": {"iban": IBAN, "ref": marker},
        "pii-financial": {"email": f"{marker}@example.com", "iban": IBAN},
        "public": {"city": "Lisbon", "ref": marker},
        "public-one": {"city": "Osaka", "ref": marker},
    }[kind]


async def test_after_a_mixed_run_no_record_exists_outside_its_placement(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    regions = make_regions(kafka_bootstrap, tmp_path)
    short = {regions.us: "us", regions.eu: "eu", regions.ap: "ap"}
    lenient = json.loads(json.dumps(regions.config))
    lenient["compliance"]["strict_mode"] = False
    rules = load_config(regions.config).compliance.rules()

    processes = [RegionProcess(regions, r, regions.store_url(r)) for r in regions.names]
    try:
        for process in processes:
            process.start()

        written: list[WriteReceipt] = []
        refused: list[str] = []
        for mode, config in (("strict", regions.config), ("lenient", lenient)):
            async with EdgeBus(config) as bus:
                for kind in KINDS:
                    for home in regions.names:
                        marker = f"{kind.name}-{short[home]}-{mode}"
                        data = data_of(kind.name, marker)
                        allowed_home = short[home] in kind.allowed
                        if mode == "strict" and not allowed_home:
                            with pytest.raises(ComplianceViolation):
                                await bus.write(marker, data, region=home, **kind.options)
                            refused.append(marker)
                            continue
                        receipt = await bus.write(marker, data, region=home, **kind.options)
                        assert receipt.classification == kind.classes, receipt
                        assert {short[r] for r in receipt.placement} <= kind.allowed, receipt
                        assert receipt.rerouted == (not allowed_home), receipt
                        if kind.options.get("replication_factor") == 3:
                            assert len(receipt.placement) == 3
                        written.append(receipt)
        assert refused and any(r.rerouted for r in written)

        expected = {
            region: {r.key for r in written if region in r.placement} for region in regions.names
        }
        classes_of = {r.key: r.classification for r in written}

        async def replicated() -> bool:
            for region in regions.names:
                if not expected[region] <= set(await store_rows(regions.store_url(region))):
                    return False
            return True

        await eventually(replicated, 90, "every store to hold every key placed in it")
        for process in processes:
            assert process.alive(), process.log_tail()
    finally:
        for process in processes:
            process.stop()

    placement_of = {r.key: r.placement for r in written}
    everywhere = [*placement_of, *refused]
    for region in regions.names:
        # the topics: every event placed here, and allowed here by compliance
        # watermark records carry no data (origin, partition, time), only markers
        events = [
            r for r in await read_to_end(KAFKA, kafka_bootstrap, events_topic(region))
            if not is_watermark(r)
        ]
        seen = set()
        for record in events:
            event = decode_event(record.value)
            headers = dict(record.headers)
            assert region in event.placement, (region, event)
            assert rules.allowed_regions((region,), event.classification), (region, event)
            assert headers[H_PLACEMENT].decode().split(",") == list(event.placement)
            assert headers[H_CLASS].decode().split(",") == list(event.classification)
            assert event.placement == placement_of[event.key]
            seen.add(event.key)
        assert seen == expected[region], region
        assert await read_to_end(KAFKA, kafka_bootstrap, dlq_topic(region)) == [], region

        # the store: exactly the keys placed here
        rows = await store_rows(regions.store_url(region))
        assert set(rows) == expected[region], region
        for key in rows:
            assert rules.allowed_regions((region,), classes_of[key]), (region, key)

        # raw bytes: no trace of data that may not be here (nor of refused writes)
        forbidden = [m for m in everywhere if region not in placement_of.get(m, ())]
        raw_topic = b"".join((r.key or b"") + (r.value or b"") for r in events)
        raw_store = files_bytes(path_of(regions.store_url(region)))
        for marker in forbidden:
            assert marker.encode() not in raw_topic, (region, marker)
            assert marker.encode() not in raw_store, (region, marker)
        for marker in expected[region]:  # the search does find what is here
            assert marker.encode() in raw_topic and marker.encode() in raw_store, marker

        # the zones, spelled out
        name = short[region]
        held = {c for k in rows for c in classes_of[k]}
        held_in_topic = {c for r in events for c in decode_event(r.value).classification}
        for classes in (held, held_in_topic):
            if name in ("us", "ap"):
                assert "pii" not in classes, region
            if name != "us":
                assert "phi" not in classes, region
            if name == "ap":
                assert "financial" not in classes, region
            assert "public" in classes, region
            assert {"eu": "pii", "us": "phi"}.get(name, "public") in classes, region
    assert {"pii", "phi", "financial"} <= {c for cs in classes_of.values() for c in cs}


def files_bytes(db: Path) -> bytes:
    """The SQLite file and its write-ahead log, if any."""
    parts: Iterable[Path] = (db, db.with_name(db.name + "-wal"))
    return b"".join(p.read_bytes() for p in parts if p.exists())
