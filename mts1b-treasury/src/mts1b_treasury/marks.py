"""Closing marks from the bus: the last bar of each symbol at or before a session's close.

Why in the service: the datalake publishes bars on ``mts.v1.datalake.bars.<symbol>`` (its
replay, a live feed), and the strike wants each held symbol's close of the session. The book
keeps, per session, each symbol's latest bar that ended by the close (a daily bar ends at the
close; an intraday feed's last bar of the day does too), for the last few sessions only.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from mts1b_foundation import Bar

__all__ = ["MarkBook"]


class MarkBook:
    """Closes per session from bars; ``close_of(session)`` says when a session closes."""

    def __init__(self, tz: dt.tzinfo, *, keep_sessions: int = 5) -> None:
        self.tz = tz
        self.keep = keep_sessions
        self._marks: dict[dt.date, dict[str, tuple[dt.datetime, Decimal]]] = {}

    def add(self, bar: Bar, close_of_session: dt.datetime) -> bool:
        """Take ``bar`` if it ended by its session's close and is the symbol's latest there."""
        if bar.ts > close_of_session:
            return False
        session = bar.ts.astimezone(self.tz).date()
        day = self._marks.setdefault(session, {})
        held = day.get(bar.symbol)
        if held is not None and held[0] > bar.ts:
            return False
        day[bar.symbol] = (bar.ts, bar.close)
        for old in sorted(self._marks)[:-self.keep]:
            del self._marks[old]
        return True

    def session_of(self, bar: Bar) -> dt.date:
        return bar.ts.astimezone(self.tz).date()

    def marks(self, session: dt.date) -> dict[str, Decimal]:
        return {s: close for s, (_, close) in self._marks.get(session, {}).items()}
