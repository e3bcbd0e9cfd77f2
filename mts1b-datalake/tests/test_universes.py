"""Point-in-time universes: no look-ahead, no survivorship shortcut, clear errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from mts1b_datalake import (
    StaticUniverse,
    Store,
    TopLiquidityUniverse,
    UnknownFieldError,
    UnknownSymbolError,
    UnknownUniverseError,
    register_universe,
    registered_universes,
    universe,
)
from mts1b_datalake.calendar import trading_days
from mts1b_datalake.universes import rebalance_rows, unregister_universe


def liquidity_store(store: Store) -> Store:
    """Five names on 2020 sessions; dollar volume ranks change mid-year; E lists late, D
    delists early."""
    days = trading_days("XNYS", "2020-01-01", "2020-12-31").astype("datetime64[s]")
    rows = []
    for sym, dv_first, dv_second in (("A", 5e6, 1e6), ("B", 4e6, 4e6), ("C", 3e6, 6e6),
                                     ("D", 2e6, 2e6), ("E", 9e6, 9e6)):
        for i, d in enumerate(days):
            if sym == "D" and i > 120:
                break
            if sym == "E" and i < 150:
                continue
            dv = dv_first if i < 100 else dv_second
            rows.append({"symbol": sym, "date": d, "open": 10.0, "high": 10.5, "low": 9.5,
                         "close": 10.0, "volume": dv / 10.0})
    store.write(pd.DataFrame(rows))
    return store


def test_top_n_by_trailing_dollar_volume_point_in_time(store: Store) -> None:
    liquidity_store(store)
    days = trading_days("XNYS", "2020-01-01", "2020-12-31")
    rule = TopLiquidityUniverse(2, lookback=21, min_history=10)
    m = rule.resolve(store, days)
    frame = pd.DataFrame(m.mask, index=days, columns=m.symbols)
    # no history before the first window: nobody is eligible in January
    assert not frame.loc[: np.datetime64("2020-01-31")].to_numpy().any()
    assert sorted(frame.columns[frame.loc[np.datetime64("2020-03-02")]]) == ["A", "B"]
    # C's volume rises on session 100 (late May); the June 1 window still sees mostly the old
    # ranking, July 1 sees the new one
    assert sorted(frame.columns[frame.loc[np.datetime64("2020-07-01")]]) == ["B", "C"]
    # E lists on session 150 (early August) and needs 10 bars of history: member from
    # the first rebalance after that
    first_e = frame.index[frame["E"]][0]
    assert first_e == np.datetime64("2020-09-01")
    # membership changes only on rebalance days (monthly) or when a member stops trading
    changes = set(np.flatnonzero((m.mask[1:] != m.mask[:-1]).any(axis=1)) + 1)
    d_gone = int(np.searchsorted(days, np.datetime64(
        store.symbol_table().set_index("symbol").loc["D", "last_date"]))) + 1
    assert changes <= set(rebalance_rows(days, "monthly")) | {d_gone}


def test_membership_never_uses_future_data(store: Store) -> None:
    liquidity_store(store)
    days = trading_days("XNYS", "2020-01-01", "2020-12-31")
    before = TopLiquidityUniverse(2, lookback=21, min_history=10).resolve(store, days)
    # blow up A's volume from July on: membership before July must not change
    a = store.read_bars(["A"])
    a.loc[a["date"] >= "2020-07-01", "volume"] *= 1000
    store.write(a)
    after = TopLiquidityUniverse(2, lookback=21, min_history=10).resolve(store, days)
    cut = int(np.searchsorted(days, np.datetime64("2020-07-01")))
    idx_before = {s: i for i, s in enumerate(before.symbols)}
    idx_after = {s: i for i, s in enumerate(after.symbols)}
    for s in set(before.symbols) & set(after.symbols):
        np.testing.assert_array_equal(before.mask[:cut, idx_before[s]],
                                      after.mask[:cut, idx_after[s]])


def test_delisted_names_leave_on_their_last_bar(store: Store) -> None:
    liquidity_store(store)
    days = trading_days("XNYS", "2020-01-01", "2020-12-31")
    m = TopLiquidityUniverse(None, lookback=21, min_history=10).resolve(store, days)
    d = m.symbols.index("D")
    last_bar = store.symbol_table().set_index("symbol").loc["D", "last_date"]
    member_days = days[m.mask[:, d]]
    assert member_days.max() == np.datetime64(last_bar)


def test_static_universe_and_universe_of_one(store: Store) -> None:
    liquidity_store(store)
    days = trading_days("XNYS", "2020-01-01", "2020-12-31")
    m = StaticUniverse(["E"]).resolve(store, days)
    assert m.symbols == ["E"]
    assert m.mask[:, 0].sum() == len(days) - 150  # listed from its first bar
    with pytest.raises(UnknownSymbolError, match="ZZZ"):
        StaticUniverse(["A", "ZZZ"]).resolve(store, days)
    assert StaticUniverse(["A"]).members("2020-06-30", store) == ["A"]


def test_registry(store: Store) -> None:
    assert {"us-large-cap", "us-all"} <= set(registered_universes())
    big = universe("us-large-cap", n=3)
    assert isinstance(big, TopLiquidityUniverse) and big.n == 3
    assert big.name == "us-large-cap(n=3)"
    assert universe("us-large-cap").n == 100
    register_universe("my-pair", ["A", "B"])
    try:
        assert universe("my-pair").symbols == ["A", "B"]
        with pytest.raises(UnknownFieldError, match="already registered"):
            register_universe("my-pair", ["C"])
        register_universe("my-pair", ["C"], replace=True)
        assert universe("my-pair").symbols == ["C"]
    finally:
        unregister_universe("my-pair")
    with pytest.raises(UnknownUniverseError, match="unknown universe 'nope'") as info:
        universe("nope")
    assert info.value.context == {"field": "universe", "value": "nope"}
    with pytest.raises(UnknownFieldError, match="does not take"):
        universe("us-large-cap", size=3)


def test_rebalance_schedules() -> None:
    days = trading_days("XNYS", "2020-01-01", "2020-03-31")
    assert len(rebalance_rows(days, "monthly")) == 3
    assert len(rebalance_rows(days, "quarterly")) == 1
    assert len(rebalance_rows(days, "daily")) == len(days)
    assert 12 <= len(rebalance_rows(days, "weekly")) <= 14
    with pytest.raises(UnknownFieldError, match="rebalance"):
        rebalance_rows(days, "hourly")
    with pytest.raises(UnknownFieldError):
        TopLiquidityUniverse(0)


@pytest.mark.slow
def test_us_large_cap_on_the_real_sp500_file(sp500_store: Store) -> None:
    members = universe("us-large-cap", n=10).members("2016-06-30", sp500_store)
    assert len(members) == 10
    assert {"AAPL", "AMZN", "FB", "MSFT"} <= set(members)
