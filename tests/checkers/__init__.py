"""Checkers that tests run over recorded histories (pure Python, no edgebus imports)."""
