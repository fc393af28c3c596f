"""Strong consistency on the saga log: two-phase commit of strong writes (coordinator
and participants), linearizable reads, and multi-step sagas with compensations."""
