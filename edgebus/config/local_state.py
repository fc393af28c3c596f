"""Where this machine's edgebus state lives."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["ENV_STATE_DIR", "default_state_dir"]

ENV_STATE_DIR = "EDGEBUS_STATE_DIR"


def default_state_dir() -> Path:
    """Where this machine's edgebus state lives: ``$EDGEBUS_STATE_DIR``, else
    ``~/.local/state/edgebus`` (region stores, state-host snapshots, and what
    ``edgebus kafka up`` records about the brokers it runs)."""
    value = os.environ.get(ENV_STATE_DIR)
    directory = Path(value).expanduser() if value else Path.home() / ".local" / "state" / "edgebus"
    return directory.absolute()
