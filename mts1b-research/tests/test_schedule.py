"""Rebalance times on the XNYS calendar: normal days, half days, holidays, week and month ends,
daylight-saving changes, and every malformed spec refused naming ``rebalance``."""

from __future__ import annotations

import datetime as dt
import itertools
from zoneinfo import ZoneInfo

import pytest
from mts1b_research.errors import ResearchInputError
from mts1b_research.schedule import (
    Rebalance,
    next_rebalance,
    parse_rebalance,
    rebalance_times,
)

NY = ZoneInfo("America/New_York")
UTC = dt.UTC


def ny(y: int, m: int, d: int, hh: int, mm: int = 0) -> dt.datetime:
    return dt.datetime(y, m, d, hh, mm, tzinfo=NY)


def test_parse_forms() -> None:
    assert parse_rebalance("daily") == Rebalance("daily", "session", "close", dt.timedelta(0))
    assert parse_rebalance("close-15m").offset == -dt.timedelta(minutes=15)
    assert parse_rebalance("close-2h").offset == -dt.timedelta(hours=2)
    assert parse_rebalance("open+30m") == Rebalance("open+30m", "session", "open",
                                                    dt.timedelta(minutes=30))
    assert parse_rebalance("weekly").every == "week"
    assert parse_rebalance("monthly").every == "month"


def test_normal_day_close_minus_15m() -> None:
    # Tuesday 2026-11-24, a regular session 09:30-16:00 ET
    got = next_rebalance("close-15m", ny(2026, 11, 24, 10))
    assert got == ny(2026, 11, 24, 15, 45)
    assert got.tzinfo == UTC
    assert next_rebalance("daily", ny(2026, 11, 24, 10)) == ny(2026, 11, 24, 16)
    assert next_rebalance("open+30m", ny(2026, 11, 24, 9)) == ny(2026, 11, 24, 10)


def test_strictly_after_moves_to_the_next_session() -> None:
    fired = ny(2026, 11, 24, 15, 45)
    assert next_rebalance("close-15m", fired) == ny(2026, 11, 25, 15, 45)
    assert next_rebalance("close-15m", fired - dt.timedelta(microseconds=1)) == fired


def test_early_close_day_after_thanksgiving() -> None:
    # 2026-11-26 is Thanksgiving (closed); 2026-11-27 closes at 13:00 ET
    after = ny(2026, 11, 25, 16, 30)
    assert next_rebalance("close-15m", after) == ny(2026, 11, 27, 12, 45)
    assert next_rebalance("daily", after) == ny(2026, 11, 27, 13)
    assert next_rebalance("close-1h", after) == ny(2026, 11, 27, 12)


def test_offset_longer_than_a_half_day_is_clamped_to_the_session() -> None:
    after = ny(2026, 11, 27, 0)
    assert next_rebalance("close-4h", after) == ny(2026, 11, 27, 9, 30)  # open, not 09:00
    assert next_rebalance("open+5h", after) == ny(2026, 11, 27, 13)  # close, not 14:30
    assert next_rebalance("open+5h", ny(2026, 11, 30, 0)) == ny(2026, 11, 30, 14, 30)


def test_holidays_are_skipped() -> None:
    times = rebalance_times("close-15m", dt.date(2026, 11, 23), dt.date(2026, 11, 30))
    days = [t.astimezone(NY).date() for t in times]
    assert dt.date(2026, 11, 26) not in days
    assert days == [dt.date(2026, 11, d) for d in (23, 24, 25, 27, 30)]
    # the weekend and Christmas: the next rebalance after Thursday 24 Dec 2026's close (a half
    # day) is on Monday the 28th (Friday 25th is the holiday)
    assert next_rebalance("daily", ny(2026, 12, 24, 13)) == ny(2026, 12, 28, 16)


def test_weekly_takes_the_last_session_of_each_week() -> None:
    times = rebalance_times("weekly", dt.date(2026, 3, 23), dt.date(2026, 4, 12))
    # Good Friday 2026-04-03 is a holiday: that week ends on Thursday the 2nd
    assert [t.astimezone(NY) for t in times] == [ny(2026, 3, 27, 16), ny(2026, 4, 2, 16),
                                                 ny(2026, 4, 10, 16)]
    # Thanksgiving week ends on the 13:00 half day
    assert next_rebalance("weekly", ny(2026, 11, 23, 0)) == ny(2026, 11, 27, 13)


def test_monthly_takes_the_last_session_of_each_month() -> None:
    times = rebalance_times("monthly", dt.date(2026, 1, 1), dt.date(2026, 12, 31))
    assert len(times) == 12
    assert [t.astimezone(NY) for t in times[:3]] == [ny(2026, 1, 30, 16), ny(2026, 2, 27, 16),
                                                     ny(2026, 3, 31, 16)]
    assert times[-1] == ny(2026, 12, 31, 16)
    # from the last session of a month at its close (strictly after): the next month's
    assert next_rebalance("monthly", ny(2026, 10, 30, 16)) == ny(2026, 11, 30, 16)
    assert next_rebalance("monthly", ny(2026, 10, 30, 15, 59)) == ny(2026, 10, 30, 16)


def test_daylight_saving_changes_keep_new_york_wall_time() -> None:
    # US DST starts Sunday 2026-03-08 and ends Sunday 2026-11-01
    spring = rebalance_times("close-15m", dt.date(2026, 3, 6), dt.date(2026, 3, 9))
    assert [t.hour for t in spring] == [20, 19]  # UTC: 15:45 EST = 20:45Z, 15:45 EDT = 19:45Z
    assert all(t.astimezone(NY).time() == dt.time(15, 45) for t in spring)
    fall = rebalance_times("open+30m", dt.date(2026, 10, 30), dt.date(2026, 11, 2))
    assert [t.hour for t in fall] == [14, 15]  # 10:00 EDT = 14:00Z, 10:00 EST = 15:00Z
    assert all(t.astimezone(NY).time() == dt.time(10, 0) for t in fall)


def test_rebalance_times_datetime_bounds_are_inclusive_instants() -> None:
    start, end = ny(2026, 11, 24, 15, 45), ny(2026, 11, 25, 15, 45)
    assert rebalance_times("close-15m", start, end) == [start, end]
    assert rebalance_times("close-15m", start + dt.timedelta(seconds=1), end) == [end]
    assert rebalance_times("daily", dt.date(2026, 11, 30), dt.date(2026, 11, 23)) == []
    assert rebalance_times("daily", dt.date(2026, 11, 26), dt.date(2026, 11, 26)) == []


def test_next_agrees_with_the_listed_times() -> None:
    times = rebalance_times("close-15m", dt.date(2026, 6, 1), dt.date(2026, 7, 31))
    for earlier, later in itertools.pairwise(times):
        assert next_rebalance("close-15m", earlier) == later


@pytest.mark.parametrize("bad", [
    "", "Daily", "daily ", " weekly", "hourly", "yearly", "close", "open", "close-", "open+",
    "close-0m", "close-15", "close-15s", "close-90sec", "close+15m", "open-30m", "close-015m",
    "close-1.5h", "close--15m", "close-15M", "open+24h", "close-1440m", "close-99999m",
    "close-15m\n", "close-\u0661\u0665m", "weekly-15m",
])
def test_bad_specs_are_refused_naming_rebalance(bad: str) -> None:
    with pytest.raises(ResearchInputError) as info:
        parse_rebalance(bad)
    assert info.value.context["field"] == "rebalance"
    assert info.value.context["value"] == repr(bad)
    with pytest.raises(ResearchInputError):
        next_rebalance(bad, ny(2026, 11, 24, 10))
    with pytest.raises(ResearchInputError):
        rebalance_times(bad, dt.date(2026, 11, 23), dt.date(2026, 11, 24))


@pytest.mark.parametrize("bad", [None, 15, b"daily", ["daily"]])
def test_non_text_specs_are_refused(bad: object) -> None:
    with pytest.raises(ResearchInputError) as info:
        parse_rebalance(bad)  # type: ignore[arg-type]
    assert info.value.context["field"] == "rebalance"


def test_naive_datetimes_and_unknown_calendars_are_refused() -> None:
    naive = ny(2026, 11, 24, 10).replace(tzinfo=None)
    with pytest.raises(ResearchInputError) as info:
        next_rebalance("daily", naive)
    assert info.value.context["field"] == "after"
    with pytest.raises(ResearchInputError) as info:
        rebalance_times("daily", naive, dt.date(2026, 11, 25))
    assert info.value.context["field"] == "start"
    with pytest.raises(ResearchInputError) as info:
        next_rebalance("daily", ny(2026, 11, 24, 10), calendar="NOPE")
    assert info.value.context["field"] == "calendar"
