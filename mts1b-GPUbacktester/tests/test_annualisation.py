"""Calendars and annualisation by asset class, on the real yfinance files in
``../shared/data/crypto_fx_yf`` (issue #16): a crypto backtest runs on every day and annualises
with 365 periods, an FX one on weekdays with 260, in metrics, borrow accrual and the tearsheet;
each matches a computation by hand from the source file. Skipped, with the path, when the
files are absent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from mts1b_datalake import MixedAssetClassError, Store, YFinanceCsvProvider, build_panel
from mts1b_GPUbacktester import run_single

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "crypto_fx_yf"
FILES = {"BTC-USD": ("BTC-USD.csv", "crypto"), "EURUSD=X": ("EURUSD=X.csv", "fx")}

pytestmark = pytest.mark.skipif(
    not all((DATA / name).exists() for name, _ in FILES.values()),
    reason=f"the real crypto/FX files are not at {DATA}")

START, END = "2019-01-01", "2020-12-31"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """The two files ingested as a user does, each tagged with its asset class."""
    lake = Store(tmp_path_factory.mktemp("fx-crypto"))
    for name, asset_class in FILES.values():
        lake.ingest(YFinanceCsvProvider(DATA / name, asset_class=asset_class), qc=False)
    return lake


def _closes(symbol: str) -> pd.Series:
    """The file's closes by day, over the test window."""
    frame = pd.read_csv(DATA / FILES[symbol][0])
    closes = pd.Series(frame["Close"].to_numpy(),
                       index=pd.DatetimeIndex(frame["Date"].str[:10]))
    return closes.loc[START:END]


def _hold_weights(symbol: str, store: Store, weight: float = 1.0, **settings: object
                  ) -> Any:
    """A constant ``weight`` in one asset from the first row, filled at the close, no costs:
    the NAV's return each row after the first is ``weight`` times the asset's close-to-close
    return (for ``weight`` 1)."""
    panel = build_panel([symbol], START, END, store=store)
    return run_single(weights=np.full(panel.shape, weight), universe=panel, fill="close",
                      cost_bps=0, benchmark=False, **settings)  # type: ignore[arg-type]


@pytest.mark.parametrize(("symbol", "calendar", "periods"), [
    ("BTC-USD", "24/7", 365.0), ("EURUSD=X", "24/5", 260.0)])
def test_a_buy_and_hold_annualises_with_its_calendar(store: Store, symbol: str,
                                                     calendar: str, periods: float) -> None:
    res = _hold_weights(symbol, store)
    assert (res.calendar, res.periods_per_year) == (calendar, periods)
    source = _closes(symbol)
    if calendar == "24/5":
        source = source[source.index.day_of_week < 5]
    rows = res.equity.index
    assert len(rows) == (731 if calendar == "24/7" else 523)  # every day / every weekday
    # by hand: the day's return is the close-to-close return (a missing FX close carries the
    # last one: the position is valued at the last known price)
    closes = source.reindex(rows).ffill().to_numpy()
    by_hand = closes[1:] / closes[:-1] - 1.0
    got = res.returns.to_numpy()[1:]
    np.testing.assert_allclose(got, by_hand, rtol=0, atol=1e-12)
    r = res.returns.to_numpy()
    sharpe = r.mean() / r.std(ddof=1) * np.sqrt(periods)
    cagr = np.prod(1 + r) ** (periods / len(r)) - 1
    vol = r.std(ddof=1) * np.sqrt(periods)
    assert res.sharpe == pytest.approx(sharpe, rel=1e-12)
    assert res.cagr == pytest.approx(cagr, rel=1e-12)
    assert res.volatility == pytest.approx(vol, rel=1e-12)
    assert res.metric("sharpe") == pytest.approx(sharpe, rel=1e-12)
    # the 252-day annualisation of old would have understated both
    assert abs(res.sharpe) > abs(r.mean() / r.std(ddof=1) * np.sqrt(252))


@pytest.mark.parametrize(("symbol", "periods"), [("BTC-USD", 365), ("EURUSD=X", 260)])
def test_borrow_accrues_per_row_of_the_calendar(store: Store, symbol: str, periods: int
                                                ) -> None:
    """Short half the book at 10% a year: each row is charged rate / periods_per_year of the
    short market value at that row's mark."""
    res = _hold_weights(symbol, store, weight=-0.5, borrow_rate=0.10)
    borrow = res.costs["borrow"].to_numpy()
    short_value = -res.weights_array[:, 0] * res.equity.to_numpy()
    np.testing.assert_allclose(borrow, short_value * 0.10 / periods, rtol=1e-12, atol=1e-9)
    assert borrow.sum() > 0


def test_the_tearsheet_says_365_and_rolls_half_a_year(store: Store, tmp_path: Path) -> None:
    res = _hold_weights("BTC-USD", store)
    text = res.report(tmp_path / "btc.html").read_text(encoding="utf-8")
    assert "(24/7, 365 a year)" in text
    assert "periods per year</td><td>365 (the panel&#x27;s calendar (24/7))" in text
    assert "Rolling Sharpe (182 days)" in text
    assert f"{res.sharpe:.2f}" in text


def test_run_single_loads_crypto_on_its_calendar_and_mixed_classes_need_one(store: Store
                                                                            ) -> None:
    btc = run_single(factor="f_sma_cross", params={"p_fast": 10, "p_slow": 40},
                     universe=["BTC-USD"], start=START, end=END, store=store)
    assert (btc.calendar, btc.periods_per_year) == ("24/7", 365.0)
    assert len(btc.equity) == 731
    with pytest.raises(MixedAssetClassError, match=r"crypto \(BTC-USD\), fx \(EURUSD=X\)"):
        run_single(factor="f_sma_cross", universe=["BTC-USD", "EURUSD=X"], start=START,
                   end=END, store=store)
    both = run_single(factor="f_sma_cross", universe=["BTC-USD", "EURUSD=X"], start=START,
                      end=END, store=store, calendar="24/7")
    assert (both.calendar, both.periods_per_year, len(both.equity)) == ("24/7", 365.0, 731)
