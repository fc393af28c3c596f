"""A store's bookkeeping for one key, as tests of edgebus.core.conflict drive it.

What a real store does around :func:`edgebus.core.conflict.apply`: keep the state,
keep the retained ops beside it (``Applied.retain`` / ``drop_before``), and load them
when the fold raises NeedsHistory. ``forget_ops`` drops the loaded ops first, as a
store that read the state without its ops would.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from edgebus.core.conflict import Applied, KeyOp, KeyState, NeedsHistory, Stamp, apply


class KeyStore:
    """State plus retained ops of one key."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.state: KeyState | None = None
        self.retained: dict[Stamp, KeyOp] = {}
        self.history_loads = 0

    def apply(self, key_op: KeyOp, *, forget_ops: bool = False) -> Applied:
        state = self.state
        if state is not None and forget_ops:
            state = replace(state, ops=None)
        try:
            applied = apply(state, self.key, key_op)
        except NeedsHistory:
            assert state is not None and state.ops is None  # only asked when not loaded
            self.history_loads += 1
            applied = apply(state.with_ops(self.retained.values()), self.key, key_op)
        if applied.retain is not None:
            self.retained[applied.retain.stamp] = applied.retain
        if applied.drop_before is not None:
            drop = applied.drop_before
            self.retained = {s: o for s, o in self.retained.items() if s >= drop}
        self.state = applied.state
        return applied

    def apply_all(self, ops: Iterable[KeyOp], *, forget_ops: bool = False) -> KeyState:
        for key_op in ops:
            self.apply(key_op, forget_ops=forget_ops)
        assert self.state is not None
        return self.state

    def retained_ops(self) -> tuple[KeyOp, ...]:
        return tuple(sorted(self.retained.values()))
