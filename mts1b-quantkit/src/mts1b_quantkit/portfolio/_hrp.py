"""Hierarchical Risk Parity (Lopez de Prado 2016), as PyPortfolioOpt's ``HRPOpt``.

1. Distance ``d = sqrt(clip((1 - rho) / 2, 0, 1))`` and scipy hierarchical clustering
   (single linkage by default).
2. Quasi-diagonalisation: assets in the pre-order of the cluster tree's leaves.
3. Recursive bisection: the ordered list is split in halves; each half gets
   ``1 - var_a / (var_a + var_b)`` of its parent's weight, ``var`` being the variance of the
   half's inverse-variance portfolio.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from mts1b_quantkit._labels import align_matrix, check_labels
from mts1b_quantkit._xp import as_float_array
from mts1b_quantkit.covariance import check_covariance, cov_to_corr, sample_corr, sample_cov
from mts1b_quantkit.errors import OptimizationError, SingularCovarianceError

__all__ = ["LINKAGE_METHODS", "HRPResult", "hrp", "hrp_result"]

LINKAGE_METHODS = ("single", "complete", "average", "weighted", "centroid", "median", "ward")
"""The methods of ``scipy.cluster.hierarchy.linkage`` (its documented list; scipy's own constant is
private and was removed in scipy 1.18)."""

FloatArray = npt.NDArray[np.float64]


class HRPResult(NamedTuple):
    """Weights ``(N,)`` in input order, the quasi-diagonal ``order`` and scipy's ``linkage``."""

    weights: FloatArray
    order: tuple[int, ...]
    linkage: FloatArray


def _cluster_var(cov: FloatArray, items: list[int]) -> float:
    sub = cov[np.ix_(items, items)]
    w = 1.0 / np.diag(sub)
    w /= w.sum()
    return float(w @ sub @ w)


def _bisect(cov: FloatArray, order: list[int]) -> FloatArray:
    w = np.ones(cov.shape[0])
    clusters = [order]
    while clusters:
        clusters = [c[j:k] for c in clusters for j, k in ((0, len(c) // 2), (len(c) // 2, len(c)))
                    if len(c) > 1]
        for i in range(0, len(clusters), 2):
            first, second = clusters[i], clusters[i + 1]
            v1, v2 = _cluster_var(cov, first), _cluster_var(cov, second)
            alpha = 1.0 - v1 / (v1 + v2)
            w[first] *= alpha
            w[second] *= 1.0 - alpha
    return w


def _inputs(returns: Any, cov: Any, corr: Any, corr_decimals: int | None
            ) -> tuple[FloatArray, FloatArray]:
    if returns is not None:
        if cov is not None or corr is not None:
            raise OptimizationError("give returns, or cov (and optionally corr), not both",
                                    field="returns")
        return sample_cov(returns), sample_corr(returns)
    if cov is None:
        raise OptimizationError("hrp needs returns or cov", field="cov")
    cov, names = align_matrix(cov, "cov", OptimizationError)
    c = check_covariance(cov, require_pd=False)
    if corr is not None:
        corr, corr_names = align_matrix(corr, "corr", OptimizationError)
        if names is not None and corr_names is not None and corr_names != names:
            check_labels(corr_names, names, "corr", OptimizationError,
                         what="the covariance's assets")
            corr = corr.loc[names, names]
        rho = as_float_array(corr)
        if rho.shape != c.shape:
            raise OptimizationError(f"corr has shape {rho.shape}, cov has {c.shape}",
                                    field="corr", value=rho.shape)
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            rho = cov_to_corr(c)
        if corr_decimals is not None:
            rho = np.round(rho, corr_decimals)
    return c, rho


def hrp_result(returns: Any = None, *, cov: Any = None, corr: Any = None,
               linkage_method: str = "single", corr_decimals: int | None = 6) -> HRPResult:
    """HRP weights with the clustering that produced them (see :func:`hrp`)."""
    import scipy.cluster.hierarchy as sch
    import scipy.spatial.distance as ssd

    c, rho = _inputs(returns, cov, corr, corr_decimals)
    n = c.shape[0]
    diag = np.diag(c)
    if not (np.isfinite(diag).all() and (diag > 0).all()):
        bad = int(np.flatnonzero(~(np.isfinite(diag) & (diag > 0)))[0])
        raise SingularCovarianceError(
            f"asset {bad} has variance {diag[bad]!r}; HRP needs a positive variance for every "
            "asset", field="cov", value=bad)
    if not np.isfinite(rho).all():
        raise SingularCovarianceError("the correlation matrix has non-finite entries "
                                      "(too few overlapping observations?)", field="corr")
    if linkage_method not in LINKAGE_METHODS:
        raise OptimizationError(f"unknown linkage_method {linkage_method!r}; use one of "
                                f"{list(LINKAGE_METHODS)}", field="linkage_method",
                                value=linkage_method)
    if n == 1:
        return HRPResult(np.ones(1), (0,), np.zeros((0, 4)))
    dist = np.sqrt(np.clip((1.0 - rho) / 2.0, 0.0, 1.0))
    link = sch.linkage(ssd.squareform(dist, checks=False), linkage_method)
    order = [int(i) for i in sch.to_tree(link, rd=False).pre_order()]
    return HRPResult(_bisect(c, order), tuple(order), np.asarray(link, dtype=np.float64))


def hrp(returns: Any = None, *, cov: Any = None, corr: Any = None,
        linkage_method: str = "single", corr_decimals: int | None = 6) -> FloatArray:
    """Hierarchical-risk-parity weights ``(N,)`` (long-only, summing to 1), in input order.

    Give per-period ``returns`` ``(T, N)`` (covariance and correlation are then the pairwise
    sample estimates, like ``DataFrame.cov()``/``.corr()``), or a covariance matrix ``cov``
    (correlation derived from it and rounded to ``corr_decimals``, as ``HRPOpt`` does; pass
    ``corr`` to supply your own). Equals PyPortfolioOpt's ``HRPOpt(...).optimize(linkage_method)``.
    """
    return hrp_result(returns, cov=cov, corr=corr, linkage_method=linkage_method,
                      corr_decimals=corr_decimals).weights
