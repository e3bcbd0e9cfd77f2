"""Market calendars: trading days, holidays, early closes and intraday session windows.

Why a wrapper around ``exchange_calendars``: holiday and early-close rules are maintained there (we
never hand-write holiday tables), but the stack needs more than the regular session: US equities
trade pre-market, post-market and (at IBKR) overnight, crypto trades around the clock and FX trades
24x5. :class:`MarketCalendar` turns one exchange calendar plus a session kind into windows
``[open, close)`` in UTC and answers ``is_open`` / ``next_open`` / ``next_close`` /
``sessions`` over them.

The session kinds are :class:`mts1b_foundation.enums.TradingSession`, the enum an order carries in
``Order.session``: one vocabulary for "when may this trade" and "when is that open", so a venue
asks the calendar about an order's own session with no mapping table in between. The name
``Session`` (with ``Session.X24X5`` and the lower-case strings ``"24h"`` / ``"24x5"``) is the
calendar's former enum, kept working for one release with a DeprecationWarning.

Session windows, for a trading day ``D`` of the calendar (times in the exchange's time zone, which
is America/New_York for ``XNYS``/``XNAS``):

========  ===========================================================================
RTH       the exchange's regular session, early closes included (09:30-16:00 ET, 13:00 on
          early-close days such as the day before Independence Day)
PRE       04:00 until the regular open
POST      the regular close until 20:00 (until 17:00 on early-close days, as NYSE Arca and
          Nasdaq do)
IBEOS     IBKR's overnight session: 20:00 on the calendar day before ``D`` until 03:50 on ``D``
          (so Sunday 20:00 - Monday 03:50 belongs to Monday); which symbols are eligible is
          the broker's list, not the calendar's
H24       crypto: every calendar day, 00:00-24:00 UTC (the ``24/7`` calendar)
H24X5     FX: Monday-Friday, each day ``D`` from 17:00 New York on the previous calendar day
          to 17:00 on ``D`` - the market opens Sunday 17:00 and closes Friday 17:00 New York time
========  ===========================================================================

For H24 and H24X5 the trading days come from exchange_calendars' ``24/7`` and ``24/5`` calendars,
whatever exchange the :class:`MarketCalendar` was built for. Every timestamp passed in must be
timezone-aware (naive datetimes are ambiguous and refused); every timestamp returned is UTC.

Lunch breaks: some exchanges stop trading in the middle of the regular session (Tokyo ``XTKS``
11:30-12:30, Hong Kong ``XHKG`` 12:00-13:00; none on Hong Kong's half days). exchange_calendars
records them per session, and here they split the RTH session in two: :meth:`windows` gives
``[open, break_start)`` and ``[break_end, close)``, :meth:`is_open` is False during the break
(as exchange_calendars' ``is_open_on_minute``), and :meth:`next_close` / :meth:`next_open` stop
at the break's start and end. :meth:`window` still gives the whole span from open to close, and
:meth:`break_of` the break itself. An order sent during the break would wait for the afternoon,
so a venue or a backtest that treated it as open would fill at prices that never traded.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar
from zoneinfo import ZoneInfo

import exchange_calendars as xc
import pandas as pd
from mts1b_foundation import MtsError
from mts1b_foundation.enums import TradingSession

__all__ = ["CalendarError", "MarketCalendar", "Session", "as_session"]

_NEW_YORK = ZoneInfo("America/New_York")
# exchange_calendars builds a calendar for a date range; this covers the research history the stack
# uses. Requests outside it rebuild the calendar with wider bounds (rules are date-driven).
_DEFAULT_START = dt.date(1990, 1, 1)
_SCAN_CHUNK_DAYS = 31
_MAX_SCAN_DAYS = 366


class CalendarError(MtsError, ValueError):
    """Unknown calendar, naive timestamp, or a date outside what the calendar can answer."""

    code: ClassVar[str] = "PLATFORM.CALENDAR"


_OLD_VALUES = {"24h": TradingSession.H24, "24x5": TradingSession.H24X5}
"""The former ``Session`` enum's lower-case values; TradingSession's are ``"24H"``/``"24X5"``."""
_OLD_NAMES = {"X24X5": "H24X5"}
"""The former enum's member names that TradingSession spells differently."""


def _deprecated(what: str, instead: str, *, stacklevel: int = 3) -> None:
    """Warn at the caller's line (``stacklevel`` counts this function and the one that
    detected the old spelling)."""
    warnings.warn(f"{what} is deprecated and goes in the next release; use {instead}",
                  DeprecationWarning, stacklevel=stacklevel)


def as_session(value: TradingSession | str) -> TradingSession:
    """The :class:`TradingSession` a calendar method was given.

    A TradingSession or its value (``"RTH"``, ``"24H"``) is taken as it is; the former enum's
    lower-case ``"24h"`` / ``"24x5"`` are still read, with a DeprecationWarning. Anything else
    is a :class:`CalendarError` naming the values that are accepted.
    """
    if isinstance(value, TradingSession):
        return value
    if isinstance(value, str):
        if value in _OLD_VALUES:
            _deprecated(f"the session string {value!r}",
                        f"TradingSession.{_OLD_VALUES[value].name}", stacklevel=4)
            return _OLD_VALUES[value]
        try:
            return TradingSession(value)
        except ValueError:
            pass
    raise CalendarError(f"unknown session {value!r}; expected one of "
                        f"{', '.join(s.value for s in TradingSession)}", value=repr(value))


class _SessionAliasType(type):
    """What makes the deprecated ``Session`` name behave like the former enum: members by
    their old names (``X24X5`` included), values through :func:`as_session`, ``isinstance`` and
    iteration over TradingSession."""

    def __getattr__(cls, name: str) -> TradingSession:
        if name in _OLD_NAMES:
            _deprecated(f"Session.{name}", f"TradingSession.{_OLD_NAMES[name]}")
            name = _OLD_NAMES[name]
        try:
            return TradingSession[name]
        except KeyError:
            raise AttributeError(name) from None

    def __call__(cls, value: TradingSession | str) -> TradingSession:
        return as_session(value)  # CalendarError is a ValueError, as the old enum raised

    def __getitem__(cls, name: str) -> TradingSession:
        if name in _OLD_NAMES:
            _deprecated(f"Session[{name!r}]", f"TradingSession[{_OLD_NAMES[name]!r}]")
        return TradingSession[_OLD_NAMES.get(name, name)]

    def __iter__(cls) -> Iterator[TradingSession]:
        return iter(TradingSession)

    def __len__(cls) -> int:
        return len(TradingSession)

    def __instancecheck__(cls, obj: object) -> bool:
        return isinstance(obj, TradingSession)


class _SessionAlias(metaclass=_SessionAliasType):
    """The former ``mts1b_platform.calendars.Session`` (see :class:`_SessionAliasType`)."""


if TYPE_CHECKING:
    Session = TradingSession
    """Deprecated: use :class:`mts1b_foundation.enums.TradingSession`."""


def __getattr__(name: str) -> Any:
    if name == "Session":
        _deprecated("mts1b_platform.calendars.Session",
                    "mts1b_foundation.enums.TradingSession")
        return _SessionAlias
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_PRE_START = dt.time(4, 0)
_POST_END = dt.time(20, 0)
_POST_END_EARLY = dt.time(17, 0)
_IBEOS_START = dt.time(20, 0)
_IBEOS_END = dt.time(3, 50)
_FX_ROLL = dt.time(17, 0)


@contextlib.contextmanager
def _quiet_block() -> Iterator[None]:
    """exchange_calendars 4.x still uses pandas APIs that pandas 3 deprecates (``Series.values``
    on tz-aware data); its results are right, so keep that deprecation noise out of our callers'
    logs and warnings-as-errors test runs."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        yield


@functools.lru_cache(maxsize=32)
def _xcal(name: str, start: dt.date, end: dt.date) -> Any:
    try:
        with _quiet_block():
            return xc.get_calendar(name, start=pd.Timestamp(start), end=pd.Timestamp(end))
    except xc.errors.InvalidCalendarName as exc:
        raise CalendarError(f"unknown calendar {name!r}", calendar=name) from exc
    except (ValueError, xc.errors.DateOutOfBounds) as exc:  # start before the calendar's bound
        raise CalendarError(f"calendar {name!r} cannot cover {start}..{end}: {exc}",
                            calendar=name, start=str(start), end=str(end)) from exc


def _utc(ts: dt.datetime | pd.Timestamp) -> dt.datetime:
    if isinstance(ts, pd.Timestamp):
        ts = ts.to_pydatetime()
    if not isinstance(ts, dt.datetime):
        raise CalendarError(f"expected a datetime, got {type(ts).__name__}", value=repr(ts))
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise CalendarError("timestamp must be timezone-aware (naive datetimes are refused)",
                            value=ts.isoformat())
    return ts.astimezone(dt.UTC)


def _as_date(value: dt.date | str | pd.Timestamp) -> dt.date:
    if isinstance(value, str):
        return dt.date.fromisoformat(value)
    if isinstance(value, pd.Timestamp):
        return dt.date(value.year, value.month, value.day)
    if isinstance(value, dt.datetime):
        return _utc(value).date()
    return value


class MarketCalendar:
    """One exchange's calendar (an ``exchange_calendars`` code, default ``XNYS``).

    >>> cal = MarketCalendar("XNYS")
    >>> cal.sessions("2024-11-27", "2024-11-29")      # Thanksgiving (Nov 28) is closed
    [datetime.date(2024, 11, 27), datetime.date(2024, 11, 29)]
    >>> cal.close_of("2024-07-03")                        # early close, 13:00 ET
    datetime.datetime(2024, 7, 3, 17, 0, tzinfo=datetime.timezone.utc)
    """

    def __init__(self, name: str = "XNYS") -> None:
        self.name = name
        self._end = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=366 * 2)
        try:
            self._start = _DEFAULT_START
            self._cal = _xcal(name, self._start, self._end)
        except CalendarError:
            if name not in xc.get_calendar_names():
                raise
            # This exchange's rules start after 1990: begin where exchange_calendars can.
            with _quiet_block():
                self._start = xc.get_calendar(name).first_session.date()
            self._cal = _xcal(name, self._start, self._end)

    def __repr__(self) -> str:
        return f"MarketCalendar({self.name!r})"

    @property
    def tz(self) -> ZoneInfo:
        """The exchange's time zone."""
        return ZoneInfo(str(self._cal.tz))

    # --- trading days -------------------------------------------------------------------------

    def _calendar_for(self, session: TradingSession) -> Any:
        if session is TradingSession.H24:
            return self._covering("24/7")
        if session is TradingSession.H24X5:
            return self._covering("24/5")
        return self._cal

    def _covering(self, name: str) -> Any:
        return _xcal(name, self._start, self._end)

    def _check_range(self, start: dt.date, end: dt.date) -> None:
        if start < self._start or end > self._end:
            new_start, new_end = min(start, self._start), max(end, self._end)
            old = self._start, self._end, self._cal
            self._start, self._end = new_start, new_end
            try:
                self._cal = _xcal(self.name, new_start, new_end)
            except CalendarError:
                self._start, self._end, self._cal = old
                raise

    def sessions(self, start: dt.date | str, end: dt.date | str,
                 session: TradingSession | str = TradingSession.RTH) -> list[dt.date]:
        """Trading days in ``[start, end]`` (both inclusive), in order.

        For RTH/PRE/POST/IBEOS these are the exchange's sessions (holidays excluded); for H24 every
        calendar day; for H24X5 Monday to Friday.
        """
        first, last = _as_date(start), _as_date(end)
        if last < first:
            return []
        self._check_range(first, last)
        cal = self._calendar_for(as_session(session))
        # The calendar was built from `first`, but its first session can fall later (a holiday
        # or weekend start), and exchange_calendars refuses dates outside its sessions: clamp.
        lo = max(pd.Timestamp(first), cal.first_session)
        hi = min(pd.Timestamp(last), cal.last_session)
        if hi < lo:
            return []
        with _quiet_block():
            idx = cal.sessions_in_range(lo, hi)
        return [ts.date() for ts in idx]

    def is_session(self, day: dt.date | str,
                   session: TradingSession | str = TradingSession.RTH) -> bool:
        """Whether ``day`` is a trading day."""
        d = _as_date(day)
        return bool(self.sessions(d, d, session))

    def holidays(self, start: dt.date | str, end: dt.date | str) -> list[dt.date]:
        """Weekdays of the exchange's week in ``[start, end]`` on which it does not trade."""
        first, last = _as_date(start), _as_date(end)
        if last < first:
            return []
        self._check_range(first, last)
        weekdays = pd.bdate_range(first, last, freq="C", weekmask=self._cal.weekmask)
        trading = set(self.sessions(first, last))
        return [ts.date() for ts in weekdays if ts.date() not in trading]

    def early_closes(self, start: dt.date | str, end: dt.date | str) -> list[dt.date]:
        """Sessions in ``[start, end]`` that close before the regular close time."""
        first, last = _as_date(start), _as_date(end)
        self._check_range(first, last)
        return [ts.date() for ts in self._cal.early_closes
                if first <= ts.date() <= last]

    def open_of(self, day: dt.date | str) -> dt.datetime:
        """Regular-session open of trading day ``day`` (UTC)."""
        return self._regular(_as_date(day))[0]

    def close_of(self, day: dt.date | str) -> dt.datetime:
        """Regular-session close of trading day ``day`` (UTC), early closes included."""
        return self._regular(_as_date(day))[1]

    def break_of(self, day: dt.date | str) -> tuple[dt.datetime, dt.datetime] | None:
        """The lunch break ``[start, end)`` (UTC) of trading day ``day``, or None when the
        exchange trades straight through that day (most exchanges; Hong Kong's half days)."""
        return self._schedule(_as_date(day))[2]

    def _schedule(self, day: dt.date, *, known_session: bool = False,
                  ) -> tuple[dt.datetime, dt.datetime, tuple[dt.datetime, dt.datetime] | None]:
        """``(open, close, break or None)`` of a trading day, from exchange_calendars'
        schedule (UTC). ``known_session``: the caller took ``day`` from :meth:`sessions`, so
        the range and the trading-day checks are already done."""
        if not known_session:
            self._check_range(day, day)
            if not self.is_session(day):
                raise CalendarError(f"{day} is not a trading day of {self.name}",
                                    calendar=self.name, day=str(day))
        with _quiet_block():
            row = self._cal.schedule.loc[pd.Timestamp(day)]
        open_ = row["open"].to_pydatetime().astimezone(dt.UTC)
        close = row["close"].to_pydatetime().astimezone(dt.UTC)
        pause: tuple[dt.datetime, dt.datetime] | None = None
        start, end = row.get("break_start"), row.get("break_end")
        if start is not None and end is not None and not (pd.isna(start) or pd.isna(end)):
            pause = (start.to_pydatetime().astimezone(dt.UTC),
                     end.to_pydatetime().astimezone(dt.UTC))
        return open_, close, pause

    def _regular(self, day: dt.date) -> tuple[dt.datetime, dt.datetime]:
        open_, close, _pause = self._schedule(day)
        return open_, close

    # --- intraday windows ---------------------------------------------------------------------

    def window(self, day: dt.date | str, session: TradingSession | str = TradingSession.RTH,
               ) -> tuple[dt.datetime, dt.datetime]:
        """The ``[open, close)`` span (UTC) of ``session`` for trading day ``day``.

        For RTH on an exchange with a lunch break the span includes the break; :meth:`windows`
        gives the intervals in which the exchange actually trades.
        """
        d, kind = _as_date(day), as_session(session)
        if not self.is_session(d, kind):
            raise CalendarError(f"{d} is not a {kind.value} trading day of {self.name}",
                                calendar=self.name, day=str(d), session=kind.value)
        return self._window(d, kind)

    def windows(self, day: dt.date | str, session: TradingSession | str = TradingSession.RTH,
                ) -> list[tuple[dt.datetime, dt.datetime]]:
        """The ``[open, close)`` trading intervals (UTC) of ``session`` on trading day ``day``,
        in order: one, or two for RTH on a day with a lunch break (the morning up to the break's
        start, the afternoon from its end)."""
        d, kind = _as_date(day), as_session(session)
        if not self.is_session(d, kind):
            raise CalendarError(f"{d} is not a {kind.value} trading day of {self.name}",
                                calendar=self.name, day=str(d), session=kind.value)
        return self._split_windows(d, kind)

    def _split_windows(self, d: dt.date,
                       kind: TradingSession) -> list[tuple[dt.datetime, dt.datetime]]:
        if kind is not TradingSession.RTH:
            return [self._window(d, kind)]
        open_, close, pause = self._schedule(d, known_session=True)
        if pause is None:
            return [(open_, close)]
        start, end = pause
        return [w for w in ((open_, min(start, close)), (max(end, open_), close)) if w[0] < w[1]]

    def _window(self, d: dt.date, kind: TradingSession) -> tuple[dt.datetime, dt.datetime]:
        tz = self.tz
        if kind is TradingSession.H24:
            start = dt.datetime.combine(d, dt.time(0), dt.UTC)
            return start, start + dt.timedelta(days=1)
        if kind is TradingSession.H24X5:
            prev = d - dt.timedelta(days=1)
            return (dt.datetime.combine(prev, _FX_ROLL, _NEW_YORK).astimezone(dt.UTC),
                    dt.datetime.combine(d, _FX_ROLL, _NEW_YORK).astimezone(dt.UTC))
        if kind is TradingSession.IBEOS:
            prev = d - dt.timedelta(days=1)
            return (dt.datetime.combine(prev, _IBEOS_START, tz).astimezone(dt.UTC),
                    dt.datetime.combine(d, _IBEOS_END, tz).astimezone(dt.UTC))
        open_, close = self._regular(d)
        if kind is TradingSession.RTH:
            return open_, close
        if kind is TradingSession.PRE:
            return dt.datetime.combine(d, _PRE_START, tz).astimezone(dt.UTC), open_
        early = close.astimezone(tz).time() < self._regular_close_time(d)
        end = _POST_END_EARLY if early else _POST_END
        return close, dt.datetime.combine(d, end, tz).astimezone(dt.UTC)

    def _regular_close_time(self, d: dt.date) -> dt.time:
        close_time: dt.time = dt.time(23, 59)
        for since, t in self._cal.close_times:
            if since is None or pd.Timestamp(since).date() <= d:
                close_time = t
        return close_time

    def _windows_from(self, day: dt.date, kind: TradingSession) -> Iterator[tuple[dt.datetime,
                                                                            dt.datetime]]:
        """Windows of trading days from ``day`` on, in order (scans ahead in chunks)."""
        cursor = day
        while cursor <= day + dt.timedelta(days=_MAX_SCAN_DAYS):
            chunk_end = cursor + dt.timedelta(days=_SCAN_CHUNK_DAYS)
            for d in self.sessions(cursor, chunk_end, kind):
                yield from self._split_windows(d, kind)
            cursor = chunk_end + dt.timedelta(days=1)
        raise CalendarError(f"{self.name} has no {kind.value} session within "
                            f"{_MAX_SCAN_DAYS} days after {day}", calendar=self.name)

    def is_open(self, ts: dt.datetime | pd.Timestamp,
                session: TradingSession | str = TradingSession.RTH) -> bool:
        """Whether ``session`` is open at ``ts`` (windows ``[open, close)``; False during a
        lunch break, as exchange_calendars' ``is_open_on_minute``)."""
        t, kind = _utc(ts), as_session(session)
        # A window belongs to a trading day that is at most one calendar day after ts's date.
        start = t.date() - dt.timedelta(days=1)
        for d in self.sessions(start, t.date() + dt.timedelta(days=1), kind):
            for open_, close in self._split_windows(d, kind):
                if open_ <= t < close:
                    return True
        return False

    def next_open(self, ts: dt.datetime | pd.Timestamp,
                  session: TradingSession | str = TradingSession.RTH) -> dt.datetime:
        """The first window open strictly after ``ts`` (UTC); the end of a lunch break is one."""
        t, kind = _utc(ts), as_session(session)
        for open_, _close in self._windows_from(t.date() - dt.timedelta(days=1), kind):
            if open_ > t:
                return open_
        raise AssertionError("unreachable: _windows_from raises when it runs out")

    def next_close(self, ts: dt.datetime | pd.Timestamp,
                   session: TradingSession | str = TradingSession.RTH) -> dt.datetime:
        """The first window close strictly after ``ts`` (UTC); the start of a lunch break is
        one."""
        t, kind = _utc(ts), as_session(session)
        for _open, close in self._windows_from(t.date() - dt.timedelta(days=1), kind):
            if close > t:
                return close
        raise AssertionError("unreachable: _windows_from raises when it runs out")
