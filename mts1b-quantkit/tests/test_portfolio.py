"""Portfolio construction against PyPortfolioOpt (and scikit-learn for Ledoit-Wolf) on real
S&P 500 returns."""

from __future__ import annotations

import numpy as np
import pytest
from mts1b_quantkit import covariance as qc
from mts1b_quantkit import portfolio as qp
from mts1b_quantkit.errors import InfeasibleError, OptimizationError, SingularCovarianceError

pd = pytest.importorskip("pandas")
pypfopt = pytest.importorskip("pypfopt", reason="pyportfolioopt is a test-only reference")
cp = pytest.importorskip("cvxpy")
sk_cov = pytest.importorskip("sklearn.covariance")

from pypfopt import (  # noqa: E402
    BlackLittermanModel,
    EfficientFrontier,
    HRPOpt,
    black_litterman,
    risk_models,
)

NAMES = ["AAPL", "MSFT", "XOM", "JPM", "JNJ", "PG", "KO", "GE", "AMZN", "WMT", "CVX", "PFE"]


@pytest.fixture(scope="module")
def rets(sp500_returns):  # type: ignore[no-untyped-def]
    return sp500_returns[NAMES].dropna(how="all")


@pytest.fixture(scope="module")
def rets_nan(rets):  # type: ignore[no-untyped-def]
    r = rets.copy()
    r.iloc[:60, 3] = np.nan  # one asset with a shorter history
    r.iloc[200:205, 7] = np.nan
    return r


@pytest.fixture(scope="module")
def cov(rets):  # type: ignore[no-untyped-def]
    return rets.cov() * 252


@pytest.fixture(scope="module")
def mu(rets):  # type: ignore[no-untyped-def]
    return rets.mean() * 252


def weights_of(result, names=NAMES) -> np.ndarray:  # type: ignore[no-untyped-def]
    return pd.Series(result).reindex(names).to_numpy(dtype=float)


def same(mine, ref, atol: float = 1e-12) -> None:  # type: ignore[no-untyped-def]
    np.testing.assert_allclose(np.asarray(mine, dtype=float), np.asarray(ref, dtype=float),
                               rtol=0, atol=atol)


# -- covariance estimators ------------------------------------------------------------------------
def test_sample_cov_and_corr_are_pairwise_like_pandas(rets_nan) -> None:  # type: ignore[no-untyped-def]
    same(qc.sample_cov(rets_nan, periods_per_year=252),
         risk_models.sample_cov(rets_nan, returns_data=True), 1e-14)
    same(qc.sample_corr(rets_nan), rets_nan.corr(), 1e-13)
    same(qc.sample_cov(rets_nan.fillna(0.0)), rets_nan.fillna(0.0).cov(), 1e-16)


def test_ledoit_wolf_matches_sklearn_and_pypfopt(rets, rets_nan) -> None:  # type: ignore[no-untyped-def]
    for data in (rets, rets_nan):
        shrunk, delta = qc.ledoit_wolf(data, periods_per_year=252)
        ref = risk_models.CovarianceShrinkage(data, returns_data=True)
        same(shrunk, ref.ledoit_wolf(), 1e-15)
        assert delta == pytest.approx(ref.delta, rel=1e-12)
    raw, delta = qc.ledoit_wolf(rets.to_numpy())
    ref_cov, ref_delta = sk_cov.ledoit_wolf(rets.to_numpy())
    same(raw, ref_cov, 1e-18)
    assert delta == pytest.approx(ref_delta, rel=1e-12)


def test_exp_cov_matches_pypfopt(rets_nan) -> None:  # type: ignore[no-untyped-def]
    for span in (30, 180):
        same(qc.exp_cov(rets_nan, span=span, periods_per_year=252),
             risk_models.exp_cov(rets_nan, returns_data=True, span=span), 1e-15)


def test_check_covariance_errors() -> None:
    with pytest.raises(SingularCovarianceError, match="square"):
        qc.check_covariance(np.ones((2, 3)))
    with pytest.raises(SingularCovarianceError, match="symmetric"):
        qc.check_covariance(np.array([[1.0, 0.5], [0.2, 1.0]]))
    with pytest.raises(SingularCovarianceError, match="positive semi-definite"):
        qc.check_covariance(np.array([[1.0, 2.0], [2.0, 1.0]]))
    with pytest.raises(SingularCovarianceError, match="singular"):
        qc.check_covariance(np.ones((3, 3)))
    qc.check_covariance(np.ones((3, 3)), require_pd=False)


# -- HRP ------------------------------------------------------------------------------------------
@pytest.fixture
def hrpopt_on_any_scipy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let the reference run on SciPy >= 1.18 (Python 3.12+ here).

    PyPortfolioOpt 1.6's HRPOpt checks its method against ``scipy.cluster.hierarchy.
    _LINKAGE_METHODS``, a private name SciPy 1.18 removed, so the reference itself fails there.
    The shim puts back exactly the list quantkit checks against (scipy's documented methods);
    the clustering both sides run is SciPy's public ``linkage``, so the comparison is unchanged.
    """
    import scipy.cluster.hierarchy as sch

    if not hasattr(sch, "_LINKAGE_METHODS"):
        from mts1b_quantkit.portfolio._hrp import LINKAGE_METHODS

        monkeypatch.setattr(sch, "_LINKAGE_METHODS", set(LINKAGE_METHODS), raising=False)


@pytest.mark.usefixtures("hrpopt_on_any_scipy")
@pytest.mark.parametrize("method", ["single", "complete", "average", "ward"])
def test_hrp_from_returns_matches_hrpopt(rets, method) -> None:  # type: ignore[no-untyped-def]
    ref = weights_of(HRPOpt(rets).optimize(method))
    got = qp.hrp(rets, linkage_method=method)
    same(got, ref, 1e-15)
    assert got.sum() == pytest.approx(1.0, abs=1e-15) and (got > 0).all()


@pytest.mark.usefixtures("hrpopt_on_any_scipy")
def test_hrp_with_missing_data_and_from_cov(rets_nan, cov) -> None:  # type: ignore[no-untyped-def]
    same(qp.hrp(rets_nan), weights_of(HRPOpt(rets_nan).optimize()), 1e-15)
    same(qp.hrp(cov=cov), weights_of(HRPOpt(cov_matrix=cov).optimize()), 1e-15)
    res = qp.hrp_result(cov=cov.to_numpy())
    assert sorted(res.order) == list(range(len(NAMES)))
    assert res.linkage.shape == (len(NAMES) - 1, 4)


def test_hrp_errors(cov) -> None:  # type: ignore[no-untyped-def]
    bad = cov.to_numpy().copy()
    bad[2, 2] = 0.0
    bad[2, :] = bad[:, 2] = 0.0
    with pytest.raises(SingularCovarianceError, match="variance"):
        qp.hrp(cov=bad)
    with pytest.raises(OptimizationError, match="linkage_method"):
        qp.hrp(cov=cov, linkage_method="nope")


# -- Black-Litterman ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def caps() -> pd.Series:  # type: ignore[name-defined]
    return pd.Series(np.linspace(1.0, 3.0, len(NAMES)) * 1e11, index=NAMES)


@pytest.mark.parametrize("omega", ["default", "idzorek"])
def test_black_litterman_absolute_views(cov, caps, omega) -> None:  # type: ignore[no-untyped-def]
    views = {"AAPL": 0.10, "XOM": -0.05, "JNJ": 0.03}
    kw = {"omega": omega}
    if omega == "idzorek":
        kw["view_confidences"] = [0.6, 0.0, 0.9]
    ref = BlackLittermanModel(cov, pi="market", market_caps=caps, risk_aversion=2.5,
                              absolute_views=views, **kw)
    got = qp.black_litterman(cov, market_caps=caps, risk_aversion=2.5, absolute_views=views,
                             **kw)
    same(got.returns, ref.bl_returns(), 1e-15)
    same(got.cov, ref.bl_cov(), 1e-15)
    same(got.weights, weights_of(ref.bl_weights()), 1e-13)
    same(got.prior, ref.pi.ravel(), 1e-16)
    same(got.omega, ref.omega, 1e-16)


def test_black_litterman_relative_views_explicit_omega(cov, caps) -> None:  # type: ignore[no-untyped-def]
    p = np.zeros((2, len(NAMES)))
    p[0, 0], p[0, 1] = 1.0, -1.0  # AAPL outperforms MSFT by 2%
    p[1, 2] = p[1, 10] = 0.5  # energy returns 4%
    q = np.array([0.02, 0.04])
    om = np.diag([1e-3, 2e-3])
    pi = black_litterman.market_implied_prior_returns(caps, 3.0, cov, risk_free_rate=0.01)
    ref = BlackLittermanModel(cov, pi=pi, P=p, Q=q, omega=om, tau=0.1, risk_aversion=3.0)
    got = qp.black_litterman(cov, pi=pi.to_numpy(), P=p, Q=q, omega=om, tau=0.1,
                             risk_aversion=3.0)
    same(got.returns, ref.bl_returns(), 1e-15)
    same(got.cov, ref.bl_cov(), 1e-15)
    same(got.weights, weights_of(ref.bl_weights()), 1e-13)
    same(qp.market_implied_prior_returns(caps, 3.0, cov, risk_free_rate=0.01), pi, 1e-16)
    eq = BlackLittermanModel(cov, pi="equal", P=p, Q=q)
    same(qp.black_litterman(cov, pi="equal", P=p, Q=q).returns, eq.bl_returns(), 1e-15)


def test_market_implied_risk_aversion(spy_returns) -> None:  # type: ignore[no-untyped-def]
    prices = (1 + spy_returns).cumprod()
    ref = black_litterman.market_implied_risk_aversion(prices, risk_free_rate=0.02)
    assert qp.market_implied_risk_aversion(prices, risk_free_rate=0.02) == pytest.approx(
        ref, rel=1e-12)


def test_black_litterman_errors(cov, caps) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(OptimizationError, match="prior"):
        qp.black_litterman(cov, Q=np.zeros(len(NAMES)))
    with pytest.raises(OptimizationError, match="not in the universe"):
        qp.black_litterman(cov, market_caps=caps, absolute_views={"ZZZ": 0.1})
    with pytest.raises(OptimizationError, match="view_confidences"):
        qp.black_litterman(cov, market_caps=caps, absolute_views={"KO": 0.1}, omega="idzorek",
                           view_confidences=[1.5])
    with pytest.raises(OptimizationError, match="tau"):
        qp.black_litterman(cov, market_caps=caps, absolute_views={"KO": 0.1}, tau=0.0)
    singular = np.ones((3, 3))
    with pytest.raises(SingularCovarianceError):
        qp.black_litterman(singular, pi=np.zeros(3), Q=np.zeros(3))


# -- mean-variance --------------------------------------------------------------------------------
def _ef(mu, cov, bounds=(0, 1), gross=None):  # type: ignore[no-untyped-def]
    ef = EfficientFrontier(mu, cov, weight_bounds=bounds)
    if gross is not None:
        ef.add_constraint(lambda w: cp.norm(w, 1) <= gross)
    return ef


CASES = [
    ("min_variance", {}, lambda ef: ef.min_volatility()),
    ("min_variance", {"weight_bounds": (0.02, 0.2)}, lambda ef: ef.min_volatility()),
    ("max_sharpe", {"risk_free_rate": 0.02}, lambda ef: ef.max_sharpe(risk_free_rate=0.02)),
    ("max_sharpe", {"weight_bounds": (0.02, 0.2)}, lambda ef: ef.max_sharpe()),
    ("efficient_return", {"target_return": 0.2}, lambda ef: ef.efficient_return(0.2)),
    ("efficient_return", {"target_return": 0.1, "weight_bounds": (-1, 1),
                          "market_neutral": True},
     lambda ef: ef.efficient_return(0.1, market_neutral=True)),
    ("min_variance", {"weight_bounds": (-1, 1), "gross": 1.6}, lambda ef: ef.min_volatility()),
    ("max_sharpe", {"weight_bounds": (-1, 1), "gross": 1.5}, lambda ef: ef.max_sharpe()),
    ("efficient_return", {"target_return": 0.25, "weight_bounds": (-1, 1), "gross": 1.5},
     lambda ef: ef.efficient_return(0.25)),
]


@pytest.mark.parametrize(("func", "kwargs", "reference"), CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_mean_variance_matches_pypfopt(mu, cov, func, kwargs, reference) -> None:  # type: ignore[no-untyped-def]
    kwargs = dict(kwargs)
    bounds = kwargs.get("weight_bounds", (0, 1))
    ef = _ef(mu, cov, bounds, kwargs.get("gross"))
    ref = weights_of(reference(ef))
    if func == "min_variance":
        got = qp.min_variance(cov, **kwargs)
    elif func == "max_sharpe":
        got = qp.max_sharpe(mu, cov, **kwargs)
    else:
        got = qp.efficient_return(mu, cov, kwargs.pop("target_return"), **kwargs)
    # PyPortfolioOpt's conic solver stops at ~1e-9; our polish is exact (KKT to rounding)
    same(got, ref, 1e-7)
    lo, hi = (np.full(len(NAMES), b) for b in bounds)
    assert (got >= lo - 1e-15).all() and (got <= hi + 1e-15).all()
    assert got.sum() == pytest.approx(0.0 if kwargs.get("market_neutral") else 1.0, abs=1e-14)
    if "gross" in kwargs:
        assert np.abs(got).sum() <= kwargs["gross"] + 1e-12
    c = cov.to_numpy()
    # never worse than the reference on the problem's own objective
    if func == "max_sharpe":
        rf = kwargs.get("risk_free_rate", 0.0)
        sr = (mu.to_numpy() @ got - rf) / np.sqrt(got @ c @ got)
        assert sr >= (mu.to_numpy() @ ref - rf) / np.sqrt(ref @ c @ ref) - 1e-9
    else:
        assert got @ c @ got <= ref @ c @ ref + 1e-12


def test_portfolio_performance(mu, cov) -> None:  # type: ignore[no-untyped-def]
    w = qp.max_sharpe(mu, cov, risk_free_rate=0.02)
    ef = EfficientFrontier(mu, cov)
    ef.max_sharpe(risk_free_rate=0.02)
    ref = ef.portfolio_performance(risk_free_rate=0.02)
    got = qp.portfolio_performance(w, mu, cov, risk_free_rate=0.02)
    np.testing.assert_allclose(got, ref, rtol=1e-7)


def test_infeasible_and_singular_problems_raise_clear_errors(mu, cov) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InfeasibleError, match="cannot all be met"):
        qp.min_variance(cov, weight_bounds=(0.0, 0.05))  # 12 x 5% < 100%
    with pytest.raises(InfeasibleError, match="target_return"):
        qp.efficient_return(mu, cov, 5.0)
    with pytest.raises(InfeasibleError, match="risk-free"):
        qp.max_sharpe(mu, cov, risk_free_rate=10.0)
    with pytest.raises(InfeasibleError, match="empty"):
        qp.min_variance(cov, weight_bounds=[(0.3, 0.1)] + [(0, 1)] * (len(NAMES) - 1))
    with pytest.raises(InfeasibleError):
        qp.min_variance(cov, weight_bounds=(0.1, 1.0), gross=0.5)
    singular = np.ones((4, 4))
    with pytest.raises(SingularCovarianceError, match="ledoit_wolf"):
        qp.min_variance(singular)
    assert issubclass(InfeasibleError, OptimizationError)


def test_per_asset_bounds(mu, cov) -> None:  # type: ignore[no-untyped-def]
    bounds = [(0.0, 0.3)] * 6 + [(0.05, 0.1)] * 6
    ef = EfficientFrontier(mu, cov, weight_bounds=bounds)
    same(qp.min_variance(cov, weight_bounds=bounds), weights_of(ef.min_volatility()), 1e-7)


# -- risk parity ----------------------------------------------------------------------------------
def test_equal_risk_contribution(cov) -> None:  # type: ignore[no-untyped-def]
    w = qp.equal_risk_contribution(cov)
    n = len(NAMES)
    same(qp.risk_contributions(w, cov), np.full(n, 1.0 / n), 1e-14)
    assert w.sum() == pytest.approx(1.0, abs=1e-15) and (w > 0).all()
    budget = np.arange(1, n + 1, dtype=float)
    wb = qp.equal_risk_contribution(cov, budget=budget)
    same(qp.risk_contributions(wb, cov), budget / budget.sum(), 1e-14)
    # two uncorrelated assets: weights proportional to 1/vol
    w2 = qp.equal_risk_contribution(np.diag([0.04, 0.01]))
    same(w2, [1 / 3, 2 / 3], 1e-15)
    with pytest.raises(OptimizationError, match="budget"):
        qp.equal_risk_contribution(cov, budget=-budget)


@pytest.mark.parametrize(("names", "bounds", "gross"), [
    # the cap is met exactly by the budget plus one short at its bound: linearly dependent rows
    (NAMES, (-0.2, 0.3), 1.4),
    # the same kind of vertex, where the multipliers of the first KKT solve have a wrong sign
    (NAMES, (-0.1, 0.4), 1.2),
    # the cap does not bind, and SLSQP returns weights split into positive long and short halves
    (NAMES[10:] + NAMES[:6], (-0.2, 0.5), 2.5),
])
def test_solver_fallback_path_gives_the_same_answer(mu, cov, monkeypatch, names, bounds,  # type: ignore[no-untyped-def]
                                                    gross) -> None:
    """SLSQP only locates the active set; the active-set polish from there must land on the
    same exact optimum as the direct path, to rounding (each case was 1e-10 to 1e-9 off before the
    polish handled degenerate vertices and split weights)."""
    from mts1b_quantkit.portfolio import _qp

    m, c = mu[names], cov.loc[names, names]
    direct = qp.max_sharpe(m, c, weight_bounds=bounds, gross=gross)
    real = _qp._active_set
    calls = {"n": 0}

    def first_attempts_fail(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        # the batch, careful and one-change-per-step attempts fail; SLSQP, then the polish
        return None if calls["n"] <= 3 else real(*args, **kwargs)

    monkeypatch.setattr(_qp, "_active_set", first_attempts_fail)
    via_slsqp = qp.max_sharpe(m, c, weight_bounds=bounds, gross=gross)
    assert calls["n"] == 4
    same(via_slsqp, direct, 1e-12)


def test_hundred_assets_match_pypfopt(sp500_returns) -> None:  # type: ignore[no-untyped-def]
    data = sp500_returns.dropna(axis=1).iloc[:, :100]
    cov100 = data.cov() * 252
    mu100 = data.mean() * 252
    names = list(data.columns)
    ef = EfficientFrontier(mu100, cov100, weight_bounds=(0.0, 0.05))
    same(qp.max_sharpe(mu100, cov100, weight_bounds=(0.0, 0.05)),
         weights_of(ef.max_sharpe(), names), 1e-6)
    ef = EfficientFrontier(mu100, cov100, weight_bounds=(0.0, 0.05))
    same(qp.min_variance(cov100, weight_bounds=(0.0, 0.05)),
         weights_of(ef.min_volatility(), names), 1e-6)


def test_risk_parity_and_hrp_read_labelled_inputs_by_name(cov) -> None:  # type: ignore[no-untyped-def]
    """Budgets, weights and a correlation matrix given with labels are matched to the
    covariance's assets, whatever their order."""
    budget = pd.Series(np.arange(1.0, len(NAMES) + 1), index=NAMES)
    w = qp.equal_risk_contribution(cov, budget=budget)
    same(qp.equal_risk_contribution(cov, budget=budget.iloc[::-1]), w, 0)
    same(qp.equal_risk_contribution(cov, budget=budget.to_dict()), w, 0)
    same(qp.risk_contributions(pd.Series(w, index=NAMES).iloc[::-1], cov),
         qp.risk_contributions(w, cov), 1e-15)
    corr = qc.cov_to_corr(cov.to_numpy())
    labelled = pd.DataFrame(corr, index=NAMES, columns=NAMES)
    same(qp.hrp(cov=cov, corr=labelled.loc[NAMES[::-1], NAMES[::-1]]),
         qp.hrp(cov=cov, corr=corr), 0)
    with pytest.raises(OptimizationError, match=r"budget.*missing \['PFE'\]"):
        qp.equal_risk_contribution(cov, budget=budget.iloc[:-1])
