"""Shared fixtures: real market data from the shared data folder, and small synthetic panels.

Real data lives in ``../shared/data`` next to the repository (override with the
``MTS1B_SHARED_DATA`` environment variable). Tests that need it are skipped, with the path in the
reason, when it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from mts1b_foundation import UniversePanel

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("MTS1B_SHARED_DATA", ROOT.parent / "shared" / "data"))

pd = pytest.importorskip("pandas")


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real market data not found at {path} (set MTS1B_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def spy_returns() -> pd.Series:
    """Daily total-return proxy of SPY (Adj Close), 1993-2020, holidays' NaN rows dropped."""
    df = pd.read_csv(_need(DATA / "benchmark" / "SPY_MAX.csv"))
    df["Date"] = pd.to_datetime(df["Date"], format="%m/%d/%Y")
    close = df.dropna(subset=["Adj Close"]).set_index("Date")["Adj Close"]
    return close.pct_change().dropna().rename("SPY")


@pytest.fixture(scope="session")
def gspc_returns(spy_returns: pd.Series) -> pd.Series:
    """S&P 500 price-index daily returns on SPY's dates (a benchmark for alpha/beta)."""
    df = pd.read_csv(_need(DATA / "benchmark" / "GSPC.csv"), parse_dates=["Date"])
    ret = df.set_index("Date")["Close"].pct_change()
    return ret.reindex(spy_returns.index).rename("GSPC")


@pytest.fixture(scope="session")
def sp500_close() -> pd.DataFrame:
    """Close prices of the 505 S&P 500 stocks, 2013-2018, dates x tickers (NaN where absent)."""
    df = pd.read_csv(_need(DATA / "sp500_5yr_cnuge" / "all_stocks_5yr.csv.gz"),
                     parse_dates=["date"], usecols=["date", "close", "Name"])
    return df.pivot(index="date", columns="Name", values="close").sort_index()


@pytest.fixture(scope="session")
def sp500_returns(sp500_close: pd.DataFrame) -> pd.DataFrame:
    return sp500_close.pct_change(fill_method=None).iloc[1:]


def make_panel(t_len: int = 260, a_len: int = 8, *, seed: int = 0,
               holes: bool = True) -> UniversePanel:
    """Random-walk panel on business days; a few NaN holes when ``holes``."""
    rng = np.random.default_rng(seed)
    close = 50.0 * np.exp(np.cumsum(rng.normal(0.0003, 0.02, (t_len, a_len)), axis=0))
    if holes:
        close[10:14, min(1, a_len - 1)] = np.nan
        close[:30, min(2, a_len - 1)] = np.nan  # a late listing
    high = close * 1.01
    low = close * 0.99
    dates = np.busday_offset(np.datetime64("2021-01-04"), np.arange(t_len), roll="forward")
    return UniversePanel(dates, [f"S{i}" for i in range(a_len)], open=close, high=high, low=low,
                         close=close, volume=np.ones_like(close))


@pytest.fixture
def panel() -> UniversePanel:
    return make_panel()


@pytest.fixture
def panel_factory():  # type: ignore[no-untyped-def]
    """``make_panel`` itself, for tests that need other shapes or seeds."""
    return make_panel
