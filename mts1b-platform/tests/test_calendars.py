"""MarketCalendar on real dates: holidays, early closes and every session kind."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import warnings
from collections.abc import Iterator
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from mts1b_foundation import TradingSession
from mts1b_foundation import TradingSession as S
from mts1b_platform.calendars import CalendarError, MarketCalendar, as_session

ET = ZoneInfo("America/New_York")


def et(year: int, month: int, day: int, hour: int, minute: int) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=ET)


@pytest.fixture(scope="module")
def nyse() -> MarketCalendar:
    return MarketCalendar("XNYS")


def test_thanksgiving_is_closed(nyse: MarketCalendar) -> None:
    assert nyse.sessions("2024-11-27", "2024-11-29") == [dt.date(2024, 11, 27),
                                                         dt.date(2024, 11, 29)]
    assert not nyse.is_session("2024-11-28")
    assert not nyse.is_open(et(2024, 11, 28, 11, 0))
    assert not nyse.is_open(et(2024, 11, 28, 6, 0), TradingSession.PRE)


def test_early_close_before_independence_day(nyse: MarketCalendar) -> None:
    assert nyse.close_of("2024-07-03") == et(2024, 7, 3, 13, 0)
    assert nyse.is_open(et(2024, 7, 3, 12, 59))
    assert not nyse.is_open(et(2024, 7, 3, 13, 0))
    assert nyse.next_open(et(2024, 7, 3, 13, 0)) == et(2024, 7, 5, 9, 30)  # July 4 closed
    # Post-market on an early-close day runs 13:00-17:00 ET.
    assert nyse.window("2024-07-03", S.POST) == (et(2024, 7, 3, 13, 0), et(2024, 7, 3, 17, 0))
    assert dt.date(2024, 7, 3) in nyse.early_closes("2024-01-01", "2024-12-31")


def test_regular_day_windows(nyse: MarketCalendar) -> None:
    day = "2024-03-12"
    assert nyse.window(day, TradingSession.RTH) == (et(2024, 3, 12, 9, 30), et(2024, 3, 12, 16, 0))
    assert nyse.window(day, TradingSession.PRE) == (et(2024, 3, 12, 4, 0), et(2024, 3, 12, 9, 30))
    assert nyse.window(day, TradingSession.POST) == (et(2024, 3, 12, 16, 0), et(2024, 3, 12, 20, 0))
    assert nyse.window(day, S.IBEOS) == (et(2024, 3, 11, 20, 0), et(2024, 3, 12, 3, 50))
    assert nyse.is_open(et(2024, 3, 12, 9, 29), TradingSession.PRE)
    assert not nyse.is_open(et(2024, 3, 12, 9, 30), TradingSession.PRE)
    assert nyse.is_open(et(2024, 3, 12, 9, 30))
    assert nyse.next_close(et(2024, 3, 12, 10, 0)) == et(2024, 3, 12, 16, 0)
    assert nyse.next_close(et(2024, 3, 12, 17, 0), TradingSession.POST) == et(2024, 3, 12, 20, 0)


def test_session_counts_2013_2018(nyse: MarketCalendar) -> None:
    days = nyse.sessions(dt.date(2013, 1, 1), dt.date(2018, 12, 31))
    assert len(days) == 1510
    assert days[0] == dt.date(2013, 1, 2)
    assert days[-1] == dt.date(2018, 12, 31)
    # Hurricane Sandy (2012) is before; the 2018-12-05 Bush day of mourning is an ad-hoc holiday.
    assert dt.date(2018, 12, 5) not in days
    assert dt.date(2018, 12, 5) in nyse.holidays("2018-12-01", "2018-12-31")
    assert [len(nyse.sessions(f"{y}-01-01", f"{y}-12-31")) for y in (2013, 2014)] == [252, 252]


def test_holidays_2024(nyse: MarketCalendar) -> None:
    assert nyse.holidays("2024-01-01", "2024-12-31") == [
        dt.date(2024, 1, 1), dt.date(2024, 1, 15), dt.date(2024, 2, 19), dt.date(2024, 3, 29),
        dt.date(2024, 5, 27), dt.date(2024, 6, 19), dt.date(2024, 7, 4), dt.date(2024, 9, 2),
        dt.date(2024, 11, 28), dt.date(2024, 12, 25)]


def test_ibeos_overnight(nyse: MarketCalendar) -> None:
    assert nyse.is_open(et(2024, 11, 24, 21, 0), TradingSession.IBEOS)      # Sunday night -> Monday
    assert not nyse.is_open(et(2024, 11, 23, 21, 0), TradingSession.IBEOS)  # Saturday night
    assert nyse.is_open(et(2024, 11, 25, 3, 49), TradingSession.IBEOS)
    assert not nyse.is_open(et(2024, 11, 25, 3, 50), TradingSession.IBEOS)
    # The night before Thanksgiving belongs to no session; the night after belongs to Friday.
    assert not nyse.is_open(et(2024, 11, 27, 22, 0), TradingSession.IBEOS)
    assert nyse.is_open(et(2024, 11, 28, 22, 0), TradingSession.IBEOS)
    assert nyse.next_open(et(2024, 11, 23, 12, 0), TradingSession.IBEOS) == et(2024, 11, 24, 20, 0)


def test_crypto_24h_and_fx_24x5(nyse: MarketCalendar) -> None:
    saturday = dt.datetime(2024, 11, 23, 12, 0, tzinfo=dt.UTC)
    assert nyse.is_open(saturday, TradingSession.H24)
    assert nyse.is_open(et(2024, 11, 28, 12, 0), TradingSession.H24)  # holidays do not apply
    assert len(nyse.sessions("2024-01-01", "2024-12-31", TradingSession.H24)) == 366
    assert nyse.next_open(saturday, TradingSession.H24) == dt.datetime(2024, 11, 24, tzinfo=dt.UTC)
    # FX: closed from Friday 17:00 to Sunday 17:00 New York time.
    assert nyse.is_open(et(2024, 11, 22, 16, 59), TradingSession.H24X5)
    assert not nyse.is_open(et(2024, 11, 22, 17, 0), TradingSession.H24X5)
    assert not nyse.is_open(saturday, TradingSession.H24X5)
    assert nyse.next_open(saturday, TradingSession.H24X5) == et(2024, 11, 24, 17, 0)
    assert nyse.is_open(et(2024, 11, 28, 12, 0), TradingSession.H24X5)
    assert len(nyse.sessions("2024-01-01", "2024-12-31", TradingSession.H24X5)) == 262


def test_daylight_saving_switch(nyse: MarketCalendar) -> None:
    # 2024-03-08 (EST, UTC-5) and 2024-03-11 (EDT, UTC-4): the open stays 09:30 local.
    assert nyse.open_of("2024-03-08") == dt.datetime(2024, 3, 8, 14, 30, tzinfo=dt.UTC)
    assert nyse.open_of("2024-03-11") == dt.datetime(2024, 3, 11, 13, 30, tzinfo=dt.UTC)


def test_other_exchange_and_old_dates() -> None:
    lse = MarketCalendar("XLON")
    assert lse.close_of("2024-12-24") == dt.datetime(2024, 12, 24, 12, 30, tzinfo=dt.UTC)
    nyse = MarketCalendar()
    assert len(nyse.sessions("1995-01-01", "1995-12-31")) == 252


def test_refusals(nyse: MarketCalendar) -> None:
    with pytest.raises(CalendarError, match="timezone-aware"):
        nyse.is_open(dt.datetime(2024, 3, 12, 10, 0))  # noqa: DTZ001
    with pytest.raises(CalendarError, match="unknown calendar"):
        MarketCalendar("NOPE")
    with pytest.raises(CalendarError, match="not a trading day"):
        nyse.close_of("2024-11-28")
    assert nyse.sessions("2024-01-05", "2024-01-01") == []


def test_range_starting_on_a_holiday_before_any_session_is_clamped() -> None:
    # A fresh calendar built from 1990-01-01 (New Year's Day) has its first session on Jan 2;
    # asking from the holiday must give the sessions, not exchange_calendars' out-of-bounds error.
    cal = MarketCalendar("XNYS")
    assert cal.sessions("1990-01-01", "1990-01-03") == [dt.date(1990, 1, 2), dt.date(1990, 1, 3)]
    assert cal.sessions("1990-01-01", "1990-01-01") == []


# -- lunch breaks ---------------------------------------------------------------------------------
# exchange_calendars' own tests (tests/test_exchange_calendar.py, ``test_is_open_on_minute`` and
# ``test_is_break_minute``, run for XTKS and XHKG through tests/test_xtks_calendar.py and
# tests/test_xhkg_calendar.py) check that every break minute is closed and every trading minute
# open, against the answers in tests/resources/xtks.csv and xhkg.csv. The same checks here ask
# exchange_calendars itself, in this process, minute by minute.
TOKYO = ZoneInfo("Asia/Tokyo")
HONG_KONG = ZoneInfo("Asia/Hong_Kong")


@pytest.fixture(scope="module")
def xtks() -> MarketCalendar:
    return MarketCalendar("XTKS")


@pytest.fixture(scope="module")
def xhkg() -> MarketCalendar:
    return MarketCalendar("XHKG")


@functools.cache
def _xcal(name: str):  # type: ignore[no-untyped-def]
    """exchange_calendars' own calendar, built once per test session (a build takes ~1 s)."""
    import exchange_calendars as xc
    import pandas as pd

    with _no_warnings():
        return xc.get_calendar(name, start=pd.Timestamp("2011-01-01"))


@pytest.mark.parametrize(("name", "days"), [
    # Tokyo: 09:00-11:30 and 12:30-15:00 JST, 15:30 from 2024-11-05 (the answers file's rows)
    ("XTKS", ["2012-03-05", "2024-11-01", "2024-11-05", "2024-12-30"]),
    # Hong Kong: 09:30-12:00 and 13:00-16:00 HKT; 2024-12-24 is a half day without a break; the
    # morning session opened at 10:00 until 2011-03-04 and at 09:30 from 2011-03-07
    ("XHKG", ["2011-03-04", "2011-03-07", "2024-12-23", "2024-12-24", "2024-12-27"]),
])
def test_is_open_matches_exchange_calendars_minute_by_minute(name: str, days: list[str]) -> None:
    """exchange_calendars ``test_is_open_on_minute``: break minutes are closed."""
    import pandas as pd

    cal, ref = MarketCalendar(name), _xcal(name)  # MarketCalendar's build is cached too
    for day in days:
        # from 08:00 to 17:00 local time (the trading day and either side): every quarter hour,
        # and every minute within 10 minutes of the open, the break and the close
        start = (pd.Timestamp(day, tz=cal.tz) + pd.Timedelta(hours=8)).tz_convert("UTC")
        every = pd.date_range(start, periods=9 * 60, freq="min")
        with _no_warnings():
            row = ref.schedule.loc[pd.Timestamp(day)]
        near = np.zeros(len(every), dtype=bool)
        for edge in row.dropna():  # open, break start and end, close (UTC)
            near |= np.abs((every - edge).total_seconds()) <= 600
        minutes = every[near | (np.arange(len(every)) % 15 == 0)]
        with _no_warnings():
            expected = [bool(ref.is_open_on_minute(m)) for m in minutes]
        got = [cal.is_open(m.to_pydatetime()) for m in minutes]
        assert got == expected, day
        assert any(expected)


@contextlib.contextmanager
def _no_warnings() -> Iterator[None]:
    """exchange_calendars 4.x still calls pandas APIs that pandas 3 deprecates."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def test_break_of_and_split_windows_match_the_schedule(xtks: MarketCalendar,
                                                       xhkg: MarketCalendar) -> None:
    """exchange_calendars ``test_opens_closes_break_starts_ends`` and ``test_session_has_break``:
    every session's open, break start, break end and close, here against its schedule."""
    import pandas as pd

    for cal in (xtks, xhkg):
        ref = _xcal(cal.name)
        with _no_warnings():
            schedule = ref.schedule.loc["2024-01-01":"2024-12-31"]
        assert len(schedule) > 240
        for day, row in schedule.iterrows():
            d = day.date()
            windows = cal.windows(d)
            if pd.isna(row["break_start"]):
                assert cal.break_of(d) is None
                assert windows == [(row["open"].to_pydatetime(), row["close"].to_pydatetime())]
            else:
                pause = (row["break_start"].to_pydatetime(), row["break_end"].to_pydatetime())
                assert cal.break_of(d) == pause
                assert windows == [(row["open"].to_pydatetime(), pause[0]),
                                   (pause[1], row["close"].to_pydatetime())]
            assert cal.window(d) == (windows[0][0], windows[-1][1])


def test_tokyo_lunch_break(xtks: MarketCalendar) -> None:
    def jst(day: int, hour: int, minute: int) -> dt.datetime:
        return dt.datetime(2024, 11, day, hour, minute, tzinfo=TOKYO)

    assert xtks.break_of("2024-11-05") == (jst(5, 11, 30), jst(5, 12, 30))
    assert xtks.windows("2024-11-05") == [(jst(5, 9, 0), jst(5, 11, 30)),
                                          (jst(5, 12, 30), jst(5, 15, 30))]
    assert xtks.is_open(jst(5, 11, 29))
    assert not xtks.is_open(jst(5, 11, 30))
    assert not xtks.is_open(jst(5, 12, 29))
    assert xtks.is_open(jst(5, 12, 30))
    assert xtks.next_close(jst(5, 10, 0)) == jst(5, 11, 30)
    assert xtks.next_open(jst(5, 11, 45)) == jst(5, 12, 30)
    assert xtks.next_close(jst(5, 11, 45)) == jst(5, 15, 30)
    assert xtks.next_open(jst(5, 13, 0)) == jst(6, 9, 0)


def test_hong_kong_lunch_break_and_half_day(xhkg: MarketCalendar) -> None:
    def hkt(day: int, hour: int, minute: int) -> dt.datetime:
        return dt.datetime(2024, 12, day, hour, minute, tzinfo=HONG_KONG)

    assert xhkg.windows("2024-12-23") == [(hkt(23, 9, 30), hkt(23, 12, 0)),
                                          (hkt(23, 13, 0), hkt(23, 16, 0))]
    assert not xhkg.is_open(hkt(23, 12, 30))
    assert xhkg.next_open(hkt(23, 12, 0)) == hkt(23, 13, 0)
    # Christmas Eve is a half day: one morning window, no break
    assert xhkg.break_of("2024-12-24") is None
    assert xhkg.windows("2024-12-24") == [(hkt(24, 9, 30), hkt(24, 12, 0))]
    assert xhkg.next_close(hkt(24, 10, 0)) == hkt(24, 12, 0)
    assert xhkg.next_open(hkt(24, 12, 0)) == hkt(27, 9, 30)


def test_exchanges_without_a_break_have_one_window(nyse: MarketCalendar) -> None:
    assert nyse.break_of("2024-03-12") is None
    assert nyse.windows("2024-03-12") == [nyse.window("2024-03-12")]
    assert nyse.windows("2024-03-12", S.POST) == [nyse.window("2024-03-12", S.POST)]
    with pytest.raises(CalendarError, match="not a RTH trading day"):
        nyse.windows("2024-11-28")


def test_an_orders_session_is_what_the_calendar_answers_for(nyse: MarketCalendar) -> None:
    """One enum: the wire's TradingSession (and its values) goes straight to the calendar."""
    night = et(2024, 11, 24, 21, 0)
    assert nyse.is_open(night, TradingSession.IBEOS)
    assert nyse.is_open(night, "IBEOS") and nyse.is_open(night, "24X5")
    assert as_session("24H") is TradingSession.H24
    with pytest.raises(CalendarError, match="unknown session 'overnight'"):
        nyse.is_open(night, "overnight")


def test_the_former_session_names_work_with_a_deprecation_warning(nyse: MarketCalendar) -> None:
    import mts1b_platform.calendars as calendars

    saturday = dt.datetime(2024, 11, 23, 12, 0, tzinfo=dt.UTC)
    with pytest.warns(DeprecationWarning, match="calendars.Session is deprecated"):
        old = calendars.Session
    with pytest.warns(DeprecationWarning, match=r"Session\.X24X5 is deprecated"):
        assert old.X24X5 is TradingSession.H24X5
    with pytest.warns(DeprecationWarning, match=r"Session\['X24X5'\] is deprecated"):
        assert old["X24X5"] is TradingSession.H24X5
    assert old.RTH is TradingSession.RTH and isinstance(TradingSession.PRE, old)
    assert list(old) == list(TradingSession)
    with pytest.warns(DeprecationWarning, match="'24h' is deprecated"):
        assert old("24h") is TradingSession.H24
    with pytest.warns(DeprecationWarning, match="'24x5' is deprecated"):
        assert not nyse.is_open(saturday, "24x5")
    with pytest.warns(DeprecationWarning, match="'24h' is deprecated"):
        assert nyse.sessions("2024-11-23", "2024-11-24", "24h") == [dt.date(2024, 11, 23),
                                                                    dt.date(2024, 11, 24)]
    with pytest.raises(ValueError, match="unknown session"):
        old("weekend")
