"""Black-Litterman (1992) posterior returns, covariance and weights, as PyPortfolioOpt's
``BlackLittermanModel``.

* prior ``pi``: market-implied ``delta * C @ w_mkt + rf`` (from market caps), equal, or given;
* views: ``P @ r = Q`` (``P`` ``(K, N)`` picking matrix, ``Q`` ``(K,)``), or absolute views
  ``{asset: expected return}``;
* ``omega`` (view uncertainty, ``(K, K)``): ``"default"`` (He & Litterman:
  ``diag(tau P C P')``), ``"idzorek"`` (from ``view_confidences`` in ``[0, 1]``, Walters' closed
  form) or an explicit matrix;
* posterior returns ``pi + tau C P' (P tau C P' + omega)^-1 (Q - P pi)``; posterior covariance
  ``C + tau C - tau C P' (P tau C P' + omega)^-1 P tau C``; weights ``(delta C)^-1 r_post``
  normalised to sum to 1.

Labelled inputs are read by name (the rule of :mod:`mts1b_quantkit._labels`): market caps and a
prior given as a ``dict`` or a pandas Series, a ``P`` DataFrame's columns and the keys of
``absolute_views`` are matched to the asset names of a labelled covariance (or ``assets=``), in
their own type (an integer-labelled covariance takes views on ``0``, ``1``, ...); arrays are
positional. PyPortfolioOpt aligns the same inputs through pandas.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any, Literal, NamedTuple

import numpy as np
import numpy.typing as npt

from mts1b_quantkit._labels import align_matrix, align_vector, check_labels, matrix_labels
from mts1b_quantkit._xp import as_float_array
from mts1b_quantkit.covariance import check_covariance
from mts1b_quantkit.errors import OptimizationError, SingularCovarianceError

__all__ = [
    "BlackLittermanResult",
    "black_litterman",
    "idzorek_omega",
    "market_implied_prior_returns",
    "market_implied_risk_aversion",
]

FloatArray = npt.NDArray[np.float64]


class BlackLittermanResult(NamedTuple):
    """Posterior expected returns ``(N,)``, posterior covariance ``(N, N)``, the weights they
    imply ``(N,)`` (sum 1), and the prior ``(N,)`` and ``omega`` ``(K, K)`` that were used."""

    returns: FloatArray
    cov: FloatArray
    weights: FloatArray
    prior: FloatArray
    omega: FloatArray


def market_implied_prior_returns(market_caps: Any, risk_aversion: float, cov: Any, *,
                                 risk_free_rate: float = 0.0,
                                 assets: Sequence[Hashable] | None = None) -> FloatArray:
    """Equilibrium returns ``delta * C @ (caps / sum(caps)) + rf`` (reverse optimisation),
    ``(N,)`` in the covariance's order.

    ``market_caps`` given as a ``dict`` or a Series is matched by name to the covariance's labels
    (or ``assets``); an array is read in the covariance's order.
    """
    cov, names = _names(cov, assets)
    c = check_covariance(cov, require_pd=False)
    caps = align_vector(market_caps, names, "market_caps", OptimizationError)
    if caps.shape != (c.shape[0],):
        raise OptimizationError(f"market_caps must have {c.shape[0]} entries; got {caps.shape}",
                                field="market_caps", value=caps.shape)
    if not (np.isfinite(caps).all() and caps.sum() > 0):
        raise OptimizationError("market_caps must be finite with a positive total",
                                field="market_caps")
    return np.asarray(risk_aversion * c @ (caps / caps.sum()) + risk_free_rate)


def market_implied_risk_aversion(market_prices: Any, *, periods_per_year: float = 252,
                                 risk_free_rate: float = 0.0) -> float:
    """``delta = (E[R_m] - rf) / Var(R_m)``, annualized from the market's price series
    (``pct_change``, NaN dropped, ``ddof=1``)."""
    p = as_float_array(market_prices).reshape(-1)
    p = p[~np.isnan(p)]
    if p.size < 3:
        raise OptimizationError("market_prices needs at least 3 prices", field="market_prices",
                                value=int(p.size))
    r = p[1:] / p[:-1] - 1.0
    return float((r.mean() * periods_per_year - risk_free_rate)
                 / (r.var(ddof=1) * periods_per_year))


def idzorek_omega(view_confidences: Any, cov: Any, P: Any, tau: float) -> FloatArray:
    """Idzorek's method in Walters' closed form: ``omega_k = tau (1 - c_k) / c_k * p_k C p_k'``
    (``c_k = 0`` gives ``1e6``, i.e. the view is ignored)."""
    c = as_float_array(cov)
    p = np.atleast_2d(as_float_array(P))
    conf = as_float_array(view_confidences).reshape(-1)
    if conf.shape != (p.shape[0],):
        raise OptimizationError(f"view_confidences needs one value per view ({p.shape[0]}); got "
                                f"{conf.shape}", field="view_confidences", value=conf.shape)
    if ((conf < 0) | (conf > 1) | np.isnan(conf)).any():
        raise OptimizationError(f"view_confidences must be in [0, 1]; got {conf.tolist()}",
                                field="view_confidences", value=conf.tolist())
    out = np.empty(conf.size)
    for k, ck in enumerate(conf):
        if ck == 0:
            out[k] = 1e6
        else:
            out[k] = tau * (1 - ck) / ck * float(p[k] @ c @ p[k])
    return np.diag(out)


def _names(cov: Any, assets: Sequence[Hashable] | None) -> tuple[Any, list[Hashable] | None]:
    """The covariance (rows in the order of its columns) and the asset names: ``assets`` when
    given (they must agree with a labelled covariance), else the covariance's labels."""
    cov, labels = align_matrix(cov, "cov", OptimizationError)
    if assets is None:
        return cov, labels
    names = list(assets)
    if labels is not None and names != labels:
        check_labels(names, labels, "assets", OptimizationError,
                     what="the covariance's labels")
        cov = cov.loc[names, names]
    return cov, names


def _views(cov: FloatArray, assets: Sequence[Hashable] | None, P: Any, Q: Any,
           absolute_views: Mapping[Hashable, float] | None) -> tuple[FloatArray, FloatArray]:
    n = cov.shape[0]
    if absolute_views is not None:
        if P is not None or Q is not None:
            raise OptimizationError("give absolute_views or P and Q, not both",
                                    field="absolute_views")
        if assets is None:
            raise OptimizationError("absolute_views need asset names: pass assets=[...] or a "
                                    "labelled covariance DataFrame", field="assets")
        index = {a: i for i, a in enumerate(assets)}
        views = list(absolute_views.items())
        unknown = [name for name, _ in views if name not in index]
        if unknown:
            raise OptimizationError(
                f"views on {', '.join(repr(u) for u in unknown)}, which "
                f"{'is' if len(unknown) == 1 else 'are'} not in the universe (the asset names "
                f"are {list(assets)[:8]!r}{' ...' if len(index) > 8 else ''})",
                field="absolute_views", value=[repr(u) for u in unknown])
        q = np.zeros(len(views))
        p = np.zeros((len(views), n))
        for k, (name, value) in enumerate(views):
            q[k] = float(value)
            p[k, index[name]] = 1.0
        return p, q
    if Q is None:
        raise OptimizationError("no views: give Q (and P) or absolute_views", field="Q")
    q = as_float_array(Q).reshape(-1)
    if P is None:
        if q.size != n:
            raise OptimizationError(f"without P, Q needs one view per asset ({n}); got {q.size}",
                                    field="P")
        return np.eye(n), q
    columns = matrix_labels(P)
    if columns is not None and assets is not None:  # a picking matrix labelled by asset
        check_labels(columns, list(assets), "the columns of P", OptimizationError)
        P = P.loc[:, list(assets)]
    p = np.atleast_2d(as_float_array(P))
    if p.shape != (q.size, n):
        raise OptimizationError(f"P must be (K, N) = ({q.size}, {n}); got {p.shape}", field="P",
                                value=p.shape)
    return p, q


def _solve(a: FloatArray, b: FloatArray, what: str) -> FloatArray:
    """``a^-1 b``, refusing a near-singular ``a``. ``b`` may hold several right-hand sides as
    columns: ``a`` is then checked and factorised once for all of them."""
    cond = np.linalg.cond(a)
    if cond > 1e14:
        raise SingularCovarianceError(f"{what} is singular (condition number {cond:.3g})",
                                      field=what)
    try:
        out = np.linalg.solve(a, b)
    except np.linalg.LinAlgError as exc:
        raise SingularCovarianceError(f"{what} is singular: {exc}", field=what) from exc
    if not np.isfinite(out).all():  # pragma: no cover - solve raises first
        raise SingularCovarianceError(f"{what} is numerically singular", field=what)
    return np.asarray(out)


def black_litterman(
    cov: Any,
    *,
    pi: Any | Literal["market", "equal"] | None = None,
    market_caps: Any = None,
    risk_aversion: float = 1.0,
    risk_free_rate: float = 0.0,
    P: Any = None,
    Q: Any = None,
    absolute_views: Mapping[Hashable, float] | None = None,
    omega: Any | Literal["default", "idzorek"] | None = None,
    view_confidences: Any = None,
    tau: float = 0.05,
    assets: Sequence[Hashable] | None = None,
) -> BlackLittermanResult:
    """Black-Litterman posterior and weights.

    ``pi`` is an ``(N,)`` prior, ``"market"`` (needs ``market_caps``), ``"equal"`` (``1/N``) or
    ``None`` (``"market"`` when ``market_caps`` is given; otherwise an error). ``tau`` must be in
    ``(0, 1]`` and ``risk_aversion > 0``. Asset names come from ``assets`` or from a labelled
    ``cov`` DataFrame (needed for ``absolute_views``); ``market_caps`` and ``pi`` given as a
    ``dict`` or Series, and a ``P`` DataFrame, are matched to them by name, and every result is
    in the covariance's order. Numbers equal PyPortfolioOpt's
    ``BlackLittermanModel(...).bl_returns()``, ``.bl_cov()`` and ``.bl_weights()``.
    """
    cov, assets = _names(cov, assets)
    c = check_covariance(cov, require_pd=False)
    n = c.shape[0]
    if not 0 < tau <= 1:
        raise OptimizationError(f"tau must be in (0, 1]; got {tau!r}", field="tau", value=tau)
    if not risk_aversion > 0:
        raise OptimizationError(f"risk_aversion must be > 0; got {risk_aversion!r}",
                                field="risk_aversion", value=risk_aversion)
    if pi is None:
        if market_caps is None:
            raise OptimizationError("give a prior: pi=array, pi='equal', or market_caps for the "
                                    "market-implied prior", field="pi")
        pi = "market"
    if isinstance(pi, str):
        if pi == "market":
            if market_caps is None:
                raise OptimizationError("pi='market' needs market_caps", field="market_caps")
            caps = align_vector(market_caps, assets, "market_caps", OptimizationError)
            prior = market_implied_prior_returns(caps, risk_aversion, c,
                                                 risk_free_rate=risk_free_rate)
        elif pi == "equal":
            prior = np.full(n, 1.0 / n)
        else:
            raise OptimizationError(f"unknown prior {pi!r}; use 'market', 'equal' or an array",
                                    field="pi", value=pi)
    else:
        prior = align_vector(pi, assets, "pi", OptimizationError)
        if prior.shape != (n,):
            raise OptimizationError(f"pi must have {n} entries; got {prior.shape}", field="pi",
                                    value=prior.shape)
    p, q = _views(c, assets, P, Q, absolute_views)
    k = q.size
    if omega is None or (isinstance(omega, str) and omega == "default"):
        om = np.diag(np.diag(tau * p @ c @ p.T))
    elif isinstance(omega, str) and omega == "idzorek":
        if view_confidences is None:
            raise OptimizationError("omega='idzorek' needs view_confidences (one per view, in "
                                    "[0, 1])", field="view_confidences")
        om = idzorek_omega(view_confidences, c, p, tau)
    elif isinstance(omega, str):
        raise OptimizationError(f"unknown omega {omega!r}; use 'default', 'idzorek' or a matrix",
                                field="omega", value=omega)
    else:
        om = np.atleast_2d(as_float_array(omega))
        if om.shape != (k, k):
            raise OptimizationError(f"omega must be (K, K) = ({k}, {k}); got {om.shape}",
                                    field="omega", value=om.shape)
    tau_sigma_p = tau * c @ p.T
    # The posterior mean and covariance both need (P tau C P' + omega)^-1: solve for the view
    # gap and for (tau C P')' as one right-hand side so the matrix is factorised once.
    a = p @ tau_sigma_p + om
    gain = _solve(a, np.column_stack([q - p @ prior, tau_sigma_p.T]), "P tau C P' + omega")
    post = prior + tau_sigma_p @ gain[:, 0]
    post_cov = c + tau * c - tau_sigma_p @ gain[:, 1:]
    raw = _solve(risk_aversion * c, post, "the covariance matrix")
    total = raw.sum()
    if total == 0:
        raise OptimizationError("the implied weights sum to zero and cannot be normalised",
                                field="weights")
    return BlackLittermanResult(np.asarray(post), np.asarray(post_cov), raw / total, prior, om)
