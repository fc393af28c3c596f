"""A region's data path: the materializer that applies the region's topic to its store
(:mod:`edgebus.region.materializer`, :mod:`edgebus.region.applier`), the replicators
that copy in what other regions place here (:mod:`edgebus.region.replicator`), and
replay/verify from the log (:mod:`edgebus.region.replay`). The process that runs them
with the region's other services is :mod:`edgebus.server`."""
