"""The raw panel the paper loop trades, as per-session rows and venue bars (issue #20).

Why a module of its own: turning stored floats into the Decimals and ``Bar`` s a venue takes is
one decision (a float is the decimal it was written as; an inconsistent vendor bar is widened)
that the loop should not have to restate.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from decimal import Decimal

import numpy as np
from mts1b_foundation import Bar, UniversePanel

from mts1b_research.errors import ResearchInputError

__all__ = ["ZERO", "RawMarket", "dec", "finite_positive", "session_ts"]

ZERO = Decimal(0)


def dec(x: float) -> Decimal:
    """A stored float as the decimal it was written as (its shortest repr)."""
    return Decimal(repr(float(x)))


def finite_positive(x: float) -> bool:
    return math.isfinite(x) and x > 0


@dataclasses.dataclass
class RawMarket:
    """The raw panel as plain per-session rows, and what the loop derives from it."""

    panel: UniversePanel
    dates: tuple[dt.date, ...]
    symbols: tuple[str, ...]
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    dividend: np.ndarray
    split: np.ndarray
    last_row: np.ndarray   # last row with a close, per symbol (-1: none)

    @classmethod
    def of(cls, panel: UniversePanel) -> RawMarket:
        names = set(panel.field_names)
        if not {"dividend", "split_ratio"} <= names:
            raise ResearchInputError("market", sorted(names), "the raw panel needs the fields "
                                     "dividend and split_ratio (build_panel(adjust='none', "
                                     "fields=(*OHLCV_FIELDS, 'dividend', 'split_ratio')))")
        close = np.asarray(panel.close, dtype=np.float64)
        valid = np.isfinite(close) & (close > 0)
        t_len = close.shape[0]
        last = np.where(valid.any(axis=0), t_len - 1 - np.argmax(valid[::-1], axis=0), -1)
        return cls(panel=panel,
                   dates=tuple(d.item() for d in panel.dates.astype("datetime64[D]")),
                   symbols=tuple(panel.symbols), open=np.asarray(panel.open, dtype=np.float64),
                   high=np.asarray(panel.high, dtype=np.float64),
                   low=np.asarray(panel.low, dtype=np.float64), close=close,
                   volume=np.asarray(panel.volume, dtype=np.float64),
                   dividend=np.nan_to_num(np.asarray(panel.field("dividend"), dtype=np.float64)),
                   split=np.nan_to_num(np.asarray(panel.field("split_ratio"), dtype=np.float64),
                                       nan=1.0),
                   last_row=last)

    def bar(self, t: int, a: int, ts: dt.datetime) -> Bar | None:
        """The bar of symbol ``a`` at row ``t``, or None without an open and a close. A bar
        whose open or close lies outside its high-low range (vendor data has such rows) is
        widened to contain them: the venue requires a consistent bar, and market and on-close
        fills use only the open and the close."""
        o, c = float(self.open[t, a]), float(self.close[t, a])
        if not (finite_positive(o) and finite_positive(c)):
            return None
        h, lo = float(self.high[t, a]), float(self.low[t, a])
        h = max(h, o, c) if math.isfinite(h) else max(o, c)
        lo = min(lo, o, c) if finite_positive(lo) else min(o, c)
        v = float(self.volume[t, a])
        return Bar(symbol=self.symbols[a], ts=ts, open=dec(o), high=dec(h), low=dec(lo),
                   close=dec(c), volume=dec(v) if math.isfinite(v) and v >= 0 else ZERO)


def session_ts(day: dt.date) -> dt.datetime:
    """A session's bars are stamped at 21:00 UTC (after the XNYS close)."""
    return dt.datetime.combine(day, dt.time(21), tzinfo=dt.UTC)
