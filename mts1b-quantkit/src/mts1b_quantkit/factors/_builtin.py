"""Built-in factors, registered when :mod:`mts1b_quantkit.factors` is imported.

Each returns a ``(T, A)`` float64 array whose row ``t`` uses rows ``<= t`` only (the test suite
runs :func:`~mts1b_quantkit.factors.check_lookahead` on every one). Values outside the panel's
universe mask are NaN, except for ``f_sma_cross``, which is the migration guide's code verbatim.
"""

from __future__ import annotations

import functools
import warnings
from typing import Any

from mts1b_quantkit._xp import array_namespace
from mts1b_quantkit.factors import _seed
from mts1b_quantkit.factors._registry import register
from mts1b_quantkit.factors.primitives import (
    _quiet,
    momentum_12_1,
    returns,
    rolling_mean,
    rolling_std,
    rsi,
    shift,
    zscore_cross_sectional,
)

__all__ = [
    "f_low_volatility",
    "f_momentum_12_1",
    "f_reversal",
    "f_rsi_reversion",
    "f_sma_cross",
    "f_sma_cross_fast",
    "f_xs_momentum",
]


def f_sma_cross(panel: Any, /, p_fast: int = 20, p_slow: int = 50) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return _seed.f_sma_cross(panel, p_fast=p_fast, p_slow=p_slow)


# ``__wrapped__`` lets the registry recognise a verbatim copy of the guide's code as the same
# factor; the docstring is ours.
f_sma_cross = functools.wraps(_seed.f_sma_cross)(f_sma_cross)
f_sma_cross.__doc__ = """+1 where the mean close of the previous ``p_fast`` rows is above the mean
close of the previous ``p_slow`` rows, else -1 (row ``t`` itself is not in either window).

The migration guide's loop, run unchanged (see ``_seed.py``) with numpy's warning for row 0's
empty window silenced. ``f_sma_cross_fast`` computes the same values without the loop."""
register("f_sma_cross")(f_sma_cross)


@register("f_sma_cross_fast")
def f_sma_cross_fast(panel: Any, /, p_fast: int = 20, p_slow: int = 50) -> Any:
    """Vectorized ``f_sma_cross``: identical values, ``O(window)`` array passes instead of a
    Python loop over dates. +1 where the mean of ``close[t-p_fast:t]`` exceeds the mean of
    ``close[t-p_slow:t]``, else -1 (NaN comparisons give -1, as in the guide)."""
    close = panel.close
    xp = array_namespace(close)
    fast = shift(rolling_mean(close, p_fast, min_periods=1, skipna=False), 1)
    slow = shift(rolling_mean(close, p_slow, min_periods=1, skipna=False), 1)
    with _quiet(xp):
        return (fast > slow).astype(xp.float64) * 2.0 - 1.0


def _in_universe(panel: Any, values: Any) -> Any:
    xp = array_namespace(values)
    mask = getattr(panel, "mask", None)
    if mask is None:
        return values
    return xp.where(xp.asarray(mask), values, xp.nan)


@register("f_momentum_12_1")
def f_momentum_12_1(panel: Any, /, h_long: int = 252, h_skip: int = 21) -> Any:
    """Cross-sectional z-score of 12-1 momentum: ``close[t-h_skip] / close[t-h_long] - 1``."""
    return zscore_cross_sectional(
        _in_universe(panel, momentum_12_1(panel.close, h_long=h_long, h_skip=h_skip)))


@register("f_reversal")
def f_reversal(panel: Any, /, h: int = 5) -> Any:
    """Short-term reversal: minus the cross-sectional z-score of the last ``h``-day return."""
    return -zscore_cross_sectional(_in_universe(panel, returns(panel.close, h)))


@register("f_low_volatility")
def f_low_volatility(panel: Any, /, window: int = 63) -> Any:
    """Low-volatility anomaly: minus the z-score of the ``window``-day std of daily returns."""
    vol = rolling_std(returns(panel.close, 1), window)
    return -zscore_cross_sectional(_in_universe(panel, vol))


@register("f_rsi_reversion")
def f_rsi_reversion(panel: Any, /, window: int = 14) -> Any:
    """Mean reversion on RSI: ``(50 - RSI) / 50`` in ``[-1, 1]``, high when oversold."""
    return _in_universe(panel, (50.0 - rsi(panel.close, window)) / 50.0)


@register("f_xs_momentum")
def f_xs_momentum(panel: Any, /, h: int = 21) -> Any:
    """The FAQ's cross-sectional factor: one ``(A,)`` row for the panel's last date.

    ``zscore_cross_sectional(close[-1] / close[-h] - 1)``; :func:`evaluate` turns it into a
    ``(T, A)`` panel point in time, with NaN rows until ``h`` rows of history exist.
    """
    return zscore_cross_sectional(panel.close[-1] / panel.close[-h] - 1)
