"""The counters a region's services keep for ``status`` and the benchmarks."""

from __future__ import annotations

from typing import Any

__all__ = ["Counters"]


class Counters:
    """Base of a service's counters: attributes set in ``__init__``, numbers the service
    updates in place; :meth:`to_dict` gives them JSON-ready, in that order."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready counters."""
        return dict(vars(self))
