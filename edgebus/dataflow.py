"""``from edgebus.dataflow import DataFlow``: the spec's ``from dataflow import DataFlow``.

See :mod:`edgebus.workflow.dataflow` and docs/nodes.md (section DataFlow).
"""

from edgebus.workflow.dataflow import DEFAULT_REGION_ALIASES, DataFlow, ModelInfo

__all__ = ["DEFAULT_REGION_ALIASES", "DataFlow", "ModelInfo"]
