"""Signal-hold trading: ``trade_on="schedule" | "signal_change"`` and ``band``, on both engines.

The rules are checked against small independent oracles written here (a few lines of plain
Python per rule, no costs), and the whole thing against backtrader itself: an SMA(20, 50)
crossover held until the signal changes, on three of backtrader's own sample files, must end
with the same value and the same number of trades (``test_sma_crossover_equals_backtrader``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from mts1b_foundation import UniversePanel
from mts1b_GPUbacktester import BacktestConfigError, run_single, run_weights
from mts1b_GPUbacktester.kernels import rolling_mean_stack

ENGINES = ["numba", "numpy"]  # the compiled engine and the reference
BT_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "backtrader"
BT_FILES = {"ORCL": "orcl-1995-2014.txt", "NVDA": "nvda-1999-2014.txt",
            "YHOO": "yhoo-1996-2014.txt"}
FEE = 0.001


def _panel(close: np.ndarray, opens: np.ndarray | None = None) -> UniversePanel:
    close = np.asarray(close, dtype=float)
    if close.ndim == 1:
        close = close[:, None]
    opens = close if opens is None else np.asarray(opens, dtype=float).reshape(close.shape)
    dates = np.busday_offset(np.datetime64("2020-01-01"), np.arange(close.shape[0]),
                             roll="forward")
    return UniversePanel(dates, [f"S{i}" for i in range(close.shape[1])], open=opens,
                         high=np.maximum(opens, close), low=np.minimum(opens, close),
                         close=close, volume=np.full(close.shape, 1e9))


# --------------------------------------------------------------------------------------------
# arguments
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "field"), [
    ({"trade_on": "hold"}, "trade_on"), ({"trade_on": None}, "trade_on"),
    ({"band": -0.01}, "band"), ({"band": float("nan")}, "band"), ({"band": "2%"}, "band"),
    ({"band": True}, "band"), ({"band": float("inf")}, "band")])
def test_bad_trade_rules_name_the_argument_and_value(kwargs: dict[str, Any],
                                                     field: str) -> None:
    panel = _panel(np.linspace(10, 11, 30))
    w = np.ones(panel.shape)
    for call in (lambda: run_weights(panel, w, **kwargs),
                 # refused before any data is loaded: the universe name does not exist
                 lambda: run_single(weights=w, universe="no-such-universe", start="2020-01-01",
                                    **kwargs)):
        with pytest.raises(BacktestConfigError) as err:
            call()
        assert err.value.context["field"] == field
        assert field in str(err.value) and repr(next(iter(kwargs.values())))[:4] in str(
            err.value)


def test_the_default_rule_is_the_schedule_and_is_recorded() -> None:
    panel = _panel(50 * np.exp(np.cumsum(np.random.default_rng(1).normal(0, 0.02, (80, 3)),
                                         axis=0)))
    w = np.full(panel.shape, 1 / 3)
    plain = run_weights(panel, w, backend="numba", benchmark=False)
    same = run_weights(panel, w, backend="numba", benchmark=False, trade_on="schedule",
                       band=0.0)
    assert plain.equity.to_numpy().tobytes() == same.equity.to_numpy().tobytes()
    assert len(plain.trades) == len(same.trades)
    assert plain.config["trade_on"] == "schedule" and plain.config["band"] == 0.0
    held = run_single(weights=w, universe=panel, backend="numba", benchmark=False,
                      trade_on="signal_change", band=0.05)
    assert held.config["trade_on"] == "signal_change" and held.config["band"] == 0.05


# --------------------------------------------------------------------------------------------
# the rules against plain-Python oracles (no costs, close fills)
# --------------------------------------------------------------------------------------------

def _oracle(close: np.ndarray, targets: np.ndarray, *, trade_on: str, band: float
            ) -> tuple[float, list[tuple[int, int]]]:
    """A cost-free book filled at the close: ``(final NAV, [(row, asset) of each fill])``.
    ``close`` and ``targets`` ``(T, A)``; every row is a rebalance row."""
    t_len, a_len = close.shape
    shares, cash = np.zeros(a_len), 1.0
    last = np.zeros(a_len)
    fills = []
    for t in range(t_len):
        held = shares * close[t]
        nav = cash + held.sum()
        for a in range(a_len):
            if trade_on == "signal_change":
                pick = targets[t, a] != last[a] or (
                    band > 0 and abs(held[a] - targets[t, a] * nav) > band * abs(nav))
            else:
                pick = band == 0 or abs(held[a] - targets[t, a] * nav) > band * abs(nav)
            if pick:
                last[a] = targets[t, a]
                new = targets[t, a] * nav / close[t, a]
                if abs(new - shares[a]) * close[t, a] > 1e-10 * abs(nav):
                    cash -= (new - shares[a]) * close[t, a]
                    shares[a] = new
                    fills.append((t, a))
    return cash + (shares * close[-1]).sum(), fills


def _walk(t_len: int, a_len: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 30 * np.exp(np.cumsum(rng.normal(0.0005, 0.02, (t_len, a_len)), axis=0))


def _fills(res: Any, panel: UniversePanel) -> list[tuple[int, int]]:
    rows = np.searchsorted(panel.dates, res.trades["date"].to_numpy().astype("datetime64[D]"))
    cols = [panel.column(s) for s in res.trades["symbol"]]
    return list(zip(rows.tolist(), cols, strict=True))


@pytest.mark.parametrize("backend", ENGINES)
@pytest.mark.parametrize(("trade_on", "band"), [("signal_change", 0.0), ("schedule", 0.04),
                                                ("signal_change", 0.04), ("schedule", 0.0)])
def test_rules_match_a_plain_python_book(backend: str, trade_on: str, band: float) -> None:
    close = _walk(300, 4, seed=7)
    rng = np.random.default_rng(8)
    targets = np.zeros(close.shape)
    for lo in range(0, 300, 37):  # targets that change now and then, some assets flat
        targets[lo:] = rng.choice([0.0, 0.15, 0.25, 0.4], size=4)
    panel = _panel(close)
    res = run_weights(panel, targets, fill="close", cost_bps=0, initial_nav=1.0,
                      backend=backend, benchmark=False, trade_on=trade_on, band=band)
    nav, fills = _oracle(close, targets, trade_on=trade_on, band=band)
    assert res.equity.iloc[-1] == pytest.approx(nav, rel=1e-12)
    assert _fills(res, panel) == fills


@pytest.mark.parametrize("backend", ENGINES)
def test_signal_change_lets_unchanged_assets_drift(backend: str) -> None:
    """Asset 0's target flips every 20 days, asset 1's never changes: with signal_change asset 1
    is bought once and then left alone, on a daily rebalance schedule; with the schedule it is
    traded back to its weight every day."""
    close = _walk(200, 2, seed=3)
    targets = np.zeros(close.shape)
    targets[:, 0] = np.where((np.arange(200) // 20) % 2 == 0, 0.5, 0.0)
    targets[:, 1] = 0.5
    panel = _panel(close)
    held = run_weights(panel, targets, backend=backend, benchmark=False,
                       trade_on="signal_change")
    daily = run_weights(panel, targets, backend=backend, benchmark=False)
    by_asset = held.trades.groupby("symbol").size()
    assert by_asset["S1"] == 1
    assert by_asset["S0"] == 10                     # 5 entries and 5 exits
    assert (daily.trades["symbol"] == "S1").sum() > 150
    assert held.weights_array[:, 1].std() > 0.01   # it drifted


@pytest.mark.parametrize("backend", ENGINES)
def test_a_band_wider_than_a_target_never_opens_it_on_the_schedule(backend: str) -> None:
    """The band is an absolute drift from the target: from cash, a 3% target is 3% away, so a
    5% band never opens it; signal_change does (its target changed from 0)."""
    panel = _panel(_walk(60, 2, seed=5))
    targets = np.tile([0.03, 0.6], (60, 1))
    sched = run_weights(panel, targets, backend=backend, benchmark=False, band=0.05)
    assert set(sched.trades["symbol"]) == {"S1"}
    held = run_weights(panel, targets, backend=backend, benchmark=False, band=0.05,
                       trade_on="signal_change")
    assert set(held.trades["symbol"]) == {"S0", "S1"}


# --------------------------------------------------------------------------------------------
# backtrader: an SMA(20, 50) crossover held until the signal changes
# --------------------------------------------------------------------------------------------

def _backtrader_sma_hold(frame: pd.DataFrame, gross: float) -> tuple[float, int, np.ndarray]:
    """backtrader 1.9 on ``frame``: long ``gross`` of the equity while SMA(20) > SMA(50) of the
    close (bar ``t`` included, from the first bar where both exist), flat otherwise; decided
    at the close, a market order filled at the next open and sized at that open, fractional
    sizes, 0.1% commission, ``checksubmit=False``. Returns ``(final value, fills, the
    decision of each bar)``."""
    bt = pytest.importorskip("backtrader")
    t_len = len(frame)
    decisions = np.zeros(t_len, dtype=bool)

    class SmaHold(bt.Strategy):  # type: ignore[misc]
        def __init__(self) -> None:
            self.fast = bt.indicators.SMA(self.data.close, period=20)
            self.slow = bt.indicators.SMA(self.data.close, period=50)
            self.fills = 0

        def notify_order(self, order: Any) -> None:
            if order.status == order.Completed:
                self.fills += 1

        def next(self) -> None:
            t = len(self) - 1
            long = self.fast[0] > self.slow[0]
            decisions[t] = long
            if t + 1 >= t_len:  # no next open to fill at
                return
            held = self.getposition().size
            if long and held == 0:
                # gross of the equity after the trade's commission, at the price it fills at:
                # w V / open with V = cash - fee w V (the engine's rule; vectorbt's size=inf
                # at gross 1); 1e-12 below so rounding never trips the broker's cash check
                size = gross * self.broker.getvalue() / (self.data.open[1] * (1 + FEE * gross))
                self.buy(size=size * (1 - 1e-12))
            elif not long and held > 0:
                self.close()

    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(bt.feeds.PandasData(dataname=frame))
    cerebro.addstrategy(SmaHold)
    cerebro.broker.setcash(100_000.0)
    cerebro.broker.setcommission(commission=FEE)
    cerebro.broker.set_checksubmit(False)
    strategy = cerebro.run()[0]
    return float(cerebro.broker.getvalue()), int(strategy.fills), decisions


@pytest.mark.skipif(not BT_DATA.is_dir(), reason=f"backtrader's sample data is not at {BT_DATA}")
@pytest.mark.parametrize("symbol", sorted(BT_FILES))
def test_sma_crossover_equals_backtrader(symbol: str) -> None:
    raw = pd.read_csv(BT_DATA / BT_FILES[symbol], parse_dates=["Date"])
    frame = pd.DataFrame({c.lower(): raw[c].to_numpy(float)
                          for c in ("Open", "High", "Low", "Close", "Volume")},
                         index=pd.DatetimeIndex(raw["Date"]))  # raw prices, not Adj Close
    close = frame["close"].to_numpy()
    panel = UniversePanel(raw["Date"].to_numpy().astype("datetime64[D]"), [symbol],
                          open=frame["open"].to_numpy()[:, None],
                          high=frame["high"].to_numpy()[:, None],
                          low=frame["low"].to_numpy()[:, None], close=close[:, None],
                          volume=frame["volume"].to_numpy()[:, None])
    sma = rolling_mean_stack(close[:, None], [20, 50])  # bar t included, full windows
    long = (sma[0] > sma[1])[:, 0]
    for gross in (1.0, 0.5):
        value, fills, decisions = _backtrader_sma_hold(frame, gross)
        # the same signal, bar by bar (backtrader's SMA is math.fsum / n, ours a running sum)
        np.testing.assert_array_equal(long, decisions)
        for backend in ENGINES:
            res = run_weights(panel, np.where(long, gross, 0.0)[:, None], fill="next_open",
                              cost_bps=FEE * 1e4, initial_nav=100_000.0, backend=backend,
                              benchmark=False, trade_on="signal_change")
            assert res.equity.iloc[-1] == pytest.approx(value, rel=1e-9, abs=0), (gross,
                                                                                 backend)
            assert len(res.trades) == fills, (gross, backend)
        # the schedule trades the held position back to its weight every day instead
        if gross == 0.5:
            daily = run_weights(panel, np.where(long, gross, 0.0)[:, None], cost_bps=10,
                                backend="numba", benchmark=False)
            assert len(daily.trades) > 10 * fills
