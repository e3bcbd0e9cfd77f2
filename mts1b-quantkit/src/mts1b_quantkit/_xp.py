"""Array-namespace dispatch: the same primitive code runs on numpy and cupy arrays.

``array_namespace(x)`` returns ``cupy`` when ``x`` is a cupy array and ``numpy`` otherwise. cupy is
imported only when such an array is seen, so numpy-only installs never pay for (or need) it. The
primitives call only functions that both libraries provide with the same semantics.

``as_float_array`` is the one conversion of a caller's input (pandas, a list, a numpy or cupy
array) to a float64 numpy array, used by every function that works on the host.
"""

from __future__ import annotations

import contextlib
import sys
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["array_namespace", "as_float_array", "is_cupy", "to_numpy"]

FloatArray = npt.NDArray[np.float64]


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


def as_float_array(x: Any) -> FloatArray:
    """``x`` as a float64 numpy array.

    A pandas Series, DataFrame or Index goes through ``to_numpy`` with missing values (``None``,
    ``pd.NA``) as NaN, so a nullable column is read like a float one; a ``to_numpy`` without
    pandas' keywords (polars, pyarrow) is left to ``np.asarray``. A cupy array is copied to the
    host. Raises ``TypeError`` / ``ValueError`` for non-numeric input; callers turn that into
    their own error naming the argument.
    """
    if hasattr(x, "to_numpy"):
        with contextlib.suppress(TypeError):
            x = x.to_numpy(dtype=np.float64, na_value=np.nan)
    return np.asarray(to_numpy(x), dtype=np.float64)
