"""Reading market-data files into the canonical tables, row by row accountable.

Every reader turns its source into a :class:`~mts1b_datalake.frames.SourceData`: bars, events,
symbol metadata and a :class:`~mts1b_datalake.frames.Rejected` entry (file, line, reason) for
each row it could not use. A row is *rejected* when it is structurally unusable: an empty line, a
line with the wrong number of fields, a date that does not parse, a missing symbol, a number that
is not a number, or a missing close. Rows that parse but look wrong (open above high, NaN open,
zero volume, a spike) are kept: judging them is the quality checks' job
(:mod:`mts1b_datalake.qc`), with a policy per check.

Column mapping: columns are matched case-insensitively against known aliases (``Name``,
``Ticker`` and ``Stock`` all mean ``symbol``; ``Adj Close``/``AdjClose`` mean ``adj_close``;
``Dividends``/``ExDividend`` mean ``dividend``; ``Stock Splits``/``SplitRatio`` mean
``split``). ``columns={"source name": "canonical name"}`` overrides the guess.

Date formats: ISO dates and timestamps (the first 10 characters are used, so a tz-aware
``2014-09-17 00:00:00+01:00`` is the local day 2014-09-17), ``M/D/YYYY`` and ``YYYYMMDD`` are
recognised; ``date_format="%d.%m.%Y"`` (strptime syntax) sets one explicitly.
"""

from __future__ import annotations

import datetime as dt
import glob
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as _pacsv
from mts1b_foundation import Bar, Quote
from mts1b_platform.logging import get_logger

from mts1b_datalake.bars import row_to_bar
from mts1b_datalake.errors import ProviderError, UnknownFieldError
from mts1b_datalake.frames import (
    Rejected,
    SourceData,
    empty_events,
)

__all__ = [
    "CANONICAL_COLUMNS",
    "FileProvider",
    "expand_paths",
    "parse_dates",
    "parse_numbers",
    "read_csv_table",
]

_log = get_logger(__name__)
pacsv: Any = _pacsv  # pyarrow's csv module is only partly typed

CANONICAL_COLUMNS: tuple[str, ...] = (
    "date", "symbol", "open", "high", "low", "close", "volume", "adj_close", "dividend", "split",
)

_ALIASES: dict[str, str] = {
    "date": "date", "datetime": "date", "timestamp": "date", "day": "date", "time": "date",
    "symbol": "symbol", "name": "symbol", "ticker": "symbol", "stock": "symbol",
    "asset": "symbol", "code": "symbol",
    "open": "open", "high": "high", "low": "low", "close": "close", "volume": "volume",
    "adjclose": "adj_close", "adjustedclose": "adj_close",
    "dividends": "dividend", "dividend": "dividend", "exdividend": "dividend",
    "stocksplits": "split", "splitratio": "split", "split": "split", "splits": "split",
}
_NULLS = ["", "NA", "N/A", "NaN", "nan", "NAN", "null", "NULL", "None", "none", "-", "#N/A"]
_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}")
_US = re.compile(r"^\d{1,2}/\d{1,2}/\d{4}$")
_COMPACT = re.compile(r"^\d{8}$")


def _key(name: str) -> str:
    return re.sub(r"[\s_\-]", "", name).lower()


def expand_paths(paths: str | Path | Sequence[str | Path]) -> list[str]:
    """Expand globs (local paths) and keep URLs as given; ProviderError if nothing matches."""
    items = [paths] if isinstance(paths, str | Path) else list(paths)
    out: list[str] = []
    for item in items:
        text = str(item)
        if "://" in text:
            out.append(text)
            continue
        matches = sorted(glob.glob(text)) if any(ch in text for ch in "*?[") else [text]
        if not matches:
            raise ProviderError(f"no file matches {text!r}", field="path", value=text)
        for m in matches:
            if not Path(m).exists():
                raise ProviderError(f"file not found: {m}", field="path", value=m)
            out.append(m)
    return out


def read_csv_table(path: str, *, storage_options: Mapping[str, Any] | None = None) -> (
    tuple[pa.Table, np.ndarray, list[Rejected]]
):
    """Read a CSV (plain or compressed, local or fsspec URL) with every column as string.

    Returns the table, the 1-based source line of each row (header = line 1) and a Rejected
    entry for each line with the wrong number of fields.
    """
    invalid: list[Rejected] = []

    def handler(row: Any) -> str:
        line = int(row.number) if row.number is not None else -1
        invalid.append(Rejected(path, line, f"expected {row.expected_columns} fields, found "
                                              f"{row.actual_columns}"))
        return "skip"

    opts = dict(storage_options or {})
    try:
        with fsspec.open(path, "rb", compression="infer", **opts) as fh:
            first = fh.readline().decode("utf-8-sig").rstrip("\r\n")
        names = next(iter(pd.read_csv(pd.io.common.StringIO(first + "\n"), header=None,
                                      dtype=str, keep_default_na=False).itertuples(index=False)))
        names = [str(n) for n in names]
        fixed: list[str] = []
        for i, n in enumerate(names):
            n = n.strip()
            fixed.append(n if n and n not in fixed else f"_col{i}")
        with fsspec.open(path, "rb", compression="infer", **opts) as fh:
            table = pacsv.read_csv(
                fh,
                read_options=pacsv.ReadOptions(use_threads=False, column_names=fixed,
                                               skip_rows=1, encoding="utf8"),
                parse_options=pacsv.ParseOptions(invalid_row_handler=handler,
                                                 ignore_empty_lines=False),
                convert_options=pacsv.ConvertOptions(
                    column_types={n: pa.string() for n in fixed},
                    strings_can_be_null=True, null_values=_NULLS,
                ),
            )
    except FileNotFoundError as exc:
        raise ProviderError(f"file not found: {path}", field="path", value=path) from exc
    except (pa.ArrowInvalid, UnicodeDecodeError, StopIteration) as exc:
        raise ProviderError(f"cannot read {path} as CSV: {exc}", field="path",
                            value=path) from exc
    lines = np.arange(table.num_rows, dtype=np.int64) + 2
    for bad in sorted(r.line for r in invalid if r.line > 0):
        lines[lines >= bad] += 1
    return table, lines, invalid


def parse_dates(values: pd.Series, date_format: str | None = None) -> pd.Series:
    """Parse date strings to midnight ``datetime64``; unparseable values become NaT."""
    text = values.astype("string")
    if date_format:
        return pd.to_datetime(text, format=date_format, errors="coerce").dt.normalize()
    sample = text.dropna()
    if sample.empty:
        return pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns]")
    first = str(sample.iloc[0]).strip()
    if _ISO.match(first):
        return pd.to_datetime(text.str.strip().str[:10], format="%Y-%m-%d", errors="coerce")
    if _US.match(first):
        return pd.to_datetime(text.str.strip(), format="%m/%d/%Y", errors="coerce")
    if _COMPACT.match(first):
        return pd.to_datetime(text.str.strip(), format="%Y%m%d", errors="coerce")
    parsed = pd.to_datetime(text, format="mixed", errors="coerce")
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_localize(None)
    return parsed.dt.normalize()


def parse_numbers(column: pa.ChunkedArray | pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """float64 values and a boolean array of "present but not a number" positions."""
    if isinstance(column, pa.ChunkedArray):
        try:
            values = column.cast(pa.float64()).to_numpy(zero_copy_only=False)
            return np.asarray(values, dtype=np.float64), np.zeros(len(values), dtype=bool)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            series = column.to_pandas()
    else:
        series = column
    cleaned = series.astype("string").str.strip().str.replace(",", "", regex=False)
    values = pd.to_numeric(cleaned, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = series.notna().to_numpy() & np.isnan(values)
    return values, bad


class FileProvider:
    """Base of the file readers; implements :class:`mts1b_foundation.MarketDataProtocol`.

    Subclasses set ``layout`` and may override :meth:`_events_for`. ``read()`` parses once and
    caches; ``bars()``/``symbols()`` serve the protocol from that cache.
    """

    layout: ClassVar[str] = "long"
    name: ClassVar[str] = "file"
    requires_symbol_column: ClassVar[bool] = True

    def __init__(
        self,
        paths: str | Path | Sequence[str | Path],
        *,
        columns: Mapping[str, str] | None = None,
        date_format: str | None = None,
        symbol: str | None = None,
        asset_class: str = "equity",
        source: str | None = None,
        calendar: str = "XNYS",
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.paths = expand_paths(paths)
        self.columns = dict(columns or {})
        for target in self.columns.values():
            if target not in CANONICAL_COLUMNS:
                raise UnknownFieldError(
                    f"column mapping target {target!r} is not one of {list(CANONICAL_COLUMNS)}",
                    field="columns", value=target)
        self.date_format = date_format
        self.symbol = symbol
        self.asset_class = asset_class
        self.source = source or self.name
        self.calendar = calendar
        self.storage_options = dict(storage_options or {})
        self.skipped_bars = 0
        self._data: SourceData | None = None

    def __repr__(self) -> str:
        shown = self.paths if len(self.paths) <= 3 else [*self.paths[:3], "..."]
        return f"{type(self).__name__}({shown})"

    # -- reading -----------------------------------------------------------------------------
    def read(self) -> SourceData:
        """Parse every file (once); the result is cached."""
        if self._data is None:
            parts = [self._read_one(p) for p in self.paths]
            self._data = SourceData.concat(parts)
            _log.debug("read source", provider=self.name, files=len(self.paths),
                      rows=len(self._data.bars), rejected=len(self._data.rejected))
        return self._data

    def _table(self, path: str) -> tuple[pd.DataFrame, list[Rejected]]:
        """The file's rows that survived parsing (with ``line``/``file``) and the rejected."""
        table, lines, rejected = read_csv_table(path, storage_options=self.storage_options)
        mapping = self._mapping(table.schema.names, path)
        columns = {dst: table.column(src) for src, dst in mapping.items()}
        frame = self._columns_to_frame(columns, lines, path, rejected)
        return frame, rejected

    def _mapping(self, names: Sequence[str], path: str) -> dict[str, str]:
        mapping: dict[str, str] = {}
        taken: set[str] = set()
        for name in names:
            if name in self.columns:
                mapping[name] = self.columns[name]
                taken.add(self.columns[name])
        for name in names:
            if name in mapping:
                continue
            canon = _ALIASES.get(_key(name))
            if canon and canon not in taken:
                mapping[name] = canon
                taken.add(canon)
        if "date" not in taken and names and names[0].startswith("_col"):
            mapping[names[0]] = "date"  # an unnamed index column holding the dates
            taken.add("date")
        needed = ["date", "close"] + (["symbol"] if self._needs_symbol() else [])
        missing = [c for c in needed if c not in taken]
        if missing:
            raise ProviderError(
                f"{path}: no column for {missing} (columns are {list(names)}); pass "
                f"columns={{'<source column>': '<canonical name>'}}",
                field="columns", value=missing, path=path)
        return mapping

    def _needs_symbol(self) -> bool:
        return self.requires_symbol_column and self.symbol is None

    def _symbol_for(self, path: str) -> str:
        if self.symbol:
            return self.symbol
        stem = Path(path.split("://")[-1]).name
        for suffix in (".gz", ".bz2", ".zip", ".xz", ".csv", ".txt", ".parquet"):
            if stem.lower().endswith(suffix):
                stem = stem[: -len(suffix)]
        return stem.split("-")[0].upper() if re.match(r"^[a-z]+-\d{4}", stem) else stem.upper()

    def _columns_to_frame(self, cols: Mapping[str, Any], lines: np.ndarray, path: str,
                          rejected: list[Rejected]) -> pd.DataFrame:
        """Parse mapped string columns; append a Rejected per unusable row to ``rejected``."""
        n = len(lines)
        reasons = np.full(n, None, dtype=object)

        def reject(mask: np.ndarray, reason: str | np.ndarray) -> None:
            fresh = mask & (reasons == None)  # noqa: E711 - elementwise on an object array
            if isinstance(reason, np.ndarray):
                reasons[fresh] = reason[fresh]
            else:
                reasons[fresh] = reason

        raw_cols = {k: (v.to_pandas() if isinstance(v, pa.ChunkedArray) else v)
                    for k, v in cols.items()}
        all_null = np.ones(n, dtype=bool)
        for series in raw_cols.values():
            all_null &= series.isna().to_numpy()
        reject(all_null, "empty line")

        date_raw = raw_cols["date"]
        dates = parse_dates(date_raw, self.date_format)
        bad_date = dates.isna().to_numpy()
        reject(bad_date & date_raw.isna().to_numpy(), "date is missing")
        shown = date_raw.astype("string").fillna("").to_numpy(dtype=object)
        reject(bad_date, np.array([f"date {v!r} does not parse" for v in shown], dtype=object)
               if bad_date.any() else "date does not parse")

        if "symbol" in raw_cols and not self.symbol:
            symbols = raw_cols["symbol"].astype("string").str.strip()
            reject(symbols.isna().to_numpy() | (symbols == "").fillna(True).to_numpy(),
                   "symbol is missing")
            symbol_values = symbols.fillna("").to_numpy(dtype=object)
        else:
            symbol_values = np.full(n, self._symbol_for(path), dtype=object)

        numbers: dict[str, np.ndarray] = {}
        for field in ("open", "high", "low", "close", "volume", "adj_close", "dividend", "split"):
            if field not in cols:
                continue
            values, bad = parse_numbers(cols[field])
            if bad.any():
                text = raw_cols[field].astype("string").fillna("").to_numpy(dtype=object)
                msg = np.array([f"{field} {t!r} is not a number" for t in text], dtype=object)
                reject(bad, msg)
            numbers[field] = values
        reject(np.isnan(numbers["close"]), "close is missing")

        keep = reasons == None  # noqa: E711
        for i in np.flatnonzero(~keep):
            sym = symbol_values[i] or None
            rejected.append(Rejected(path, int(lines[i]), str(reasons[i]), sym))
        frame = pd.DataFrame({
            "symbol": symbol_values[keep],
            "date": dates.to_numpy()[keep],
            **{k: v[keep] for k, v in numbers.items()},
            "line": lines[keep],
        })
        frame["file"] = path
        return frame

    def _read_one(self, path: str) -> SourceData:
        frame, rejected = self._table(path)
        frame = frame.sort_values(["symbol", "date"], kind="stable").reset_index(drop=True)
        events = self._events_for(frame)
        symbols = pd.DataFrame({"symbol": sorted(frame["symbol"].unique()),
                                "asset_class": self.asset_class, "sector": None, "name": None,
                                "source": self.source})
        bars = frame[[c for c in ("symbol", "date", "open", "high", "low", "close", "volume",
                                  "line", "file") if c in frame.columns]]
        return SourceData(bars, events=events, symbols=symbols, rejected=rejected, files=[path])

    def _events_for(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Dividend and split events from ``dividend``/``split`` columns, when present."""
        parts: list[pd.DataFrame] = []
        if "dividend" in frame.columns:
            div = frame[frame["dividend"].fillna(0.0) > 0]
            parts.append(pd.DataFrame({"symbol": div["symbol"], "date": div["date"],
                                       "kind": "dividend", "value": div["dividend"]}))
        if "split" in frame.columns:
            ratio = frame["split"].fillna(0.0)
            spl = frame[(ratio > 0) & ((ratio - 1.0).abs() > 1e-12)]
            parts.append(pd.DataFrame({"symbol": spl["symbol"], "date": spl["date"],
                                       "kind": "split", "value": spl["split"]}))
        if not parts:
            return empty_events()
        return pd.concat(parts, ignore_index=True)

    # -- MarketDataProtocol ------------------------------------------------------------------
    def symbols(self) -> Sequence[str]:
        return sorted(self.read().bars["symbol"].unique().tolist())

    def frame(self, symbols: Sequence[str] | None = None, start: dt.date | None = None,
              end: dt.date | None = None) -> pd.DataFrame:
        """Bars as a DataFrame (the fast path), optionally filtered."""
        bars = self.read().bars
        keep = np.ones(len(bars), dtype=bool)
        if symbols is not None:
            keep &= bars["symbol"].isin(list(symbols)).to_numpy()
        if start is not None:
            keep &= (bars["date"] >= pd.Timestamp(start)).to_numpy()
        if end is not None:
            keep &= (bars["date"] <= pd.Timestamp(end)).to_numpy()
        return bars[keep].reset_index(drop=True)

    def bars(self, symbols: Sequence[str], start: dt.date, end: dt.date) -> Iterator[Bar]:
        """Wire bars in (date, symbol) order; rows that cannot be a valid Bar are skipped."""
        frame = self.frame(symbols, start, end).sort_values(["date", "symbol"], kind="stable")
        for row in frame.itertuples(index=False):
            bar = row_to_bar(row.symbol, row.date.date(), row.open, row.high, row.low,
                             row.close, row.volume, calendar=self.calendar)
            if bar is None:
                self.skipped_bars += 1
                continue
            yield bar

    def latest_quote(self, symbol: str) -> Quote | None:
        return None
