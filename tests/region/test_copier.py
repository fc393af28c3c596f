"""The copier the replicator and a repair's catch-up share (no Kafka): what it sends,
and ``reach``, the origin position the target's frontier reaches once it is applied."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import TopicPartition

from edgebus.config import load_config
from edgebus.region.copier import Copier
from edgebus.region.replicator import Replicator
from edgebus.wire.headers import H_ORIGIN_POS
from edgebus.wire.watermark import H_WATERMARK, HEARTBEAT, Watermark, encode_watermark
from tests.region.test_applier import AP, EU, US, copy_of, record


class Sent:
    """A producer stand-in: what was sent, acknowledged at once."""

    def __init__(self) -> None:
        self.records: list[tuple[str, int, bytes | None, dict[str, bytes]]] = []

    async def send(self, topic: str, value: Any = None, key: Any = None, partition: int = 0,
                   headers: Any = None) -> asyncio.Future[None]:
        self.records.append((topic, partition, key, dict(headers or ())))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


def copier() -> tuple[Copier, Sent]:
    sent = Sent()
    return Copier(US, EU, load_config(None), sent), sent  # type: ignore[arg-type]


def heartbeat(offset: int) -> Any:
    from aiokafka import ConsumerRecord

    value = encode_watermark(Watermark(US, 0, 1_000, HEARTBEAT))
    headers = [(H_WATERMARK, HEARTBEAT.encode()), ("eb-origin", US.encode())]
    return ConsumerRecord(f"edgebus.{US}.events", 0, offset, 0, 0, None, value, None, 0,
                          len(value), headers)


async def test_a_copied_tail_reaches_its_last_copy_and_needs_no_watermark() -> None:
    c, sent = copier()
    out = await c.copy_records(0, [record(US, 3, "a", 1), record(US, 4, "b", 2)])
    assert (out.copied, out.watermarks, out.reach, out.refused) == (2, 0, 4, [])
    assert [h[H_ORIGIN_POS] for _, _, _, h in sent.records] == [
        f"{US}:0:3".encode(), f"{US}:0:4".encode()]
    assert {t for t, _, _, _ in sent.records} == {f"edgebus.{EU}.events"}


async def test_a_tail_placed_elsewhere_reaches_the_watermark_after_it() -> None:
    c, sent = copier()
    elsewhere = record(US, 6, "b", 2, placement=(US, AP))
    out = await c.copy_records(0, [record(US, 5, "a", 1), elsewhere])
    assert (out.copied, out.watermarks, out.reach) == (1, 1, 6)
    assert H_WATERMARK in sent.records[-1][3]
    assert sent.records[-1][3][H_ORIGIN_POS] == f"{US}:0:6".encode()


async def test_heartbeats_are_copied_and_copies_of_other_regions_reach_nothing() -> None:
    c, _ = copier()
    out = await c.copy_records(0, [heartbeat(7)])
    assert (out.copied, out.reach) == (1, 7)
    third = copy_of(record(AP, 3, "c", 3), US, 8)  # an ap event copied into us's topic
    assert (await c.copy_records(0, [third])).reach is None


async def test_a_refused_event_is_returned_for_the_origins_dead_letters_and_passed() -> None:
    sent = Sent()
    c = Copier(EU, US, load_config(None), sent)  # type: ignore[arg-type]
    # placed in us by its (forged) placement, but pii may not live in us
    pii = record(EU, 9, "p", {"email": "ann@example.com"}, classes=("pii",),
                 placement=(EU, US))
    out = await c.copy_records(0, [pii])
    [(letter, reason, stage)] = out.refused
    assert letter is pii and stage == "replicate" and "compliance" in reason
    assert out.copied == 0 and out.reach == 9
    [(_, _, _, headers)] = sent.records  # only the watermark that passes it
    assert H_WATERMARK in headers and headers[H_ORIGIN_POS] == f"{EU}:0:9".encode()


async def test_the_replicator_sends_what_the_copier_sends() -> None:
    batch = [record(US, 0, "a", 1), record(US, 1, "b", 2, placement=(US, AP)), heartbeat(2),
             record(US, 3, "c", 3, placement=(US, AP))]
    c, direct = copier()
    await c.copy_records(0, batch)
    through = Sent()
    replicator = Replicator(US, EU, "unused:9092", load_config(None), through, through)  # type: ignore[arg-type]
    await replicator.copy_batch({TopicPartition(f"edgebus.{US}.events", 0): batch})
    assert through.records == direct.records
    assert replicator.stats.to_dict() == {"seen": 4, "copied": 2, "refused": 0,
                                          "watermarks": 1}
