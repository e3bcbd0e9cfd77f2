"""alphalens' own test cases (alphalens-reloaded 0.5.1, tests/test_performance.py), answered by
alphalens in this process.

The originals build small long-format factor tables by hand; here the same values are laid out
as ``(T, A)`` panels for quantkit and stacked for alphalens, and both are computed. Cases with
group adjustment or by-group results are left out: quantkit's analytics have no groups.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pytest
from mts1b_quantkit import analytics as qa
from mts1b_quantkit.errors import FactorError, MetricsError

pd = pytest.importorskip("pandas")
al = pytest.importorskip("alphalens", reason="alphalens-reloaded is a test-only reference")
nan = np.nan


def stacked(values: Any, tickers: list[str], name: str = "factor", freq: str = "D") -> Any:
    """A ``(T, A)`` table as alphalens' long (date, asset) Series, NaN rows dropped."""
    dates = pd.date_range("2015-1-1", periods=len(values), freq=freq, name="date")
    frame = pd.DataFrame(values, index=dates, columns=tickers).rename_axis("asset", axis=1)
    return frame.stack().dropna().rename(name)


def panel(long: Any, like: Any) -> np.ndarray:
    return long.unstack().reindex(index=like.index, columns=like.columns).to_numpy(dtype=float)


def agree(mine: Any, theirs: Any, atol: float = 1e-15) -> None:
    mine, theirs = np.asarray(mine, dtype=float), np.asarray(theirs, dtype=float)
    np.testing.assert_array_equal(np.isnan(mine), np.isnan(theirs))
    np.testing.assert_allclose(mine, theirs, rtol=0, atol=atol, equal_nan=True)


FACTOR = [[1, 2, 3, 4], [4, 3, 2, 1]]  # PerformanceTestCase.factor_data


@pytest.mark.parametrize("forward", [[4, 3, 2, 1, 1, 2, 3, 4], [1, 2, 3, 4, 4, 3, 2, 1]])
def test_information_coefficient(forward: list[float]) -> None:
    """alphalens ``test_information_coefficient`` (the cases without groups)."""
    factor = np.array(FACTOR, dtype=float)
    fwd = np.array(forward, dtype=float).reshape(2, 4)
    data = pd.DataFrame({"factor": stacked(factor, list("ABCD")),
                         "1D": stacked(fwd, list("ABCD"), "1D")})
    theirs = al.performance.factor_information_coefficient(data)["1D"].to_numpy()
    agree(qa.information_coefficient(factor, fwd), theirs)


@pytest.mark.parametrize(("values", "quantile", "period"), [
    ([[1.0, 2, 3, 4], [4, 3, 2, 1], [1, 2, 3, 4], [1, 2, 3, 4]], 4, 1),
    ([[1.0, 2, 3, 4], [4, 3, 2, 1], [1, 2, 3, 4], [1, 2, 3, 4]], 4, 2),
    ([[1.0, 2, 3, 4], [4, 3, 2, 1], [1, 2, 3, 4], [1, 2, 3, 4]], 4, 3),
    ([[1.0, 2, 3, 4]] * 4, 3, 1),
    ([[1.0, 2, 3, 4]] * 4, 3, 2),
    ([[1.0, 2, 3, 4]] * 4, 3, 3),
    ([[1.0, 2, 3, 4], [4, 3, 2, 1]] * 2, 2, 1),
    ([[1.0, 2, 3, 4], [1, 3, 2, 4]] * 6, 3, 4),
    ([[1.0, 2, 3, 4], [1, 3, 2, 4]] * 5 + [[1.0, 2, 3, 4]] * 2, 3, 10),
])
def test_quantile_turnover(values: list[list[float]], quantile: int, period: int) -> None:
    """alphalens ``test_quantile_turnover`` (the values are quantile numbers already)."""
    q = np.array(values)
    theirs = al.performance.quantile_turnover(stacked(q, list("ABCD")), quantile, period)
    agree(qa.quantile_turnover(q, quantile, period), theirs.to_numpy())


@pytest.mark.parametrize(("values", "period"), [
    ([[1.0, 2, 3, 4], [1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 3, 4]], 1),
    ([[1.0, 2, 3, 4], [2, 1, 4, 3], [4, 3, 2, 1]] * 4, 3),
    ([[1.0, 2, 3, 4], [2, 1, 4, 3], [4, 3, 2, 1], [1, 2, 3, 4], [2, 1, 4, 3], [4, 3, 2, 1],
      [2, 1, 4, 3], [4, 3, 2, 1], [1, 2, 3, 4], [2, 1, 4, 3], [2, 1, 4, 3], [4, 3, 2, 1]], 3),
])
def test_factor_rank_autocorrelation(values: list[list[float]], period: int) -> None:
    """alphalens ``test_factor_rank_autocorrelation``."""
    f = np.array(values)
    theirs = al.performance.factor_rank_autocorrelation(
        pd.DataFrame({"factor": stacked(f, list("ABCD"))}), period)
    agree(qa.factor_rank_autocorrelation(f, period), theirs.to_numpy(), 1e-15)


@pytest.mark.parametrize(("values", "demeaned"), [
    ([[3, 4, 2, 1, nan], [3, 4, -2, -1, nan], [3, nan, nan, 1, 4]], False),
    ([[3, 4, 2, 1, nan], [3, 4, -2, -1, nan], [3, nan, nan, 1, 4]], True),
    ([[1, 1, 1, 1, 1], [3, 4, -2, -1, nan], [7, 7, nan, 7, 7]], True),  # constant dates
])
def test_factor_weights(values: list[list[float]], demeaned: bool) -> None:
    """alphalens ``test_factor_weights`` (the cases without group adjustment or equal
    weighting), plus constant dates, whose weights are 0 in both."""
    f = np.array(values, dtype=float)
    long = stacked(f, list("ABCDE"))
    theirs = al.performance.factor_weights(pd.DataFrame({"factor": long}), demeaned=demeaned)
    like = pd.DataFrame(f, index=long.index.levels[0], columns=list("ABCDE"))
    agree(qa.factor_weights(f, demeaned=demeaned), panel(theirs, like))


RETURNS_CASES = [  # alphalens test_factor_returns, without group adjustment
    ([1, 2, 3, 4, 4, 3, 2, 1], [4, 3, 2, 1, 1, 2, 3, 4]),
    ([1, 1, 1, 1, 1, 1, 1, 1], [4, 3, 2, 1, 1, 2, 3, 4]),
    ([1, 2, 3, 4, 1, 1, 1, 1], [4, 3, 2, 1, 1, 2, 3, 4]),  # one informative date, one constant
]


@pytest.mark.parametrize(("factor", "forward"), RETURNS_CASES)
def test_factor_returns(factor: list[float], forward: list[float]) -> None:
    """alphalens ``test_factor_returns``: alphalens-reloaded gives 0 on a date whose factor is
    constant (``[0.0, 0.0]`` for the second case); ``constant_dates="zero"`` reproduces it."""
    f = np.array(factor, dtype=float).reshape(2, 4)
    r = np.array(forward, dtype=float).reshape(2, 4)
    data = pd.DataFrame({"factor": stacked(f, list("ABCD")), "1D": stacked(r, list("ABCD"), "1D")})
    theirs = al.performance.factor_returns(data, demeaned=True)["1D"].to_numpy()
    agree(qa.factor_returns(f, r, constant_dates="zero"), theirs)
    ours = qa.factor_returns(f, r)
    constant = np.ptp(f, axis=1) == 0
    agree(ours[~constant], theirs[~constant])
    assert np.isnan(ours[constant]).all()


def test_factor_returns_on_constant_dates_is_nan() -> None:
    """Issue #16: a date whose factor is constant gave 0, which pulls mean factor returns and
    alpha towards zero. The original alphalens (0.4.0, ``test_factor_returns``) expects NaN for
    the constant-factor case ``[1] * 8``, as the docstring here promises; the mean is then the
    mean over the dates with a factor portfolio."""
    f = np.array([[1.0, 2, 3, 4], [1, 1, 1, 1], [4, 3, 2, 1], [5, 5, 5, 5]])
    r = np.array([[0.01, 0.02, 0.03, 0.04], [0.04, 0.03, 0.02, 0.01],
                  [0.01, 0.02, 0.03, 0.04], [0.0, 0.01, 0.02, 0.03]])
    got = qa.factor_returns(f, r)
    assert math.isnan(got[1]) and math.isnan(got[3])
    informative = qa.factor_returns(f[[0, 2]], r[[0, 2]])
    agree(got[[0, 2]], informative)
    assert np.nanmean(got) == pytest.approx(informative.mean(), abs=1e-18)
    assert qa.factor_returns(f, r, constant_dates="zero")[[1, 3]].tolist() == [0.0, 0.0]
    # a single asset is always constant across the assets (alphalens
    # test_single_asset_factor_weights_and_alpha_beta: weights 0)
    single = np.ones((5, 1))
    assert (qa.factor_weights(single) == 0).all()
    assert np.isnan(qa.factor_returns(single, np.full((5, 1), 0.01))).all()
    with pytest.raises(FactorError, match="constant_dates"):
        qa.factor_returns(f, r, constant_dates="drop")  # type: ignore[arg-type]


@pytest.mark.parametrize(("rets", "factor", "bins"), [
    ([1.1, 1.2, 1.1, 1.2, 1.1, 1.2], [[1, 2, 1, 2, 1, 2]] * 3, 2),
    ([1.1, 1.1, 1.1, 1.2, 1.2, 1.2], [[1, 2, 3, 1, 2, 3]] * 3, 3),
    ([1.5, 1.5, 1.2, 1.0, 1.0, 1.0], [[1, 1, 2, 2, 2, 2], [2, 2, 1, 2, 2, 2],
                                      [2, 2, 1, 2, 2, 2]], 2),
    ([1.5, 1.5, 1.2, 1.0, 1.0, 1.0], [[1, 1, 3, 2, 2, 2], [3, 3, 1, 2, 2, 2],
                                      [3, 3, 1, 2, 2, 2]], 3),
    ([1.6, 1.6, 1.0, 1.0, 1.0, 1.0], [[1, 1, 2, 2, 2, 2], [2, 2, 1, 1, 1, 1],
                                      [2, 2, 1, 1, 1, 1]], 2),
])
def test_mean_return_by_quantile(rets: list[float], factor: list[list[int]], bins: int) -> None:
    """alphalens ``test_mean_return_by_quantile`` (without groups): alphalens bins the factor
    (equal-width ``bins``, which quantize does not offer) and its bins are fed to ours."""
    tickers = list("ABCDEF")
    prices = pd.DataFrame([[r ** i for r in rets] for i in range(1, 5)],
                          index=pd.date_range("2015-1-11", "2015-1-14", name="date"),
                          columns=tickers)
    long = pd.DataFrame(factor, index=prices.index[:3], columns=tickers).stack()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = al.utils.get_clean_factor_and_forward_returns(
            long, prices, quantiles=None, bins=bins, periods=(1,))
    mean, _ = al.performance.mean_return_by_quantile(data, demeaned=False)
    like = prices.iloc[:3]
    q = panel(data["factor_quantile"].astype(float), like)
    fwd = qa.forward_returns(prices.to_numpy(), (1,))[1][:3]
    got, _, _ = qa.quantile_returns(q, np.where(np.isnan(q), np.nan, fwd), demeaned=False)
    agree(got, mean["1D"].to_numpy(), 1e-15)


def test_dataframes_are_matched_by_dates_and_assets() -> None:
    """Labelled panels are read by name: forward returns with their columns in another order
    give the same IC and factor returns; other assets are an error naming them."""
    rng = np.random.default_rng(3)
    dates = pd.date_range("2020-01-01", periods=30, name="date")
    factor = pd.DataFrame(rng.normal(size=(30, 6)), index=dates, columns=list("ABCDEF"))
    fwd = pd.DataFrame(rng.normal(0, 0.01, (30, 6)), index=dates, columns=list("ABCDEF"))
    shuffled = fwd.loc[dates[::-1], list("FBDACE")]
    agree(qa.information_coefficient(factor, shuffled),
          qa.information_coefficient(factor.to_numpy(), fwd.to_numpy()))
    agree(qa.factor_returns(factor, shuffled), qa.factor_returns(factor.to_numpy(),
                                                                 fwd.to_numpy()))
    q = qa.quantize(factor, 3)
    agree(qa.quantile_returns(pd.DataFrame(q, dates, factor.columns), shuffled)[0],
          qa.quantile_returns(q, fwd.to_numpy())[0])
    with pytest.raises(FactorError, match=r"columns of forward.*missing \['F'\].*\['G'\]"):
        qa.factor_returns(factor, fwd.rename(columns={"F": "G"}))
    with pytest.raises(MetricsError, match="dates"):
        qa.information_coefficient(factor, fwd.iloc[1:])
