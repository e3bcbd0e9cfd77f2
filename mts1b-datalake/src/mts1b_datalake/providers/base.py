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

import codecs
import datetime as dt
import glob
import gzip
import lzma
import re
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
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
from mts1b_datalake.errors import ProviderError, UnknownFieldError, UnreadableFileError
from mts1b_datalake.frames import (
    Rejected,
    SourceData,
    empty_events,
)
from mts1b_datalake.rows import MAX_VALUE, OUT_OF_DOMAIN, cut, shown, symbol_problem

__all__ = [
    "CANONICAL_COLUMNS",
    "FileProvider",
    "expand_paths",
    "parse_dates",
    "parse_numbers",
    "plain",
    "read_csv_table",
    "sniff_text",
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


SNIFF_BYTES = 64 * 1024
"""How much of a file :func:`sniff_text` reads: the header line and the first few hundred rows
of any real CSV, and little enough that a 200 MB junk file is refused without reading it."""

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"PAR1", "a Parquet file (read it with format='parquet')"),
    (b"PK\x03\x04", "a ZIP archive or an Excel .xlsx workbook"),
    (b"\x1f\x8b", "gzip-compressed data whose name does not end in .gz"),
    (b"BZh", "bzip2-compressed data whose name does not end in .bz2"),
    (b"\xfd7zXZ\x00", "xz-compressed data whose name does not end in .xz"),
    (b"%PDF", "a PDF document"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old Office document (.xls)"),
    (b"\x89PNG", "a PNG image"),
    (b"SQLite format 3\x00", "an SQLite database"),
)
_BOMS: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xfe\x00\x00", "UTF-32"), (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe", "UTF-16"), (b"\xfe\xff", "UTF-16"),
)
_COMPRESSED = frozenset({"gz", "gzip", "bz2", "xz", "lzma", "zip", "zst", "lz4"})
_DECOMPRESS_ERRORS = (gzip.BadGzipFile, EOFError, zlib.error, lzma.LZMAError, OSError)
_PRINTABLE = re.compile(r"[^\x20-\x7e]")


def plain(text: object, limit: int = 200) -> str:
    """A library's error text made safe for one report line: printable ASCII only (anything
    else, raw bytes included, becomes ``?``), at most ``limit`` characters."""
    out = _PRINTABLE.sub("?", str(text))
    return out if len(out) <= limit else out[:limit] + "..."


def _unreadable(path: str, what: str, reason: str) -> UnreadableFileError:
    return UnreadableFileError(f"{path} {what}", field="path", value=path, reason=reason)


def sniff_text(path: str, *, storage_options: Mapping[str, Any] | None = None) -> None:
    """Refuse, with one :class:`~mts1b_datalake.errors.UnreadableFileError`, a file that is not
    UTF-8 CSV text, after reading at most :data:`SNIFF_BYTES` of it (decompressed).

    Why: a junk file used to reach the CSV reader, which read the whole file (a 200 MB file of
    random bytes has no line end for ``readline`` to stop at) and then failed with a
    ``UnicodeDecodeError`` traceback quoting raw bytes. The first 64 KiB are enough to tell:
    a compressed stream that does not decompress, a known binary signature (Parquet, ZIP,
    gzip under another name, PDF, ...), a UTF-16/32 byte-order mark, NUL bytes, bytes that are
    not UTF-8, many control characters, or no line break at all. The error names the file and
    the finding (``context["reason"]``: ``empty``, ``decompress``, ``signature``, ``utf16``,
    ``binary``, ``not_utf8``, ``no_lines``, ``open``; and from :func:`read_csv_table`
    ``csv`` when the CSV reader fails further down), never the bytes themselves.
    """
    try:
        with fsspec.open(path, "rb", compression="infer", **dict(storage_options or {})) as fh:
            head = fh.read(SNIFF_BYTES)
    except FileNotFoundError as exc:
        raise ProviderError(f"file not found: {path}", field="path", value=path) from exc
    except (PermissionError, IsADirectoryError, NotADirectoryError) as exc:
        raise _unreadable(path, f"cannot be opened: {type(exc).__name__}", "open") from None
    except _DECOMPRESS_ERRORS as exc:
        suffix = path.rsplit(".", 1)[-1].lower() if "." in path else ""
        if suffix in _COMPRESSED:
            raise _unreadable(path, f"is not valid .{suffix} data (it does not decompress: "
                                    f"{type(exc).__name__})", "decompress") from None
        raise _unreadable(path, f"cannot be read: {type(exc).__name__}", "open") from None
    if not head:
        raise _unreadable(path, "is empty: a CSV file needs at least a header line", "empty")
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            raise _unreadable(path, f"is {encoding} text (it starts with a byte-order mark); "
                                    "save it as UTF-8", "utf16")
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            raise _unreadable(path, f"is {kind}, not CSV text", "signature")
    nul = head.find(b"\x00")
    if nul >= 0:
        sample = head[:512]
        if len(sample) >= 8 and (sample[1::2].count(0) > 0.4 * len(sample) / 2
                                 or sample[0::2].count(0) > 0.4 * len(sample) / 2):
            raise _unreadable(path, "looks like UTF-16 text without a byte-order mark (every "
                                    "other byte is NUL); save it as UTF-8", "utf16")
        raise _unreadable(path, f"is binary, not CSV text: it holds NUL bytes (the first at "
                                f"byte {nul})", "binary")
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=len(head) <
                                                             SNIFF_BYTES)
    except UnicodeDecodeError as exc:
        raise _unreadable(path, f"is not UTF-8 text: the bytes at offset {exc.start} are not "
                                "valid UTF-8 (binary data, or text in another encoding: save "
                                "it as UTF-8)", "not_utf8") from None
    controls = sum(1 for ch in text if ch < " " and ch not in "\t\n\r\f\v")
    if controls > max(8, len(text) // 100):
        raise _unreadable(path, f"is binary, not CSV text: {controls} control characters in "
                                f"its first {len(head)} bytes", "binary")
    if "\n" not in text and "\r" not in text and len(head) >= SNIFF_BYTES:
        raise _unreadable(path, f"has no line break in its first {SNIFF_BYTES // 1024} KiB: "
                                "not a CSV file", "no_lines")


class _Utf8Checked:
    """A binary file that raises :class:`UnreadableFileError` at the first byte that is not
    UTF-8, wherever it is, before the CSV reader sees that block.

    Why: the sniffed head can be clean and the file still turn to junk later (a truncated
    download padded with garbage). Arrow would then hand the bad row to the invalid-row
    handler after decoding it itself, fail inside that decoding, and print an "Exception
    ignored" traceback with the raw bytes on stderr. The incremental decoder costs one pass
    of C-speed decoding over blocks the reader reads anyway.
    """

    def __init__(self, raw: Any, path: str) -> None:
        self._raw = raw
        self._path = path
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._offset = 0

    @property
    def closed(self) -> bool:
        return bool(self._raw.closed)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def read(self, size: int = -1) -> bytes:
        data: bytes = self._raw.read(size)
        try:
            self._decoder.decode(data, final=not data)
        except UnicodeDecodeError as exc:
            raise _unreadable(self._path, f"is not UTF-8 text: the bytes at offset "
                                          f"{self._offset + exc.start} are not valid UTF-8 "
                                          "(binary data, or text in another encoding)",
                              "not_utf8") from None
        self._offset += len(data)
        return data

    def close(self) -> None:
        self._raw.close()


def read_csv_table(path: str, *, storage_options: Mapping[str, Any] | None = None,
                   check_header: Callable[[list[str]], object] | None = None) -> (
    tuple[pa.Table, np.ndarray, list[Rejected]]
):
    """Read a CSV (plain or compressed, local or fsspec URL) with every column as string.

    Returns the table, the 1-based source line of each row (header = line 1) and a Rejected
    entry for each line with the wrong number of fields. A file that is not CSV text is
    refused by :func:`sniff_text` before anything else is read, and ``check_header`` (called
    with the column names) may refuse the file before its body is read: a large text file
    whose header is not a market-data header fails at once.
    """
    sniff_text(path, storage_options=storage_options)
    invalid: list[Rejected] = []

    def handler(row: Any) -> str:
        line = int(row.number) if row.number is not None else -1
        invalid.append(Rejected(path, line, f"expected {row.expected_columns} fields, found "
                                              f"{row.actual_columns}"))
        return "skip"

    opts = dict(storage_options or {})
    try:
        with fsspec.open(path, "rb", compression="infer", **opts) as fh:
            first = fh.readline(SNIFF_BYTES).decode("utf-8-sig").rstrip("\r\n")
        names = next(iter(pd.read_csv(pd.io.common.StringIO(first + "\n"), header=None,
                                      dtype=str, keep_default_na=False).itertuples(index=False)))
        names = [str(n) for n in names]
        fixed: list[str] = []
        for i, n in enumerate(names):
            n = n.strip()
            fixed.append(n if n and n not in fixed else f"_col{i}")
        if check_header is not None:
            check_header(fixed)
        with fsspec.open(path, "rb", compression="infer", **opts) as fh:
            table = pacsv.read_csv(
                _Utf8Checked(fh, path),
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
    except UnicodeDecodeError as exc:  # past the sniffed head: say where, never the bytes
        raise _unreadable(path, f"is not UTF-8 text: the bytes at offset {exc.start} of its "
                                "header are not valid UTF-8", "not_utf8") from None
    except pa.ArrowInvalid as exc:  # a CSV structure the reader cannot recover from
        reason = re.sub(r"(got \d+)\b.*", r"\1", str(exc), flags=re.DOTALL)  # no row text
        raise _unreadable(path, f"cannot be read as CSV: {plain(reason)}", "csv") from None
    except StopIteration:
        raise _unreadable(path, "has no header line", "empty") from None
    except _DECOMPRESS_ERRORS as exc:  # a compressed stream that breaks after the head
        raise _unreadable(path, f"is truncated or corrupt further down (it stops "
                                f"decompressing: {type(exc).__name__})", "decompress") from None
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
        if symbol is not None and (why := symbol_problem(symbol)) is not None:
            raise ProviderError(f"symbol {shown(symbol)} is not a valid symbol: {why}",
                                field="symbol", value=cut(symbol))
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
        table, lines, rejected = read_csv_table(
            path, storage_options=self.storage_options,
            check_header=lambda names: self._mapping(names, path))
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
            listed = ", ".join(shown(n) for n in names[:12]) + (
                f", ... ({len(names)} columns)" if len(names) > 12 else "")
            raise ProviderError(
                f"{path}: no column for {missing} (columns are [{listed}]); pass "
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
        """Parse mapped string columns; append a Rejected per unusable row to ``rejected``.

        The structural rules (empty line, date, symbol, number, close) come first, then the row
        rules of :mod:`mts1b_datalake.rows` that can quote the file's own text: an invalid
        symbol, an infinite or out-of-domain value, a negative volume. The first rule a row
        breaks is the one reported, with its field and value.
        """
        n = len(lines)
        reasons = np.full(n, None, dtype=object)
        fields = np.full(n, None, dtype=object)
        values = np.full(n, None, dtype=object)

        def reject(mask: np.ndarray, reason: str | np.ndarray, field: str | None = None,
                   value: np.ndarray | None = None) -> None:
            fresh = mask & (reasons == None)  # noqa: E711 - elementwise on an object array
            if not fresh.any():
                return
            reasons[fresh] = reason[fresh] if isinstance(reason, np.ndarray) else reason
            fields[fresh] = field
            if value is not None:
                values[fresh] = value[fresh]

        raw_cols = {k: (v.to_pandas() if isinstance(v, pa.ChunkedArray) else v)
                    for k, v in cols.items()}
        all_null = np.ones(n, dtype=bool)
        for series in raw_cols.values():
            all_null &= series.isna().to_numpy()
        reject(all_null, "empty line")

        date_raw = raw_cols["date"]
        dates = parse_dates(date_raw, self.date_format)
        bad_date = dates.isna().to_numpy()
        reject(bad_date & date_raw.isna().to_numpy(), "date is missing", "date")
        shown_dates = date_raw.astype("string").fillna("").to_numpy(dtype=object)
        if bad_date.any():
            reject(bad_date, np.array([f"date {shown(v)} does not parse" for v in shown_dates],
                                      dtype=object), "date",
                   np.array([cut(v) for v in shown_dates], dtype=object))

        from_name = False
        if "symbol" in raw_cols and not self.symbol:
            symbols = raw_cols["symbol"].astype("string").str.strip()
            reject(symbols.isna().to_numpy() | (symbols == "").fillna(True).to_numpy(),
                   "symbol is missing", "symbol")
            symbol_values = symbols.fillna("").to_numpy(dtype=object)
        else:
            symbol_values = np.full(n, self._symbol_for(path), dtype=object)
            from_name = not self.symbol

        numbers: dict[str, np.ndarray] = {}
        texts: dict[str, np.ndarray] = {}

        def text(field: str) -> np.ndarray:
            if field not in texts:
                texts[field] = raw_cols[field].astype("string").fillna("").to_numpy(
                    dtype=object)
            return texts[field]

        for field in ("open", "high", "low", "close", "volume", "adj_close", "dividend", "split"):
            if field not in cols:
                continue
            parsed, bad = parse_numbers(cols[field])
            if bad.any():
                msg = np.array([f"{field} {shown(t)} is not a number" for t in text(field)],
                               dtype=object)
                reject(bad, msg, field, np.array([cut(t) for t in text(field)], dtype=object))
            numbers[field] = parsed
        reject(np.isnan(numbers["close"]), "close is missing", "close")

        problems = {s: why for s in pd.unique(symbol_values)
                    if s and (why := symbol_problem(s)) is not None}
        if problems:
            where = " (from the file name; pass symbol=...)" if from_name else ""
            mask = np.fromiter((s in problems for s in symbol_values), dtype=bool, count=n)
            reject(mask, np.array([f"symbol {shown(s)}{where} is not a valid symbol: "
                                   f"{problems[s]}" if s in problems else "" for s in
                                   symbol_values], dtype=object), "symbol",
                   np.array([cut(s) for s in symbol_values], dtype=object))
        for field, parsed in numbers.items():
            with np.errstate(invalid="ignore"):
                infinite = np.isinf(parsed)
                huge = ~infinite & (np.abs(parsed) >= MAX_VALUE)
            for mask, what in ((infinite, "is not a finite number"),
                               (huge, OUT_OF_DOMAIN)):
                if mask.any():
                    reject(mask, np.array([f"{field} {shown(t)} {what}" for t in text(field)],
                                          dtype=object), field,
                           np.array([cut(t) for t in text(field)], dtype=object))
        if "volume" in numbers:
            with np.errstate(invalid="ignore"):
                negative = numbers["volume"] < 0
            if negative.any():
                reject(negative, np.array([f"volume {shown(t)} is negative" for t in
                                           text("volume")], dtype=object), "volume",
                       np.array([cut(t) for t in text("volume")], dtype=object))

        keep = reasons == None  # noqa: E711
        for i in np.flatnonzero(~keep):
            sym = symbol_values[i] if symbol_values[i] and symbol_values[i] not in problems \
                else None
            rejected.append(Rejected(path, int(lines[i]), str(reasons[i]), sym,
                                     field=fields[i], value=values[i]))
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
