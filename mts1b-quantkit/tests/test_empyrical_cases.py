"""empyrical's own test cases (empyrical-reloaded 0.7.1: tests/test_stats.py, test_iso_week.py,
test_capture_columns.py, test_excess_sharpe.py and conftest.py's inputs), answered by empyrical
in this process.

Each test names the case it ports. The inputs are conftest.py's ``input_data`` series, rebuilt
here; the expected numbers are computed by empyrical on the same inputs (its suite hard-codes
them), and ours must agree to 1e-12 relative (1e-15 absolute near zero). Where a convention
differs on purpose (rolling values aligned with the rows, NaN for incomplete windows), the test
says so and compares the part both define.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pytest
from mts1b_quantkit import metrics as qm
from mts1b_quantkit.errors import MetricsError

pd = pytest.importorskip("pandas")
ep = pytest.importorskip("empyrical", reason="empyrical-reloaded is a test-only reference")


def _input_data() -> dict[str, Any]:
    """empyrical tests/conftest.py ``input_data`` (the series these cases use)."""
    day = pd.date_range("2000-1-30", periods=9, freq="D")
    thousand = pd.date_range("2000-1-30", periods=1000, freq="D", tz="UTC")
    rand = np.random.RandomState(1337)
    noise = pd.Series(rand.normal(0, 0.001, 1000), index=thousand)
    mixed = pd.Series(np.array([np.nan, 1.0, 10.0, -4.0, 2.0, 3.0, 2.0, 1.0, -10.0]) / 100,
                      index=day)
    return {
        "simple_benchmark": pd.Series(np.array([0.0, 1, 0, 1, 0, 1, 0, 1, 0]) / 100,
                                      index=day),
        "positive_returns": pd.Series(np.array([1.0, 2, 1, 1, 1, 1, 1, 1, 1]) / 100,
                                      index=day),
        "negative_returns": pd.Series(np.array([0.0, -6, -7, -1, -9, -2, -6, -8, -5]) / 100,
                                      index=day),
        "all_negative_returns": pd.Series(
            np.array([-2.0, -6, -7, -1, -9, -2, -6, -8, -5]) / 100, index=day),
        "mixed_returns": mixed,
        "weekly_returns": pd.Series(np.array([0.0, 1, 10, -4, 2, 3, 2, 1, -10]) / 100,
                                    index=pd.date_range("2000-1-30", periods=9, freq="W")),
        "monthly_returns": pd.Series(np.array([0.0, 1, 10, -4, 2, 3, 2, 1, -10]) / 100,
                                     index=pd.date_range("2000-1-30", periods=9, freq="ME")),
        "one_return": pd.Series(np.array([1.0]) / 100,
                                index=pd.date_range("2000-1-30", periods=1, freq="D")),
        "empty_returns": pd.Series(np.array([]) / 100,
                                   index=pd.date_range("2000-1-30", periods=0, freq="D")),
        "noise": noise,
        "flat_line_1": pd.Series(np.full(9, 0.01), index=day),
        "flat_line_1_tz": pd.Series(np.linspace(0.01, 0.01, num=1000), index=thousand),
        "pos_line": pd.Series(np.linspace(0, 1, num=1000), index=thousand),
    }


DATA = _input_data()


def series(name: str) -> Any:
    """conftest.py's ``returns`` fixture: a name, or an expression over the names."""
    if name in DATA:
        return DATA[name]
    return eval(name, {}, dict(DATA))  # the case names of the original suite


def ref(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def agree(mine: Any, theirs: Any) -> None:
    mine = np.asarray(mine, dtype=float)
    theirs = np.asarray(theirs, dtype=float).reshape(mine.shape)
    np.testing.assert_array_equal(np.isnan(mine), np.isnan(theirs))
    np.testing.assert_allclose(mine, theirs, rtol=1e-12, atol=1e-15, equal_nan=True)


def rolled(mine: np.ndarray, window: int) -> np.ndarray:
    """Our rolling values are aligned with the rows (NaN before the first full window);
    empyrical returns only the complete windows."""
    assert np.isnan(mine[: window - 1]).all()
    return mine[window - 1:]


# -- the difference: a scalar benchmark ----------------------------------------------------
@pytest.mark.parametrize("rate", [0.0, 0.0005, -0.001])
def test_scalar_benchmark_is_a_constant_series(rate: float) -> None:
    """Issue #16: excess_sharpe, information_ratio, hit_rate, alpha_beta and beta refused the
    scalar benchmark that empyrical's ``excess_sharpe`` takes (``test_excess_sharpe``'s
    ``"0.0"`` cases) and that ``sharpe``/``sortino`` take as ``risk_free``."""
    r = DATA["noise"]
    const = np.full(len(r), rate)
    for given in (r, r.to_numpy(), np.column_stack([r, r[::-1]])):
        for fn in (qm.excess_sharpe, qm.information_ratio, qm.hit_rate, qm.beta):
            agree(fn(given, rate), fn(given, const))
        for got, want in zip(qm.alpha_beta(given, rate), qm.alpha_beta(given, const),
                             strict=True):
            agree(got, want)
    agree(qm.excess_sharpe(r, rate), ref(ep.excess_sharpe, r, rate))
    agree(qm.excess_sharpe(r.to_numpy(), rate), ref(ep.excess_sharpe, r.to_numpy(), rate))
    # a constant benchmark has no variance: empyrical's beta and alpha of one are NaN
    agree(qm.alpha_beta(r, rate), ref(ep.alpha_beta, r, pd.Series(rate, index=r.index)))
    assert qm.hit_rate(r.to_numpy(), rate) == pytest.approx(float(np.mean(r.to_numpy() > rate)))
    with pytest.raises(MetricsError, match="factor_returns must be numeric"):
        qm.excess_sharpe(r, "0.01")
    with pytest.raises(MetricsError, match="factor_returns must be a scalar"):
        qm.excess_sharpe(r.to_numpy(), np.zeros((len(r), 3)))


@pytest.mark.parametrize(("returns", "factor_returns"), [
    ("empty_returns", "0.0"), ("pos_line", "pos_line"), ("mixed_returns", "0.0"),
    ("mixed_returns", "flat_line_1"), ("mixed_returns", "simple_benchmark"),
])
def test_excess_sharpe(returns: str, factor_returns: str) -> None:
    """empyrical ``test_excess_sharpe`` (a ``"0.0"`` factor is the scalar 0.0)."""
    r = series(returns)
    f = float(factor_returns) if factor_returns == "0.0" else series(factor_returns)
    agree(qm.excess_sharpe(r, f), ref(ep.excess_sharpe, r, f))


def test_excess_sharpe_undefined_and_zero_tracking_error() -> None:
    """empyrical tests/test_excess_sharpe.py: one finite active return gives NaN; a zero
    tracking error with a nonzero active return gives inf."""
    assert math.isnan(qm.excess_sharpe(pd.Series([0.01, np.nan]), pd.Series([0.0, np.nan])))
    assert math.isinf(qm.excess_sharpe(pd.Series([0.02] * 3), pd.Series([0.01] * 3)))


@pytest.mark.parametrize(("returns", "risk_free"), [
    ("empty_returns", "0.0"), ("one_return", "0.0"), ("mixed_returns", "mixed_returns"),
    ("mixed_returns", "0.0"), ("mixed_returns", "simple_benchmark"),
    ("positive_returns", "0.0"), ("negative_returns", "0.0"), ("flat_line_1", "0.0"),
])
def test_sharpe_ratio(returns: str, risk_free: str) -> None:
    """empyrical ``test_sharpe_ratio``, including a risk-free *series*: pandas series are
    aligned on their dates, as empyrical does, not by position."""
    r = series(returns)
    rf = float(risk_free) if risk_free == "0.0" else series(risk_free)
    agree(qm.sharpe(r, rf), ref(ep.sharpe_ratio, r, risk_free=rf))
    shifted = series("simple_benchmark").iloc[2:]  # fewer dates: joined, NaN where missing
    agree(qm.sharpe(series("mixed_returns"), shifted),
          ref(ep.sharpe_ratio, series("mixed_returns"), risk_free=shifted))


# -- stability, capture ----------------------------------------------------------------------------
@pytest.mark.parametrize("returns", ["empty_returns", "one_return", "mixed_returns",
                                     "flat_line_1_tz", "noise"])
def test_stability_of_timeseries(returns: str) -> None:
    """empyrical ``test_stability_of_timeseries`` (plus its noise input)."""
    r = series(returns)
    agree(qm.stability_of_timeseries(r), ref(ep.stability_of_timeseries, r))


def test_stability_column_wise_and_without_scipy_semantics_drift() -> None:
    two = np.column_stack([DATA["noise"].to_numpy(), DATA["flat_line_1_tz"].to_numpy()])
    got = qm.stability_of_timeseries(two)
    assert got.shape == (2,)
    agree(got[0], ref(ep.stability_of_timeseries, two[:, 0]))
    agree(got[1], 1.0)
    assert math.isnan(qm.stability_of_timeseries(np.zeros(10)))  # flat: linregress says NaN


CAPTURE_CASES = [
    ("empty_returns", "empty_returns"), ("one_return", "one_return"),
    ("mixed_returns", "mixed_returns"), ("positive_returns", "mixed_returns"),
    ("all_negative_returns", "mixed_returns"),
]


@pytest.mark.parametrize(("returns", "factor_returns"), CAPTURE_CASES)
def test_up_down_capture(returns: str, factor_returns: str) -> None:
    """empyrical ``test_up_capture``, ``test_down_capture`` and ``test_up_down_capture``."""
    r, f = series(returns), series(factor_returns)
    agree(qm.up_capture(r, f), ref(ep.up_capture, r, f))
    agree(qm.down_capture(r, f), ref(ep.down_capture, r, f))
    agree(qm.up_down_capture(r, f), ref(ep.up_down_capture, r, f))
    agree(qm.up_capture(r, f, periods_per_year=12), ref(ep.up_capture, r, f, period="monthly"))


def test_up_down_capture_ignore_unpaired_observations() -> None:
    """empyrical ``test_up_down_capture_ignore_unpaired_observations``."""
    idx = pd.date_range("2024-01-02", periods=6, freq="B")
    returns = pd.Series([0.02, 0.03, np.nan, -0.01, 0.01, -0.02], index=idx)
    factor = pd.Series([0.01, np.nan, -0.02, -0.01, 0.02, -0.03], index=idx)
    valid = returns.notna() & factor.notna()
    for mine, theirs in ((qm.up_capture, ep.up_capture), (qm.down_capture, ep.down_capture),
                         (qm.up_down_capture, ep.up_down_capture)):
        expected = ref(theirs, returns[valid], factor[valid])
        agree(mine(returns, factor), expected)
        agree(mine(returns.to_numpy(), factor.to_numpy()), expected)


def test_capture_preserves_identical_multiple_strategy_columns() -> None:
    """empyrical tests/test_capture_columns.py: one value per strategy column."""
    prices = pd.DataFrame({"first": [100.0, 110.0, 100.0, 120.0, 105.0],
                           "second": [100.0, 110.0, 100.0, 120.0, 105.0]},
                          index=pd.date_range("2024-01-02", periods=5, freq="B"))
    returns = ep.simple_returns(prices)
    benchmark = ep.simple_returns(prices["first"])
    for fn in (qm.up_capture, qm.down_capture, qm.up_down_capture):
        agree(fn(returns.to_numpy(), benchmark.to_numpy()), np.ones(2))
        agree(fn(returns, benchmark), np.ones(2))


# -- rolling ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("returns", "window"), [
    ("empty_returns", 6), ("negative_returns", 6), ("mixed_returns", 6), ("noise", 60),
])
def test_roll_max_drawdown_and_sharpe_ratio(returns: str, window: int) -> None:
    """empyrical ``test_roll_max_drawdown`` and ``test_roll_sharpe_ratio`` (and the other
    one-series rolling metrics on the same cases)."""
    r = series(returns)
    for mine, theirs in ((qm.roll_max_drawdown(r, window), ep.roll_max_drawdown(r, window)),
                         (qm.roll_sharpe(r, window), ep.roll_sharpe_ratio(r, window)),
                         (qm.roll_sortino(r, window), ep.roll_sortino_ratio(r, window)),
                         (qm.roll_volatility(r, window), ep.roll_annual_volatility(r, window))):
        assert mine.shape == (len(r),)
        agree(rolled(mine, window) if len(r) else mine, theirs)
    agree(rolled(qm.roll_sharpe(r, window, 0.0001, periods_per_year=12), window) if len(r)
          else [], ref(ep.roll_sharpe_ratio, r, window, risk_free=0.0001, period="monthly"))


@pytest.mark.parametrize(("returns", "benchmark", "window"), [
    ("empty_returns", "simple_benchmark", 1), ("one_return", "one_return", 1),
    ("mixed_returns", "negative_returns", 6), ("mixed_returns", "mixed_returns", 6),
    ("mixed_returns", "-mixed_returns", 6), ("noise", "flat_line_1_tz + noise[::-1].values", 50),
])
def test_roll_alpha_beta(returns: str, benchmark: str, window: int) -> None:
    """empyrical ``test_roll_alpha_beta`` (and ``roll_alpha``, ``roll_beta`` on its cases)."""
    r, b = series(returns), series(benchmark)
    alpha, beta = qm.roll_alpha_beta(r, b, window)
    theirs = np.asarray(ref(ep.roll_alpha_beta, r, b, window))
    assert alpha.shape == beta.shape == (max(len(r), len(b)),)
    agree(rolled(alpha, window), theirs[:, 0])
    agree(rolled(beta, window), theirs[:, 1])
    if len(r) == len(b):  # empyrical's roll_alpha/roll_beta skip the date alignment
        agree(rolled(qm.roll_alpha(r, b, window), window), ref(ep.roll_alpha, r, b, window))
        agree(rolled(qm.roll_beta(r, b, window), window), ref(ep.roll_beta, r, b, window))


@pytest.mark.parametrize(("returns", "factor_returns", "window"), [
    ("empty_returns", "empty_returns", 1), ("one_return", "one_return", 1),
    ("mixed_returns", "mixed_returns", 6), ("positive_returns", "mixed_returns", 6),
    ("all_negative_returns", "mixed_returns", 6),
])
def test_roll_up_down_capture(returns: str, factor_returns: str, window: int) -> None:
    """empyrical ``test_roll_up_capture``, ``test_roll_down_capture`` and
    ``test_roll_up_down_capture``."""
    r, f = series(returns), series(factor_returns)
    for mine, theirs in ((qm.roll_up_capture, ep.roll_up_capture),
                         (qm.roll_down_capture, ep.roll_down_capture),
                         (qm.roll_up_down_capture, ep.roll_up_down_capture)):
        got = mine(r, f, window)
        agree(rolled(got, window) if len(r) else got, ref(theirs, r, f, window=window))


def test_roll_max_window_and_columns() -> None:
    """empyrical ``test_roll_max_window``: a window longer than the series has no complete
    window. empyrical's ``roll`` then returns nothing (and its ``roll_*`` metrics one value over
    the whole series); ours is NaN at every row. Columns roll independently."""
    r = DATA["noise"].to_numpy()[:120]
    assert np.isnan(qm.roll_max_drawdown(r, 220)).all()
    assert qm.roll_sharpe(r, 220).shape == (120,)
    two = np.column_stack([r, r[::-1]])
    got = qm.roll_sharpe(two, 12)
    assert got.shape == (120, 2)
    agree(rolled(got[:, 1], 12), ep.roll_sharpe_ratio(r[::-1], 12))
    with pytest.raises(MetricsError, match="window"):
        qm.roll_sharpe(r, 0)


def test_rolling_memory_is_bounded_by_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The windows are copied a chunk at a time; a tiny chunk gives the same numbers (to the
    last bit or two: numpy may sum a column in another order when there are fewer of them)."""
    r = DATA["noise"].to_numpy()
    whole = qm.roll_sortino(r, 30)
    monkeypatch.setattr(qm, "_ROLL_CHUNK", 64)
    np.testing.assert_allclose(qm.roll_sortino(r, 30), whole, rtol=1e-15, atol=0)


# -- aggregation -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("returns", "convert_to"), [
    ("simple_benchmark", "weekly"), ("simple_benchmark", "monthly"),
    ("simple_benchmark", "quarterly"), ("simple_benchmark", "yearly"),
    ("weekly_returns", "monthly"), ("weekly_returns", "yearly"),
    ("monthly_returns", "yearly"), ("monthly_returns", "quarterly"),
    ("mixed_returns", "weekly"), ("noise", "weekly"), ("noise", "monthly"),
])
def test_aggregate_returns(returns: str, convert_to: str) -> None:
    """empyrical ``test_aggregate_returns`` (same periods, same compounded returns), from a
    pandas Series and from numpy dates."""
    r = series(returns)
    theirs = ref(ep.aggregate_returns, r, convert_to)
    keys = [k if isinstance(k, tuple) else (k,) for k in theirs.index]
    for got in (qm.aggregate_returns(r, convert_to),
                qm.aggregate_returns(r.to_numpy(), convert_to,
                                     dates=r.index.tz_localize(None).to_numpy())):
        assert got.periods == [tuple(int(v) for v in k) for k in keys]
        agree(got.returns, theirs.to_numpy())


@pytest.mark.parametrize(("dates", "keys"), [
    (["2019-12-30", "2019-12-31", "2020-01-02", "2020-01-03"], [(2020, 1)]),
    (["2020-12-30", "2020-12-31", "2021-01-01", "2021-01-04"], [(2020, 53), (2021, 1)]),
])
def test_aggregate_returns_keeps_both_iso_year_boundaries(dates: list[str],
                                                          keys: list[tuple[int, int]]) -> None:
    """empyrical tests/test_iso_week.py: weeks are ISO weeks keyed by the ISO year."""
    returns = pd.Series(0.01, index=pd.to_datetime(dates))
    theirs = ep.aggregate_returns(returns, "weekly")
    assert theirs.index.tolist() == keys
    got = qm.aggregate_returns(returns.to_numpy(), "weekly",
                               dates=np.array(dates, dtype="datetime64[D]"))
    assert got.periods == keys
    agree(got.returns, theirs.to_numpy())


def test_aggregate_returns_columns_errors_and_every_iso_week() -> None:
    days = np.arange(np.datetime64("1999-12-20"), np.datetime64("2031-01-10"))
    got = qm.aggregate_returns(np.full(days.size, 0.001), "weekly", dates=days)
    expected = sorted({(d.isocalendar()[0], d.isocalendar()[1]) for d in days.tolist()})
    assert got.periods == expected  # ISO years with 52 and 53 weeks, across 31 New Years
    frame = pd.DataFrame({"a": DATA["noise"], "b": -DATA["noise"]})
    both = qm.aggregate_returns(frame, "monthly")
    agree(both.returns, ref(ep.aggregate_returns, frame, "monthly").to_numpy())
    with pytest.raises(MetricsError, match="convert_to"):
        qm.aggregate_returns(frame, "daily")
    with pytest.raises(MetricsError, match="dates"):
        qm.aggregate_returns(frame.to_numpy(), "monthly")
    with pytest.raises(MetricsError, match="one date per row"):
        qm.aggregate_returns(frame.to_numpy(), "monthly", dates=days[:5])
