"""Fixtures shared by the integration tests of several modules."""

from __future__ import annotations

from tests.integration.secure_kafka import secure

__all__ = ["secure"]
