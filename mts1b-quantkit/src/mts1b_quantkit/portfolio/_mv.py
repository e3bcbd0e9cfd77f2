"""Mean-variance optimisation on scipy: minimum variance, maximum Sharpe, efficient return.

The problems, and the constraint conventions, are PyPortfolioOpt's ``EfficientFrontier``:
weights sum to 1 (0 when ``market_neutral``), ``weight_bounds`` bound each weight, and maximum
Sharpe uses the Cornuejols-Tutuncu change of variables (``y = k w``) so that it is a convex QP.
``gross`` adds ``sum |w| <= gross`` (a leverage cap for long/short books).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from mts1b_quantkit._xp import as_float_array
from mts1b_quantkit.covariance import check_covariance
from mts1b_quantkit.errors import InfeasibleError, OptimizationError
from mts1b_quantkit.portfolio._qp import QP, solve_qp

__all__ = [
    "Performance",
    "efficient_return",
    "max_sharpe",
    "min_variance",
    "portfolio_performance",
]

FloatArray = npt.NDArray[np.float64]
# (lo, hi) scalars, (lo_array, hi_array), or one (lo, hi) pair per asset; None = unbounded
Bounds = Any


def _vector(x: Any, n: int, name: str) -> FloatArray:
    v = as_float_array(x).reshape(-1)
    if v.shape != (n,):
        raise OptimizationError(f"{name} must have {n} entries; got shape {v.shape}", field=name,
                                value=v.shape)
    if not np.isfinite(v).all():
        raise OptimizationError(f"{name} has non-finite entries", field=name)
    return v


def _bounds(weight_bounds: Bounds, n: int) -> tuple[FloatArray, FloatArray]:
    """``(lo, hi)`` scalars, ``(lo_array, hi_array)``, or one ``(lo, hi)`` pair per asset."""
    wb = weight_bounds
    if isinstance(wb, tuple) and len(wb) == 2 and all(
            v is None or np.ndim(v) == 0 for v in wb):
        lo = np.full(n, -np.inf if wb[0] is None else float(wb[0]))
        hi = np.full(n, np.inf if wb[1] is None else float(wb[1]))
    elif isinstance(wb, tuple) and len(wb) == 2 and all(np.ndim(v) == 1 for v in wb):
        lo = np.asarray(wb[0], dtype=np.float64)
        hi = np.asarray(wb[1], dtype=np.float64)
    else:
        pairs = list(wb)
        if len(pairs) != n:
            raise OptimizationError(f"weight_bounds needs one (lo, hi) pair per asset ({n}); "
                                    f"got {len(pairs)}", field="weight_bounds", value=len(pairs))
        lo = np.array([-np.inf if p[0] is None else float(p[0]) for p in pairs])
        hi = np.array([np.inf if p[1] is None else float(p[1]) for p in pairs])
    if lo.shape != (n,) or hi.shape != (n,):
        raise OptimizationError(f"weight_bounds must give {n} lower and upper bounds",
                                field="weight_bounds")
    if (lo > hi).any():
        i = int(np.flatnonzero(lo > hi)[0])
        raise InfeasibleError(f"weight_bounds for asset {i} are empty: {lo[i]} > {hi[i]}",
                              field="weight_bounds", value=[float(lo[i]), float(hi[i])])
    return lo, hi


class _Layout:
    """Decision variables: ``w`` directly, or ``w = p - m`` (p, m >= 0) when a gross cap must be
    expressed on a book that may be short."""

    def __init__(self, lo: FloatArray, hi: FloatArray, gross: float | None) -> None:
        self.n = lo.size
        if gross is not None and not gross > 0:
            raise OptimizationError(f"gross must be > 0; got {gross!r}", field="gross",
                                    value=gross)
        self.gross = gross
        self.split = gross is not None and bool((lo < 0).any())
        if self.split:
            self.T = np.hstack([np.eye(self.n), -np.eye(self.n)])
            p_lo, p_hi = np.maximum(lo, 0.0), np.maximum(hi, 0.0)
            m_lo, m_hi = np.maximum(-hi, 0.0), np.maximum(-lo, 0.0)
            self.z_lo = np.concatenate([p_lo, m_lo])
            self.z_hi = np.concatenate([p_hi, m_hi])
        else:
            self.T = np.eye(self.n)
            self.z_lo, self.z_hi = lo.copy(), hi.copy()

    @property
    def size(self) -> int:
        return int(self.T.shape[1])

    @property
    def pairs(self) -> npt.NDArray[np.intp]:
        """Indices of the (long, short) halves of each weight when split."""
        if not self.split:
            return np.zeros((0, 2), dtype=np.intp)
        idx = np.arange(self.n, dtype=np.intp)
        return np.column_stack([idx, idx + self.n])

    def gross_row(self) -> FloatArray:
        """Row ``r`` with ``r @ z == sum |w|`` at the optimum (``sum w`` when long-only)."""
        return np.ones(self.size)


def _mv_qp(cov: FloatArray, layout: _Layout, net: float, extra_g: list[tuple[FloatArray, float]]
           ) -> QP:
    t = layout.T
    h_mat = 2.0 * t.T @ cov @ t
    e_mat = (np.ones(layout.n) @ t)[None, :]
    g_rows, g_rhs = [r for r, _ in extra_g], [b for _, b in extra_g]
    if layout.gross is not None:
        g_rows.append(layout.gross_row())
        g_rhs.append(layout.gross)
    g_mat = np.vstack(g_rows) if g_rows else np.zeros((0, layout.size))
    return QP(h_mat, np.zeros(layout.size), e_mat, np.array([net]), g_mat,
              np.asarray(g_rhs, dtype=np.float64), layout.z_lo, layout.z_hi, layout.pairs)


def min_variance(cov: Any, *, weight_bounds: Bounds = (0.0, 1.0), gross: float | None = None,
                 market_neutral: bool = False) -> FloatArray:
    """Global minimum-variance weights ``(N,)``: minimise ``w' C w`` subject to
    ``sum(w) = 1`` (0 if ``market_neutral``), ``weight_bounds`` and ``sum |w| <= gross``.

    Same problem as PyPortfolioOpt's
    ``EfficientFrontier(None, cov, weight_bounds).min_volatility()``.
    """
    c = check_covariance(cov)
    lo, hi = _bounds(weight_bounds, c.shape[0])
    layout = _Layout(lo, hi, gross)
    qp = _mv_qp(c, layout, 0.0 if market_neutral else 1.0, [])
    return np.asarray(layout.T @ solve_qp(qp, what="min_variance"))


def efficient_return(mu: Any, cov: Any, target_return: float, *,
                     weight_bounds: Bounds = (0.0, 1.0), gross: float | None = None,
                     market_neutral: bool = False) -> FloatArray:
    """Minimum-variance weights with expected return ``mu @ w >= target_return`` (PyPortfolioOpt's
    ``efficient_return``). :class:`InfeasibleError` if the target cannot be reached."""
    c = check_covariance(cov)
    m = _vector(mu, c.shape[0], "mu")
    lo, hi = _bounds(weight_bounds, c.shape[0])
    layout = _Layout(lo, hi, gross)
    row = -(m @ layout.T)
    qp = _mv_qp(c, layout, 0.0 if market_neutral else 1.0, [(row, -float(target_return))])
    try:
        z = solve_qp(qp, what=f"efficient_return(target_return={target_return})")
    except InfeasibleError as exc:
        raise InfeasibleError(
            f"target_return {target_return} cannot be reached under the weight constraints "
            f"(the largest single expected return is {m.max():.6g})",
            field="target_return", value=float(target_return),
        ) from exc
    return np.asarray(layout.T @ z)


def max_sharpe(mu: Any, cov: Any, *, risk_free_rate: float = 0.0,
               weight_bounds: Bounds = (0.0, 1.0), gross: float | None = None) -> FloatArray:
    """Tangency-portfolio weights: maximise ``(mu @ w - rf) / sqrt(w' C w)`` with ``sum(w) = 1``,
    ``weight_bounds`` and ``sum |w| <= gross`` (PyPortfolioOpt's ``max_sharpe``).

    Solved exactly as the QP ``min y' C y`` s.t. ``(mu - rf) @ y = 1``, ``sum(y) = k >= 0``,
    ``k lo <= y <= k hi``, ``sum |y| <= k gross``; then ``w = y / k``.
    """
    c = check_covariance(cov)
    n = c.shape[0]
    m = _vector(mu, n, "mu")
    excess = m - float(risk_free_rate)
    if not (excess > 0).any():
        raise InfeasibleError(
            f"max_sharpe needs at least one asset whose expected return exceeds the risk-free "
            f"rate {risk_free_rate}; the largest is {m.max():.6g}",
            field="risk_free_rate", value=float(risk_free_rate),
        )
    lo, hi = _bounds(weight_bounds, n)
    layout = _Layout(lo, hi, gross)
    size = layout.size + 1  # (y or p, m) plus k
    t = np.hstack([layout.T, np.zeros((n, 1))])
    k_col = np.zeros(size)
    k_col[-1] = 1.0
    h_mat = 2.0 * t.T @ c @ t
    e_mat = np.vstack([excess @ t, np.ones(n) @ t - k_col])
    e_vec = np.array([1.0, 0.0])
    g_rows: list[FloatArray] = []
    if layout.split:  # p, m >= 0; a side is fixed at 0 when its sign is excluded by the bounds
        z_lo = np.zeros(size)
        z_hi = np.concatenate([np.where(layout.z_hi > 0, np.inf, 0.0), [np.inf]])
    else:
        z_lo = np.concatenate([np.full(n, -np.inf), [0.0]])
        z_hi = np.full(size, np.inf)
    # homogenised bounds k lo_i <= w_i <= k hi_i; zero bounds stay plain variable bounds
    for i in range(n):
        if np.isfinite(lo[i]):
            if lo[i] == 0.0 and not layout.split:
                z_lo[i] = 0.0
            elif lo[i] != 0.0:
                g_rows.append(lo[i] * k_col - t[i])
        if np.isfinite(hi[i]):
            if hi[i] == 0.0 and not layout.split:
                z_hi[i] = 0.0
            elif hi[i] != 0.0:
                g_rows.append(t[i] - hi[i] * k_col)
    bound_like = [True] * len(g_rows)
    if gross is not None:
        row = np.concatenate([np.ones(layout.size), [-float(gross)]])
        g_rows.append(row)
        bound_like.append(False)
    g_mat = np.vstack(g_rows) if g_rows else np.zeros((0, size))
    qp = QP(h_mat, np.zeros(size), e_mat, e_vec, g_mat, np.zeros(len(g_rows)), z_lo, z_hi,
            layout.pairs, np.asarray(bound_like, dtype=bool))
    z = solve_qp(qp, what="max_sharpe")
    k = z[-1]
    if not k > 0:  # pragma: no cover - excluded by the (mu - rf) @ y = 1 constraint
        raise OptimizationError("max_sharpe found no portfolio with positive excess return",
                                field="k", value=float(k))
    return np.asarray(layout.T @ z[:-1] / k)


class Performance(NamedTuple):
    """Expected return, volatility and Sharpe ratio of a weight vector."""

    expected_return: float
    volatility: float
    sharpe: float


def portfolio_performance(weights: Any, mu: Any, cov: Any, *, risk_free_rate: float = 0.0
                          ) -> Performance:
    """``(mu @ w, sqrt(w' C w), (mu @ w - rf) / vol)`` in the units of ``mu`` and ``cov``."""
    c = as_float_array(cov)
    w = _vector(weights, c.shape[0], "weights")
    m = _vector(mu, c.shape[0], "mu")
    ret = float(m @ w)
    vol = float(np.sqrt(w @ c @ w))
    return Performance(ret, vol, (ret - risk_free_rate) / vol if vol > 0 else float("nan"))
