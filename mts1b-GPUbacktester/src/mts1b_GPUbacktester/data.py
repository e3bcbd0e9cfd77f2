"""From a ``universe`` argument to a panel, and from a panel to the engine's price arrays.

A universe is a :class:`~mts1b_foundation.UniversePanel` (used as given) or anything
:func:`mts1b_datalake.build_panel` takes: a universe name the datalake knows
(``"us-large-cap"``), a ``universe("us-large-cap", n=50)`` object or a list of symbols, loaded
with ``warmup_days`` of history before ``start`` so that factors have a look-back on the first
trading day, on the calendar of the instruments' asset class unless one is given.

:class:`MarketArrays` holds the host (numpy) arrays every run on a panel needs: execution and
valuation prices, delisting rows, the universe mask, the impact model's inputs. They are built
once per panel and shared by every combo of a ladder.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from mts1b_foundation import MtsError, UniversePanel, to_day

from mts1b_GPUbacktester.errors import BacktestConfigError
from mts1b_GPUbacktester.sim import forward_filled_close

__all__ = ["CASH_DIVIDEND", "FILLS", "Fill", "MarketArrays", "check_fill", "market_arrays",
           "resolve_universe", "universe_label"]

Fill = Literal["next_open", "close", "next_close"]

#: the panel field of cash dividends a run credits to cash (per share of the panel's prices, on
#: the ex-date row; see :class:`~mts1b_GPUbacktester.sim.SimInputs`): for a panel whose prices
#: are adjusted for splits only, so that a backtest holds dividends as cash like a broker
#: account does (the paper-parity harness of issue #20). A back-adjusted panel must not have it.
CASH_DIVIDEND = "cash_dividend"
FILLS: tuple[str, ...] = ("next_open", "close", "next_close")

FloatArray = npt.NDArray[np.float64]


def _day(value: Any, name: str) -> np.datetime64:
    """``value`` as a day, or a BacktestConfigError naming the argument and the value given."""
    try:
        return to_day(value)
    except MtsError as exc:
        raise BacktestConfigError(f"{name} is not a date: {value!r}", field=name,
                                  value=repr(value)[:200]) from exc


def universe_label(universe: Any) -> Any:
    """How a run records its ``universe`` argument: the name, the universe object's name
    (``"us-large-cap(n=50)"``), ``"panel"``, or the list of symbols."""
    if isinstance(universe, str):
        return universe
    if isinstance(universe, UniversePanel):
        return "panel"
    name = getattr(universe, "name", None)
    if isinstance(name, str):
        return name
    return list(universe) if isinstance(universe, Sequence) else repr(universe)[:200]


def resolve_universe(universe: Any, start: Any = None, end: Any = None, *,
                     warmup_days: int = 400, store: Any = None,
                     calendar: str | None = None) -> tuple[UniversePanel, int]:
    """``(panel, first trading row)`` for a panel, or for any universe the datalake's
    ``build_panel`` takes (a name, a ``universe("us-large-cap", n=50)`` object, a list of
    symbols): the datalake's own ``resolve_universe`` reads the form, so both accept the same.

    The panel ends at ``end`` (inclusive; default today) and starts ``warmup_days`` calendar
    days before ``start`` where the data allows; the first trading row is the first row dated
    ``>= start``. ``start`` is required unless ``universe`` is a panel. ``calendar`` is passed
    to ``build_panel`` (``None``: by asset class). Errors about the range name ``start`` and
    ``end`` as given, not the warm-up-shifted dates the panel was asked for.
    """
    lo = None if start is None else _day(start, "start")
    hi = None if end is None else _day(end, "end")
    if lo is not None and hi is not None and lo > hi:
        raise BacktestConfigError(f"start {lo} is after end {hi}", field="start",
                                  value=str(lo), end=str(hi))
    if isinstance(universe, UniversePanel):
        panel = universe if hi is None else universe.until(hi)
    else:
        from mts1b_datalake import DatalakeError, EmptyRangeError, InvalidRangeError, build_panel
        from mts1b_datalake.universes import resolve_universe as datalake_universe

        try:  # the one reading of universe forms, shared with build_panel
            rule = datalake_universe(universe)
        except DatalakeError as exc:
            raise BacktestConfigError(f"universe: {exc.message}", field="universe",
                                      value=repr(universe)[:200]) from exc
        if lo is None:
            raise BacktestConfigError("start is required when the universe is loaded from the "
                                      "datalake", field="start", value=None)
        first = lo.astype(dt.date) - dt.timedelta(days=warmup_days)
        last = dt.datetime.now(dt.UTC).date() if hi is None else hi.astype(dt.date)
        try:
            panel = build_panel(rule, first, last, store=store, calendar=calendar)
        except (EmptyRangeError, InvalidRangeError) as exc:
            raise BacktestConfigError(
                f"no data for universe {rule.name!r} from start {lo} to end {hi or last} "
                f"(loaded from {first}, {warmup_days} days of warm-up before start): "
                f"{exc.message}", field=str(exc.context.get("field", "universe")),
                value=str(exc.context.get("value")), start=str(lo),
                end=str(hi or last)) from exc
    t_len, a_len = panel.shape
    if t_len == 0 or a_len == 0:
        raise BacktestConfigError(f"the universe is empty over the requested dates ({panel!r})",
                                  field="universe", value=repr(panel))
    row0 = 0 if lo is None else int(np.searchsorted(panel.dates, lo, "left"))
    if row0 >= t_len:
        raise BacktestConfigError(f"start {lo} is after the last date {panel.dates[-1]}",
                                  field="start", value=str(lo))
    return panel, row0


@dataclass(frozen=True)
class MarketArrays:
    """Host arrays derived from a panel for one fill convention (shapes ``(T, A)``).

    ``exec_price``, ``close``, ``volume`` and ``in_universe`` are the panel's own arrays (no
    copies); ``returns`` is the one array built for every run. ``mark_price`` is built on
    first use: the compiled engine carries the mark through its loop and never asks for it.
    """

    fill: str
    shift: int                 # rows between a decision and its execution
    exec_price: FloatArray     # NaN where no trade is possible
    close: FloatArray
    returns: FloatArray        # close-to-close returns of held assets (0 where unknown)
    in_universe: npt.NDArray[np.bool_]
    delist_row: npt.NDArray[np.int64]   # (A,), T where the asset trades to the end
    volume: FloatArray
    adv: FloatArray | None     # mean volume of the previous ``window`` rows
    sigma: FloatArray | None   # std of daily returns of the previous ``window`` rows
    dividend: FloatArray | None = None  # the panel's ``cash_dividend`` field, if it has one

    @functools.cached_property
    def mark_price(self) -> FloatArray:
        """``(T, A)`` forward-filled close: the last finite positive close at or before each
        row (NaN before the first), what positions are valued at."""
        return forward_filled_close(self.close)


def check_fill(fill: str) -> None:
    """BacktestConfigError unless ``fill`` is one of :data:`FILLS`."""
    if fill not in FILLS:
        raise BacktestConfigError(f"fill must be one of {FILLS}; got {fill!r}", field="fill",
                                  value=fill)


def market_arrays(panel: UniversePanel, fill: str, *, impact_window: int | None = None
                  ) -> MarketArrays:
    """Prepare the engine's arrays; ``impact_window`` adds ADV and volatility for the
    square-root impact model (measured on rows strictly before each row: no look-ahead)."""
    check_fill(fill)
    close = np.asarray(panel.close, dtype=np.float64)
    t_len = close.shape[0]
    valid = np.isfinite(close) & (close > 0)
    # the last row with a valid close of each asset (-1: none)
    last_row = np.full(close.shape[1], -1, dtype=np.intp)
    if t_len:
        last_row = np.where(valid.any(axis=0), t_len - 1 - np.argmax(valid[::-1], axis=0), -1)
    # close-to-close returns of the forward-filled close: mark / previous mark - 1 where both
    # are known, else 0 (the marks are dropped again: the compiled engine does not need them)
    mark = forward_filled_close(close)
    rets = np.empty_like(mark)
    with np.errstate(divide="ignore", invalid="ignore"):
        np.divide(mark[1:], mark[:-1], out=rets[1:])
        rets[1:] -= 1.0
    known = np.isfinite(mark)
    del mark
    rets[:1] = 0.0
    rets[1:][~(known[1:] & known[:-1])] = 0.0
    del known
    delist = np.where((last_row >= 0) & (last_row < t_len - 1), last_row, t_len).astype(np.int64)
    exec_price = np.asarray(panel.open if fill == "next_open" else panel.close, dtype=np.float64)
    volume = np.asarray(panel.volume, dtype=np.float64)
    adv = sigma = None
    if impact_window:
        from mts1b_quantkit.factors import rolling_mean, rolling_std, shift

        adv = np.asarray(shift(rolling_mean(volume, impact_window, min_periods=1), 1))
        sigma = np.asarray(shift(rolling_std(np.where(valid, rets, np.nan), impact_window,
                                             min_periods=2), 1))
    return MarketArrays(
        fill=fill, shift=0 if fill == "close" else 1, exec_price=exec_price, close=close,
        returns=rets, in_universe=np.asarray(panel.mask, dtype=bool), delist_row=delist,
        volume=volume, adv=adv, sigma=sigma,
        dividend=(np.asarray(panel.field(CASH_DIVIDEND), dtype=np.float64)
                  if CASH_DIVIDEND in panel.field_names else None),
    )
