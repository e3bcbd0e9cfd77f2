"""Argument checks and helpers shared by the primitives and the rolling windows.

Every public primitive converts its input once, with :func:`ts` (time series, ``(T,)`` or
``(T, A)``) or :func:`xs` (cross-sections), and checks integers with :func:`check_int`, so each
bad argument is a :class:`~mts1b_quantkit.errors.FactorError` naming the parameter.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import numpy as np

from mts1b_quantkit._xp import array_namespace
from mts1b_quantkit.errors import FactorError

__all__ = ["Array", "as_float", "check_int", "min_periods_of", "quiet", "ts", "xs"]

Array = Any  # numpy.ndarray or cupy.ndarray


@contextlib.contextmanager
def quiet(xp: ModuleType) -> Iterator[None]:
    """Silence numpy's divide/invalid floating-point warnings where NaN is the intended answer
    (0 / 0 in an empty window). cupy never warns; ``xp`` is taken for symmetry with the other
    helpers, and numpy's state is set whatever it is (a CPU stand-in for cupy runs numpy)."""
    del xp
    with np.errstate(divide="ignore", invalid="ignore"):
        yield


def as_float(x: Any, name: str = "x") -> tuple[ModuleType, Array]:
    """``x`` as a float64 array of its own namespace (numpy or cupy), with that namespace."""
    xp = array_namespace(x)
    try:
        a = xp.asarray(x, dtype=xp.float64)
    except (TypeError, ValueError) as exc:
        raise FactorError(f"{name} must be a numeric array: {exc}", field=name) from exc
    return xp, a


def ts(x: Any, name: str = "x") -> tuple[ModuleType, Array]:
    """A time series: ``(T,)`` or ``(T, A)``, dates down axis 0."""
    xp, a = as_float(x, name)
    if a.ndim not in (1, 2):
        raise FactorError(f"{name} must be (T,) or (T, A); got shape {a.shape}",
                          field=name, value=a.shape)
    return xp, a


def xs(x: Any, name: str = "x") -> tuple[ModuleType, Array]:
    """One cross-section ``(A,)`` or a panel ``(T, A)`` of them."""
    xp, a = as_float(x, name)
    if a.ndim not in (1, 2):
        raise FactorError(f"{name} must be a cross-section (A,) or a panel (T, A); got shape "
                          f"{a.shape}", field=name, value=a.shape)
    return xp, a


def check_int(value: Any, name: str, minimum: int = 1) -> int:
    """``value`` as an ``int`` ``>= minimum`` (bools refused), else a FactorError naming it."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise FactorError(f"{name} must be an integer >= {minimum}; got {value!r}",
                          field=name, value=value)
    return int(value)


def min_periods_of(window: int, min_periods: int | None) -> int:
    """``min_periods`` checked against ``window`` (pandas' rule: ``0 <= min_periods <= window``);
    ``None`` means a full window."""
    if min_periods is None:
        return window
    mp = check_int(min_periods, "min_periods", minimum=0)
    if mp > window:
        raise FactorError(f"min_periods ({mp}) must be <= window ({window})",
                          field="min_periods", value=mp)
    return mp
