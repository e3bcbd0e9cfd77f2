"""Factor primitives: NaN-aware, vectorized over dates and assets, numpy or cupy.

Shapes and NaN policy
---------------------
* Time-series primitives (rolling_*, ewm_mean, returns, sma, ema, rsi, macd, bollinger, atr,
  momentum_12_1) take ``(T,)`` or ``(T, A)`` arrays and work down axis 0 (dates). The value in
  row ``t`` uses rows ``<= t`` only. NaN means "no data": it is skipped inside a window, and a
  result is NaN while fewer than ``min_periods`` valid observations are available (the rolling
  windows also treat +/-inf as missing, as pandas does).
* Cross-sectional primitives (zscore_cross_sectional, rank_cross_sectional, demean, winsorize,
  neutralize) take one cross-section ``(A,)`` or a panel ``(T, A)`` and work along the last axis
  (assets), row by row. NaN entries stay NaN and are ignored by the row statistics.

Every primitive returns float64 arrays of the input's namespace: numpy in, numpy out; cupy in,
cupy out. There is no Python loop over dates. The rolling windows (``rolling_*``, and ``sma`` and
``bollinger`` through them) live in :mod:`mts1b_quantkit.factors.rolling`, which states their
NaN policy and precision; they cost O(T x A) whatever the window.
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any, NamedTuple

import numpy as np

from mts1b_quantkit._xp import is_cupy
from mts1b_quantkit.errors import FactorError
from mts1b_quantkit.factors._common import Array
from mts1b_quantkit.factors._common import check_int as _check_int
from mts1b_quantkit.factors._common import quiet as _quiet
from mts1b_quantkit.factors._common import ts as _ts
from mts1b_quantkit.factors._common import xs as _xs
from mts1b_quantkit.factors.rolling import (
    rolling_max,
    rolling_mean,
    rolling_min,
    rolling_std,
    rolling_sum,
)

__all__ = [
    "MACD",
    "Bollinger",
    "atr",
    "bollinger",
    "demean",
    "ema",
    "ewm_mean",
    "log_returns",
    "macd",
    "momentum_12_1",
    "neutralize",
    "rank_cross_sectional",
    "returns",
    "rolling_max",
    "rolling_mean",
    "rolling_min",
    "rolling_std",
    "rolling_sum",
    "rsi",
    "shift",
    "sma",
    "winsorize",
    "zscore_cross_sectional",
]


# -- helpers ------------------------------------------------------------------------------------
def shift(x: Any, periods: int = 1) -> Array:
    """Rows moved down by ``periods`` (``periods >= 0``); the first rows become NaN.

    ``shift(x, 1)[t] == x[t - 1]``: a lag, never a lead (a negative shift would read the future).
    """
    p = _check_int(periods, "periods", minimum=0)
    xp, a = _ts(x)
    out = xp.full(a.shape, xp.nan)
    if p < a.shape[0]:
        out[p:] = a[: a.shape[0] - p]
    return out


# -- exponential weighting -----------------------------------------------------------------------
def _alpha(span: float | None, com: float | None, halflife: float | None,
           alpha: float | None) -> float:
    given = {k: v for k, v in
             {"span": span, "com": com, "halflife": halflife, "alpha": alpha}.items()
             if v is not None}
    if len(given) != 1:
        raise FactorError("give exactly one of span, com, halflife, alpha; got "
                          f"{sorted(given) or 'none'}", field="span", value=sorted(given))
    (name, value), = given.items()
    v = float(value)
    if name == "span":
        if v < 1:
            raise FactorError(f"span must be >= 1; got {value!r}", field="span", value=value)
        return 2.0 / (v + 1.0)
    if name == "com":
        if v < 0:
            raise FactorError(f"com must be >= 0; got {value!r}", field="com", value=value)
        return 1.0 / (1.0 + v)
    if name == "halflife":
        if v <= 0:
            raise FactorError(f"halflife must be > 0; got {value!r}", field="halflife",
                              value=value)
        return 1.0 - math.exp(-math.log(2.0) / v)
    if not 0.0 < v <= 1.0:
        raise FactorError(f"alpha must be in (0, 1]; got {value!r}", field="alpha", value=value)
    return v


def _decay_filter(u: Array, decay: float, xp: ModuleType) -> Array:
    """``y[t] = decay * y[t-1] + u[t]`` down axis 0 (a first-order linear recurrence)."""
    if is_cupy(u):  # pragma: no cover - GPU only
        import importlib

        cusignal = importlib.import_module("cupyx.scipy.signal")
        return cusignal.lfilter(xp.asarray([1.0]), xp.asarray([1.0, -decay]), u, axis=0)
    from scipy import signal

    return signal.lfilter([1.0], [1.0, -decay], u, axis=0)


def ewm_mean(x: Any, *, span: float | None = None, com: float | None = None,
             halflife: float | None = None, alpha: float | None = None, adjust: bool = True,
             min_periods: int = 0) -> Array:
    """Exponentially weighted mean down axis 0, equal to ``DataFrame.ewm(...).mean()``.

    Exactly one of ``span``, ``com``, ``halflife``, ``alpha`` sets the decay. NaNs are skipped but
    still age the older observations (pandas' ``ignore_na=False``). ``adjust=True`` uses the
    weights ``(1 - alpha)**i`` over all past observations; ``adjust=False`` is the recursion
    ``y[t] = (1 - alpha) * y[t-1] + alpha * x[t]`` started at the first observation. The result is
    NaN until ``max(min_periods, 1)`` observations have been seen.
    """
    a_ = _alpha(span, com, halflife, alpha)
    mp = _check_int(min_periods, "min_periods", minimum=0)
    xp, a = _ts(x)
    if a.shape[0] == 0:
        return a.copy()
    valid = ~xp.isnan(a)
    vf = valid.astype(xp.float64)
    decay = 1.0 - a_
    if adjust:
        weight = vf
    else:
        first = valid & (xp.cumsum(vf, axis=0) == 1.0)
        weight = xp.where(first, 1.0, a_ * vf)
    num = _decay_filter(xp.where(valid, a, 0.0) * weight, decay, xp)
    den = _decay_filter(weight, decay, xp)
    nobs = xp.cumsum(vf, axis=0)
    with _quiet(xp):
        out = num / den
    return xp.where(nobs >= max(mp, 1), out, xp.nan)


# -- returns and technical indicators -----------------------------------------------------------
def returns(x: Any, periods: int = 1) -> Array:
    """Simple returns ``x[t] / x[t - periods] - 1`` (pandas ``pct_change(fill_method=None)``).

    The first ``periods`` rows are NaN; a NaN price gives NaN returns on both sides of it.
    """
    p = _check_int(periods, "periods")
    xp, a = _ts(x)
    out = xp.full(a.shape, xp.nan)
    if p < a.shape[0]:
        with _quiet(xp):
            out[p:] = a[p:] / a[:-p] - 1.0
    return out


def log_returns(x: Any, periods: int = 1) -> Array:
    """Log returns ``log(x[t] / x[t - periods])``; first ``periods`` rows NaN."""
    p = _check_int(periods, "periods")
    xp, a = _ts(x)
    out = xp.full(a.shape, xp.nan)
    if p < a.shape[0]:
        with _quiet(xp):
            out[p:] = xp.log(a[p:] / a[:-p])
    return out


def sma(x: Any, window: int, *, min_periods: int | None = None) -> Array:
    """Simple moving average over the last ``window`` rows, row ``t`` included."""
    return rolling_mean(x, window, min_periods=min_periods)


def ema(x: Any, span: float, *, adjust: bool = False, min_periods: int = 0) -> Array:
    """Exponential moving average with ``alpha = 2 / (span + 1)``.

    Defaults to the trading-platform recursion (``adjust=False``, pandas
    ``ewm(span, adjust=False).mean()``).
    """
    return ewm_mean(x, span=span, adjust=adjust, min_periods=min_periods)


def rsi(close: Any, window: int = 14) -> Array:
    """Relative strength index in ``[0, 100]`` with Wilder's smoothing.

    Average gains and losses are ``ewm(alpha=1/window, adjust=False)`` of the positive and negative
    close-to-close changes (the pandas-ta convention); NaN until ``window`` changes have been seen
    and where both averages are zero (a flat price).
    """
    w = _check_int(window, "window")
    xp, c = _ts(close, "close")
    delta = xp.full(c.shape, xp.nan)
    if c.shape[0] > 1:
        delta[1:] = c[1:] - c[:-1]
    nan = xp.isnan(delta)
    gain = xp.where(nan, xp.nan, xp.maximum(delta, 0.0))
    loss = xp.where(nan, xp.nan, xp.maximum(-delta, 0.0))
    avg_gain = ewm_mean(gain, alpha=1.0 / w, adjust=False, min_periods=w)
    avg_loss = ewm_mean(loss, alpha=1.0 / w, adjust=False, min_periods=w)
    with _quiet(xp):
        return 100.0 * avg_gain / (avg_gain + avg_loss)


class MACD(NamedTuple):
    """MACD line ``ema(fast) - ema(slow)``, its ``signal`` EMA and ``hist = macd - signal``."""

    macd: Array
    signal: Array
    hist: Array


def macd(close: Any, fast: int = 12, slow: int = 26, signal: int = 9) -> MACD:
    """Moving-average convergence/divergence with ``adjust=False`` EMAs (pandas-ta convention)."""
    f = _check_int(fast, "fast")
    s = _check_int(slow, "slow")
    g = _check_int(signal, "signal")
    if f >= s:
        raise FactorError(f"fast ({f}) must be shorter than slow ({s})", field="fast", value=f)
    line = ema(close, f) - ema(close, s)
    sig = ema(line, g)
    return MACD(line, sig, line - sig)


class Bollinger(NamedTuple):
    """Middle band (SMA) and the bands ``k`` standard deviations above and below it."""

    mid: Array
    upper: Array
    lower: Array


def bollinger(close: Any, window: int = 20, k: float = 2.0, *, ddof: int = 0) -> Bollinger:
    """Bollinger bands: SMA(window) +/- k * rolling std (population std, ``ddof=0``, by default)."""
    mid = rolling_mean(close, window)
    sd = rolling_std(close, window, ddof=ddof)
    return Bollinger(mid, mid + k * sd, mid - k * sd)


def atr(high: Any, low: Any, close: Any, window: int = 14) -> Array:
    """Average true range with Wilder's smoothing (``ewm(alpha=1/window, adjust=False)``).

    True range is ``max(high - low, |high - close[t-1]|, |low - close[t-1]|)``; on the first row
    (no previous close) it is ``high - low``. NaN until ``window`` true ranges have been seen.
    """
    w = _check_int(window, "window")
    xp, h = _ts(high, "high")
    _, lo = _ts(low, "low")
    _, c = _ts(close, "close")
    if not (h.shape == lo.shape == c.shape):
        raise FactorError(f"high, low, close shapes differ: {h.shape}, {lo.shape}, {c.shape}",
                          field="high", value=h.shape)
    prev = shift(c, 1)
    hl = h - lo
    gap = xp.fmax(xp.abs(h - prev), xp.abs(lo - prev))
    tr = xp.where(xp.isnan(hl), xp.nan, xp.fmax(hl, gap))
    return ewm_mean(tr, alpha=1.0 / w, adjust=False, min_periods=w)


def momentum_12_1(close: Any, h_long: int = 252, h_skip: int = 21) -> Array:
    """Twelve-minus-one momentum: ``close[t - h_skip] / close[t - h_long] - 1``.

    The return over the last ``h_long`` rows, skipping the most recent ``h_skip`` (short-term
    reversal). NaN for the first ``h_long`` rows.
    """
    hl = _check_int(h_long, "h_long")
    hs = _check_int(h_skip, "h_skip", minimum=0)
    if hs >= hl:
        raise FactorError(f"h_skip ({hs}) must be smaller than h_long ({hl})",
                          field="h_skip", value=hs)
    xp, c = _ts(close, "close")
    out = xp.full(c.shape, xp.nan)
    n = c.shape[0]
    if hl < n:
        with _quiet(xp):
            out[hl:] = c[hl - hs: n - hs] / c[: n - hl] - 1.0
    return out


# -- cross-sectional transforms -----------------------------------------------------------------
def _row_stats(a: Array, xp: ModuleType) -> tuple[Array, Array, Array]:
    valid = ~xp.isnan(a)
    n = xp.sum(valid, axis=-1, keepdims=True).astype(xp.float64)
    with _quiet(xp):
        mean = xp.sum(xp.where(valid, a, 0.0), axis=-1, keepdims=True) / n
    return valid, n, mean


def zscore_cross_sectional(x: Any, *, ddof: int = 0) -> Array:
    """``(x - mean) / std`` across assets (last axis), ignoring NaN.

    Works on one cross-section ``(A,)`` or row by row on ``(T, A)``. ``ddof=0`` (population std,
    as ``scipy.stats.zscore``). A row with zero dispersion or too few values is all NaN.
    """
    d = _check_int(ddof, "ddof", minimum=0)
    xp, a = _xs(x)
    valid, n, mean = _row_stats(a, xp)
    dev = xp.where(valid, a - mean, 0.0)
    with _quiet(xp):
        sd = xp.sqrt(xp.sum(dev * dev, axis=-1, keepdims=True) / (n - d))
        z = (a - mean) / sd
    ok = (n > d) & (sd > 0)
    return xp.where(valid & ok, z, xp.nan)


def rank_cross_sectional(x: Any, *, pct: bool = True, ascending: bool = True) -> Array:
    """Average ranks across assets (last axis), NaN kept as NaN; ties share their mean rank.

    ``pct=True`` divides by the number of valid values, giving ``(0, 1]`` like
    ``DataFrame.rank(axis=1, pct=True)``; ``pct=False`` gives ranks ``1..n``.
    """
    xp, a = _xs(x)
    shape = a.shape
    width = shape[-1]
    rows = a.reshape(-1, width) if width else a.reshape(-1, 0)
    if not ascending:
        rows = -rows
    r = rows.shape[0]
    if r == 0 or width == 0:
        return xp.full(shape, xp.nan)
    valid = ~xp.isnan(rows)
    order = xp.argsort(rows, axis=-1)  # NaN sorts last in numpy and cupy
    srt = xp.take_along_axis(rows, order, axis=-1)
    idx = xp.broadcast_to(xp.arange(width, dtype=xp.float64), (r, width))
    newg = xp.ones((r, width), dtype=bool)
    newg[:, 1:] = srt[:, 1:] != srt[:, :-1]
    last = xp.ones((r, width), dtype=bool)
    last[:, :-1] = newg[:, 1:]
    gid = xp.cumsum(newg, axis=-1) - 1 + (xp.arange(r) * width)[:, None]
    first_pos = xp.zeros(r * width, dtype=xp.float64)
    last_pos = xp.zeros(r * width, dtype=xp.float64)
    first_pos[gid[newg]] = idx[newg]
    last_pos[gid[last]] = idx[last]
    avg = (first_pos[gid] + last_pos[gid]) / 2.0 + 1.0
    ranks = xp.empty((r, width), dtype=xp.float64)
    ranks[xp.arange(r)[:, None], order] = avg
    ranks = xp.where(valid, ranks, xp.nan)
    if pct:
        n = xp.sum(valid, axis=-1, keepdims=True).astype(xp.float64)
        with _quiet(xp):
            ranks = ranks / n
    return ranks.reshape(shape)


def _group_codes(groups: Any, shape: tuple[int, ...]) -> tuple[np.ndarray, int]:
    g = np.asarray(groups.get() if is_cupy(groups) else groups)
    if g.shape != shape[-1:] and g.shape != shape:
        raise FactorError(f"groups must have shape {shape[-1:]} or {shape}; got {g.shape}",
                          field="groups", value=g.shape)
    _, codes = np.unique(g.reshape(-1), return_inverse=True)
    return codes.reshape(g.shape), int(codes.max()) + 1 if codes.size else 0


def _group_mean(a: Array, groups: Any, xp: ModuleType) -> Array:
    """Per-row, per-group NaN-aware mean broadcast back to ``a``'s shape."""
    codes_np, n_groups = _group_codes(groups, a.shape)
    rows = a.reshape(-1, a.shape[-1])
    r, width = rows.shape
    codes = xp.asarray(codes_np)
    if codes.ndim == 1 or codes.shape == (width,):
        codes = xp.broadcast_to(codes.reshape(-1), (r, width))
    else:
        codes = codes.reshape(r, width)
    flat = (codes + (xp.arange(r) * n_groups)[:, None]).reshape(-1)
    valid = ~xp.isnan(rows)
    sums = xp.bincount(flat, weights=xp.where(valid, rows, 0.0).reshape(-1),
                       minlength=r * n_groups)
    counts = xp.bincount(flat, weights=valid.reshape(-1).astype(xp.float64),
                         minlength=r * n_groups)
    with _quiet(xp):
        means = sums / counts
    return means[flat].reshape(a.shape)


def demean(x: Any, groups: Any = None) -> Array:
    """Subtract the cross-sectional mean (per group when ``groups`` is given), ignoring NaN.

    ``groups`` is ``(A,)`` (fixed labels, e.g. sectors) or ``(T, A)`` (labels per date); any
    hashable labels work.
    """
    xp, a = _xs(x)
    if groups is None:
        _, _, mean = _row_stats(a, xp)
        return a - mean
    return a - _group_mean(a, groups, xp)


def winsorize(x: Any, lower: float = 0.01, upper: float = 0.99) -> Array:
    """Clip each cross-section to its ``[lower, upper]`` quantiles.

    Quantiles are per row, NaN ignored, linearly interpolated (those of ``numpy.nanquantile``).
    """
    if not 0.0 <= lower <= upper <= 1.0:
        raise FactorError(f"need 0 <= lower <= upper <= 1; got lower={lower!r}, upper={upper!r}",
                          field="lower", value=lower)
    xp, a = _xs(x)
    rows = a.reshape(-1, a.shape[-1])
    srt = xp.sort(rows, axis=-1)  # NaN last
    n = xp.sum(~xp.isnan(rows), axis=-1)

    def quantile(q: float) -> Array:
        pos = q * (n - 1).astype(xp.float64)
        lo = xp.clip(xp.floor(pos), 0, None).astype(xp.int64)
        hi = xp.minimum(lo + 1, xp.maximum(n - 1, 0))
        frac = pos - lo
        a_lo = xp.take_along_axis(srt, lo[:, None], axis=-1)[:, 0]
        a_hi = xp.take_along_axis(srt, hi[:, None], axis=-1)[:, 0]
        value = xp.where(frac >= 0.5, a_hi - (a_hi - a_lo) * (1.0 - frac),
                         a_lo + (a_hi - a_lo) * frac)
        return xp.where(n > 0, value, xp.nan)[:, None]

    clipped = xp.minimum(xp.maximum(rows, quantile(lower)), quantile(upper))
    return xp.where(xp.isnan(rows), xp.nan, clipped).reshape(a.shape)


def neutralize(x: Any, groups: Any = None, *, exposures: Any = None) -> Array:
    """Remove group means and/or linear exposures from each cross-section.

    * ``groups`` (``(A,)`` or ``(T, A)`` labels): subtract each group's mean (industry/sector
      neutral).
    * ``exposures`` (``(A, K)`` or ``(T, A, K)``): then replace each row by the residual of a
      least-squares regression on the exposures (plus an intercept), using the assets where the
      value and every exposure are finite.

    NaN stays NaN. With neither argument the result is ``demean(x)``.
    """
    xp, a = _xs(x)
    out = demean(a, groups)
    if exposures is None:
        return out
    e = xp.asarray(exposures, dtype=xp.float64)
    rows = out.reshape(-1, a.shape[-1])
    r, width = rows.shape
    if e.ndim == 2 and e.shape[0] == width:
        e = xp.broadcast_to(e, (r, *e.shape))
    elif e.ndim == 3 and e.shape[:2] == (r, width):
        pass
    else:
        raise FactorError(f"exposures must be (A, K) or (T, A, K) matching x {a.shape}; "
                          f"got {e.shape}", field="exposures", value=e.shape)
    design = xp.concatenate([xp.ones((r, width, 1)), e], axis=-1)  # (r, A, K+1)
    ok = ~xp.isnan(rows) & ~xp.any(xp.isnan(design), axis=-1)
    dz = xp.where(ok[..., None], design, 0.0)
    yz = xp.where(ok, rows, 0.0)
    gram = xp.einsum("rak,ral->rkl", dz, dz)
    rhs = xp.einsum("rak,ra->rk", dz, yz)
    # batched pseudo-inverse solve: robust to rows with rank-deficient designs
    beta = xp.einsum("rkl,rl->rk", xp.linalg.pinv(gram), rhs)
    resid = rows - xp.einsum("rak,rk->ra", xp.where(xp.isnan(design), 0.0, design), beta)
    return xp.where(ok, resid, xp.nan).reshape(a.shape)
