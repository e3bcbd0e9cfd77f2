"""Primitives against pandas (the reference for rolling/EWM windows) and direct loops."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
from mts1b_quantkit import _xp
from mts1b_quantkit import factors as qf
from mts1b_quantkit.errors import FactorError

pd = pytest.importorskip("pandas")


@pytest.fixture(scope="module")
def prices(sp500_close) -> np.ndarray:  # type: ignore[no-untyped-def]
    """300 days x 40 real S&P 500 closes with their real gaps (late listings, missing days)."""
    sub = sp500_close.iloc[:300]
    nan_cols = sub.columns[sub.isna().any()].tolist()[:10]
    cols = nan_cols + [c for c in sub.columns if c not in nan_cols][: 40 - len(nan_cols)]
    return sub[cols].to_numpy()


def assert_same(mine: np.ndarray, ref: np.ndarray, rtol: float = 1e-12) -> None:
    ref = np.asarray(ref, dtype=float)
    assert mine.shape == ref.shape
    np.testing.assert_array_equal(np.isnan(mine), np.isnan(ref))
    np.testing.assert_allclose(mine, ref, rtol=rtol, atol=0, equal_nan=True)


@pytest.mark.parametrize(("window", "min_periods"), [(1, None), (5, None), (20, 3), (20, 1)])
def test_rolling_windows_match_pandas(prices, window, min_periods) -> None:  # type: ignore[no-untyped-def]
    df = pd.DataFrame(prices)
    roll = df.rolling(window, min_periods=min_periods)
    assert_same(qf.rolling_sum(prices, window, min_periods=min_periods), roll.sum(), 1e-12)
    assert_same(qf.rolling_mean(prices, window, min_periods=min_periods), roll.mean(), 1e-12)
    assert_same(qf.rolling_min(prices, window, min_periods=min_periods), roll.min(), 0)
    assert_same(qf.rolling_max(prices, window, min_periods=min_periods), roll.max(), 0)
    rets = df.pct_change(fill_method=None)
    ref_std = rets.rolling(window, min_periods=min_periods).std()
    assert_same(qf.rolling_std(rets.to_numpy(), window, min_periods=min_periods), ref_std, 1e-9)


def test_rolling_std_is_exact_two_pass(prices) -> None:  # type: ignore[no-untyped-def]
    got = qf.rolling_std(prices, 10, min_periods=3, ddof=0)
    t, a = 123, 4
    window = prices[t - 9:t + 1, a]
    assert got[t, a] == pytest.approx(np.std(window[~np.isnan(window)]), rel=1e-14)


@pytest.mark.parametrize("kw", [{"span": 10}, {"com": 3.0}, {"halflife": 7.0},
                                {"alpha": 0.2, "min_periods": 5}])
@pytest.mark.parametrize("adjust", [True, False])
def test_ewm_mean_matches_pandas(prices, kw, adjust) -> None:  # type: ignore[no-untyped-def]
    data = prices
    if not adjust:
        # pandas' adjust=False recursion renormalises after interior NaN gaps; on data with
        # only leading NaNs (late listings) the two definitions coincide
        data = pd.DataFrame(prices).ffill().to_numpy()
    ref = pd.DataFrame(data).ewm(adjust=adjust, **kw).mean()
    assert_same(qf.ewm_mean(data, adjust=adjust, **kw), ref, 1e-11)


def test_returns_and_log_returns(prices) -> None:  # type: ignore[no-untyped-def]
    df = pd.DataFrame(prices)
    assert_same(qf.returns(prices, 5), df.pct_change(5, fill_method=None), 1e-15)
    assert_same(qf.log_returns(prices), np.log(df / df.shift(1)), 1e-15)
    assert_same(qf.shift(prices, 3), df.shift(3), 0)


def test_technical_indicators_match_pandas_formulas(prices) -> None:  # type: ignore[no-untyped-def]
    data = pd.DataFrame(prices).ffill().to_numpy()  # leading NaNs only (see the EWM test)
    c = pd.DataFrame(data)
    assert_same(qf.sma(data, 20), c.rolling(20).mean(), 1e-12)
    assert_same(qf.ema(data, 12), c.ewm(span=12, adjust=False).mean(), 1e-12)
    delta = c.diff()
    gain = delta.clip(lower=0).ewm(alpha=1 / 14, adjust=False, min_periods=14).mean()
    loss = (-delta).clip(lower=0).ewm(alpha=1 / 14, adjust=False, min_periods=14).mean()
    ref_rsi = 100 - 100 / (1 + gain / loss)
    assert_same(qf.rsi(data, 14), ref_rsi, 1e-10)
    line, signal, hist = qf.macd(data)
    ref_line = c.ewm(span=12, adjust=False).mean() - c.ewm(span=26, adjust=False).mean()
    assert_same(line, ref_line, 1e-9)
    assert_same(signal, ref_line.ewm(span=9, adjust=False).mean(), 1e-9)
    np.testing.assert_array_equal(hist, line - signal)
    _mid, upper, lower = qf.bollinger(data, 20, 2.0)
    sd = c.rolling(20).std(ddof=0)
    assert_same(upper, c.rolling(20).mean() + 2 * sd, 1e-10)
    assert_same(lower, c.rolling(20).mean() - 2 * sd, 1e-10)
    high, low = c * 1.01, c * 0.985
    tr = pd.concat([high - low, (high - c.shift()).abs(), (low - c.shift()).abs()]).groupby(
        level=0).max()
    ref_atr = tr.ewm(alpha=1 / 14, adjust=False, min_periods=14).mean()
    assert_same(qf.atr(high.to_numpy(), low.to_numpy(), data, 14), ref_atr, 1e-12)


def test_momentum_12_1(prices) -> None:  # type: ignore[no-untyped-def]
    df = pd.DataFrame(prices)
    ref = df.shift(21) / df.shift(252) - 1
    assert_same(qf.momentum_12_1(prices), ref, 1e-15)
    assert_same(qf.momentum_12_1(prices, h_long=60, h_skip=0), df / df.shift(60) - 1, 1e-15)
    with pytest.raises(FactorError, match="h_skip"):
        qf.momentum_12_1(prices, h_long=20, h_skip=20)


@pytest.mark.filterwarnings("ignore:All-NaN slice:RuntimeWarning")
def test_cross_sectional_transforms(prices) -> None:  # type: ignore[no-untyped-def]
    x = qf.returns(prices, 20)
    df = pd.DataFrame(x)
    mean = df.mean(axis=1)
    ref_z = df.sub(mean, axis=0).div(df.std(axis=1, ddof=0), axis=0)
    assert_same(qf.zscore_cross_sectional(x), ref_z, 1e-12)
    tied = np.round(x, 2)
    assert_same(qf.rank_cross_sectional(tied), pd.DataFrame(tied).rank(axis=1, pct=True), 1e-15)
    assert_same(qf.rank_cross_sectional(tied, pct=False, ascending=False),
                pd.DataFrame(tied).rank(axis=1, ascending=False), 0)
    assert_same(qf.demean(x), df.sub(mean, axis=0), 1e-12)
    lo, hi = np.nanquantile(x, 0.05, axis=1), np.nanquantile(x, 0.95, axis=1)
    rows = ~np.isnan(x).all(axis=1)
    ref_w = np.where(np.isnan(x), np.nan, np.clip(x, lo[:, None], hi[:, None]))
    assert_same(qf.winsorize(x, 0.05, 0.95)[rows], ref_w[rows], 1e-13)
    # one cross-section (A,) works too
    assert_same(qf.zscore_cross_sectional(x[-1]), ref_z.to_numpy()[-1], 1e-12)


def test_group_neutralization(prices) -> None:  # type: ignore[no-untyped-def]
    x = qf.returns(prices, 5)
    sectors = np.array(["tech", "energy", "health", "tech"] * 10)
    got = qf.neutralize(x, sectors)
    df = pd.DataFrame(x).T
    ref = (df - df.groupby(sectors).transform("mean")).T
    assert_same(got, ref, 1e-12)
    assert_same(qf.demean(x, sectors), ref, 1e-12)
    by_date = np.broadcast_to(sectors, x.shape)
    assert_same(qf.demean(x, by_date), ref, 1e-12)


def test_neutralize_exposures_gives_orthogonal_residuals(prices) -> None:  # type: ignore[no-untyped-def]
    x = qf.returns(prices, 5)[-30:]
    rng = np.random.default_rng(3)
    beta = rng.normal(size=(x.shape[1], 2))
    res = qf.neutralize(x, exposures=beta)
    for t in range(x.shape[0]):
        ok = ~np.isnan(res[t])
        if ok.sum() > 3:
            design = np.column_stack([np.ones(ok.sum()), beta[ok]])
            np.testing.assert_allclose(design.T @ res[t, ok], 0.0, atol=1e-12)


def test_bad_arguments_name_the_parameter() -> None:
    with pytest.raises(FactorError, match="window"):
        qf.rolling_mean(np.ones(5), 0)
    with pytest.raises(FactorError, match="span"):
        qf.ewm_mean(np.ones(5))
    with pytest.raises(FactorError, match="min_periods"):
        qf.rolling_sum(np.ones(5), 3, min_periods=4)
    with pytest.raises(FactorError, match="shape"):
        qf.returns(np.ones((2, 2, 2)))


def test_array_namespace_is_numpy_for_numpy_and_lists() -> None:
    assert _xp.array_namespace(np.ones(3)) is np
    assert _xp.array_namespace([1.0, 2.0]) is np


def test_array_namespace_dispatches_on_cupy_arrays(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    fake = types.ModuleType("cupy")
    monkeypatch.setitem(sys.modules, "cupy", fake)
    cls = type("ndarray", (), {"__module__": "cupy._core.core"})
    assert _xp.is_cupy(cls())
    assert _xp.array_namespace(np.ones(2), cls()) is fake
