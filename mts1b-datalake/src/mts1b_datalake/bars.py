"""Turning rows of the canonical bars table into :class:`mts1b_foundation.Bar` wire models.

A wire bar is strict (positive prices, ``low <= open, close <= high``, finite volume), so a row
that violates it cannot be sent: :func:`row_to_bar` returns ``None`` for such rows and the caller
counts them. ``ts`` of a daily bar is the end of the bar: the session close of the exchange
calendar (16:00 New York for XNYS, 13:00 on early-close days), in UTC.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from decimal import Decimal

from mts1b_foundation import Bar, ValidationFailed, fit_to_domain
from pydantic import ValidationError

from mts1b_datalake.calendar import regular_session

__all__ = ["bar_timestamp", "decimal_of", "row_to_bar"]


def decimal_of(value: float) -> Decimal:
    """Shortest exact decimal of a float as printed (``15.07`` -> ``Decimal('15.07')``), rounded
    into the wire's numeric domain (12 places: ``17.65999984741211`` -> ``17.659999847412``).

    ValueError when the value has no wire form (NaN, infinite, 1E+15 or more)."""
    if float(value).is_integer():
        return fit_to_domain(int(value))
    return fit_to_domain(float(value))


@functools.lru_cache(maxsize=65536)
def bar_timestamp(day: dt.date, calendar: str = "XNYS") -> dt.datetime:
    """End of the daily bar of ``day``: the session close in UTC.

    Days that are not sessions of ``calendar`` (weekend crypto bars, holidays) end at midnight
    UTC after the day.
    """
    regular = regular_session(calendar, day)
    if regular is not None:
        return regular[1]
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tzinfo=dt.UTC)


def row_to_bar(symbol: str, day: dt.date, open_: float, high: float, low: float, close: float,
               volume: float, *, calendar: str = "XNYS") -> Bar | None:
    """A wire :class:`Bar`, or ``None`` when the row cannot be one (NaN, <= 0, OHLC outside)."""
    values = (open_, high, low, close)
    if any(not math.isfinite(v) or v <= 0 for v in values):
        return None
    vol = 0.0 if not math.isfinite(volume) else volume
    if vol < 0 or not (low <= open_ <= high and low <= close <= high):
        return None
    try:
        return Bar(symbol=symbol, ts=bar_timestamp(day, calendar), interval="1d",
                   open=decimal_of(open_), high=decimal_of(high), low=decimal_of(low),
                   close=decimal_of(close), volume=decimal_of(vol))
    except (ValidationError, ValidationFailed, ValueError):
        return None
