"""Factor analytics on ``(T, A)`` arrays, with alphalens' conventions.

* :func:`forward_returns` - ``prices.ffill().pct_change(h).shift(-h)``: the return from the close
  of date ``t`` to the close of ``t + h`` (NaN where the future is not in the panel).
* :func:`information_coefficient` - per-date Spearman rank correlation between factor values and
  forward returns, over the assets where both are known.
* :func:`ic_summary` - IC mean, std (``ddof=1``), risk-adjusted IC (IR), t-stat and p-value of a
  one-sample t-test against 0, skew and excess kurtosis (alphalens' information table).
* :func:`quantize` / :func:`quantile_returns` - per-date quantile buckets (``pandas.qcut``
  semantics) and the mean forward return of each bucket, demeaned per date by default.
* :func:`quantile_turnover` / :func:`factor_rank_autocorrelation` - how fast a factor's holdings
  change.
* :func:`factor_returns` - the return of the factor-weighted long/short portfolio.
* :func:`ic_decay` - mean IC as the forward horizon grows.

Conventions: the factor value at row ``t`` is known at the close of ``t``; NaN means "not in the
cross-section that day". To reproduce alphalens exactly, NaN out the rows alphalens drops (its
``get_clean_factor_and_forward_returns`` keeps a row only if the factor and *every* requested
forward return are known). Two pandas DataFrames (a factor and its forward returns, a factor and
prices) are matched by their dates and asset labels, not by position; labels that differ are an
error naming them.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import Any, Literal, cast

import numpy as np
import numpy.typing as npt

from mts1b_quantkit._labels import align_frame
from mts1b_quantkit._xp import as_float_array
from mts1b_quantkit.errors import FactorError
from mts1b_quantkit.factors.primitives import rank_cross_sectional
from mts1b_quantkit.metrics import (
    _rowwise_pearson,
    _skew_kurtosis,
    _stats,
    information_coefficient,
)

__all__ = [
    "factor_rank_autocorrelation",
    "factor_returns",
    "factor_weights",
    "forward_returns",
    "ic_decay",
    "ic_summary",
    "information_coefficient",
    "quantile_returns",
    "quantile_turnover",
    "quantize",
]

FloatArray = npt.NDArray[np.float64]


def _panel(x: Any, name: str) -> FloatArray:
    a = as_float_array(x)
    if a.ndim != 2:
        raise FactorError(f"{name} must be (T, A); got shape {a.shape}", field=name,
                          value=a.shape)
    return a


def _pair(factor: Any, other: Any, name: str, factor_name: str = "factor"
          ) -> tuple[FloatArray, FloatArray]:
    """Two ``(T, A)`` panels of one shape; DataFrames matched by dates and assets first."""
    other = align_frame(other, factor, name, FactorError, like_name=factor_name)
    a, b = _panel(factor, factor_name), _panel(other, name)
    _same_shape(a, b, name)
    return a, b


def _same_shape(a: FloatArray, b: FloatArray, name: str) -> None:
    if a.shape != b.shape:
        raise FactorError(f"{name} has shape {b.shape}, the factor has {a.shape}", field=name,
                          value=b.shape)


def _ffill(a: FloatArray) -> FloatArray:
    """Forward-fill NaN down axis 0 (vectorized: index of the last valid row)."""
    valid = ~np.isnan(a)
    idx = np.where(valid, np.arange(a.shape[0])[:, None], 0)
    np.maximum.accumulate(idx, axis=0, out=idx)
    out = np.take_along_axis(a, idx, axis=0)
    seen = np.maximum.accumulate(valid, axis=0)
    return np.where(seen, out, np.nan)


def forward_returns(prices: Any, periods: Iterable[int] = (1, 5, 10), *,
                    cumulative: bool = True) -> dict[int, FloatArray]:
    """``{h: (T, A)}`` forward returns for each horizon ``h`` (alphalens'
    ``compute_forward_returns``): prices are forward-filled, then
    ``ret_h[t] = p[t + h] / p[t] - 1``. With ``cumulative=False`` each horizon holds the single
    one-period return ``h`` periods ahead instead."""
    p = _ffill(_panel(prices, "prices"))
    out: dict[int, FloatArray] = {}
    n = p.shape[0]
    for h in sorted(set(periods)):
        if isinstance(h, bool) or not isinstance(h, int | np.integer) or h < 1:
            raise FactorError(f"periods must be integers >= 1; got {h!r}", field="periods",
                              value=h)
        step = int(h) if cumulative else 1
        change = np.full_like(p, np.nan)
        if step < n:
            with np.errstate(divide="ignore", invalid="ignore"):
                change[step:] = p[step:] / p[:-step] - 1.0
        fwd = np.full_like(p, np.nan)
        if h < n:
            fwd[: n - h] = change[h:]
        out[int(h)] = fwd
    return out


def ic_summary(ic: Any) -> dict[str, float]:
    """alphalens' information table of an IC series (NaN days skipped).

    Keys: ``ic_mean``, ``ic_std`` (``ddof=1``), ``ir`` (mean / std, the risk-adjusted IC),
    ``t_stat`` and ``p_value`` (two-sided one-sample t-test against 0), ``ic_skew``,
    ``ic_kurtosis`` (excess), ``n`` (days used).
    """
    a = np.asarray(ic, dtype=np.float64).reshape(-1)
    a = a[~np.isnan(a)]
    n = a.size
    nan = float("nan")
    mean = float(np.mean(a)) if n else nan
    std = float(np.std(a, ddof=1)) if n > 1 else nan
    skew, pearson_kurtosis = _skew_kurtosis(a)
    if n >= 2:  # the p-value needs Student's t distribution: the one use of scipy here
        test = _stats().ttest_1samp(a, 0.0)
        t_stat, p_value = float(test.statistic), float(test.pvalue)
    else:
        t_stat = p_value = nan
    return {
        "ic_mean": mean,
        "ic_std": std,
        "ir": mean / std if n > 1 and std > 0 else nan,
        "t_stat": t_stat,
        "p_value": p_value,
        "ic_skew": skew,
        "ic_kurtosis": pearson_kurtosis - 3.0,
        "n": float(n),
    }


def _row_quantiles(a: FloatArray, qs: Sequence[float]) -> FloatArray:
    """Per-row linear-interpolation quantiles (``Series.quantile``), NaN ignored.

    Returns ``(T, len(qs))``.
    """
    srt = np.sort(a, axis=1)
    n = (~np.isnan(a)).sum(axis=1)
    out = np.full((a.shape[0], len(qs)), np.nan)
    rows = np.arange(a.shape[0])
    for k, q in enumerate(qs):
        pos = q * np.maximum(n - 1, 0)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, np.maximum(n - 1, 0))
        frac = pos - lo
        a_lo, a_hi = srt[rows, lo], srt[rows, hi]
        val = np.where(frac >= 0.5, a_hi - (a_hi - a_lo) * (1 - frac),
                       a_lo + (a_hi - a_lo) * frac)
        out[:, k] = np.where(n > 0, val, np.nan)
    return out


def quantize(factor: Any, quantiles: int | Sequence[float] = 5) -> FloatArray:
    """Per-date quantile bucket ``1..q`` of each factor value (NaN stays NaN).

    ``pandas.qcut(x, quantiles, labels=False) + 1`` date by date, as alphalens' ``quantize_factor``:
    ``quantiles`` is a count of equal-sized buckets or a list of quantile edges
    (e.g. ``[0, .1, .5, .9, 1]``). Buckets are right-closed, the first includes its lower edge.
    """
    f = _panel(factor, "factor")
    if isinstance(quantiles, int | np.integer) and not isinstance(quantiles, bool):
        if quantiles < 1:
            raise FactorError(f"quantiles must be >= 1; got {quantiles}", field="quantiles",
                              value=quantiles)
        edges_q = list(np.linspace(0.0, 1.0, int(quantiles) + 1))
    else:
        edges_q = [float(q) for q in cast(Sequence[float], quantiles)]
        if len(edges_q) < 2 or any(b <= a for a, b in itertools.pairwise(edges_q)) \
                or edges_q[0] < 0 or edges_q[-1] > 1:
            raise FactorError(f"quantile edges must increase within [0, 1]; got {quantiles}",
                              field="quantiles", value=list(edges_q))
    edges = _row_quantiles(f, edges_q)
    code = np.ones_like(f)
    for k in range(1, len(edges_q) - 1):
        code += f > edges[:, k:k + 1]
    inside = (f >= edges[:, :1]) & (f <= edges[:, -1:])
    return np.where(~np.isnan(f) & inside, code, np.nan)


def quantile_returns(factor_quantiles: Any, forward: Any, *, demeaned: bool = True,
                     n_quantiles: int | None = None) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Mean forward return of each quantile (alphalens' ``mean_return_by_quantile``).

    Returns ``(mean, std_error, by_date)``: ``by_date[t, q-1]`` is the equal-weighted mean forward
    return of quantile ``q`` on date ``t``; ``mean`` and ``std_error`` (std over dates,
    ``ddof=1``, divided by sqrt(number of dates)) are ``(Q,)``. With ``demeaned=True`` each
    date's forward returns are first demeaned over the assets that have a quantile that day.
    """
    q, r = _pair(factor_quantiles, forward, "forward", "factor_quantiles")
    ok = ~np.isnan(q) & ~np.isnan(r)
    if demeaned:
        n = ok.sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = np.where(ok, r, 0.0).sum(axis=1) / n
        r = r - mean[:, None]
    n_q = int(np.nanmax(q)) if n_quantiles is None and ok.any() else int(n_quantiles or 0)
    by_date = np.full((q.shape[0], n_q), np.nan)
    for k in range(1, n_q + 1):
        members = ok & (q == k)
        count = members.sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            by_date[:, k - 1] = np.where(count > 0,
                                         np.where(members, r, 0.0).sum(axis=1) / count, np.nan)
    valid = ~np.isnan(by_date)
    days = valid.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_q = np.where(valid, by_date, 0.0).sum(axis=0) / days
        dev = np.where(valid, by_date - mean_q, 0.0)
        std_q = np.sqrt((dev * dev).sum(axis=0) / (days - 1))
        stderr = std_q / np.sqrt(days)
    return mean_q, np.where(days > 1, stderr, np.nan), by_date


def quantile_turnover(factor_quantiles: Any, quantile: int, period: int = 1) -> FloatArray:
    """Share of the names in ``quantile`` on date ``t`` that were not in it ``period`` rows
    earlier (alphalens' ``quantile_turnover``). ``(T,)``; NaN for dates with an empty quantile and
    dates whose row ``period`` earlier had no factor values at all (the first factor date)."""
    q = _panel(factor_quantiles, "factor_quantiles")
    if period < 1:
        raise FactorError(f"period must be >= 1; got {period}", field="period", value=period)
    members = q == quantile
    prev = np.zeros_like(members)
    prev[period:] = members[:-period]
    count = members.sum(axis=1)
    new = (members & ~prev).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = new / count
    had_quantiles = np.zeros(q.shape[0], dtype=bool)
    had_quantiles[period:] = (~np.isnan(q[:-period])).any(axis=1)
    out = np.where((count > 0) & had_quantiles, out, np.nan)
    return np.asarray(out, dtype=np.float64)


def factor_rank_autocorrelation(factor: Any, period: int = 1) -> FloatArray:
    """Pearson correlation between each date's cross-sectional factor ranks and the ranks
    ``period`` rows earlier, over the assets ranked on both dates (alphalens'
    ``factor_rank_autocorrelation``). ``(T,)``; the first ``period`` rows are NaN."""
    f = _panel(factor, "factor")
    if period < 1:
        raise FactorError(f"period must be >= 1; got {period}", field="period", value=period)
    ranks = rank_cross_sectional(f, pct=False)
    prev = np.full_like(ranks, np.nan)
    prev[period:] = ranks[:-period]
    return np.asarray(_rowwise_pearson(ranks, prev), dtype=np.float64)


def factor_weights(factor: Any, *, demeaned: bool = True) -> FloatArray:
    """alphalens' factor-weighted portfolio: per date, the (demeaned) factor divided by the sum
    of its absolute values, so the book has gross exposure 1 (NaN assets get no weight).

    A date whose factor is the same for every asset (demeaned, nothing is left; a single asset
    is the extreme case) gets weight 0 everywhere, as in alphalens-reloaded: there is no book
    that day (see :func:`factor_returns` for what its return is).
    """
    f = _panel(factor, "factor")
    ok = ~np.isnan(f)
    g = f
    if demeaned:
        n = ok.sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            g = f - (np.where(ok, f, 0.0).sum(axis=1) / n)[:, None]
    denom = np.where(ok, np.abs(g), 0.0).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(denom[:, None] > 0, g / denom[:, None], 0.0)
    return np.where(ok, w, np.nan)


def factor_returns(factor: Any, forward: Any, *, demeaned: bool = True,
                   constant_dates: Literal["nan", "zero"] = "nan") -> FloatArray:
    """Per-date return of the :func:`factor_weights` portfolio over the forward horizon,
    ``(T,)``, as alphalens' ``factor_returns``.

    NaN for dates with no weighted return (no asset with both a factor value and a forward
    return) and, by default, for dates whose factor is constant across the assets: the factor
    ranks nothing there, so there is no factor portfolio and no factor return. Counting such a
    date as a return of 0 would pull the mean factor return, and the alpha and beta regressed on
    these returns, towards zero by the share of such dates. The original alphalens (0.4) gives
    NaN there too; alphalens-reloaded (0.5) gives 0, its ``test_factor_returns`` pins that, and
    ``constant_dates="zero"`` reproduces it.
    """
    if constant_dates not in ("nan", "zero"):
        raise FactorError(f"constant_dates must be 'nan' or 'zero'; got {constant_dates!r}",
                          field="constant_dates", value=repr(constant_dates))
    f, r = _pair(factor, forward, "forward")
    w = factor_weights(f, demeaned=demeaned)
    contrib = w * r
    ok = ~np.isnan(contrib)
    out = np.where(ok.any(axis=1), np.where(ok, contrib, 0.0).sum(axis=1), np.nan)
    if constant_dates == "nan":
        no_book = ~(np.where(np.isnan(w), 0.0, w) != 0).any(axis=1)
        out = np.where(no_book, np.nan, out)
    return np.asarray(out, dtype=np.float64)


def ic_decay(factor: Any, prices: Any, horizons: Iterable[int] = (1, 2, 5, 10, 21)
             ) -> dict[int, dict[str, float]]:
    """IC summary for each forward horizon: ``{h: ic_summary(IC against h-period returns)}``.

    How quickly the mean IC falls with ``h`` tells how long the signal stays informative (and
    so how often it is worth rebalancing).
    """
    prices = align_frame(prices, factor, "prices", FactorError, like_name="factor")
    f = _panel(factor, "factor")
    fwd = forward_returns(prices, horizons)
    out: dict[int, dict[str, float]] = {}
    for h, r in fwd.items():
        _same_shape(f, r, "prices")
        out[h] = ic_summary(information_coefficient(f, r))
    return out

