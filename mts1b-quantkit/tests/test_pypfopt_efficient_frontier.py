"""Mean-variance extras against PyPortfolioOpt's own test cases (tests/test_efficient_frontier.py
of PyPortfolioOpt 1.6.0): L2 regularisation, the transaction-cost objective, sector constraints,
``max_quadratic_utility`` and ``efficient_risk``, each answered by PyPortfolioOpt in this process.

PyPortfolioOpt's suite runs on its bundled 20-stock price file; these run on 12 real S&P 500
stocks from the shared data, with the same targets, gammas, bounds and (re-mapped) sectors. Each
test names the case it ports.

Tolerances: the QPs (everything but ``efficient_risk``) agree to 1e-6 in weights (in practice
~1e-15: PyPortfolioOpt's QP solver polishes to machine precision). ``efficient_risk`` is a conic
problem for cvxpy; Clarabel, run here at its tightest tolerances, stops about 1e-7..2e-6 from the
optimum in weights (it reports "optimal_inaccurate"), because the objective is flat along the
frontier. Those cases therefore also check that our answer is at least as good on the problem's
own terms (return, or the objective, at volatility <= target) and that it is the point of
PyPortfolioOpt's own (exact, QP) ``efficient_return`` frontier at the same return.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
from mts1b_quantkit import portfolio as qp
from mts1b_quantkit.errors import InfeasibleError, OptimizationError

pd = pytest.importorskip("pandas")
pytest.importorskip("pypfopt", reason="pyportfolioopt is a test-only reference")
cp = pytest.importorskip("cvxpy")

from pypfopt import EfficientFrontier, objective_functions, risk_models  # noqa: E402

# Clarabel at its tightest tolerances reports "optimal_inaccurate" on some efficient_risk cases,
# and PyPortfolioOpt warns about it; the tolerances below account for it
pytestmark = pytest.mark.filterwarnings("ignore:Solution may be inaccurate")

NAMES = ["AAPL", "MSFT", "XOM", "JPM", "JNJ", "PG", "KO", "GE", "AMZN", "WMT", "CVX", "PFE"]
SECTOR_MAPPER = dict(zip(NAMES, ["tech", "tech", "energy", "fig", "pharma", "retail", "retail",
                                 "utility", "tech", "retail", "energy", "pharma"], strict=True))
SECTOR_UPPER = {"tech": 0.2, "utility": 0.1, "retail": 0.2, "fig": 0.4, "energy": 0.2}
SECTOR_LOWER = {"utility": 0.01, "fig": 0.02, "pharma": 0.05}
# Clarabel at its tightest, for the conic efficient_risk (the defaults stop ~1e-5 away)
TIGHT = {"solver": "CLARABEL", "solver_options": {"tol_gap_abs": 1e-12, "tol_gap_rel": 1e-12,
                                                  "tol_feas": 1e-12, "tol_ktratio": 1e-10}}
QP_ATOL = 1e-6


@pytest.fixture(scope="module")
def rets(sp500_returns):  # type: ignore[no-untyped-def]
    return sp500_returns[NAMES].dropna(how="all")


@pytest.fixture(scope="module")
def S(rets):  # type: ignore[no-untyped-def]
    return rets.cov() * 252


@pytest.fixture(scope="module")
def mu(rets):  # type: ignore[no-untyped-def]
    return rets.mean() * 252


def ef(mu, S, bounds=(0, 1), *objectives, **kwargs):  # type: ignore[no-untyped-def]
    """PyPortfolioOpt's ``setup_efficient_frontier`` with extra objectives."""
    frontier = EfficientFrontier(mu, S, weight_bounds=bounds, **kwargs)
    for fn, kw in objectives:
        frontier.add_objective(fn, **kw)
    return frontier


def weights(result: dict) -> np.ndarray:  # type: ignore[type-arg]
    return np.array([result[n] for n in NAMES], dtype=float)


def same(mine: Any, ref: Any, atol: float = QP_ATOL) -> None:
    np.testing.assert_allclose(np.asarray(mine, dtype=float), np.asarray(ref, dtype=float),
                               rtol=0, atol=atol)


def quiet(call):  # type: ignore[no-untyped-def]
    """PyPortfolioOpt warns that objectives may not work as expected in max_sharpe."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return call()


L2 = objective_functions.L2_reg
TX = objective_functions.transaction_cost


# -- L2 regularisation ----------------------------------------------------------------------------
def test_min_volatility_L2_reg(mu, S) -> None:  # type: ignore[no-untyped-def]
    """PyPortfolioOpt ``test_min_volatility_L2_reg``: gamma=1 pulls towards equal weight."""
    ref = weights(ef(mu, S, (0, 1), (L2, {"gamma": 1})).min_volatility())
    got = qp.min_variance(S, gamma=1)
    same(got, ref)
    plain = qp.min_variance(S)
    equal = np.full(len(NAMES), 1 / len(NAMES))
    assert np.abs(equal - got).sum() < np.abs(equal - plain).sum()
    assert (got >= 0).all() and got.sum() == pytest.approx(1.0, abs=1e-14)


def test_min_volatility_L2_reg_many_values_and_limit(mu, S) -> None:  # type: ignore[no-untyped-def]
    """PyPortfolioOpt ``test_min_volatility_L2_reg_many_values``, ``_limit_case`` and
    ``_increases_vol``."""
    count = int((qp.min_variance(S) > 0.01).sum())
    for i in range(1, 10):
        got = qp.min_variance(S, gamma=0.05 * i)
        same(got, weights(ef(mu, S, (0, 1), (L2, {"gamma": 0.05 * i})).min_volatility()))
        assert int((got > 0.01).sum()) >= count
        count = int((got > 0.01).sum())
    same(qp.min_variance(S, gamma=1e10), np.full(len(NAMES), 1 / len(NAMES)), 1e-7)
    c = S.to_numpy()
    plain, reg = qp.min_variance(S), qp.min_variance(S, gamma=2)
    assert reg @ c @ reg > plain @ c @ plain


def test_max_sharpe_L2_reg(mu, S) -> None:  # type: ignore[no-untyped-def]
    """PyPortfolioOpt ``test_max_sharpe_L2_reg``, ``_many_values``, ``_different_gamma`` and
    ``_reduces_sharpe``: L2_reg in max_sharpe is the Sharpe ratio with C + gamma I."""
    for gamma in (5.0, 1.0, 0.05, 0.45, 0.95):
        ref = weights(quiet(lambda g=gamma: ef(mu, S, (0, 1), (L2, {"gamma": g}))
                            .max_sharpe(risk_free_rate=0.02)))
        got = qp.max_sharpe(mu, S, risk_free_rate=0.02, gamma=gamma)
        same(got, ref)
        c_reg = S.to_numpy() + gamma * np.eye(len(NAMES))
        excess = mu.to_numpy() - 0.02
        # it is max_sharpe on C + gamma I, exactly
        same(got, qp.max_sharpe(mu, c_reg, risk_free_rate=0.02), 1e-12)
        assert (excess @ got) / np.sqrt(got @ c_reg @ got) >= (
            (excess @ ref) / np.sqrt(ref @ c_reg @ ref)) - 1e-12
    plain = qp.max_sharpe(mu, S, risk_free_rate=0.02)
    reg = qp.max_sharpe(mu, S, risk_free_rate=0.02, gamma=2)
    perf = [qp.portfolio_performance(w, mu, S, risk_free_rate=0.02).sharpe for w in (plain, reg)]
    assert perf[1] < perf[0]


def test_max_sharpe_L2_reg_with_shorts(mu, S) -> None:  # type: ignore[no-untyped-def]
    """PyPortfolioOpt ``test_max_sharpe_L2_reg_with_shorts``."""
    ref = weights(quiet(lambda: ef(mu, S, (None, None), (L2, {"gamma": 1}))
                        .max_sharpe(risk_free_rate=0.02)))
    got = qp.max_sharpe(mu, S, risk_free_rate=0.02, weight_bounds=(None, None), gamma=1)
    same(got, ref)
    assert got.sum() == pytest.approx(1.0, abs=1e-12)


def test_efficient_return_L2_reg(mu, S) -> None:  # type: ignore[no-untyped-def]
    """PyPortfolioOpt ``test_efficient_return_L2_reg``."""
    ref = weights(ef(mu, S, (0, 1), (L2, {"gamma": 1})).efficient_return(0.2))
    got = qp.efficient_return(mu, S, 0.2, gamma=1)
    same(got, ref)
    assert mu.to_numpy() @ got == pytest.approx(0.2, abs=1e-12)


@pytest.mark.parametrize("estimator", ["ledoit_wolf", "exp_cov"])
def test_min_volatility_shrunk_and_exp_cov_L2_reg(rets, mu, estimator) -> None:  # type: ignore[no-untyped-def]
    """PyPortfolioOpt ``test_min_volatility_shrunk_L2_reg`` and
    ``test_min_volatility_exp_cov_L2_reg``."""
    if estimator == "ledoit_wolf":
        cov = risk_models.CovarianceShrinkage(rets, returns_data=True).ledoit_wolf()
    else:
        cov = risk_models.exp_cov(rets, returns_data=True)
    ref = weights(ef(mu, cov, (0, 1), (L2, {"gamma": 1})).min_volatility())
    same(qp.min_variance(cov, gamma=1), ref)


# -- transaction costs ----------------------------------------------------------------------------
def test_min_volatility_tx_costs(mu, S) -> None:  # type: ignore[no-untyped-def]
    """PyPortfolioOpt ``test_min_volatility_tx_costs``: the cost pulls towards the previous
    weights."""
    prev = np.full(len(NAMES), 1 / len(NAMES))
    ref = weights(ef(mu, S, (0, 1), (TX, {"w_prev": prev})).min_volatility())
    got = qp.min_variance(S, w_prev=prev)
    same(got, ref)
    assert np.abs(prev - got).sum() < np.abs(prev - qp.min_variance(S)).sum()
    for k in (0.0, 0.001, 0.01, 0.1):  # the higher the cost, the less is traded
        ref = weights(ef(mu, S, (0, 1), (TX, {"w_prev": prev, "k": k})).min_volatility())
        same(qp.min_variance(S, w_prev=prev, k=k), ref)


def test_min_volatility_tx_costs_L2_reg(mu, S) -> None:  # type: ignore[no-untyped-def]
    """PyPortfolioOpt ``test_min_volatility_tx_costs_L2_reg``."""
    prev = np.full(len(NAMES), 1 / len(NAMES))
    ref = weights(ef(mu, S, (0, 1), (TX, {"w_prev": prev}), (L2, {"gamma": 1})).min_volatility())
    same(qp.min_variance(S, w_prev=prev, gamma=1), ref)


def test_tx_costs_with_shorts_and_a_gross_cap(mu, S) -> None:  # type: ignore[no-untyped-def]
    """The cost with a long/short book under a gross cap (a PyPortfolioOpt constraint added the
    way its ``test_min_vol_pair_constraint`` adds one); previous weights outside the bounds
    must be traded back inside them. The absolute values make these conic problems for cvxpy
    (at its default tolerances the reference breaks the gross cap by 2e-5)."""
    prev = np.linspace(-0.4, 0.6, len(NAMES))
    prev = prev - (prev.sum() - 1.0) / len(NAMES)

    def reference(solve, bounds=(-0.3, 0.5), gross=1.6, k=0.01):  # type: ignore[no-untyped-def]
        frontier = ef(mu, S, bounds, (TX, {"w_prev": prev, "k": k}), **TIGHT)
        frontier.add_constraint(lambda w: cp.norm(w, 1) <= gross)
        return weights(solve(frontier))

    same(qp.min_variance(S, weight_bounds=(-0.3, 0.5), gross=1.6, w_prev=prev, k=0.01),
         reference(lambda f: f.min_volatility()))
    same(qp.max_quadratic_utility(mu, S, 2.0, weight_bounds=(-0.3, 0.5), gross=1.6,
                                  w_prev=prev, k=0.01),
         reference(lambda f: f.max_quadratic_utility(2.0)))
    same(qp.efficient_return(mu, S, 0.25, weight_bounds=(-0.3, 0.5), gross=1.6, w_prev=prev,
                             k=0.01), reference(lambda f: f.efficient_return(0.25)))


def test_max_sharpe_refuses_a_transaction_cost(mu, S) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TypeError, match="w_prev"):
        qp.max_sharpe(mu, S, w_prev=np.zeros(len(NAMES)))  # type: ignore[call-arg]


# -- sector constraints ----------------------------------------------------------------------------
SECTOR_CASES = [
    ("min_variance", (None, None)),  # test_min_volatility_sector_constraints
    ("max_sharpe", (0, 1)),  # test_max_sharpe_sector_constraints_manual / _auto
    ("efficient_risk", (0, 1)),  # test_efficient_risk_sector_constraints_manual / _auto
    ("efficient_return", (0, 1)),
    ("max_quadratic_utility", (0, 1)),
]


def _solve(name: str, mu, S, bounds, **kw):  # type: ignore[no-untyped-def]
    if name == "min_variance":
        return qp.min_variance(S, weight_bounds=bounds, **kw)
    if name == "max_sharpe":
        return qp.max_sharpe(mu, S, weight_bounds=bounds, risk_free_rate=0.02, **kw)
    if name == "efficient_risk":
        return qp.efficient_risk(mu, S, 0.19, weight_bounds=bounds, **kw)
    if name == "efficient_return":
        return qp.efficient_return(mu, S, 0.15, weight_bounds=bounds, **kw)
    return qp.max_quadratic_utility(mu, S, 2.0, weight_bounds=bounds, **kw)


def _reference(name: str, frontier):  # type: ignore[no-untyped-def]
    if name == "min_variance":
        return frontier.min_volatility()
    if name == "max_sharpe":
        return frontier.max_sharpe(risk_free_rate=0.02)
    if name == "efficient_risk":
        return frontier.efficient_risk(0.19)
    if name == "efficient_return":
        return frontier.efficient_return(0.15)
    return frontier.max_quadratic_utility(2.0)


@pytest.mark.parametrize(("name", "bounds"), SECTOR_CASES)
def test_sector_constraints(mu, S, name, bounds) -> None:  # type: ignore[no-untyped-def]
    """PyPortfolioOpt ``test_*_sector_constraints_auto`` (``add_sector_constraints``) and
    ``_manual`` (the same bounds as ``add_constraint`` rows): one answer for both."""
    kwargs = TIGHT if name == "efficient_risk" else {}
    auto = quiet(lambda: ef(mu, S, bounds, **kwargs))
    quiet(lambda: auto.add_sector_constraints(SECTOR_MAPPER, SECTOR_LOWER, SECTOR_UPPER))
    ref = weights(_reference(name, auto))
    manual = ef(mu, S, bounds, **kwargs)
    for sector, limit in SECTOR_UPPER.items():
        member = [SECTOR_MAPPER[t] == sector for t in NAMES]
        manual.add_constraint(lambda w, m=member, b=limit: cp.sum(w[m]) <= b)
    for sector, limit in SECTOR_LOWER.items():
        member = [SECTOR_MAPPER[t] == sector for t in NAMES]
        manual.add_constraint(lambda w, m=member, b=limit: cp.sum(w[m]) >= b)
    same(weights(_reference(name, manual)), ref, 1e-6)
    got = _solve(name, mu, S, bounds, sector_mapper=SECTOR_MAPPER, sector_lower=SECTOR_LOWER,
                 sector_upper=SECTOR_UPPER)
    same(got, ref, 1e-6)
    for sector in set(SECTOR_UPPER) | set(SECTOR_LOWER):
        total = sum(w for t, w in zip(NAMES, got, strict=True) if SECTOR_MAPPER[t] == sector)
        assert total <= SECTOR_UPPER.get(sector, 1.0) + 1e-12
        assert total >= SECTOR_LOWER.get(sector, 0.0) - 1e-12
    # the same sectors given positionally, and as a Series in another order
    positional = [SECTOR_MAPPER[t] for t in NAMES]
    same(_solve(name, mu, S, bounds, sector_mapper=positional, sector_lower=SECTOR_LOWER,
                sector_upper=SECTOR_UPPER), got, 1e-12)
    shuffled = pd.Series(SECTOR_MAPPER).iloc[::-1]
    same(_solve(name, mu, S, bounds, sector_mapper=shuffled, sector_lower=SECTOR_LOWER,
                sector_upper=SECTOR_UPPER), got, 1e-12)


def test_sector_constraint_errors(mu, S) -> None:  # type: ignore[no-untyped-def]
    partial = dict(SECTOR_MAPPER)
    del partial["GE"]
    with pytest.raises(OptimizationError, match=r"sector_mapper.*missing \['GE'\]"):
        qp.min_variance(S, sector_mapper=partial, sector_upper={"tech": 0.2})
    with pytest.raises(OptimizationError, match="sector_upper names sectors no asset is in"):
        qp.min_variance(S, sector_mapper=SECTOR_MAPPER, sector_upper={"tek": 0.2})
    with pytest.raises(OptimizationError, match="asset names"):
        qp.min_variance(S.to_numpy(), sector_mapper=SECTOR_MAPPER, sector_upper={"tech": 0.2})
    with pytest.raises(OptimizationError, match="need a sector_mapper"):
        qp.min_variance(S, sector_upper={"tech": 0.2})
    with pytest.raises(InfeasibleError):
        qp.min_variance(S, sector_mapper=SECTOR_MAPPER, sector_lower={"tech": 0.6, "fig": 0.6})


# -- max_quadratic_utility -------------------------------------------------------------------------
def test_max_quadratic_utility(mu, S) -> None:  # type: ignore[no-untyped-def]
    """PyPortfolioOpt ``test_max_quadratic_utility``: higher risk aversion, lower return and
    volatility."""
    w2 = qp.max_quadratic_utility(mu, S, risk_aversion=2)
    same(w2, weights(ef(mu, S).max_quadratic_utility(risk_aversion=2)))
    w10 = qp.max_quadratic_utility(mu, S, 10)
    same(w10, weights(ef(mu, S).max_quadratic_utility(10)))
    p2, p10 = (qp.portfolio_performance(w, mu, S) for w in (w2, w10))
    assert p10.expected_return < p2.expected_return and p10.volatility < p2.volatility


@pytest.mark.parametrize(("bounds", "market_neutral"), [((-1, 1), False), ((-1, 1), True)])
def test_max_quadratic_utility_with_shorts_and_market_neutral(mu, S, bounds,  # type: ignore[no-untyped-def]
                                                              market_neutral) -> None:
    """PyPortfolioOpt ``test_max_quadratic_utility_with_shorts`` and ``_market_neutral``."""
    ref = weights(ef(mu, S, bounds).max_quadratic_utility(market_neutral=market_neutral))
    got = qp.max_quadratic_utility(mu, S, weight_bounds=bounds, market_neutral=market_neutral)
    same(got, ref)
    assert got.sum() == pytest.approx(0.0 if market_neutral else 1.0, abs=1e-12)


def test_max_quadratic_utility_limit_L2_reg_and_errors(mu, S) -> None:  # type: ignore[no-untyped-def]
    """PyPortfolioOpt ``test_max_quadratic_utility_limit``, ``_L2_reg`` and ``_error``."""
    same(qp.max_quadratic_utility(mu, S, 1e10), qp.min_variance(S), 1e-7)
    ref = weights(ef(mu, S, (0, 1), (L2, {"gamma": 5})).max_quadratic_utility())
    got = qp.max_quadratic_utility(mu, S, gamma=5)
    same(got, ref)
    equal = np.full(len(NAMES), 1 / len(NAMES))
    assert np.abs(equal - got).sum() < np.abs(equal - qp.max_quadratic_utility(mu, S)).sum()
    for bad in (0, -1):
        with pytest.raises(OptimizationError, match="risk_aversion"):
            qp.max_quadratic_utility(mu, S, bad)


# -- efficient_risk --------------------------------------------------------------------------------
def _check_efficient_risk(mine: np.ndarray, ref: np.ndarray, mu, S, target: float,  # type: ignore[no-untyped-def]
                          atol: float, objective=None) -> None:
    """Within ``atol`` of PyPortfolioOpt, at the target volatility, and at least as good on the
    problem's own objective (the expected return unless another is given)."""
    c, m = S.to_numpy(), mu.to_numpy()
    objective = objective or (lambda w: m @ w)
    same(mine, ref, atol)
    assert np.sqrt(mine @ c @ mine) == pytest.approx(target, rel=1e-12)
    assert objective(mine) >= objective(ref) - 1e-12


def _on_pypfopt_frontier(mine: np.ndarray, mu, S, bounds=(0, 1),  # type: ignore[no-untyped-def]
                         market_neutral: bool = False) -> None:
    """The minimum-volatility portfolio PyPortfolioOpt finds (a QP, exact) for our return is
    ours: our portfolio lies on its frontier."""
    frontier = ef(mu, S, bounds)
    ref = weights(frontier.efficient_return(float(mu.to_numpy() @ mine) - 1e-13,
                                            market_neutral=market_neutral))
    same(mine, ref, 1e-7)


@pytest.mark.parametrize("target", [0.19, 0.16, 0.21, 0.25])
def test_efficient_risk(mu, S, target) -> None:  # type: ignore[no-untyped-def]
    """PyPortfolioOpt ``test_efficient_risk`` and ``test_efficient_risk_many_values`` (its 0.30
    is above the volatility of the best single stock here, 0.289; see the limit test)."""
    got = qp.efficient_risk(mu, S, target)
    ref = weights(ef(mu, S, (0, 1), **TIGHT).efficient_risk(target))
    _check_efficient_risk(got, ref, mu, S, target, 1e-6)
    _on_pypfopt_frontier(got, mu, S)
    assert (got >= 0).all() and got.sum() == pytest.approx(1.0, abs=1e-14)


def test_efficient_risk_short_and_market_neutral(mu, S) -> None:  # type: ignore[no-untyped-def]
    """PyPortfolioOpt ``test_efficient_risk_short`` and ``test_efficient_risk_market_neutral``.
    With shorts the frontier is flat enough that Clarabel stops 2e-6 away in weights."""
    got = qp.efficient_risk(mu, S, 0.19, weight_bounds=(-1, 1))
    ref = weights(ef(mu, S, (-1, 1), **TIGHT).efficient_risk(0.19))
    _check_efficient_risk(got, ref, mu, S, 0.19, 5e-6)
    _on_pypfopt_frontier(got, mu, S, (-1, 1))
    long_only = qp.efficient_risk(mu, S, 0.19)
    assert mu.to_numpy() @ got > mu.to_numpy() @ long_only
    got = qp.efficient_risk(mu, S, 0.21, weight_bounds=(-1, 1), market_neutral=True)
    ref = weights(ef(mu, S, (-1, 1), **TIGHT).efficient_risk(0.21, market_neutral=True))
    _check_efficient_risk(got, ref, mu, S, 0.21, 1e-6)
    _on_pypfopt_frontier(got, mu, S, (-1, 1), market_neutral=True)
    assert got.sum() == pytest.approx(0.0, abs=1e-13)


def test_efficient_risk_L2_reg(mu, S) -> None:  # type: ignore[no-untyped-def]
    """PyPortfolioOpt ``test_efficient_risk_L2_reg`` and
    ``test_efficient_risk_market_neutral_L2_reg``."""
    m, c = mu.to_numpy(), S.to_numpy()
    got = qp.efficient_risk(mu, S, 0.19, gamma=0.1)  # the volatility budget binds
    ref = weights(ef(mu, S, (0, 1), (L2, {"gamma": 0.1}), **TIGHT).efficient_risk(0.19))
    _check_efficient_risk(got, ref, mu, S, 0.19, 1e-6, lambda w: m @ w - 0.1 * w @ w)
    equal = np.full(len(NAMES), 1 / len(NAMES))
    assert np.abs(equal - got).sum() < np.abs(equal - qp.efficient_risk(mu, S, 0.19)).sum()
    # PyPortfolioOpt's gamma=5: here its optimum lies inside the budget, and is returned as is
    got = qp.efficient_risk(mu, S, 0.19, gamma=5)
    same(got, weights(ef(mu, S, (0, 1), (L2, {"gamma": 5}), **TIGHT).efficient_risk(0.19)))
    assert np.sqrt(got @ c @ got) < 0.19
    got = qp.efficient_risk(mu, S, 0.19, weight_bounds=(-1, 1), market_neutral=True, gamma=1)
    ref = weights(ef(mu, S, (-1, 1), (L2, {"gamma": 1}), **TIGHT)
                  .efficient_risk(0.19, market_neutral=True))
    same(got, ref, 1e-6)
    # the regularised optimum may sit inside the volatility budget (PyPortfolioOpt's case does)
    assert np.sqrt(got @ c @ got) <= 0.19 + 1e-12
    assert m @ got - got @ got >= m @ ref - ref @ ref - 1e-12


def test_efficient_risk_tx_costs(mu, S) -> None:  # type: ignore[no-untyped-def]
    """The transaction cost in efficient_risk (PyPortfolioOpt adds it as an objective)."""
    prev = np.full(len(NAMES), 1 / len(NAMES))
    m = mu.to_numpy()
    got = qp.efficient_risk(mu, S, 0.19, w_prev=prev, k=0.01)
    ref = weights(ef(mu, S, (0, 1), (TX, {"w_prev": prev, "k": 0.01}), **TIGHT)
                  .efficient_risk(0.19))
    _check_efficient_risk(got, ref, mu, S, 0.19, 5e-6,
                          lambda w: m @ w - 0.01 * np.abs(w - prev).sum())


def test_efficient_risk_limit_and_errors(mu, S) -> None:  # type: ignore[no-untyped-def]
    """PyPortfolioOpt ``test_efficient_risk_limit`` (a high target maximises return) and
    ``test_efficient_risk_error``."""
    m = mu.to_numpy()
    top = qp.efficient_risk(mu, S, 1.0)
    same(top, np.eye(len(NAMES))[int(np.argmax(m))], 1e-12)  # all in the best asset
    same(top, weights(ef(mu, S).efficient_risk(1.0)), 1e-6)
    reg = qp.efficient_risk(mu, S, 1.0, gamma=1)  # inside the budget: the L2 optimum itself
    same(reg, weights(ef(mu, S, (0, 1), (L2, {"gamma": 1}), **TIGHT).efficient_risk(1.0)), 1e-6)
    c = S.to_numpy()
    w_min = qp.min_variance(S)
    min_vol = float(np.sqrt(w_min @ c @ w_min))
    assert qp.efficient_risk(mu, S, min_vol + 0.01) is not None
    same(qp.efficient_risk(mu, S, min_vol), w_min, 1e-7)
    with pytest.raises(InfeasibleError, match="lowest volatility"):
        qp.efficient_risk(mu, S, min_vol - 0.01)
    with pytest.raises(OptimizationError, match="target_volatility"):
        qp.efficient_risk(mu, S, -0.01)


# -- labelled inputs -------------------------------------------------------------------------------
def test_labelled_mu_and_w_prev_are_matched_by_name(mu, S) -> None:  # type: ignore[no-untyped-def]
    """mu (and w_prev) given as a Series or dict in another order than the covariance are read
    by name: the same weights as in the covariance's order."""
    prev = pd.Series(np.linspace(0.0, 0.2, len(NAMES)), index=NAMES)
    prev = prev / prev.sum()
    base = qp.max_quadratic_utility(mu, S, 2.0, w_prev=prev, k=0.01)
    for m, p in ((mu.iloc[::-1], prev.iloc[::-1]), (mu.to_dict(), prev.to_dict())):
        same(qp.max_quadratic_utility(m, S, 2.0, w_prev=p, k=0.01), base, 1e-15)
        same(qp.efficient_risk(m, S, 0.2), qp.efficient_risk(mu, S, 0.2), 1e-15)
        same(qp.max_sharpe(m, S), qp.max_sharpe(mu, S), 1e-15)
    perf = qp.portfolio_performance(pd.Series(base, index=NAMES).iloc[::-1], mu.iloc[::-1], S)
    assert perf.expected_return == pytest.approx(float(mu.to_numpy() @ base), rel=1e-14)
    with pytest.raises(OptimizationError, match=r"mu.*missing \['PFE'\]"):
        qp.max_sharpe(mu.iloc[:-1], S)
