"""One client of the fleet of tests/integration/test_coordinator_fleet.py: an ``EdgeBus``
doing strong commits for a while, as its own process, with logging left as a user's
program leaves it (not configured: Python prints WARNING and above on stderr), so that
the test can require its stderr to stay empty.

    python -m tests.integration.fleet_worker CONFIG TAG INDEX SECONDS

commits to the keys ``<TAG>:w<INDEX>:k0`` .. ``k3`` in turn (keys of its own: no
contention between clients) until SECONDS have passed, then prints one JSON line: how
many commits it made, how many committed, aborted (by reason), ended unknown or
failed, which coordinators decided them, and what its ``auto`` coordinator did
(``seated_times``).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from edgebus.errors import EdgebusError, StrongOutcomeUnknown
from edgebus.sdk import EdgeBus

KEYS = 4
#: a pause between commits: eight clients on a test machine shared with others
PAUSE_S = 0.1


async def main(config: Path, tag: str, index: int, seconds: float) -> dict[str, Any]:
    counts: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    deciders: Counter[str] = Counter()  #: decided_by of its commits
    errors: list[str] = []
    async with EdgeBus(config, discovery=False, client_id=f"fleet-{index}") as bus:
        end = time.monotonic() + seconds
        n = 0
        while time.monotonic() < end:
            key = f"{tag}:w{index}:k{n % KEYS}"
            n += 1
            counts["commits"] += 1
            try:
                result = await bus.commit(key, {"n": n, "by": index})
            except StrongOutcomeUnknown:
                counts["unknown"] += 1
            except EdgebusError as e:
                errors.append(f"{type(e).__name__}: {e}")
            else:
                counts["committed" if result.committed else "aborted"] += 1
                deciders[str(result.decided_by)] += 1
                if not result.committed:
                    reasons[str(result.reason)] += 1
            await asyncio.sleep(PAUSE_S)
        auto = bus._strong._parts.value.auto if bus._strong._parts.value else None
        seat = auto.status() if auto is not None else None
    return {**counts, "reasons": dict(reasons), "deciders": dict(deciders), "errors": errors[:10],
            "error_count": len(errors), "seat": seat}


if __name__ == "__main__":
    config_, tag_, index_, seconds_ = sys.argv[1:5]
    report = asyncio.run(main(Path(config_), tag_, int(index_), float(seconds_)))
    print(json.dumps(report), flush=True)
