"""Mean-variance optimisation: minimum variance, maximum Sharpe, efficient return and risk,
maximum quadratic utility.

The problems, and the constraint conventions, are PyPortfolioOpt's ``EfficientFrontier``:
weights sum to 1 (0 when ``market_neutral``), ``weight_bounds`` bound each weight, and maximum
Sharpe uses the Cornuejols-Tutuncu change of variables (``y = k w``) so that it is a convex QP.
``gross`` adds ``sum |w| <= gross`` (a leverage cap for long/short books). PyPortfolioOpt's
extras have the same names and meaning:

* ``gamma``: L2 regularisation, ``+ gamma * sum(w**2)`` in the objective (``objective_functions.
  L2_reg``); it pulls the weights towards equal and keeps small positions from vanishing.
* ``w_prev`` and ``k``: a transaction cost ``+ k * sum |w - w_prev|`` (``objective_functions.
  transaction_cost``), ``k`` per unit of weight traded (10 bp by default), so that a rebalance
  only trades where the improvement pays for it.
* ``sector_mapper``, ``sector_lower``, ``sector_upper``: ``lower[s] <= sum of the weights in
  sector s <= upper[s]`` (``add_sector_constraints``). Every asset must be mapped, and every
  bounded sector must have an asset: a typo is an error, not an unconstrained asset.

Labelled inputs are read by name: ``mu``, ``w_prev`` and a ``sector_mapper`` given as a
``dict`` or a pandas Series are matched to a labelled covariance's assets (or, for an unlabelled
covariance, to a labelled ``mu``). Weights come back as ``(N,)`` arrays in the covariance's
order.

Every problem is a convex QP solved exactly (:mod:`._qp`); the absolute values are split into
nonnegative parts. :func:`efficient_risk` has a quadratic constraint instead: it is solved as the
family ``min w'Cw + t * (gamma |w|^2 - mu'w + k |w - w_prev|)`` whose volatility grows with
``t``, searching ``t`` until the volatility is the target.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from mts1b_quantkit._labels import align_matrix, align_vector, check_labels, labels_of
from mts1b_quantkit._xp import as_float_array
from mts1b_quantkit.covariance import check_covariance
from mts1b_quantkit.errors import InfeasibleError, OptimizationError
from mts1b_quantkit.portfolio._qp import QP, Sets, active_sets, linear_minimum, solve_qp

__all__ = [
    "Performance",
    "efficient_return",
    "efficient_risk",
    "max_quadratic_utility",
    "max_sharpe",
    "min_variance",
    "portfolio_performance",
]

FloatArray = npt.NDArray[np.float64]
# (lo, hi) scalars, (lo_array, hi_array), or one (lo, hi) pair per asset; None = unbounded
Bounds = Any


def _vector(x: Any, n: int, name: str, names: Sequence[Hashable] | None = None) -> FloatArray:
    v = align_vector(x, names, name, OptimizationError)
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
    """Decision variables ``z`` and the weights they give, ``w = offset + T z``.

    * plain: ``z = w``;
    * a gross cap on a book that may be short: ``w = p - m`` (``p, m >= 0``), ``sum |w| =
      sum(p + m)`` at the optimum;
    * a transaction cost: ``w = w_prev + u - v`` (``u, v >= 0`` the buys and sells), cost
      ``k sum(u + v)``; with a gross cap on a short book as well, ``p`` and ``m`` are added and
      tied to the trades by ``u - v - p + m = -w_prev``.

    The bounds of ``u`` and ``v`` (``u`` up to ``hi - w_prev``, ``v`` up to ``w_prev - lo``,
    both from 0, or from what the bounds force when ``w_prev`` lies outside them) keep ``w``
    inside ``weight_bounds`` for every ``u`` and ``v`` in them. Each split pair is listed in
    ``pairs``: at most one half of a pair is nonzero at the optimum, which the QP solver uses.
    """

    def __init__(self, lo: FloatArray, hi: FloatArray, gross: float | None,
                 w_prev: FloatArray | None = None) -> None:
        n = self.n = lo.size
        if gross is not None and not gross > 0:
            raise OptimizationError(f"gross must be > 0; got {gross!r}", field="gross",
                                    value=gross)
        self.gross = gross
        eye, zero = np.eye(n), np.zeros((n, n))
        self.split = gross is not None and bool((lo < 0).any())
        p_lo, p_hi = np.maximum(lo, 0.0), np.maximum(hi, 0.0)
        m_lo, m_hi = np.maximum(-hi, 0.0), np.maximum(-lo, 0.0)
        self.offset = np.zeros(n)
        self.trades = np.zeros(0, dtype=np.intp)  # columns that pay the transaction cost
        self.link_E = np.zeros((0, 0))
        self.link_e = np.zeros(0)
        pair_list: list[tuple[int, int]] = []
        if w_prev is None:
            if self.split:
                self.T = np.hstack([eye, -eye])
                self.z_lo, self.z_hi = np.concatenate([p_lo, m_lo]), np.concatenate([p_hi, m_hi])
                pair_list = [(i, n + i) for i in range(n)]
                self._gross_row = np.ones(2 * n)
            else:
                self.T = eye
                self.z_lo, self.z_hi = lo.copy(), hi.copy()
                self._gross_row = np.ones(n)
            self._gross_rhs = float(gross) if gross is not None else math.inf
        else:
            self.offset = w_prev.copy()
            u_lo, u_hi = np.maximum(lo - w_prev, 0.0), np.maximum(hi - w_prev, 0.0)
            v_lo, v_hi = np.maximum(w_prev - hi, 0.0), np.maximum(w_prev - lo, 0.0)
            self.trades = np.arange(2 * n, dtype=np.intp)
            pair_list = [(i, n + i) for i in range(n)]
            if self.split:
                self.T = np.hstack([eye, -eye, zero, zero])
                self.z_lo = np.concatenate([u_lo, v_lo, p_lo, m_lo])
                self.z_hi = np.concatenate([u_hi, v_hi, p_hi, m_hi])
                pair_list += [(2 * n + i, 3 * n + i) for i in range(n)]
                self.link_E = np.hstack([eye, -eye, -eye, eye])
                self.link_e = -w_prev
                self._gross_row = np.concatenate([np.zeros(2 * n), np.ones(2 * n)])
                self._gross_rhs = float(gross)  # type: ignore[arg-type]
            else:
                self.T = np.hstack([eye, -eye])
                self.z_lo, self.z_hi = np.concatenate([u_lo, v_lo]), np.concatenate([u_hi, v_hi])
                # long-only: sum |w| = sum w = sum(w_prev) + sum(u - v)
                self._gross_row = np.ones(n) @ self.T
                self._gross_rhs = (float(gross) - float(w_prev.sum()) if gross is not None
                                   else math.inf)
        self.pairs = np.asarray(pair_list, dtype=np.intp).reshape(-1, 2)

    @property
    def size(self) -> int:
        return int(self.T.shape[1])

    def weights(self, z: FloatArray) -> FloatArray:
        return np.asarray(self.offset + self.T @ z)

    def row(self, a: FloatArray, b: float) -> tuple[FloatArray, float]:
        """``a @ w <= b`` as a row on ``z``."""
        return a @ self.T, float(b - a @ self.offset)

    def gross_row(self) -> tuple[FloatArray, float]:
        """``sum |w| <= gross`` as a row on ``z``."""
        return self._gross_row, self._gross_rhs


@dataclasses.dataclass
class _Setup:
    """A mean-variance problem's data: the covariance and expected returns in one order, the
    variables, and the linear constraints on the weights (``rows``: ``a @ w <= b``)."""

    cov: FloatArray
    mu: FloatArray  # zeros when the problem has no expected returns (min_variance)
    layout: _Layout
    rows: list[tuple[FloatArray, float]]
    gamma: float
    k: float
    net: float


def _names(mu: Any, cov: Any) -> tuple[Any, list[Hashable] | None]:
    """The covariance (rows in its columns' order) and the asset names: the covariance's
    labels, else a labelled ``mu``'s (whose order then is the covariance's)."""
    cov, names = align_matrix(cov, "cov", OptimizationError)
    if names is None and mu is not None and not isinstance(mu, Mapping):
        names = labels_of(mu)
    return cov, names


def _sector_rows(n: int, names: Sequence[Hashable] | None, sector_mapper: Any,
                 sector_lower: Mapping[Hashable, float] | None,
                 sector_upper: Mapping[Hashable, float] | None,
                 ) -> list[tuple[FloatArray, float]]:
    """``lower[s] <= sum_{i in s} w_i <= upper[s]`` as rows ``a @ w <= b``."""
    if sector_mapper is None:
        if sector_lower or sector_upper:
            raise OptimizationError("sector_lower/sector_upper need a sector_mapper (the sector "
                                    "of each asset)", field="sector_mapper")
        return []
    keys = labels_of(sector_mapper)
    if keys is not None:
        if names is None:
            raise OptimizationError(
                "sector_mapper maps asset names, but the assets have none: pass a labelled "
                "covariance or mu (pandas), or one sector per asset as a list",
                field="sector_mapper")
        check_labels(keys, names, "sector_mapper", OptimizationError)
        sectors = [sector_mapper[a] for a in names]
    else:
        sectors = list(sector_mapper)
        if len(sectors) != n:
            raise OptimizationError(f"sector_mapper needs one sector per asset ({n}); got "
                                    f"{len(sectors)}", field="sector_mapper", value=len(sectors))
    known = set(sectors)
    rows: list[tuple[FloatArray, float]] = []
    for bounds, sign, what in ((sector_upper or {}, 1.0, "sector_upper"),
                               (sector_lower or {}, -1.0, "sector_lower")):
        unknown = [s for s in bounds if s not in known]
        if unknown:
            raise OptimizationError(f"{what} names sectors no asset is in: {unknown!r} (the "
                                    f"sectors are {sorted(map(str, known))})", field=what,
                                    value=[repr(u) for u in unknown])
        for sector, limit in bounds.items():
            member = np.array([s == sector for s in sectors], dtype=np.float64)
            rows.append((sign * member, sign * float(limit)))
    return rows


def _setup(mu: Any, cov: Any, *, weight_bounds: Bounds, gross: float | None,
           market_neutral: bool, gamma: float, w_prev: Any, k: float, sector_mapper: Any,
           sector_lower: Mapping[Hashable, float] | None,
           sector_upper: Mapping[Hashable, float] | None) -> _Setup:
    cov, names = _names(mu, cov)
    c = check_covariance(cov)
    n = c.shape[0]
    m = np.zeros(n) if mu is None else _vector(mu, n, "mu", names)
    if not (math.isfinite(gamma) and gamma >= 0):
        raise OptimizationError(f"gamma must be >= 0; got {gamma!r}", field="gamma", value=gamma)
    if not (math.isfinite(k) and k >= 0):
        raise OptimizationError(f"k must be >= 0; got {k!r}", field="k", value=k)
    prev = None if w_prev is None else _vector(w_prev, n, "w_prev", names)
    lo, hi = _bounds(weight_bounds, n)
    layout = _Layout(lo, hi, gross, prev if prev is not None and k > 0 else None)
    rows = _sector_rows(n, names, sector_mapper, sector_lower, sector_upper)
    return _Setup(c, m, layout, rows, float(gamma), float(k), 0.0 if market_neutral else 1.0)


def _qp(s: _Setup, *, quad: float, gamma: float, lin: float, k: float,
        extra: Sequence[tuple[FloatArray, float]] = ()) -> QP:
    """The QP ``min w'(quad C + gamma I)w - lin mu'w + k sum|w - w_prev|`` over the setup's
    constraints (and ``extra`` rows on ``w``)."""
    lay = s.layout
    a_mat = quad * s.cov + gamma * np.eye(lay.n)
    h_mat = 2.0 * lay.T.T @ a_mat @ lay.T
    c_vec = 2.0 * lay.T.T @ (a_mat @ lay.offset)
    if lin:
        c_vec = c_vec - lin * (s.mu @ lay.T)
    if k and lay.trades.size:
        c_vec[lay.trades] += k
    budget_row, budget_rhs = lay.row(np.ones(lay.n), s.net)
    e_rows = [budget_row[None, :]]
    e_rhs = [np.array([budget_rhs])]
    if lay.link_E.size:
        e_rows.append(lay.link_E)
        e_rhs.append(lay.link_e)
    g_rows, g_rhs = [], []
    for a, b in [*s.rows, *extra]:
        row, rhs = lay.row(a, b)
        g_rows.append(row)
        g_rhs.append(rhs)
    if lay.gross is not None:
        row, rhs = lay.gross_row()
        g_rows.append(row)
        g_rhs.append(rhs)
    g_mat = np.vstack(g_rows) if g_rows else np.zeros((0, lay.size))
    return QP(h_mat, c_vec, np.vstack(e_rows), np.concatenate(e_rhs), g_mat,
              np.asarray(g_rhs, dtype=np.float64), lay.z_lo, lay.z_hi, lay.pairs)


_EXTRAS_DOC = """

    ``gamma`` adds ``gamma * sum(w**2)`` (L2 regularisation), ``w_prev`` and ``k`` a
    transaction cost ``k * sum |w - w_prev|``, and ``sector_mapper`` (``{asset: sector}`` or one
    sector per asset) with ``sector_lower``/``sector_upper`` (``{sector: bound}``) bound the
    total weight of each sector: PyPortfolioOpt's ``L2_reg``, ``transaction_cost`` and
    ``add_sector_constraints``. Labelled ``mu``, ``w_prev`` and ``sector_mapper`` are matched
    to the covariance's assets by name; weights are ``(N,)`` in the covariance's order.
    ``market_neutral`` keeps the ``weight_bounds`` given (PyPortfolioOpt widens long-only bounds
    to ``(-1, 1)`` with a warning): pass bounds that allow shorts."""


def min_variance(cov: Any, *, weight_bounds: Bounds = (0.0, 1.0), gross: float | None = None,
                 market_neutral: bool = False, gamma: float = 0.0, w_prev: Any = None,
                 k: float = 0.001, sector_mapper: Any = None,
                 sector_lower: Mapping[Hashable, float] | None = None,
                 sector_upper: Mapping[Hashable, float] | None = None) -> FloatArray:
    """Global minimum-variance weights ``(N,)``: minimise ``w' C w`` subject to
    ``sum(w) = 1`` (0 if ``market_neutral``), ``weight_bounds`` and ``sum |w| <= gross``.

    Same problem as PyPortfolioOpt's
    ``EfficientFrontier(None, cov, weight_bounds).min_volatility()``."""
    s = _setup(None, cov, weight_bounds=weight_bounds, gross=gross,
               market_neutral=market_neutral, gamma=gamma, w_prev=w_prev, k=k,
               sector_mapper=sector_mapper, sector_lower=sector_lower, sector_upper=sector_upper)
    z = solve_qp(_qp(s, quad=1.0, gamma=s.gamma, lin=0.0, k=s.k), what="min_variance")
    return s.layout.weights(z)


def efficient_return(mu: Any, cov: Any, target_return: float, *,
                     weight_bounds: Bounds = (0.0, 1.0), gross: float | None = None,
                     market_neutral: bool = False, gamma: float = 0.0, w_prev: Any = None,
                     k: float = 0.001, sector_mapper: Any = None,
                     sector_lower: Mapping[Hashable, float] | None = None,
                     sector_upper: Mapping[Hashable, float] | None = None) -> FloatArray:
    """Minimum-variance weights with expected return ``mu @ w >= target_return`` (PyPortfolioOpt's
    ``efficient_return``). :class:`InfeasibleError` if the target cannot be reached."""
    s = _setup(mu, cov, weight_bounds=weight_bounds, gross=gross,
               market_neutral=market_neutral, gamma=gamma, w_prev=w_prev, k=k,
               sector_mapper=sector_mapper, sector_lower=sector_lower, sector_upper=sector_upper)
    qp = _qp(s, quad=1.0, gamma=s.gamma, lin=0.0, k=s.k,
             extra=[(-s.mu, -float(target_return))])
    try:
        z = solve_qp(qp, what=f"efficient_return(target_return={target_return})")
    except InfeasibleError as exc:
        raise InfeasibleError(
            f"target_return {target_return} cannot be reached under the weight constraints "
            f"(the largest single expected return is {s.mu.max():.6g})",
            field="target_return", value=float(target_return),
        ) from exc
    return s.layout.weights(z)


def max_quadratic_utility(mu: Any, cov: Any, risk_aversion: float = 1.0, *,
                          weight_bounds: Bounds = (0.0, 1.0), gross: float | None = None,
                          market_neutral: bool = False, gamma: float = 0.0, w_prev: Any = None,
                          k: float = 0.001, sector_mapper: Any = None,
                          sector_lower: Mapping[Hashable, float] | None = None,
                          sector_upper: Mapping[Hashable, float] | None = None) -> FloatArray:
    """Weights ``(N,)`` maximising the quadratic utility ``mu'w - risk_aversion / 2 * w'Cw``
    (PyPortfolioOpt's ``max_quadratic_utility``, same default ``risk_aversion=1``).

    ``risk_aversion`` (``delta``, > 0) trades return for variance: large values approach the
    minimum-variance portfolio, small ones the highest-return corner of the constraints."""
    if not (isinstance(risk_aversion, int | float) and math.isfinite(risk_aversion)
            and risk_aversion > 0):
        raise OptimizationError(f"risk_aversion must be > 0; got {risk_aversion!r}",
                                field="risk_aversion", value=repr(risk_aversion))
    s = _setup(mu, cov, weight_bounds=weight_bounds, gross=gross,
               market_neutral=market_neutral, gamma=gamma, w_prev=w_prev, k=k,
               sector_mapper=sector_mapper, sector_lower=sector_lower, sector_upper=sector_upper)
    qp = _qp(s, quad=0.5 * float(risk_aversion), gamma=s.gamma, lin=1.0, k=s.k)
    return s.layout.weights(solve_qp(qp, what="max_quadratic_utility"))


class _Path:
    """The family ``min w'Cw + t g(w)`` of :func:`efficient_risk`, ``g = gamma |w|^2 - mu'w +
    k |w - w_prev|``, solved for one ``t`` after another, each warm-started from the previous
    solution's active constraints (one feasibility check for all of them)."""

    def __init__(self, s: _Setup) -> None:
        self.s = s
        self.warm: Sets | None = None
        self.checked = False

    def solve(self, t: float) -> FloatArray:
        s = self.s
        qp = _qp(s, quad=1.0, gamma=t * s.gamma, lin=t, k=t * s.k)
        z = solve_qp(qp, what="efficient_risk", warm=self.warm, feasible=self.checked)
        self.checked = True
        self.warm = active_sets(qp, z)
        return s.layout.weights(z)

    def variance(self, w: FloatArray) -> float:
        return float(w @ self.s.cov @ w)


def _g(s: _Setup, w: FloatArray) -> float:
    """The objective :func:`efficient_risk` minimises, ``gamma |w|^2 - mu'w + k |w - w_prev|``
    (the trades' cost only when the layout has them)."""
    value = s.gamma * float(w @ w) - float(s.mu @ w)
    if s.layout.trades.size:
        value += s.k * float(np.abs(w - s.layout.offset).sum())
    return value


def efficient_risk(mu: Any, cov: Any, target_volatility: float, *,
                   weight_bounds: Bounds = (0.0, 1.0), gross: float | None = None,
                   market_neutral: bool = False, gamma: float = 0.0, w_prev: Any = None,
                   k: float = 0.001, sector_mapper: Any = None,
                   sector_lower: Mapping[Hashable, float] | None = None,
                   sector_upper: Mapping[Hashable, float] | None = None) -> FloatArray:
    """Highest expected return with volatility ``sqrt(w'Cw) <= target_volatility``
    (PyPortfolioOpt's ``efficient_risk``: maximise ``mu'w - gamma |w|^2 - k |w - w_prev|``).

    The volatility is the target unless a portfolio of lower volatility already has the highest
    attainable objective (a high target on a long-only book: the best single asset), which is
    then returned. :class:`InfeasibleError` when the target is below the lowest volatility the
    constraints allow (PyPortfolioOpt compares with the unconstrained minimum instead).

    The variance constraint makes this a conic problem rather than a QP; here it is solved
    through its Lagrangian family ``min w'Cw + t g(w)``: the volatility of the solution grows
    with ``t``, so ``t`` is searched (bracketed, then Brent's method to machine precision) until
    it is the target, each step an exact QP."""
    target = float(target_volatility)
    if not (math.isfinite(target) and target > 0):
        raise OptimizationError(f"target_volatility must be > 0; got {target_volatility!r}",
                                field="target_volatility", value=repr(target_volatility))
    s = _setup(mu, cov, weight_bounds=weight_bounds, gross=gross,
               market_neutral=market_neutral, gamma=gamma, w_prev=w_prev, k=k,
               sector_mapper=sector_mapper, sector_lower=sector_lower, sector_upper=sector_upper)
    var_target = target * target
    path = _Path(s)
    w0 = path.solve(0.0)
    v0 = path.variance(w0)
    if v0 > var_target * (1.0 + 1e-12):
        raise InfeasibleError(
            f"target_volatility {target:.6g} is below the lowest volatility the constraints "
            f"allow ({math.sqrt(v0):.6g})", field="target_volatility", value=target)
    g_qp = _qp(s, quad=0.0, gamma=s.gamma, lin=1.0, k=s.k)  # g alone: the limit t -> inf
    if s.gamma > 0:  # a strictly convex problem with one solution
        w_inf = s.layout.weights(solve_qp(g_qp, what="efficient_risk"))
        if path.variance(w_inf) <= var_target:
            return w_inf
        g_star = -math.inf
    else:  # a linear program: its optimum, or -inf when the return is unbounded
        g_star = linear_minimum(g_qp, "efficient_risk")
    g_tol = 1e-9 * (1.0 + abs(g_star)) if math.isfinite(g_star) else 0.0
    # bracket the t whose solution has the target variance
    t_lo, t_hi = 0.0, 0.0
    # the scale where t mu'w is comparable to the variance budget; t = 0 brackets from below
    t = var_target / max(float(np.abs(s.mu).max()), 1e-300)
    w_last = w0
    for _ in range(80):
        w_t = path.solve(t)
        if path.variance(w_t) > var_target:
            t_hi = t
            break
        # without gamma the path ends at a finite t (an exact penalty): once the solution stops
        # moving at the linear program's optimum, it is the highest objective with the lowest
        # variance, inside the volatility budget
        if (s.gamma == 0 and np.allclose(w_t, w_last, rtol=0.0, atol=1e-14)
                and _g(s, w_t) <= g_star + g_tol):
            return w_t
        t_lo, w_last = t, w_t
        t *= 4.0
    else:
        raise OptimizationError("efficient_risk found no portfolio reaching the target "
                                "volatility along the efficient frontier",
                                field="target_volatility", value=target)
    from scipy import optimize

    root = optimize.brentq(lambda x: path.variance(path.solve(x)) - var_target, t_lo, t_hi,
                           xtol=1e-300, rtol=4 * np.finfo(float).eps, maxiter=200)
    return path.solve(float(root))


def max_sharpe(mu: Any, cov: Any, *, risk_free_rate: float = 0.0,
               weight_bounds: Bounds = (0.0, 1.0), gross: float | None = None,
               gamma: float = 0.0, sector_mapper: Any = None,
               sector_lower: Mapping[Hashable, float] | None = None,
               sector_upper: Mapping[Hashable, float] | None = None) -> FloatArray:
    """Tangency-portfolio weights: maximise ``(mu @ w - rf) / sqrt(w' C w)`` with ``sum(w) = 1``,
    ``weight_bounds`` and ``sum |w| <= gross`` (PyPortfolioOpt's ``max_sharpe``).

    Solved exactly as the QP ``min y' C y`` s.t. ``(mu - rf) @ y = 1``, ``sum(y) = k >= 0``,
    ``k lo <= y <= k hi``, ``sum |y| <= k gross``; then ``w = y / k``. Sector bounds are
    homogenised the same way.

    ``gamma`` is PyPortfolioOpt's ``L2_reg`` in ``max_sharpe``: it adds ``gamma |y|^2`` to the
    transformed objective, which is maximising ``(mu @ w - rf) / sqrt(w'(C + gamma I)w)``, the
    Sharpe ratio with every variance raised by ``gamma``. A transaction cost has no such reading
    (``|y - w_prev|`` mixes the scaled ``y`` with unscaled weights), so it is not offered here:
    use :func:`efficient_risk` or :func:`max_quadratic_utility` with ``w_prev``."""
    cov, names = _names(mu, cov)
    c = check_covariance(cov)
    n = c.shape[0]
    m = _vector(mu, n, "mu", names)
    if not (math.isfinite(gamma) and gamma >= 0):
        raise OptimizationError(f"gamma must be >= 0; got {gamma!r}", field="gamma", value=gamma)
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
    h_mat = 2.0 * t.T @ (c + gamma * np.eye(n)) @ t
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
    for a, b in _sector_rows(n, names, sector_mapper, sector_lower, sector_upper):
        g_rows.append(a @ t - b * k_col)  # a @ w <= b  ->  a @ y <= b k
        bound_like.append(False)
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


for _fn in (min_variance, efficient_return, max_quadratic_utility, efficient_risk):
    _fn.__doc__ = (_fn.__doc__ or "") + _EXTRAS_DOC


class Performance(NamedTuple):
    """Expected return, volatility and Sharpe ratio of a weight vector."""

    expected_return: float
    volatility: float
    sharpe: float


def portfolio_performance(weights: Any, mu: Any, cov: Any, *, risk_free_rate: float = 0.0
                          ) -> Performance:
    """``(mu @ w, sqrt(w' C w), (mu @ w - rf) / vol)`` in the units of ``mu`` and ``cov``.
    Labelled ``weights`` and ``mu`` are matched to a labelled covariance by name."""
    cov, names = _names(mu, cov)
    c = as_float_array(cov)
    w = _vector(weights, c.shape[0], "weights", names)
    m = _vector(mu, c.shape[0], "mu", names)
    ret = float(m @ w)
    vol = float(np.sqrt(w @ c @ w))
    return Performance(ret, vol, (ret - risk_free_rate) / vol if vol > 0 else float("nan"))
