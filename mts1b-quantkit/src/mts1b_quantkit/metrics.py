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
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from mts1b_quantkit._labels import align_frame, check_labels
from mts1b_quantkit._xp import as_float_array
from mts1b_quantkit.errors import MetricsError
from mts1b_quantkit.factors.primitives import rank_cross_sectional

__all__ = [
    "AggregatedReturns",
    "aggregate_returns",
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
    "down_capture",
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
    "roll_alpha",
    "roll_alpha_beta",
    "roll_annual_volatility",
    "roll_beta",
    "roll_down_capture",
    "roll_max_drawdown",
    "roll_sharpe",
    "roll_sortino",
    "roll_up_capture",
    "roll_up_down_capture",
    "roll_volatility",
    "sharpe",
    "sortino",
    "stability_of_timeseries",
    "summary",
    "tail_ratio",
    "turnover",
    "up_capture",
    "up_down_capture",
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


def _is_pandas(x: Any) -> bool:
    return hasattr(x, "index") and hasattr(x, "to_numpy") and not isinstance(x, np.ndarray)


def _is_scalar(x: Any) -> bool:
    return np.ndim(x) == 0 and not isinstance(x, str | bytes)


def _align(returns: Any, other: Any, name: str) -> tuple[FloatArray, FloatArray]:
    """``returns`` and a benchmark (or risk-free) series as float arrays, period by period.

    * A scalar ``other`` is a constant per-period rate: one value for every period (empyrical's
      ``excess_sharpe`` and ``sharpe_ratio`` take one, so every benchmark argument here does).
    * Two pandas objects are joined on their dates (an outer join, as empyrical's
      ``_aligned_series``: a date only one of them has gets NaN in the other). A 2-D benchmark
      with several columns is matched to the returns' columns by name.
    * Anything else is positional and must have as many periods as ``returns``.
    """
    if isinstance(other, str | bytes):
        raise MetricsError(f"{name} must be numeric; got {other!r}", field=name,
                           value=repr(other))
    if _is_scalar(other):
        r = _values(returns, "returns")
        try:
            value = float(other)
        except (TypeError, ValueError) as exc:
            raise MetricsError(f"{name} must be numeric: {exc}", field=name) from exc
        return r, np.full(r.shape[0], value)
    if _is_pandas(returns) and _is_pandas(other):
        import pandas as pd  # only reached with pandas inputs, so pandas is installed

        r_frame = returns.to_frame() if getattr(returns, "ndim", 2) == 1 else returns
        o_frame = other.to_frame() if getattr(other, "ndim", 2) == 1 else other
        if o_frame.shape[1] > 1:
            columns = list(r_frame.columns)
            check_labels(list(o_frame.columns), columns, name, MetricsError,
                         what="the columns of returns")
            o_frame = o_frame[columns]
        width = r_frame.shape[1]
        joined = pd.concat([r_frame, o_frame], axis=1, join="outer")
        left, right = joined.iloc[:, :width], joined.iloc[:, width:]
        r_vals = _values(left.iloc[:, 0] if r_frame is not returns else left, "returns")
        o_vals = _values(right.iloc[:, 0] if right.shape[1] == 1 else right, name)
        return r_vals, o_vals
    r, o = _values(returns, "returns"), _values(other, name)
    if o.shape[0] != r.shape[0]:
        raise MetricsError(f"{name} has {o.shape[0]} periods, returns has {r.shape[0]}",
                           field=name, value=o.shape[0])
    return r, o


def _against(returns: Any, other: Any, name: str) -> tuple[FloatArray, FloatArray]:
    """:func:`_align`, then the benchmark shaped to subtract from the returns: ``(T, 1)`` against
    ``(T, N)`` returns, or the returns' own shape."""
    r, o = _align(returns, other, name)
    if r.ndim == 2 and o.ndim == 1:
        o = o[:, None]
    elif o.shape != r.shape:
        raise MetricsError(f"{name} must be a scalar, (T,) or match returns {r.shape}; got "
                           f"{o.shape}", field=name, value=o.shape)
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
    a, rf = _with_rate(returns, risk_free, "risk_free")
    if a.shape[0] < 2:
        return _nan_out(a)
    adj = a - rf
    std = _zero_dispersion(adj, _nanstd(adj))
    with np.errstate(divide="ignore", invalid="ignore"):
        return _out(_nanmean(adj) / std * np.sqrt(ppy), a.ndim == 1)


def _with_rate(returns: Any, rate: Any, name: str) -> tuple[FloatArray, Any]:
    """The returns and a per-period rate to subtract from them: a float as it is, a series
    aligned as :func:`_align` does (pandas on their dates)."""
    if _is_scalar(rate):
        return _values(returns, "returns"), float(rate)
    return _against(returns, rate, name)


def downside_deviation(returns: Any, required_return: float | Any = 0.0, *,
                       periods_per_year: float = 252) -> Result:
    """Annualized downside deviation: ``sqrt(nanmean(min(r - required, 0) ** 2) * ppy)``."""
    ppy = _check_ppy(periods_per_year)
    a, req = _with_rate(returns, required_return, "required_return")
    if a.shape[0] < 1:
        return _nan_out(a)
    diff = np.clip(a - req, -np.inf, 0.0)
    return _out(np.sqrt(_nanmean(diff * diff)) * np.sqrt(ppy), a.ndim == 1)


downside_risk = downside_deviation


def sortino(returns: Any, required_return: float | Any = 0.0, *,
            periods_per_year: float = 252) -> Result:
    """Sortino ratio: annualized mean excess return over the annualized downside deviation."""
    ppy = _check_ppy(periods_per_year)
    a, req = _with_rate(returns, required_return, "required_return")
    if a.shape[0] < 2:
        return _nan_out(a)
    mean = _nanmean(a - req) * ppy
    dd = np.asarray(downside_deviation(a, req, periods_per_year=ppy))
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

    ``factor_returns`` is a series like ``returns`` or a scalar (a constant benchmark, whose
    beta is NaN: it has no variance to regress on, as for a constant series in empyrical).
    (``risk_free`` is accepted for empyrical compatibility; a constant shift does not change the
    slope.)
    """
    r, f = _align(returns, factor_returns, "factor_returns")
    return _out(_beta_values(r, f), r.ndim == 1)


def alpha_beta(returns: Any, factor_returns: Any, risk_free: float = 0.0, *,
               periods_per_year: float = 252) -> tuple[Result, Result]:
    """``(alpha, beta)``: annualized Jensen's alpha ``(1 + mean(r - rf - beta (f - rf))) ** ppy
    - 1`` and the OLS beta. pandas inputs are aligned on their index first; a scalar benchmark
    is a constant series (beta and alpha are then NaN, as empyrical gives for one)."""
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
    ``excess_sharpe``; not annualized). ``factor_returns`` is a series or a scalar per-period
    rate, as in empyrical."""
    r, f = _against(returns, factor_returns, "factor_returns")
    if r.shape[0] < 2:
        return _nan_out(r)
    active = r - f
    te = _zero_dispersion(active, _nanstd(active))
    with np.errstate(divide="ignore", invalid="ignore"):
        return _out(_nanmean(active) / te, r.ndim == 1)


def information_ratio(returns: Any, benchmark: Any, *, periods_per_year: float = 252) -> Result:
    """Annualized information ratio: ``excess_sharpe(returns, benchmark) * sqrt(ppy)``
    (``benchmark`` a series or a scalar per-period rate)."""
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
    starts at date ``t`` (see :func:`mts1b_quantkit.analytics.forward_returns`); two DataFrames
    are matched by their dates and asset labels.
    """
    forward = align_frame(forward, factor, "forward", MetricsError, like_name="factor")
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
    """Fraction of periods with a positive return (or beating ``benchmark``, a series or a
    scalar per-period rate), NaN ignored."""
    a = _values(returns, "returns")
    if benchmark is not None:
        a, b = _against(returns, benchmark, "benchmark")
        a = a - b
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
    average turnover per period). Two DataFrames are matched by dates and asset labels.
    """
    if returns is not None:
        returns = align_frame(returns, weights, "returns", MetricsError, like_name="weights")
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


# -- stability and capture ------------------------------------------------------------------------
def _r_squared(col: FloatArray) -> float:
    """``R^2`` of the least-squares line through ``cumsum(log1p(col))`` against ``0..n-1``,
    computed as ``scipy.stats.linregress`` computes its ``rvalue`` (``np.cov(x, y, bias=1)``,
    NaN when the cumulative log return is constant, clipped to ``[-1, 1]``) so the numbers are
    empyrical's without importing scipy."""
    if col.size == 0:
        return float("nan")
    y = np.cumsum(np.log1p(col))
    ssxm, ssxym, _, ssym = np.cov(np.arange(col.size), y, bias=True).flat
    if ssxm == 0.0 or ssym == 0.0:
        return float("nan") if ssxym == 0 else 0.0
    r = min(max(float(ssxym / np.sqrt(ssxm * ssym)), -1.0), 1.0)
    return r * r


def stability_of_timeseries(returns: Any) -> Result:
    """How steadily the strategy compounds: ``R^2`` of a straight line fitted to the cumulative
    log returns (empyrical's ``stability_of_timeseries``), in ``[0, 1]``.

    NaN returns are dropped before cumulating (as empyrical does); NaN for fewer than 2 periods
    or a flat cumulative return. A 1-D series gives a float, ``(T, N)`` one value per column.
    """
    a = _values(returns, "returns")
    if a.shape[0] < 2:
        return _nan_out(a)
    return _per_column(a, _r_squared)


def _capture_one(r: FloatArray, f: FloatArray, ppy: float, side: int) -> float:
    keep = ~np.isnan(r) & ~np.isnan(f) & ((f > 0) if side > 0 else (f < 0))
    rs, fs = r[keep], f[keep]
    if rs.size == 0:
        return float("nan")
    years = rs.size / ppy
    with np.errstate(divide="ignore", invalid="ignore"):
        mine = np.prod(rs + 1.0) ** (1.0 / years) - 1.0
        theirs = np.prod(fs + 1.0) ** (1.0 / years) - 1.0
        return float(mine / theirs)


def _capture(returns: Any, factor_returns: Any, periods_per_year: float, side: int) -> Result:
    ppy = _check_ppy(periods_per_year)
    r, f = _against(returns, factor_returns, "factor_returns")
    f = np.broadcast_to(f, r.shape)
    values = [_capture_one(rc, fc, ppy, side) for rc, fc in zip(_columns(r), _columns(f),
                                                                 strict=True)]
    return values[0] if r.ndim == 1 else np.asarray(values, dtype=np.float64)


def up_capture(returns: Any, factor_returns: Any, *, periods_per_year: float = 252) -> Result:
    """Up-market capture: the CAGR of the returns over the periods when the benchmark rose,
    divided by the benchmark's CAGR over the same periods (empyrical's ``up_capture``).

    Only periods where both are known count, and the CAGRs use their number as the length of
    the sample (``periods_per_year`` annualizes). Above 1: the strategy gains more than the
    benchmark when the market is up. NaN when the benchmark never rose.
    """
    return _capture(returns, factor_returns, periods_per_year, +1)


def down_capture(returns: Any, factor_returns: Any, *, periods_per_year: float = 252) -> Result:
    """Down-market capture: as :func:`up_capture` over the periods when the benchmark fell
    (empyrical's ``down_capture``). Below 1: the strategy loses less than the benchmark when the
    market is down."""
    return _capture(returns, factor_returns, periods_per_year, -1)


def up_down_capture(returns: Any, factor_returns: Any, *,
                    periods_per_year: float = 252) -> Result:
    """``up_capture / down_capture`` (empyrical's ``up_down_capture``): above 1, the strategy
    captures more of the rises than of the falls."""
    up = np.asarray(up_capture(returns, factor_returns, periods_per_year=periods_per_year))
    down = np.asarray(down_capture(returns, factor_returns, periods_per_year=periods_per_year))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = up / down
    return float(ratio) if ratio.ndim == 0 else ratio


# -- rolling windows ------------------------------------------------------------------------------
# Values per chunk of windows: the windows are copies (window x count x columns), so they are
# evaluated a chunk at a time to bound memory at about 32 MiB whatever the length of the series.
_ROLL_CHUNK = 1 << 22


def _check_window(window: Any) -> int:
    if isinstance(window, bool) or not isinstance(window, int | np.integer) or window < 1:
        raise MetricsError(f"window must be an integer >= 1; got {window!r}", field="window",
                           value=repr(window))
    return int(window)


def _roll(fn: Callable[..., Any], window: Any, *series: FloatArray, outputs: int = 1
          ) -> FloatArray:
    """``fn`` over every complete window of ``window`` rows, as rolling values aligned with the
    rows: ``out[t]`` is ``fn`` of rows ``t - window + 1 .. t``, NaN for the first ``window - 1``
    rows. All ``series`` have the first one's shape ``(T,)`` or ``(T, N)``; ``fn`` is called on
    2-D ``(window, M)`` slices (one window per column) and returns ``(M,)``, or ``(M, outputs)``
    for several values per window. Each window is evaluated by the metric itself, so a rolling
    value is the metric of that window to rounding (no running sums that drift, as empyrical
    does); the cost is ``O(T * window)`` per series. Returns ``(T,)``/``(T, N)``, with a last
    axis of ``outputs`` when there are several.
    """
    w = _check_window(window)
    first = series[0]
    t_len = first.shape[0]
    width = 1 if first.ndim == 1 else first.shape[1]
    out = np.full((t_len, width, outputs), np.nan)
    n_windows = t_len - w + 1
    if n_windows > 0:
        views = [np.lib.stride_tricks.sliding_window_view(
            x.reshape(t_len, width), w, axis=0) for x in series]  # (n_windows, width, w)
        step = max(1, _ROLL_CHUNK // max(1, w * width))
        for lo in range(0, n_windows, step):
            hi = min(n_windows, lo + step)
            # (w, windows * width): column j * width + k is window j of series column k
            chunks = [v[lo:hi].reshape(-1, w).T for v in views]
            values = np.asarray(fn(*chunks), dtype=np.float64)
            out[w - 1 + lo:w - 1 + hi] = values.reshape(hi - lo, width, outputs)
    if first.ndim == 1:
        out = out[:, 0]
    return out[..., 0] if outputs == 1 else out


def _roll_pair(returns: Any, factor_returns: Any) -> tuple[FloatArray, FloatArray]:
    r, f = _against(returns, factor_returns, "factor_returns")
    return r, np.ascontiguousarray(np.broadcast_to(f, r.shape))


_ROLLING_NOTE = """

    Rolling values are aligned with the rows of ``returns``: ``out[t]`` is the metric of the
    ``window`` rows ending at ``t``, NaN for the first ``window - 1`` rows (and everywhere when
    ``window`` exceeds the series). empyrical's ``roll_*`` functions return only the complete
    windows, ``out[window - 1:]`` here; for a window longer than the series they compute one
    value over the whole series instead. Shapes: ``(T,)`` -> ``(T,)``, ``(T, N)`` -> ``(T, N)``.
    """


def roll_sharpe(returns: Any, window: int, risk_free: float = 0.0, *,
                periods_per_year: float = 252) -> FloatArray:
    """:func:`sharpe` over a rolling window (empyrical's ``roll_sharpe_ratio``)."""
    ppy = _check_ppy(periods_per_year)
    a = _values(returns, "returns")
    return _roll(lambda x: sharpe(x, risk_free, periods_per_year=ppy), window, a)


def roll_sortino(returns: Any, window: int, required_return: float = 0.0, *,
                 periods_per_year: float = 252) -> FloatArray:
    """:func:`sortino` over a rolling window (empyrical's ``roll_sortino_ratio``)."""
    ppy = _check_ppy(periods_per_year)
    a = _values(returns, "returns")
    return _roll(lambda x: sortino(x, required_return, periods_per_year=ppy), window, a)


def roll_volatility(returns: Any, window: int, *, periods_per_year: float = 252,
                    alpha: float = 2.0) -> FloatArray:
    """:func:`volatility` over a rolling window (empyrical's ``roll_annual_volatility``)."""
    ppy = _check_ppy(periods_per_year)
    a = _values(returns, "returns")
    return _roll(lambda x: volatility(x, periods_per_year=ppy, alpha=alpha), window, a)


roll_annual_volatility = roll_volatility


def roll_max_drawdown(returns: Any, window: int) -> FloatArray:
    """:func:`max_drawdown` within each rolling window, the window's first row being the
    starting peak (empyrical's ``roll_max_drawdown``)."""
    a = _values(returns, "returns")
    return _roll(max_drawdown, window, a)


def roll_beta(returns: Any, factor_returns: Any, window: int) -> FloatArray:
    """:func:`beta` over a rolling window (empyrical's ``roll_beta``)."""
    r, f = _roll_pair(returns, factor_returns)
    return _roll(lambda x, y: _beta_values(x, y), window, r, f)


def roll_alpha(returns: Any, factor_returns: Any, window: int, risk_free: float = 0.0, *,
               periods_per_year: float = 252) -> FloatArray:
    """:func:`alpha` over a rolling window (empyrical's ``roll_alpha``)."""
    return roll_alpha_beta(returns, factor_returns, window, risk_free,
                           periods_per_year=periods_per_year)[0]


def roll_alpha_beta(returns: Any, factor_returns: Any, window: int, risk_free: float = 0.0, *,
                    periods_per_year: float = 252) -> tuple[FloatArray, FloatArray]:
    """``(alpha, beta)`` over a rolling window, two arrays shaped like ``returns``
    (empyrical's ``roll_alpha_beta`` gives them as the two columns of one array)."""
    ppy = _check_ppy(periods_per_year)
    r, f = _roll_pair(returns, factor_returns)

    def both(x: FloatArray, y: FloatArray) -> FloatArray:
        a, b = alpha_beta(x, y, risk_free, periods_per_year=ppy)
        return np.stack([np.atleast_1d(a), np.atleast_1d(b)], axis=-1)

    pairs = _roll(both, window, r, f, outputs=2)
    return pairs[..., 0], pairs[..., 1]


def roll_up_capture(returns: Any, factor_returns: Any, window: int, *,
                    periods_per_year: float = 252) -> FloatArray:
    """:func:`up_capture` over a rolling window (empyrical's ``roll_up_capture``)."""
    r, f = _roll_pair(returns, factor_returns)
    return _roll(lambda x, y: up_capture(x, y, periods_per_year=periods_per_year), window, r, f)


def roll_down_capture(returns: Any, factor_returns: Any, window: int, *,
                      periods_per_year: float = 252) -> FloatArray:
    """:func:`down_capture` over a rolling window (empyrical's ``roll_down_capture``)."""
    r, f = _roll_pair(returns, factor_returns)
    return _roll(lambda x, y: down_capture(x, y, periods_per_year=periods_per_year), window,
                 r, f)


def roll_up_down_capture(returns: Any, factor_returns: Any, window: int, *,
                         periods_per_year: float = 252) -> FloatArray:
    """:func:`up_down_capture` over a rolling window (empyrical's ``roll_up_down_capture``)."""
    r, f = _roll_pair(returns, factor_returns)
    return _roll(lambda x, y: up_down_capture(x, y, periods_per_year=periods_per_year), window,
                 r, f)


for _fn in (roll_sharpe, roll_sortino, roll_volatility, roll_max_drawdown, roll_beta,
            roll_alpha, roll_alpha_beta, roll_up_capture, roll_down_capture,
            roll_up_down_capture):
    _fn.__doc__ = (_fn.__doc__ or "") + _ROLLING_NOTE


# -- aggregation by calendar period ---------------------------------------------------------------
class AggregatedReturns(NamedTuple):
    """Compounded returns per calendar period: ``periods[k]`` names period ``k`` and
    ``returns[k]`` is its return, ``(K,)`` or ``(K, N)``, periods in ascending order."""

    periods: list[tuple[int, ...]]
    returns: FloatArray


_PERIOD_KINDS = ("weekly", "monthly", "quarterly", "yearly")


def _day_numbers(returns: Any, dates: Any) -> npt.NDArray[np.int64]:
    """Days since 1970-01-01 of each row, on the calendar of the dates' own time zone."""
    if dates is None:
        if not hasattr(returns, "index"):
            raise MetricsError("aggregate_returns needs the dates of the returns: pass "
                               "dates=(T,) datetime64 or a pandas object with a DatetimeIndex",
                               field="dates")
        dates = returns.index
    if getattr(dates, "tz", None) is not None:  # tz-aware pandas: group by local wall time
        dates = dates.tz_localize(None)
    values = getattr(dates, "values", dates)
    try:
        days = np.asarray(values).astype("datetime64[D]")
    except (TypeError, ValueError) as exc:
        raise MetricsError(f"dates must be datetimes: {exc}", field="dates") from exc
    if np.isnat(days).any():
        raise MetricsError("dates has missing values (NaT)", field="dates")
    return days.astype(np.int64)


def _period_keys(days: npt.NDArray[np.int64], convert_to: str) -> npt.NDArray[np.int64]:
    as_days = days.astype("datetime64[D]")
    year = as_days.astype("datetime64[Y]").astype(np.int64) + 1970
    if convert_to == "yearly":
        return year[:, None]
    if convert_to in ("monthly", "quarterly"):
        month = as_days.astype("datetime64[M]").astype(np.int64) % 12 + 1
        sub = month if convert_to == "monthly" else (month - 1) // 3 + 1
        return np.column_stack([year, sub])
    # ISO 8601 week: the week (Monday first) belongs to the year of its Thursday
    weekday = (days + 3) % 7  # 1970-01-01 was a Thursday; Monday -> 0
    thursday = days - weekday + 3
    iso_year = thursday.astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970
    jan1 = (iso_year - 1970).astype("datetime64[Y]").astype("datetime64[D]").astype(np.int64)
    week = (thursday - jan1) // 7 + 1
    return np.column_stack([iso_year, week])


def aggregate_returns(returns: Any, convert_to: str, dates: Any = None) -> AggregatedReturns:
    """Compound per-period returns into weekly, monthly, quarterly or yearly ones (empyrical's
    ``aggregate_returns``).

    ``returns`` is ``(T,)`` or ``(T, N)``; ``dates`` the ``(T,)`` dates of its rows (numpy
    ``datetime64``, dates, or a pandas DatetimeIndex), taken from ``returns.index`` when
    ``returns`` is a pandas object. Each period's return is ``prod(1 + r) - 1`` over its rows, in
    row order, NaN counting as 0 (empyrical's ``cum_returns``). Periods are keyed as empyrical's
    index: ``(year,)`` (empyrical: the bare year), ``(year, month)``, ``(year, quarter)`` and
    ``(ISO year, ISO week)``, so a week across New Year is one week. pandas is not needed; dates
    with a time zone are grouped by their local calendar day.
    """
    if convert_to not in _PERIOD_KINDS:
        raise MetricsError(f"convert_to must be one of {list(_PERIOD_KINDS)}; got "
                           f"{convert_to!r}", field="convert_to", value=repr(convert_to))
    a = _values(returns, "returns")
    days = _day_numbers(returns, dates)
    if days.shape != (a.shape[0],):
        raise MetricsError(f"dates needs one date per row of returns ({a.shape[0]}); got "
                           f"{days.shape}", field="dates", value=days.shape)
    keys = _period_keys(days, convert_to)
    growth = np.where(np.isnan(a), 0.0, a) + 1.0
    if a.shape[0] == 0:
        return AggregatedReturns([], np.zeros((0, *a.shape[1:])))
    unique, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")
    starts = np.searchsorted(inverse[order], np.arange(unique.shape[0]))
    compounded = np.multiply.reduceat(growth[order], starts, axis=0) - 1.0
    periods = [tuple(int(v) for v in row) for row in unique]
    return AggregatedReturns(periods, np.asarray(compounded, dtype=np.float64))


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
