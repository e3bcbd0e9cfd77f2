"""From a ``universe`` argument to a panel, and from a panel to the engine's price arrays.

A universe is a :class:`~mts1b_foundation.UniversePanel` (used as given), a universe name the
datalake knows (``"us-large-cap"``) or a list of symbols (both loaded with
:func:`mts1b_datalake.build_panel`, with ``warmup_days`` of history before ``start`` so that
factors have a look-back on the first trading day).

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
from mts1b_foundation import UniversePanel, to_day

from mts1b_GPUbacktester.errors import BacktestConfigError
from mts1b_GPUbacktester.sim import forward_filled_close

__all__ = ["FILLS", "Fill", "MarketArrays", "check_fill", "market_arrays", "resolve_universe"]

Fill = Literal["next_open", "close", "next_close"]
FILLS: tuple[str, ...] = ("next_open", "close", "next_close")

FloatArray = npt.NDArray[np.float64]


def resolve_universe(universe: Any, start: Any = None, end: Any = None, *,
                     warmup_days: int = 400, store: Any = None) -> tuple[UniversePanel, int]:
    """``(panel, first trading row)`` for a universe name, symbol list or panel.

    The panel ends at ``end`` (inclusive; default today) and starts ``warmup_days`` calendar
    days before ``start`` where the data allows; the first trading row is the first row dated
    ``>= start``. ``start`` is required for a name or a symbol list, optional for a panel.
    """
    if isinstance(universe, UniversePanel):
        panel = universe
        if end is not None:
            panel = panel.until(end)
    elif isinstance(universe, str) or (
            isinstance(universe, Sequence) and universe
            and all(isinstance(s, str) for s in universe)):
        from mts1b_datalake import build_panel  # layer 2: imported only when needed

        if start is None:
            raise BacktestConfigError("start is required when the universe is loaded from the "
                                      "datalake", field="start", value=None)
        first = to_day(start).astype(dt.date) - dt.timedelta(days=warmup_days)
        last = dt.datetime.now(dt.UTC).date() if end is None else end
        uni = universe if isinstance(universe, str) else list(universe)
        panel = build_panel(uni, first, last, store=store)
    else:
        raise BacktestConfigError(
            "universe must be a UniversePanel, a universe name or a list of symbols; got "
            f"{type(universe).__name__}", field="universe", value=repr(universe)[:200])
    t_len, a_len = panel.shape
    if t_len == 0 or a_len == 0:
        raise BacktestConfigError(f"the universe is empty over the requested dates ({panel!r})",
                                  field="universe", value=repr(panel))
    row0 = 0 if start is None else int(np.searchsorted(panel.dates, to_day(start), "left"))
    if row0 >= t_len:
        raise BacktestConfigError(f"start {start} is after the last date {panel.dates[-1]}",
                                  field="start", value=str(start))
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
    )
