"""The ``reads`` section: causal and bounded-staleness reads when the region asked is
behind, and how many query requests a region service takes at once."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from edgebus.config.section import Section

__all__ = ["ReadsConfig"]


class ReadsConfig(Section):
    """What causal and bounded-staleness reads do when the region asked is behind."""

    #: how long a read waits for the region to catch up before ``fallback``
    wait_ms: float = Field(2_000.0, ge=0, le=600_000)
    #: ``route``: serve from another region that is fresh enough (else raise);
    #: ``raise``: raise SessionNotCovered / StalenessBoundExceeded
    fallback: Literal["route", "raise"] = "route"
    #: bounded-staleness threshold when a read names none (the spec's example: 5 s)
    staleness_threshold_ms: float = Field(5_000.0, gt=0)
    #: query requests one region service handles at once; more get HTTP 503 with
    #: ``Retry-After`` (the SDK retries elsewhere)
    max_concurrent_requests: int = Field(256, ge=1, le=100_000)
