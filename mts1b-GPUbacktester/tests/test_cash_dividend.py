"""Cash dividends credited to cash (the panel's ``cash_dividend`` field), issue #20.

Why: the paper path is paid a dividend in cash and holds it until its next rebalance; a
back-adjusted price reinvests it in the asset instead, so the backtest of a split-adjusted panel
needs the dividends as cash to reproduce a broker account.
"""

from __future__ import annotations

import numpy as np
import pytest
from mts1b_foundation import UniversePanel
from mts1b_GPUbacktester import run_weights
from mts1b_GPUbacktester.data import CASH_DIVIDEND


def _panel(dividend: np.ndarray | None) -> UniversePanel:
    dates = np.arange("2024-01-01", "2024-01-07", dtype="datetime64[D]")
    close = np.array([[10.0, 20.0], [11.0, 21.0], [10.0, 22.0], [12.0, 20.0], [12.5, 21.0],
                      [13.0, 22.0]])
    open_ = close * 0.99
    extra = {} if dividend is None else {CASH_DIVIDEND: dividend}
    return UniversePanel(dates, ("AAA", "BBB"), open=open_, high=close * 1.01,
                         low=close * 0.98, close=close, volume=np.full(close.shape, 1e6),
                         mask=np.ones(close.shape, dtype=bool), extra=extra)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_dividend_is_paid_in_cash_on_the_ex_date(backend: str) -> None:
    div = np.zeros((6, 2))
    div[3, 0] = 0.5                       # AAA pays 0.5 a share on row 3
    targets = np.zeros((6, 2))
    targets[0] = [0.6, 0.4]               # bought at the open of row 1, then held
    base = run_weights(_panel(None), targets, rebal=(np.datetime64("2024-01-01"),),
                       cost_bps=10.0, backend=backend)
    paid = run_weights(_panel(div), targets, rebal=(np.datetime64("2024-01-01"),),
                       cost_bps=10.0, backend=backend)
    bought = base.trades.shares[base.trades.symbol == "AAA"].iloc[0]
    assert np.array_equal(paid.trades.shares, base.trades.shares)   # no trade changes
    nav_paid, nav_base = paid.equity.to_numpy(), base.equity.to_numpy()
    assert np.array_equal(nav_paid[:3], nav_base[:3])
    # held as cash from the ex-date on, not reinvested
    assert nav_paid[3:] - nav_base[3:] == pytest.approx(np.full(3, 0.5 * bought), rel=1e-12)


def test_dividend_cash_is_reinvested_at_the_next_rebalance_same_in_both_engines() -> None:
    div = np.zeros((6, 2))
    div[2, 1] = 1.25
    targets = np.tile([0.5, 0.5], (6, 1))
    runs = [run_weights(_panel(div), targets, rebal="daily", cost_bps=5.0, backend=b)
            for b in ("numba", "numpy")]
    assert np.allclose(runs[0].equity.to_numpy(), runs[1].equity.to_numpy(), rtol=1e-13, atol=0)
    assert np.allclose(runs[0].trades.shares, runs[1].trades.shares, rtol=1e-12, atol=0)
    no_div = run_weights(_panel(None), targets, rebal="daily", cost_bps=5.0, backend="numpy")
    # the row-2 cash is invested at the row-2 open: more shares bought there than without it
    day = np.datetime64("2024-01-03")
    with_cash, without = (r.trades[r.trades.date == day].shares.to_numpy()
                          for r in (runs[1], no_div))
    assert (with_cash - without > 0).all()
