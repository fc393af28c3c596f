"""Labels are claims, end to end (issue 17, item 5), with the default zones (renamed for
this test's regions: gdpr = eu, hipaa = us, sox = us + eu).

- ``bus.write(key, {"email": ...}, classification="public")`` from eu is placed as
  pii: it never reaches ap's topic or store;
- in strict mode the same write from us (which may not hold pii) is refused and
  nothing is written;
- a foreign producer's event labelled public, holding an e-mail address and placed in
  eu and ap, written straight to eu's topic, is not copied to ap: eu's replicator to
  ap dead-letters it in eu's dlq with the reason, and nothing reaches ap;
- a declassified write is copied as labelled, and ``edgebus tail --json`` shows who
  declassified it, when and why (the plain listing says "declassified by ..."); so
  does one written with ``edgebus write --declassify``.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest

from edgebus.core.envelope import Operation, new_event_id
from edgebus.core.hlc import HLCTimestamp
from edgebus.core.vector_clock import VectorClock
from edgebus.errors import ComplianceViolation
from edgebus.kafka.clients import start_producer
from edgebus.kafka.dead_letters import H_DLQ_REASON, H_DLQ_REGION, H_DLQ_STAGE
from edgebus.kafka.reading import read_to_end
from edgebus.kafka.topics import dlq_topic, ensure_topics, events_topic
from edgebus.sdk import EdgeBus
from edgebus.sdk.options import Declassification
from edgebus.wire.event_codec import encode_fields, encode_payload
from tests.conftest import run_cli
from tests.integration.regions import eventually, make_regions, store_rows
from tests.kafka_settings import KAFKA


async def test_labels_only_add_and_every_hop_checks_content(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    regions = make_regions(kafka_bootstrap, tmp_path)
    us, eu, ap = regions.names
    tag = uuid.uuid4().hex[:8]
    labelled = f"labelled-{tag}"
    foreign_key = f"foreign-{tag}"
    declassified = f"declassified-{tag}"
    marker = f"marker-{tag}"
    await ensure_topics(KAFKA, kafka_bootstrap, [events_topic(r) for r in regions.names],
                        regions.config["kafka"]["partitions"])

    async with regions.services(regions.config, eu, ap), EdgeBus(regions.config) as bus:
        # 1. a public label never lowers an e-mail address: placed as pii, eu only
        receipt = await bus.write(labelled, {"email": f"ann-{tag}@example.com"},
                                  classification="public", region=eu, replication_factor=3)
        assert receipt.classification == ("pii",)
        assert receipt.placement == (eu,)

        # 2. strict mode: a home that may not hold pii refuses, and nothing is written
        with pytest.raises(ComplianceViolation, match="labelled public") as refused:
            await bus.write(f"refused-{tag}", {"email": f"r-{tag}@example.com"},
                            classification="public", region=us)
        assert "cannot place data classified pii" in str(refused.value)
        # (the other regions push heartbeats into us's topic: its end moves anyway)
        written = await read_to_end(KAFKA, kafka_bootstrap, events_topic(us))
        assert not [r for r in written if r.key == f"refused-{tag}".encode()]

        # 3. a foreign producer labels an e-mail address public, placed in eu and ap
        encoded = encode_fields(
            new_event_id(), foreign_key, Operation.SET,
            encode_payload({"contact": f"write to bob-{tag}@example.com"}), eu, (eu, ap),
            ("public",), HLCTimestamp(int(time.time() * 1000), 0), VectorClock(),
            "foreign-producer",
        )
        producer = await start_producer(KAFKA, kafka_bootstrap, "events",
                                        client_id="foreign-producer")
        try:
            await producer.send_and_wait(events_topic(eu), encoded.value, key=encoded.key,
                                         headers=encoded.headers)
        finally:
            await producer.stop()

        # 4. a declassified write: copied as labelled, the record travels with it
        why = Declassification(reason="synthetic test address, not a person", by="dpo-17")
        kept = await bus.write(declassified, {"email": f"fixture-{tag}@example.com"},
                               classification="public", region=eu, replication_factor=3,
                               declassify=why)
        assert kept.classification == ("public",) and ap in kept.placement

        # a public marker after everything: once ap holds it, ap has seen the rest
        await bus.write(marker, {"page": "/"}, region=eu, replication_factor=3)

        async def ap_caught_up() -> bool:
            rows = await store_rows(regions.store_url(ap))
            return marker in rows and declassified in rows

        await eventually(ap_caught_up, 90, "ap to hold the marker and the declassified write")

        async def dead_lettered() -> bool:
            letters = await read_to_end(KAFKA, kafka_bootstrap, dlq_topic(eu))
            return any(r.key == foreign_key.encode() for r in letters)

        await eventually(dead_lettered, 60, "eu's replicator to dead-letter the copy to ap")

        async def eu_applied() -> bool:  # its own writes, the foreign one included
            return {labelled, foreign_key} <= set(await store_rows(regions.store_url(eu)))

        await eventually(eu_applied, 60, "eu to apply its own writes")

    # ap never received the pii: not in its store, not in its topic
    ap_rows = await store_rows(regions.store_url(ap))
    assert labelled not in ap_rows and foreign_key not in ap_rows
    ap_events = await read_to_end(KAFKA, kafka_bootstrap, events_topic(ap))
    for address in (f"ann-{tag}@example.com", f"bob-{tag}@example.com"):
        assert not any(address.encode() in (r.value or b"") for r in ap_events), address
    assert {labelled, foreign_key} <= set(await store_rows(regions.store_url(eu)))

    # the refused copy is a dead letter in eu's dlq, with the reason
    [letter] = [r for r in await read_to_end(KAFKA, kafka_bootstrap, dlq_topic(eu))
                if r.key == foreign_key.encode()]
    headers = dict(letter.headers)
    assert headers[H_DLQ_STAGE] == b"replicate"
    assert headers[H_DLQ_REGION] == ap.encode()
    reason = headers[H_DLQ_REASON].decode()
    assert "content holds pii" in reason and "labelled public" in reason, reason
    assert f"does not allow pii data in {ap}" in reason, reason

    # edgebus tail shows the declassification, as JSON and in the plain listing
    code, _, out, err = run_cli(["tail", "--region", ap, "--from-beginning", "--json"],
                                regions.env)
    assert code == 0, out + err
    records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    [shown] = [r for r in records if r.get("key") == declassified]
    record = shown["headers"]["eb-declassified"]
    assert record["by"] == "dpo-17"
    assert record["reason"] == "synthetic test address, not a person"
    assert record["detected"] == ["pii"] and record["written_as"] == ["public"]
    assert abs(record["at_ms"] - kept.hlc.wall_ms) < 60_000
    assert shown["event"]["classification"] == ["public"]
    code, _, plain, err = run_cli(["tail", "--region", eu, "--from-beginning"], regions.env)
    assert code == 0, plain + err
    assert "declassified by dpo-17: synthetic test address, not a person" in plain

    # the CLI declassifies too, and says who: its client id
    cli_key = f"cli-{tag}"
    code, receipt, out, err = run_cli(
        ["write", "--region", eu, "--key", cli_key, "--data",
         json.dumps({"email": f"cli-{tag}@example.com"}), "--classification", "public",
         "--declassify", "a fixture address, not a person", "--json"], regions.env,
    )  # fmt: skip
    assert code == 0 and receipt["classification"] == ["public"], out + err
    code, _, out, err = run_cli(["tail", "--region", eu, "--from-beginning", "--json"],
                                regions.env)
    assert code == 0, out + err
    [shown] = [json.loads(line) for line in out.splitlines()
               if line.startswith("{") and json.loads(line).get("key") == cli_key]
    record = shown["headers"]["eb-declassified"]
    assert (record["by"], record["reason"]) == ("edgebus-cli", "a fixture address, not a person")
    assert record["detected"] == ["pii"] and record["written_as"] == ["public"]
