"""What a strong-commit participant needs of the region service it runs in."""

from __future__ import annotations

from typing import Protocol

from connectors.base import Store
from edgebus.config import EdgeConfig

__all__ = ["ParticipantHost"]


class ParticipantHost(Protocol):
    """What a participant needs of the region service it runs in (the region service
    satisfies it; so can a test double)."""

    region: str
    config: EdgeConfig

    @property
    def store(self) -> Store:
        """The region's store: the key's version is what a vote checks."""

    def partition_of(self, key: str) -> int:
        """The partition of ``key`` in every events topic."""

    async def append_event(
        self, key: bytes, value: bytes, partition: int, headers: list[tuple[str, bytes]]
    ) -> int:
        """Append a record to the region's own events topic; its offset once Kafka
        acknowledged it."""

    async def wait_applied(self, partition: int, offset: int, timeout_s: float) -> None:
        """Until the region's materializer applied ``offset`` of ``partition`` (raises
        TimeoutError after ``timeout_s``)."""
