"""Array-namespace dispatch: the same primitive code runs on numpy and cupy arrays.

``array_namespace(x)`` returns ``cupy`` when ``x`` is a cupy array and ``numpy`` otherwise. cupy is
imported only when such an array is seen, so numpy-only installs never pay for (or need) it. The
primitives call only functions that both libraries provide with the same semantics.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any

import numpy as np

__all__ = ["array_namespace", "is_cupy", "to_numpy"]


def is_cupy(x: Any) -> bool:
    """True when ``x`` is a cupy array (checked without importing cupy)."""
    return type(x).__module__.split(".", 1)[0] == "cupy"


def array_namespace(*arrays: Any) -> ModuleType:
    """``cupy`` if any argument is a cupy array, else ``numpy``.

    cupy is imported lazily, and only when one of the arrays already is a cupy array (so it is
    necessarily installed).
    """
    for a in arrays:
        if is_cupy(a):
            cupy = sys.modules.get("cupy")
            if cupy is None:  # pragma: no cover - a cupy array implies cupy was imported
                import importlib

                cupy = importlib.import_module("cupy")
            return cupy
    return np


def to_numpy(x: Any) -> Any:
    """A numpy view/copy of ``x`` (``.get()`` for cupy arrays)."""
    if is_cupy(x):
        return x.get()
    return np.asarray(x)
