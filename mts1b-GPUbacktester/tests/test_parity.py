"""Fill conventions against the reference engines, run in the same process on the same data.

* ``fill="close"`` is vectorbt's ``Portfolio.from_signals`` (signal and fill on the same close,
  all-in with ``size=inf``, fees on the traded value).
* ``fill="next_open"`` is backtrader's market order: decided in ``next()`` at the close of
  ``t``, filled at the open of ``t + 1`` (sized to the whole account at that open).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from mts1b_foundation import UniversePanel
from mts1b_GPUbacktester import run_weights, sma_cross_ladder
from mts1b_GPUbacktester.kernels import rolling_mean_stack

FEE = 0.001


PAIRS = [(5, 20), (10, 40), (3, 7), (20, 60)]


@pytest.fixture(scope="module")
def vbt_reference(panel_factory_module):  # type: ignore[no-untyped-def]
    """One ``from_signals`` call over every (pair, asset) column (vectorbt compiles its
    kernels once), on a panel with a price gap."""
    vbt = pytest.importorskip("vectorbt")
    panel = panel_factory_module(500, 6, seed=5)
    close = np.array(panel.close)
    close[100:104, 3] = np.nan  # vectorbt ignores orders at NaN prices, so do we
    ma = rolling_mean_stack(close, sorted({w for p in PAIRS for w in p}))
    where = {w: k for k, w in enumerate(sorted({w for p in PAIRS for w in p}))}
    signal = np.concatenate([ma[where[f]] > ma[where[s]] for f, s in PAIRS], axis=1)
    frame = pd.DataFrame(np.tile(close, (1, len(PAIRS))))
    pf = vbt.Portfolio.from_signals(frame, entries=signal, exits=~signal, fees=FEE,
                                    init_cash=100_000.0)
    n_orders = np.bincount(pf.orders.values["col"], minlength=frame.shape[1])
    return close, signal, pf.total_return().to_numpy(), n_orders


def test_close_fill_equals_vectorbt_from_signals(vbt_reference) -> None:  # type: ignore[no-untyped-def]
    close, signal, want, n_orders = vbt_reference
    a_len = close.shape[1]
    for col in range(0, signal.shape[1], 5):  # a spread of (pair, asset) columns
        a = col % a_len
        price = close[:, a:a + 1]
        panel = UniversePanel(np.arange(np.datetime64("2020-01-01"), np.datetime64(
            "2020-01-01") + len(price)), ["X"], open=price, high=price, low=price,
            close=price, volume=np.ones_like(price), mask=np.ones(price.shape, bool))
        for backend in ("numba", "numpy"):  # the compiled engine and the reference
            res = run_weights(panel, signal[:, col:col + 1].astype(float), fill="close",
                              cost_bps=FEE * 1e4, backend=backend, benchmark=False)
            assert res.total_return == pytest.approx(want[col], abs=1e-9)
            assert len(res.trades) == n_orders[col]  # the same trades


def test_sma_ladder_equals_vectorbt_from_signals(vbt_reference) -> None:  # type: ignore[no-untyped-def]
    close, _, want, n_orders = vbt_reference
    total, trades = sma_cross_ladder(close, PAIRS, cost_bps=10, backend="numpy")
    np.testing.assert_allclose(total.ravel(), want, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(trades.ravel(), n_orders)


def test_next_open_fill_equals_backtrader_market_orders(panel_factory) -> None:  # type: ignore[no-untyped-def]
    bt = pytest.importorskip("backtrader")
    panel = panel_factory(300, 1, seed=2)
    close, opens = np.array(panel.close)[:, 0], np.array(panel.open)[:, 0]
    ma = rolling_mean_stack(np.array(panel.close), [5, 15])
    signal = (ma[0] > ma[1])[:, 0]
    t_len = len(close)
    frame = pd.DataFrame({"open": opens, "high": panel.high[:, 0], "low": panel.low[:, 0],
                          "close": close, "volume": panel.volume[:, 0]},
                         index=pd.DatetimeIndex(panel.dates.astype("datetime64[ns]")))

    class AllInAtNextOpen(bt.Strategy):  # type: ignore[misc]
        def next(self) -> None:
            t = len(self) - 1
            if t + 1 >= t_len:
                return
            held = self.getposition().size
            if signal[t] and held == 0:
                # an all-in market order, sized at the price it will fill at (the next open);
                # 1e-12 below the cash so that rounding never trips backtrader's margin check
                size = self.broker.getvalue() / (self.data.open[1] * (1 + FEE))
                self.buy(size=size * (1 - 1e-12))
            elif not signal[t] and held > 0:
                self.close()

    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(bt.feeds.PandasData(dataname=frame))
    cerebro.addstrategy(AllInAtNextOpen)
    cerebro.broker.setcash(100_000.0)
    cerebro.broker.setcommission(commission=FEE)
    cerebro.broker.set_checksubmit(False)  # the size is checked against cash when it fills
    cerebro.run()
    for backend in ("numba", "numpy"):  # the compiled engine and the reference
        res = run_weights(panel, signal[:, None].astype(float), fill="next_open",
                          cost_bps=FEE * 1e4, initial_nav=100_000.0, backend=backend,
                          benchmark=False)
        assert res.equity.iloc[-1] == pytest.approx(cerebro.broker.getvalue(), rel=1e-10)
        fills = res.trades
        rows = np.searchsorted(panel.dates, fills["date"].to_numpy().astype("datetime64[D]"))
        assert (fills["price"].to_numpy() == opens[rows]).all()
