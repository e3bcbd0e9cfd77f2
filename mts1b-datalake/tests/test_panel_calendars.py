"""build_panel's calendar by asset class (issue #16): crypto panels have a row for every day,
FX panels one for every weekday, equities their exchange's sessions, each with the periods per
year that annualise it; instruments of classes on different calendars are a clear error.

The crypto and FX files are the real yfinance dumps in ``../shared/data/crypto_fx_yf``
(skipped, with the path, when absent)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mts1b_datalake import (
    MixedAssetClassError,
    StaticUniverse,
    Store,
    UnknownSymbolError,
    YFinanceCsvProvider,
    build_panel,
    panel_info,
)
from mts1b_datalake.calendar import (
    ASSET_CLASS_CALENDARS,
    calendar_for_asset_classes,
    periods_per_year,
    trading_days,
)

DataFile = Callable[[str], Path]


@pytest.fixture(scope="module")
def fx_crypto_store(tmp_path_factory: pytest.TempPathFactory, data_file: DataFile) -> Store:
    """BTC-USD tagged crypto and EURUSD=X tagged fx, as a user ingests them (no QC: the
    store's checks are tested elsewhere)."""
    store = Store(tmp_path_factory.mktemp("fx-crypto"))
    store.ingest(YFinanceCsvProvider(data_file("crypto_fx_yf/BTC-USD.csv"),
                                     asset_class="crypto"), qc=False)
    store.ingest(YFinanceCsvProvider(data_file("crypto_fx_yf/EURUSD=X.csv"),
                                     asset_class="fx"), qc=False)
    return store


def _source_closes(data_file: DataFile, name: str) -> pd.Series:
    frame = pd.read_csv(data_file(f"crypto_fx_yf/{name}"))
    days = pd.to_datetime(frame["Date"].str[:10])
    return pd.Series(frame["Close"].to_numpy(), index=days)


def test_periods_per_year_by_calendar() -> None:
    assert [periods_per_year(c) for c in ("24/7", "24h", "24/5", "24x5", "XNYS", "XLON")] == [
        365, 365, 260, 260, 252, 252]
    assert calendar_for_asset_classes(["equity", "etf", "index", None]) == "XNYS"
    assert calendar_for_asset_classes(["crypto"]) == "24/7"
    assert calendar_for_asset_classes(["fx", "fx"]) == "24/5"
    assert calendar_for_asset_classes([]) == ASSET_CLASS_CALENDARS["equity"]


def test_crypto_panel_has_every_day_and_365_periods(fx_crypto_store: Store,
                                                   data_file: DataFile) -> None:
    panel = build_panel(["BTC-USD"], "2019-01-01", "2019-12-31", store=fx_crypto_store,
                        adjust="none")
    assert (panel.calendar, panel.periods_per_year) == ("24/7", 365.0)
    assert panel.shape == (365, 1)  # weekends included: bitcoin trades every day
    source = _source_closes(data_file, "BTC-USD.csv").loc["2019-01-01":"2019-12-31"]
    assert np.array_equal(panel.close[:, 0], source.to_numpy())
    assert panel.dates.astype(str).tolist() == source.index.strftime("%Y-%m-%d").tolist()


def test_fx_panel_has_every_weekday_and_260_periods(fx_crypto_store: Store,
                                                   data_file: DataFile) -> None:
    panel = build_panel(["EURUSD=X"], "2019-01-01", "2019-12-31", store=fx_crypto_store,
                        adjust="none")
    assert (panel.calendar, panel.periods_per_year) == ("24/5", 260.0)
    assert panel.shape[0] == int(np.busday_count("2019-01-01", "2020-01-01")) == 261
    days = panel.dates.astype("datetime64[D]")
    assert np.is_busday(days).all()
    # every weekday the file has is a row with its close (the rest: NaN, no bar)
    source = _source_closes(data_file, "EURUSD=X.csv").loc["2019-01-01":"2019-12-31"]
    have = pd.Series(panel.close[:, 0], index=pd.DatetimeIndex(days)).dropna()
    assert have.equals(source[source.index.day_of_week < 5].rename(None))


def test_mixed_asset_classes_without_a_calendar_name_the_classes(fx_crypto_store: Store
                                                                 ) -> None:
    with pytest.raises(MixedAssetClassError) as info:
        build_panel(["BTC-USD", "EURUSD=X"], "2019-01-01", "2019-03-31", store=fx_crypto_store)
    message = str(info.value)
    assert "crypto (BTC-USD)" in message and "fx (EURUSD=X)" in message
    assert "24/7" in message and "24/5" in message and "calendar=" in message
    assert info.value.context["field"] == "calendar"
    assert info.value.context["value"] == ["crypto", "fx"]
    # an explicit calendar decides the rows: every day, FX without a bar on weekends
    both = build_panel(["BTC-USD", "EURUSD=X"], "2019-01-01", "2019-03-31",
                       store=fx_crypto_store, calendar="24/7")
    assert (both.calendar, both.periods_per_year, both.shape) == ("24/7", 365.0, (90, 2))
    weekend = ~np.is_busday(both.dates.astype("datetime64[D]"))
    assert np.isnan(both.close[weekend, both.column("EURUSD=X")]).all()


def test_equity_default_is_the_exchange_and_unchanged(demo_store: Store) -> None:
    """Equities (and ETFs) keep XNYS sessions and 252 periods: the default panel is the one an
    explicit calendar='XNYS' gives, array for array."""
    default = build_panel("us-large-cap", "2015-01-01", "2015-06-30", store=demo_store)
    explicit = build_panel("us-large-cap", "2015-01-01", "2015-06-30", store=demo_store,
                           calendar="XNYS")
    assert (default.calendar, default.periods_per_year) == ("XNYS", 252.0)
    assert np.array_equal(default.dates, explicit.dates)
    assert default.symbols == explicit.symbols
    for name in ("open", "close", "volume", "mask"):
        assert np.array_equal(getattr(default, name), getattr(explicit, name), equal_nan=True)
    spy = build_panel(["SPY"], "2015-01-01", "2015-03-31", store=demo_store)
    assert spy.calendar == "XNYS"
    assert spy.shape[0] == len(trading_days("XNYS", "2015-01-01", "2015-03-31"))
    info = panel_info(["SPY"], "2015-01-01", "2015-03-31", store=demo_store)
    assert (info["calendar"], info["periods_per_year"]) == ("XNYS", 252.0)


class _Unstated(StaticUniverse):
    """A custom universe that does not state its asset classes."""

    def asset_classes(self, store: Store) -> dict[str, list[str]] | None:
        return None


def test_a_universe_without_stated_classes_is_judged_by_its_members(fx_crypto_store: Store
                                                                     ) -> None:
    panel = build_panel(_Unstated(["BTC-USD"]), "2019-01-01", "2019-01-31",
                        store=fx_crypto_store)
    assert (panel.calendar, panel.shape) == ("24/7", (31, 1))
    with pytest.raises(MixedAssetClassError, match="crypto"):
        build_panel(_Unstated(["BTC-USD", "EURUSD=X"]), "2019-01-01", "2019-01-31",
                    store=fx_crypto_store)


def test_a_class_without_a_default_calendar_asks_for_one(tmp_path: Path,
                                                         data_file: DataFile) -> None:
    store = Store(tmp_path / "lake")
    store.ingest(YFinanceCsvProvider(data_file("crypto_fx_yf/ETH-USD.csv"),
                                     asset_class="future"), qc=False)
    with pytest.raises(MixedAssetClassError, match="no default calendar") as info:
        build_panel(["ETH-USD"], "2019-01-01", "2019-01-31", store=store)
    assert info.value.context["value"] == ["future"]
    assert build_panel(["ETH-USD"], "2019-01-01", "2019-01-31", store=store,
                       calendar="24/7").shape == (31, 1)
    with pytest.raises(UnknownSymbolError):  # an unknown symbol is still named first
        build_panel(["ETH-USD", "NOPE"], "2019-01-01", "2019-01-31", store=store)
