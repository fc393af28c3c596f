"""A foreign producer writes a few hundred mutated and forged records straight into a
live region's topic, between good writes: the service stays up, applies every good
write, dead-letters the rest with reasons, and ``edgebus verify`` finds its store equal
to a replay of its topic.

What the foreign producer sends (seeded, so a failure can be replayed):

- real events with 1-4 bytes flipped, replaced, inserted, deleted or cut, and bytes
  that are no event at all (empty, null, garbage, nearly a megabyte);
- forged control data on well-formed events: origin positions past the source's end,
  beyond 64 bits, of unknown regions; dependencies on unknown streams and on offsets
  never reached (dead-lettered after ``replication.dependency_timeout_ms``);
  heartbeats from 300 years ahead;
- increments that overflow a float to infinity, and a value nested deeper than a
  store's JSON encoder goes.

A mutated event that still decodes as a valid event of its key is a write like any
other (a foreign producer may write): it must be applied, and only then.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

from aiokafka import AIOKafkaProducer
from aiokafka.structs import RecordMetadata

from edgebus.core.envelope import Operation, new_event_id
from edgebus.core.hlc import HLCTimestamp
from edgebus.core.vector_clock import VectorClock
from edgebus.errors import DecodeError
from edgebus.kafka.topics import events_topic
from edgebus.sdk import EdgeBus
from edgebus.wire.event_codec import EncodedEvent, encode_fields
from edgebus.wire.event_reader import read_event
from edgebus.wire.headers import H_DEPS, H_ORIGIN_POS
from edgebus.wire.watermark import H_WATERMARK, HEARTBEAT, Watermark, encode_watermark
from tests.integration.regions import RegionProcess, eventually, make_regions, store_rows

PARTITIONS = 3
ROUNDS = 6
GOOD_PER_ROUND = 10
MUTATED_PER_ROUND = 40
SEED = 20261207


def event(key: str, origin: str, placement: tuple[str, ...], *, op: Operation = Operation.SET,
          payload: bytes = b'{"from": "foreign"}', deps: VectorClock | None = None
          ) -> EncodedEvent:
    return encode_fields(
        new_event_id(), key, op, payload, origin, placement, ("public",),
        HLCTimestamp(int(time.time() * 1000), 0), deps or VectorClock(), "foreign-producer",
    )


def mutate(rng: random.Random, value: bytes) -> bytes:
    data = bytearray(value)
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(10, len(data)) if len(data) > 10 else len(data)
        kind = rng.choice(["flip", "set", "insert", "delete", "cut"])
        if kind == "flip" and at < len(data):
            data[at] ^= 1 << rng.randrange(8)
        elif kind == "set" and at < len(data):
            data[at] = rng.randrange(256)
        elif kind == "insert":
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
        elif kind == "delete" and at < len(data):
            del data[at]
        elif kind == "cut":
            del data[at:]
    return bytes(data)


class Foreign:
    """The foreign producer: what it sent, and what each record must become."""

    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self.producer = producer
        self.topic = topic
        #: (partition, offset) -> (key, value, a fragment of the reason it must be
        #: dead-lettered with, or None: it may apply if it is a valid event of its key)
        self.sent: dict[tuple[int, int], tuple[str | None, bytes | None, str | None]] = {}

    async def send(self, value: bytes | None, headers: list[tuple[str, bytes]], *,
                   key: str | None, partition: int, must_say: str | None) -> None:
        meta: RecordMetadata = await self.producer.send_and_wait(
            self.topic, value, key=key.encode() if key is not None else None,
            partition=partition, headers=headers,
        )
        self.sent[(meta.partition, meta.offset)] = (key, value, must_say)


async def forge_round(foreign: Foreign, rng: random.Random, n: int, us: str, eu: str) -> None:
    """One round of hostile records: mutations, then one of each forgery."""
    for i in range(MUTATED_PER_ROUND):
        key = f"foreign:{n}:{i}"
        good = event(key, us, (us,))
        await foreign.send(mutate(rng, good.value), list(good.headers), key=key,
                           partition=rng.randrange(PARTITIONS), must_say=None)
    p = rng.randrange(PARTITIONS)
    copy = event(f"forged:{n}:pos", eu, (eu, us))
    past_end = (H_ORIGIN_POS, f"{eu}:{p}:{9 * 10**18}".encode())
    await foreign.send(copy.value, [*copy.headers, past_end], key=copy.key.decode(),
                       partition=p, must_say="forged origin position")
    await foreign.send(copy.value, [*copy.headers, (H_ORIGIN_POS, f"{eu}:{p}:{2**70}".encode())],
                       key=copy.key.decode(), partition=p, must_say="eb-origin-pos")
    unknown = event(f"forged:{n}:deps", us, (us,), deps=VectorClock({("mars-1", 0): 3}))
    await foreign.send(unknown.value, list(unknown.headers), key=unknown.key.decode(),
                       partition=p, must_say="names no configured region")
    never = event(f"forged:{n}:never", us, (us,), deps=VectorClock({(eu, p): 2**40}))
    headers = [(k, v) for k, v in never.headers if k != H_DEPS]
    headers.append((H_DEPS, VectorClock({(eu, p): 2**40}).encode()))
    await foreign.send(never.value, headers, key=never.key.decode(), partition=p,
                       must_say="dependency timeout")
    future_ms = int(time.time() * 1000) + 300 * 365 * 86_400_000
    await foreign.send(encode_watermark(Watermark(us, p, future_ms, HEARTBEAT)),
                       [(H_WATERMARK, HEARTBEAT.encode()), ("eb-origin", us.encode())],
                       key=None, partition=p, must_say="clock drift")
    for j in range(2):  # 1.7e308 + 1.7e308 is infinity: no JSON holds it
        inc = event(f"forged:{n}:inf", us, (us,), op=Operation.INCREMENT, payload=b"1.7e308")
        await foreign.send(inc.value, list(inc.headers), key=inc.key.decode(), partition=p,
                           must_say=None if j == 0 else "which JSON cannot hold")
    # valid JSON, 300 levels deep: a store could not write it back (JSON encoders stop
    # at 255 levels) and its batch would fail
    deep = event(f"forged:{n}:deep", us, (us,), payload=b"[" * 300 + b"]" * 300)
    await foreign.send(deep.value, list(deep.headers), key=deep.key.decode(), partition=p,
                       must_say="deeper than 250 levels")
    await foreign.send(b"", [], key=f"forged:{n}:empty", partition=p, must_say="")
    await foreign.send(None, [], key=f"forged:{n}:null", partition=p, must_say="")
    if n == 0:
        await foreign.send(bytes(rng.randrange(256) for _ in range(1000)) * 900, [],
                           key="forged:big", partition=p, must_say="")


def may_apply(value: bytes | None, key: str | None) -> bool:
    """Whether a mutated record is still a valid event of its key."""
    try:
        e = read_event(value)
    except DecodeError:
        return False
    return e.key == key


async def test_a_foreign_producer_cannot_stop_or_corrupt_a_region(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    regions = make_regions(kafka_bootstrap, tmp_path, partitions=PARTITIONS)
    us, eu = regions.us, regions.eu
    regions.config["replication"] = {"dependency_timeout_ms": 5_000}
    regions.config_path.write_text(json.dumps(regions.config), encoding="utf-8")
    service = RegionProcess(regions, us, regions.store_url(us))
    source = RegionProcess(regions, eu, regions.store_url(eu))
    source.start()
    service.start()
    rng = random.Random(SEED)
    good: dict[str, int] = {}
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, max_request_size=2**21)
    await producer.start()
    foreign = Foreign(producer, events_topic(us))
    try:
        async with EdgeBus(regions.config) as bus:
            for n in range(ROUNDS):
                for i in range(GOOD_PER_ROUND):
                    key = f"good:{n}:{i}"
                    await bus.write(key, {"n": n, "i": i}, region=us, replication_factor=1)
                    good[key] = n
                await forge_round(foreign, rng, n, us, eu)
            await bus.write("good:last", {"n": ROUNDS}, region=us, replication_factor=1)
            good["good:last"] = ROUNDS

            async def all_good_applied() -> bool:
                return all([(await bus.read(k, us)).exists for k in good])

            await eventually(all_good_applied, 120, "every good write applied")
        assert service.alive(), service.log_tail()

        async def all_accounted() -> bool:
            code, listing, _ = regions.cli("dlq", "list", "--region", us)
            return code == 0 and len(listing["dead_letters"]) >= _must_die(foreign)

        await eventually(all_accounted, 60, "the hostile records dead-lettered")
        code, listing, out = regions.cli("dlq", "list", "--region", us)
        assert code == 0, out
        letters = {d["source"]: d for d in listing["dead_letters"]}
        rows = await store_rows(regions.store_url(us))
        applied = dead = 0
        for (partition, offset), (key, value, must_say) in foreign.sent.items():
            letter = letters.get(f"{foreign.topic}:{partition}:{offset}")
            if must_say is None and letter is None:
                # a mutation that is still a valid event of its key: a write like any other
                assert may_apply(value, key) and key in rows, (partition, offset, key)
                applied += 1
                continue
            assert letter is not None, (partition, offset, key, must_say)
            assert letter["reason"] and letter["stage"] == "materialize", letter
            assert must_say is None or must_say in letter["reason"], (must_say, letter)
            dead += 1
        for key in good:
            assert rows[key][0], key
        for kind in ("pos", "deps", "never", "deep"):
            assert not any(k.endswith(f":{kind}") for k in rows), rows
        assert service.alive(), service.log_tail()
        code, report, out = regions.cli("verify", "--region", us, timeout_s=300)
        assert code == 0 and report["ok"], out
        print(f"foreign records sent {len(foreign.sent)}, dead-lettered {dead}, applied "
              f"{applied}; good writes {len(good)} all applied")
    finally:
        await producer.stop()
        service.stop()
        source.stop()


def _must_die(foreign: Foreign) -> int:
    return sum(1 for _, _, must_say in foreign.sent.values() if must_say is not None)
