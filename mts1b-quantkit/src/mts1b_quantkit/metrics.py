"""Performance metrics of return series, with empyrical's conventions as the defaults.

Conventions (the same as empyrical's, so numbers can be compared one for one):

* ``returns`` are simple (not log) per-period returns, non-cumulative.
* ``periods_per_year=252`` (daily data); pass 52 for weekly, 12 for monthly.
* ``risk_free`` and ``required_return`` are **per period** (a daily rate for daily data).
* Standard deviations are sample ones (``ddof=1``); downside deviation is the root mean square of
  the returns below ``required_return`` (the others count as zero), over all periods.
* NaN returns are skipped by means and deviations (``nanmean``/``nanstd``), count as 0 in
  compounding (cagr, drawdown), yet still count as periods in ``len(returns)`` for cagr's number
  of years, exactly as in empyrical.

Shapes: every function takes a 1-D ``(T,)`` series or a 2-D ``(T, N)`` array (one series per
column; the result is then an ``(N,)`` array), numpy arrays or pandas Series/DataFrames.
1-D input gives a Python ``float``.

No metric here imports scipy: the normal CDF and quantile come from :mod:`math` and
:mod:`statistics`, skewness and kurtosis are computed with scipy's own formula (see
:func:`_skew_kurtosis`), so the first metric a process computes does not pay the second or so
that importing ``scipy.stats`` takes. Only :mod:`mts1b_quantkit.analytics`' t-test still needs
it, through :func:`_stats`.
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from mts1b_quantkit._xp import as_float_array
from mts1b_quantkit.errors import MetricsError
from mts1b_quantkit.factors.primitives import rank_cross_sectional

__all__ = [
    "alpha",
    "alpha_beta",
    "annual_return",
    "annual_volatility",
    "annualized_volatility",
    "beta",
    "cagr",
    "calmar",
    "conditional_value_at_risk",
    "cum_returns",
    "cum_returns_final",
    "deflated_sharpe_ratio",
    "downside_deviation",
    "downside_risk",
    "drawdown_series",
    "excess_sharpe",
    "expected_max_sharpe",
    "hit_rate",
    "information_coefficient",
    "information_ratio",
    "max_drawdown",
    "omega",
    "probabilistic_sharpe_ratio",
    "sharpe",
    "sortino",
    "summary",
    "tail_ratio",
    "turnover",
    "value_at_risk",
    "volatility",
]

FloatArray = npt.NDArray[np.float64]
Result = Any  # float for 1-D input, (N,) float64 array for 2-D input

EULER_GAMMA = 0.5772156649015329


def _stats() -> Any:
    """scipy.stats, imported on first use: importing it takes longer than everything else a
    metric does, so only the functions that genuinely need it (the t-test of
    :func:`mts1b_quantkit.analytics.ic_summary`) call this."""
    from scipy import stats

    return stats


_SQRT1_2 = math.sqrt(0.5)
_STANDARD_NORMAL = statistics.NormalDist()


def _norm_cdf(z: float) -> float:
    """The standard normal CDF, computed the way scipy's ``ndtr`` (``scipy.stats.norm.cdf``) does:
    ``0.5 + 0.5 erf(z / sqrt 2)`` near zero and ``0.5 erfc(|z| / sqrt 2)`` (or one minus it) in
    the tails, so small tail probabilities keep their relative precision. ``math.erf``/``erfc``
    are the C library's rather than scipy's own, so the two agree to a few ulp (relative
    differences below 5e-15 for ``|z| < 10``), not always bit for bit."""
    x = z * _SQRT1_2
    if abs(x) < _SQRT1_2:
        return 0.5 + 0.5 * math.erf(x)
    tail = 0.5 * math.erfc(abs(x))
    return 1.0 - tail if x > 0 else tail


def _norm_ppf(p: float) -> float:
    """The standard normal quantile (``scipy.stats.norm.ppf``), by the standard library's
    ``NormalDist.inv_cdf`` (Wichura's AS241, about 1e-16 relative; it agrees with scipy's
    ``ndtri`` to a couple of ulp)."""
    return _STANDARD_NORMAL.inv_cdf(p)


def _skew_kurtosis(col: FloatArray) -> tuple[float, float]:
    """Biased sample skewness ``m3 / m2**1.5`` and Pearson (non-excess) kurtosis ``m4 / m2**2``
    of a NaN-free 1-D sample: ``scipy.stats.skew(col)`` and ``kurtosis(col, fisher=False)``
    with the same operations in the same order (mean, deviations, ``mean(d**2)``,
    ``mean(d**2 * d)``, ``mean((d**2)**2)``), so the numbers are scipy's to the last bit. Like
    scipy, a sample whose spread is lost in rounding (``m2 <= (eps * mean)**2``, constant data
    included) gives NaN for both."""
    if col.size == 0:
        return float("nan"), float("nan")
    mean = np.mean(col)
    d = col - mean
    d2 = d**2
    m2 = np.mean(d2)
    if m2 <= (np.finfo(np.float64).eps * mean) ** 2:
        return float("nan"), float("nan")
    m3 = np.mean(d2 * d)
    m4 = np.mean(d2**2)
    return float(m3 / m2**1.5), float(m4 / m2**2.0)


# -- input handling -----------------------------------------------------------------------------
def _values(x: Any, name: str) -> FloatArray:
    try:
        a = as_float_array(x)
    except (TypeError, ValueError) as exc:
        raise MetricsError(f"{name} must be numeric: {exc}", field=name) from exc
    if a.ndim not in (1, 2):
        raise MetricsError(f"{name} must be 1-D (T,) or 2-D (T, N); got shape {a.shape}",
                           field=name, value=a.shape)
    return a


def _out(values: Any, one_d: bool) -> Result:
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.reshape(-1)[0]) if one_d else arr


def _nanmean(a: FloatArray) -> FloatArray:
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.asarray(np.nanmean(a, axis=0), dtype=np.float64)


def _nanstd(a: FloatArray, ddof: int = 1) -> FloatArray:
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.asarray(np.nanstd(a, axis=0, ddof=ddof), dtype=np.float64)


def _check_ppy(periods_per_year: float) -> float:
    if not (isinstance(periods_per_year, int | float) and periods_per_year > 0):
        raise MetricsError(f"periods_per_year must be > 0; got {periods_per_year!r}",
                           field="periods_per_year", value=periods_per_year)
    return float(periods_per_year)


def _nan_out(a: FloatArray) -> Result:
    """All-NaN result for ``a``: ``nan`` for one series, an ``(N,)`` NaN array for ``(T, N)``."""
    return _out(np.full(a.shape[1:], np.nan), a.ndim == 1)


def _align(returns: Any, other: Any, name: str) -> tuple[FloatArray, FloatArray]:
    """Align two series on their index when both are pandas objects (as empyrical does)."""
    if hasattr(returns, "index") and hasattr(other, "index"):
        import pandas as pd  # only reached with pandas inputs, so pandas is installed

        r_frame = returns.to_frame() if isinstance(returns, pd.Series) else returns
        joined = pd.concat([r_frame, other], axis=1, join="outer")
        width = r_frame.shape[1]
        left = joined.iloc[:, :width]
        right = joined.iloc[:, width]
        r_vals = _values(left.iloc[:, 0] if isinstance(returns, pd.Series) else left, "returns")
        return r_vals, _values(right, name)
    r, o = _values(returns, "returns"), _values(other, name)
    if o.shape[0] != r.shape[0]:
        raise MetricsError(f"{name} has {o.shape[0]} periods, returns has {r.shape[0]}",
                           field=name, value=o.shape[0])
    return r, o


# -- compounding and drawdown -------------------------------------------------------------------
def cum_returns(returns: Any, starting_value: float = 0.0) -> FloatArray:
    """Compounded returns ``prod(1 + r) - 1`` at every period (NaN counts as 0).

    With ``starting_value != 0`` the result is the value path ``starting_value * prod(1 + r)``.
    Shape as the input.
    """
    a = _values(returns, "returns")
    growth = np.cumprod(np.where(np.isnan(a), 0.0, a) + 1.0, axis=0)
    out = growth - 1.0 if starting_value == 0 else growth * starting_value
    return np.asarray(out, dtype=np.float64)


def cum_returns_final(returns: Any, starting_value: float = 0.0) -> Result:
    """Total compounded return over the whole series (NaN counts as 0)."""
    a = _values(returns, "returns")
    if a.shape[0] == 0:
        return _nan_out(a)
    total = np.nanprod(a + 1.0, axis=0)
    return _out(total - 1.0 if starting_value == 0 else total * starting_value, a.ndim == 1)


def drawdown_series(returns: Any) -> FloatArray:
    """Drawdown from the running peak at every period, ``<= 0`` (the first peak is the start)."""
    a = _values(returns, "returns")
    value = np.empty((a.shape[0] + 1, *a.shape[1:]))
    value[0] = 100.0
    value[1:] = cum_returns(a, starting_value=100.0)
    peak = np.fmax.accumulate(value, axis=0)
    return ((value - peak) / peak)[1:]


def max_drawdown(returns: Any) -> Result:
    """Largest peak-to-trough loss as a negative fraction (``-0.25`` is a 25% drawdown)."""
    a = _values(returns, "returns")
    if a.shape[0] < 1:
        return _nan_out(a)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return _out(np.nanmin(drawdown_series(a), axis=0), a.ndim == 1)


def cagr(returns: Any, *, periods_per_year: float = 252) -> Result:
    """Compound annual growth rate: ``(prod(1 + r)) ** (periods_per_year / T) - 1``."""
    ppy = _check_ppy(periods_per_year)
    a = _values(returns, "returns")
    if a.shape[0] < 1:
        return _nan_out(a)
    years = a.shape[0] / ppy
    ending = np.nanprod(a + 1.0, axis=0)
    with np.errstate(invalid="ignore"):
        return _out(ending ** (1.0 / years) - 1.0, a.ndim == 1)


annual_return = cagr


def volatility(returns: Any, *, periods_per_year: float = 252, alpha: float = 2.0) -> Result:
    """Annualized standard deviation: ``nanstd(r, ddof=1) * periods_per_year ** (1 / alpha)``."""
    ppy = _check_ppy(periods_per_year)
    a = _values(returns, "returns")
    if a.shape[0] < 2:
        return _nan_out(a)
    return _out(_nanstd(a) * ppy ** (1.0 / alpha), a.ndim == 1)


annual_volatility = volatility
annualized_volatility = volatility


def calmar(returns: Any, *, periods_per_year: float = 252) -> Result:
    """CAGR divided by ``|max drawdown|``; NaN when there is no drawdown."""
    a = _values(returns, "returns")
    mdd = np.atleast_1d(np.asarray(max_drawdown(a), dtype=np.float64))
    ann = np.atleast_1d(np.asarray(cagr(a, periods_per_year=periods_per_year)))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(mdd < 0, ann / np.abs(mdd), np.nan)
    ratio = np.where(np.isinf(ratio), np.nan, ratio)
    return _out(ratio, a.ndim == 1)


# -- risk-adjusted ratios -----------------------------------------------------------------------
def _zero_dispersion(a: FloatArray, std: FloatArray) -> FloatArray:
    with warnings.catch_warnings(), np.errstate(invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        constant = (np.nanmax(a, axis=0) == np.nanmin(a, axis=0)) & np.isfinite(std)
    return np.where(constant, 0.0, std)


def sharpe(returns: Any, risk_free: float | Any = 0.0, *,
           periods_per_year: float = 252) -> Result:
    """Annualized Sharpe ratio ``mean(r - rf) / std(r - rf, ddof=1) * sqrt(periods_per_year)``.

    ``risk_free`` is per period (scalar or a series like ``returns``). NaN for fewer than 2
    periods; a constant series has zero dispersion (inf, or NaN for a zero mean).
    """
    ppy = _check_ppy(periods_per_year)
    a = _values(returns, "returns")
    if a.shape[0] < 2:
        return _nan_out(a)
    adj = a - _rf(risk_free, a)
    std = _zero_dispersion(adj, _nanstd(adj))
    with np.errstate(divide="ignore", invalid="ignore"):
        return _out(_nanmean(adj) / std * np.sqrt(ppy), a.ndim == 1)


def _rf(risk_free: Any, a: FloatArray) -> Any:
    if np.isscalar(risk_free):
        return float(risk_free)  # type: ignore[arg-type]
    rf = _values(risk_free, "risk_free")
    if rf.ndim == 1 and a.ndim == 2:
        rf = rf[:, None]
    return rf


def downside_deviation(returns: Any, required_return: float | Any = 0.0, *,
                       periods_per_year: float = 252) -> Result:
    """Annualized downside deviation: ``sqrt(nanmean(min(r - required, 0) ** 2) * ppy)``."""
    ppy = _check_ppy(periods_per_year)
    a = _values(returns, "returns")
    if a.shape[0] < 1:
        return _nan_out(a)
    diff = np.clip(a - _rf(required_return, a), -np.inf, 0.0)
    return _out(np.sqrt(_nanmean(diff * diff)) * np.sqrt(ppy), a.ndim == 1)


downside_risk = downside_deviation


def sortino(returns: Any, required_return: float | Any = 0.0, *,
            periods_per_year: float = 252) -> Result:
    """Sortino ratio: annualized mean excess return over the annualized downside deviation."""
    ppy = _check_ppy(periods_per_year)
    a = _values(returns, "returns")
    if a.shape[0] < 2:
        return _nan_out(a)
    mean = _nanmean(a - _rf(required_return, a)) * ppy
    dd = np.asarray(downside_deviation(a, required_return, periods_per_year=ppy))
    with np.errstate(divide="ignore", invalid="ignore"):
        return _out(mean / dd, a.ndim == 1)


def omega(returns: Any, risk_free: float = 0.0, required_return: float = 0.0, *,
          periods_per_year: float = 252) -> Result:
    """Omega ratio: sum of gains over sum of losses around a threshold.

    ``required_return`` is **annual** and de-annualized as ``(1 + R) ** (1 / ppy) - 1`` (as in
    empyrical; used as is when ``periods_per_year == 1``). NaN returns are ignored. NaN when
    there are no losses.
    """
    ppy = _check_ppy(periods_per_year)
    a = _values(returns, "returns")
    if a.shape[0] < 2:
        return _nan_out(a)
    if ppy == 1:
        threshold = required_return
    elif required_return <= -1:
        return _nan_out(a)
    else:
        threshold = (1 + required_return) ** (1.0 / ppy) - 1
    excess = a - risk_free - threshold
    numer = np.sum(np.where(excess > 0.0, excess, 0.0), axis=0)
    denom = -np.sum(np.where(excess < 0.0, excess, 0.0), axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return _out(np.where(denom > 0.0, numer / denom, np.nan), a.ndim == 1)


def _columns(a: FloatArray) -> list[FloatArray]:
    return [a] if a.ndim == 1 else [a[:, j] for j in range(a.shape[1])]


def _per_column(a: FloatArray, fn: Callable[[FloatArray], float]) -> Result:
    values = [fn(col[~np.isnan(col)]) for col in _columns(a)]
    return values[0] if a.ndim == 1 else np.asarray(values, dtype=np.float64)


def tail_ratio(returns: Any) -> Result:
    """``|95th percentile| / |5th percentile|`` of the returns (NaN ignored)."""
    a = _values(returns, "returns")

    def one(col: FloatArray) -> float:
        if col.size < 1:
            return float("nan")
        with np.errstate(divide="ignore", invalid="ignore"):
            return float(np.abs(np.percentile(col, 95)) / np.abs(np.percentile(col, 5)))

    return _per_column(a, one)


def value_at_risk(returns: Any, cutoff: float = 0.05) -> Result:
    """Historical VaR: the ``cutoff`` percentile of the returns (a negative number for losses).

    NaN returns are dropped first (empyrical would return NaN when any return is NaN; on NaN-free
    input the two agree).
    """
    if not 0.0 <= cutoff <= 1.0:
        raise MetricsError(f"cutoff must be in [0, 1]; got {cutoff!r}", field="cutoff",
                           value=cutoff)
    a = _values(returns, "returns")
    return _per_column(
        a, lambda c: float(np.percentile(c, 100 * cutoff)) if c.size else float("nan"))


def conditional_value_at_risk(returns: Any, cutoff: float = 0.05) -> Result:
    """Historical CVaR (expected shortfall): mean of the worst ``int((n - 1) * cutoff) + 1``
    returns, NaN dropped first (empyrical's definition)."""
    if not 0.0 <= cutoff <= 1.0:
        raise MetricsError(f"cutoff must be in [0, 1]; got {cutoff!r}", field="cutoff",
                           value=cutoff)
    a = _values(returns, "returns")

    def one(col: FloatArray) -> float:
        if col.size == 0:
            return float("nan")
        k = int((col.size - 1) * cutoff)
        return float(np.mean(np.partition(col, k)[: k + 1]))

    return _per_column(a, one)


# -- relative to a benchmark --------------------------------------------------------------------
def _beta_values(r: FloatArray, f: FloatArray) -> FloatArray:
    r2 = r[:, None] if r.ndim == 1 else r
    f2 = f[:, None] if f.ndim == 1 else f
    if f2.shape[1] != 1 and f2.shape != r2.shape:
        raise MetricsError(f"factor_returns must be (T,) or match returns {r.shape}; got "
                           f"{f.shape}", field="factor_returns", value=f.shape)
    if r2.shape[0] < 1 or f2.shape[0] < 2:
        return np.full(r2.shape[1], np.nan)
    independent = np.where(np.isnan(r2), np.nan, f2)
    resid = independent - _nanmean(independent)
    cov = _nanmean(resid * r2)
    var = _nanmean(resid * resid)
    var = np.where(var < 1.0e-30, np.nan, var)
    return np.asarray(cov / var, dtype=np.float64)


def beta(returns: Any, factor_returns: Any, risk_free: float = 0.0) -> Result:
    """OLS beta of ``returns`` on ``factor_returns`` over the periods where both are known.

    (``risk_free`` is accepted for empyrical compatibility; a constant shift does not change the
    slope.)
    """
    r, f = _align(returns, factor_returns, "factor_returns")
    return _out(_beta_values(r, f), r.ndim == 1)


def alpha_beta(returns: Any, factor_returns: Any, risk_free: float = 0.0, *,
               periods_per_year: float = 252) -> tuple[Result, Result]:
    """``(alpha, beta)``: annualized Jensen's alpha ``(1 + mean(r - rf - beta (f - rf))) ** ppy
    - 1`` and the OLS beta. pandas inputs are aligned on their index first."""
    ppy = _check_ppy(periods_per_year)
    r, f = _align(returns, factor_returns, "factor_returns")
    b = _beta_values(r, f)
    if r.shape[0] < 2:
        return _out(np.full(b.shape, np.nan), r.ndim == 1), _out(b, r.ndim == 1)
    r2 = r[:, None] if r.ndim == 1 else r
    f2 = f[:, None] if f.ndim == 1 else f
    resid = (r2 - risk_free) - b * (f2 - risk_free)
    a = (_nanmean(resid) + 1.0) ** ppy - 1.0
    return _out(a, r.ndim == 1), _out(b, r.ndim == 1)


def alpha(returns: Any, factor_returns: Any, risk_free: float = 0.0, *,
          periods_per_year: float = 252) -> Result:
    """Annualized Jensen's alpha (see :func:`alpha_beta`)."""
    return alpha_beta(returns, factor_returns, risk_free, periods_per_year=periods_per_year)[0]


def excess_sharpe(returns: Any, factor_returns: Any) -> Result:
    """Per-period information ratio ``mean(r - f) / std(r - f, ddof=1)`` (empyrical's
    ``excess_sharpe``; not annualized)."""
    r, f = _align(returns, factor_returns, "factor_returns")
    if r.shape[0] < 2:
        return _nan_out(r)
    active = r - (f[:, None] if (f.ndim == 1 and r.ndim == 2) else f)
    te = _zero_dispersion(active, _nanstd(active))
    with np.errstate(divide="ignore", invalid="ignore"):
        return _out(_nanmean(active) / te, r.ndim == 1)


def information_ratio(returns: Any, benchmark: Any, *, periods_per_year: float = 252) -> Result:
    """Annualized information ratio: ``excess_sharpe(returns, benchmark) * sqrt(ppy)``."""
    ppy = _check_ppy(periods_per_year)
    value = np.asarray(excess_sharpe(returns, benchmark), dtype=np.float64) * math.sqrt(ppy)
    return float(value) if value.ndim == 0 else value


# -- cross-sectional skill -----------------------------------------------------------------------
def _rowwise_pearson(x: FloatArray, y: FloatArray) -> FloatArray:
    ok = ~np.isnan(x) & ~np.isnan(y)
    n = ok.sum(axis=1).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        mx = np.where(ok, x, 0.0).sum(axis=1) / n
        my = np.where(ok, y, 0.0).sum(axis=1) / n
        dx = np.where(ok, x - mx[:, None], 0.0)
        dy = np.where(ok, y - my[:, None], 0.0)
        r = (dx * dy).sum(axis=1) / np.sqrt((dx * dx).sum(axis=1) * (dy * dy).sum(axis=1))
    return np.where(n >= 2, np.clip(r, -1.0, 1.0), np.nan)


def information_coefficient(factor: Any, forward: Any) -> FloatArray:
    """Per-date Spearman information coefficient (alphalens' convention), ``(T,)``.

    The rank correlation across the assets where both the factor and the forward return are
    known (ties get average ranks). NaN for dates with fewer than two such assets or a constant
    cross-section. ``factor[t]`` and ``forward[t]`` must be aligned: the forward return that
    starts at date ``t`` (see :func:`mts1b_quantkit.analytics.forward_returns`).
    """
    f = _values(factor, "factor")
    r = _values(forward, "forward")
    if f.ndim != 2 or f.shape != r.shape:
        raise MetricsError(f"factor and forward must both be (T, A) of one shape; got {f.shape} "
                           f"and {r.shape}", field="forward", value=r.shape)
    both = ~np.isnan(f) & ~np.isnan(r)
    rf = rank_cross_sectional(np.where(both, f, np.nan), pct=False)
    rr = rank_cross_sectional(np.where(both, r, np.nan), pct=False)
    return np.asarray(_rowwise_pearson(rf, rr), dtype=np.float64)



# -- trading statistics -------------------------------------------------------------------------
def hit_rate(returns: Any, benchmark: Any = None) -> Result:
    """Fraction of periods with a positive return (or beating ``benchmark``), NaN ignored."""
    a = _values(returns, "returns")
    if benchmark is not None:
        a, b = _align(returns, benchmark, "benchmark")
        a = a - (b[:, None] if (b.ndim == 1 and a.ndim == 2) else b)
    valid = ~np.isnan(a)
    n = valid.sum(axis=0)
    wins = (np.where(valid, a, 0.0) > 0).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return _out(np.where(n > 0, wins / np.maximum(n, 1), np.nan), a.ndim == 1)


def turnover(weights: Any, returns: Any = None) -> FloatArray:
    """One-way turnover per period: ``0.5 * sum_j |w[t, j] - w_before[t, j]|``.

    ``weights`` is ``(T, N)`` target weights (NaN = 0); the book starts empty, so row 0 is
    ``0.5 * sum |w[0]|``. Without ``returns`` the holdings before a rebalance are the previous
    targets; with ``returns`` (``(T, N)``, the return of each asset over period ``t``) they are
    the previous targets drifted by those returns. Returns a ``(T,)`` array (``.mean()`` is the
    average turnover per period).
    """
    w = _values(weights, "weights")
    if w.ndim == 1:
        w = w[:, None]
    w = np.where(np.isnan(w), 0.0, w)
    before = np.zeros_like(w)
    before[1:] = w[:-1]
    if returns is not None:
        r = _values(returns, "returns")
        r = r[:, None] if r.ndim == 1 else r
        if r.shape != w.shape:
            raise MetricsError(f"returns shape {r.shape} does not match weights {w.shape}",
                               field="returns", value=r.shape)
        r = np.where(np.isnan(r), 0.0, r)
        grown = before * (1.0 + r)
        port = 1.0 + np.sum(before * r, axis=1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            before = np.where(port != 0, grown / port, 0.0)
    return np.asarray(0.5 * np.abs(w - before).sum(axis=1), dtype=np.float64)


# -- statistical significance of a Sharpe ratio -------------------------------------------------
def _psr(sr: float, sr_star: float, n: int, skew: float, kurt: float) -> float:
    """PSR from per-period statistics (Bailey and Lopez de Prado 2012); ``kurt`` is Pearson's
    (non-excess) kurtosis."""
    if n < 2:
        return float("nan")
    var = 1.0 - skew * sr + (kurt - 1.0) / 4.0 * sr * sr
    if not var > 0:
        return float("nan")
    z = (sr - sr_star) * math.sqrt(n - 1) / math.sqrt(var)
    return _norm_cdf(z)


def _moments(col: FloatArray) -> tuple[float, int, float, float]:
    col = col[~np.isnan(col)]
    n = col.size
    if n < 3:
        return float("nan"), n, float("nan"), float("nan")
    sd = float(np.std(col, ddof=1))
    sr = float(np.mean(col)) / sd if sd > 0 else float("nan")
    g3, g4 = _skew_kurtosis(col)
    return sr, n, g3, g4


def probabilistic_sharpe_ratio(returns: Any, sr_benchmark: float = 0.0, *,
                               periods_per_year: float = 252) -> Result:
    """Probability that the true Sharpe ratio exceeds ``sr_benchmark`` (Bailey & Lopez de Prado).

    ``PSR = Phi((SR - SR*) sqrt(n - 1) / sqrt(1 - g3 SR + (g4 - 1) / 4 SR^2))`` with the
    per-period SR (``ddof=1``), sample skewness ``g3`` and Pearson kurtosis ``g4`` (both biased,
    scipy's defaults). ``sr_benchmark`` is **annualized** (the units of :func:`sharpe`) and is
    de-annualized with ``sqrt(periods_per_year)``.
    """
    ppy = _check_ppy(periods_per_year)
    a = _values(returns, "returns")
    star = sr_benchmark / math.sqrt(ppy)

    def one(col: FloatArray) -> float:
        sr, n, g3, g4 = _moments(col)
        return _psr(sr, star, n, g3, g4)

    values = [one(c) for c in _columns(a)]
    return values[0] if a.ndim == 1 else np.asarray(values)


def expected_max_sharpe(n_trials: int, sharpe_variance: float) -> float:
    """Expected maximum of ``n_trials`` Sharpe ratios with zero mean and variance
    ``sharpe_variance`` (the False Strategy theorem):
    ``sqrt(V) ((1 - g) Phi^-1(1 - 1/N) + g Phi^-1(1 - 1/(N e)))``, ``g`` = Euler-Mascheroni."""
    if n_trials < 1:
        raise MetricsError(f"n_trials must be >= 1; got {n_trials}", field="n_trials",
                           value=n_trials)
    if sharpe_variance < 0:
        raise MetricsError(f"sharpe_variance must be >= 0; got {sharpe_variance}",
                           field="sharpe_variance", value=sharpe_variance)
    if n_trials == 1:
        return 0.0
    z1 = _norm_ppf(1.0 - 1.0 / n_trials)
    z2 = _norm_ppf(1.0 - 1.0 / (n_trials * math.e))
    return float(math.sqrt(sharpe_variance) * ((1 - EULER_GAMMA) * z1 + EULER_GAMMA * z2))


def deflated_sharpe_ratio(returns: Any, *, n_trials: int | None = None,
                          sharpe_variance: float | None = None, trial_sharpes: Any = None,
                          periods_per_year: float = 252) -> Result:
    """Deflated Sharpe ratio (Bailey & Lopez de Prado 2014): the PSR against the Sharpe ratio the
    best of ``n_trials`` worthless strategies would show, :func:`expected_max_sharpe`.

    Give either ``trial_sharpes`` (the annualized Sharpe ratios of every strategy tried; their
    count and ``ddof=1`` variance are used) or both ``n_trials`` and ``sharpe_variance`` (the
    variance of the annualized Sharpe ratios across trials).
    """
    ppy = _check_ppy(periods_per_year)
    if trial_sharpes is not None:
        trials = np.asarray(trial_sharpes, dtype=np.float64).reshape(-1)
        trials = trials[~np.isnan(trials)]
        if trials.size < 2:
            raise MetricsError("trial_sharpes needs at least 2 values", field="trial_sharpes",
                               value=int(trials.size))
        n_trials = int(trials.size)
        sharpe_variance = float(np.var(trials, ddof=1))
    if n_trials is None or sharpe_variance is None:
        raise MetricsError("give trial_sharpes, or both n_trials and sharpe_variance",
                           field="n_trials", value=n_trials)
    sr0_annual = expected_max_sharpe(n_trials, sharpe_variance)
    return probabilistic_sharpe_ratio(returns, sr0_annual, periods_per_year=ppy)


# -- summary --------------------------------------------------------------------------------------
def summary(returns: Any, factor_returns: Any = None, *, risk_free: float = 0.0,
            periods_per_year: float = 252) -> dict[str, float]:
    """The usual one-line report of a 1-D return series, as ``{name: float}``.

    Keys: ``annual_return`` (CAGR), ``cum_returns_final``, ``annual_volatility``, ``sharpe``,
    ``sortino``, ``calmar``, ``max_drawdown``, ``omega``, ``tail_ratio``, ``value_at_risk``,
    ``conditional_value_at_risk``, ``skew``, ``kurtosis`` (excess), ``hit_rate``,
    ``probabilistic_sharpe_ratio``, ``n_periods``; plus ``alpha``, ``beta`` and
    ``information_ratio`` when ``factor_returns`` is given.
    """
    ppy = _check_ppy(periods_per_year)
    a = _values(returns, "returns")
    if a.ndim != 1:
        raise MetricsError(f"summary takes one series (T,); got shape {a.shape}",
                           field="returns", value=a.shape)
    clean = a[~np.isnan(a)]
    skew, pearson_kurtosis = _skew_kurtosis(clean)
    out: dict[str, float] = {
        "annual_return": float(cagr(a, periods_per_year=ppy)),
        "cum_returns_final": float(cum_returns_final(a)),
        "annual_volatility": float(volatility(a, periods_per_year=ppy)),
        "sharpe": float(sharpe(a, risk_free, periods_per_year=ppy)),
        "sortino": float(sortino(a, risk_free, periods_per_year=ppy)),
        "calmar": float(calmar(a, periods_per_year=ppy)),
        "max_drawdown": float(max_drawdown(a)),
        "omega": float(omega(a, risk_free, periods_per_year=ppy)),
        "tail_ratio": float(tail_ratio(a)),
        "value_at_risk": float(value_at_risk(a)),
        "conditional_value_at_risk": float(conditional_value_at_risk(a)),
        "skew": skew if clean.size > 2 else float("nan"),
        "kurtosis": pearson_kurtosis - 3.0 if clean.size > 3 else float("nan"),
        "hit_rate": float(hit_rate(a)),
        "probabilistic_sharpe_ratio": float(
            probabilistic_sharpe_ratio(a, periods_per_year=ppy)),
        "n_periods": float(a.shape[0]),
    }
    if factor_returns is not None:
        al, be = alpha_beta(returns, factor_returns, risk_free, periods_per_year=ppy)
        out["alpha"] = float(al)
        out["beta"] = float(be)
        out["information_ratio"] = float(
            information_ratio(returns, factor_returns, periods_per_year=ppy))
    return out
