"""The synthetic market: deterministic, realistic enough to exercise every code path."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import numpy as np
import pytest
from mts1b_datalake import InvalidRangeError, Store, UnknownFieldError, build_panel
from mts1b_datalake.synthetic import (
    SECTORS,
    SyntheticMarket,
    SyntheticProvider,
    generate_market,
    install_demo_market,
)
from mts1b_foundation import MarketDataProtocol


def test_same_seed_same_market_other_seed_other_market() -> None:
    a = generate_market(seed=11, n_assets=20, start="2019-01-01", end="2020-12-31")
    b = generate_market(seed=11, n_assets=20, start="2019-01-01", end="2020-12-31")
    c = generate_market(seed=12, n_assets=20, start="2019-01-01", end="2020-12-31")
    assert a.bars.equals(b.bars) and a.events.equals(b.events)
    assert not a.bars["close"].equals(c.bars["close"])


def test_market_has_listings_delistings_splits_dividends(market: SyntheticMarket) -> None:
    kinds = market.events["kind"].value_counts().to_dict()
    assert kinds["listing"] == 301  # 300 names + SPY
    assert 20 <= kinds["delisting"] <= 80
    assert kinds["split"] >= 10 and kinds["dividend"] >= 2000
    first = market.bars.groupby("symbol")["date"].min()
    assert (first > market.bars["date"].min()).sum() >= 40  # IPOs after the start
    assert set(market.symbols["sector"].dropna()) <= set(SECTORS)
    assert market.symbols.set_index("symbol").loc["SPY", "asset_class"] == "etf"
    ohlc = market.bars
    assert (ohlc["low"] <= ohlc[["open", "close"]].min(axis=1)).all()
    assert (ohlc["high"] >= ohlc[["open", "close"]].max(axis=1)).all()
    assert (ohlc["low"] > 0).all() and (ohlc["volume"] > 0).all()


def test_volatility_and_factor_structure(demo_store: Store) -> None:
    panel = build_panel("us-large-cap", "2014-01-01", "2023-12-31", store=demo_store,
                        fields=("close", "returns"))
    vol = np.nanstd(panel.returns, axis=0) * np.sqrt(252)
    assert 0.18 < np.nanmedian(vol) < 0.45
    assert np.nanpercentile(vol, 5) > 0.1 and np.nanpercentile(vol, 95) < 0.9
    r = np.nan_to_num(panel.returns[1:, :40])
    corr = np.corrcoef(r.T)
    mean_corr = (corr.sum() - 40) / (40 * 39)
    assert 0.1 < mean_corr < 0.5  # a market factor, not independent noise


def test_install_is_idempotent_and_fast(tmp_path: Path) -> None:
    t0 = time.perf_counter()
    store = install_demo_market(tmp_path / "lake", n_assets=300)
    first = time.perf_counter() - t0
    version = store.version
    t0 = time.perf_counter()
    again = install_demo_market(tmp_path / "lake", n_assets=300)
    assert time.perf_counter() - t0 < 0.2
    assert again.version == version
    assert store.meta["demo_market"].startswith("seed=7;n_assets=300")
    assert first < 30  # a few seconds on a quiet 2-core machine; generous under load


def test_provider_protocol_and_errors() -> None:
    provider = SyntheticProvider(seed=1, n_assets=5, start="2020-01-01", end="2020-03-31")
    assert isinstance(provider, MarketDataProtocol)
    syms = provider.symbols()
    assert len(syms) == 6 and "SPY" in syms
    bars = list(provider.bars(["SPY"], dt.date(2020, 1, 1), dt.date(2020, 1, 31)))
    assert len(bars) == 21
    with pytest.raises(InvalidRangeError):
        generate_market(start="2020-01-01", end="2019-01-01")
    with pytest.raises(UnknownFieldError):
        generate_market(n_assets=0)
    with pytest.raises(UnknownFieldError, match="not file paths"):
        SyntheticProvider(["some.csv"])  # type: ignore[arg-type]
