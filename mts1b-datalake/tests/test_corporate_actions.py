"""Corporate actions -> adjustment factors, checked against a real raw + adjusted series."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mts1b_datalake import (
    LongCsvProvider,
    Store,
    UnknownFieldError,
    adjustment_factors,
    back_adjust,
    build_panel,
)
from mts1b_datalake.corporate_actions import back_adjustment_factors


@pytest.fixture(scope="module")
def quandl(data_file: Callable[[str], Path]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    path = data_file("plotly/dash-stock-ticker-demo.csv")
    data = LongCsvProvider(path).read()
    raw = pd.read_csv(path, parse_dates=["Date"]).rename(columns={"Stock": "symbol",
                                                                   "Date": "date"})
    return data.bars, data.events, raw


def _compare(adjusted: pd.DataFrame, raw: pd.DataFrame, column: str, ours: str) -> float:
    merged = adjusted.merge(raw[["symbol", "date", column]], on=["symbol", "date"])
    worst = 0.0
    for _, g in merged.groupby("symbol"):
        ratio = (g[ours] / g[column]).to_numpy()
        worst = max(worst, float(np.max(np.abs(ratio / ratio[-1] - 1))))
    return worst


def test_quandl_adjusted_columns_reproduced_exactly(quandl: tuple[pd.DataFrame, ...]) -> None:
    """Quandl WIKI adjusts a dividend by close[d] / (close[d] + D): exact to float noise."""
    bars, events, raw = quandl
    adjusted = back_adjust(bars, events, dividend_base="ex_close")
    for column, ours in (("AdjClose", "close"), ("AdjOpen", "open"), ("AdjHigh", "high"),
                         ("AdjLow", "low")):
        assert _compare(adjusted, raw, column, ours) < 1e-9, column
    assert _compare(adjusted, raw, "AdjVolume", "volume") < 1e-9  # no splits: volume raw


def test_default_convention_agrees_within_two_basis_points(
        quandl: tuple[pd.DataFrame, ...]) -> None:
    """The CRSP/Yahoo convention (previous close) differs by a few 1e-5 per dividend."""
    bars, events, raw = quandl
    adjusted = back_adjust(bars, events)
    err = _compare(adjusted, raw, "AdjClose", "close")
    assert 1e-6 < err < 2e-4


def test_adjusted_return_across_an_ex_date_under_both_conventions() -> None:
    bars = pd.DataFrame({"symbol": "X", "date": pd.bdate_range("2021-01-04", periods=4),
                         "close": [100.0, 101.0, 98.0, 100.0]})
    events = pd.DataFrame({"symbol": ["X"], "date": [pd.Timestamp("2021-01-06")],
                           "kind": ["dividend"], "value": [2.0]})
    crsp = back_adjust(bars, events)["close"].to_numpy()
    assert crsp[2] / crsp[1] == pytest.approx(98.0 / (101.0 - 2.0))
    quandl = back_adjust(bars, events, dividend_base="ex_close")["close"].to_numpy()
    assert quandl[2] / quandl[1] == pytest.approx((98.0 + 2.0) / 101.0)  # cash reinvested
    assert crsp[-1] == quandl[-1] == 100.0  # the last day is raw


@settings(max_examples=60, deadline=None)
@given(
    closes=st.lists(st.floats(1.0, 1000.0), min_size=3, max_size=40),
    data=st.data(),
)
def test_adjusted_returns_are_raw_returns_plus_the_events(closes: list[float],
                                                          data: st.DataObject) -> None:
    """Property: on every day, the adjusted return equals the raw return with the day's split
    (shares multiply) and dividend (cash added, Quandl convention) put back."""
    T = len(closes)
    split = np.ones(T)
    dividend = np.zeros(T)
    for t in range(1, T):
        kind = data.draw(st.sampled_from(["none", "none", "split", "dividend"]))
        if kind == "split":
            split[t] = data.draw(st.sampled_from([0.1, 0.5, 2.0, 3.0, 4.0]))
        elif kind == "dividend":
            dividend[t] = data.draw(st.floats(0.01, 0.2)) * closes[t - 1]
    close = np.array(closes)
    factor, _ = back_adjustment_factors(close[:, None], dividend[:, None], split[:, None],
                                        dividend_base="ex_close")
    adj = close * factor[:, 0]
    expected = (close[1:] * split[1:] + dividend[1:] * split[1:]) / close[:-1]
    np.testing.assert_allclose(adj[1:] / adj[:-1], expected, rtol=1e-9)
    assert adj[-1] == close[-1]


def test_splits_scale_prices_and_volumes() -> None:
    close = np.array([[100.0], [102.0], [51.0], [52.0]])
    split = np.ones((4, 1))
    split[2, 0] = 2.0
    price, volume = back_adjustment_factors(close, np.zeros((4, 1)), split)
    assert price[:, 0].tolist() == [0.5, 0.5, 1.0, 1.0]
    assert volume[:, 0].tolist() == [2.0, 2.0, 1.0, 1.0]
    reverse = np.ones((4, 1))
    reverse[2, 0] = 0.1
    price, _ = back_adjustment_factors(close, np.zeros((4, 1)), reverse)
    assert price[0, 0] == pytest.approx(10.0)
    with pytest.raises(UnknownFieldError, match="dividend_base"):
        back_adjustment_factors(close, np.zeros((4, 1)), split, dividend_base="open")


def test_factor_table_and_gaps() -> None:
    bars = pd.DataFrame({"symbol": ["X", "X", "X", "Y"],
                         "date": pd.to_datetime(["2021-01-04", "2021-01-05", "2021-01-07",
                                                 "2021-01-04"]),
                         "close": [10.0, np.nan, 9.0, 5.0]})
    events = pd.DataFrame({"symbol": ["X"], "date": [pd.Timestamp("2021-01-06")],
                           "kind": ["dividend"], "value": [1.0]})
    table = adjustment_factors(bars, events)
    # the ex-date is not a bar: it applies to the next bar; previous close skips the NaN
    assert table["price_factor"].tolist() == [pytest.approx(0.9), pytest.approx(0.9), 1.0, 1.0]


def test_synthetic_splits_disappear_from_back_adjusted_panels(demo_store: Store) -> None:
    ev = demo_store.events(kinds=["split"])
    forward = ev[(ev["value"] >= 2) & (ev["date"] > "2012-03-01")].iloc[0]
    sym, day = forward["symbol"], forward["date"]
    start = (day - pd.Timedelta(days=20)).date()
    end = (day + pd.Timedelta(days=20)).date()
    raw = build_panel([sym], start, end, store=demo_store, adjust="none")
    adj = build_panel([sym], start, end, store=demo_store, adjust="back",
                      fields=("close", "adj_factor", "split_ratio"))
    r = raw.row_of(day.date())
    assert raw.close[r, 0] / raw.close[r - 1, 0] < 0.6
    assert 0.8 < adj.close[r, 0] / adj.close[r - 1, 0] < 1.25
    assert adj.split_ratio[r, 0] == forward["value"]
    assert adj.adj_factor[-1, 0] == 1.0
