"""State machines (EdgeStateMachine): durable objects on the log.

One owner per state at a time, with a lease and a fencing epoch decided by the state's
Kafka log; operations run serially at the owner and are forwarded there from any
process; hosts in every allowed region fold the log as warm standbys, take over when
the owner's lease lapses, and ownership migrates toward the region that uses the state.
See ``docs/state-machines.md``.
"""

from edgebus.state.functions import register_update_fn

__all__ = ["register_update_fn"]
