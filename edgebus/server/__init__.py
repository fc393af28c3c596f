"""The region service: one process (or one embedded object) that runs a region's
services together — its materializer and replicators (:mod:`edgebus.region`), its
strong-commit participant (:mod:`edgebus.commit`) and its state host
(:mod:`edgebus.state`) — and serves the region's query endpoint and ``/metrics``.
"""
