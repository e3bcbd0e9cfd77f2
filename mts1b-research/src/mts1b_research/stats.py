"""A signal's trailing statistics against its realised returns (pure numpy, deterministic).

Why this module exists: the signal service attaches to every published signal how well the
strategy's past weights predicted the returns that followed (``Signal.ic``, ``rank_ic``,
``hit_rate``, ``t_stat``). The horizon-``h`` forward returns of neighbouring sessions overlap by
``h - 1`` days, so neighbouring ICs are correlated and alphalens' i.i.d. t-stat overstates
significance by about ``sqrt(h)``; ``t_stat`` here divides by a Newey-West (Bartlett) standard
error of lag ``h - 1`` instead, and ``t_stat_plain`` keeps alphalens' number for comparison.

The IC arithmetic is mts1b_quantkit's (one implementation per piece of logic): the per-session
Pearson correlation is ``mts1b_quantkit.metrics._rowwise_pearson``, the Spearman one is
``mts1b_quantkit.metrics.information_coefficient`` (alphalens' convention, ties averaged), and the
forward returns are ``mts1b_quantkit.analytics.forward_returns``.

Small-sample caveat, measured (tests/test_stats.py): over 60 sessions of 5-day returns a
persistent zero-skill signal has ``|t_stat| > 1.96`` about 14% of the time (the plain t-stat about
37%). Two things keep it above 5%: the Bartlett kernel at lag ``h - 1`` weights the lag-``j``
autocovariance by ``1 - j/h`` and so under-counts the overlap, and 60 overlapping sessions hold
only about 12 independent observations, so the statistic has Student-like tails. Treat 1.96 as
a screening threshold, not as a 5% test, at this window.

So the significance call is made otherwise: ``p_value`` is a two-sided Student-t test of the mean
IC over the sessions ``h`` apart (counting back from the last, every ``h``-th session: their
returns do not overlap, so those ICs are independent), with ``k - 1`` degrees of freedom for
``k`` such sessions. It holds its size: 19 of the same 400 zero-skill signals (4.75%) have
``p_value < 0.05``. ``t_stat`` stays the Newey-West one the signal reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from mts1b_quantkit.analytics import forward_returns as _quantkit_forward_returns
from mts1b_quantkit.metrics import _rowwise_pearson, information_coefficient
from scipy.stats import t as student_t

from mts1b_research.errors import ResearchInputError

__all__ = [
    "SignalStats",
    "forward_returns",
    "horizon_returns",
    "newey_west_se",
    "newey_west_tstat",
    "non_overlapping_p_value",
    "trailing_stats",
]

FloatArray = npt.NDArray[np.float64]

MIN_SESSIONS = 3
"""Fewer usable sessions than this and every statistic is None: a mean of one or two ICs says
nothing, and a zero would read as "no skill" rather than "not known yet"."""


@dataclass(frozen=True, slots=True)
class SignalStats:
    """Trailing statistics of a signal; each field is None (never 0) when it cannot be known.

    ``ic``: mean over sessions of the cross-sectional Pearson correlation between the weights on
    session t and the realised return from t to t + horizon. ``rank_ic``: the same with Spearman
    (ranks, ties averaged). ``hit_rate``: over all (session, name) pairs with a non-zero weight
    and a non-zero return, the share where their signs agree. ``t_stat``: mean IC over its
    Newey-West standard error (Bartlett, lag ``horizon - 1``); ``t_stat_plain``: mean IC over
    ``std / sqrt(n)`` (``ddof=1``), as alphalens computes it. ``sessions``: sessions with a
    usable IC (at least two names with both values and variance in each).
    """

    ic: float | None
    rank_ic: float | None
    hit_rate: float | None
    t_stat: float | None
    t_stat_plain: float | None
    sessions: int
    horizon: int
    p_value: float | None = None
    """Two-sided p-value of the mean IC over non-overlapping sessions (module docstring)."""


def _positive_int(value: Any, field: str, minimum: int) -> int:
    """An ``int`` >= ``minimum`` (bool refused: ``True`` is not a horizon)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ResearchInputError(field, value, "must be an integer")
    if value < minimum:
        raise ResearchInputError(field, value, f"must be >= {minimum}")
    return int(value)


def _panel(value: Any, field: str) -> FloatArray:
    """A ``(T, A)`` float array; anything else names the field and its shape."""
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ResearchInputError(field, repr(value)[:80], "must be numeric") from exc
    if a.ndim != 2:
        raise ResearchInputError(field, a.shape, "must be a (sessions, names) array")
    return a


def horizon_returns(close: Any, horizon: int) -> FloatArray:
    """``(T, A)`` realised returns ``close[t + horizon] / close[t] - 1``, NaN where unknown.

    A thin adapter over quantkit's ``forward_returns`` (alphalens' convention) for one horizon.
    quantkit forward-fills missing closes; here a return is NaN when either end's close is
    missing, because a name that was not trading on t (or is not yet known at t + horizon) has
    no realised return to score a weight against.
    """
    h = _positive_int(horizon, "horizon", 1)
    c = _panel(close, "close")
    out = _quantkit_forward_returns(c, (h,))[h]
    known_end = np.zeros_like(c, dtype=bool)
    known_end[: max(c.shape[0] - h, 0)] = ~np.isnan(c[h:])
    return np.where(np.isnan(c) | ~known_end, np.nan, out)


forward_returns = horizon_returns
"""The signal service's name for :func:`horizon_returns`. Bound, not re-defined: the repo's
canonical list homes a function named ``forward_returns`` in mts1b_quantkit.analytics (the
multi-horizon one), and this is an adapter over it, not a second implementation."""


def _series(series: Any) -> FloatArray:
    a = np.asarray(series, dtype=np.float64)
    if a.ndim != 1:
        raise ResearchInputError("series", a.shape, "must be one-dimensional")
    return a[~np.isnan(a)]


def newey_west_se(series: Any, lag: int) -> float | None:
    """Newey-West standard error of the mean of ``series`` (NaN entries dropped).

    Long-run variance ``S = g0 + 2 * sum_{j=1..lag} (1 - j/(lag+1)) * g_j`` with autocovariances
    ``g_j = sum_t d_t d_{t-j} / n`` of the demeaned series (Bartlett weights keep ``S`` >= 0),
    and the standard error is ``sqrt(S / (n - 1))``: the ``n / (n - 1)`` small-sample factor
    (statsmodels' HAC with ``use_correction=True``) makes lag 0 exactly the plain
    ``std(ddof=1) / sqrt(n)``. A lag at or beyond the series' length is capped at ``n - 1``.
    None with fewer than two values or a zero variance (the mean is then exact, a t-stat
    meaningless).
    """
    q = _positive_int(lag, "lag", 0)
    x = _series(series)
    n = x.size
    if n < 2:
        return None
    q = min(q, n - 1)
    d = x - x.mean()
    lrv = float(d @ d) / n
    for j in range(1, q + 1):
        lrv += 2.0 * (1.0 - j / (q + 1)) * float(d[j:] @ d[:-j]) / n
    if lrv <= 0.0:
        return None
    return float(np.sqrt(lrv / (n - 1)))


def newey_west_tstat(series: Any, lag: int) -> float | None:
    """Mean of ``series`` over its :func:`newey_west_se`; lag 0 is alphalens' plain t-stat."""
    se = newey_west_se(series, lag)
    if se is None:
        return None
    return float(np.nanmean(np.asarray(series, dtype=np.float64))) / se


def _hit_rate(w: FloatArray, r: FloatArray) -> float | None:
    """Share of pairs (both known and non-zero) whose signs agree; None when there is none."""
    with np.errstate(invalid="ignore"):
        scored = (w != 0) & (r != 0) & ~np.isnan(w) & ~np.isnan(r)
    count = int(scored.sum())
    if count == 0:
        return None
    return float((np.sign(w[scored]) == np.sign(r[scored])).sum()) / count


def _mean_or_none(a: FloatArray) -> float | None:
    a = a[~np.isnan(a)]
    return float(a.mean()) if a.size else None


def trailing_stats(weights: Any, forward_returns: Any, *, horizon: int,
                   window: int = 60) -> SignalStats:
    """Statistics of the last ``window`` sessions whose forward return is known.

    ``weights``: ``(T, A)``, NaN = no position / not in the universe (a 0 weight is a name held
    at zero and counts in the IC). ``forward_returns``: ``(T, A)``, the realised return from t to
    t + ``horizon``, NaN while not yet known. A session counts towards the window when any of its
    forward returns is known; ICs are then computed per session over the names with both values,
    and sessions without a usable IC are dropped before the means and t-stats (the Newey-West lag
    then spans the remaining sessions). Fewer than three usable sessions: every statistic None.
    """
    h = _positive_int(horizon, "horizon", 1)
    size = _positive_int(window, "window", MIN_SESSIONS)
    w = _panel(weights, "weights")
    r = _panel(forward_returns, "forward_returns")
    if w.shape != r.shape:
        raise ResearchInputError("forward_returns", r.shape,
                                 f"must have the weights' shape {w.shape}")
    rows = np.flatnonzero(~np.isnan(r).all(axis=1))[-size:]
    w, r = w[rows], r[rows]
    ic = _rowwise_pearson(w, r) if rows.size else np.empty(0)
    usable = ~np.isnan(ic)
    sessions = int(usable.sum())
    if sessions < MIN_SESSIONS:
        return SignalStats(None, None, None, None, None, sessions, h)
    ic_series = ic[usable]
    return SignalStats(
        ic=float(ic_series.mean()),
        rank_ic=_mean_or_none(information_coefficient(w, r)[usable]),
        hit_rate=_hit_rate(w, r),
        t_stat=newey_west_tstat(ic_series, h - 1),
        t_stat_plain=newey_west_tstat(ic_series, 0),
        sessions=sessions,
        horizon=h,
        p_value=non_overlapping_p_value(ic_series, h),
    )


def non_overlapping_p_value(ic_series: Any, horizon: int) -> float | None:
    """Two-sided p-value of the mean of every ``horizon``-th IC counted back from the last
    (their forward returns do not overlap), Student-t with ``k - 1`` degrees of freedom; None
    with fewer than three such sessions or no variance."""
    h = _positive_int(horizon, "horizon", 1)
    values = _series(ic_series)[::-1][::h]
    k = values.size
    if k < MIN_SESSIONS:
        return None
    if np.all(values == values[0]):  # no variance (the float std of equal values is not 0)
        return None
    spread = float(np.std(values, ddof=1))
    t = float(np.mean(values)) / (spread / np.sqrt(k))
    return float(2.0 * student_t.sf(abs(t), k - 1))
