"""Factor analytics against alphalens (alphalens-reloaded) on real S&P 500 prices."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from mts1b_quantkit import analytics as qa
from mts1b_quantkit import factors as qf
from mts1b_quantkit.errors import FactorError

pd = pytest.importorskip("pandas")
al = pytest.importorskip("alphalens", reason="alphalens-reloaded is a test-only reference")

PERIODS = (1, 5, 10)


@pytest.fixture(scope="module")
def case(sp500_close):  # type: ignore[no-untyped-def]
    """A momentum factor on 40 real stocks over 250 days, alphalens' clean factor_data, and the
    same factor NaN'd where alphalens dropped rows (so both sides see the same data)."""
    px = sp500_close.iloc[:250, :40]
    factor = qf.momentum_12_1(px.to_numpy(), h_long=60, h_skip=5)
    stacked = pd.DataFrame(factor, index=px.index, columns=px.columns).stack().dropna()
    stacked.index.names = ["date", "asset"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fd = al.utils.get_clean_factor_and_forward_returns(
            stacked, px, quantiles=5, periods=PERIODS, max_loss=1.0)
    keep = (pd.Series(1.0, index=fd.index).unstack()
            .reindex(index=px.index, columns=px.columns).notna().to_numpy())
    f = np.where(keep, factor, np.nan)
    fwd = {h: np.where(keep, r, np.nan)
           for h, r in qa.forward_returns(px.to_numpy(), PERIODS).items()}
    return px, fd, f, fwd


@pytest.fixture(scope="module")
def ic_ref(case):  # type: ignore[no-untyped-def]
    return al.performance.factor_information_coefficient(case[1])


def _panel(series, px):  # type: ignore[no-untyped-def]
    return series.unstack().reindex(index=px.index, columns=px.columns).to_numpy()


def _dates(series, px):  # type: ignore[no-untyped-def]
    return series.reindex(px.index).to_numpy()


def same(mine, ref, atol: float = 1e-14) -> None:  # type: ignore[no-untyped-def]
    mine, ref = np.asarray(mine, dtype=float), np.asarray(ref, dtype=float)
    np.testing.assert_array_equal(np.isnan(mine), np.isnan(ref))
    np.testing.assert_allclose(mine, ref, rtol=0, atol=atol, equal_nan=True)


def test_forward_returns(case) -> None:  # type: ignore[no-untyped-def]
    px, fd, _, fwd = case
    for h, col in zip(PERIODS, ["1D", "5D", "10D"], strict=True):
        same(fwd[h], _panel(fd[col], px), 0)


def test_information_coefficient(case, ic_ref) -> None:  # type: ignore[no-untyped-def]
    px, _, f, fwd = case
    ref = ic_ref
    for h, col in zip(PERIODS, ref.columns, strict=True):
        same(qa.information_coefficient(f, fwd[h]), _dates(ref[col], px), 1e-13)


def test_ic_summary_is_alphalens_information_table(case, ic_ref) -> None:  # type: ignore[no-untyped-def]
    _, _, f, fwd = case
    ic = ic_ref
    table = al.plotting.plot_information_table(ic, return_df=True)
    for h, col in zip(PERIODS, ic.columns, strict=True):
        got = qa.ic_summary(qa.information_coefficient(f, fwd[h]))
        row = table.loc[col]
        for mine, theirs in [("ic_mean", "IC Mean"), ("ic_std", "IC Std."),
                             ("ir", "Risk-Adjusted IC"), ("t_stat", "t-stat(IC)"),
                             ("p_value", "p-value(IC)"), ("ic_skew", "IC Skew"),
                             ("ic_kurtosis", "IC Kurtosis")]:
            assert got[mine] == pytest.approx(row[theirs], rel=1e-10, abs=1e-13), mine


def test_quantize(case) -> None:  # type: ignore[no-untyped-def]
    px, fd, f, _ = case
    same(qa.quantize(f, 5), _panel(fd["factor_quantile"].astype(float), px), 0)
    # explicit edges, as alphalens' quantiles=[...]
    ref = al.utils.quantize_factor(fd, quantiles=[0, 0.1, 0.5, 0.9, 1.0])
    same(qa.quantize(f, [0, 0.1, 0.5, 0.9, 1.0]), _panel(ref.astype(float), px), 0)


@pytest.mark.parametrize("demeaned", [True, False])
def test_quantile_returns(case, demeaned) -> None:  # type: ignore[no-untyped-def]
    px, fd, f, fwd = case
    q = qa.quantize(f, 5)
    mean, err = al.performance.mean_return_by_quantile(fd, demeaned=demeaned)
    by_date, _ = al.performance.mean_return_by_quantile(fd, by_date=True, demeaned=demeaned)
    for h, col in zip(PERIODS, mean.columns, strict=True):
        m, e, d = qa.quantile_returns(q, fwd[h], demeaned=demeaned)
        same(m, mean[col].to_numpy(), 1e-15)
        same(e, err[col].to_numpy(), 1e-15)
        ref = by_date[col].unstack(level="factor_quantile").reindex(px.index).to_numpy()
        same(d, ref, 1e-15)


def test_turnover_and_rank_autocorrelation(case) -> None:  # type: ignore[no-untyped-def]
    px, fd, f, _ = case
    q = qa.quantize(f, 5)
    for quantile in (1, 3, 5):
        for period in (1, 5):
            ref = al.performance.quantile_turnover(fd["factor_quantile"], quantile, period)
            same(qa.quantile_turnover(q, quantile, period), _dates(ref, px), 1e-15)
    for period in (1, 5):
        ref = al.performance.factor_rank_autocorrelation(fd, period)
        same(qa.factor_rank_autocorrelation(f, period), _dates(ref, px), 1e-13)


def test_factor_returns(case) -> None:  # type: ignore[no-untyped-def]
    px, fd, f, fwd = case
    ref = al.performance.factor_returns(fd)
    for h, col in zip(PERIODS, ref.columns, strict=True):
        same(qa.factor_returns(f, fwd[h]), _dates(ref[col], px), 1e-15)
    weights = al.performance.factor_weights(fd)
    same(qa.factor_weights(f), _panel(weights, px), 1e-15)


def test_ic_decay(case) -> None:  # type: ignore[no-untyped-def]
    px, _, f, _ = case
    decay = qa.ic_decay(f, px.to_numpy(), horizons=(1, 5, 10, 21))
    assert list(decay) == [1, 5, 10, 21]
    fwd21 = qa.forward_returns(px.to_numpy(), (21,))[21]
    assert decay[21] == qa.ic_summary(qa.information_coefficient(f, fwd21))


def test_bad_shapes() -> None:
    with pytest.raises(ValueError, match="shape"):  # MetricsError: IC's home is metrics
        qa.information_coefficient(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(FactorError, match="periods"):
        qa.forward_returns(np.ones((5, 2)), (0,))
