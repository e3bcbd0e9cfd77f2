"""Calendar-aware rebalance times: when a strategy's signal is computed and published.

A strategy's ``rebalance`` names its times relative to the exchange's regular session:

=================  =========================================================================
``daily``          every session, at the close
``close-<N>m``     every session, ``N`` minutes before the close (``close-15m``); ``<N>h``: hours
``open+<N>m``      every session, ``N`` minutes after the open (``open+30m``); ``<N>h``: hours
``weekly``         the last session of each week (Monday-Sunday), at the close
``monthly``        the last session of each month, at the close
=================  =========================================================================

Why the times come from :class:`mts1b_platform.calendars.MarketCalendar` rather than a fixed
clock time: a signal computed at "15:45 ET" would be 15 minutes *after* the close on a 13:00 half
day (the day after Thanksgiving) and would fire on holidays. Anchoring on each session's own
open and close moves ``close-15m`` to 12:45 ET on half days, skips holidays, and follows daylight
saving time (the returned instants are UTC; 16:00 ET is 21:00 UTC in winter, 20:00 in summer).

An offset longer than a session (``close-4h`` on a 3.5-hour half day) is clamped to the session:
a rebalance always happens while the market is open, never before its open or after its close.
"Last session of the week/month" is judged by the calendar, so a week whose Friday is a holiday
rebalances on Thursday.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import re
from typing import Literal

from mts1b_platform.calendars import CalendarError, MarketCalendar

from mts1b_research.errors import ResearchInputError

__all__ = ["Rebalance", "next_rebalance", "parse_rebalance", "rebalance_times"]

Anchor = Literal["open", "close"]
Every = Literal["session", "week", "month"]

# fullmatch, not "^...$": "$" also matches before a trailing newline ("close-15m\n")
_OFFSET = re.compile(r"(?P<anchor>close-|open\+)(?P<n>[1-9][0-9]{0,4})(?P<unit>[mh])")
_MAX_OFFSET = dt.timedelta(hours=24)
_NAMED: dict[str, Every] = {"daily": "session", "weekly": "week", "monthly": "month"}
_FORMS = "'daily', 'weekly', 'monthly', 'close-<N>m', 'close-<N>h', 'open+<N>m' or 'open+<N>h'"
# How far past a rebalance window a search looks for the next session: a month's last session is
# at most ~31 days away; the margin covers any holiday run an exchange calendar knows.
_SEARCH_DAYS = 62


@dataclasses.dataclass(frozen=True)
class Rebalance:
    """A parsed ``rebalance`` spec: which sessions (``every``) and when in them.

    ``anchor`` is the session's ``"open"`` or ``"close"``; ``offset`` is added to it (negative
    before the close, positive after the open). ``text`` keeps the spec as written.
    """

    text: str
    every: Every
    anchor: Anchor
    offset: dt.timedelta


def parse_rebalance(rebalance: str) -> Rebalance:
    """Parse a ``rebalance`` spec (see the module docstring); ResearchInputError naming
    ``rebalance`` and the value for anything else.

    Why strict (no spaces, no ``close-0m``, no seconds): the spec is stored in the registry and
    compared as text; one spelling per schedule keeps two strategies on the same times equal.
    """
    if not isinstance(rebalance, str):
        raise ResearchInputError("rebalance", rebalance, f"must be one of {_FORMS}")
    if rebalance in _NAMED:
        return Rebalance(rebalance, _NAMED[rebalance], "close", dt.timedelta(0))
    match = _OFFSET.fullmatch(rebalance)
    if match is None:
        raise ResearchInputError("rebalance", rebalance, f"must be one of {_FORMS}")
    n = int(match["n"])
    size = dt.timedelta(minutes=n) if match["unit"] == "m" else dt.timedelta(hours=n)
    if size >= _MAX_OFFSET:
        raise ResearchInputError("rebalance", rebalance, "the offset must be under 24 hours")
    if match["anchor"] == "open+":
        return Rebalance(rebalance, "session", "open", size)
    return Rebalance(rebalance, "session", "close", -size)


@functools.lru_cache(maxsize=16)
def _calendar(name: str) -> MarketCalendar:
    """One MarketCalendar per exchange: building one takes seconds (exchange_calendars)."""
    try:
        return MarketCalendar(name)
    except CalendarError as exc:
        raise ResearchInputError("calendar", name, f"unknown calendar: {exc.message}") from exc


def _utc(value: dt.datetime, field: str) -> dt.datetime:
    if not isinstance(value, dt.datetime) or value.tzinfo is None:
        raise ResearchInputError(field, value, "must be a timezone-aware datetime")
    return value.astimezone(dt.UTC)


def _time_in(cal: MarketCalendar, spec: Rebalance, day: dt.date) -> dt.datetime:
    """The rebalance instant (UTC) in session ``day``, clamped to ``[open, close]``."""
    open_, close = cal.open_of(day), cal.close_of(day)
    at = (close if spec.anchor == "close" else open_) + spec.offset
    return min(max(at, open_), close)


def _period(spec: Rebalance, day: dt.date) -> tuple[int, int]:
    if spec.every == "week":
        year, week, _ = day.isocalendar()
        return (year, week)
    if spec.every == "month":
        return (day.year, day.month)
    return (day.toordinal(), 0)


def _rebalance_days(cal: MarketCalendar, spec: Rebalance, first: dt.date,
                    last: dt.date) -> list[dt.date]:
    """Sessions in ``[first, last]`` on which ``spec`` rebalances: each one for per-session
    specs, else the sessions whose successor lies in another week/month."""
    days = cal.sessions(first, last + dt.timedelta(days=_SEARCH_DAYS if spec.every != "session"
                                                    else 0))
    picked: list[dt.date] = []
    for i, day in enumerate(days):
        if day > last:
            break
        successor = days[i + 1] if i + 1 < len(days) else None
        if spec.every == "session" or (successor is not None
                                       and _period(spec, successor) != _period(spec, day)):
            picked.append(day)
    return picked


def next_rebalance(rebalance: str, after: dt.datetime, calendar: str = "XNYS") -> dt.datetime:
    """The first rebalance instant strictly after ``after`` (timezone-aware), in UTC.

    Strictly after, so a service that fired at ``t`` asks for ``next_rebalance(spec, t)`` and
    never fires twice for one session.
    """
    spec = parse_rebalance(rebalance)
    cal = _calendar(calendar)
    moment = _utc(after, "after")
    # the session of a UTC instant can be the previous calendar day in the exchange's zone
    first = moment.date() - dt.timedelta(days=1)
    for _ in range(12):  # ~2 years of search windows: far beyond any calendar's holiday run
        last = first + dt.timedelta(days=_SEARCH_DAYS)
        for day in _rebalance_days(cal, spec, first, last):
            at = _time_in(cal, spec, day)
            if at > moment:
                return at
        first = last + dt.timedelta(days=1)
    raise ResearchInputError("after", after, f"no {calendar} session within two years")


def _bounds(value: dt.date | dt.datetime, field: str) -> tuple[dt.date, dt.datetime | None]:
    """A range end as (calendar day to search from, exact instant or None for a whole day)."""
    if isinstance(value, dt.datetime):
        instant = _utc(value, field)
        return instant.date(), instant
    if isinstance(value, dt.date):
        return value, None
    raise ResearchInputError(field, value, "must be a date or a timezone-aware datetime")


def rebalance_times(rebalance: str, start: dt.date | dt.datetime, end: dt.date | dt.datetime,
                    calendar: str = "XNYS") -> list[dt.datetime]:
    """Every rebalance instant (UTC, ascending) from ``start`` to ``end``, both inclusive.

    A ``date`` bound means the sessions of that day (by session date, in the exchange's zone); a
    ``datetime`` bound (timezone-aware) compares instants. ``start`` after ``end``: empty.
    """
    spec = parse_rebalance(rebalance)
    cal = _calendar(calendar)
    lo_day, lo_at = _bounds(start, "start")
    hi_day, hi_at = _bounds(end, "end")
    first = lo_day - dt.timedelta(days=1) if lo_at is not None else lo_day
    last = hi_day + dt.timedelta(days=1) if hi_at is not None else hi_day
    if last < first:
        return []
    times = [(day, _time_in(cal, spec, day)) for day in _rebalance_days(cal, spec, first, last)]
    return [at for day, at in times
            if (at >= lo_at if lo_at is not None else day >= lo_day)
            and (at <= hi_at if hi_at is not None else day <= hi_day)]
