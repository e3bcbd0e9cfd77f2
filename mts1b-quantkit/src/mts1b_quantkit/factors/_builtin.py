"""Built-in factors, registered when :mod:`mts1b_quantkit.factors` is imported.

Each returns a ``(T, A)`` float64 array whose row ``t`` uses rows ``<= t`` only (the test suite
runs :func:`~mts1b_quantkit.factors.check_lookahead` on every one). Values outside the panel's
universe mask are NaN, except for ``f_sma_cross``, which is the migration guide's code verbatim.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from mts1b_quantkit._xp import array_namespace
from mts1b_quantkit.factors import _seed
from mts1b_quantkit.factors._common import Array, check_int, quiet
from mts1b_quantkit.factors._registry import LadderEvaluator, register
from mts1b_quantkit.factors.primitives import (
    momentum_12_1,
    returns,
    rsi,
    zscore_cross_sectional,
)
from mts1b_quantkit.factors.rolling import rolling_means, rolling_std

__all__ = [
    "SMA_CROSS_LADDER",
    "f_low_volatility",
    "f_momentum_12_1",
    "f_reversal",
    "f_rsi_reversion",
    "f_sma_cross",
    "f_sma_cross_fast",
    "f_xs_momentum",
    "sma_cross_signals",
]


# -- the SMA crossover, one pair or a ladder of pairs -------------------------------------------
def sma_cross_signals(close: Any, pairs: Sequence[tuple[int, int]], *, lag: int = 1,
                      min_periods: int | None = 1,
                      compensated: bool = True) -> Callable[[int, int], Array]:
    """Moving-average crossover signals of many ``(fast, slow)`` window pairs over ``close``.

    ``close`` is ``(T, A)`` (numpy or cupy). Every distinct window's moving average is computed
    once, from one prefix sum (:func:`~mts1b_quantkit.factors.rolling.rolling_means`, NaN where
    the window holds a missing value; ``compensated`` as there); the returned
    ``signals(lo, hi)`` gives, for ``pairs[lo:hi]``, the ``(hi - lo, T, A)`` booleans
    ``SMA_fast > SMA_slow`` (a comparison with NaN is False). The convention: ``lag=1,
    min_periods=1`` is ``f_sma_cross``'s (the rows *before* ``t``, partial windows at the
    start); ``lag=0, min_periods=None`` is pandas' and vectorbt's (rows up to ``t``, full
    windows).

    Each call returns a view of one buffer, which the next call overwrites (copy a result to
    keep it): writing each tile into memory already touched halves the comparisons' cost.
    Memory: one ``(T, A)`` float64 array per distinct window, whatever the number of pairs,
    plus that buffer.
    """
    checked = [(check_int(f, "p_fast"), check_int(s, "p_slow")) for f, s in pairs]
    windows = sorted({w for pair in checked for w in pair})
    where = {w: k for k, w in enumerate(windows)}
    index = [(where[f], where[s]) for f, s in checked]
    means = rolling_means(close, windows, lag=lag, min_periods=min_periods, skipna=False,
                          compensated=compensated)
    xp = array_namespace(means)
    buffer: list[Array] = []  # one tile's booleans, reused: fresh memory costs as much again

    def signals(lo: int, hi: int) -> Array:
        n = max(hi - lo, 0)
        if not buffer or buffer[0].shape[0] < n:
            buffer[:] = [xp.empty((n, *means.shape[1:]), dtype=bool)]
        out = buffer[0][:n]
        with quiet(xp):
            for k, (i, j) in enumerate(index[lo:hi]):
                xp.greater(means[i], means[j], out=out[k])
        return out

    return signals


_SMA_CROSS_DEFAULTS = {"p_fast": 20, "p_slow": 50}  # f_sma_cross's signature


def _sma_pairs(combos: Sequence[Mapping[str, Any]]) -> list[tuple[int, int]]:
    """``(p_fast, p_slow)`` of each combination (the factor's defaults where absent)."""
    for combo in combos:
        unknown = sorted(set(combo) - set(_SMA_CROSS_DEFAULTS))
        if unknown:
            raise TypeError(f"f_sma_cross() got an unexpected keyword argument {unknown[0]!r}")
    return [(int(c.get("p_fast", 20)), int(c.get("p_slow", 50))) for c in combos]


def _sma_cross_ladder(panel: Any, combos: Sequence[Mapping[str, Any]]
                      ) -> Callable[[int, int], Array]:
    # a plain running sum, as the ladder always used and as vectorbt's MA: where two averages
    # tie to the last bit the decision is then the one they make (module rolling, compensated)
    return sma_cross_signals(panel.close, _sma_pairs(combos), lag=1, min_periods=1,
                             compensated=False)


def _sma_cross_bytes(combos: Sequence[Mapping[str, Any]], rows: int) -> int:
    return 8 * rows * len({w for pair in _sma_pairs(combos) for w in pair})


#: ``f_sma_cross``'s ladder fast path: each window's moving average once per block of assets
#: (from a plain running sum, as the ladder kernels and vectorbt compute them, so that ladder
#: results do not change at ties), every pair one comparison (booleans: True is +1)
SMA_CROSS_LADDER = LadderEvaluator(prepare=_sma_cross_ladder, per_asset=True,
                                   bytes_per_asset=_sma_cross_bytes)


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
empty window silenced. ``f_sma_cross_fast`` computes the same values without the loop; ladders
of either take ``SMA_CROSS_LADDER``."""
register("f_sma_cross", ladder=SMA_CROSS_LADDER)(f_sma_cross)


@register("f_sma_cross_fast", ladder=SMA_CROSS_LADDER)
def f_sma_cross_fast(panel: Any, /, p_fast: int = 20, p_slow: int = 50) -> Any:
    """Vectorized ``f_sma_cross``: the same values in O(T x A), without a loop over dates.

    +1 where the mean of ``close[t-p_fast:t]`` exceeds the mean of ``close[t-p_slow:t]``, else
    -1 (NaN comparisons give -1, as in the guide). The means come from a compensated prefix sum
    (:func:`sma_cross_signals`), within a few units in the last place of the loop's, so the two
    agree except where the two means are equal to the last bits (they never were in the tests,
    on random walks and on the 505 S&P stocks); equal windows give equal means, as in the loop.
    """
    close = panel.close
    xp = array_namespace(close)
    long = sma_cross_signals(close, [(p_fast, p_slow)], lag=1, min_periods=1)(0, 1)[0]
    return long.astype(xp.float64) * 2.0 - 1.0


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
