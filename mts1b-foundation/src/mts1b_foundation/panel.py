"""``UniversePanel``: the one in-memory shape of market data for research and backtests.

A panel is ``T`` trading dates by ``A`` symbols. Every field is a read-only ``float64`` array of
shape ``(T, A)`` with ``NaN`` where the asset has no data on that date. ``mask`` is a boolean
``(T, A)`` array: ``True`` where the asset belongs to the universe on that date (point-in-time
membership), which may be ``False`` even where prices exist.

Why read-only arrays: factors are pure functions of the panel; a factor that writes into
``panel.close`` would silently corrupt every later factor in the same run. Making the buffers
non-writeable turns that bug into an immediate ``ValueError``.

Why a panel may carry its ``calendar`` and ``periods_per_year``: the rows of a crypto panel are
every calendar day and those of an FX panel every weekday, so a daily return series has 365 or
260 periods a year, not an equity exchange's 252. Whoever builds the panel knows which calendar
its rows follow (the datalake picks it from the instruments' asset class); metrics, borrow
accrual and tearsheets downstream read ``periods_per_year`` from the panel instead of assuming
252. Both are optional (``None``: not stated), so panels built without them behave as before.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from mts1b_foundation.errors import PanelError

__all__ = ["OHLCV_FIELDS", "DateLike", "UniversePanel", "to_day"]

OHLCV_FIELDS: tuple[str, ...] = ("open", "high", "low", "close", "volume")

DateLike = dt.date | str | np.datetime64

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


def to_day(value: DateLike | dt.datetime) -> np.datetime64:
    """Convert a date-like value to ``numpy.datetime64[D]``; raise PanelError naming the value."""
    try:
        if isinstance(value, dt.datetime):
            if value.tzinfo is not None:
                value = value.astimezone(dt.UTC)
            return np.datetime64(value.date(), "D")
        if isinstance(value, np.datetime64):
            day: np.datetime64 = value.astype("datetime64[D]")
            return day
        if isinstance(value, dt.date):
            return np.datetime64(value, "D")
        if isinstance(value, str):
            return np.datetime64(dt.date.fromisoformat(value[:10]), "D")
    except (ValueError, TypeError) as exc:
        raise PanelError(f"not a date: {value!r}", field="date", value=repr(value)) from exc
    raise PanelError(f"not a date: {value!r}", field="date", value=repr(value))


def _frozen(array: npt.ArrayLike, name: str, shape: tuple[int, int]) -> FloatArray:
    out = np.array(array, dtype=np.float64, copy=True)
    if out.shape != shape:
        raise PanelError(
            f"field {name!r} has shape {out.shape}, expected {shape} (dates x symbols)",
            field=name, value=out.shape, expected=shape,
        )
    out.setflags(write=False)
    return out


class UniversePanel:
    """Dates x symbols panel of float64 fields plus a point-in-time universe mask.

    Parameters
    ----------
    dates:
        ``T`` trading dates, strictly increasing (duplicates are an error).
    symbols:
        ``A`` unique symbols.
    open, high, low, close, volume:
        ``(T, A)`` arrays, NaN where there is no data.
    mask:
        ``(T, A)`` booleans, ``True`` where the symbol is in the universe. Defaults to
        "close is not NaN".
    extra:
        Further named ``(T, A)`` fields (e.g. ``adj_close``, ``dividend``, ``market_cap``).
    calendar:
        The trading calendar the rows follow (``"XNYS"``, ``"24/7"``, ``"24/5"``...), or
        ``None`` when not stated. Informational: the dates are not checked against it.
    periods_per_year:
        Rows per year of this calendar, used to annualise returns measured on the rows (252
        for an exchange, 260 for ``24/5``, 365 for ``24/7``), or ``None`` when not stated
        (consumers then keep their own default). A finite number > 0.
    """

    __slots__ = ("_calendar", "_dates", "_fields", "_index", "_mask", "_periods_per_year",
                 "_symbols")

    def __init__(
        self,
        dates: Sequence[DateLike] | npt.NDArray[Any],
        symbols: Sequence[str],
        *,
        open: npt.ArrayLike,
        high: npt.ArrayLike,
        low: npt.ArrayLike,
        close: npt.ArrayLike,
        volume: npt.ArrayLike,
        mask: npt.ArrayLike | None = None,
        extra: Mapping[str, npt.ArrayLike] | None = None,
        calendar: str | None = None,
        periods_per_year: float | None = None,
    ) -> None:
        day_array = np.array([to_day(d) for d in dates], dtype="datetime64[D]")
        if day_array.ndim != 1:
            raise PanelError("dates must be one-dimensional", field="dates")
        if day_array.size > 1:
            steps = np.diff(day_array).astype(np.int64)
            bad = np.flatnonzero(steps <= 0)
            if bad.size:
                i = int(bad[0])
                raise PanelError(
                    f"dates must be sorted and unique: {day_array[i]} is followed by "
                    f"{day_array[i + 1]}",
                    field="dates", value=str(day_array[i + 1]), position=i + 1,
                )
        syms = tuple(str(s) for s in symbols)
        if len(set(syms)) != len(syms):
            dup = next(s for s, n in Counter(syms).items() if n > 1)
            raise PanelError(f"symbols must be unique: {dup!r} appears twice",
                             field="symbols", value=dup)
        if any(not s for s in syms):
            raise PanelError("symbols must be non-empty strings", field="symbols", value="")
        shape = (day_array.size, len(syms))
        fields: dict[str, FloatArray] = {
            "open": _frozen(open, "open", shape),
            "high": _frozen(high, "high", shape),
            "low": _frozen(low, "low", shape),
            "close": _frozen(close, "close", shape),
            "volume": _frozen(volume, "volume", shape),
        }
        for name, values in (extra or {}).items():
            if name in fields or name == "mask":
                raise PanelError(f"extra field {name!r} clashes with a standard field",
                                 field="extra", value=name)
            if not name.isidentifier():
                raise PanelError(f"extra field name {name!r} is not an identifier",
                                 field="extra", value=name)
            fields[name] = _frozen(values, name, shape)
        if mask is None:
            mask_array = ~np.isnan(fields["close"])
        else:
            mask_array = np.array(mask, dtype=bool, copy=True)
            if mask_array.shape != shape:
                raise PanelError(f"mask has shape {mask_array.shape}, expected {shape}",
                                 field="mask", value=mask_array.shape, expected=shape)
        if calendar is not None and (not isinstance(calendar, str) or not calendar):
            raise PanelError(f"calendar must be a non-empty string or None; got {calendar!r}",
                             field="calendar", value=repr(calendar))
        if periods_per_year is not None:
            if isinstance(periods_per_year, bool) or not isinstance(
                    periods_per_year, int | float | np.integer | np.floating) or not (
                    math.isfinite(float(periods_per_year)) and periods_per_year > 0):
                raise PanelError(f"periods_per_year must be a finite number > 0 or None; got "
                                 f"{periods_per_year!r}", field="periods_per_year",
                                 value=repr(periods_per_year))
            periods_per_year = float(periods_per_year)
        mask_array.setflags(write=False)
        day_array.setflags(write=False)
        self._calendar = calendar
        self._periods_per_year = periods_per_year
        self._dates = day_array
        self._symbols = syms
        self._fields = fields
        self._mask = mask_array
        self._index = {s: i for i, s in enumerate(syms)}

    # -- shape and labels -------------------------------------------------------------------
    @property
    def dates(self) -> npt.NDArray[np.datetime64]:
        """``(T,)`` ``datetime64[D]`` trading dates, strictly increasing."""
        return self._dates

    @property
    def symbols(self) -> tuple[str, ...]:
        """``A`` symbols, the column order of every field."""
        return self._symbols

    @property
    def shape(self) -> tuple[int, int]:
        """``(T, A)``."""
        return (self._dates.size, len(self._symbols))

    def __len__(self) -> int:
        return int(self._dates.size)

    @property
    def calendar(self) -> str | None:
        """The trading calendar the rows follow (``"XNYS"``, ``"24/7"``...), or ``None``."""
        return self._calendar

    @property
    def periods_per_year(self) -> float | None:
        """Rows per year for annualising (252, 260, 365...), or ``None`` when not stated."""
        return self._periods_per_year

    def __repr__(self) -> str:
        span = f"{self._dates[0]}..{self._dates[-1]}" if self._dates.size else "empty"
        return (f"UniversePanel(T={self.shape[0]}, A={self.shape[1]}, {span}, "
                f"fields={list(self._fields)})")

    # -- fields ------------------------------------------------------------------------------
    @property
    def open(self) -> FloatArray:
        return self._fields["open"]

    @property
    def high(self) -> FloatArray:
        return self._fields["high"]

    @property
    def low(self) -> FloatArray:
        return self._fields["low"]

    @property
    def close(self) -> FloatArray:
        return self._fields["close"]

    @property
    def volume(self) -> FloatArray:
        return self._fields["volume"]

    @property
    def mask(self) -> BoolArray:
        """``(T, A)`` point-in-time universe membership."""
        return self._mask

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(self._fields)

    def field(self, name: str) -> FloatArray:
        """Any field by name (standard or extra); PanelError naming the field if absent."""
        try:
            return self._fields[name]
        except KeyError:
            raise PanelError(f"panel has no field {name!r}; it has {list(self._fields)}",
                             field="name", value=name) from None

    def __getattr__(self, name: str) -> FloatArray:
        # Only reached for names that are not slots/properties: expose extra fields as attributes.
        fields = object.__getattribute__(self, "_fields")
        if name in fields:
            return fields[name]  # type: ignore[no-any-return]
        raise AttributeError(name)

    # -- selection ---------------------------------------------------------------------------
    def _columns(self, cols: npt.NDArray[np.intp]) -> UniversePanel:
        def cut(a: npt.NDArray[Any]) -> npt.NDArray[Any]:
            return a[:, cols]

        symbols = tuple(self._symbols[i] for i in cols)
        extra = {k: cut(v) for k, v in self._fields.items() if k not in OHLCV_FIELDS}
        return UniversePanel(
            self._dates, symbols,
            open=cut(self.open), high=cut(self.high), low=cut(self.low),
            close=cut(self.close), volume=cut(self.volume),
            mask=cut(self._mask), extra=extra, calendar=self._calendar,
            periods_per_year=self._periods_per_year,
        )

    def _rows(self, rows: slice) -> UniversePanel:
        """A row range as read-only *views* of this panel's buffers (no copy, no re-validation).

        Safe because every buffer is non-writeable and a slice of a validated panel is valid;
        this keeps per-date point-in-time evaluation (one ``until`` per date) cheap.
        """
        view = object.__new__(UniversePanel)
        view._dates = self._dates[rows]
        view._symbols = self._symbols
        view._fields = {k: v[rows] for k, v in self._fields.items()}
        view._mask = self._mask[rows]
        view._index = self._index
        view._calendar = self._calendar
        view._periods_per_year = self._periods_per_year
        return view

    def row_of(self, date: DateLike) -> int:
        """Row index of the last date ``<= date`` (-1 if ``date`` precedes the panel)."""
        return int(np.searchsorted(self._dates, to_day(date), side="right")) - 1

    def until(self, date: DateLike) -> UniversePanel:
        """Point-in-time view: every row dated on or before ``date``.

        This is what a factor may see when it is evaluated at ``date``.
        """
        return self._rows(slice(0, self.row_of(date) + 1))

    def head(self, rows: int) -> UniversePanel:
        """The first ``rows`` dates (``until`` by position)."""
        if rows < 0:
            raise PanelError("rows must be >= 0", field="rows", value=rows)
        return self._rows(slice(0, rows))

    def between(self, start: DateLike, end: DateLike) -> UniversePanel:
        """Rows with ``start <= date <= end``; PanelError if ``start`` is after ``end``."""
        lo, hi = to_day(start), to_day(end)
        if lo > hi:
            raise PanelError(f"start {lo} is after end {hi}", field="start", value=str(lo))
        i = int(np.searchsorted(self._dates, lo, side="left"))
        j = int(np.searchsorted(self._dates, hi, side="right"))
        return self._rows(slice(i, j))

    def select(self, symbols: Iterable[str]) -> UniversePanel:
        """Columns for ``symbols`` in the given order; PanelError naming any unknown symbol."""
        wanted = list(symbols)
        missing = [s for s in wanted if s not in self._index]
        if missing:
            raise PanelError(f"unknown symbols: {missing}", field="symbols", value=missing)
        cols = np.array([self._index[s] for s in wanted], dtype=np.intp)
        return self._columns(cols)

    def column(self, symbol: str) -> int:
        """Column index of ``symbol``; PanelError if absent."""
        try:
            return self._index[symbol]
        except KeyError:
            raise PanelError(f"unknown symbol {symbol!r}", field="symbol", value=symbol) from None
