"""Market-data providers: file readers, auto-detection and the ``mts1b.market_data`` plugins.

Each provider satisfies :class:`mts1b_foundation.MarketDataProtocol` (``symbols``, ``bars``,
``latest_quote``) and also offers ``read()`` -> :class:`~mts1b_datalake.frames.SourceData`, the
bulk path used by ingest.

Third-party providers register a class (or factory) under the entry-point group
``mts1b.market_data``::

    [project.entry-points."mts1b.market_data"]
    my-vendor = "my_package.provider:MyVendorProvider"

and are then found by :func:`get_provider` / ``mts mts1b-datalake ingest --format my-vendor``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import fsspec
from mts1b_foundation.plugins import MARKET_DATA, load_plugins

from mts1b_datalake.errors import ProviderError
from mts1b_datalake.providers.base import (
    CANONICAL_COLUMNS,
    SNIFF_BYTES,
    FileProvider,
    expand_paths,
    sniff_text,
)
from mts1b_datalake.providers.formats import (
    LongCsvProvider,
    ParquetProvider,
    WideCsvProvider,
    YahooCsvProvider,
    YFinanceCsvProvider,
    dividends_from_adjusted,
)

__all__ = [
    "BUILTIN_PROVIDERS",
    "CANONICAL_COLUMNS",
    "ENTRY_POINT_GROUP",
    "FileProvider",
    "LongCsvProvider",
    "ParquetProvider",
    "WideCsvProvider",
    "YFinanceCsvProvider",
    "YahooCsvProvider",
    "available_providers",
    "detect_format",
    "dividends_from_adjusted",
    "get_provider",
    "open_source",
]

ENTRY_POINT_GROUP = MARKET_DATA.group

BUILTIN_PROVIDERS: dict[str, type[FileProvider]] = {
    "long-csv": LongCsvProvider,
    "yahoo-csv": YahooCsvProvider,
    "yfinance-csv": YFinanceCsvProvider,
    "wide-csv": WideCsvProvider,
    "parquet": ParquetProvider,
}


def available_providers() -> dict[str, Callable[..., Any]]:
    """Every provider by name: the built-ins plus entry points of ``mts1b.market_data``.

    Entry points that fail to load are skipped (and logged), so one broken plugin cannot take
    the others down.
    """
    found: dict[str, Callable[..., Any]] = dict(BUILTIN_PROVIDERS)
    # the one loader (mts1b_foundation.plugins) logs each failure by name, group and error type
    found.update(load_plugins(MARKET_DATA, skip=found, source=entry_points).plugins)
    return found


def get_provider(name: str) -> Callable[..., Any]:
    """The provider class/factory registered as ``name``; ProviderError listing known names."""
    if name in BUILTIN_PROVIDERS:
        return BUILTIN_PROVIDERS[name]
    providers = available_providers()
    try:
        return providers[name]
    except KeyError:
        raise ProviderError(f"unknown provider {name!r}; known: {sorted(providers)}",
                            field="format", value=name) from None


_SYMBOL_HEADERS = {"name", "symbol", "ticker", "stock", "asset", "code"}
_OHLC = {"open", "high", "low", "close"}


def detect_format(path: str | Path) -> str:
    """Guess the layout of one file from its name and header line.

    A file that is not CSV text is refused here already (:func:`sniff_text`, one
    ``UnreadableFileError`` after reading at most 64 KiB), before any reader sees it.
    """
    text = str(path)
    if re.search(r"\.parquet$|\.pq$", text, re.IGNORECASE):
        return "parquet"
    sniff_text(text)
    with fsspec.open(text, "rb", compression="infer") as fh:
        header = fh.readline(SNIFF_BYTES).decode("utf-8-sig", errors="replace").strip()
    names = {re.sub(r"[\s_\-]", "", n).lower() for n in header.split(",")}
    if names & _SYMBOL_HEADERS:
        return "long-csv"
    if "dividends" in names or "stocksplits" in names:
        return "yfinance-csv"
    if "adjclose" in names or names >= _OHLC or {"close"} <= names:
        return "yahoo-csv"
    return "wide-csv"


def open_source(paths: str | Path | Sequence[str | Path], format: str = "auto",
                **options: Any) -> Any:
    """A provider for ``paths``: ``format="auto"`` sniffs the first file's layout."""
    files = expand_paths(paths)
    name = detect_format(files[0]) if format == "auto" else format
    factory = get_provider(name)
    return factory(files, **options)
