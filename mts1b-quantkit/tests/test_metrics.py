"""Metrics against empyrical (empyrical-reloaded) on real returns, to ~1e-12 relative."""

from __future__ import annotations

import math

import numpy as np
import pytest
from mts1b_quantkit import metrics as qm
from mts1b_quantkit.errors import MetricsError

ep = pytest.importorskip("empyrical", reason="empyrical-reloaded is a test-only reference")
pd = pytest.importorskip("pandas")
stats = pytest.importorskip("scipy.stats")

RTOL = 1e-12


def close(mine, ref, rtol: float = RTOL) -> None:  # type: ignore[no-untyped-def]
    mine = np.asarray(mine, dtype=float)
    ref = np.asarray(ref, dtype=float)
    np.testing.assert_array_equal(np.isnan(mine), np.isnan(ref))
    np.testing.assert_allclose(mine, ref, rtol=rtol, atol=0, equal_nan=True)


@pytest.fixture(scope="module")
def stocks(sp500_returns) -> np.ndarray:  # type: ignore[no-untyped-def]
    """(T, 40) real daily returns with NaNs (late listings, missing days)."""
    cols = sp500_returns.columns[sp500_returns.isna().any()].tolist()[:15]
    cols += [c for c in sp500_returns.columns if c not in cols][: 40 - len(cols)]
    return sp500_returns[cols].to_numpy()


UNARY = [
    (lambda r: qm.sharpe(r), lambda r: ep.sharpe_ratio(r)),
    (lambda r: qm.sharpe(r, 0.0001), lambda r: ep.sharpe_ratio(r, risk_free=0.0001)),
    (lambda r: qm.sharpe(r, periods_per_year=12), lambda r: ep.sharpe_ratio(r, period="monthly")),
    (lambda r: qm.sortino(r), lambda r: ep.sortino_ratio(r)),
    (lambda r: qm.sortino(r, 0.0002), lambda r: ep.sortino_ratio(r, required_return=0.0002)),
    (lambda r: qm.max_drawdown(r), lambda r: ep.max_drawdown(r)),
    (lambda r: qm.cagr(r), lambda r: ep.cagr(r)),
    (lambda r: qm.annual_return(r, periods_per_year=52),
     lambda r: ep.annual_return(r, period="weekly")),
    (lambda r: qm.volatility(r), lambda r: ep.annual_volatility(r)),
    (lambda r: qm.annual_volatility(r, alpha=3.0), lambda r: ep.annual_volatility(r, alpha=3.0)),
    (lambda r: qm.downside_deviation(r), lambda r: ep.downside_risk(r)),
    (lambda r: qm.downside_risk(r, 0.0003), lambda r: ep.downside_risk(r, 0.0003)),
]
IDS = ["sharpe", "sharpe_rf", "sharpe_monthly", "sortino", "sortino_req", "max_drawdown", "cagr",
       "annual_return_weekly", "volatility", "volatility_alpha", "downside", "downside_req"]


@pytest.mark.parametrize(("mine", "ref"), UNARY, ids=IDS)
def test_matches_empyrical_on_spy(mine, ref, spy_returns) -> None:  # type: ignore[no-untyped-def]
    r = spy_returns.to_numpy()
    value = mine(r)
    assert isinstance(value, float)
    close(value, ref(r))
    close(mine(spy_returns), ref(spy_returns))  # pandas input


@pytest.mark.parametrize(("mine", "ref"), UNARY, ids=IDS)
def test_matches_empyrical_column_wise_with_nans(mine, ref, stocks) -> None:  # type: ignore[no-untyped-def]
    value = mine(stocks)
    assert value.shape == (stocks.shape[1],)
    close(value, ref(stocks))


def test_scalar_metrics_match_empyrical(spy_returns) -> None:  # type: ignore[no-untyped-def]
    r = spy_returns.to_numpy()
    close(qm.calmar(r), ep.calmar_ratio(r))
    close(qm.omega(r), ep.omega_ratio(r))
    close(qm.omega(r, 0.0001, 0.08), ep.omega_ratio(r, 0.0001, 0.08))
    close(qm.tail_ratio(r), ep.tail_ratio(r))
    close(qm.value_at_risk(r), ep.value_at_risk(r))
    close(qm.value_at_risk(r, 0.01), ep.value_at_risk(r, 0.01))
    close(qm.conditional_value_at_risk(r), ep.conditional_value_at_risk(r))
    close(qm.cum_returns_final(r), ep.cum_returns_final(r))
    close(qm.cum_returns(r), ep.cum_returns(r))
    close(qm.drawdown_series(r), ep.stats.drawdown_series(r))


def test_scalar_metrics_column_wise(stocks) -> None:  # type: ignore[no-untyped-def]
    for j in range(0, stocks.shape[1], 7):
        col = stocks[:, j]
        clean = col[~np.isnan(col)]
        close(qm.calmar(stocks)[j], ep.calmar_ratio(col))
        close(qm.omega(stocks)[j], ep.omega_ratio(pd.Series(col)))
        close(qm.tail_ratio(stocks)[j], ep.tail_ratio(col))
        close(qm.value_at_risk(stocks)[j], ep.value_at_risk(clean))
        close(qm.conditional_value_at_risk(stocks)[j], ep.conditional_value_at_risk(col))


def test_alpha_beta_match_empyrical(spy_returns, gspc_returns) -> None:  # type: ignore[no-untyped-def]
    a, b = qm.alpha_beta(spy_returns, gspc_returns)
    ra, rb = ep.alpha_beta(spy_returns, gspc_returns)
    close(a, ra)
    close(b, rb)
    close(qm.alpha(spy_returns, gspc_returns, 0.0001),
          ep.alpha(spy_returns, gspc_returns, 0.0001))
    close(qm.beta(spy_returns.to_numpy(), gspc_returns.to_numpy()),
          ep.beta(spy_returns.to_numpy(), gspc_returns.to_numpy()))
    close(qm.excess_sharpe(spy_returns.to_numpy(), gspc_returns.to_numpy()),
          ep.excess_sharpe(spy_returns.to_numpy(), gspc_returns.to_numpy()))
    close(qm.information_ratio(spy_returns.to_numpy(), gspc_returns.to_numpy()),
          ep.excess_sharpe(spy_returns.to_numpy(), gspc_returns.to_numpy()) * math.sqrt(252))


def test_alpha_beta_align_pandas_indexes(spy_returns, gspc_returns) -> None:  # type: ignore[no-untyped-def]
    shifted = gspc_returns.iloc[100:]  # shorter benchmark: aligned on dates, not positions
    a, b = qm.alpha_beta(spy_returns, shifted)
    ra, rb = ep.alpha_beta(spy_returns, shifted)
    close(a, ra)
    close(b, rb)


def test_alpha_beta_column_wise(stocks, sp500_returns) -> None:  # type: ignore[no-untyped-def]
    market = np.nanmean(sp500_returns.to_numpy(), axis=1)
    a, b = qm.alpha_beta(stocks, market)
    for j in range(0, stocks.shape[1], 5):
        ra, rb = ep.alpha_beta(stocks[:, j], market)
        close(a[j], ra)
        close(b[j], rb)


def test_summary_keys_and_values(spy_returns, gspc_returns) -> None:  # type: ignore[no-untyped-def]
    s = qm.summary(spy_returns, gspc_returns)
    r = spy_returns.to_numpy()
    assert s["sharpe"] == pytest.approx(ep.sharpe_ratio(r), rel=RTOL)
    assert s["max_drawdown"] == pytest.approx(ep.max_drawdown(r), rel=RTOL)
    assert s["annual_return"] == pytest.approx(ep.annual_return(r), rel=RTOL)
    assert s["skew"] == pytest.approx(stats.skew(r), rel=RTOL)
    assert s["kurtosis"] == pytest.approx(stats.kurtosis(r), rel=RTOL)
    assert s["beta"] == pytest.approx(ep.beta(spy_returns, gspc_returns), rel=RTOL)
    assert s["n_periods"] == len(r)
    assert all(isinstance(v, float) for v in s.values())
    with pytest.raises(MetricsError, match="one series"):
        qm.summary(np.zeros((5, 2)))


def test_edge_cases_follow_empyrical() -> None:
    for fn, ref in [(qm.sharpe, ep.sharpe_ratio), (qm.sortino, ep.sortino_ratio),
                    (qm.volatility, ep.annual_volatility)]:
        close(fn(np.array([0.01])), ref(np.array([0.01])))
    assert math.isinf(qm.sharpe(np.full(10, 0.01)))  # zero dispersion
    assert math.isnan(qm.calmar(np.full(10, 0.01)))  # no drawdown
    assert math.isnan(qm.max_drawdown(np.array([])))
    assert math.isnan(qm.omega(np.full(5, 0.01)))  # no losses


def test_hit_rate_and_turnover() -> None:
    r = np.array([0.01, -0.02, np.nan, 0.0, 0.03])
    assert qm.hit_rate(r) == pytest.approx(2 / 4)
    assert qm.hit_rate(r, np.array([0.0, -0.03, 0.0, -0.01, 0.05])) == pytest.approx(3 / 4)
    w = np.array([[0.5, 0.5], [0.5, 0.5], [1.0, 0.0], [np.nan, -1.0]])
    np.testing.assert_allclose(qm.turnover(w), [0.5, 0.0, 0.5, 1.0])
    rets = np.array([[0.0, 0.0], [0.1, -0.1], [0.0, 0.0], [0.0, 0.0]])
    drifted = qm.turnover(w, rets)  # before row 1's rebalance the book drifted to 55/45
    assert drifted[1] == pytest.approx(0.05)


def test_probabilistic_sharpe_matches_the_formula(spy_returns) -> None:  # type: ignore[no-untyped-def]
    r = spy_returns.to_numpy()[-1000:]
    sr = r.mean() / r.std(ddof=1)
    g3, g4 = stats.skew(r), stats.kurtosis(r, fisher=False)
    star = 0.5 / math.sqrt(252)
    z = (sr - star) * math.sqrt(len(r) - 1) / math.sqrt(1 - g3 * sr + (g4 - 1) / 4 * sr**2)
    assert qm.probabilistic_sharpe_ratio(r, 0.5) == pytest.approx(stats.norm.cdf(z), rel=1e-12)
    # the benchmark equal to the observed SR gives exactly one half
    observed = sr * math.sqrt(252)
    assert qm.probabilistic_sharpe_ratio(r, observed) == pytest.approx(0.5, abs=1e-12)


def test_deflated_sharpe_reproduces_the_paper_example() -> None:
    # Bailey & Lopez de Prado (2014), "The Deflated Sharpe Ratio", numerical example:
    # 100 trials, variance of the (annualized) trial SRs 1/2, 1250 daily observations,
    # SR 2.5 annualized, skew -3, kurtosis 10 -> expected max SR ~0.1132/day, DSR ~0.9004
    # (the paper annualizes with 250 days).
    sr0 = qm.expected_max_sharpe(100, 0.5 / 250)
    assert sr0 == pytest.approx(0.1132, abs=5e-5)
    dsr = qm._psr(2.5 / math.sqrt(250), sr0, 1250, -3.0, 10.0)
    assert dsr == pytest.approx(0.9004, abs=5e-4)


def test_deflated_sharpe_from_trials(spy_returns) -> None:  # type: ignore[no-untyped-def]
    r = spy_returns.to_numpy()
    trials = np.random.default_rng(0).normal(0.0, 0.7, 50)
    dsr = qm.deflated_sharpe_ratio(r, trial_sharpes=trials)
    ref = qm.probabilistic_sharpe_ratio(
        r, qm.expected_max_sharpe(50, float(np.var(trials, ddof=1))))
    assert dsr == pytest.approx(ref, rel=1e-15)
    assert dsr < qm.probabilistic_sharpe_ratio(r)  # deflation only lowers confidence
    with pytest.raises(MetricsError, match="trial_sharpes"):
        qm.deflated_sharpe_ratio(r)


def test_bad_inputs_raise_metrics_error() -> None:
    with pytest.raises(MetricsError, match="shape"):
        qm.sharpe(np.zeros((2, 2, 2)))
    with pytest.raises(MetricsError, match="periods_per_year"):
        qm.sharpe(np.zeros(5), periods_per_year=0)
    with pytest.raises(MetricsError, match="cutoff"):
        qm.value_at_risk(np.zeros(5), 1.5)


def test_turnover_reads_labelled_returns_by_name() -> None:
    rng = np.random.default_rng(5)
    dates = pd.bdate_range("2022-01-03", periods=30)
    w = pd.DataFrame(rng.random((30, 4)), index=dates, columns=list("ABCD"))
    r = pd.DataFrame(rng.normal(0, 0.01, (30, 4)), index=dates, columns=list("ABCD"))
    expected = qm.turnover(w.to_numpy(), r.to_numpy())
    np.testing.assert_array_equal(qm.turnover(w, r[list("DCBA")]), expected)
    with pytest.raises(MetricsError, match="columns of returns"):
        qm.turnover(w, r.rename(columns={"A": "Z"}))
