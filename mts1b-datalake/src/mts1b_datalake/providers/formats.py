"""The file layouts MTS1B reads out of the box.

=====================  ======================================================================
reader                 layout
=====================  ======================================================================
LongCsvProvider        one row per (date, symbol): ``date,open,high,low,close,volume,Name``
                       (the Kaggle/IEX S&P 500 file); optional dividend/split columns
                       (Quandl WIKI's ``ExDividend``/``SplitRatio``) become events
YahooCsvProvider       one file per symbol: ``Date,Open,High,Low,Close,Adj Close,Volume``;
                       the symbol comes from the file name (``nvda-1999-2014.txt`` -> NVDA);
                       dividends are recovered from the steps of ``Adj Close / Close``
YFinanceCsvProvider    one file per symbol from ``yfinance.Ticker.history()``:
                       ``Date,Open,High,Low,Close,Volume,Dividends,Stock Splits``; tz-aware
                       timestamps are read as the local day
WideCsvProvider        one row per date, one column per symbol, one field (close by default)
ParquetProvider        long-format Parquet with the same column names as the long CSV
=====================  ======================================================================
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as _pq

from mts1b_datalake.errors import ProviderError, UnknownFieldError, UnreadableFileError
from mts1b_datalake.frames import Rejected, empty_events
from mts1b_datalake.providers.base import (
    FileProvider,
    parse_dates,
    parse_numbers,
    plain,
    read_csv_table,
)
from mts1b_datalake.rows import MAX_VALUE, OUT_OF_DOMAIN, cut, shown, symbol_problem

pq: Any = _pq  # pyarrow.parquet is untyped

__all__ = [
    "LongCsvProvider",
    "ParquetProvider",
    "WideCsvProvider",
    "YFinanceCsvProvider",
    "YahooCsvProvider",
    "dividends_from_adjusted",
]


class LongCsvProvider(FileProvider):
    """Long CSV: one row per symbol and date, a symbol column (``Name``/``symbol``/``Stock``)."""

    name: ClassVar[str] = "long-csv"
    layout: ClassVar[str] = "long"


def dividends_from_adjusted(frame: pd.DataFrame, *, min_step: float = 5e-5) -> pd.DataFrame:
    """Dividend events implied by the steps of ``adj_close / close`` (Yahoo's back-adjustment).

    With back-adjustment ``adj_t = close_t * F_t`` and, for a cash dividend ``D`` going ex on day
    ``t``, ``F_{t-1} = F_t * (1 - D / close_{t-1})``. So
    ``D = (1 - ratio_{t-1} / ratio_t) * close_{t-1}`` wherever the ratio steps up by more than the
    rounding noise ``min_step``. ``frame`` needs symbol, date, close and adj_close, sorted.
    """
    if "adj_close" not in frame.columns or frame.empty:
        return empty_events()
    ratio = (frame["adj_close"] / frame["close"]).to_numpy(dtype=np.float64)
    same = (frame["symbol"].to_numpy() == np.roll(frame["symbol"].to_numpy(), 1))
    same[0] = False
    prev_ratio = np.roll(ratio, 1)
    prev_close = np.roll(frame["close"].to_numpy(dtype=np.float64), 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        step = 1.0 - prev_ratio / ratio
    hit = same & np.isfinite(step) & (step > min_step) & (step < 0.9)
    return pd.DataFrame({
        "symbol": frame["symbol"].to_numpy()[hit],
        "date": frame["date"].to_numpy()[hit],
        "kind": "dividend",
        "value": np.round(step[hit] * prev_close[hit], 6),
    })


class YahooCsvProvider(FileProvider):
    """Yahoo-style per-symbol CSV with ``Adj Close``; dividends recovered from it.

    ``derive_dividends=False`` skips the recovery (for files whose ``Adj Close`` is not a
    dividend back-adjustment).
    """

    name: ClassVar[str] = "yahoo-csv"
    layout: ClassVar[str] = "per-symbol"
    requires_symbol_column: ClassVar[bool] = False

    def __init__(self, paths: str | Path | Sequence[str | Path], *,
                 derive_dividends: bool = True, **kwargs: Any) -> None:
        super().__init__(paths, **kwargs)
        self.derive_dividends = derive_dividends

    def _events_for(self, frame: pd.DataFrame) -> pd.DataFrame:
        explicit = super()._events_for(frame)
        if not self.derive_dividends or "adj_close" not in frame.columns:
            return explicit
        derived = dividends_from_adjusted(frame)
        return pd.concat([explicit, derived], ignore_index=True) if len(explicit) else derived


class YFinanceCsvProvider(FileProvider):
    """``yfinance`` history dumps: ``Dividends`` and ``Stock Splits`` columns become events."""

    name: ClassVar[str] = "yfinance-csv"
    layout: ClassVar[str] = "per-symbol"
    requires_symbol_column: ClassVar[bool] = False


class WideCsvProvider(FileProvider):
    """Wide CSV: a date column and one column per symbol holding one ``field``.

    Each missing or non-numeric cell is reported as a rejected row (line and symbol).
    """

    name: ClassVar[str] = "wide-csv"
    layout: ClassVar[str] = "wide"

    def __init__(self, paths: str | Path | Sequence[str | Path], *, field: str = "close",
                 date_column: str | None = None, **kwargs: Any) -> None:
        super().__init__(paths, **kwargs)
        if field not in ("open", "high", "low", "close", "volume"):
            raise UnknownFieldError(f"wide CSV field must be an OHLCV field, not {field!r}",
                                    field="field", value=field)
        self.field = field
        self.date_column = date_column

    def _date_column(self, names: Sequence[str]) -> str:
        return self.date_column or next(
            (n for n in names if n.strip().lower() in ("date", "datetime", "timestamp")),
            names[0])

    def _check_header(self, names: list[str], path: str) -> None:
        """Refuse, before the body is read, a header in which no column names a symbol: such
        a file yields no bar, and is most likely not a wide CSV at all (text junk is sniffed as
        one, having no known column)."""
        date_col = self._date_column(names)
        if not any(symbol_problem(n.strip()) is None for n in names if n != date_col):
            listed = ", ".join(shown(n) for n in names[:12]) + (
                f", ... ({len(names)} columns)" if len(names) > 12 else "")
            raise ProviderError(f"{path}: no column names a symbol (columns are [{listed}]); "
                                "not a wide CSV", field="columns", value=cut(",".join(names)))

    def _table(self, path: str) -> tuple[pd.DataFrame, list[Rejected]]:
        table, lines, rejected = read_csv_table(
            path, storage_options=self.storage_options,
            check_header=lambda names: self._check_header(names, path))
        names = table.schema.names
        date_col = self._date_column(names)
        if date_col not in names:
            raise ProviderError(f"{path}: no date column {date_col!r}", field="date_column",
                                value=date_col)
        dates = parse_dates(table.column(date_col).to_pandas(), self.date_format)
        bad_date = dates.isna().to_numpy()
        raw_dates = table.column(date_col).to_pandas()
        for i in np.flatnonzero(bad_date):
            rejected.append(Rejected(path, int(lines[i]), f"date {shown(raw_dates.iloc[i])} "
                                                          "does not parse", field="date",
                                     value=cut(raw_dates.iloc[i])))
        parts: list[pd.DataFrame] = []
        for name in names:
            if name == date_col:
                continue
            symbol = name.strip()
            values, bad = parse_numbers(table.column(name))
            raw = table.column(name).to_pandas()
            why = symbol_problem(symbol)
            if why is not None:  # a column whose name is no symbol: each of its cells is refused
                for i in np.flatnonzero(~bad_date & raw.notna().to_numpy()):
                    rejected.append(Rejected(
                        path, int(lines[i]), f"symbol {shown(symbol)} (column name) is not a "
                        f"valid symbol: {why}", None, field="symbol", value=cut(symbol)))
                continue
            with np.errstate(invalid="ignore"):
                infinite = np.isinf(values)
                huge = ~infinite & (np.abs(values) >= MAX_VALUE)
                negative = (values < 0) if self.field == "volume" else np.zeros_like(bad)
            for i in np.flatnonzero((bad | infinite | huge | negative) & ~bad_date):
                what = ("is not a number" if bad[i] else "is not a finite number"
                        if infinite[i] else OUT_OF_DOMAIN if huge[i] else "is negative")
                rejected.append(Rejected(path, int(lines[i]),
                                         f"{self.field} {shown(raw.iloc[i])} {what}", symbol,
                                         field=self.field, value=cut(raw.iloc[i])))
            keep = ~bad_date & ~np.isnan(values) & ~infinite & ~huge & ~negative
            parts.append(pd.DataFrame({"symbol": symbol, "date": dates.to_numpy()[keep],
                                       self.field: values[keep], "line": lines[keep]}))
        frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
            {"symbol": [], "date": [], self.field: [], "line": []})
        if self.field != "close":
            frame["close"] = np.nan
        frame["file"] = path
        return frame, rejected


class ParquetProvider(FileProvider):
    """Long-format Parquet (local or fsspec URL); ``line`` in rejections is the 0-based row."""

    name: ClassVar[str] = "parquet"
    layout: ClassVar[str] = "long"

    def _table(self, path: str) -> tuple[pd.DataFrame, list[Rejected]]:
        import fsspec

        try:
            with fsspec.open(path, "rb", **self.storage_options) as fh:
                table = pq.read_table(fh)
        except FileNotFoundError as exc:
            raise ProviderError(f"file not found: {path}", field="path", value=path) from exc
        except (pa.ArrowInvalid, OSError) as exc:  # junk, or a CSV named .parquet
            raise UnreadableFileError(f"{path} cannot be read as Parquet: {plain(exc)}",
                                      field="path", value=path, reason="parquet") from None
        mapping = self._mapping(table.schema.names, path)
        columns: dict[str, Any] = {}
        for src, dst in mapping.items():
            col = table.column(src)
            if dst == "date" and (pa.types.is_timestamp(col.type) or pa.types.is_date(col.type)):
                columns[dst] = pd.Series(col.to_pandas()).astype("string")
            elif pa.types.is_string(col.type) or pa.types.is_large_string(col.type) or \
                    dst in ("date", "symbol"):
                columns[dst] = col.to_pandas().astype("string") if dst in ("date", "symbol") \
                    else col
            else:
                columns[dst] = pa.chunked_array(col.cast(pa.float64()).chunks, pa.float64())
        lines = np.arange(table.num_rows, dtype=np.int64)
        rejected: list[Rejected] = []
        frame = self._columns_to_frame(columns, lines, path, rejected)
        return frame, rejected


def provider_kwargs(options: Mapping[str, Any]) -> dict[str, Any]:
    """Drop None values (CLI options that were not given)."""
    return {k: v for k, v in options.items() if v is not None}
