"""The canonical long-format tables every provider produces and the store keeps.

Bars
    one row per (symbol, trading date): ``symbol`` (str), ``date`` (``datetime64``, midnight),
    ``open high low close volume`` (float64, NaN where the source has no value). Prices are
    *raw* as traded (or as the source delivers them); corporate actions live in the events table.

Events
    one row per (symbol, date, kind): ``kind`` is one of :data:`EVENT_KINDS`; ``value`` is the
    split ratio (new shares per old share: 2.0 for a 2-for-1 split, 0.5 for a 1-for-2 reverse
    split), the cash dividend per share in the bar's currency, or NaN for listings/delistings.
    ``date`` is the ex-date (first session that trades without the entitlement).

Symbols
    one row per symbol: ``asset_class`` (``equity``, ``etf``, ``index``, ``fx``, ``crypto``),
    ``sector``, ``name`` and ``source``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "BAR_COLUMNS",
    "EVENT_COLUMNS",
    "EVENT_KINDS",
    "PRICE_FIELDS",
    "SYMBOL_COLUMNS",
    "Rejected",
    "SourceData",
    "empty_bars",
    "empty_events",
    "empty_symbols",
    "normalize_bars",
    "normalize_events",
    "normalize_symbols",
]

PRICE_FIELDS: tuple[str, ...] = ("open", "high", "low", "close")
BAR_COLUMNS: tuple[str, ...] = ("symbol", "date", "open", "high", "low", "close", "volume")
EVENT_COLUMNS: tuple[str, ...] = ("symbol", "date", "kind", "value")
EVENT_KINDS: tuple[str, ...] = ("split", "dividend", "listing", "delisting")
SYMBOL_COLUMNS: tuple[str, ...] = ("symbol", "asset_class", "sector", "name", "source")


@dataclass(frozen=True, slots=True)
class Rejected:
    """One source row that could not be used, and why.

    ``line`` is the 1-based line number in the file (the header is line 1), or the 0-based row
    number for sources without lines (Parquet), or -1 when unknown; ``file`` is the path as
    given. ``field`` and ``value`` name the offending field and its text (cut to 40 characters)
    when one field is to blame, so a caller can act on them without parsing ``reason``.
    ``symbol`` is the row's symbol when it is a valid one (never an invalid symbol: that is
    ``value``).
    """

    file: str
    line: int
    reason: str
    symbol: str | None = None
    field: str | None = None
    value: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "reason": self.reason,
                "symbol": self.symbol, "field": self.field, "value": self.value}


@dataclass(slots=True)
class SourceData:
    """What a provider read: bars, events, symbol metadata and every rejected row."""

    bars: pd.DataFrame
    events: pd.DataFrame = field(default_factory=lambda: empty_events())
    symbols: pd.DataFrame = field(default_factory=lambda: empty_symbols())
    rejected: list[Rejected] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.bars = normalize_bars(self.bars)
        self.events = normalize_events(self.events)
        self.symbols = normalize_symbols(self.symbols, self.bars)

    @staticmethod
    def concat(parts: list[SourceData]) -> SourceData:
        if not parts:
            return SourceData(empty_bars())
        return SourceData(
            bars=pd.concat([p.bars for p in parts], ignore_index=True),
            events=pd.concat([p.events for p in parts], ignore_index=True),
            symbols=pd.concat([p.symbols for p in parts], ignore_index=True)
            .drop_duplicates("symbol", keep="last"),
            rejected=[r for p in parts for r in p.rejected],
            files=[f for p in parts for f in p.files],
        )


def empty_bars() -> pd.DataFrame:
    return pd.DataFrame({
        "symbol": pd.Series([], dtype=object),
        "date": pd.Series([], dtype="datetime64[s]"),
        **{c: pd.Series([], dtype=np.float64) for c in BAR_COLUMNS[2:]},
    })


def empty_events() -> pd.DataFrame:
    return pd.DataFrame({
        "symbol": pd.Series([], dtype=object),
        "date": pd.Series([], dtype="datetime64[s]"),
        "kind": pd.Series([], dtype=object),
        "value": pd.Series([], dtype=np.float64),
    })


def empty_symbols() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series([], dtype=object) for c in SYMBOL_COLUMNS})


def _dates(values: Any) -> pd.Series:
    out = pd.to_datetime(pd.Series(values), errors="raise")
    if getattr(out.dt, "tz", None) is not None:
        out = out.dt.tz_localize(None)
    return out.dt.normalize().astype("datetime64[s]")


def normalize_bars(frame: pd.DataFrame) -> pd.DataFrame:
    """Canonical column set, order and dtypes (missing price/volume columns become NaN).

    Optional provenance columns ``line`` (source line number) and ``file`` pass through.
    """
    if frame.empty and not len(frame.columns):
        return empty_bars()
    out = pd.DataFrame({
        "symbol": frame["symbol"].astype(str).to_numpy(dtype=object),
        "date": _dates(frame["date"]).to_numpy(),
    })
    for col in BAR_COLUMNS[2:]:
        if col in frame.columns:
            out[col] = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=np.float64)
        else:
            out[col] = np.nan
    for col in ("line", "file"):  # provenance, kept so QC findings can name the source line
        if col in frame.columns:
            out[col] = frame[col].to_numpy()
    return out


def normalize_events(frame: pd.DataFrame) -> pd.DataFrame:
    if frame is None or (frame.empty and not len(frame.columns)):
        return empty_events()
    out = pd.DataFrame({
        "symbol": frame["symbol"].astype(str).to_numpy(dtype=object),
        "date": _dates(frame["date"]).to_numpy(),
        "kind": frame["kind"].astype(str).to_numpy(dtype=object),
        "value": pd.to_numeric(frame["value"], errors="coerce").to_numpy(dtype=np.float64),
    })
    unknown = sorted(set(out["kind"]) - set(EVENT_KINDS))
    if unknown:
        from mts1b_datalake.errors import UnknownFieldError

        raise UnknownFieldError(f"unknown event kind(s) {unknown}; known: {list(EVENT_KINDS)}",
                                field="kind", value=unknown)
    return out


def normalize_symbols(frame: pd.DataFrame | None, bars: pd.DataFrame | None = None) -> (
    pd.DataFrame
):
    """Canonical symbol table; symbols that appear in ``bars`` but not here get empty rows
    (the store fills ``asset_class="equity"`` for symbols it has never seen)."""
    base = empty_symbols() if frame is None or frame.empty else frame.copy()
    for col in SYMBOL_COLUMNS:
        if col not in base.columns:
            base[col] = None
    base = base[list(SYMBOL_COLUMNS)].astype(object)
    if bars is not None and len(bars):
        missing = sorted(set(bars["symbol"].unique()) - set(base["symbol"]))
        if missing:
            extra = pd.DataFrame({"symbol": missing, "asset_class": None, "sector": None,
                                  "name": None, "source": None})
            base = pd.concat([base, extra.astype(object)], ignore_index=True)
    return base.drop_duplicates("symbol", keep="last").reset_index(drop=True)
