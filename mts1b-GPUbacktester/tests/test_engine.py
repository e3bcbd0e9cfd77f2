"""run_single / run_weights: fills, costs, honest data handling, records."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from mts1b_foundation import UniversePanel
from mts1b_GPUbacktester import BacktestConfigError, run_single, run_weights


@pytest.fixture(params=["numba", "numpy"], ids=["compiled", "reference"])
def backend(request: pytest.FixtureRequest) -> str:
    """Every test here runs on the compiled engine and on the reference engine."""
    return str(request.param)


def _with(panel: UniversePanel, **fields: np.ndarray) -> UniversePanel:
    base = {k: np.array(panel.field(k)) for k in ("open", "high", "low", "close", "volume")}
    mask = fields.pop("mask", None)
    base.update(fields)
    return UniversePanel(panel.dates, panel.symbols, mask=mask, **base)


def _equal(panel: UniversePanel) -> np.ndarray:
    return np.full(panel.shape, 1.0 / panel.shape[1])


def test_nav_identity_cash_plus_positions_and_costs(panel: UniversePanel, backend: str) -> None:
    res = run_weights(panel, _equal(panel), rebal="weekly", cost_bps=10, backend=backend)
    costs = res.cost_breakdown
    trades = res.trades
    assert costs["commission"] == pytest.approx(trades["commission"].sum())
    assert costs["traded_notional"] == pytest.approx(trades["notional"].sum())
    # final NAV = cash + holdings, with cash = initial - buys + sells - costs
    shares = trades.groupby("symbol")["shares"].sum()
    last = pd.Series(panel.close[-1], index=panel.symbols)
    cash = res.initial_nav - (trades["shares"] * trades["price"]).sum() - costs["total"]
    assert res.equity.iloc[-1] == pytest.approx(cash + (shares * last[shares.index]).sum())
    assert set(trades["reason"]) == {"rebalance"}


@pytest.mark.parametrize(("fill", "field", "lag"),
                         [("close", "close", 0), ("next_open", "open", 1),
                          ("next_close", "close", 1)])
def test_fill_modes_trade_at_the_documented_price(panel: UniversePanel, fill: str, field: str,
                                                  lag: int, backend: str) -> None:
    res = run_weights(panel, _equal(panel), rebal="monthly", fill=fill, cost_bps=0,
                      backend=backend)
    first = res.trades.iloc[0]
    row = int(np.searchsorted(panel.dates, np.datetime64(first["date"].date())))
    assert row == lag  # the first decision is row 0
    col = panel.column(first["symbol"])
    assert first["price"] == panel.field(field)[row, col]


def test_no_trade_on_nan_price_the_order_waits(panel: UniversePanel, backend: str) -> None:
    close = np.array(panel.close)
    close[1:4, 0] = np.nan  # a listed asset without a close for three days
    p = _with(panel, close=close, mask=np.ones(panel.shape, bool))
    res = run_weights(p, _equal(p), rebal=[p.dates[1]], fill="close", cost_bps=0,
                      backend=backend)
    s0 = res.trades[res.trades["symbol"] == p.symbols[0]]
    assert len(s0) == 1
    assert s0["date"].iloc[0] == pd.Timestamp(p.dates[4])
    assert s0["price"].iloc[0] == close[4, 0]
    assert s0["reason"].iloc[0] == "carry"


def test_asset_leaving_the_universe_is_exited(panel: UniversePanel, backend: str) -> None:
    mask = np.ones(panel.shape, bool)
    mask[100:, 2] = False
    p = _with(panel, mask=mask)
    # targets say "hold S02" throughout; membership overrides them
    res = run_weights(p, _equal(p), rebal=[p.dates[0]], fill="next_open", backend=backend)
    exits = res.trades[res.trades["reason"] == "universe_exit"]
    assert list(exits["symbol"]) == [p.symbols[2]]
    assert exits["date"].iloc[0] == pd.Timestamp(p.dates[101])
    assert res.weights.iloc[101:, 2].abs().max() == 0


def test_delisted_asset_is_closed_at_its_last_price(panel: UniversePanel, backend: str) -> None:
    close = np.array(panel.close)
    opens = np.array(panel.open)
    close[200:, 1] = np.nan
    opens[200:, 1] = np.nan
    p = _with(panel, close=close, open=opens)
    res = run_weights(p, _equal(p), rebal="monthly", backend=backend)
    gone = res.trades[res.trades["reason"] == "delisted"]
    assert len(gone) == 1
    assert gone["date"].iloc[0] == pd.Timestamp(p.dates[199])
    assert gone["price"].iloc[0] == close[199, 1]
    assert gone["side"].iloc[0] == "sell"
    assert res.weights.iloc[199:, 1].abs().max() == 0
    assert np.isfinite(res.equity).all()


def test_a_delisting_paid_out_costs_nothing(panel: UniversePanel, backend: str) -> None:
    """``delisting="payout"``: the delisted position leaves at its last close with no
    commission or slippage (a corporate action); everything before it is as with a sale, and
    after it the NAV is higher by exactly the sale's costs."""
    close = np.array(panel.close)
    opens = np.array(panel.open)
    close[200:, 1] = np.nan
    opens[200:, 1] = np.nan
    p = _with(panel, close=close, open=opens)
    sale = run_weights(p, _equal(p), rebal="monthly", cost_bps=10, slippage=5,
                       backend=backend)
    paid = run_weights(p, _equal(p), rebal="monthly", cost_bps=10, slippage=5,
                       delisting="payout", backend=backend)
    gone_sale = sale.trades[sale.trades["reason"] == "delisted"].iloc[0]
    gone_paid = paid.trades[paid.trades["reason"] == "delisted"].iloc[0]
    assert gone_paid["shares"] == gone_sale["shares"]
    assert gone_paid["price"] == close[199, 1]
    assert (gone_paid["commission"], gone_paid["slippage"]) == (0.0, 0.0)
    assert gone_sale["commission"] > 0 and gone_sale["slippage"] > 0
    np.testing.assert_array_equal(paid.equity.iloc[:199], sale.equity.iloc[:199])
    saved = gone_sale["commission"] + gone_sale["slippage"]
    assert paid.equity.iloc[199] - sale.equity.iloc[199] == pytest.approx(saved, rel=1e-12)
    assert paid.spec.delisting == "payout"
    with pytest.raises(BacktestConfigError, match="delisting") as err:
        run_weights(p, _equal(p), delisting="cash", backend=backend)
    assert err.value.context["field"] == "delisting"


def test_participation_cap_carries_the_remainder_over(panel: UniversePanel, backend: str) -> None:
    volume = np.full(panel.shape, 100.0)  # tiny volume: 10 shares a day at 10%
    p = _with(panel, volume=volume)
    res = run_weights(p, _equal(p), rebal=[p.dates[0]], participation=0.1, cost_bps=0,
                      backend=backend)
    s0 = res.trades[res.trades["symbol"] == p.symbols[0]]
    assert (s0["shares"].abs() <= 10.0 + 1e-9).all()
    assert len(s0) > 5
    assert s0["reason"].iloc[0] == "rebalance" and set(s0["reason"].iloc[1:]) == {"carry"}
    no_cap = run_weights(p, _equal(p), rebal=[p.dates[0]], cost_bps=0, backend=backend)
    total = no_cap.trades[no_cap.trades["symbol"] == p.symbols[0]]["shares"].sum()
    # the capped order completes over several days, to the same number of shares
    assert s0["shares"].sum() == pytest.approx(total, rel=1e-12)


def test_borrow_is_charged_on_shorts_only(panel: UniversePanel, backend: str) -> None:
    w = np.zeros(panel.shape)
    w[:, 0], w[:, 1] = 0.5, -0.5
    res = run_weights(panel, w, rebal="monthly", borrow_rate={"S01": 0.10}, cost_bps=0,
                      backend=backend)
    daily = res.costs["borrow"]
    short_value = -(res.weights["S01"] * res.equity).shift(0)
    assert daily.iloc[5] == pytest.approx(short_value.iloc[5] * 0.10 / 252, rel=1e-9)
    none = run_weights(panel, w, rebal="monthly", cost_bps=0, backend=backend)
    assert none.cost_breakdown["borrow"] == 0
    assert res.cost_breakdown["borrow"] > 0


def test_fixed_slippage_and_sqrt_impact_cost_money(panel: UniversePanel, backend: str) -> None:
    base = run_weights(panel, _equal(panel), cost_bps=0, backend=backend)
    fixed = run_weights(panel, _equal(panel), cost_bps=0, slippage=5, backend=backend)
    impact = run_weights(panel, _equal(panel), cost_bps=0, backend=backend,
                         slippage={"model": "sqrt", "k": 1.0, "window": 20})
    assert base.cost_breakdown["slippage"] == 0
    assert fixed.cost_breakdown["slippage"] == pytest.approx(
        fixed.cost_breakdown["traded_notional"] * 5e-4, rel=1e-9)
    assert impact.cost_breakdown["slippage"] > 0
    assert fixed.equity.iloc[-1] < base.equity.iloc[-1]
    with pytest.raises(BacktestConfigError):
        run_weights(panel, _equal(panel), slippage={"model": "linear"})


def test_rebalance_schedules(panel: UniversePanel, backend: str) -> None:
    n = {}
    for rebal in ("daily", "weekly", "monthly"):
        res = run_weights(panel, _equal(panel), rebal=rebal, backend=backend)
        n[rebal] = res.trades["date"].nunique()
    assert n["daily"] > n["weekly"] > n["monthly"] > 1
    with pytest.raises(BacktestConfigError):
        run_weights(panel, _equal(panel), rebal="hourly")


def test_result_surface(panel: UniversePanel, backend: str) -> None:
    res = run_single(weights=_equal(panel), universe=panel, start=panel.dates[20],
                     backend=backend, benchmark="S00")
    assert len(res.returns) == panel.shape[0] - 20
    assert res.weights.shape == (panel.shape[0] - 20, panel.shape[1])
    for name in ("sharpe", "cagr", "max_drawdown", "volatility", "turnover", "sortino",
                 "calmar", "omega", "beta", "tail_ratio"):
        assert np.isfinite(getattr(res, name)), name
    frame = res.to_frame()
    assert {"equity", "returns", "drawdown", "gross", "turnover", "commission",
            "benchmark_returns"} <= set(frame.columns)
    assert res.backend["backend"] == backend and "requested" in res.backend["reason"]
    assert res.metric("value_at_risk", cutoff=0.01) <= 0
    with pytest.raises(AttributeError):
        _ = res.no_such_metric


def test_config_errors(panel: UniversePanel) -> None:
    with pytest.raises(BacktestConfigError):
        run_weights(panel, _equal(panel), fill="tomorrow")
    with pytest.raises(BacktestConfigError):
        run_weights(panel, _equal(panel)[:-1])
    with pytest.raises(BacktestConfigError):
        run_single(weights=_equal(panel), universe=panel, participation=2.0)
    with pytest.raises(BacktestConfigError):
        run_single(universe=panel)
    with pytest.raises(BacktestConfigError):
        run_single(weights=_equal(panel), universe=42)


def _peeking(panel, /):  # type: ignore[no-untyped-def]
    """Tomorrow's return as today's score: the look-ahead bug the guard exists for."""
    close = np.asarray(panel.close)
    out = np.full(close.shape, np.nan)
    out[:-1] = close[1:] / close[:-1] - 1
    return out


def test_lookahead_guard_refuses_a_peeking_factor(panel: UniversePanel, backend: str) -> None:
    with pytest.raises(BacktestConfigError, match="look-ahead"):
        run_single(factor=_peeking, universe=panel, lookahead_check=True, backend=backend)
    # unguarded, the same factor "works" - and looks too good to be true
    cheat = run_single(factor=_peeking, universe=panel, fill="close", cost_bps=0,
                       backend=backend)
    honest = run_single(factor="f_sma_cross", params={"p_fast": 5, "p_slow": 20},
                        universe=panel, lookahead_check=True, backend=backend)
    assert cheat.sharpe > 5 > honest.sharpe


def test_seed_sizing_long_only_equal_weights(panel: UniversePanel, backend: str) -> None:
    res = run_single(factor="f_sma_cross", params={"p_fast": 5, "p_slow": 20}, universe=panel,
                     sizing={"method": "equal_weight_long", "gross": 1.0}, backend=backend)
    targets = res.target_weights_array
    longs = (targets > 0).sum(axis=1)
    rows = longs > 0
    np.testing.assert_allclose(targets.sum(axis=1)[rows], 1.0)
    np.testing.assert_allclose(targets.max(axis=1)[rows], 1.0 / longs[rows])
    assert (targets >= 0).all()
