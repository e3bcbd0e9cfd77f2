"""Black-Litterman: PyPortfolioOpt's own test cases (tests/test_black_litterman.py of
PyPortfolioOpt 1.6.0), each answered by PyPortfolioOpt in this process.

PyPortfolioOpt's suite runs on its bundled 20-stock price file; these run on 12 real S&P 500
stocks from the shared data (or on the synthetic matrices the original cases use), so the
expected numbers are computed, not copied. Each test names the case it comes from.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from mts1b_quantkit import portfolio as qp
from mts1b_quantkit.errors import OptimizationError

pd = pytest.importorskip("pandas")
pytest.importorskip("pypfopt", reason="pyportfolioopt is a test-only reference")

from pypfopt import black_litterman as pbl  # noqa: E402
from pypfopt.black_litterman import BlackLittermanModel  # noqa: E402

# PyPortfolioOpt warns when it runs without a prior, which some of its own cases do
pytestmark = pytest.mark.filterwarnings("ignore:Running Black-Litterman with no prior")

NAMES = ["AAPL", "MSFT", "XOM", "JPM", "JNJ", "PG", "KO", "GE", "AMZN", "WMT", "CVX", "PFE"]
CAPS = dict(zip(NAMES, [9.1, 7.4, 3.6, 3.3, 3.4, 2.4, 1.9, 1.1, 8.0, 3.9, 2.8, 2.1],
                strict=True))


@pytest.fixture(scope="module")
def S(sp500_returns):  # type: ignore[no-untyped-def]
    return sp500_returns[NAMES].dropna().cov() * 252


@pytest.fixture(scope="module")
def delta(spy_returns) -> float:  # type: ignore[no-untyped-def]
    prices = (1.0 + spy_returns).cumprod()
    return float(pbl.market_implied_risk_aversion(prices, risk_free_rate=0.02))


def same(mine, ref, atol: float = 1e-14) -> None:  # type: ignore[no-untyped-def]
    mine = np.asarray(mine, dtype=float)
    ref = np.asarray(ref, dtype=float).reshape(mine.shape)  # PyPortfolioOpt keeps (N, 1) columns
    np.testing.assert_allclose(mine, ref, rtol=0, atol=atol)


def weights(d: dict, names=NAMES) -> np.ndarray:  # type: ignore[no-untyped-def]
    return np.array([d[n] for n in names], dtype=float)


# -- the differences ----------------------------------------------------------------------
def test_market_caps_are_read_by_name_as_pypfopt_does() -> None:
    """Issue #16: caps {"B": 1, "A": 3} with a covariance labelled [A, B] were read by position
    ([0.04375, 0.175]); PyPortfolioOpt gives [0.08125, 0.075]."""
    cov = pd.DataFrame([[0.04, 0.01], [0.01, 0.09]], index=["A", "B"], columns=["A", "B"])
    caps = {"B": 1.0, "A": 3.0}
    ref = pbl.market_implied_prior_returns(caps, 2.5, cov)
    np.testing.assert_allclose(ref.to_numpy(), [0.08125, 0.075], rtol=1e-15)
    for given in (caps, pd.Series(caps), pd.Series(caps).iloc[::-1]):
        same(qp.market_implied_prior_returns(given, 2.5, cov), ref, 1e-16)
        got = qp.black_litterman(cov, market_caps=given, risk_aversion=2.5,
                                 absolute_views={"A": 0.1})
        bl = BlackLittermanModel(cov, pi="market", market_caps=given, risk_aversion=2.5,
                                 absolute_views={"A": 0.1})
        same(got.prior, bl.pi, 1e-16)
        same(got.returns, bl.bl_returns(), 1e-16)
    # an array stays positional: the covariance's order
    same(qp.market_implied_prior_returns([3.0, 1.0], 2.5, cov), ref, 1e-16)


def test_bl_mcap_order_invariance(S) -> None:  # type: ignore[no-untyped-def]
    """PyPortfolioOpt ``test_bl_mcap_order_invariance`` (commented out there): the prior does
    not depend on the order in which the caps are listed."""
    reversed_caps = dict(reversed(list(CAPS.items())))
    one = qp.market_implied_prior_returns(CAPS, 2.0, S)
    two = qp.market_implied_prior_returns(reversed_caps, 2.0, S)
    same(one, two, 0)
    same(one, pbl.market_implied_prior_returns(CAPS, 2.0, S), 1e-16)
    shuffled = S.loc[NAMES[::-1], NAMES[::-1]]  # the same assets, other order
    same(qp.market_implied_prior_returns(CAPS, 2.0, shuffled)[::-1], one, 1e-16)


def test_integer_labelled_covariance_takes_views_on_integers() -> None:
    """Issue #16: an integer-labelled covariance refused ``absolute_views={0: ...}`` ("view on 0,
    which is not in the universe"). PyPortfolioOpt ``test_idzorek_input_formats`` builds exactly
    this case."""
    S5 = pd.DataFrame(np.diag(np.ones(5)), index=range(5), columns=range(5))
    views = {k: 0.3 for k in range(5)}
    pi = pd.Series(0.1, index=range(5))
    ref = BlackLittermanModel(S5, pi=pi, absolute_views=views, omega="idzorek",
                              view_confidences=[0.5] * 5)
    got = qp.black_litterman(S5, pi=pi, absolute_views=views, omega="idzorek",
                             view_confidences=[0.5] * 5)
    same(got.returns, ref.bl_returns(), 1e-16)
    same(got.returns, np.full(5, 0.2), 1e-16)
    with pytest.raises(OptimizationError, match=r"views on '0'.*not in the universe"):
        qp.black_litterman(S5, pi=pi, absolute_views={"0": 0.3})


def test_mismatched_labels_name_the_missing_and_the_extra(S) -> None:  # type: ignore[no-untyped-def]
    caps = dict(CAPS)
    del caps["KO"]
    caps["KOO"] = 1.0
    with pytest.raises(OptimizationError, match=r"market_caps.*missing \['KO'\].*\['KOO'\]"):
        qp.market_implied_prior_returns(caps, 2.0, S)
    with pytest.raises(OptimizationError, match=r"pi.*missing \['PFE'\]"):
        qp.black_litterman(S, pi=pd.Series(0.1, index=NAMES[:-1]), Q=np.zeros(12))
    with pytest.raises(OptimizationError, match="asset names are not known"):
        qp.market_implied_prior_returns(CAPS, 2.0, S.to_numpy())
    with pytest.raises(OptimizationError, match="assets"):
        qp.black_litterman(S, market_caps=CAPS, absolute_views={"KO": 0.1},
                           assets=[*NAMES[:-1], "ZZZ"])
    # assets= names an unlabelled covariance
    got = qp.black_litterman(S.to_numpy(), market_caps=CAPS, absolute_views={"KO": 0.1},
                             assets=NAMES)
    ref = qp.black_litterman(S, market_caps=CAPS, absolute_views={"KO": 0.1})
    same(got.returns, ref.returns, 0)


# -- PyPortfolioOpt's own cases ------------------------------------------------------------------
def test_parse_views(S) -> None:  # type: ignore[no-untyped-def]
    """PyPortfolioOpt ``test_parse_views``: a view on an unknown asset is refused; the picking
    matrix puts a 1 at each viewed asset."""
    viewdict = {"AAPL": 0.20, "JNJ": -0.30, "XOM": 0.40, "fail": 0.1}
    with pytest.raises(OptimizationError, match="'fail'"):
        qp.black_litterman(S, pi="equal", absolute_views=viewdict)
    del viewdict["fail"]
    got = qp.black_litterman(S, pi="equal", absolute_views=viewdict)
    ref = BlackLittermanModel(S, pi="equal", absolute_views=viewdict)
    assert ref.P[0, 0] == ref.P[1, 4] == ref.P[2, 2] == 1
    same(got.omega, ref.omega, 0)
    same(got.returns, ref.bl_returns(), 1e-16)


def test_dataframe_input_and_cov_ndarray(S, sp500_returns) -> None:  # type: ignore[no-untyped-def]
    """PyPortfolioOpt ``test_dataframe_input`` and ``test_cov_ndarray``: views on every asset
    without P; a P DataFrame; an ndarray covariance gives the same numbers as a labelled one."""
    prior = sp500_returns[NAMES].mean() * 252
    views = pd.Series(0.1, index=NAMES)
    ref = BlackLittermanModel(S, pi=prior, Q=views)
    got = qp.black_litterman(S, pi=prior, Q=views)
    same(got.returns, ref.bl_returns(), 1e-15)
    nd = qp.black_litterman(S.to_numpy(), pi=prior.to_numpy(), Q=views.to_numpy())
    same(nd.returns, got.returns, 0)
    same(nd.cov, got.cov, 0)
    same(nd.weights, got.weights, 0)
    picking = pd.DataFrame(np.eye(12)[:10], columns=NAMES)
    ref = BlackLittermanModel(S, pi=prior, Q=views[:10], P=picking)
    same(qp.black_litterman(S, pi=prior, Q=views[:10], P=picking).returns, ref.bl_returns(),
         1e-15)
    # our P DataFrame is matched by its column labels (PyPortfolioOpt ignores them)
    flipped = picking.loc[:, NAMES[::-1]]
    same(qp.black_litterman(S, pi=prior, Q=views[:10], P=flipped).returns, ref.bl_returns(),
         1e-15)


def test_default_omega(S) -> None:  # type: ignore[no-untyped-def]
    """PyPortfolioOpt ``test_default_omega``: views on every asset give omega = tau diag(S)."""
    got = qp.black_litterman(S, pi="equal", Q=pd.Series(0.1, index=NAMES))
    same(got.omega, np.diag(0.05 * np.diag(S)), 1e-18)


def test_bl_returns_no_prior(S) -> None:  # type: ignore[no-untyped-def]
    """PyPortfolioOpt ``test_bl_returns_no_prior`` (a zero prior; ours asks for it explicitly)
    against the explicit-inverse formula."""
    viewdict = {"AAPL": 0.20, "JNJ": -0.30, "JPM": 0, "KO": -0.2, "XOM": 0.131321}
    ref = BlackLittermanModel(S, absolute_views=viewdict)
    got = qp.black_litterman(S, pi=np.zeros(12), absolute_views=viewdict)
    same(got.returns, ref.bl_returns(), 1e-15)
    explicit = np.linalg.inv(np.linalg.inv(ref.tau * ref.cov_matrix)
                             + ref.P.T @ np.linalg.inv(ref.omega) @ ref.P) @ (
        ref.P.T @ np.linalg.inv(ref.omega) @ ref.Q)
    same(got.returns, explicit, 1e-13)


def test_bl_equal_prior_and_relative_views(S) -> None:  # type: ignore[no-untyped-def]
    """PyPortfolioOpt ``test_bl_equal_prior`` and ``test_bl_relative_views``."""
    viewdict = {"AAPL": 0.20, "JNJ": -0.30, "JPM": 0, "KO": -0.2, "XOM": 0.131321}
    ref = BlackLittermanModel(S, absolute_views=viewdict, pi="equal")
    got = qp.black_litterman(S, absolute_views=viewdict, pi="equal")
    same(got.prior, np.full(12, 1 / 12), 0)
    same(got.returns, ref.bl_returns(), 1e-15)
    same(got.weights, weights(ref.bl_weights()), 1e-12)
    q = np.array([-0.20, 0.10, 0.15])
    p = np.zeros((3, 12))
    p[0, NAMES.index("PFE")] = 1  # PFE drops 20%
    p[1, NAMES.index("AAPL")], p[1, NAMES.index("MSFT")] = 1, -1
    p[2, [NAMES.index("JPM"), NAMES.index("WMT")]] = 0.5
    p[2, [NAMES.index("GE"), NAMES.index("KO")]] = -0.5
    ref = BlackLittermanModel(S, Q=q, P=p)
    got = qp.black_litterman(S, pi=np.zeros(12), Q=q, P=p)
    same(got.returns, ref.bl_returns(), 1e-15)
    rets = dict(zip(NAMES, got.returns, strict=True))
    assert rets["PFE"] < 0 and rets["AAPL"] > rets["MSFT"]


def test_bl_weights_views_as_dict_or_series(S, delta) -> None:  # type: ignore[no-untyped-def]
    """PyPortfolioOpt ``test_bl_weights``: the same weights from views given as a dict or as a
    Series."""
    viewdict = {"AAPL": 0.20, "JNJ": -0.30, "JPM": 0, "KO": -0.2, "XOM": 0.131321}
    ref = BlackLittermanModel(S, absolute_views=viewdict)
    ref_w = weights(ref.bl_weights(delta))
    for views in (viewdict, pd.Series(viewdict)):
        got = qp.black_litterman(S, pi=np.zeros(12), absolute_views=views,
                                 risk_aversion=delta)
        same(got.weights, ref_w, 1e-12)


def test_market_implied_prior_and_automatic(S, delta) -> None:  # type: ignore[no-untyped-def]
    """PyPortfolioOpt ``test_market_implied_prior``, ``test_bl_market_prior`` and
    ``test_bl_market_automatic``."""
    ref = pbl.market_implied_prior_returns(CAPS, delta, S, risk_free_rate=0.02)
    same(qp.market_implied_prior_returns(CAPS, delta, S, risk_free_rate=0.02), ref, 1e-16)
    same(qp.market_implied_prior_returns(pd.Series(CAPS), delta, S, risk_free_rate=0.02), ref,
         1e-16)
    viewdict = {"AAPL": 0.40, "MSFT": -0.30, "XOM": 0.30, "GE": 0}
    bl = BlackLittermanModel(S, pi=ref, absolute_views=viewdict)
    got = qp.black_litterman(S, pi=ref, absolute_views=viewdict, risk_aversion=delta)
    same(got.returns, bl.bl_returns(), 1e-15)
    same(got.weights, weights(bl.bl_weights(delta)), 1e-12)
    auto = BlackLittermanModel(S, pi="market", absolute_views=viewdict, market_caps=CAPS)
    same(qp.black_litterman(S, market_caps=CAPS, absolute_views=viewdict).returns,
         auto.bl_returns(), 1e-15)


def test_bl_tau_and_no_uncertainty(S) -> None:  # type: ignore[no-untyped-def]
    """PyPortfolioOpt ``test_bl_tau`` and ``test_bl_no_uncertainty``."""
    prior = pbl.market_implied_prior_returns(CAPS, 2.5, S)
    viewdict = {"AAPL": 0.40, "MSFT": -0.30, "XOM": 0.30, "GE": 0}
    omega = np.diag([0.01] * 4)
    for tau in (1e-10, 0.01, 0.1):
        ref = BlackLittermanModel(S, pi=prior, absolute_views=viewdict, tau=tau, omega=omega)
        got = qp.black_litterman(S, pi=prior, absolute_views=viewdict, tau=tau, omega=omega)
        same(got.returns, ref.bl_returns(), 1e-15)
    # full confidence: the posterior is the view
    exact = qp.black_litterman(S, pi=prior, absolute_views=viewdict, omega=np.zeros((4, 4)))
    for name, view in viewdict.items():
        assert exact.returns[NAMES.index(name)] == pytest.approx(view, abs=1e-12)


def test_idzorek_confidences_error() -> None:
    """PyPortfolioOpt ``test_idzorek_confidences_error``."""
    S5 = pd.DataFrame(np.eye(5), index=range(5), columns=range(5))
    views = {k: 0.3 for k in range(5)}
    pi = pd.Series(0.1, index=range(5))
    for conf in (None, [0.2] * 4, [1.1] * 5, [-0.1] * 5):
        with pytest.raises(OptimizationError, match="view_confidences"):
            qp.black_litterman(S5, pi=pi, absolute_views=views, omega="idzorek",
                               view_confidences=conf)


def test_idzorek_basic_and_with_priors(S) -> None:  # type: ignore[no-untyped-def]
    """PyPortfolioOpt ``test_idzorek_basic`` (integer labels) and ``test_idzorek_with_priors``."""
    S5 = pd.DataFrame(np.eye(5), index=range(5), columns=range(5))
    views = {k: 0.3 for k in range(5)}
    pi = pd.Series(0.1, index=range(5))
    for kwargs in ({"omega": np.zeros((5, 5))}, {"omega": S5 * 1e6},
                   {"omega": "idzorek", "view_confidences": [1] * 5},
                   {"omega": "idzorek", "view_confidences": [0] * 5}):
        ref = BlackLittermanModel(S5, pi=pi, absolute_views=views, **kwargs)
        got = qp.black_litterman(S5, pi=pi, absolute_views=views, **kwargs)
        same(got.returns, ref.bl_returns(), 1e-15)
        same(got.omega, ref.omega, 0)
    for i, conf in enumerate(np.arange(0, 1.2, 0.2)):
        got = qp.black_litterman(S5, pi=pi, absolute_views=views, omega="idzorek",
                                 view_confidences=[conf] * 5)
        # confidence 0 is omega = 1e6, not infinity: 1e-8 away (the original's 7 decimals)
        assert got.returns[0] == pytest.approx(0.1 + i * 0.2 / 5, abs=1e-7)
    viewdict = {"AAPL": 0.40, "MSFT": -0.30, "XOM": 0.30, "GE": 0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = BlackLittermanModel(S, pi="market", market_caps=CAPS, absolute_views=viewdict,
                                  omega="idzorek", view_confidences=[1, 1, 0.25, 0.25])
    got = qp.black_litterman(S, market_caps=CAPS, absolute_views=viewdict, omega="idzorek",
                             view_confidences=[1, 1, 0.25, 0.25])
    assert got.omega[0, 0] == 0
    same(got.returns, ref.bl_returns(), 1e-15)
    same(got.weights, weights(ref.bl_weights()), 1e-12)
