"""Trading days as ``datetime64[D]`` arrays, from :mod:`mts1b_platform.calendars`, cached.

Panels are aligned to these days. ``"24/7"`` (every calendar day) and ``"24/5"`` (Monday to
Friday) need no exchange calendar; every other name is an exchange code understood by
``mts1b_platform.calendars.MarketCalendar`` (``XNYS``, ``XNAS``, ``XLON``, ...).

Sessions of 2000-2030 (widened on demand) are computed once and cached in memory and on disk
(the user cache directory, keyed by the exchange_calendars version), so a fresh process builds a
panel without paying for importing and building the exchange calendar.
``MTS_DATALAKE_CALENDAR_CACHE=0`` turns the disk cache off.

Calendars by asset class (:data:`ASSET_CLASS_CALENDARS`): equities, ETFs and indices trade on
their exchange's sessions (``XNYS``: the store records no exchange per symbol), FX on ``24/5``
and crypto on ``24/7``. :func:`calendar_for_asset_classes` is how ``build_panel`` picks a
panel's calendar when none is given, and :func:`periods_per_year` how many of its rows make a
year for annualising (252, 260, 365): a crypto Sharpe annualised with 252 would understate it
by ``sqrt(365 / 252)``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import importlib.metadata
import os
import re
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from mts1b_foundation import MtsError

from mts1b_datalake.errors import InvalidRangeError, MixedAssetClassError

__all__ = [
    "ASSET_CLASS_CALENDARS",
    "calendar_for_asset_classes",
    "market_calendar",
    "periods_per_year",
    "session_close",
    "to_day",
    "trading_days",
]

#: the default calendar of each asset class the store records (``Store.symbol_table``)
ASSET_CLASS_CALENDARS: Mapping[str, str] = {
    "equity": "XNYS", "etf": "XNYS", "index": "XNYS", "fx": "24/5", "crypto": "24/7",
}

#: rows per year of the calendars that need no exchange calendar (aliases included)
_PERIODS: Mapping[str, int] = {"24/7": 365, "24h": 365, "24/5": 260, "24x5": 260}

#: the conventional trading days per year of an exchange calendar (XNYS has 250-253)
EXCHANGE_PERIODS_PER_YEAR = 252

_lock = threading.Lock()
_cache: dict[str, tuple[np.datetime64, np.datetime64, np.ndarray]] = {}


def to_day(value: Any) -> np.datetime64:
    """``datetime64[D]`` of a date, datetime, ISO string or numpy/pandas timestamp."""
    try:
        if isinstance(value, np.datetime64):
            day: np.datetime64 = value.astype("datetime64[D]")
            return day
        if isinstance(value, dt.datetime):
            if value.tzinfo is not None:
                value = value.astimezone(dt.UTC)
            return np.datetime64(value.date(), "D")
        if isinstance(value, dt.date):
            return np.datetime64(value, "D")
        if hasattr(value, "to_datetime64"):
            return np.datetime64(value.to_datetime64(), "D")
        return np.datetime64(dt.date.fromisoformat(str(value)[:10]), "D")
    except (ValueError, TypeError) as exc:
        raise InvalidRangeError(f"not a date: {value!r}", field="date", value=str(value)) \
            from exc


@functools.lru_cache(maxsize=8)
def market_calendar(name: str) -> Any:
    """The platform's ``MarketCalendar`` of ``name``, built once per process (sessions here and
    bar timestamps in :mod:`mts1b_datalake.bars` share it). Imported lazily: building one loads
    exchange_calendars, which a panel served from the session cache never needs."""
    from mts1b_platform.calendars import MarketCalendar

    return MarketCalendar(name)


def _disk_cache_path(name: str, lo: np.datetime64, hi: np.datetime64) -> Path | None:
    """Where computed sessions are cached between processes (keyed by exchange_calendars'
    version, so a release with new holidays recomputes them). ``None`` disables the cache."""
    if os.environ.get("MTS_DATALAKE_CALENDAR_CACHE", "1") == "0":
        return None
    try:
        version = importlib.metadata.version("exchange_calendars")
    except importlib.metadata.PackageNotFoundError:
        return None
    import platformdirs

    # The name becomes part of a file name: kept when it is a plain code (XNYS, us_futures),
    # else hashed, so no name can add a path separator or '..', nor collide with another one
    # (mapping unusual characters to '_' made 'a-b' and 'a_b' share a cache file).
    safe = name if re.fullmatch(r"[A-Za-z0-9_]{1,64}", name) else \
        "h" + hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:24]
    return (Path(platformdirs.user_cache_dir("mts1b", appauthor=False)) / "calendars"
            / f"{safe}-{lo}-{hi}-xc{version}.npy")


def _compute(name: str, lo: np.datetime64, hi: np.datetime64) -> np.ndarray:
    if name in ("24/7", "24h", "24/5", "24x5"):
        return _compute_uncached(name, lo, hi)
    path = _disk_cache_path(name, lo, hi)
    if path is not None and path.exists():
        with contextlib.suppress(OSError, ValueError):
            loaded: np.ndarray = np.load(path, allow_pickle=False)
            return loaded.astype("datetime64[D]")
    days = _compute_uncached(name, lo, hi)
    if path is not None:
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
            np.save(tmp, days.astype("datetime64[D]"))
            os.replace(tmp, path)
    return days


def _compute_uncached(name: str, lo: np.datetime64, hi: np.datetime64) -> np.ndarray:
    if name in ("24/7", "24h"):
        return np.arange(lo, hi + 1, dtype="datetime64[D]")
    if name in ("24/5", "24x5"):
        days = np.arange(lo, hi + 1, dtype="datetime64[D]")
        return days[np.is_busday(days)]
    cal = market_calendar(name)
    try:
        days = cal.sessions(lo.astype(dt.date), hi.astype(dt.date))
    except MtsError as exc:
        raise InvalidRangeError(f"calendar {name} cannot answer {lo}..{hi}: {exc}",
                                field="calendar", value=name) from exc
    return np.array(days, dtype="datetime64[D]")


def trading_days(calendar: str, start: Any, end: Any) -> np.ndarray:
    """Sessions of ``calendar`` in ``[start, end]`` (inclusive) as sorted ``datetime64[D]``."""
    lo, hi = to_day(start), to_day(end)
    if hi < lo:
        return np.array([], dtype="datetime64[D]")
    with _lock:
        cached = _cache.get(calendar)
        if cached is None or lo < cached[0] or hi > cached[1]:
            new_lo = lo if cached is None else min(lo, cached[0])
            new_hi = hi if cached is None else max(hi, cached[1])
            # widen generously so later requests hit the cache
            new_lo = min(new_lo, np.datetime64("2000-01-03", "D"))
            new_hi = max(new_hi, np.datetime64("2030-12-31", "D"))
            cached = (new_lo, new_hi, _compute(calendar, new_lo, new_hi))
            _cache[calendar] = cached
        days = cached[2]
    i = int(np.searchsorted(days, lo, side="left"))
    j = int(np.searchsorted(days, hi, side="right"))
    return days[i:j]


def periods_per_year(calendar: str) -> int:
    """Rows per year of a panel on ``calendar``, for annualising its daily returns: 365 for
    ``24/7`` (``24h``), 260 for ``24/5`` (``24x5``), 252 for an exchange calendar (the
    convention for ``XNYS`` and the other exchanges, whose years hold 240-253 sessions)."""
    return _PERIODS.get(calendar, EXCHANGE_PERIODS_PER_YEAR)


def calendar_for_asset_classes(classes: Iterable[str | None],
                               examples: Mapping[str, Iterable[str]] | None = None) -> str:
    """The one calendar of instruments of the asset ``classes`` (:data:`ASSET_CLASS_CALENDARS`).

    ``None`` (a symbol the store has no class for) counts as ``equity``, as the store does.
    Raises :class:`~mts1b_datalake.errors.MixedAssetClassError` naming the classes found (and
    up to three symbols of each, from ``examples``) when they trade on different calendars,
    or a class that has no default calendar: a panel mixing crypto (every day) and equities
    (exchange days) has no single right set of rows, so the caller must choose one.
    """
    found = sorted({c or "equity" for c in classes})
    shown = {c: sorted(examples.get(c, ()))[:3] for c in found} if examples else {}

    def listing() -> str:
        return ", ".join(f"{c} ({', '.join(shown[c])})" if shown.get(c) else c for c in found)

    unknown = [c for c in found if c not in ASSET_CLASS_CALENDARS]
    if unknown:
        raise MixedAssetClassError(
            f"asset class(es) {unknown} have no default calendar (known: "
            f"{dict(ASSET_CLASS_CALENDARS)}); found {listing()}: pass calendar= (e.g. "
            f"calendar='XNYS', '24/5' or '24/7')", field="calendar", value=found)
    calendars = sorted({ASSET_CLASS_CALENDARS[c] for c in found})
    if len(calendars) > 1:
        by_class = ", ".join(f"{c}: {ASSET_CLASS_CALENDARS[c]}" for c in found)
        raise MixedAssetClassError(
            f"the instruments mix asset classes that trade on different calendars: "
            f"{listing()} ({by_class}); pass calendar= to choose the panel's rows (e.g. "
            f"calendar='24/7' keeps every day, calendar='XNYS' only exchange sessions)",
            field="calendar", value=found, calendars=calendars)
    return calendars[0] if calendars else ASSET_CLASS_CALENDARS["equity"]


def regular_session(calendar: str, day: dt.date) -> tuple[dt.datetime, dt.datetime] | None:
    """``(open, close)`` of ``day``'s regular session in UTC; ``None`` when ``day`` is not a
    session of ``calendar`` (a weekend crypto bar, a holiday, outside the calendar's range)."""
    cal = market_calendar(calendar)
    try:
        if cal.is_session(day):
            return cal.open_of(day), cal.close_of(day)
    except Exception:  # noqa: S110 - outside the calendar's range: not a session
        pass
    return None


def session_open(calendar: str, day: dt.date) -> dt.datetime:
    """Regular open of session ``day`` in UTC (midnight UTC of a day that is not a session of
    ``calendar``, where a daily bar starts)."""
    regular = regular_session(calendar, day)
    return regular[0] if regular else dt.datetime.combine(day, dt.time(0), tzinfo=dt.UTC)


def session_close(calendar: str, day: dt.date) -> dt.datetime:
    """Close of ``day`` in UTC (see :func:`mts1b_datalake.bars.bar_timestamp`)."""
    from mts1b_datalake.bars import bar_timestamp

    return bar_timestamp(day, calendar)
