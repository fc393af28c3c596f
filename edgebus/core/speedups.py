"""The optional C module ``edgebus._speedups``, or None.

edgebus runs without it: every function it holds also exists in pure Python, and the
test suite checks that both give identical results. It is None when the module was
not compiled (no C compiler at install) or when ``EDGEBUS_NO_SPEEDUPS`` is set (to
measure or debug the pure-Python path).
"""

from __future__ import annotations

import importlib
import os
from typing import Any

__all__ = ["NATIVE"]

NATIVE: Any = None
if not os.environ.get("EDGEBUS_NO_SPEEDUPS"):
    try:  # a C extension without Python imports of its own
        NATIVE = importlib.import_module("edgebus._speedups")
    except ImportError:  # not compiled: pure Python
        NATIVE = None
