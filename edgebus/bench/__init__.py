"""Benchmarks: edgebus against raw aiokafka on the same broker, in the same run.

Figures are ratios (edgebus / raw) so that they hold when the machine's speed drifts.
"""
