"""Kafka consumers that are not ours can read every edgebus record.

Records written by the SDK are read by Apache Kafka's own Java console consumer (from
the same jars as the broker) and decoded with plain fastavro and nothing but the
``.avsc`` files in ``schemas/``: no edgebus code touches the reading side.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import uuid
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

from edgebus import EdgeBus
from edgebus.localkafka.launcher import kafka_java_command

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
FIELD_SEP, HEADER_SEP = "\x1e", "\x1f"
BYTES = "org.apache.kafka.common.serialization.BytesDeserializer"


def unescape(text: str) -> bytes:
    """Inverse of Kafka's Bytes.toString: printable ASCII as is, the rest as \\xNN."""
    return re.sub(
        rb"\\x([0-9A-F]{2})", lambda m: bytes([int(m.group(1), 16)]), text.encode("ascii")
    )


def schemas_by_fingerprint() -> dict[bytes, Any]:
    out = {}
    for path in SCHEMAS.glob("*.avsc"):
        raw = json.loads(path.read_text())
        fp = bytes.fromhex(fingerprint(to_parsing_canonical_form(raw), "CRC-64-AVRO"))
        out[fp] = fastavro.parse_schema(raw)
    return out


def console_consume(bootstrap: str, topic: str, count: int) -> list[dict[str, Any]]:
    command = kafka_java_command(
        "org.apache.kafka.tools.consumer.ConsoleConsumer",
        [
            "--bootstrap-server", bootstrap, "--topic", topic, "--from-beginning",
            "--max-messages", str(count), "--timeout-ms", "30000",
            "--property", "print.key=true", "--property", "print.headers=true",
            "--property", "print.partition=true", "--property", "print.offset=true",
            "--property", f"key.separator={FIELD_SEP}",
            "--property", f"headers.separator={HEADER_SEP}",
            "--property", f"key.deserializer={BYTES}",
            "--property", f"value.deserializer={BYTES}",
            "--property", f"headers.deserializer={BYTES}",
        ],
    )  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    records = []
    for line in done.stdout.split("\n"):  # not splitlines(): it splits at \x1e too
        if not line:
            continue
        partition, offset, headers, key, value = line.split(FIELD_SEP)
        header_map = {}
        for item in headers.split(HEADER_SEP):
            name, _, raw = item.partition(":")
            header_map[name] = unescape(raw)
        records.append(
            {
                "partition": int(partition.removeprefix("Partition:")),
                "offset": int(offset.removeprefix("Offset:")),
                "headers": header_map,
                "key": unescape(key),
                "value": unescape(value),
            }
        )
    return records


async def test_java_console_consumer_and_plain_fastavro_read_sdk_records(
    kafka_bootstrap: str,
) -> None:
    region = f"interop-{uuid.uuid4().hex[:8]}"
    cfg = {"kafka": {"bootstrap": kafka_bootstrap}, "discovery": {"locations": [region]},
           "compliance": {"zones": {"open": [region]}, "data_classifications": {}}}
    written = []
    async with EdgeBus(cfg) as bus:
        for i, data in enumerate(
            [{"message": "Hello", "thread_id": "123"}, {"n": 1, "ünï": "cödé"}, [1, 2, 3]]
        ):
            written.append((data, await bus.write(f"key-{i}", data)))
        written.append((None, await bus.write("key-gone", None, operation="delete")))
    by_fp = schemas_by_fingerprint()
    records = console_consume(kafka_bootstrap, f"edgebus.{region}.events", len(written))
    assert len(records) == len(written)
    seen = {(r["partition"], r["offset"]): r for r in records}
    for data, receipt in written:
        record = seen[(receipt.partition, receipt.offset)]
        value = record["value"]
        assert value[:2] == b"\xc3\x01"
        writer_schema = by_fp[value[2:10]]  # found by fingerprint, in schemas/ alone
        body = fastavro.schemaless_reader(io.BytesIO(value[10:]), writer_schema, None)
        assert body["event_id"] == receipt.event_id
        assert body["key"] == receipt.key == record["key"].decode()
        assert body["origin_region"] == region
        payload = body["payload_json"]
        assert (None if payload is None else json.loads(payload)) == data
        headers = record["headers"]
        assert headers["eb-schema"] == value[2:10]
        assert headers["eb-event-id"].decode() == receipt.event_id
        assert headers["eb-origin"].decode() == region
        assert headers["eb-placement"].decode().split(",") == list(receipt.placement)
        wall_and_logical = int.from_bytes(headers["eb-hlc"], "big")
        assert (wall_and_logical >> 16, wall_and_logical & 0xFFFF) == (
            body["hlc"]["wall_ms"], body["hlc"]["logical"]
        )
