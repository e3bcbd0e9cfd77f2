"""Replay historical bars as a live feed: one :class:`mts1b_foundation.Bar` per symbol and session
on ``mts.v1.datalake.bars.<symbol>``, at a chosen speed.

This is the paper-trading path's market data. Any publisher with
``async publish(subject, message, *, msg_id=None)`` works (:class:`mts1b_platform.bus.Bus`, or
:class:`mts1b_foundation.InMemoryPublisher` in tests); a publisher that also has
``publish_batch`` (the Bus) gets each session's bars in one batch with asynchronous acks.

``speed`` is in sessions per second of wall time: ``speed=1`` publishes one trading day per
second, ``speed=None`` (or 0) as fast as the bus acknowledges. Each bar's ``ts`` is the session
close in UTC. The message id is ``bar:<symbol>:<date>:v<version>``, so replaying the same data
twice inside JetStream's duplicate window stores nothing new, while a restated bar goes out.

**Lockstep** (``lockstep=[service, ...]``, the CLI's ``--lockstep``): after each session's bars
the replay hands the session's :class:`~mts1b_foundation.ClockTick` to each named service in
turn and waits until every one has finished the session before it publishes the next
(:mod:`mts1b_platform.replayclock`); ``speed`` is then a maximum. Each session's splits and
cash dividends go out first, on ``mts.v1.datalake.actions.<symbol>``
(:class:`~mts1b_foundation.CorporateAction`), and its tick counts them, so every service
applies them at that session's open; so do its delistings (dated the first session without the
symbol, paying out every position at its last close: :meth:`BarReplay.actions`). A service named
``<service>@open`` also gets an ``open`` tick of each session, after its actions and bars are
published and before any service gets the ``close`` tick: what sizes orders at the open
prices (the composer) acts there, before the venue fills on the bars. The services
run on the replay's clock, so what trades on which bar does not depend on how fast the machine
is.

The subject's last token is the symbol as :func:`mts1b_foundation.symbol_to_token` writes it, so
``BRK.B`` travels on ``mts.v1.datalake.bars.BRK_2EB`` and ``EURUSD=X`` on ``...bars.EURUSD_3DX``.
Rows that cannot be valid wire bars (NaN, non-positive, open/close outside high-low) and symbols
that are not a valid :data:`mts1b_foundation.Symbol` (a path, a control character: nothing a
real venue lists) are skipped and counted in the report.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
from mts1b_foundation import (
    Bar,
    ClockTick,
    CorporateAction,
    SubjectError,
    is_symbol,
    symbol_subject,
)
from mts1b_platform.logging import get_logger

from mts1b_datalake.bars import decimal_of, row_to_bar
from mts1b_datalake.calendar import session_close, session_open, to_day, trading_days
from mts1b_datalake.errors import EmptyRangeError, InvalidRangeError, UnknownFieldError
from mts1b_datalake.store import Store
from mts1b_datalake.universes import Universe, resolve_universe

__all__ = ["BarReplay", "ReplayReport", "bar_subject", "split_lockstep"]

_log = get_logger(__name__)


def bar_subject(symbol: str) -> str:
    """``mts.v1.datalake.bars.<token>``; UnknownFieldError if ``symbol`` is not a valid symbol."""
    try:
        return symbol_subject("bars", symbol)
    except SubjectError as exc:
        raise UnknownFieldError(exc.message, field="symbol", value=symbol) from None


def split_lockstep(lockstep: Sequence[str]) -> tuple[list[str], list[str]]:
    """The lockstep's services at each session's open (those named ``<service>@open``) and at
    its close (the others), each list in the order given."""
    at_open = [name.removesuffix("@open") for name in lockstep if name.endswith("@open")]
    at_close = [name for name in lockstep if not name.endswith("@open")]
    return at_open, at_close


@dataclass
class ReplayReport:
    """What a replay published."""

    sessions: int = 0
    published: int = 0
    skipped_invalid: int = 0
    actions: int = 0
    skipped_symbols: list[str] = field(default_factory=list)
    first_date: dt.date | None = None
    last_date: dt.date | None = None
    seconds: float = 0.0
    stopped: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"sessions": self.sessions, "published": self.published, "actions": self.actions,
                "skipped_invalid": self.skipped_invalid,
                "skipped_symbols": self.skipped_symbols,
                "first_date": str(self.first_date) if self.first_date else None,
                "last_date": str(self.last_date) if self.last_date else None,
                "seconds": round(self.seconds, 3), "stopped": self.stopped}


class BarReplay:
    """Bars of ``universe`` (symbols, a name or a Universe) from ``store`` over a date range."""

    def __init__(self, universe: str | Sequence[str] | Universe, start: Any, end: Any, *,
                 store: Store | str | Path | None = None, speed: float | None = None,
                 calendar: str = "XNYS") -> None:
        lo, hi = to_day(start), to_day(end)
        if lo > hi:
            raise InvalidRangeError(f"start {lo} is after end {hi}", field="start",
                                    value=str(lo))
        if speed is not None and speed < 0:
            raise UnknownFieldError(f"speed must be >= 0 sessions per second, not {speed}",
                                    field="speed", value=speed)
        self.store = store if isinstance(store, Store) else (
            Store(store) if store is not None else Store.default())
        self.sessions = trading_days(calendar, lo, hi)
        if not len(self.sessions):
            raise EmptyRangeError(f"no {calendar} session between {lo} and {hi}",
                                  field="start", value=str(lo))
        rule = resolve_universe(universe)
        membership = rule.resolve(self.store, self.sessions, calendar=calendar)
        self.symbols = [s for s in membership.symbols]
        self.mask = membership.mask
        self.speed = speed or None
        self.calendar = calendar
        self.report = ReplayReport()
        bad = [s for s in self.symbols if not is_symbol(s)]
        if bad:
            self.report.skipped_symbols = bad
            _log.warning("invalid symbols are not replayed", symbols=bad)

    def days(self) -> Iterator[tuple[dt.date, list[tuple[str, Bar, str]]]]:
        """Per session: ``(day, [(subject, bar, msg_id), ...])`` for the members that traded."""
        frame = self.store.read_bars(self.symbols, self.sessions[0].astype(dt.date),
                                     self.sessions[-1].astype(dt.date), with_version=True)
        index = {s: i for i, s in enumerate(self.symbols)}
        skip = set(self.report.skipped_symbols)
        frame = frame[~frame["symbol"].isin(skip)]
        day_arr = frame["date"].to_numpy().astype("datetime64[D]")
        rows = np.searchsorted(self.sessions, day_arr)
        ok = (rows < len(self.sessions)) & (
            self.sessions[np.minimum(rows, len(self.sessions) - 1)] == day_arr)
        frame = frame.assign(_row=rows).loc[ok]
        cols = np.array([index[s] for s in frame["symbol"]], dtype=np.int64)
        frame = frame.loc[self.mask[frame["_row"].to_numpy(), cols]]
        grouped = dict(tuple(frame.groupby("_row", sort=True)))
        for r, day64 in enumerate(self.sessions):
            day = day64.astype(dt.date)
            part = grouped.get(r)
            out: list[tuple[str, Bar, str]] = []
            if part is not None:
                for row in part.sort_values("symbol").itertuples(index=False):
                    bar = row_to_bar(row.symbol, day, row.open, row.high, row.low, row.close,
                                     row.volume, calendar=self.calendar)
                    if bar is None:
                        self.report.skipped_invalid += 1
                        continue
                    out.append((bar_subject(row.symbol), bar,
                                f"bar:{row.symbol}:{day}:v{int(row.version)}"))
            yield day, out

    def actions(self) -> dict[dt.date, list[tuple[str, CorporateAction, str]]]:
        """The replayed symbols' splits, cash dividends and delistings by ex-date, as
        ``(subject, action, msg_id)``: a lockstep replay publishes each before its ex-date's
        bars, so the venue, the OMS and the treasury apply it at that session's open.

        A delisting's ex-date is the date the store records it on, the first day without the
        symbol (:func:`~mts1b_datalake.universes.listing_mask` reads it so too), moved to the
        first session of the replay on or after it; its ``value`` is the symbol's last close
        before that day (:meth:`_last_closes`), what every position in it is paid out at."""
        symbols = [s for s in self.symbols if s not in set(self.report.skipped_symbols)]
        lo, hi = self.sessions[0].astype(dt.date), self.sessions[-1].astype(dt.date)
        frame = self.store.events(symbols, lo, hi, kinds=["split", "dividend", "delisting"])
        gone = frame[frame["kind"] == "delisting"]
        last = self._last_closes(gone)
        out: dict[dt.date, list[tuple[str, CorporateAction, str]]] = {}
        for row in frame.sort_values(["date", "symbol", "kind"], kind="stable").itertuples():
            day = row.date.date() if hasattr(row.date, "date") else to_day(row.date).astype(
                dt.date)
            if row.kind == "delisting":
                at = int(np.searchsorted(self.sessions, np.datetime64(day, "D")))
                if at >= len(self.sessions) or row.symbol not in last:
                    continue  # after the replay's last session, or no close to pay out at
                day = self.sessions[at].astype(dt.date)
                value = last[row.symbol]
            else:
                try:
                    value = decimal_of(float(row.value))
                except ValueError:
                    continue  # no value (NaN): the ingest's checks report such an event
            if not value > 0:
                continue
            action_id = f"ca-{row.symbol}-{day}-{row.kind}-v{int(row.version)}"
            action = CorporateAction(action_id=action_id[:128], symbol=row.symbol,
                                     ex_date=day.isoformat(), kind=row.kind, value=value)
            out.setdefault(day, []).append((symbol_subject("actions", row.symbol), action,
                                            action_id))
        return out

    def _last_closes(self, delistings: Any) -> dict[str, Decimal]:
        """Symbol -> its last valid close (as its bar carries it) before its delisting's date,
        from the year before it (one read of the store for all of them); a symbol without a
        bar in that year is left out (logged): there is no price to pay it out at."""
        if not len(delistings):
            return {}
        days = delistings["date"].to_numpy().astype("datetime64[D]")
        bars = self.store.read_bars(sorted(set(delistings["symbol"])),
                                    (days.min() - np.timedelta64(366, "D")).astype(dt.date),
                                    (days.max() - np.timedelta64(1, "D")).astype(dt.date))
        ok = np.isfinite(bars["close"].to_numpy()) & (bars["close"].to_numpy() > 0)
        bars = bars.loc[ok]
        out: dict[str, Decimal] = {}
        for symbol, day in zip(delistings["symbol"], days, strict=True):
            mine = bars[(bars["symbol"] == symbol)
                        & (bars["date"].to_numpy().astype("datetime64[D]") < day)]
            if not len(mine):
                _log.warning("delisting not replayed: no close in the year before it",
                             symbol=symbol, date=str(day))
                continue
            out[symbol] = decimal_of(float(mine["close"].iloc[-1]))
        return out

    async def run(self, publisher: Any, *, stop: asyncio.Event | None = None,
                  on_session: Callable[[dt.date, int], Awaitable[None] | None] | None = None,
                  lockstep: Sequence[str] = (), lockstep_timeout: float = 300.0,
                  ) -> ReplayReport:
        """Publish every session's bars in order, pacing by ``speed``; return the report.

        ``stop`` ends the replay after the session in hand; ``on_session(day, n_bars)`` is
        called after each session (a progress bar, a test hook). ``lockstep``: the services
        that finish each session before the next (``publisher`` must then be a
        :class:`~mts1b_platform.bus.Bus`); one that refuses a session or does not answer
        within ``lockstep_timeout`` seconds stops the replay with
        :class:`~mts1b_platform.replayclock.ReplayStalled`.
        """
        report = self.report
        t0 = time.monotonic()
        batch = getattr(publisher, "publish_batch", None)
        replay_id = f"rp-{uuid.uuid4().hex[:16]}"
        last = len(self.sessions) - 1
        actions = self.actions() if lockstep else {}
        at_open, at_close = split_lockstep(lockstep)
        seq = 0
        for k, (day, items) in enumerate(self.days()):
            if stop is not None and stop.is_set():
                report.stopped = True
                break
            if self.speed:
                delay = t0 + k / self.speed - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            todays = actions.get(day, [])
            for subject, action, msg_id in todays:  # effective at the open: before the bars
                await publisher.publish(subject, action, msg_id=msg_id)
            report.actions += len(todays)
            if items:
                if batch is not None:
                    await batch([(s, b, m) for s, b, m in items])
                else:
                    for s, b, m in items:
                        await publisher.publish(s, b, msg_id=m)
            report.published += len(items)
            report.sessions += 1
            report.first_date = report.first_date or day
            report.last_date = day
            if lockstep:
                from mts1b_platform.replayclock import hand_out  # the bus extra

                for phase, participants in (("open", at_open), ("close", at_close)):
                    if not participants:
                        continue
                    seq += 1
                    ts = (session_open if phase == "open" else session_close)(self.calendar,
                                                                              day)
                    tick = ClockTick(replay_id=replay_id, seq=seq, session=day.isoformat(),
                                     phase=phase, ts=ts, bars=len(items),
                                     actions=len(todays), last=k == last)
                    await hand_out(publisher, tick, participants, timeout=lockstep_timeout)
            if on_session is not None:
                result = on_session(day, len(items))
                if asyncio.iscoroutine(result):
                    await result
        report.seconds = time.monotonic() - t0
        _log.info("replay finished", **report.as_dict())
        return report

