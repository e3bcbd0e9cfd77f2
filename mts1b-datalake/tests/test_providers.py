"""Readers for every layout, with every rejected row reported by file, line and reason."""

from __future__ import annotations

import datetime as dt
import gzip
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mts1b_datalake import (
    LongCsvProvider,
    ParquetProvider,
    ProviderError,
    UnknownFieldError,
    WideCsvProvider,
    YahooCsvProvider,
    YFinanceCsvProvider,
    back_adjust,
    open_source,
)
from mts1b_datalake.providers import available_providers, detect_format, get_provider
from mts1b_foundation import Bar, MarketDataProtocol

BAD_CSV = """date,open,high,low,close,volume,Name
2020-01-02,10,11,9,10.5,100,AAA

2020-01-03,10,11,9,10.5,100,AAA,extra
2020-13-45,10,11,9,10.5,100,AAA
2020-01-06,ten,11,9,10.5,100,AAA
2020-01-07,10,11,9,,100,AAA
2020-01-08,10,11,9,10.7,100,
2020-01-09,,11,9,10.8,100,AAA
2020-01-10,10,11,9,10.9,100,BBB
"""


def test_every_rejected_row_has_file_line_and_reason(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(BAD_CSV)
    data = LongCsvProvider(path).read()
    got = {(r.line, r.reason) for r in data.rejected}
    assert got == {
        (3, "empty line"),
        (4, "expected 7 fields, found 8"),
        (5, "date '2020-13-45' does not parse"),
        (6, "open 'ten' is not a number"),
        (7, "close is missing"),
        (8, "symbol is missing"),
    }
    assert all(r.file == str(path) for r in data.rejected)
    # the kept rows know where they came from; a NaN open is kept (QC judges it)
    assert data.bars["line"].tolist() == [2, 9, 10]
    assert np.isnan(data.bars.loc[data.bars["line"] == 9, "open"]).all()


@pytest.mark.slow
def test_long_csv_reads_the_real_sp500_file(data_file: Callable[[str], Path]) -> None:
    data = LongCsvProvider(data_file("sp500_5yr_cnuge/all_stocks_5yr.csv.gz")).read()
    assert len(data.bars) == 619_040
    assert data.bars["symbol"].nunique() == 505
    assert data.bars["date"].nunique() == 1259
    assert not data.rejected  # NaN opens are data, not unreadable rows


def test_yahoo_csv_symbol_from_file_name_and_dividends_from_adj_close(
        data_file: Callable[[str], Path]) -> None:
    path = data_file("backtrader/nvda-1999-2014.txt")
    provider = YahooCsvProvider(path)
    data = provider.read()
    assert data.bars["symbol"].unique().tolist() == ["NVDA"]
    assert len(data.bars) == 4012
    divs = data.events[data.events["kind"] == "dividend"]
    assert len(divs) == 9  # quarterly dividends since late 2012
    assert divs["value"].between(0.07, 0.09).all()
    # the recovered dividends reproduce Yahoo's Adj Close (up to its 6-decimal rounding)
    raw = pd.read_csv(path, parse_dates=["Date"])
    adjusted = back_adjust(data.bars, data.events)
    ratio = adjusted["close"].to_numpy() / raw["Adj Close"].to_numpy()
    assert np.nanmax(np.abs(ratio / ratio[-1] - 1)) < 2e-4


def test_yfinance_dump_reads_timezone_aware_local_days(data_file: Callable[[str], Path]) -> None:
    data = YFinanceCsvProvider(data_file("crypto_fx_yf/EURUSD=X.csv"),
                               asset_class="fx").read()
    assert data.bars["symbol"].unique().tolist() == ["EURUSD=X"]
    assert len(data.bars) == 5456
    assert data.bars["date"].min() == pd.Timestamp("2003-12-01")
    assert data.events.empty  # Dividends / Stock Splits are all zero for FX
    assert data.symbols["asset_class"].tolist() == ["fx"]


def test_yfinance_dividend_and_split_columns_become_events(tmp_path: Path) -> None:
    path = tmp_path / "ACME.csv"
    path.write_text(
        "Date,Open,High,Low,Close,Volume,Dividends,Stock Splits\n"
        "2020-01-02 00:00:00-05:00,10,11,9,10,100,0.0,0.0\n"
        "2020-01-03 00:00:00-05:00,10,11,9,10,100,0.25,0.0\n"
        "2020-01-06 00:00:00-05:00,5,6,4,5,200,0.0,2.0\n")
    data = open_source(path).read()
    assert detect_format(path) == "yfinance-csv"
    ev = data.events.sort_values("date").reset_index(drop=True)
    assert ev[["kind", "value"]].values.tolist() == [["dividend", 0.25], ["split", 2.0]]
    assert ev["symbol"].unique().tolist() == ["ACME"]


def test_quandl_columns_in_a_long_csv_become_events(data_file: Callable[[str], Path]) -> None:
    data = LongCsvProvider(data_file("plotly/dash-stock-ticker-demo.csv")).read()
    counts = data.events.groupby("symbol").size().to_dict()
    assert counts == {"AAPL": 11, "COKE": 12}  # SplitRatio is always 1: no split events


def test_us_dates_and_holiday_nan_rows(tmp_path: Path, data_file: Callable[[str], Path]) -> None:
    data = open_source(data_file("benchmark/SPY_MAX.csv"), symbol="SPY").read()
    assert data.bars["symbol"].unique().tolist() == ["SPY"]
    assert data.bars["date"].min() == pd.Timestamp("1993-01-29")
    # the three all-NaN rows on market holidays are rejected with their lines
    assert [(r.line, r.reason) for r in data.rejected] == [
        (6782, "close is missing"), (6795, "close is missing"), (6815, "close is missing")]


def test_wide_csv_reports_bad_cells(tmp_path: Path) -> None:
    path = tmp_path / "wide.csv"
    path.write_text("Date,AAA,BBB\n2020-01-02,1.5,2.5\n2020-01-03,1.6,oops\nbad-date,1,2\n"
                    "2020-01-06,,2.7\n")
    data = WideCsvProvider(path).read()
    assert sorted(data.bars["symbol"].unique()) == ["AAA", "BBB"]
    assert len(data.bars) == 4
    assert {(r.line, r.reason, r.symbol) for r in data.rejected} == {
        (4, "date 'bad-date' does not parse", None),
        (3, "close 'oops' is not a number", "BBB")}
    assert detect_format(path) == "wide-csv"
    with pytest.raises(UnknownFieldError, match="field"):
        WideCsvProvider(path, field="vwap")


def test_parquet_round_trip_and_column_mapping(tmp_path: Path) -> None:
    frame = pd.DataFrame({"Ticker": ["X", "X", "Y"],
                          "Day": pd.to_datetime(["2021-03-01", "2021-03-02", "2021-03-01"]),
                          "Close": [1.0, 2.0, np.nan], "Volume": [10, 20, 30]})
    path = tmp_path / "x.parquet"
    frame.to_parquet(path)
    data = ParquetProvider(path, columns={"Day": "date"}).read()
    assert data.bars[["symbol", "close"]].values.tolist() == [["X", 1.0], ["X", 2.0]]
    assert [(r.line, r.reason) for r in data.rejected] == [(2, "close is missing")]
    assert detect_format(path) == "parquet"


def test_gzip_and_missing_columns(tmp_path: Path) -> None:
    path = tmp_path / "x.csv.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("when,price\n2020-01-02,1\n")
    with pytest.raises(ProviderError, match="no column for") as info:
        LongCsvProvider(path).read()
    assert info.value.context["field"] == "columns"
    data = LongCsvProvider(path, columns={"when": "date", "price": "close"},
                           symbol="ZZ").read()
    assert data.bars["symbol"].tolist() == ["ZZ"]
    with pytest.raises(ProviderError, match="file not found"):
        LongCsvProvider(tmp_path / "missing.csv")
    with pytest.raises(UnknownFieldError):
        LongCsvProvider(path, columns={"when": "when"})


def test_providers_satisfy_market_data_protocol(data_file: Callable[[str], Path]) -> None:
    provider = LongCsvProvider(data_file("plotly/dash-stock-ticker-demo.csv"))
    assert isinstance(provider, MarketDataProtocol)
    assert provider.symbols() == ["AAPL", "COKE", "GOOGL", "TSLA", "YHOO"]
    bars = list(provider.bars(["AAPL"], dt.date(2017, 12, 1), dt.date(2017, 12, 31)))
    assert len(bars) == 20 and all(isinstance(b, Bar) for b in bars)
    assert bars[0].ts == dt.datetime(2017, 12, 1, 21, 0, tzinfo=dt.UTC)  # 16:00 New York
    assert str(bars[-1].close) == "169.23"
    assert provider.latest_quote("AAPL") is None


def test_plugins_come_from_the_entry_point_group(monkeypatch: pytest.MonkeyPatch) -> None:
    import mts1b_datalake.providers as providers

    class FakeEntryPoint:
        name = "my-vendor"

        def load(self) -> type:
            return LongCsvProvider

    class Broken:
        name = "broken"

        def load(self) -> type:
            raise ImportError("no such module")

    def fake_entry_points(group: str) -> list[object]:
        assert group == "mts1b.market_data"
        return [FakeEntryPoint(), Broken()]

    monkeypatch.setattr(providers, "entry_points", fake_entry_points)
    found = available_providers()
    assert found["my-vendor"] is LongCsvProvider and "broken" not in found
    assert get_provider("my-vendor") is LongCsvProvider
    with pytest.raises(ProviderError, match="unknown provider 'nope'"):
        get_provider("nope")


def test_installed_entry_points_load() -> None:
    found = available_providers()
    for name in ("long-csv", "yahoo-csv", "yfinance-csv", "wide-csv", "parquet", "synthetic",
                 "store"):
        assert name in found, name
