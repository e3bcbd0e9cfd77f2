"""Covariance estimators and checks (the one home of Ledoit-Wolf in MTS1B).

All estimators take per-period asset returns ``(T, N)`` (numpy or a pandas DataFrame) and return
an ``(N, N)`` float64 matrix in per-period units; pass ``periods_per_year=252`` to annualize daily
data (PyPortfolioOpt's ``frequency``).

* :func:`sample_cov` - ``DataFrame.cov()``: pairwise-complete observations, ``ddof=1``.
* :func:`ledoit_wolf` - Ledoit & Wolf (2004) shrinkage towards ``mu * I`` (``mu`` = average
  variance), the estimator of ``sklearn.covariance.ledoit_wolf`` and of PyPortfolioOpt's
  ``CovarianceShrinkage.ledoit_wolf()`` (its default ``constant_variance`` target): rows that are
  all NaN are dropped, other NaNs count as 0, and the empirical covariance is the biased
  (``1/T``) one.
* :func:`exp_cov` - exponentially weighted covariance (PyPortfolioOpt's ``exp_cov``): deviations
  from the full-sample mean, weighted with ``span`` like ``DataFrame.ewm(span).mean()``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from mts1b_quantkit._xp import as_float_array
from mts1b_quantkit.errors import OptimizationError, SingularCovarianceError

__all__ = [
    "Shrinkage",
    "check_covariance",
    "corr_to_cov",
    "cov_to_corr",
    "exp_cov",
    "ledoit_wolf",
    "sample_corr",
    "sample_cov",
]

FloatArray = npt.NDArray[np.float64]


def _returns(returns: Any) -> FloatArray:
    x = as_float_array(returns)
    if x.ndim != 2:
        raise OptimizationError(f"returns must be (T, N); got shape {x.shape}", field="returns",
                                value=x.shape)
    return x


def _scale(periods_per_year: float) -> float:
    if not periods_per_year > 0:
        raise OptimizationError(f"periods_per_year must be > 0; got {periods_per_year!r}",
                                field="periods_per_year", value=periods_per_year)
    return float(periods_per_year)


def sample_cov(returns: Any, *, periods_per_year: float = 1.0) -> FloatArray:
    """Sample covariance (``ddof=1``) over pairwise-complete observations, times
    ``periods_per_year``. Equals ``DataFrame.cov()`` (and PyPortfolioOpt's ``sample_cov`` with
    ``returns_data=True`` when ``periods_per_year=252``)."""
    x = _returns(returns)
    scale = _scale(periods_per_year)
    ok = ~np.isnan(x)
    if ok.all():
        return np.asarray(np.atleast_2d(np.cov(x, rowvar=False, ddof=1)) * scale)
    m = ok.astype(np.float64)
    z = np.where(ok, x, 0.0)
    n = m.T @ m  # common observations per pair
    with np.errstate(divide="ignore", invalid="ignore"):
        sx = z.T @ m  # sum of x_i over rows where j is present
        mean_i = sx / n
        mean_j = mean_i.T
        cross = z.T @ z
        cov = (cross - n * mean_i * mean_j) / (n - 1)
    cov = np.where(n > 1, cov, np.nan)
    return np.asarray((cov + cov.T) / 2.0 * scale)


def sample_corr(returns: Any) -> FloatArray:
    """Pearson correlation over pairwise-complete observations (``DataFrame.corr()``): each
    pair's means and variances use only the rows where both assets are known."""
    x = _returns(returns)
    ok = ~np.isnan(x)
    if ok.all():
        return np.asarray(np.atleast_2d(np.corrcoef(x, rowvar=False)))
    m = ok.astype(np.float64)
    z = np.where(ok, x, 0.0)
    n = m.T @ m
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_i = (z.T @ m) / n
        var_i = ((z * z).T @ m - n * mean_i**2) / (n - 1)
        cov = (z.T @ z - n * mean_i * mean_i.T) / (n - 1)
        corr = cov / np.sqrt(var_i * var_i.T)
    corr = np.where(n > 1, np.clip(corr, -1.0, 1.0), np.nan)
    return np.asarray((corr + corr.T) / 2.0)


class Shrinkage(NamedTuple):
    """A shrunk covariance matrix and the shrinkage intensity in ``[0, 1]``."""

    covariance: FloatArray
    shrinkage: float


def ledoit_wolf(returns: Any, *, periods_per_year: float = 1.0) -> Shrinkage:
    """Ledoit-Wolf shrinkage ``(1 - d) S + d mu I`` with the optimal ``d``.

    ``S`` is the biased empirical covariance of the demeaned returns, ``mu = trace(S) / N``.
    Identical to ``sklearn.covariance.ledoit_wolf`` on the same data (all-NaN rows dropped, other
    NaNs set to 0, as PyPortfolioOpt does). Returns ``Shrinkage(covariance, shrinkage)``;
    ``covariance`` is scaled by ``periods_per_year``.
    """
    x = _returns(returns)
    scale = _scale(periods_per_year)
    x = x[~np.isnan(x).all(axis=1)]
    x = np.nan_to_num(x)
    t, n = x.shape
    if t < 2:
        raise OptimizationError(f"ledoit_wolf needs at least 2 observations; got {t}",
                                field="returns", value=t)
    xc = x - x.mean(axis=0)
    emp = xc.T @ xc / t
    if n == 1:
        return Shrinkage(emp * scale, 0.0)
    x2 = xc**2
    emp_trace = x2.sum(axis=0) / t
    mu = emp_trace.sum() / n
    beta_ = float(np.sum(x2.T @ x2))
    delta_ = float(np.sum((xc.T @ xc) ** 2)) / t**2
    beta = 1.0 / (n * t) * (beta_ / t - delta_)
    delta = (delta_ - 2.0 * mu * emp_trace.sum() + n * mu**2) / n
    beta = min(beta, delta)
    shrinkage = 0.0 if beta == 0 else beta / delta
    shrunk = (1.0 - shrinkage) * emp
    shrunk.flat[:: n + 1] += shrinkage * mu
    return Shrinkage(np.asarray(shrunk * scale), float(shrinkage))


def exp_cov(returns: Any, *, span: float = 180, periods_per_year: float = 1.0) -> FloatArray:
    """Exponentially weighted covariance, most weight on the latest rows.

    ``cov[i, j]`` is the ``ewm(span=span, adjust=True)`` mean, at the last row, of
    ``(x_i - mean(x_i)) * (x_j - mean(x_j))`` (full-sample means; NaN products are skipped but
    still age older rows), as PyPortfolioOpt's ``exp_cov``.
    """
    x = _returns(returns)
    scale = _scale(periods_per_year)
    if not span >= 1:
        raise OptimizationError(f"span must be >= 1; got {span!r}", field="span", value=span)
    alpha = 2.0 / (span + 1.0)
    t = x.shape[0]
    weights = (1.0 - alpha) ** np.arange(t - 1, -1, -1, dtype=np.float64)
    ok = ~np.isnan(x)
    with np.errstate(invalid="ignore"):
        dev = x - np.nanmean(np.where(ok, x, np.nan), axis=0) if t else x
    d = np.where(ok, dev, 0.0)
    m = ok.astype(np.float64)
    num = d.T @ (d * weights[:, None])
    den = m.T @ (m * weights[:, None])
    with np.errstate(divide="ignore", invalid="ignore"):
        cov = num / den
    return np.asarray(np.where(den > 0, cov, np.nan) * scale)


def cov_to_corr(cov: Any) -> FloatArray:
    """Correlation matrix ``D^-1 C D^-1`` of a covariance matrix."""
    c = np.asarray(cov, dtype=np.float64)
    inv = 1.0 / np.sqrt(np.diag(c))
    return np.asarray(inv[:, None] * c * inv[None, :])


def corr_to_cov(corr: Any, stdevs: Any) -> FloatArray:
    """Covariance matrix from a correlation matrix and standard deviations."""
    s = np.asarray(stdevs, dtype=np.float64)
    return np.asarray(np.asarray(corr, dtype=np.float64) * np.outer(s, s))


def check_covariance(cov: Any, *, require_pd: bool = True, name: str = "cov") -> FloatArray:
    """Validate a covariance matrix and return it as float64.

    Raises :class:`SingularCovarianceError` when it is not square, not finite, not symmetric, has
    a negative eigenvalue, or (``require_pd=True``) is singular: a singular covariance makes
    mean-variance and Black-Litterman weights undefined. Shrink it first (:func:`ledoit_wolf`).
    """
    c = as_float_array(cov)
    if c.ndim != 2 or c.shape[0] != c.shape[1] or c.shape[0] == 0:
        raise SingularCovarianceError(f"{name} must be a non-empty square matrix; got shape "
                                      f"{c.shape}", field=name, value=c.shape)
    if not np.isfinite(c).all():
        bad = np.argwhere(~np.isfinite(c))[0].tolist()
        raise SingularCovarianceError(f"{name} has a non-finite entry at {bad}", field=name,
                                      value=bad)
    scale = float(np.max(np.abs(c))) or 1.0
    if not np.allclose(c, c.T, rtol=1e-10, atol=1e-12 * scale):
        raise SingularCovarianceError(f"{name} is not symmetric", field=name)
    eig = np.linalg.eigvalsh((c + c.T) / 2.0)
    top = float(eig[-1])
    if float(eig[0]) < -1e-10 * max(top, 1e-300):
        raise SingularCovarianceError(
            f"{name} is not positive semi-definite (smallest eigenvalue {eig[0]:.3g})",
            field=name, value=float(eig[0]),
        )
    if require_pd and (top <= 0 or float(eig[0]) <= 1e-12 * top):
        raise SingularCovarianceError(
            f"{name} is singular (eigenvalues {eig[0]:.3g} .. {top:.3g}); shrink it, e.g. with "
            "mts1b_quantkit.covariance.ledoit_wolf, or drop redundant assets",
            field=name, value=float(eig[0]),
        )
    return c
