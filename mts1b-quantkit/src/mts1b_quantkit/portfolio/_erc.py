"""Equal risk contribution (risk parity) and risk budgeting portfolios.

Each asset's risk contribution ``w_i (C w)_i / (w' C w)`` equals its budget ``b_i`` (``1/N`` by
default). Solved with Newton's method on the strictly convex problem of Spinu (2013),
``min 1/2 x' C x - sum_i b_i log x_i`` (``x > 0``), whose minimiser, normalised to sum to 1, is
the risk-budgeting portfolio; convergence is quadratic, so the contributions match the budgets
to rounding.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from mts1b_quantkit._labels import align_matrix, align_vector
from mts1b_quantkit._xp import as_float_array
from mts1b_quantkit.covariance import check_covariance
from mts1b_quantkit.errors import OptimizationError

__all__ = ["equal_risk_contribution", "risk_contributions"]

FloatArray = npt.NDArray[np.float64]


def risk_contributions(weights: Any, cov: Any) -> FloatArray:
    """Share of portfolio variance from each asset, ``w_i (C w)_i / (w' C w)`` (sums to 1),
    in the covariance's order; labelled ``weights`` are matched to a labelled covariance by
    name."""
    cov, names = align_matrix(cov, "cov", OptimizationError)
    c = as_float_array(cov)
    w = align_vector(weights, names, "weights", OptimizationError)
    if w.shape != (c.shape[0],):
        raise OptimizationError(f"weights must have {c.shape[0]} entries; got {w.shape}",
                                field="weights", value=w.shape)
    marginal = c @ w
    return np.asarray(w * marginal / (w @ marginal))


def equal_risk_contribution(cov: Any, *, budget: Any = None, tol: float = 1e-14,
                            max_iter: int = 200) -> FloatArray:
    """Long-only weights ``(N,)`` (sum 1) whose risk contributions equal ``budget``
    (default: equal). ``budget`` must be positive; it is normalised to sum to 1. A labelled
    ``budget`` (``dict`` or Series) is matched to a labelled covariance by name."""
    cov, names = align_matrix(cov, "cov", OptimizationError)
    c = check_covariance(cov)
    n = c.shape[0]
    if budget is None:
        b = np.full(n, 1.0 / n)
    else:
        b = align_vector(budget, names, "budget", OptimizationError)
        if b.shape != (n,) or not (np.isfinite(b).all() and (b > 0).all()):
            raise OptimizationError(f"budget must be {n} positive numbers; got {b.tolist()}",
                                    field="budget", value=b.tolist())
        b = b / b.sum()
    scale = float(np.sqrt(np.diag(c)).mean())
    cs = c / scale**2  # unit-scale problem; the solution scales back by 1/scale
    x = b / np.sqrt(np.diag(cs))
    x *= np.sqrt(b.sum() / (x @ cs @ x))
    for _ in range(max_iter):
        grad = cs @ x - b / x
        hess = cs + np.diag(b / x**2)
        step = np.linalg.solve(hess, grad)
        decrement = float(grad @ step)
        t = 1.0
        while (x - t * step <= 0).any():
            t *= 0.5
        x = x - t * step
        if decrement < tol and t == 1.0:
            break
    else:  # pragma: no cover - Newton converges in a handful of steps
        raise OptimizationError("equal_risk_contribution did not converge", field="max_iter",
                                value=max_iter)
    return np.asarray(x / x.sum())
