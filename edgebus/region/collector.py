"""The garbage collector of a process that applies a region's events.

A region service, a replay and their benchmarks make and drop millions of small
objects (records, states, tuples); CPython's cycle collector scans the young ones
every 700 container allocations and, every hundred such scans, every object of the
process. Measured on ``edgebus bench materialize``, those scans took about a fifth of
the apply path's time, mostly the full ones re-walking what the process built at
start (modules, configuration, clients), which lives until the process ends.

:func:`tune_for_apply` collects once, freezes what exists (the permanent generation:
never scanned again) and scans the young generation every 10,000 allocations instead
of 700. Reference counting still frees nearly everything at once; only garbage cycles
wait a little longer. Called once per process, by the processes that apply events
(``edgebus region run``, ``edgebus replay``, their benchmarks); a library embedding
edgebus keeps its own collector settings.
"""

from __future__ import annotations

import gc

__all__ = ["tune_for_apply"]

#: young-generation allocations between scans; scans of the middle and old generations
THRESHOLDS = (10_000, 50, 100)

_tuned = False


def tune_for_apply() -> None:
    """Freeze what the process built so far and scan the young generation less often
    (once per process; later calls do nothing)."""
    global _tuned
    if _tuned:
        return
    _tuned = True
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
