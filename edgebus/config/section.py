"""The base of every section of the ``edge_config``: frozen, and an unknown key is an
error (never silently ignored)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["Section"]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
